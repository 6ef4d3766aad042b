//! `~timing` holds in cluster mode (CONTRACT §7: "Held messages survive a node restart in
//! cluster mode — also when the node that accepted them is lost — and are delivered
//! exactly once"): three nodes on one real Redis. Held jobs live in Redis and are claimed
//! atomically by whichever node's scheduler gets there first.
//!
//! * A publication held by node A is delivered once to subscribers on B and C after A is
//!   SIGKILLed.
//! * 300 publications held through all three nodes, due at the same instant, reach a
//!   subscriber on every node exactly once each (counted per message id).
//! * 10 000 publications due at the same instant all reach one subscriber exactly once,
//!   and, spread over ten subscribers, are all claimed once and delivered once; both print
//!   the measured claim and delivery rates.

mod timing_common;

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use murmur_tests::{Cluster, Node, Starling, WsEvent, API_KEY};
use serde_json::{json, Value};
use timing_common::{
    api_publish, assert_deliver_at, canonical, notification_on, now_ms, subscribe, timing_count,
    uniq, up_to_marker, wait_scheduled, CROSS, SOON,
};
use tokio::time::Instant;

/// An HTTP client reused across many API calls (keeps connections alive).
fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// `POST /api/v1/publish` through `c` → `(status, body)`.
async fn publish_via(c: &awc::Client, node_url: &str, body: &Value) -> (u16, Value) {
    let mut res = c
        .post(format!("{node_url}/api/v1/publish"))
        .insert_header(("Authorization", format!("Bearer {API_KEY}")))
        .send_json(body)
        .await
        .unwrap_or_else(|e| panic!("POST {node_url}/api/v1/publish failed: {e}"));
    let bytes = res
        .body()
        .await
        .unwrap_or_else(|e| panic!("reading the publish answer failed: {e}"));
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (res.status().as_u16(), json)
}

/// The sum of `murmur_timing_total{protocol,event}` over `nodes`, and each node's share.
async fn timing_total(nodes: &[&Node], protocol: &str, event: &str) -> (f64, Vec<f64>) {
    let mut each = Vec::new();
    for n in nodes {
        each.push(timing_count(n, protocol, event).await);
    }
    (each.iter().sum(), each)
}

/// Reads `n` notifications on `channel` from `s` (each within `bound`) and counts them
/// per `data.i`; panics on an index out of range.
async fn count_by_index(s: &mut Starling, channel: &str, n: usize, bound: Duration) -> Vec<u32> {
    let mut seen = vec![0u32; n];
    for _ in 0..n {
        let note = notification_on(s, channel, bound).await;
        let i = note["notification"]["data"]["i"]
            .as_u64()
            .unwrap_or_else(|| panic!("unexpected notification: {note}")) as usize;
        assert!(i < n, "index out of range: {note}");
        seen[i] += 1;
    }
    seen
}

/// Asserts every index was seen exactly once.
fn assert_each_once(who: &str, seen: &[u32]) {
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).collect();
    let duplicated: Vec<(usize, u32)> = (0..seen.len())
        .filter(|&i| seen[i] > 1)
        .map(|i| (i, seen[i]))
        .collect();
    assert!(
        missing.is_empty() && duplicated.is_empty(),
        "{who}: each held message exactly once; missing {} (first {:?}), duplicated {} (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
}

#[actix_rt::test]
async fn a_message_held_by_a_node_that_is_killed_is_delivered_once_by_the_survivors() {
    let mut cluster = Cluster::start(3).await;
    let channel = uniq("held-kill-");
    let mut on_b = Starling::connect(cluster.node(1), &uniq("b-")).await;
    subscribe(&mut on_b, &channel).await;
    let mut on_c = Starling::connect(cluster.node(2), &uniq("c-")).await;
    subscribe(&mut on_c, &channel).await;

    let timing = json!({"delay_milli": 3000, "out_time": canonical(now_ms())});
    let before = now_ms();
    let body = api_publish(
        cluster.node(0),
        &channel,
        json!({"held": "by A"}),
        Some(timing.clone()),
    )
    .await;
    let due = assert_deliver_at(
        "held on A",
        &body["deliverAt"],
        before + 3000,
        now_ms() + 3000,
    );
    // The hold is acknowledged: it is in Redis, visible to every node.
    wait_scheduled(cluster.node(1), 1.0, SOON).await;
    cluster.node_mut(0).kill().await;
    assert!(now_ms() < due, "A died before the message was due");

    for (who, s) in [("B", &mut on_b), ("C", &mut on_c)] {
        let n = notification_on(s, &channel, CROSS).await;
        let arrived = now_ms();
        assert!(
            arrived >= due,
            "{who}: not before it is due ({} < {})",
            canonical(arrived),
            canonical(due)
        );
        assert_eq!(
            n["notification"]["data"],
            json!({"held": "by A"}),
            "{who}: {n}"
        );
        assert_eq!(n["~timing"], timing, "{who}: {n}");
    }
    let survivors = [cluster.node(1), cluster.node(2)];
    let (released, each) = timing_total(&survivors, "api", "released").await;
    assert_eq!(
        released, 1.0,
        "claimed and released by exactly one survivor: {each:?}"
    );
    for node in survivors {
        wait_scheduled(node, 0.0, SOON).await;
    }
    for (who, s) in [("B", &mut on_b), ("C", &mut on_c)] {
        let extra = up_to_marker(cluster.node(1), s, &channel).await;
        assert!(
            extra.is_empty(),
            "{who}: delivered exactly once, got again {extra:?}"
        );
    }
}

#[actix_rt::test]
async fn three_nodes_racing_deliver_300_held_messages_exactly_once() {
    const N: usize = 300;
    let cluster = Cluster::start(3).await;
    let channel = uniq("race-");
    let mut subs = Vec::new();
    for node in cluster.nodes() {
        let mut s = Starling::connect(node, &uniq("sub-")).await;
        subscribe(&mut s, &channel).await;
        subs.push(s);
    }
    let c = client();
    let urls: Vec<String> = cluster.nodes().iter().map(Node::internal_url).collect();
    let due = (now_ms() + 4000) / 1000 * 1000 + 1000;
    let until = canonical(due);
    let answers: Vec<(u16, Value)> = stream::iter(0..N)
        .map(|i| {
            let (c, url) = (&c, &urls[i % 3]);
            let body = json!({"channel": channel, "data": {"i": i},
                              "~timing": {"wait_until_time": until}});
            async move { publish_via(c, url, &body).await }
        })
        .buffer_unordered(24)
        .collect()
        .await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["deliverAt"], until.as_str(), "{body}");
    }
    assert!(now_ms() < due, "all {N} were held before they were due");

    for (k, s) in subs.iter_mut().enumerate() {
        let seen = count_by_index(s, &channel, N, CROSS).await;
        assert_each_once(&format!("subscriber on node {k}"), &seen);
    }
    let nodes: Vec<&Node> = cluster.nodes().iter().collect();
    let (released, each) = timing_total(&nodes, "api", "released").await;
    assert_eq!(released, N as f64, "each job claimed once in all: {each:?}");
    println!("300 held messages due together: released per node {each:?}");
    for (k, s) in subs.iter_mut().enumerate() {
        let extra = up_to_marker(cluster.node(k), s, &channel).await;
        assert!(
            extra.is_empty(),
            "node {k}: no late duplicates, got {}",
            extra.len()
        );
    }
}

/// What one subscriber of a bulk round received.
struct Received {
    /// Per global message index: how often it arrived.
    seen: Vec<u32>,
    first_ms: Option<i64>,
    last_ms: i64,
    /// Why reading stopped early (close, silence), if it did.
    stopped: Option<String>,
}

/// Reads the `want` notifications of `channel` on `s` (raw frames, as fast as possible),
/// the first one allowed to come `due` + [`CROSS`], each next one within [`CROSS`].
async fn read_bulk(
    s: &mut Starling,
    channel: &str,
    want: usize,
    total: usize,
    due: i64,
) -> Received {
    let mut r = Received {
        seen: vec![0; total],
        first_ms: None,
        last_ms: 0,
        stopped: None,
    };
    let mut got = 0;
    while got < want {
        let bound = if got == 0 {
            Duration::from_millis((due - now_ms()).max(0) as u64) + CROSS
        } else {
            CROSS
        };
        let text = match s.ws().try_recv(bound).await {
            Some(WsEvent::Text(t)) => t,
            other => {
                r.stopped = Some(format!("after {got} of {want}: {other:?}"));
                return r;
            }
        };
        let at = now_ms();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["notification"]["topic"], channel, "{v}");
        let i = v["notification"]["data"]["i"].as_u64().unwrap() as usize;
        assert!(i < total, "{v}");
        r.seen[i] += 1;
        r.first_ms.get_or_insert(at);
        r.last_ms = at;
        got += 1;
    }
    r
}

/// The outcome of [`bulk`].
struct Bulk {
    due: i64,
    publish_secs: f64,
    /// When the nodes' `released` counters added up to all messages (polled every 25 ms).
    claimed_ms: Option<i64>,
    released_per_node: Vec<f64>,
    received: Vec<Received>,
}

/// Holds `total` publications through the API of all three nodes (48 in flight), all due
/// at one instant; message `i` goes to `channels[i % k]`, whose subscriber is `subs[i % k]`.
/// Then reads every subscriber, with `measure_claims` while polling the `released`
/// counters (which costs the readers some time on this single-threaded runtime).
async fn bulk(
    cluster: &Cluster,
    subs: &mut [Starling],
    channels: &[String],
    total: usize,
    measure_claims: bool,
) -> Bulk {
    /// Time allowed for holding all messages before they are due: about 3 s on a quiet
    /// 2-CPU machine with a debug build, more than 10 s when the rest of the suite runs
    /// beside it (CI).
    const PUBLISH_BUDGET_MS: i64 = 25_000;
    let k = channels.len();
    let c = client();
    let urls: Vec<String> = cluster.nodes().iter().map(Node::internal_url).collect();
    let due = (now_ms() + PUBLISH_BUDGET_MS) / 1000 * 1000 + 1000;
    let until = canonical(due);
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(0..total)
        .map(|i| {
            let (c, url, until) = (&c, &urls[i % 3], &until);
            let body = json!({"channel": channels[i % k], "data": {"i": i},
                              "~timing": {"wait_until_time": until}});
            async move {
                let (status, answer) = publish_via(c, url, &body).await;
                assert_eq!(answer["deliverAt"], until.as_str(), "{answer}");
                status
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    let publish_secs = started.elapsed().as_secs_f64();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every publish answered 200"
    );
    let held_by = now_ms();
    assert!(
        held_by < due,
        "holding {total} messages took {publish_secs:.1} s: past the due time by {} ms",
        held_by - due
    );
    wait_scheduled(cluster.node(0), total as f64, SOON).await;

    let nodes: Vec<&Node> = cluster.nodes().iter().collect();
    let claimed = async {
        if !measure_claims {
            return None;
        }
        let bound = Duration::from_millis((due + 60_000 - now_ms()).max(0) as u64);
        murmur_tests::poll_until(bound, || async {
            let (released, _) = timing_total(&nodes, "api", "released").await;
            (released >= total as f64).then(now_ms)
        })
        .await
    };
    let readers = futures_util::future::join_all(
        subs.iter_mut()
            .zip(channels)
            .map(|(s, ch)| read_bulk(s, ch, total / k, total, due)),
    );
    let (claimed_ms, received) = futures_util::future::join(claimed, readers).await;
    let (_, released_per_node) = timing_total(&nodes, "api", "released").await;
    Bulk {
        due,
        publish_secs,
        claimed_ms,
        released_per_node,
        received,
    }
}

impl Bulk {
    /// Prints the figures (claim rate, delivery rate) for the closing note.
    fn report(&self, what: &str, total: usize) {
        let claim = self.claimed_ms.map(|c| (c - self.due).max(1));
        let last = self.received.iter().map(|r| r.last_ms).max().unwrap_or(0);
        let first = self.received.iter().filter_map(|r| r.first_ms).min();
        let delivered: u32 = self
            .received
            .iter()
            .map(|r| r.seen.iter().sum::<u32>())
            .sum();
        println!(
            "{what}: {total} held through 3 nodes in {:.2} s ({:.0} holds/s); claimed by all \
             nodes within {} ms of the due time ({} claims/s; released per node {:?}); \
             delivered {delivered}: first {} ms, last {} ms after due ({:.0} deliveries/s)",
            self.publish_secs,
            total as f64 / self.publish_secs,
            claim.map_or("?".into(), |c| c.to_string()),
            claim.map_or("?".into(), |c| format!(
                "{:.0}",
                total as f64 * 1000.0 / c as f64
            )),
            self.released_per_node,
            first.map_or("?".into(), |f| (f - self.due).to_string()),
            last - self.due,
            f64::from(delivered) * 1000.0 / (last - self.due).max(1) as f64,
        );
    }

    /// Asserts every message was claimed once and delivered exactly once, none early.
    fn assert_exactly_once(&self, total: usize) {
        for (k, r) in self.received.iter().enumerate() {
            assert!(
                r.stopped.is_none(),
                "subscriber {k} stopped reading {}",
                r.stopped.as_deref().unwrap_or("")
            );
            if let Some(first) = r.first_ms {
                assert!(
                    first >= self.due,
                    "subscriber {k}: delivered {} ms early",
                    self.due - first
                );
            }
        }
        let mut seen = vec![0u32; total];
        for r in &self.received {
            for (i, n) in r.seen.iter().enumerate() {
                seen[i] += n;
            }
        }
        assert_each_once("the subscribers", &seen);
        let released: f64 = self.released_per_node.iter().sum();
        assert_eq!(
            released, total as f64,
            "each job claimed once: {:?}",
            self.released_per_node
        );
    }
}

/// The benchmark: 10 000 held publications due at the same instant, claimed by
/// three racing nodes, all reach one Helios subscriber exactly once.
#[actix_rt::test]
async fn ten_thousand_held_messages_due_together_reach_one_subscriber_exactly_once() {
    const N: usize = 10_000;
    let cluster = Cluster::start(3).await;
    let channel = uniq("bulk-");
    let mut subs = vec![Starling::connect(cluster.node(0), &uniq("sub-")).await];
    subscribe(&mut subs[0], &channel).await;
    // Nothing else runs on this runtime while the subscriber reads: it reads as fast as
    // it can.
    let round = bulk(
        &cluster,
        &mut subs,
        std::slice::from_ref(&channel),
        N,
        false,
    )
    .await;
    round.report("10k held, one subscriber", N);
    round.assert_exactly_once(N);
    for node in cluster.nodes() {
        wait_scheduled(node, 0.0, SOON).await;
    }
    let extra = up_to_marker(cluster.node(0), &mut subs[0], &channel).await;
    assert!(extra.is_empty(), "no late duplicates, got {}", extra.len());
}

/// The same 10 000 held publications spread over ten subscribers (1 000 each, on ten
/// channels): every one claimed once by the three racing nodes and delivered exactly once.
#[actix_rt::test]
async fn ten_thousand_held_messages_due_together_are_claimed_and_delivered_exactly_once() {
    const N: usize = 10_000;
    const K: usize = 10;
    let cluster = Cluster::start(3).await;
    let mut subs = Vec::new();
    let mut channels = Vec::new();
    for k in 0..K {
        let channel = uniq("bulk10-");
        let mut s = Starling::connect(cluster.node(k % 3), &uniq("sub-")).await;
        subscribe(&mut s, &channel).await;
        subs.push(s);
        channels.push(channel);
    }
    let round = bulk(&cluster, &mut subs, &channels, N, true).await;
    round.report("10k held, ten subscribers", N);
    round.assert_exactly_once(N);
    for node in cluster.nodes() {
        wait_scheduled(node, 0.0, SOON).await;
    }
    for (k, s) in subs.iter_mut().enumerate() {
        let extra = up_to_marker(cluster.node(k % 3), s, &channels[k]).await;
        assert!(
            extra.is_empty(),
            "subscriber {k}: no late duplicates, got {}",
            extra.len()
        );
    }
}
