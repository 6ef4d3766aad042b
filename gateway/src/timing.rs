//! `~timing` checks at the moment of delivery, shared by the adapters.

use murmur_broker::metrics::Metrics;
use serde_json::Value;

/// False for a message whose `expires_time` has passed (it is dropped, never
/// delivered, and counted); a stale one is delivered and counted
/// ([`Metrics::deliverable`]).
pub fn deliverable(metrics: &Metrics, protocol: &str, decorator: Option<&Value>) -> bool {
    metrics.deliverable(protocol, decorator)
}
