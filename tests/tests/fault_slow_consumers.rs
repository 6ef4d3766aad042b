//! Faults, part three: clients that stop reading. One per WebSocket protocol (a Helios
//! subscriber, a chat device in a group, a Sink device over WebSocket), each on its own
//! node (cluster mode on a test-owned Redis, so channel and chat history live in Redis and
//! the node's memory is the node's own), flooded with large messages twice while the
//! node's `VmRSS` (`/proc/<pid>/status`) is sampled.
//!
//! The node is configured with `MURMUR_OUTBOUND_MAX_BYTES=1048576`: at most 1 MiB queued
//! for one connection's socket (`MURMUR_OUTBOUND_MAX_FRAMES` and
//! `MURMUR_OUTBOUND_NODE_MAX_BYTES` keep their defaults, 8192 frames and 512 MiB), with the
//! gauge `murmur_outbound_bytes` reporting what is queued node-wide.
//!
//! The stalled clients ([`murmur_tests::stall::Stalled`]) ask for a 64 KiB `SO_RCVBUF`, so
//! little waits on their side, but the node's own socket send buffer still takes up to
//! `net.ipv4.tcp_wmem` (4 MiB on a default Linux) before its queue fills. That kernel
//! memory is not in the node's `VmRSS`: it changes how much must be published before the
//! close (which is why the floods are large), not the bound asserted on `VmRSS`.
//!
//! The bound: the node may grow by at most [`MAX_BYTES`] plus [`SLACK`] (16 MiB: the
//! allocator's arenas, request bodies in flight, the Redis connections' buffers), during
//! the first flood and over both floods together (the second flood must reuse what the
//! first one freed, not take as much again).

mod chat_common;

use std::time::Duration;

use bytes::Bytes;
use chat_common::{create_action, is_broadcast_of, kind, send_action, ChatClient};
use murmur_shared::sink::{decode, encode, ConnectionResponse, Frame};
use murmur_tests::b64::base64_encode;
use murmur_tests::rss::{mib, vm_rss, RssSampler, MIB};
use murmur_tests::stall::{Drained, Stalled};
use murmur_tests::SOON;
use murmur_tests::{
    api_get, api_post_many, eventually, http, metric, metric_value, metrics, token, uniq, Cluster,
    Node, Starling, WsEvent,
};
use serde_json::{json, Value};

/// `MURMUR_OUTBOUND_MAX_BYTES` of the nodes under test.
const MAX_BYTES: u64 = MIB;
/// What the node may grow beyond [`MAX_BYTES`].
const SLACK: u64 = 16 * MIB;
/// Data per Helios publication (and about that per Sink event).
const BIG: usize = 64 * 1024;
/// Body of a chat message: the broadcast must fit the 4096-byte frame limit.
const CHAT_BODY: usize = 3600;
/// Publications sent at once.
const PARALLEL: usize = 8;
/// Give up (and fail) after this much published for one stalled client.
const FLOOD_CAP_BYTES: usize = 64 * 1024 * 1024;
/// The reason of a slow-consumer close (docs/close-codes.md).
const SLOW_REASON: &str = "slow consumer: outbound buffer full";
/// How long a stalled client's drain may take (it reads through a small window).
const DRAIN: Duration = Duration::from_secs(30);

/// A node in cluster mode with the outbound bound of this file, plus `extra` variables.
async fn bounded_node(extra: &[(&str, &str)]) -> Cluster {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Cluster::start_with(1, move |_, mut b| {
        b = b
            .env("MURMUR_DEV", "1")
            .env("MURMUR_OUTBOUND_MAX_BYTES", MAX_BYTES.to_string());
        for (k, v) in &extra {
            b = b.env(k, v);
        }
        b
    })
    .await
}

/// `murmur_deliveries_total{protocol, outcome="dropped_slow"}`.
async fn slow_drops(node: &Node, protocol: &str) -> f64 {
    metric(
        node,
        "murmur_deliveries_total",
        &[("protocol", protocol), ("outcome", "dropped_slow")],
    )
    .await
}

/// `PARALLEL` POSTs of `body` to the internal API's `path` at once over `client`; asserts
/// each `status`.
async fn post_parallel(client: &awc::Client, node: &Node, path: &str, body: &Bytes, status: u16) {
    for got in api_post_many(client, node, path, body, PARALLEL).await {
        assert_eq!(got, status, "POST {path}");
    }
}

/// `murmur_disconnects_total{protocol, reason="slow_consumer"}`.
async fn slow_kicks(node: &Node, protocol: &str) -> f64 {
    metric(
        node,
        "murmur_disconnects_total",
        &[("protocol", protocol), ("reason", "slow_consumer")],
    )
    .await
}

/// Asserts the gauge `murmur_outbound_bytes` exists and, once nothing is queued, reads 0.
async fn assert_outbound_gauge_drains(node: &Node) {
    let text = metrics(node).await;
    assert!(
        metric_value(&text, "murmur_outbound_bytes", &[]).is_some(),
        "the gauge murmur_outbound_bytes (node-wide bytes queued for sockets) is exported"
    );
    eventually(
        "murmur_outbound_bytes back to 0",
        Duration::from_secs(10),
        || async { (metric(node, "murmur_outbound_bytes", &[]).await == 0.0).then_some(()) },
    )
    .await;
}

/// What one flood did to the node.
struct Flood {
    /// Messages sent before the node reported the close.
    sent: usize,
    bytes: usize,
    /// `VmRSS` before and the peak during the flood.
    before: u64,
    peak: u64,
}

/// The node's `VmRSS` over the two floods of a test, sampled every 10 ms; the value
/// before the first flood is the baseline.
struct Meter {
    pid: u32,
    sampler: RssSampler,
    baseline: Option<u64>,
    floods: Vec<Flood>,
}

impl Meter {
    fn start(node: &Node) -> Meter {
        Meter {
            pid: node.pid(),
            sampler: RssSampler::start(node.pid(), Duration::from_millis(10)),
            baseline: None,
            floods: Vec::new(),
        }
    }

    /// Runs `flood` (→ messages and bytes sent until the close) and records the peak.
    async fn measure(&mut self, flood: impl std::future::Future<Output = (usize, usize)>) {
        let before = vm_rss(self.pid);
        if self.baseline.is_none() {
            self.baseline = Some(before);
            self.sampler.reset();
        }
        let (sent, bytes) = flood.await;
        self.floods.push(Flood {
            sent,
            bytes,
            before,
            peak: self.sampler.peak(),
        });
    }

    /// Prints the last flood.
    fn report(&self, what: &str) {
        let (f, baseline) = (self.floods.last().expect("a flood"), self.baseline());
        println!(
            "{what}: {} messages ({:.1} MiB) until the close; VmRSS {:.1} MiB before, peak \
             {:.1} MiB (+{:.1} MiB over the flood, +{:.1} MiB over the first baseline)",
            f.sent,
            mib(f.bytes as u64),
            mib(f.before),
            mib(f.peak),
            mib(f.peak.saturating_sub(f.before)),
            mib(f.peak.saturating_sub(baseline)),
        );
    }

    fn baseline(&self) -> u64 {
        self.baseline.expect("a flood measured")
    }

    /// Asserts both floods stayed within the bound.
    fn assert_bounded(&self, what: &str) {
        let [first, second] = &self.floods[..] else {
            panic!("{what}: two floods expected, got {}", self.floods.len());
        };
        let bound = MAX_BYTES + SLACK;
        let grew = first.peak.saturating_sub(self.baseline());
        assert!(
            grew <= bound,
            "{what}: the first flood grew the node by {:.1} MiB, over the bound of {:.1} MiB \
             (MURMUR_OUTBOUND_MAX_BYTES {:.1} MiB + {:.1} MiB)",
            mib(grew),
            mib(bound),
            mib(MAX_BYTES),
            mib(SLACK)
        );
        let total = second.peak.saturating_sub(self.baseline());
        assert!(
            total <= bound,
            "{what}: after the second flood the node is {:.1} MiB over its first baseline, \
             over the bound of {:.1} MiB: the memory of the first flood was not given back or \
             reused",
            mib(total),
            mib(bound)
        );
    }
}

/// Lets a stalled client read again: what was left for it, then a 4001 slow-consumer close.
async fn drain_closed_slow(stalled: Stalled, what: &str) -> Drained {
    let drained = stalled.drain(DRAIN).await;
    assert_eq!(
        drained.close,
        Some(Some((4001, SLOW_REASON.to_string()))),
        "{what} is closed as a slow consumer: {drained:?}"
    );
    drained
}

// ---- Helios ----------------------------------------------------------------------------------

/// Publishes `BIG`-byte messages on `channel` through the API, `PARALLEL` at a time, until
/// the node counts one more Helios slow-consumer close than `kicks_before`; returns the
/// messages and bytes sent.
async fn flood_channel(
    node: &Node,
    channel: &str,
    kicks_before: f64,
    other: &mut Starling,
) -> (usize, usize) {
    let body = Bytes::from(json!({ "channel": channel, "data": "x".repeat(BIG) }).to_string());
    let client = http();
    let mut sent = 0;
    loop {
        assert!(
            sent * BIG < FLOOD_CAP_BYTES,
            "no slow-consumer close after {sent} publications of {BIG} bytes ({:.0} MiB) to a \
             subscriber that does not read (VmRSS now {:.1} MiB)",
            mib((sent * BIG) as u64),
            mib(vm_rss(node.pid()))
        );
        post_parallel(&client, node, "/api/v1/publish", &body, 200).await;
        sent += PARALLEL;
        if sent % (8 * PARALLEL) == 0 {
            let pong = other.call_ok("system:ping", json!({})).await;
            assert_eq!(pong["pong"], true, "{pong}");
        }
        if slow_kicks(node, "helios").await > kicks_before {
            return (sent, sent * body.len());
        }
    }
}

/// A Starling subscribed to `channel` that then never reads.
async fn stalled_subscriber(node: &Node, channel: &str) -> Stalled {
    let url = node.ws_url(&format!("/starling?token={}", token(&uniq("stalled-"))));
    let mut s = Stalled::ws(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    let (id, msg) =
        murmur_tests::helios::request("broker:subscribe", json!({ "channel": channel }));
    s.send_json(&msg).await;
    match s.recv(Duration::from_secs(5)).await {
        Some(WsEvent::Text(t)) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["requestId"], id.as_str(), "{v}");
            assert_eq!(v["success"], true, "{v}");
        }
        other => panic!("subscribe answer: {other:?}"),
    }
    s
}

/// A Helios subscriber that never reads, flooded with 64 KiB publications through the
/// API: it is closed with 4001 `slow consumer: outbound buffer full` and counted in
/// `murmur_disconnects_total{protocol="helios",reason="slow_consumer"}`; a Starling that
/// reads is served throughout; the node's VmRSS grows by at most 1 MiB + 16 MiB, and a
/// second flood (another stalled subscriber, another channel) does not take that again.
/// `murmur_outbound_bytes` is back at 0 afterwards.
#[actix_rt::test]
async fn a_helios_subscriber_that_never_reads_is_closed_and_costs_the_node_a_bounded_amount() {
    let cluster = bounded_node(&[]).await;
    let node = cluster.node(0);
    let mut other = Starling::connect(node, &uniq("reader-")).await;
    let mut meter = Meter::start(node);
    for round in 0..2 {
        let channel = uniq("flood-");
        let stalled = stalled_subscriber(node, &channel).await;
        let kicks = slow_kicks(node, "helios").await;
        assert_eq!(kicks, round as f64);
        meter
            .measure(flood_channel(node, &channel, kicks, &mut other))
            .await;
        let what = format!("round {round}: the stalled subscriber");
        let drained = drain_closed_slow(stalled, &what).await;
        meter.report(&format!(
            "Helios round {round} (the client then read {} messages)",
            drained.messages
        ));
    }
    let pong = other.call_ok("system:ping", json!({})).await;
    assert_eq!(pong["pong"], true);
    assert_eq!(
        slow_kicks(node, "helios").await,
        2.0,
        "each close counted once"
    );
    let dropped = slow_drops(node, "helios").await;
    assert!(dropped >= 2.0, "dropped_slow counted for both: {dropped}");
    meter.assert_bounded("Helios");
    assert_outbound_gauge_drains(node).await;
}

// ---- chat ------------------------------------------------------------------------------------

/// A chat device of `user` that authenticates and then never reads.
async fn stalled_chat_device(node: &Node, user: &str, device: &str) -> Stalled {
    let mut s = Stalled::ws(&node.ws_url("/chat"))
        .await
        .unwrap_or_else(|e| panic!("/chat: {e:?}"));
    s.send_json(
        &json!({"cdid": "auth", "type": "authenticate", "user-id": user,
        "device-id": device, "token": token(user)}),
    )
    .await;
    loop {
        match s.recv(Duration::from_secs(5)).await {
            Some(WsEvent::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if kind(&v) == "status-response" && v["cdid"] == "auth" {
                    assert_eq!(v["status"], "succeeded", "{v}");
                    return s;
                }
            }
            other => panic!("authenticate answer: {other:?}"),
        }
    }
}

/// Sends `CHAT_BODY`-byte messages to `session` from `talker`, 16 at a time (reading
/// each one's broadcast back), until the node counts more chat slow-consumer closes than
/// `kicks_before`.
async fn flood_group(
    node: &Node,
    talker: &mut ChatClient,
    session: &str,
    kicks_before: f64,
) -> usize {
    let body = "y".repeat(CHAT_BODY);
    let mut sent = 0;
    loop {
        assert!(
            sent * CHAT_BODY < FLOOD_CAP_BYTES / 2,
            "no slow-consumer close after {sent} chat messages of {CHAT_BODY} bytes to a \
             device that does not read (VmRSS now {:.1} MiB)",
            mib(vm_rss(node.pid()))
        );
        let mut cdids = Vec::new();
        for _ in 0..16 {
            let cdid = talker.cdid("m");
            talker.send(&send_action(&cdid, session, &body)).await;
            cdids.push(cdid);
        }
        for cdid in &cdids {
            let what = format!("the broadcast of {cdid}");
            let v = talker.expect(&what, |v| v["cdid"] == cdid.as_str()).await;
            assert!(is_broadcast_of(&v, session, &body), "{cdid}: {v}");
        }
        talker.clear();
        sent += cdids.len();
        if slow_kicks(node, "chat").await > kicks_before {
            return sent;
        }
    }
}

/// A chat device in a group that never reads while another member sends 3.6 KB messages:
/// it is closed with 4001 `slow consumer: outbound buffer full` and counted once in
/// `murmur_disconnects_total{protocol="chat",reason="slow_consumer"}`; the sender is served throughout; VmRSS bounded as for Helios,
/// over two floods (a second device of the same user, stalled too).
#[actix_rt::test]
async fn a_chat_device_that_never_reads_is_closed_and_costs_the_node_a_bounded_amount() {
    let cluster = bounded_node(&[]).await;
    let node = cluster.node(0);
    let (slow, talker_user) = (uniq("slow-"), uniq("talker-"));
    let mut talker = ChatClient::login(node, &talker_user, "t1").await;
    let cdid = talker.cdid("create");
    talker.send(&create_action(&cdid, &[&slow])).await;
    let info = talker.expect_info(&cdid).await;
    let session = info["session-id"].as_str().unwrap().to_string();
    talker.clear();

    let mut meter = Meter::start(node);
    for round in 0..2 {
        let stalled = stalled_chat_device(node, &slow, &format!("d{round}")).await;
        let kicks = slow_kicks(node, "chat").await;
        assert_eq!(kicks, round as f64);
        let flood = async {
            let sent = flood_group(node, &mut talker, &session, kicks).await;
            (sent, sent * CHAT_BODY)
        };
        meter.measure(flood).await;
        let what = format!("round {round}: the stalled chat device");
        let drained = drain_closed_slow(stalled, &what).await;
        meter.report(&format!(
            "chat round {round} (the device then read {} frames)",
            drained.messages
        ));
    }
    let cdid = talker.cdid("after");
    talker
        .send(&send_action(&cdid, &session, "still here"))
        .await;
    let v = talker
        .expect("the last broadcast", |v| v["cdid"] == cdid.as_str())
        .await;
    assert!(is_broadcast_of(&v, &session, "still here"), "{v}");
    assert_eq!(
        slow_kicks(node, "chat").await,
        2.0,
        "each close counted once"
    );
    meter.assert_bounded("chat");
    assert_outbound_gauge_drains(node).await;
}

// ---- Sink ------------------------------------------------------------------------------------

/// Events queued for the device per round.
const SINK_EVENTS: usize = 96;
/// Bytes of event data per Sink event (a PUBLISH of about 60 KiB, under the 65535-byte
/// frame limit).
const SINK_DATA: usize = 60 * 1024;
/// PUBLISHes waiting for an ACK at most (docs/sink.md).
const SINK_WINDOW: f64 = 32.0;
/// How long a Sink session of a device that does not read may last: the idle limit
/// (`MURMUR_SINK_IDLE=4s`) once the window has left the process, or the 30 s write timeout
/// while it cannot (docs/sink.md), with room for a slow machine.
const SINK_END: Duration = Duration::from_secs(45);

/// An encoded CONNECTION_REQUEST of client instance `instance` (`server`: the server
/// instance id it knows, if any).
fn connection_request(instance: u32, server: Option<u32>) -> Vec<u8> {
    encode(&Frame::ConnectionRequest {
        version: 0,
        application_version: "v1.0.0".into(),
        client_instance_id: instance,
        server_instance_id: server,
    })
}

/// A Sink device over WebSocket that completes its handshake (`server` = `None`: a new
/// client) and then never reads; returns it and the server instance id.
async fn stalled_sink_device(
    node: &Node,
    client: &str,
    instance: u32,
    server: Option<u32>,
) -> (Stalled, u32) {
    let url = node.ws_url(&format!("/sink?token={}", token(client)));
    let mut s = Stalled::ws(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    s.send_binary(&connection_request(instance, server)).await;
    let answer = match s.recv(Duration::from_secs(5)).await {
        Some(WsEvent::Binary(b)) => decode(&b).unwrap_or_else(|e| panic!("{e}")),
        other => panic!("handshake answer: {other:?}"),
    };
    match (answer, server) {
        (Frame::ConnectionResponse(ConnectionResponse::HelloNewClient(s_id)), None) => (s, s_id),
        (Frame::ConnectionResponse(ConnectionResponse::Connected), Some(s_id)) => (s, s_id),
        (other, _) => panic!("handshake answered {other:?}"),
    }
}

/// The API body queuing one Sink event of `SINK_DATA` bytes `fill` (docs/sink.md).
fn big_event(fill: u8) -> serde_json::Value {
    json!({"event_type_id": 5, "schema_version": 1, "key": base64_encode(b"big"),
           "event_data": base64_encode(&[fill; SINK_DATA])})
}

/// Queues `SINK_EVENTS` events of `SINK_DATA` bytes for `client` through the API.
async fn flood_outbox(node: &Node, client: &str, round: usize) -> usize {
    let body = Bytes::from(big_event(round as u8).to_string());
    let (path, api) = (format!("/api/v1/sink/clients/{client}/events"), http());
    for _ in 0..SINK_EVENTS / PARALLEL {
        post_parallel(&api, node, &path, &body, 202).await;
    }
    SINK_EVENTS * body.len()
}

/// `murmur_connections{protocol="sink"}`.
async fn sink_connections(node: &Node) -> f64 {
    metric(node, "murmur_connections", &[("protocol", "sink")]).await
}

/// `murmur_sink_events_total{direction="out", outcome}`.
async fn sink_out(node: &Node, outcome: &str) -> f64 {
    metric(
        node,
        "murmur_sink_events_total",
        &[("direction", "out"), ("outcome", outcome)],
    )
    .await
}

/// A Sink device over WebSocket that never reads (and sends nothing after its handshake)
/// while the API queues 96 events of 60 KiB for it, twice (the second time on a new
/// connection of the same device). The outbox is durable (Redis) and at most 32 PUBLISHes
/// wait for an ACK, so the node never sends more than 32 per connection and keeps the rest
/// in the outbox; its VmRSS grows by at most 1 MiB + 16 MiB over both rounds.
///
/// How the connection ends depends on the kernel, not on the test: the 32 PUBLISHes
/// (about 1.9 MiB) are less than a loopback socket's send buffer may take, so either they
/// all leave the process and the idle limit (`MURMUR_SINK_IDLE=4s`) ends the session with
/// close 4004 `idle: nothing received` after all 32, or the kernel takes less, the node's buffer stays at
/// `MURMUR_OUTBOUND_MAX_BYTES` for the 30 s write timeout (docs/sink.md, "Malformed and
/// hostile input") and the device is closed with 4001 `slow consumer: outbound buffer
/// full` (docs/close-codes.md), counted as `dropped_slow` (docs/metrics.md). Each round
/// asserts exactly the outcome its counters report, and prints which one it was.
#[actix_rt::test]
async fn a_sink_device_that_never_reads_costs_the_node_a_bounded_amount() {
    let cluster = bounded_node(&[("MURMUR_SINK_IDLE", "4s")]).await;
    let node = cluster.node(0);
    let client = uniq("meter-");
    let instance = 7;
    let mut meter = Meter::start(node);
    let mut server = None;
    for round in 0..2 {
        // Counted before connecting: on a known device's connection the pump sends the
        // unACKed window at once, before the handshake answer is even read.
        let sent_before = sink_out(node, "sent").await;
        let slow_before = slow_drops(node, "sink").await;
        let (stalled, s) = stalled_sink_device(node, &client, instance, server).await;
        server = Some(s);
        let flood = async {
            let bytes = flood_outbox(node, &client, round).await;
            // Without reading: the session ends by the idle limit or as a slow consumer.
            eventually(
                &format!("round {round}: the Sink session to end"),
                SINK_END,
                || async {
                    let gone = sink_connections(node).await == 0.0;
                    (gone || slow_drops(node, "sink").await > slow_before).then_some(())
                },
            )
            .await;
            (SINK_EVENTS, bytes)
        };
        meter.measure(flood).await;
        let drained = stalled.drain(DRAIN).await;
        let sent = sink_out(node, "sent").await - sent_before;
        let slow = slow_drops(node, "sink").await > slow_before;
        assert!(
            sent <= SINK_WINDOW,
            "round {round}: at most the window of {SINK_WINDOW} PUBLISHes per connection, sent {sent}"
        );
        if slow {
            assert_eq!(
                drained.close,
                Some(Some((4001, SLOW_REASON.to_string()))),
                "round {round}: counted as dropped_slow, so closed as a slow consumer"
            );
            assert!(
                drained.messages as f64 <= sent,
                "round {round}: {drained:?}"
            );
        } else {
            assert_eq!(
                drained.close,
                Some(Some((4004, "idle: nothing received".to_string()))),
                "round {round}: not a slow consumer, so the idle limit ends it with 4004"
            );
            assert_eq!(
                (sent, drained.messages),
                (SINK_WINDOW, SINK_WINDOW as usize),
                "round {round}: the whole window sent and read, then the close"
            );
        }
        let (status, info) = api_get(node, &format!("/api/v1/sink/clients/{client}")).await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(
            info["outbox_depth"],
            (SINK_EVENTS * (round + 1)) as u64,
            "nothing ACKed, everything kept in the outbox: {info}"
        );
        let how = if slow {
            "closed 4001 by the buffer bound"
        } else {
            "closed 4004 by the idle limit"
        };
        meter.report(&format!(
            "Sink round {round} ({sent} PUBLISHes sent, {} read, {how})",
            drained.messages
        ));
        eventually("the Sink connection to be gone", SOON, || async {
            (sink_connections(node).await == 0.0).then_some(())
        })
        .await;
    }
    let (first_sent, redelivered) = (
        sink_out(node, "sent").await,
        sink_out(node, "redelivered").await,
    );
    assert!(
        redelivered > 0.0 && redelivered <= SINK_WINDOW && redelivered < first_sent,
        "the second connection starts with the unACKed events of the first: {redelivered} \
         redelivered of {first_sent} sent"
    );
    meter.assert_bounded("Sink");
    assert_outbound_gauge_drains(node).await;
}

/// The control for the Sink case: a device that *does* read is never a slow consumer,
/// also when it connects to a full window of large events waiting in its outbox (40
/// events of 60 KiB queued while it was away: the node sends the first 32 at once, about
/// 1.9 MiB, more than `MURMUR_OUTBOUND_MAX_BYTES`, so its buffer fills and the pump waits
/// for the device to read; docs/close-codes.md: 4001 is for a device that leaves its
/// window unacknowledged while its buffer is full). It receives all 32 PUBLISHes, ACKs
/// them, gets the other 8, and is not disconnected.
#[actix_rt::test]
async fn a_sink_device_that_reads_gets_a_full_window_of_large_events_without_being_closed() {
    let cluster = bounded_node(&[]).await;
    let node = cluster.node(0);
    let client = uniq("reader-meter-");
    let body = Bytes::from(big_event(9).to_string());
    let (path, api) = (format!("/api/v1/sink/clients/{client}/events"), http());
    for _ in 0..40 / PARALLEL {
        post_parallel(&api, node, &path, &body, 202).await;
    }
    let url = node.ws_url(&format!("/sink?token={}", token(&client)));
    let mut ws = murmur_tests::WsClient::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e:?}"));
    ws.send_binary(connection_request(11, None)).await;
    let mut ids = Vec::new();
    let mut handshake = None;
    while ids.len() < 40 {
        match ws.recv().await {
            WsEvent::Binary(b) => match decode(&b).unwrap_or_else(|e| panic!("{e}")) {
                Frame::ConnectionResponse(r) => handshake = Some(r),
                Frame::Publish { id, event } => {
                    assert_eq!(event.data.len(), SINK_DATA);
                    ids.push(id);
                    if ids.len() == 32 {
                        for id in &ids {
                            ws.send_binary(encode(&Frame::Ack { id: *id })).await;
                        }
                    }
                    if ids.len() > 32 {
                        ws.send_binary(encode(&Frame::Ack { id })).await;
                    }
                }
                other => panic!("unexpected frame {other:?}"),
            },
            other => panic!(
                "a reading device must not be closed: got {other:?} after {} PUBLISHes",
                ids.len()
            ),
        }
    }
    assert!(
        matches!(handshake, Some(ConnectionResponse::HelloNewClient(_))),
        "{handshake:?}"
    );
    assert_eq!(
        slow_drops(node, "sink").await,
        0.0,
        "no slow-consumer drop for a reading device"
    );
    ws.send_binary(encode(&Frame::Ping)).await;
    match ws.recv().await {
        WsEvent::Binary(b) => assert_eq!(decode(&b).unwrap(), Frame::Pong),
        other => panic!("PONG expected, got {other:?}"),
    }
}

/// The control for the chat case: devices that read are never slow consumers, however
/// many frames pass through them. With `MURMUR_OUTBOUND_MAX_FRAMES=64`, two members of a
/// group exchange 640 messages in bursts of 16 (the server packs bursts into
/// `batch-mode-action` frames), each reading everything as it comes: neither is closed,
/// and no slow-consumer close is counted.
#[actix_rt::test]
async fn chat_devices_that_read_are_never_closed_as_slow_consumers() {
    let cluster = bounded_node(&[("MURMUR_OUTBOUND_MAX_FRAMES", "64")]).await;
    let node = cluster.node(0);
    let (a_user, b_user) = (uniq("reader-a-"), uniq("reader-b-"));
    let mut a = ChatClient::login(node, &a_user, "a1").await;
    let mut b = ChatClient::login(node, &b_user, "b1").await;
    let cdid = a.cdid("create");
    a.send(&create_action(&cdid, &[&b_user])).await;
    let info = a.expect_info(&cdid).await;
    let session = info["session-id"].as_str().unwrap().to_string();
    b.expect("the new session", |v| {
        kind(v) == "providing-session-info" && v["session-id"] == session.as_str()
    })
    .await;
    a.clear();
    for round in 0..40 {
        let mut cdids = Vec::new();
        for k in 0..16 {
            let cdid = a.cdid("m");
            a.send(&send_action(&cdid, &session, &format!("r{round} m{k}")))
                .await;
            cdids.push((cdid, format!("r{round} m{k}")));
        }
        for (cdid, body) in &cdids {
            let v = a
                .expect(&format!("the sender's copy of {body}"), |v| {
                    v["cdid"] == cdid.as_str()
                })
                .await;
            assert!(is_broadcast_of(&v, &session, body), "{v}");
            b.expect(&format!("the other member's copy of {body}"), |v| {
                is_broadcast_of(v, &session, body)
            })
            .await;
        }
        a.clear();
        b.clear();
    }
    assert_eq!(
        slow_kicks(node, "chat").await,
        0.0,
        "nobody was a slow consumer"
    );
}

/// A Helios subscriber closed with 4001 that never reads again does not keep its buffer:
/// once its close frame is queued the node gives it `CLOSE_LINGER` (10 s) to take what is
/// left, then lets the socket go, and `murmur_outbound_bytes` is back at 0 while the
/// client still holds its end open (docs/close-codes.md, 4001).
#[actix_rt::test]
async fn a_slow_consumer_that_never_reads_again_is_let_go_after_the_linger() {
    let cluster = bounded_node(&[]).await;
    let node = cluster.node(0);
    let mut other = Starling::connect(node, &uniq("reader-")).await;
    let channel = uniq("flood-");
    let stalled = stalled_subscriber(node, &channel).await;
    let kicks = slow_kicks(node, "helios").await;
    flood_channel(node, &channel, kicks, &mut other).await;
    eventually(
        "murmur_outbound_bytes back to 0 with the stalled client still connected",
        Duration::from_secs(25),
        || async { (metric(node, "murmur_outbound_bytes", &[]).await == 0.0).then_some(()) },
    )
    .await;
    let pong = other.call_ok("system:ping", json!({})).await;
    assert_eq!(pong["pong"], true, "{pong}");
    drop(stalled);
}
