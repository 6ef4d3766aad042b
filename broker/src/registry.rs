//! The local registry: the truth about what lives on this node. Sessions, channel
//! members and RPC providers. The bus and the store mirror it (a node subscribes to a
//! channel's bus topic while it has members; after a bus reconnect every subscription
//! is replayed from here).
//!
//! Locks are std `RwLock`s held only for map operations and non-blocking `try_send`s,
//! never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use actix::Addr;
use murmur_shared::envelope::Envelope;
use murmur_shared::ids::SessionId;
use tokio::sync::{mpsc, Notify};

use crate::session::actor::SessionActor;
use crate::session::Protocol;

/// What the registry knows of one local session.
#[derive(Clone)]
pub struct LocalSession {
    pub(crate) addr: Addr<SessionActor>,
    pub user: Arc<str>,
    pub protocol: Protocol,
}

/// One member of a channel: its session actor, and for a session whose publications
/// need no session state (a chat device), the connection's own queue, which fan-out
/// fills directly: one hop less per delivered message.
#[derive(Clone)]
pub struct Member {
    pub(crate) addr: Addr<SessionActor>,
    pub direct: Option<mpsc::Sender<Arc<Envelope>>>,
}

/// Local interest in one channel: member sessions, and watchers (long-polls waiting
/// for any publication). The bus subscription lives while either exists.
#[derive(Default)]
struct Channel {
    members: HashMap<SessionId, Member>,
    watchers: usize,
    notify: Option<Arc<Notify>>,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.watchers == 0
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Registry {
    sessions: RwLock<HashMap<SessionId, LocalSession>>,
    channels: RwLock<HashMap<String, Channel>>,
    providers: RwLock<HashMap<String, Vec<SessionId>>>,
    round_robin: AtomicUsize,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // unwrap: no code panics while holding a registry lock (map operations only).
    l.read().unwrap()
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    // unwrap: as above.
    l.write().unwrap()
}

impl Registry {
    pub fn insert(&self, id: SessionId, session: LocalSession) {
        write(&self.sessions).insert(id, session);
    }

    pub fn remove(&self, id: SessionId) {
        write(&self.sessions).remove(&id);
    }

    pub fn get(&self, id: SessionId) -> Option<LocalSession> {
        read(&self.sessions).get(&id).cloned()
    }

    /// Every local session (drain, admin).
    pub fn all(&self) -> Vec<(SessionId, LocalSession)> {
        read(&self.sessions)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Live sessions per protocol label.
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for s in read(&self.sessions).values() {
            *out.entry(s.protocol.label().to_string()).or_insert(0) += 1;
        }
        out
    }

    pub fn len(&self) -> usize {
        read(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a member; true when the channel had no local interest before.
    pub fn join(&self, channel: &str, id: SessionId, member: Member) -> bool {
        let mut channels = write(&self.channels);
        let entry = channels.entry(channel.to_string()).or_default();
        let first = entry.is_empty();
        entry.members.insert(id, member);
        first
    }

    /// Removes a member; true when the channel has no local interest left.
    pub fn leave(&self, channel: &str, id: SessionId) -> bool {
        let mut channels = write(&self.channels);
        let Some(entry) = channels.get_mut(channel) else {
            return false;
        };
        if entry.members.remove(&id).is_none() {
            return false;
        }
        if entry.is_empty() {
            channels.remove(channel);
            return true;
        }
        false
    }

    /// Registers a watcher; the notify fires on every publication delivered here. The
    /// flag is true when the channel had no local interest before.
    pub fn watch(&self, channel: &str) -> (Arc<Notify>, bool) {
        let mut channels = write(&self.channels);
        let entry = channels.entry(channel.to_string()).or_default();
        let first = entry.is_empty();
        entry.watchers += 1;
        let notify = entry
            .notify
            .get_or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        (notify, first)
    }

    /// Removes a watcher; true when the channel has no local interest left.
    pub fn unwatch(&self, channel: &str) -> bool {
        let mut channels = write(&self.channels);
        let Some(entry) = channels.get_mut(channel) else {
            return false;
        };
        entry.watchers = entry.watchers.saturating_sub(1);
        if entry.watchers == 0 {
            entry.notify = None;
        }
        if entry.is_empty() {
            channels.remove(channel);
            return true;
        }
        false
    }

    /// Calls `f` for every local member of a channel and wakes its watchers, under the
    /// read lock (`f` must not block: it does `try_send`).
    pub fn for_each_member(&self, channel: &str, mut f: impl FnMut(SessionId, &Member)) {
        if let Some(entry) = read(&self.channels).get(channel) {
            for (id, addr) in &entry.members {
                f(*id, addr);
            }
            if let Some(n) = &entry.notify {
                n.notify_waiters();
            }
        }
    }

    /// Channels with local members (replayed to the bus after a reconnect).
    pub fn channels(&self) -> Vec<String> {
        read(&self.channels).keys().cloned().collect()
    }

    /// Registers a local provider of a namespace.
    pub fn provide(&self, ns: &str, id: SessionId) {
        let mut p = write(&self.providers);
        let list = p.entry(ns.to_string()).or_default();
        if !list.contains(&id) {
            list.push(id);
        }
    }

    /// Unregisters a local provider; true if it was registered.
    pub fn unprovide(&self, ns: &str, id: SessionId) -> bool {
        let mut p = write(&self.providers);
        let Some(list) = p.get_mut(ns) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| *s != id);
        let removed = list.len() != before;
        if list.is_empty() {
            p.remove(ns);
        }
        removed
    }

    /// Every local provider registration, per namespace.
    pub fn providers(&self) -> Vec<(String, Vec<SessionId>)> {
        read(&self.providers)
            .iter()
            .map(|(ns, ids)| (ns.clone(), ids.clone()))
            .collect()
    }

    /// Whether a session is a routable provider of a namespace on this node now.
    pub fn is_provider(&self, ns: &str, id: SessionId) -> bool {
        read(&self.providers)
            .get(ns)
            .is_some_and(|list| list.contains(&id))
    }

    /// Picks a local provider of a namespace, round-robin.
    pub fn pick_provider(&self, ns: &str) -> Option<SessionId> {
        let p = read(&self.providers);
        let list = p.get(ns)?;
        if list.is_empty() {
            return None;
        }
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(list[i])
    }
}
