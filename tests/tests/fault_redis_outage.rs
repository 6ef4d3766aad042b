//! Faults, part two: Redis dies under mixed load (redis-server SIGKILLed, then started
//! again on the same port, empty: the harness's Redis persists nothing) while three nodes
//! keep running, and the documented behaviour is checked exactly (docs/cluster.md, "When
//! Redis goes away"; docs/operations.md, "Health and readiness"; docs/sink.md).
//!
//! The load: Sink devices (two on node 0, one on node 1) publishing an event every 50 ms,
//! watched on `sink/<client>` from node 0 and node 2; the backend publishing on a channel
//! through node 1's API at 50 publications/s, with a Helios subscriber on every node;
//! held `~timing` publications before, during and after the outage; a TimeStick pair.

mod fault_common;

use std::collections::BTreeSet;
use std::time::Duration;

use fault_common::timestick_common::{assert_error, request_msg, Session};
use fault_common::*;
use murmur_tests::{eventually, metric, metrics, Cluster, Node};
use serde_json::{json, Value};

/// Held publications accepted just before the outage (due during it) and after it.
const HELD_BEFORE: usize = 5;
const HELD_AFTER: usize = 10;

/// `murmur_bus_errors_total{kind="publish"}` of `node`: envelopes of failed bus batches.
async fn bus_publish_errors(node: &Node) -> f64 {
    metric(node, "murmur_bus_errors_total", &[("kind", "publish")]).await
}

/// Asserts `murmur_bus_up` is 1 (`up`) or 0 on every node.
async fn assert_bus_up(nodes: &[Node], up: bool) {
    for node in nodes {
        let want = f64::from(u8::from(up));
        let got = metric(node, "murmur_bus_up", &[]).await;
        assert_eq!(got, want, "{}: murmur_bus_up", node.id());
    }
}

/// POSTs the TimeStick request `message_id` as `session`.
async fn stick_post(session: &Session, message_id: &str) -> murmur_tests::HttpReply {
    let msg = request_msg(&session.id, message_id, json!({ "id": message_id }));
    session.post(&msg).await
}

/// One long-poll (`wait=5`) of `session`: the ids of its messages.
async fn stick_poll(session: &Session) -> Vec<String> {
    let (msgs, _) = session.poll_ok(5, None).await;
    msgs.iter()
        .map(|m| m["message_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Redis is SIGKILLed under load and restarted empty. Asserted exactly:
///
/// * **readiness**: every node's `/readyz` is non-200 within 5 s and `murmur_bus_up` is
///   0; every node is ready again within 10 s of the restart and `murmur_bus_up` is 1.
/// * **Sink**: while Redis is away every device PUBLISH is NACKed `02`
///   (`temporarily unavailable; send again later`); sent again afterwards, every event ends
///   up ACKed, and every ACKed event reaches both `sink/<client>` subscribers at most once
///   and, but for two exceptions, exactly once: the event ACKed just before Redis died
///   (its publication may have been in the bus batch that failed), and, on the node that is
///   not the device's home, events ACKed after the restart before every node was ready
///   (delivered on the home node only). The store holds the events ACKed since the restart.
/// * **held messages**: holds are refused with 503 `UNAVAILABLE` during the outage; the
///   ones accepted before it, due during it, are gone with Redis's data (documented) and
///   never delivered; the ones accepted after it are delivered exactly once on every node.
/// * **Helios**: no subscriber gets a publication twice; every publication answered
///   before Redis died and every one sent after all nodes were ready again reaches every
///   subscriber (those after, in order); the subscriber on the publishing node also gets
///   the ones made during the outage (delivered locally). Only the failed bus batch may
///   be missing.
/// * **TimeStick**: POSTs get 503 `UNAVAILABLE` during the outage; afterwards the session
///   is unknown (404 `SESSION_NOT_FOUND`: sessions live in Redis) and a new one works.
#[actix_rt::test]
async fn redis_outage_under_mixed_load_behaves_as_documented() {
    let mut cluster = Cluster::start_with(3, |_, b| b.env("MURMUR_DEV", "1")).await;
    let target = uniq("outage-room-");
    let a = Session::open(cluster.node(2), &uniq("ts-a-"), &target).await;
    let b = Session::open(cluster.node(2), &uniq("ts-b-"), &target).await;
    let publish_errors_at_start = [
        bus_publish_errors(cluster.node(0)).await,
        bus_publish_errors(cluster.node(1)).await,
    ];
    let load = RedisLoad::start(&cluster).await;
    let (held_ch, node0) = (load.held_ch.clone(), cluster.node(0).internal_url());

    // TimeStick works before.
    let reply = stick_post(&a, "before").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(
        stick_poll(&b.at(cluster.node(0))).await,
        vec![format!("{}.before", a.id)]
    );

    // Held publications due during the outage.
    let held_at = now();
    for h in 0..HELD_BEFORE {
        hold(&node0, &held_ch, json!({ "pre": h }), 1500).await;
    }

    // ---- Redis dies ---------------------------------------------------------------------
    let stopping_at = now();
    cluster.redis_mut().stop().await;
    let stopped_at = now();
    assert!(
        stopped_at < held_at + 1500,
        "precondition: Redis dies before the held messages are due"
    );
    let detected_at = await_readiness(cluster.nodes(), false, stopped_at, DETECT_BOUND).await;
    assert_bus_up(cluster.nodes(), false).await;
    for node in cluster.nodes() {
        assert!(node.readyz().await != 200, "{} stays unready", node.id());
    }

    // During the outage: holds and TimeStick refused, device events NACKed 02.
    let (status, body) = try_publish(
        &murmur_tests::http(),
        &node0,
        &held_ch,
        json!({ "during": 1 }),
        Some(json!({ "delay_milli": 500 })),
    )
    .await
    .unwrap_or_else(|e| panic!("hold during the outage: {e}"));
    assert_eq!(status, 503, "a hold while Redis is away: {body}");
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
    assert_error(&stick_post(&a, "during").await, 503, "UNAVAILABLE");
    load.await_nacked(2).await;

    // ---- Redis is back, empty -----------------------------------------------------------
    // Device events may be ACKed while `start_again` waits for Redis to answer PING.
    let restarting_at = now();
    cluster.redis_mut().start_again().await;
    let restarted_at = now();
    let ready_at = await_readiness(cluster.nodes(), true, restarted_at, RECONNECT_BOUND).await;
    assert_bus_up(cluster.nodes(), true).await;
    println!(
        "Redis down {} ms (detected after {} ms); nodes ready {} ms after the restart",
        restarted_at - stopped_at,
        detected_at - stopped_at,
        ready_at - restarted_at
    );

    // TimeStick: the session went with Redis's data; a new one works. `/readyz` follows
    // the bus connections only: the store's own connection may come back a little later,
    // and until then the answer is still 503 UNAVAILABLE.
    let reply = eventually(
        "the store to answer again (a POST that is not 503)",
        RECONNECT_BOUND.saturating_sub(Duration::from_millis((now() - restarted_at) as u64)),
        || async {
            let reply = stick_post(&a, "after").await;
            if reply.status == 503 {
                assert_error(&reply, 503, "UNAVAILABLE");
                return None;
            }
            Some(reply)
        },
    )
    .await;
    let store_back_at = now();
    assert_error(&reply, 404, "SESSION_NOT_FOUND");
    println!(
        "the store answered again {} ms after /readyz was 200 on every node",
        store_back_at - ready_at
    );
    let a2 = Session::open(cluster.node(0), &a.user, &target).await;
    let b2 = Session::open(cluster.node(1), &b.user, &target).await;
    let reply = stick_post(&a2, "after").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(stick_poll(&b2).await, vec![format!("{}.after", a2.id)]);

    // Holds after the outage.
    for h in 0..HELD_AFTER {
        hold(&node0, &held_ch, json!({ "post": h }), 300).await;
    }
    load.await_running(ready_at, "after the outage").await;
    let feed_ch = load.feed_ch.clone();
    let (published, logs, watched, got, released) = load.finish(&cluster, HELD_AFTER, CROSS).await;
    let publish_errors = bus_publish_errors(cluster.node(1)).await - publish_errors_at_start[1];

    // ---- Sink ---------------------------------------------------------------------------
    for (k, log) in logs.iter().enumerate() {
        let client = &log.client;
        let home = RedisLoad::home(k);
        assert_eq!(
            log.connections.len(),
            1,
            "{client}: the connection survives the outage: {:?} {:?}",
            log.connections,
            log.refused
        );
        log.assert_all_acked();
        let nacks = log.nacks();
        assert!(nacks > 0, "{client}: NACKed while Redis was away");
        log.assert_nacks_unavailable();
        let first_nacked = log.events.iter().position(|e| !e.nacks.is_empty()).unwrap();
        assert!(
            log.events[first_nacked..]
                .iter()
                .all(|e| e.acked.is_some_and(|(_, at)| at > restarting_at)),
            "{client}: nothing is ACKed from the first NACK until Redis is back"
        );
        let boundary = log.at_loss(stopping_at);
        let home_errors =
            bus_publish_errors(cluster.node(home)).await - publish_errors_at_start[home];
        // ACKed after the restart but before every node was ready again: the store was
        // back, the home node's bus maybe not yet, so the publication may have been
        // delivered on the home node only (docs/cluster.md: "delivered to this node's
        // members only").
        let local_only = log.offsets_acked(|_, at| at > restarting_at && at <= ready_at);
        let mut cut_off = 0;
        for (w, watcher_node) in watched.iter().zip([0, 2]) {
            let missing = unpublished(w, log);
            let elsewhere = log.acked_elsewhere_between(watcher_node, restarting_at, ready_at);
            let allowed = |o: &u64| Some(*o) == boundary || elsewhere.contains(o);
            let unexplained = unexplained(&missing, allowed);
            assert!(
                unexplained.is_empty(),
                "{}: every ACKed event of {client} published: missing {missing:?}, of which \
                 unexplained {unexplained:?} (boundary {boundary:?}, publish errors on node \
                 {home}: {home_errors}; ACKed before every node was ready: {local_only:?})",
                w.label
            );
            if watcher_node != home {
                cut_off = missing.len();
            }
        }
        // What the store holds: the events ACKed after the restart (the ones before went
        // with Redis's data), each once.
        assert_eq!(
            stored_offsets(cluster.redis(), client).await,
            log.offsets_acked(|_, at| at > restarting_at),
            "{client}: the store holds the events ACKed since the restart"
        );
        println!(
            "{client}: {} events, {nacks} NACKs (02), all ACKed in the end; {} ACKed before \
             every node was ready, of which {cut_off} reached the home node's subscribers only",
            log.events.len(),
            local_only.len()
        );
    }

    // ---- held messages -------------------------------------------------------------------
    assert_eq!(
        released, HELD_AFTER as f64,
        "each hold accepted after the outage released once"
    );
    for g in &got {
        let pre = g.numbers(&held_ch, "pre");
        assert!(
            pre.is_empty(),
            "{}: holds accepted before an empty restart are gone (docs/cluster.md): {pre:?}",
            g.label
        );
        let post = g.numbers(&held_ch, "post");
        let what = format!("{}: each hold accepted after the outage", g.label);
        assert_each_once(&what, 0..HELD_AFTER as u64, post);
        let others: Vec<&Value> = g
            .on(&held_ch)
            .iter()
            .filter(|n| n.data.get("pre").is_none() && n.data.get("post").is_none())
            .map(|n| &n.data)
            .collect();
        assert!(
            others.is_empty(),
            "{}: nothing else on the held channel: {others:?}",
            g.label
        );
    }
    await_schedule_empty(&cluster.nodes().iter().collect::<Vec<&Node>>()).await;

    // ---- Helios --------------------------------------------------------------------------
    assert!(
        published.iter().all(|p| p.outcome == Ok(200)),
        "the API answers 200 throughout (docs/cluster.md)"
    );
    let before = pub_is(&published, |p| p.done_ms < stopped_at);
    let during = pub_is(&published, |p| {
        p.sent_ms > detected_at && p.done_ms < restarted_at
    });
    let after = pub_is(&published, |p| p.sent_ms > ready_at);
    let everything = pub_is(&published, |_| true);
    println!(
        "feed: {} publications ({} before Redis died, {} while it was known away, {} after \
         all nodes were ready); failed bus batches: {publish_errors} envelopes",
        everything.len(),
        before.len(),
        during.len(),
        after.len()
    );
    // Taken by the bus around the moment Redis died.
    let at_loss: BTreeSet<u64> = pub_is(&published, |p| {
        p.done_ms >= stopping_at - LOSS_WINDOW_MS && p.sent_ms <= detected_at
    })
    .into_iter()
    .collect();
    let mut lost_at_loss = BTreeSet::new();
    for (k, g) in got.iter().enumerate() {
        let set = check_feed(g, &feed_ch, &after);
        let want: Vec<u64> = if k == 1 {
            everything.clone()
        } else {
            before.iter().chain(after.iter()).copied().collect()
        };
        let missing: Vec<u64> = want.iter().copied().filter(|i| !set.contains(i)).collect();
        let unexplained = unexplained(&missing, |i| at_loss.contains(i));
        assert!(
            unexplained.len() as f64 <= publish_errors,
            "{}: missing {} of which {} outside the moment of the loss (only the failed bus \
             batch, {publish_errors} envelopes, may be)",
            g.label,
            first(&missing, 20),
            first(&unexplained, 20)
        );
        lost_at_loss.extend(missing.iter().copied().filter(|i| at_loss.contains(i)));
        let during_got = during.iter().filter(|i| set.contains(i)).count();
        println!(
            "{}: {} notifications; {during_got} of the {} published during the outage",
            g.label,
            set.len(),
            during.len()
        );
        if k == 1 {
            assert_eq!(
                during_got,
                during.len(),
                "the publishing node's subscriber gets the outage's publications"
            );
        }
    }
    let errors = metrics(cluster.node(1)).await;
    let bus_errors: Vec<&str> = errors
        .lines()
        .filter(|l| l.starts_with("murmur_bus_errors_total"))
        .collect();
    println!(
        "publications answered 200 around the loss {at_loss:?}; lost there: {lost_at_loss:?}; \
         node 1: {bus_errors:?}"
    );
}
