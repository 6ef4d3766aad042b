//! `~timing` checks at the moment of delivery, shared by the adapters.

use murmur_broker::metrics::{outcome, Metrics};
use murmur_shared::ids::now_ms;
use murmur_shared::timing;
use serde_json::Value;

/// False for a message whose `expires_time` has passed (it is dropped, never
/// delivered, and counted); a stale one is delivered and counted.
pub fn deliverable(metrics: &Metrics, protocol: &str, decorator: Option<&Value>) -> bool {
    let Some(t) = decorator else { return true };
    let now = now_ms() as i64;
    if timing::expired(Some(t), now) {
        metrics
            .timing
            .with_label_values(&[protocol, "expired"])
            .inc();
        metrics.delivery(protocol, outcome::EXPIRED);
        return false;
    }
    if timing::stale(Some(t), now) {
        metrics.timing.with_label_values(&[protocol, "stale"]).inc();
        metrics.delivery(protocol, outcome::STALE);
    }
    true
}
