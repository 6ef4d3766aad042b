//! The inter-node delivery seam.
//!
//! A [`Bus`] carries envelopes between nodes: directed deliveries go to a node's own
//! topic, channel publications to the channel's topic, which a node subscribes to while
//! it has local members. Publishing never blocks the caller (actors call it): an
//! implementation queues into a bounded buffer and reports `Full`/`Down` instead of
//! waiting. Everything a bus receives goes into the node's inbound queue, where the
//! router picks it up.
//!
//! Implementations: [`memory::MemoryBus`] (in-process hub; the embedded default) and
//! a Redis bus (cluster mode).

pub mod memory;
pub mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use murmur_shared::envelope::Envelope;
use murmur_shared::ids::NodeId;

/// Where a bus message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// The node's own inbox: directed deliveries to its sessions and reply slots.
    Node(NodeId),
    /// A broker channel: every node with local subscribers.
    Channel(String),
}

/// Why a publish did not go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusError {
    /// The outgoing buffer is full (the backplane is slower than the offered load).
    Full,
    /// The bus is disconnected; nothing is buffered while it is away.
    Down,
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BusError::Full => "bus outgoing buffer full",
            BusError::Down => "bus disconnected",
        })
    }
}

impl std::error::Error for BusError {}

/// A hash field the bus deletes together with writing a
/// publication: the store's mark that a recorded message is not yet published
/// (TimeStick's unsettled message ids, [`crate::store::TsStore::ts_settle_mark`]). Only
/// the Redis bus carries one; it names a key of the Redis store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub hash: String,
    pub field: String,
}

/// Received from the bus, handed to the router.
pub type Inbound = tokio::sync::mpsc::Sender<Arc<Envelope>>;

/// The inter-node delivery seam. See the module docs.
pub trait Bus: Send + Sync + 'static {
    /// Queues an envelope for `topic` without waiting.
    fn publish(&self, topic: Topic, env: Arc<Envelope>) -> Result<(), BusError>;
    /// Queues an envelope for `topic` and resolves once it is written (Redis answered
    /// the pipeline that carried it), deleting `settle` in the same script as the
    /// publication (atomically, for a channel with history). The
    /// default, for a bus without a remote end, queues and resolves at once; `settle`
    /// is then the caller's to apply.
    fn publish_confirmed(
        &self,
        topic: Topic,
        env: Arc<Envelope>,
        settle: Option<Settle>,
    ) -> BoxFuture<'static, Result<bool, BusError>> {
        let _ = settle;
        let queued = self.publish(topic, env).map(|()| false);
        Box::pin(std::future::ready(queued))
    }
    /// Starts receiving a channel's publications (idempotent; the registry calls it when
    /// the first local member joins).
    fn subscribe(&self, channel: &str);
    /// Resolves once this node really receives `channel`'s publications (Redis has
    /// confirmed the subscription), or false after `timeout`. A client is told
    /// "subscribed" only after this, so nothing published after the answer is missed.
    fn wait_subscribed(&self, channel: &str, timeout: Duration) -> BoxFuture<'static, bool>;
    /// Stops receiving a channel's publications (when the last local member leaves).
    fn unsubscribe(&self, channel: &str);
    /// Whether the bus is connected now (readiness).
    fn is_up(&self) -> bool;
    /// Whether other nodes can exist behind this bus (false for the embedded node: the
    /// router then skips publishing channel traffic nobody else could receive).
    fn is_clustered(&self) -> bool;
    /// Envelopes accepted by `publish` but not yet written (drain waits for zero).
    fn pending(&self) -> usize {
        0
    }
}
