//! The flusher of a per-node aggregator (delivery reports, read reports): it sleeps
//! until the first entry of a window, waits the window (cut short once `full` entries
//! wait), then takes everything and publishes it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::node::Node;

/// An aggregator a window flusher serves.
pub(crate) trait Windowed: Send + Sync + 'static {
    /// What the flusher takes at the end of a window.
    type Batch: Send;
    /// Woken on a window's first entry, and when `full` entries wait.
    fn wake(&self) -> &Notify;
    fn pending(&self) -> usize;
    fn take(&self) -> Self::Batch;
}

/// Runs the node's flusher of the aggregator `A` (a node extension), publishing each
/// window's batch with `publish`.
pub(crate) fn spawn<A: Windowed>(
    node: &Arc<Node>,
    window: Duration,
    full: usize,
    publish: fn(&Node, A::Batch),
) {
    let weak: Weak<Node> = Arc::downgrade(node);
    let Some(agg) = node.extension::<A>().cloned() else {
        return;
    };
    actix::spawn(async move {
        loop {
            agg.wake().notified().await;
            if agg.pending() < full {
                let _ = tokio::time::timeout(window, agg.wake().notified()).await;
            }
            let Some(node) = weak.upgrade() else { break };
            publish(&node, agg.take());
        }
    });
}
