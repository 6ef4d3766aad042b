//! Faults, part one: SIGKILL of one of three nodes (real `murmur` processes on a
//! test-owned redis-server) in the middle of mixed load, and an exact count afterwards of
//! what the cluster had accepted against what arrived.
//!
//! The load, all of it running while node 0 is killed:
//!
//! * Sink devices (three connected to node 0, one to node 1) publishing one event every
//!   50 ms and counting the ACKs; a device whose connection breaks reconnects to the next
//!   node and sends its unacknowledged event again;
//! * held `~timing` publications accepted through node 0's API just before the kill, all
//!   due after it;
//! * the backend publishing on a channel through node 1's API at 50 publications/s, with
//!   a Helios subscriber on node 0 (which reconnects with `?recover=` to node 1 when its
//!   node dies) and one on node 2;
//! * a TimeStick session POSTing a request every 50 ms through node 0 (then node 1) and
//!   another one long-polling them with its cursor through node 0 (then node 2).
//!
//! docs/cluster.md ("When a node dies", "Recovery across nodes"), docs/timing.md
//! ("Cluster behaviour"), docs/sink.md ("Device → broker events").

mod fault_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use fault_common::timestick_common::Session;
use fault_common::*;
use murmur_tests::{eventually, Cluster, Node};
use serde_json::json;

/// Duplicates a recovering Starling may see: what 2 s of the feed produce.
const DUP_BOUND: usize = 2 * FEED_RATE as usize;
/// Held publications accepted through node 0 just before the kill.
const HELD: usize = 30;
/// The first held publication is due this long after it was accepted; the others
/// follow 30 ms apart. Node 0 is killed well before.
const FIRST_DUE_MS: i64 = 2500;
/// Publications of the feed (and ACKs per device) to see before the kill, and again
/// after it, before the load stops.
const FEED_PHASE: usize = 150;
const ACKS_PHASE: usize = 10;

/// The kill of one node in three under Sink, `~timing`, Helios and TimeStick load. After
/// it, counted exactly:
///
/// * **Sink**: every event a device got an ACK for is in the store (the inbound stream
///   and the seen-set of `docs/sink.md`), each once, and reached the `sink/<client>`
///   subscriber on node 2 once. The only events allowed to miss that subscriber are those
///   whose ACK or answer the killed node was about to send when it died (its live
///   publication went down with it; the stored record did not).
/// * **held messages**: every one of the 30 is delivered exactly once to the subscribers
///   on both surviving nodes, released by exactly one survivor each.
/// * **TimeStick**: every request accepted (202, or 409 for a retry of one whose answer
///   the kill swallowed) reaches the receiver exactly once.
/// * **Helios**: the subscriber on node 2 gets every publication exactly once, in order,
///   `notification.seq` increasing by 1; the subscriber of the killed node recovers on
///   node 1 and, after dropping repeats by `notification.seq`, has every publication once,
///   in order. The repeats are printed and must stay within 2 s of traffic.
#[actix_rt::test]
async fn sigkill_of_a_node_under_mixed_load_loses_nothing_that_was_accepted() {
    let mut cluster = Cluster::start_with(3, |_, b| {
        b.env("MURMUR_DEV", "1").env("MURMUR_HEARTBEAT_TTL", "2s")
    })
    .await;
    let sinks: Vec<SocketAddr> = cluster.nodes().iter().map(Node::sink_addr).collect();
    let publics: Vec<String> = cluster.nodes().iter().map(Node::public_url).collect();
    let ws_bases: Vec<String> = cluster.nodes().iter().map(|n| n.ws_url("")).collect();
    let feed_ch = uniq("feed-");
    let held_ch = uniq("held-");

    // Sink: three devices on node 0, one on node 1; their events watched from node 2.
    let instances: Vec<u32> = (0..4).map(|_| sink_instance()).collect();
    let clients: Vec<String> = instances.iter().map(|i| format!("dev-{i}")).collect();
    let sink_channels: Vec<String> = clients.iter().map(|c| format!("sink/{c}")).collect();
    let sink_refs: Vec<&str> = sink_channels.iter().map(String::as_str).collect();
    let watcher =
        Collector::subscribed("sink watcher on node 2", cluster.node(2), "w", &sink_refs).await;

    // Helios: one subscriber on the node that dies, one on node 2 (also of the held
    // channel), one on node 1 of the held channel.
    let mut doomed = subscribed(cluster.node(0), "doomed", &[&feed_ch]).await;
    let token = doomed.call_ok("starling:getToken", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let doomed = Collector::start(
        "subscriber of node 0",
        doomed,
        Some((token, ws_bases[1].clone())),
    );
    let steady = Collector::subscribed(
        "subscriber on node 2",
        cluster.node(2),
        "steady",
        &[&feed_ch, &held_ch],
    )
    .await;
    let held_on_1 = Collector::subscribed(
        "held subscriber on node 1",
        cluster.node(1),
        "held",
        &[&held_ch],
    )
    .await;

    // TimeStick: a sender and a receiver on one target.
    let target = uniq("fault-room-");
    let a = Session::open_at(&publics[0], &uniq("ts-s-"), &target).await;
    let b = Session::open_at(&publics[0], &uniq("ts-r-"), &target).await;

    // The load starts.
    let feed = Feed::start(&feed_ch, &cluster.node(1).internal_url(), FEED_RATE);
    let devices = SinkDevice::start_all(&instances, &sinks, |k| usize::from(k == 3));
    let sender = StickSender::start(&a, publics.clone(), 0, PERIOD);
    let receiver = StickReceiver::start(&b, &a.id, vec![publics[0].clone(), publics[2].clone()], 0);

    eventually("the load to run before the kill", CROSS, || async {
        let ok = feed.accepted() >= FEED_PHASE
            && devices.iter().all(|d| d.log.borrow().acked() >= ACKS_PHASE)
            && receiver.received() >= ACKS_PHASE
            && doomed.count(|n| n.i().is_some()) >= FEED_PHASE / 2;
        ok.then_some(())
    })
    .await;

    // Held publications through node 0, all due after the kill.
    let node0 = cluster.node(0).internal_url();
    let first_held_at = now();
    for h in 0..HELD {
        let due = first_held_at + FIRST_DUE_MS + 30 * h as i64;
        hold(&node0, &held_ch, json!({ "h": h }), due - now()).await;
    }

    let feed_at_kill = feed.accepted();
    cluster.node_mut(0).kill().await;
    let killed_at = now();
    assert!(
        killed_at < first_held_at + FIRST_DUE_MS,
        "precondition: node 0 must die before the first held message is due ({} ms late); \
         the machine is too slow for this test",
        killed_at - first_held_at - FIRST_DUE_MS
    );
    println!(
        "node 0 killed {} ms after the first hold; {feed_at_kill} publications before",
        killed_at - first_held_at
    );

    // The load carries on through the survivors.
    eventually("the load to run after the kill", CROSS * 2, || async {
        let ok = feed.accepted() >= feed_at_kill + FEED_PHASE
            && devices
                .iter()
                .all(|d| d.log.borrow().acked_since(killed_at) >= ACKS_PHASE)
            && doomed.recoveries() == 1;
        ok.then_some(())
    })
    .await;
    let published = feed.stop().await;
    let sent = sender.stop().await;
    let logs = stop_devices(devices).await;
    let survivors = [cluster.node(1), cluster.node(2)];
    let released = await_api_releases(&survivors, HELD, CROSS * 2).await;

    // The barrier: one marker per channel, published after everything else.
    let mut channels = vec![feed_ch.as_str(), held_ch.as_str()];
    channels.extend(sink_refs.iter().copied());
    let [watcher, doomed, steady, held_on_1]: [Collected; 4] = barrier(
        cluster.node(2),
        &channels,
        vec![watcher, doomed, steady, held_on_1],
    )
    .await
    .try_into()
    .expect("four collectors");
    let got = receiver.finish(CROSS).await;

    // ---- Sink: every ACKed event stored once and published (bar the kill's own) ---------
    for log in &logs {
        let client = &log.client;
        log.assert_all_acked();
        assert!(
            log.events.iter().all(|e| e.nacks.is_empty()),
            "{client}: no NACK while Redis is up: {:?}",
            log.events
                .iter()
                .filter(|e| !e.nacks.is_empty())
                .collect::<Vec<_>>()
        );
        assert_stored_once(cluster.redis(), log).await;
        let missing = unpublished(&watcher, log);
        let cut = log.around_breaks();
        let unexplained = unexplained(&missing, |o| cut.contains(o));
        assert!(
            unexplained.is_empty(),
            "{client}: ACKed events missing on sink/{client} that no broken connection \
             explains: {unexplained:?} (connections {:?})",
            log.connections
        );
        println!(
            "{client}: {} events ACKed (node 0: {}, node 1: {}, node 2: {}), {} connections, \
             {} resent after a break; not published live because the node died: {missing:?}",
            log.events.len(),
            log.acked_by(0),
            log.acked_by(1),
            log.acked_by(2),
            log.connections.len(),
            log.events
                .iter()
                .filter(|e| !e.lost_in_flight.is_empty())
                .count(),
        );
    }
    for log in &logs[..3] {
        assert!(
            log.connections.len() >= 2 && log.connections[0].node == 0,
            "{}: connected to node 0, then to another node: {:?}",
            log.client,
            log.connections
        );
    }

    // ---- held messages: each exactly once on both survivors ------------------------------
    assert_eq!(
        released, HELD as f64,
        "each held message released by exactly one survivor"
    );
    for col in [&steady, &held_on_1] {
        let hs = col.numbers(&held_ch, "h");
        assert_eq!(
            hs.len(),
            col.on(&held_ch).len(),
            "{}: only holds",
            col.label
        );
        let what = format!("{}: each held message after the kill", col.label);
        assert_each_once(&what, 0..HELD as u64, hs);
        let early: Vec<i64> = col
            .on(&held_ch)
            .iter()
            .map(|n| n.at_ms)
            .filter(|&t| t < killed_at)
            .collect();
        assert!(
            early.is_empty(),
            "{}: none before the kill: {early:?}",
            col.label
        );
    }
    await_schedule_empty(&survivors).await;

    // ---- TimeStick: each accepted request delivered exactly once -------------------------
    let (marker_post, requests) = sent.split_last().expect("the end marker was posted");
    assert!(marker_post.accepted(), "the end marker: {marker_post:?}");
    let rejected: Vec<&Posted> = requests.iter().filter(|p| !p.accepted()).collect();
    assert!(
        rejected.is_empty(),
        "every TimeStick POST accepted on some node: {rejected:?}"
    );
    let retried = requests.iter().filter(|p| p.attempts.len() > 1).count();
    let delivered: Vec<u64> = got
        .got
        .iter()
        .filter(|g| g.message_id != format!("{}.m-end", a.id))
        .map(|g| {
            assert_eq!(
                g.message_id,
                format!("{}.m{}", a.id, g.payload["k"]),
                "{g:?}"
            );
            g.payload["k"].as_u64().unwrap()
        })
        .collect();
    let what = format!(
        "TimeStick (poll errors {:?}): every accepted request",
        got.poll_errors
    );
    assert_each_once(
        &what,
        requests.iter().map(|p| p.k),
        delivered.iter().copied(),
    );
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "TimeStick: in order: {}",
        first(&delivered, 40)
    );
    println!(
        "TimeStick: {} requests, {retried} retried on another node, all delivered once; \
         {} failed polls",
        requests.len(),
        got.poll_errors.len()
    );

    // ---- Helios: node 2's subscriber, exactly once and in order --------------------------
    let total = published.iter().filter(|p| p.outcome == Ok(200)).count() as u64;
    assert_eq!(
        total,
        published.len() as u64,
        "every feed publication through node 1 accepted: {:?}",
        published
            .iter()
            .filter(|p| p.outcome != Ok(200))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        steady.feed_is(&feed_ch),
        (0..total).collect::<Vec<_>>(),
        "node 2's subscriber: every publication exactly once, in order"
    );

    // The recovering subscriber, by data.i first (for the record), then by seq.
    let doomed_notes = doomed.on(&feed_ch);
    let by_i = tally(doomed_notes.iter().map(|n| n.i().unwrap()));
    let repeats_by_i: usize = by_i.values().map(|n| n - 1).sum();
    println!(
        "subscriber of node 0: connections ended {:?}, recovered {:?}; {} notifications for \
         {total} publications ({} distinct, {repeats_by_i} repeats)",
        doomed.ends,
        doomed.recovered,
        doomed_notes.len(),
        by_i.len()
    );
    assert_eq!(doomed.recovered.len(), 1, "one recovery: {:?}", doomed.ends);

    let missing_seq: Vec<u64> = steady
        .on(&feed_ch)
        .iter()
        .chain(doomed_notes.iter())
        .filter(|n| n.seq.is_none())
        .map(|n| n.i().unwrap())
        .take(5)
        .collect();
    assert!(
        missing_seq.is_empty(),
        "every channel notification carries notification.seq (the per-channel sequence); \
         missing for data.i {missing_seq:?}"
    );
    let steady_seqs: Vec<u64> = steady.on(&feed_ch).iter().map(|n| n.seq.unwrap()).collect();
    assert!(
        steady_seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "notification.seq increases by 1 per publication: {}",
        first(&steady_seqs, 20)
    );
    let seq_of = |i: u64| steady_seqs[i as usize];

    let mut kept: Vec<u64> = Vec::new();
    let mut repeats: Vec<(u64, u64, u32)> = Vec::new();
    let mut last_seq: Option<u64> = None;
    for n in &doomed_notes {
        let (i, seq) = (n.i().unwrap(), n.seq.unwrap());
        assert_eq!(seq, seq_of(i), "the same seq on every node for data.i {i}");
        if last_seq.is_some_and(|l| seq <= l) {
            repeats.push((seq, i, n.conn));
            continue;
        }
        last_seq = Some(seq);
        kept.push(i);
    }
    assert_eq!(
        kept,
        (0..total).collect::<Vec<_>>(),
        "subscriber of node 0, repeats dropped by seq: every publication once, in order"
    );
    println!(
        "subscriber of node 0: {} repeats (seq, data.i, connection): {}",
        repeats.len(),
        first(&repeats, 30)
    );
    assert!(
        repeats.len() <= DUP_BOUND,
        "repeats after the recovery must stay within 2 s of traffic ({DUP_BOUND}), got {}",
        repeats.len()
    );
    let distinct: BTreeSet<u64> = repeats.iter().map(|r| r.0).collect();
    assert_eq!(
        distinct.len(),
        repeats.len(),
        "each publication repeated at most once"
    );
}
