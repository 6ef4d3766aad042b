//! Helios recovery is exact or fails (CONTRACT §10, issue findings 3 and 4): after
//! `connection:recovered` the client has every publication of its channels since the
//! last one it received — once after dropping duplicates by the notification's
//! `seq`/`epoch` extension, in order, with no gap — and otherwise it is told
//! `connection:recovery_failed` with the real reason. Covers a slow consumer closed
//! with 4001, a gap larger than the channel's history, and a node crash followed by
//! more publications than one history page.

mod common;

use std::time::Duration;

use common::{api_publish, recovery_token, subscribe, uniq, wait_connections, SOON};
use murmur_tests::{eventually, Cluster, Node, NodeBuilder, Starling, WsEvent};
use serde_json::{json, Value};

/// What a client keeps of a channel: the data of each publication it accepted, after
/// dropping those whose `(epoch, seq)` it already had, and how many it dropped.
#[derive(Default)]
struct Received {
    last: Option<(String, u64)>,
    data: Vec<Value>,
    seqs: Vec<u64>,
    duplicates: usize,
}

impl Received {
    /// Takes one channel notification; panics on a gap in `seq` within an epoch.
    fn take(&mut self, msg: &Value) {
        let n = &msg["notification"];
        let seq = n["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("channel notifications carry a seq: {msg}"));
        let epoch = n["epoch"]
            .as_str()
            .unwrap_or_else(|| panic!("channel notifications carry an epoch: {msg}"))
            .to_string();
        if let Some((e, s)) = &self.last {
            if *e == epoch && seq <= *s {
                self.duplicates += 1;
                return;
            }
            if *e == epoch {
                assert_eq!(seq, s + 1, "a gap in the channel's sequence: {msg}");
            }
        }
        self.last = Some((epoch, seq));
        self.seqs.push(seq);
        self.data.push(n["data"].clone());
    }

    fn indices(&self) -> Vec<u64> {
        self.data.iter().map(|d| d["i"].as_u64().unwrap()).collect()
    }
}

/// Reads notifications on `channel` into `got` until one on `until` arrives (returned),
/// or the socket closes (`None` plus the close frame).
async fn read_until(
    s: &mut Starling,
    channel: &str,
    until: &str,
    got: &mut Received,
) -> Result<Value, Option<(u16, String)>> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), s.ws().recv())
            .await
            .unwrap_or_else(|_| panic!("nothing within 20 s while waiting for {until}"));
        let text = match event {
            WsEvent::Text(t) => t,
            WsEvent::Close(c) => return Err(c),
            WsEvent::Closed => return Err(None),
            WsEvent::Binary(_) => panic!("binary frame from /starling"),
        };
        let msg: Value = serde_json::from_str(&text).unwrap();
        if msg["type"] != "notification" {
            continue;
        }
        let topic = msg["notification"]["topic"].as_str().unwrap_or_default();
        if topic == until {
            return Ok(msg["notification"]["data"].clone());
        }
        if topic == channel {
            got.take(&msg);
        }
    }
}

async fn publish_range(node: &Node, channel: &str, range: std::ops::Range<u64>, pad: usize) {
    let pad = "x".repeat(pad);
    for i in range {
        api_publish(node, channel, json!({"i": i, "pad": pad})).await;
    }
}

/// A subscriber that stops reading is closed with 4001 while publications pile up; it
/// reads what reached it, recovers with `?recover=`, and ends up with every
/// publication exactly once, in order — what did not fit came back from history.
#[actix_rt::test]
async fn a_slow_consumer_closed_4001_recovers_every_publication_once() {
    let node = NodeBuilder::new()
        .env("MURMUR_OUTBOUND_MAX_BYTES", "262144")
        .env("MURMUR_CHANNEL_HISTORY", "5000")
        .spawn()
        .await;
    let channel = uniq("slow-");
    let mut s = Starling::connect(&node, "slow").await;
    subscribe(&mut s, &channel).await;
    let (token, _) = recovery_token(&mut s).await;

    // The client reads nothing while 200 × 128 KiB go out: far past kernel buffers.
    // It then reads within the close linger (10 s), so its close frame reaches it.
    const N: u64 = 200;
    publish_range(&node, &channel, 0..N, 128 * 1024).await;

    let mut got = Received::default();
    let close = read_until(&mut s, &channel, "-", &mut got)
        .await
        .unwrap_err();
    assert_eq!(
        close,
        Some((4001, "slow consumer: outbound buffer full".into()))
    );
    assert!(
        (got.data.len() as u64) < N,
        "the flood must have been cut short"
    );
    drop(s);

    let url = node.ws_url(&format!("/starling?recover={token}"));
    let mut s = Starling::connect_url(&url).await;
    let data = read_until(&mut s, &channel, "connection:recovered", &mut got)
        .await
        .unwrap_or_else(|c| panic!("recovery closed: {c:?}"));
    assert!(data["buffered"].as_u64().unwrap() > 0, "{data}");
    assert_eq!(
        got.indices(),
        (0..N).collect::<Vec<_>>(),
        "every one, once, in order"
    );
    println!("duplicates dropped by seq: {}", got.duplicates);
}

/// Missing more publications than the channel keeps is not papered over: the client is
/// told `connection:recovery_failed` with the reason, and gets a fresh Starling. Within
/// what history keeps, the same recovery is exact.
#[actix_rt::test]
async fn a_gap_larger_than_history_fails_the_recovery_with_the_reason() {
    let node = NodeBuilder::new()
        .env("MURMUR_CHANNEL_HISTORY", "50")
        .spawn()
        .await;

    // Within history: 40 missed, all 40 replayed in order.
    let channel = uniq("kept-");
    let mut s = Starling::connect(&node, "alice").await;
    subscribe(&mut s, &channel).await;
    api_publish(&node, &channel, json!({"i": 0})).await;
    let mut got = Received::default();
    let first = s.next_notification(SOON).await;
    got.take(&first);
    let (token, id) = recovery_token(&mut s).await;
    s.close().await;
    wait_connections(&node, 0.0).await;
    publish_range(&node, &channel, 1..41, 0).await;
    let url = node.ws_url(&format!("/starling?recover={token}"));
    let mut s = Starling::connect_url(&url).await;
    read_until(&mut s, &channel, "connection:recovered", &mut got)
        .await
        .unwrap();
    assert_eq!(got.indices(), (0..41).collect::<Vec<_>>());
    assert_eq!(got.seqs, (1..=41).collect::<Vec<_>>());
    assert_eq!(got.duplicates, 0);
    let (token, again) = recovery_token(&mut s).await;
    assert_eq!(again, id);

    // Past history: 100 missed, 50 kept → recovery_failed, fresh Starling.
    s.close().await;
    wait_connections(&node, 0.0).await;
    publish_range(&node, &channel, 41..141, 0).await;
    let client = murmur_tests::token("alice");
    let url = node.ws_url(&format!("/starling?token={client}&recover={token}"));
    let mut s = Starling::connect_url(&url).await;
    let mut ignored = Received::default();
    let data = read_until(&mut s, &channel, "connection:recovery_failed", &mut ignored)
        .await
        .unwrap();
    assert_eq!(
        data["reason"],
        format!("channel {channel:?}: publications after seq 41 are no longer in its history")
    );
    assert!(
        ignored.data.is_empty(),
        "nothing replayed before the failure"
    );
    let (_, fresh) = recovery_token(&mut s).await;
    assert_ne!(fresh, id, "a failed recovery gives a fresh Starling");
}

/// A node crash: the survivor replays from the position the dead node saved (at most
/// a second behind), through more publications than one history page (1000), with no
/// gap; what the client already had comes again only as duplicates it can drop by seq.
#[actix_rt::test]
async fn a_crash_replays_everything_missed_across_history_pages() {
    let mut cluster = Cluster::start_with(2, |_, b| b.env("MURMUR_CHANNEL_HISTORY", "5000")).await;
    let channel = uniq("crash-");
    let mut s = Starling::connect(cluster.node(0), "bob").await;
    subscribe(&mut s, &channel).await;
    publish_range(cluster.node(1), &channel, 0..100, 0).await;
    let mut got = Received::default();
    while got.data.len() < 100 {
        let n = s.next_notification(SOON).await;
        got.take(&n);
    }
    let (token, id) = recovery_token(&mut s).await;

    // The dead node's last word on this Starling: its position, saved within a second.
    let key = format!("murmur:recovery:{id}");
    let redis = cluster.redis();
    eventually(
        "the position reaches the store",
        Duration::from_secs(5),
        || async {
            let rec = redis.cmd(&["GET", &key]).await.as_str()?;
            let rec: Value = serde_json::from_str(&rec).ok()?;
            (rec["seqs"][&channel]["seq"] == 100).then_some(())
        },
    )
    .await;

    cluster.node_mut(0).kill().await;
    drop(s);
    publish_range(cluster.node(1), &channel, 100..1600, 0).await;
    let url = cluster
        .node(1)
        .ws_url(&format!("/starling?recover={token}"));
    let mut s = Starling::connect_url(&url).await;
    let data = read_until(&mut s, &channel, "connection:recovered", &mut got)
        .await
        .unwrap_or_else(|c| panic!("recovery closed: {c:?}"));
    assert_eq!(data["buffered"], 1500, "{data}");
    assert_eq!(got.indices(), (0..1600).collect::<Vec<_>>());
    assert_eq!(got.duplicates, 0, "the saved position was current");
}
