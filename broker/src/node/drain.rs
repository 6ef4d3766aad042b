//! Drain: refusing new sessions, handing live ones over, flushing the bus, shutting down.

use std::sync::atomic::Ordering;
use std::time::Duration;

use murmur_shared::close::{CloseCode, CloseReason};
use tracing::warn;

use crate::session::actor::Kick;

use super::Node;

impl Node {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops taking new sessions (readiness turns false).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.drain_notify.notify_waiters();
    }

    /// Draining in a cluster: long-polls and streams end early so their clients come
    /// back through another node (an embedded node has none to hand over to).
    pub fn hands_over(&self) -> bool {
        self.is_draining() && self.router.bus().is_clustered()
    }

    /// Resolves when the node starts draining (long-polls end early so their clients
    /// come back through another node).
    pub async fn drained(&self) {
        let notified = self.drain_notify.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }

    /// Closes every local transport with 1001 in batches of `batch`, pausing `pause`
    /// between batches so clients do not all reconnect at the same instant. Recoverable
    /// sessions keep their state for recovery on another node.
    pub async fn disconnect_all_in_batches(
        &self,
        reason: &str,
        batch: usize,
        pause: Duration,
    ) -> usize {
        let all = self.registry.all();
        for (i, chunk) in all.chunks(batch.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            for (_, s) in chunk {
                s.addr
                    .do_send(Kick(CloseReason::new(CloseCode::GoingAway, reason)));
            }
        }
        all.len()
    }

    /// Waits (at most `timeout`) until the bus has written everything it accepted.
    pub async fn flush_bus(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.router.bus().pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Leaves the cluster: removes this node's heartbeat and providers from the store.
    pub async fn shutdown(&self) {
        if let Err(e) = self.store.remove_node(self.id().clone()).await {
            warn!(error = %e, "could not remove node from the store");
        }
    }
}
