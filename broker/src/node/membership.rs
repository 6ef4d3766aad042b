//! Cluster membership: heartbeats into the store, re-announcing local routing state when
//! the bus comes back, pruning dead nodes, the node list.

use std::sync::atomic::Ordering;

use murmur_shared::ids::now_ms;
use tracing::{debug, warn};

use crate::store::{NodeInfo, ProviderEntry, StoreError};

use super::Node;

impl Node {
    pub(super) async fn heartbeat(&self) {
        let info = self.info();
        let up = self.router.bus().is_up();
        self.metrics.bus_up.set(i64::from(up));
        if up && !self.bus_was_up.swap(true, Ordering::Relaxed) {
            // The bus (re)connected: Redis may have lost what this node announced.
            self.reannounce().await;
        } else if !up {
            self.bus_was_up.store(false, Ordering::Relaxed);
        }
        if let Err(e) = self.store.heartbeat(info, self.config.heartbeat_ttl).await {
            self.metrics
                .store_errors
                .with_label_values(&["heartbeat"])
                .inc();
            debug!(error = %e, "heartbeat failed");
        }
    }

    /// Writes the routing state of every local session to the store again: owners and
    /// provider entries (the local registry is the truth; Redis mirrors it).
    async fn reannounce(&self) {
        let store = &self.store;
        let ttl = self.config.record_refresh * 3;
        let mut failed = false;
        for (id, _) in self.registry.all() {
            failed |= store.set_owner(id, self.id().clone(), ttl).await.is_err();
        }
        for (ns, sessions) in self.registry.providers() {
            for session in sessions {
                let entry = ProviderEntry {
                    session,
                    node: self.id().clone(),
                };
                failed |= store.add_provider(&ns, entry).await.is_err();
            }
        }
        if failed {
            self.metrics
                .store_errors
                .with_label_values(&["reannounce"])
                .inc();
            // Try again at the next heartbeat.
            self.bus_was_up.store(false, Ordering::Relaxed);
        }
    }

    /// Cleans up after nodes whose heartbeat expired (their providers leave the
    /// routing table; their sessions are already unreachable since owners are checked
    /// against live nodes).
    pub(super) async fn prune_dead_nodes(&self) {
        match self.store.prune_dead_nodes().await {
            Ok(dead) => {
                for id in dead {
                    warn!(node = %id, "node stopped heartbeating: removed from the cluster");
                    // Nobody listening is fine: no service needs to know.
                    let _ = self.lost.send(id);
                }
            }
            Err(_) => self
                .metrics
                .store_errors
                .with_label_values(&["prune"])
                .inc(),
        }
    }

    /// This node as it announces itself.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id().clone(),
            sessions: self.registry.counts(),
            started_ms: self.started_ms,
            heartbeat_ms: now_ms(),
            draining: self.is_draining(),
        }
    }

    /// Live nodes of the cluster (this one alone in embedded mode).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.store.nodes().await
    }
}
