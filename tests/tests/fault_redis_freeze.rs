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

use std::time::Duration;

use fault_common::*;
use murmur_tests::{metric, metrics, Cluster, Node};
use serde_json::json;

/// Held publications accepted just before the freeze: `HELD` due [`EARLY_DUE_MS`] later
/// (during the freeze: Redis stays frozen at least until they are due), `HELD` more due
/// [`LATE_DUE_MS`] later (after it). Holding 20 takes well under 100 ms on a quiet
/// machine, but a second or more on two loaded cores: the early ones are due late enough
/// that the freeze still comes first.
const HELD: usize = 10;
const EARLY_DUE_MS: i64 = 3000;
const LATE_DUE_MS: i64 = 12_000;
/// A held job claimed by a command that timed out waits for its 10 s lease to run out
/// (docs/timing.md, "Crash window"): so held messages may come this long after Redis
/// resumes.
const HELD_LATE_BOUND: Duration = Duration::from_secs(20);

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
///   at most once and, but for those ACKed by another node between the freeze and the
///   moment every node was ready (channels are not durable, docs/cluster.md) and the one
///   ACKed as Redis froze (its publication may be lost with the bus batch), exactly
///   once: also an event whose first store command timed out during the freeze (NACK
///   `02`) but ran when Redis resumed, so that its resend is a duplicate (docs/sink.md: it
///   is published all the same, having never been).
/// * **Helios**: no subscriber gets a publication twice; every publication answered
///   before the freeze (but for those answered within 100 ms of it, whose bus batch may
///   be lost with it) and every one sent after all nodes were ready again reaches every
///   subscriber, the latter in order; of those made while Redis was frozen, the
///   subscriber on the publishing node gets every one but those counted as lost in
///   `murmur_bus_errors_total{kind="publish"}`.
#[actix_rt::test]
async fn redis_frozen_under_mixed_load_keeps_held_messages_and_acked_events() {
    let mut cluster = Cluster::start_with(3, |_, b| b.env("MURMUR_DEV", "1")).await;
    let load = RedisLoad::start(&cluster).await;
    let (feed_ch, held_ch) = (load.feed_ch.clone(), load.held_ch.clone());

    let node0 = cluster.node(0).internal_url();
    let held_at = now();
    for h in 0..2 * HELD {
        let delay = if h < HELD { EARLY_DUE_MS } else { LATE_DUE_MS };
        hold(&node0, &held_ch, json!({ "h": h }), delay).await;
    }

    // ---- Redis freezes ------------------------------------------------------------------
    let freezing_at = now();
    cluster.redis_mut().freeze();
    assert!(
        freezing_at < held_at + EARLY_DUE_MS,
        "precondition: Redis freezes before the held messages are due"
    );
    let detected_at = await_readiness(cluster.nodes(), false, freezing_at, DETECT_BOUND).await;
    load.await_nacked(1).await;
    // The scenario, not a synchronisation: the early held messages fall due while Redis is
    // frozen.
    let early_due = held_at + EARLY_DUE_MS + 200;
    murmur_tests::eventually(
        "the early held messages to fall due while Redis is frozen",
        Duration::from_millis(EARLY_DUE_MS as u64 + 1000),
        || async { (now() >= early_due).then_some(()) },
    )
    .await;

    // ---- Redis resumes --------------------------------------------------------------------
    cluster.redis_mut().thaw();
    let resumed_at = now();
    let ready_at = await_readiness(cluster.nodes(), true, resumed_at, RECONNECT_BOUND).await;
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

    load.await_running(ready_at, "after the freeze").await;
    let (published, logs, watched, got, released) =
        load.finish(&cluster, 2 * HELD, HELD_LATE_BOUND).await;

    // ---- held messages ----------------------------------------------------------------------
    assert_eq!(
        released,
        2.0 * HELD as f64,
        "each held message released once"
    );
    for g in &got {
        let hs = g.numbers(&held_ch, "h");
        assert_eq!(hs.len(), g.on(&held_ch).len(), "{}: only holds", g.label);
        let (missing, duplicated) = missing_and_duplicated(HELD as u64..2 * HELD as u64, hs);
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
            .filter_map(|n| Some((n.data["h"].as_u64()?, n.at_ms - resumed_at)))
            .filter(|(h, _)| *h < HELD as u64)
            .collect();
        println!(
            "{}: {} of the {HELD} held messages due during the freeze, (h, ms after the \
             resume): {during:?}",
            g.label,
            during.len()
        );
    }
    await_schedule_empty(&cluster.nodes().iter().collect::<Vec<&Node>>()).await;

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
    let before = pub_is(&published, |p| p.done_ms < freezing_at);
    let after = pub_is(&published, |p| p.sent_ms > ready_at);
    let in_freeze = pub_is(&published, |p| {
        p.done_ms >= freezing_at && p.sent_ms <= ready_at
    });
    // Answered just before the freeze: the bus batch that carried them may be lost with it
    // (docs/cluster.md: "A pipelined batch whose write failed is lost").
    let at_loss = pub_is(&published, |p| {
        p.done_ms >= freezing_at - LOSS_WINDOW_MS && p.done_ms < freezing_at
    });
    let bus_errors: Vec<String> = metrics(cluster.node(1))
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
        let set = check_feed(g, &feed_ch, &after);
        let missing: Vec<u64> = before
            .iter()
            .chain(after.iter())
            .copied()
            .filter(|i| !set.contains(i))
            .collect();
        let unexplained = unexplained(&missing, |i| at_loss.contains(i));
        assert!(
            unexplained.is_empty(),
            "{}: every publication answered before the freeze or sent after it: missing {}, \
             of which not answered within {LOSS_WINDOW_MS} ms before the freeze {}",
            g.label,
            first(&missing, 20),
            first(&unexplained, 20)
        );
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
            "{}: {} of {} publications; of the {} between the freeze and readiness, missing \
             {}; lost as Redis froze {missing:?}",
            g.label,
            set.len(),
            published.len(),
            in_freeze.len(),
            first(&lost, 10)
        );
    }

    // ---- Sink ----------------------------------------------------------------------------------
    for log in &logs {
        let client = &log.client;
        log.assert_all_acked();
        let nacked = log.assert_nacks_unavailable();
        assert!(
            !nacked.is_empty(),
            "{client}: NACKed while Redis was frozen"
        );
        assert_stored_once(cluster.redis(), log).await;
        let boundary = log.at_loss(freezing_at);
        for (w, watcher_node) in watched.iter().zip([0, 2]) {
            let missing = unpublished(w, log);
            // ACKed during the freeze (an answer already on its way) or after it, before
            // every node was ready (an ACK may carry the very millisecond of the resume).
            let elsewhere = log.acked_elsewhere_between(watcher_node, freezing_at, ready_at);
            let unexplained =
                unexplained(&missing, |o| elsewhere.contains(o) || Some(*o) == boundary);
            assert!(
                unexplained.is_empty(),
                "{}: every ACKed event of {client} published once: missing {missing:?}, of \
                 which unexplained {unexplained:?} (NACKed 02 first: {nacked:?}, whose store \
                 command may have run when Redis resumed, making the resend a duplicate that \
                 must still be published; ACKed by another node before every node was ready: \
                 {elsewhere:?}; ACKed as Redis froze, its publication maybe lost with the bus \
                 batch: {boundary:?})",
                w.label
            );
            println!(
                "{}: {client}: {} events, NACKed {nacked:?}, each published at most once; \
                 missed {missing:?} (ACKed as Redis froze: {boundary:?})",
                w.label,
                log.events.len()
            );
        }
    }
}
