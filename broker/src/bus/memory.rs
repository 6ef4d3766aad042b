//! The in-process bus: a hub that several nodes in one process can share (the
//! conformance suite runs three nodes on one hub). The embedded single-node mode uses a
//! hub with one node on it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{self, BoxFuture, FutureExt};

use murmur_shared::envelope::Envelope;
use murmur_shared::ids::NodeId;

use super::{Bus, BusError, Inbound, Topic};

/// Shared by every [`MemoryBus`] of one process "cluster".
#[derive(Default)]
pub struct MemoryHub {
    inner: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    nodes: HashMap<NodeId, Inbound>,
    channels: HashMap<String, HashSet<NodeId>>,
}

impl MemoryHub {
    pub fn new() -> Arc<Self> {
        Arc::new(MemoryHub::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // unwrap: no panics happen while the lock is held (plain map operations).
        self.inner.lock().unwrap()
    }
}

/// One node's connection to a [`MemoryHub`].
pub struct MemoryBus {
    hub: Arc<MemoryHub>,
    node: NodeId,
    clustered: bool,
}

impl MemoryBus {
    /// Joins `hub` as `node`; whatever the hub delivers to this node goes to `inbound`.
    pub fn join(hub: Arc<MemoryHub>, node: NodeId, inbound: Inbound, clustered: bool) -> Self {
        hub.lock().nodes.insert(node.clone(), inbound);
        MemoryBus {
            hub,
            node,
            clustered,
        }
    }

    /// The embedded single-node bus.
    pub fn standalone(node: NodeId, inbound: Inbound) -> Self {
        Self::join(MemoryHub::new(), node, inbound, false)
    }
}

impl Drop for MemoryBus {
    fn drop(&mut self) {
        let mut hub = self.hub.lock();
        hub.nodes.remove(&self.node);
        for members in hub.channels.values_mut() {
            members.remove(&self.node);
        }
        hub.channels.retain(|_, m| !m.is_empty());
    }
}

impl Bus for MemoryBus {
    fn publish(&self, topic: Topic, env: Arc<Envelope>) -> Result<(), BusError> {
        let hub = self.hub.lock();
        let targets: Vec<&Inbound> = match &topic {
            Topic::Node(node) => hub.nodes.get(node).into_iter().collect(),
            Topic::Channel(name) => hub
                .channels
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|n| hub.nodes.get(n))
                .collect(),
        };
        let mut result = Ok(());
        for inbound in targets {
            if inbound.try_send(env.clone()).is_err() {
                result = Err(BusError::Full);
            }
        }
        result
    }

    fn subscribe(&self, channel: &str) {
        self.hub
            .lock()
            .channels
            .entry(channel.to_string())
            .or_default()
            .insert(self.node.clone());
    }

    fn wait_subscribed(&self, channel: &str, _timeout: Duration) -> BoxFuture<'static, bool> {
        // The hub applies subscriptions synchronously: the answer is known now.
        let subscribed = self
            .hub
            .lock()
            .channels
            .get(channel)
            .is_some_and(|m| m.contains(&self.node));
        future::ready(subscribed || !self.clustered).boxed()
    }

    fn unsubscribe(&self, channel: &str) {
        let mut hub = self.hub.lock();
        if let Some(members) = hub.channels.get_mut(channel) {
            members.remove(&self.node);
            if members.is_empty() {
                hub.channels.remove(channel);
            }
        }
    }

    fn is_up(&self) -> bool {
        true
    }

    fn is_clustered(&self) -> bool {
        self.clustered
    }
}
