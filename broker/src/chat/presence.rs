//! Presence (extension): a user is online while a chat device of theirs is connected
//! on any node. Each node counts its devices per user ([`LocalPresence`], a node
//! extension); a user whose count moved between zero and non-zero is reconciled by the
//! node's presence worker, which tells the store ([`Store::presence_set`](crate::store::Store::presence_set))
//! and, when the user's status changed cluster-wide, publishes `presence` on the user's
//! presence channel. Devices that asked for a user's presence (`request-presence`,
//! only for users they share a session with) are subscribed to that channel. A node
//! found dead ([`Node::lost_nodes`]) has its users forgotten and the ones now offline
//! published; a node starting drops what an earlier run under its id left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use murmur_shared::channel::presence_channel;
use murmur_shared::chat::{self, ChatEvent};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::now_ms;
use tokio::sync::Notify;
use tracing::warn;

use super::ChatError;
use crate::node::Node;
use crate::session::{Protocol, SessionHandle};
use crate::store::Presence;

/// Users one `request-presence` names at most (the participant limit).
pub const MAX_WATCH_REQUEST: usize = chat::MAX_PARTICIPANTS;

#[derive(Default)]
struct Counts {
    devices: HashMap<String, usize>,
    /// Users whose count crossed zero and who are not reconciled yet.
    pending: HashSet<String>,
}

/// See the module docs (a node extension).
#[derive(Default)]
pub struct LocalPresence {
    counts: Mutex<Counts>,
    wake: Notify,
}

impl LocalPresence {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // unwrap: nothing panics while the lock is held (map operations only).
        self.counts.lock().unwrap()
    }

    /// A device of `user` connected on this node.
    pub fn up(&self, user: &str) {
        let mut c = self.lock();
        let n = c.devices.entry(user.to_string()).or_default();
        *n += 1;
        if *n == 1 {
            c.pending.insert(user.to_string());
            drop(c);
            self.wake.notify_one();
        }
    }

    /// A device of `user` on this node went away.
    pub fn down(&self, user: &str) {
        let mut c = self.lock();
        let Some(n) = c.devices.get_mut(user) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            c.devices.remove(user);
            c.pending.insert(user.to_string());
            drop(c);
            self.wake.notify_one();
        }
    }

    /// Users with a device on this node.
    pub fn online_here(&self) -> usize {
        self.lock().devices.len()
    }

    /// The pending users with whether they have a device here now.
    fn take_pending(&self) -> Vec<(String, bool)> {
        let mut c = self.lock();
        let pending = std::mem::take(&mut c.pending);
        pending
            .into_iter()
            .map(|u| {
                let online = c.devices.contains_key(&u);
                (u, online)
            })
            .collect()
    }

    fn retry(&self, user: String) {
        self.lock().pending.insert(user);
    }
}

/// Counts a device for presence while it lives: up when made, down when dropped.
pub struct DevicePresence {
    user: String,
    local: Option<Arc<LocalPresence>>,
}

impl DevicePresence {
    pub fn new(node: &Node, user: &str) -> DevicePresence {
        let local = node.extension::<LocalPresence>().cloned();
        if let Some(l) = &local {
            l.up(user);
        }
        DevicePresence {
            user: user.to_string(),
            local,
        }
    }
}

impl Drop for DevicePresence {
    fn drop(&mut self) {
        if let Some(l) = &self.local {
            l.down(&self.user);
        }
    }
}

/// Publishes a user's new status on their presence channel.
fn publish(node: &Node, user: &str, online: bool, at: u64) {
    let body = chat::presence(user, online, (!online).then_some(at), None);
    let env = Envelope::new(
        node.id(),
        Kind::Message,
        Destination::Channel(presence_channel(user)),
        Body::Json(body),
    )
    .from(Origin {
        session: None,
        user: None,
        protocol: Some(Protocol::Chat),
    })
    .subject(ChatEvent::Presence.as_str());
    node.router.publish(env);
    let state = if online { "online" } else { "offline" };
    node.metrics
        .presence_changes
        .with_label_values(&[state])
        .inc();
}

/// Runs the node's presence worker and its lost-node listener.
pub fn spawn_worker(node: &Arc<Node>) {
    let Some(local) = node.extension::<LocalPresence>().cloned() else {
        return;
    };
    let weak: Weak<Node> = Arc::downgrade(node);
    let mut lost = node.lost_nodes();
    let me = node.id().clone();
    let store = node.store().clone();
    let w = weak.clone();
    actix::spawn(async move {
        // What an earlier run under this node id left (a crash) is not true any more.
        if let Ok(gone) = store.presence_drop_node(&me, now_ms()).await {
            if let Some(node) = w.upgrade() {
                let at = now_ms();
                for u in gone {
                    publish(&node, &u, false, at);
                }
            }
        }
        loop {
            local.wake.notified().await;
            let Some(node) = w.upgrade() else { break };
            let mut failed = false;
            for (user, online) in local.take_pending() {
                let at = now_ms();
                match node.store().presence_set(&user, &me, online, at).await {
                    Ok(true) => publish(&node, &user, online, at),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(user = %user, error = %e, "presence not stored: retried");
                        node.metrics
                            .store_errors
                            .with_label_values(&["presence"])
                            .inc();
                        local.retry(user);
                        failed = true;
                    }
                }
            }
            node.metrics.presence_online.set(local.online_here() as i64);
            if failed {
                // Try again after a pause (the store is away).
                tokio::time::sleep(node.config.heartbeat_interval).await;
                local.wake.notify_one();
            }
        }
    });
    actix::spawn(async move {
        while let Ok(dead) = lost.recv().await {
            let Some(node) = weak.upgrade() else { break };
            let at = now_ms();
            match node.store().presence_drop_node(&dead, at).await {
                Ok(gone) => {
                    for u in gone {
                        publish(&node, &u, false, at);
                    }
                }
                Err(_) => node
                    .metrics
                    .store_errors
                    .with_label_values(&["presence"])
                    .inc(),
            }
        }
    });
}

/// `request-presence`: the presence of `users` now; with `watch`, the device is also
/// told every change (subscribed to their presence channels), without, it stops being
/// told. Only users who share a session with the requester (or the requester).
pub async fn presence(
    h: &SessionHandle,
    users: &[String],
    watch: bool,
) -> Result<Vec<Presence>, ChatError> {
    let node = h.node();
    if watch {
        let contacts = node
            .store()
            .contacts(h.user())
            .await
            .map_err(ChatError::Store)?;
        if let Some(stranger) = users
            .iter()
            .find(|u| *u != h.user() && !contacts.contains(*u))
        {
            let shown: String = stranger.chars().take(40).collect();
            return Err(ChatError::Invalid(format!(
                "{shown:?} shares no session with you"
            )));
        }
    }
    for u in users {
        let channel = presence_channel(u);
        if watch {
            h.subscribe(&channel).await.map_err(ChatError::Session)?;
        } else {
            let _ = h.unsubscribe(&channel).await;
        }
    }
    node.store()
        .presence_of(users)
        .await
        .map_err(ChatError::Store)
}
