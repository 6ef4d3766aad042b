//! Slow consumers (ARCHITECTURE invariants, CONTRACT §9): a Starling that stops reading
//! while its channel is flooded is disconnected with close 4001 once its bounded
//! outbound queue overflows, counted in the delivery metrics, and other Starlings on the
//! node are unaffected.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{ping, subscribe, uniq};
use murmur_tests::{api_post_many, http, metrics, Node, Starling};
use serde_json::json;

/// Messages published in the flood. The server queues at most 8192 frames per
/// connection, and the kernel socket buffers of a client that never reads hold at most a
/// few MiB (a few hundred 8 KiB frames), so 12 000 × 8 KiB overflows the queue with a
/// wide margin.
const FLOOD: usize = 12_000;
/// Size of each message's data.
const DATA_BYTES: usize = 8 * 1024;
/// Concurrent publishes.
const PARALLEL: usize = 8;

/// A subscriber that never reads is closed with 4001 after a flood of 12 000 × 8 KiB
/// backend publishes; another Starling on the node keeps working throughout, and the
/// slow-consumer drop is counted in `murmur_deliveries_total`.
#[actix_rt::test]
async fn slow_consumer_is_closed_with_4001() {
    let node = Node::start().await;
    let channel = uniq("flood-");
    let mut slow = Starling::connect(&node, "slow").await;
    subscribe(&mut slow, &channel).await;
    let mut other = Starling::connect(&node, "other").await;
    ping(&mut other).await;

    let body =
        Bytes::from(json!({ "channel": channel, "data": "x".repeat(DATA_BYTES) }).to_string());
    let client = http();
    for batch in 0..FLOOD / PARALLEL {
        for status in api_post_many(&client, &node, "/api/v1/publish", &body, PARALLEL).await {
            assert_eq!(status, 200, "publish in batch {batch}");
        }
        if batch % 50 == 0 {
            ping(&mut other).await;
            // Once the node has closed the slow client, the rest of the flood would only
            // outlast the 10 s the closed client is given to read its close frame.
            if slow_drops(&metrics(&node).await) >= 1.0 {
                break;
            }
        }
    }

    // Only now does the slow client read: it finds the messages that made it into its
    // queue, then the close.
    let close = slow.ws().expect_close_within(Duration::from_secs(30)).await;
    assert_eq!(close.as_ref().map(|c| c.0), Some(4001), "{close:?}");

    ping(&mut other).await;
    let text = metrics(&node).await;
    assert!(
        slow_drops(&text) >= 1.0,
        "a slow-consumer drop must be counted for protocol=helios:\n{text}"
    );
}

/// Helios deliveries counted as dropped for a slow consumer.
fn slow_drops(text: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("murmur_deliveries_total{")
                && l.contains("protocol=\"helios\"")
                && l.contains("slow")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
