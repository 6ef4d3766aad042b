//! Faults, part two (continued): Redis stops answering but keeps its data. The test's
//! redis-server is frozen with SIGSTOP for a few seconds under the same mixed load as in
//! `fault_redis_outage.rs` and then resumed with SIGCONT: a stalled or partitioned Redis
//! rather than a crashed one. Commands sent meanwhile wait in Redis's socket buffers; the
//! nodes give up on them after their 2 s timeouts (docs/cluster.md, "When Redis goes
//! away"), and Redis may still carry them out once it runs again.
//!
//! Because the data survives, this is where "held messages are delivered once" and "ACKed
//! Sink events are not lost" are checked across a Redis outage (with the empty restart
//! of `fault_redis_outage.rs`, Redis's data, held messages included, are gone by design).

mod fault_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use fault_common::*;
use murmur_tests::{eventually, Cluster, Node, RedisServer};
use serde_json::json;

const DETECT_BOUND: Duration = Duration::from_secs(5);
const RECONNECT_BOUND: Duration = Duration::from_secs(10);
const FEED_RATE: u64 = 50;
const PERIOD: Duration = Duration::from_millis(50);
/// Held publications accepted just before the freeze: `HELD` due 1 s later (during the
/// freeze), `HELD` more due [`LATE_DUE_MS`] later (after it).
const HELD: usize = 10;
const LATE_DUE_MS: i64 = 8000;
/// A held job claimed by a command that timed out waits for its 10 s lease to run out
/// (docs/timing.md, "Crash window"): so held messages may come this long after Redis
/// resumes.
const HELD_LATE_BOUND: Duration = Duration::from_secs(20);
const NACK_UNAVAILABLE: (&[u8], &str) = (&[0x02], "temporarily unavailable; send again later");

/// The pid of `redis` (`INFO server`).
async fn redis_pid(redis: &RedisServer) -> u32 {
    let info = redis
        .cmd(&["INFO", "server"])
        .await
        .as_str()
        .expect("INFO answers a bulk string");
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in INFO server: {info}"))
}

/// SIGSTOP on the test's own redis-server, undone (SIGCONT) on [`Freeze::thaw`] or drop.
struct Freeze {
    pid: u32,
    frozen: bool,
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run `kill {sig} {pid}`: {e}"));
    assert!(status.success(), "`kill {sig} {pid}` failed: {status}");
}

impl Freeze {
    fn start(pid: u32) -> Freeze {
        signal(pid, "-STOP");
        Freeze { pid, frozen: true }
    }

    fn thaw(&mut self) {
        if std::mem::take(&mut self.frozen) {
            signal(self.pid, "-CONT");
        }
    }
}

impl Drop for Freeze {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// Redis frozen under load, then resumed with its data. Asserted exactly:
///
/// * **readiness**: every node's `/readyz` is non-200 within 5 s of the freeze and 200
///   again within 10 s of the resume.
/// * **held messages**: the 20 accepted just before the freeze are each released exactly
///   once (late, within 20 s of the resume, for the 10 due during the freeze) and never
///   delivered twice; the 10 due after it reach the subscriber on every node. (The 10
///   released the moment Redis answers again reach the nodes whose bus has re-subscribed
///   by then: printed.)
/// * **Sink**: every device PUBLISH answered during the freeze is NACKed `02`; sent again,
///   every event ends up ACKed, and the store holds every event exactly once (inbound
///   stream and seen-set), and every ACKed event reaches both `sink/<client>` subscribers
///   exactly once: also an event whose first store command timed out during the freeze
///   (NACK `02`) but ran when Redis resumed, so that its resend is a duplicate
///   (docs/sink.md: a duplicate is "not published *again*"; this one never was).
/// * **Helios**: no subscriber gets a publication twice; every publication answered
///   before the freeze and every one sent after all nodes were ready again reaches every
///   subscriber, the latter in order; the subscriber on the publishing node gets every
///   publication but those counted as lost in `murmur_bus_errors_total{kind="publish"}`.
#[actix_rt::test]
async fn redis_frozen_under_mixed_load_keeps_held_messages_and_acked_events() {
    let cluster = Cluster::start_with(3, |_, b| b.env("MURMUR_DEV", "1")).await;
    let sinks: Vec<SocketAddr> = cluster.nodes().iter().map(Node::sink_addr).collect();
    let feed_ch = uniq("feed-");
    let held_ch = uniq("held-");
    let instances: Vec<u32> = (0..3).map(|_| sink_instance()).collect();
    let clients: Vec<String> = instances.iter().map(|i| format!("dev-{i}")).collect();
    let sink_channels: Vec<String> = clients.iter().map(|c| format!("sink/{c}")).collect();
    let sink_refs: Vec<&str> = sink_channels.iter().map(String::as_str).collect();
    let watchers = [
        Collector::start(
            "sink watcher on node 0",
            subscribed(cluster.node(0), "w0", &sink_refs).await,
            None,
        ),
        Collector::start(
            "sink watcher on node 2",
            subscribed(cluster.node(2), "w2", &sink_refs).await,
            None,
        ),
    ];
    let mut subs = Vec::new();
    for k in 0..3 {
        subs.push(Collector::start(
            &format!("subscriber on node {k}"),
            subscribed(cluster.node(k), "sub", &[&feed_ch, &held_ch]).await,
            None,
        ));
    }
    let pid = redis_pid(cluster.redis()).await;

    let feed = Feed::start(&feed_ch, &cluster.node(1).internal_url(), FEED_RATE);
    let devices: Vec<SinkDevice> = instances
        .iter()
        .enumerate()
        .map(|(k, &inst)| SinkDevice::start(inst, sinks.clone(), usize::from(k == 2), PERIOD))
        .collect();
    eventually("the load to run before the freeze", CROSS, || async {
        let ok = feed.accepted() >= 50 && devices.iter().all(|d| d.log.borrow().acked() >= 5);
        ok.then_some(())
    })
    .await;

    let c = client();
    let node0 = cluster.node(0).internal_url();
    let held_at = now();
    for h in 0..2 * HELD {
        let delay = if h < HELD { 1000 } else { LATE_DUE_MS };
        let (status, body) = try_publish(
            &c,
            &node0,
            &held_ch,
            json!({ "h": h }),
            Some(json!({ "delay_milli": delay })),
        )
        .await
        .unwrap_or_else(|e| panic!("hold {h}: {e}"));
        assert_eq!(status, 200, "hold {h}: {body}");
        assert!(body["deliverAt"].is_string(), "{body}");
    }

    // ---- Redis freezes ------------------------------------------------------------------
    let freezing_at = now();
    let mut freeze = Freeze::start(pid);
    assert!(
        freezing_at < held_at + 1000,
        "precondition: Redis freezes before the held messages are due"
    );
    for node in cluster.nodes() {
        eventually(
            &format!("/readyz of {} to turn non-200", node.id()),
            DETECT_BOUND.saturating_sub(Duration::from_millis((now() - freezing_at) as u64)),
            || async { (node.readyz().await != 200).then_some(()) },
        )
        .await;
    }
    let detected_at = now();
    assert!(
        detected_at - freezing_at <= DETECT_BOUND.as_millis() as i64,
        "readiness turned false {} ms after Redis froze",
        detected_at - freezing_at
    );
    let feed_at_detection = feed.log.borrow().len();
    eventually(
        "every device to be NACKed and the feed to go on",
        CROSS,
        || async {
            let ok = devices.iter().all(|d| d.log.borrow().nacks() >= 1)
                && feed.log.borrow().len() >= feed_at_detection + 25;
            ok.then_some(())
        },
    )
    .await;

    // ---- Redis resumes --------------------------------------------------------------------
    freeze.thaw();
    let resumed_at = now();
    for node in cluster.nodes() {
        eventually(
            &format!("/readyz of {} to be 200 again", node.id()),
            RECONNECT_BOUND,
            || async { (node.readyz().await == 200).then_some(()) },
        )
        .await;
    }
    let ready_at = now();
    assert!(
        ready_at < held_at + LATE_DUE_MS,
        "precondition: every node is ready before the late held messages are due"
    );
    println!(
        "Redis frozen {} ms (nodes unready after {} ms); ready {} ms after the resume",
        resumed_at - freezing_at,
        detected_at - freezing_at,
        ready_at - resumed_at
    );

    eventually("the load to run after the freeze", CROSS, || async {
        let ok = feed
            .log
            .borrow()
            .iter()
            .filter(|p| p.sent_ms > ready_at && p.outcome == Ok(200))
            .count()
            >= 50
            && devices.iter().all(|d| {
                d.log
                    .borrow()
                    .events
                    .iter()
                    .filter(|e| e.acked.is_some_and(|(_, at)| at > ready_at))
                    .count()
                    >= 5
            });
        ok.then_some(())
    })
    .await;
    let published = feed.stop().await;
    let mut logs = Vec::new();
    for d in devices {
        logs.push(d.stop(CROSS).await);
    }
    let nodes: Vec<&Node> = cluster.nodes().iter().collect();
    let released = eventually(
        "the held messages to be released after the resume",
        HELD_LATE_BOUND,
        || async {
            let mut sum = 0.0;
            for n in &nodes {
                sum += metric(
                    n,
                    "murmur_timing_total",
                    &[("protocol", "api"), ("event", "released")],
                )
                .await;
            }
            (sum >= 2.0 * HELD as f64).then_some(sum)
        },
    )
    .await;

    let marker = uniq("end-");
    for col in watchers.iter().chain(subs.iter()) {
        col.expect_markers(vec![marker.clone()]);
    }
    let node2 = cluster.node(2);
    publish_marker(node2, &feed_ch, &marker).await;
    publish_marker(node2, &held_ch, &marker).await;
    for ch in &sink_channels {
        publish_marker(node2, ch, &marker).await;
    }
    let mut watched = Vec::new();
    for w in watchers {
        watched.push(w.finish(CROSS).await);
    }
    let mut got = Vec::new();
    for s in subs {
        got.push(s.finish(CROSS).await);
    }

    // ---- held messages ----------------------------------------------------------------------
    assert_eq!(
        released,
        2.0 * HELD as f64,
        "each held message released once"
    );
    for g in &got {
        let hs: Vec<u64> = g
            .on(&held_ch)
            .iter()
            .map(|n| {
                n.data["h"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{:?}", n.data))
            })
            .collect();
        let (missing, duplicated) =
            missing_and_duplicated(HELD as u64..2 * HELD as u64, hs.iter().copied());
        assert!(
            missing.is_empty(),
            "{}: each held message due after the freeze delivered: missing {missing:?}",
            g.label
        );
        assert!(
            duplicated.is_empty(),
            "{}: no held message twice: {duplicated:?}",
            g.label
        );
        // Due during the freeze, released as soon as Redis answers again: a node whose bus
        // has not re-subscribed yet misses them (channels are not durable).
        let during: Vec<(u64, i64)> = g
            .on(&held_ch)
            .iter()
            .filter(|n| n.data["h"].as_u64() < Some(HELD as u64))
            .map(|n| (n.data["h"].as_u64().unwrap(), n.at_ms - resumed_at))
            .collect();
        println!(
            "{}: {} of the {HELD} held messages due during the freeze, (h, ms after the \
             resume): {during:?}",
            g.label,
            during.len()
        );
    }
    for n in cluster.nodes() {
        assert_eq!(
            metric(n, "murmur_scheduled_messages", &[]).await,
            0.0,
            "{}: schedule empty",
            n.id()
        );
    }

    // ---- Helios ----------------------------------------------------------------------------------
    assert!(
        published.iter().all(|p| p.outcome == Ok(200)),
        "the API answers 200 throughout: {:?}",
        published
            .iter()
            .filter(|p| p.outcome != Ok(200))
            .take(3)
            .collect::<Vec<_>>()
    );
    let before: Vec<u64> = published
        .iter()
        .filter(|p| p.done_ms < freezing_at)
        .map(|p| p.i)
        .collect();
    let after: Vec<u64> = published
        .iter()
        .filter(|p| p.sent_ms > ready_at)
        .map(|p| p.i)
        .collect();
    let everything: Vec<u64> = published.iter().map(|p| p.i).collect();
    let bus_errors: Vec<String> = murmur_tests::metrics(cluster.node(1))
        .await
        .lines()
        .filter(|l| l.starts_with("murmur_bus_errors_total"))
        .map(str::to_string)
        .collect();
    let publish_errors = metric(
        cluster.node(1),
        "murmur_bus_errors_total",
        &[("kind", "publish")],
    )
    .await;
    println!("node 1 (the publishing node): {bus_errors:?}");
    for (k, g) in got.iter().enumerate() {
        let is: Vec<u64> = g.on(&feed_ch).iter().map(|n| n.i().unwrap()).collect();
        let set: BTreeSet<u64> = is.iter().copied().collect();
        let (_, duplicated) =
            missing_and_duplicated(everything.iter().copied(), is.iter().copied());
        assert!(
            duplicated.is_empty(),
            "{}: no publication twice: {}",
            g.label,
            first(&duplicated, 10)
        );
        let missing: Vec<u64> = before
            .iter()
            .chain(after.iter())
            .copied()
            .filter(|i| !set.contains(i))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: every publication answered before the freeze or sent after it: missing {}",
            g.label,
            first(&missing, 20)
        );
        let after_got: Vec<u64> = is.iter().copied().filter(|i| after.contains(i)).collect();
        assert_eq!(after_got, after, "{}: in order after the resume", g.label);
        let in_freeze: Vec<u64> = everything
            .iter()
            .copied()
            .filter(|i| !before.contains(i) && !after.contains(i))
            .collect();
        let lost: Vec<u64> = in_freeze
            .iter()
            .copied()
            .filter(|i| !set.contains(i))
            .collect();
        if k == 1 {
            // The publishing node delivers what the bus refused locally; what the bus had
            // taken and then lost must be counted as a failed batch.
            assert!(
                lost.len() as f64 <= publish_errors,
                "{}: publications answered 200 and never delivered, not even on the \
                 publishing node: {} (murmur_bus_errors_total{{kind=\"publish\"}} = \
                 {publish_errors})",
                g.label,
                first(&lost, 10)
            );
        }
        println!(
            "{}: {} of {} publications; of the {} between the freeze and readiness, missing {}",
            g.label,
            is.len(),
            everything.len(),
            in_freeze.len(),
            first(&lost, 10)
        );
    }

    // ---- Sink ----------------------------------------------------------------------------------
    for log in &logs {
        let client = &log.client;
        assert!(
            log.events.iter().all(|e| e.acked.is_some()),
            "{client}: every event ends up ACKed"
        );
        let mut nacked = BTreeSet::new();
        for e in &log.events {
            for (machine, human, _) in &e.nacks {
                assert_eq!(
                    (machine.as_slice(), human.as_str()),
                    NACK_UNAVAILABLE,
                    "{client}: the NACK while the store does not answer"
                );
                nacked.insert(e.offset);
            }
        }
        assert!(
            !nacked.is_empty(),
            "{client}: NACKed while Redis was frozen"
        );
        let all: Vec<u64> = log.events.iter().map(|e| e.offset).collect();
        let stored = stored_offsets(cluster.redis(), client).await;
        let (missing, duplicated) =
            missing_and_duplicated(all.iter().copied(), stored.iter().copied());
        assert!(
            missing.is_empty() && duplicated.is_empty(),
            "{client}: every ACKed event stored exactly once: missing {missing:?}, duplicated \
             {duplicated:?}"
        );
        assert_eq!(seen_count(cluster.redis(), client).await, all.len() as i64);
        for w in &watched {
            let seen = published_offsets(w, client);
            let (missing, duplicated) =
                missing_and_duplicated(all.iter().copied(), seen.iter().copied());
            assert!(
                duplicated.is_empty(),
                "{}: {client}'s events at most once: {duplicated:?}",
                w.label
            );
            assert!(
                missing.is_empty(),
                "{}: every ACKed event of {client} published once: missing {missing:?} (NACKed \
                 02 first: {nacked:?}; a store command that timed out during the freeze ran \
                 when Redis resumed, so the resend was ACKed as a duplicate and never \
                 published)",
                w.label
            );
            println!(
                "{}: {client}: {} events, NACKed {nacked:?}, each published once",
                w.label,
                all.len()
            );
        }
    }
}
