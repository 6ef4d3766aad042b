//! Helpers shared by the fault tests (`fault_*.rs`; each test file is its own crate and
//! uses a subset, hence the `dead_code` and `unused_imports` allowance): load drivers that
//! keep running while a node or Redis fails, and the bookkeeping to count what the broker
//! accepted and what arrived.
//!
//! * [`Feed`]: the backend publishes `{"i": n}` on a channel at a steady rate through one
//!   node's API and records every answer.
//! * [`Collector`]: a Helios-Starling that records every notification it receives (topic,
//!   data, `notification.seq`, which connection) on a background task; with a recovery
//!   token it reconnects with `?recover=` when its connection goes away. It stops once it
//!   has seen the markers of a [`barrier`]: a marker published after everything else
//!   proves that nothing more arrives.
//! * [`SinkDevice`]: a development-mode Sink device over TCP publishing one event at a time
//!   (window 1), recording which node ACKed or NACKed each event, reconnecting to the next
//!   node when its connection breaks and sending the unacknowledged event again.
//! * [`StickSender`] / [`StickReceiver`]: a TimeStick session POSTing numbered requests and
//!   one long-polling them with its cursor, each moving to the next node on a transport
//!   error (sessions are [`timestick_common::Session`]s).
//! * [`RedisLoad`]: the mixed load of the two Redis fault files (feed, devices, watchers
//!   and subscribers on a 3-node cluster), and the checks both make of what arrived.
//!
//! Pacing uses `tokio::time::interval` (a load rate, not a wait for something); every wait
//! for an outcome, reconnects included, is bounded with [`murmur_tests::within`],
//! [`murmur_tests::eventually`] or [`murmur_tests::poll_until`].
#![allow(dead_code, unused_imports)]

#[path = "../timestick_common/mod.rs"]
pub mod timestick_common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use actix_rt::task::JoinHandle;
use murmur_shared::sink::{decode, encode, ConnectionResponse, Event, Frame, FrameReader};
use murmur_tests::{
    api_post, eventually, http, metric, poll_until, try_request, within, Cluster, Method, Node,
    RedisServer, Resp, Starling, WsClient, WsEvent, API_KEY,
};
/// The one timing vocabulary (murmur_tests::wait).
pub use murmur_tests::{CROSS, QUIET, SOON};
use serde_json::{json, Value};
use timestick_common::{request_msg, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use murmur_tests::helios::now_ms;
pub use murmur_tests::uniq;
/// How long a background driver may run at most before it gives up.
pub const DRIVER_DEADLINE: Duration = Duration::from_secs(90);
/// Backend publications per second of a [`Feed`].
pub const FEED_RATE: u64 = 50;
/// Device events and TimeStick requests: one per this period, per device / session.
pub const PERIOD: Duration = Duration::from_millis(50);
/// `/readyz` must turn non-200 within this long after Redis goes away…
pub const DETECT_BOUND: Duration = Duration::from_secs(5);
/// …and be 200 again within this long after Redis is back.
pub const RECONNECT_BOUND: Duration = Duration::from_secs(10);
/// Publications and device events the bus had taken within this long before Redis went
/// away (and until the node noticed) may have been written to a socket that Redis never
/// read, or read only after the node had dropped the connection: they are lost at the
/// moment of the loss, and (see the reports printed) not always counted in
/// `murmur_bus_errors_total{kind="publish"}`.
pub const LOSS_WINDOW_MS: i64 = 100;
/// The NACK a device gets while the store is down (docs/sink.md).
pub const NACK_UNAVAILABLE: (&[u8], &str) = (&[0x02], "temporarily unavailable; send again later");

/// Milliseconds since the Unix epoch (signed, for differences).
pub fn now() -> i64 {
    now_ms() as i64
}

/// A Starling of a fresh user (`user` + suffix) on `node`, subscribed to `channels`.
pub async fn subscribed(node: &Node, user: &str, channels: &[&str]) -> Starling {
    let mut s = Starling::connect(node, &uniq(user)).await;
    for ch in channels {
        let data = s
            .call_ok("broker:subscribe", json!({ "channel": ch }))
            .await;
        assert_eq!(data["subscribed"], true, "{data}");
    }
    s
}

/// A random non-zero Sink client instance id (the device's client id is `dev-<id>`).
pub fn sink_instance() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(1)
}

// ---- the backend API, without panicking on transport errors ---------------------------------

/// `POST <internal>/api/v1/publish {channel, data, ~timing?}` over `client` →
/// `Ok((status, body))`, or `Err(why)` on a transport error (refused, reset, timeout).
pub async fn try_publish(
    client: &awc::Client,
    internal_url: &str,
    channel: &str,
    data: Value,
    timing: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut body = json!({ "channel": channel, "data": data });
    if let Some(t) = timing {
        body["~timing"] = t;
    }
    let url = format!("{internal_url}/api/v1/publish");
    let auth = format!("Bearer {API_KEY}");
    let headers = [("Authorization", auth.as_str())];
    let reply = try_request(client, Method::POST, &url, &headers, Some(&body)).await?;
    Ok((reply.status, reply.json()))
}

/// Holds `data` on `channel` for `delay_ms` (`~timing.delay_milli`) through the API at
/// `internal_url`; asserts 200 with `deliverAt` (docs/timing.md).
pub async fn hold(internal_url: &str, channel: &str, data: Value, delay_ms: i64) {
    let timing = json!({ "delay_milli": delay_ms });
    let (status, body) = try_publish(&http(), internal_url, channel, data.clone(), Some(timing))
        .await
        .unwrap_or_else(|e| panic!("hold {data}: {e}"));
    assert_eq!(status, 200, "hold {data}: {body}");
    assert!(body["deliverAt"].is_string(), "hold {data} is held: {body}");
}

/// Publishes `{"marker": marker}` on `channel` through `node`; asserts 200.
pub async fn publish_marker(node: &Node, channel: &str, marker: &str) {
    let (status, body) = api_post(
        node,
        "/api/v1/publish",
        json!({ "channel": channel, "data": { "marker": marker } }),
    )
    .await;
    assert_eq!(status, 200, "marker on {channel}: {body}");
}

// ---- cluster state -------------------------------------------------------------------------

/// Waits until every node's `/readyz` is 200 (`ready`) or not 200 (`!ready`), at most
/// `bound` after `since` (Unix ms); returns when the last node got there.
pub async fn await_readiness(nodes: &[Node], ready: bool, since: i64, bound: Duration) -> i64 {
    let want = if ready { "200" } else { "non-200" };
    for node in nodes {
        let left = bound.saturating_sub(Duration::from_millis((now() - since).max(0) as u64));
        eventually(
            &format!("/readyz of {} to be {want}", node.id()),
            left,
            || async { ((node.readyz().await == 200) == ready).then_some(()) },
        )
        .await;
    }
    let at = now();
    assert!(
        at - since <= bound.as_millis() as i64,
        "every /readyz {want} {} ms after the fault (bound {bound:?})",
        at - since
    );
    at
}

/// Waits (within `bound`) until `nodes` together count at least `n` held API publications
/// released (`murmur_timing_total{protocol="api",event="released"}`); returns the count.
pub async fn await_api_releases(nodes: &[&Node], n: usize, bound: Duration) -> f64 {
    eventually(
        &format!("{n} held messages to be released"),
        bound,
        || async {
            let mut sum = 0.0;
            for node in nodes {
                sum += metric(
                    node,
                    "murmur_timing_total",
                    &[("protocol", "api"), ("event", "released")],
                )
                .await;
            }
            (sum >= n as f64).then_some(sum)
        },
    )
    .await
}

/// Waits until every node reports an empty schedule (`murmur_scheduled_messages`, which
/// each node refreshes after each scheduler round, at most 100 ms apart: docs/timing.md).
pub async fn await_schedule_empty(nodes: &[&Node]) {
    for node in nodes {
        eventually(
            &format!("{}: murmur_scheduled_messages 0", node.id()),
            SOON,
            || async {
                (metric(node, "murmur_scheduled_messages", &[]).await == 0.0).then_some(())
            },
        )
        .await;
    }
}

// ---- the backend feed ----------------------------------------------------------------------

/// One publication of a [`Feed`].
#[derive(Debug, Clone)]
pub struct Pub {
    pub i: u64,
    /// HTTP status, or the transport error.
    pub outcome: Result<u16, String>,
    /// When the request was sent and when its answer came (Unix ms).
    pub sent_ms: i64,
    pub done_ms: i64,
}

/// `data.i` of the publications in `published` that satisfy `pred`.
pub fn pub_is(published: &[Pub], pred: impl Fn(&Pub) -> bool) -> Vec<u64> {
    published.iter().filter(|p| pred(p)).map(|p| p.i).collect()
}

/// The backend publishing `{"i": n}` (n = 0, 1, …) on a channel at a steady rate.
pub struct Feed {
    pub channel: String,
    pub log: Rc<RefCell<Vec<Pub>>>,
    stop: Rc<Cell<bool>>,
    handle: JoinHandle<()>,
}

impl Feed {
    /// Starts publishing on `channel` through the API at `internal_url`, `per_second`.
    pub fn start(channel: &str, internal_url: &str, per_second: u64) -> Feed {
        let log = Rc::new(RefCell::new(Vec::new()));
        let stop = Rc::new(Cell::new(false));
        let (l, s, ch, url) = (
            log.clone(),
            stop.clone(),
            channel.to_string(),
            internal_url.to_string(),
        );
        let handle = actix_rt::spawn(async move {
            let client = http();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
            let mut i = 0u64;
            while !s.get() {
                tick.tick().await;
                let sent_ms = now();
                let outcome = try_publish(&client, &url, &ch, json!({ "i": i }), None)
                    .await
                    .map(|(status, _)| status);
                l.borrow_mut().push(Pub {
                    i,
                    outcome,
                    sent_ms,
                    done_ms: now(),
                });
                i += 1;
            }
        });
        Feed {
            channel: channel.to_string(),
            log,
            stop,
            handle,
        }
    }

    /// Publications answered 200 so far.
    pub fn accepted(&self) -> usize {
        self.accepted_since(i64::MIN)
    }

    /// Publications sent after `ms` (Unix ms) and answered 200 so far.
    pub fn accepted_since(&self, ms: i64) -> usize {
        self.log
            .borrow()
            .iter()
            .filter(|p| p.sent_ms > ms && p.outcome == Ok(200))
            .count()
    }

    /// Publications answered so far (any outcome).
    pub fn answered(&self) -> usize {
        self.log.borrow().len()
    }

    /// Stops after the publication in progress and returns the whole log.
    pub async fn stop(self) -> Vec<Pub> {
        self.stop.set(true);
        within("the feed to stop", SOON, self.handle)
            .await
            .expect("the feed task does not panic");
        Rc::try_unwrap(self.log)
            .map(RefCell::into_inner)
            .unwrap_or_else(|rc| rc.borrow().clone())
    }
}

// ---- Helios collectors ---------------------------------------------------------------------

/// One notification a [`Collector`] received.
#[derive(Debug, Clone)]
pub struct Note {
    pub topic: String,
    pub data: Value,
    /// `notification.seq` (the per-channel sequence), when present.
    pub seq: Option<u64>,
    pub at_ms: i64,
    /// 0 for the first connection, 1 after the first recovery, …
    pub conn: u32,
}

impl Note {
    /// `data.i`, for feed publications.
    pub fn i(&self) -> Option<u64> {
        self.data.get("i").and_then(Value::as_u64)
    }

    /// `data.marker`.
    pub fn marker(&self) -> Option<&str> {
        self.data.get("marker").and_then(Value::as_str)
    }
}

/// What a [`Collector`] recorded.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub label: String,
    pub notes: Vec<Note>,
    /// How each connection ended (close frame or end of stream), in order.
    pub ends: Vec<String>,
    /// `data` of every `connection:recovered`.
    pub recovered: Vec<Value>,
    /// Why the collector stopped early (deadline, failed recovery), if it did.
    pub failed: Option<String>,
}

impl Collected {
    /// Notes on `topic`, markers excluded.
    pub fn on(&self, topic: &str) -> Vec<&Note> {
        self.notes
            .iter()
            .filter(|n| n.topic == topic && n.marker().is_none())
            .collect()
    }

    /// `data.i` of the feed publications received on `channel`, in arrival order.
    pub fn feed_is(&self, channel: &str) -> Vec<u64> {
        self.on(channel)
            .iter()
            .map(|n| {
                n.i().unwrap_or_else(|| {
                    panic!("{}: not a feed publication: {:?}", self.label, n.data)
                })
            })
            .collect()
    }

    /// `data[field]` of the notes on `channel` that have it (e.g. held messages).
    pub fn numbers(&self, channel: &str, field: &str) -> Vec<u64> {
        self.on(channel)
            .iter()
            .filter_map(|n| n.data[field].as_u64())
            .collect()
    }
}

struct Shared {
    state: RefCell<Collected>,
    /// Markers to see before stopping; `None` until [`Collector::expect_markers`].
    markers: RefCell<Option<Vec<String>>>,
}

/// A Starling recording notifications on a background task. See the module docs.
pub struct Collector {
    shared: Rc<Shared>,
    handle: JoinHandle<()>,
}

impl Collector {
    /// Starts reading `s`. With `recover = Some((token, ws_url_base))` a lost connection is
    /// followed by `<base>/starling?recover=<token>` (`base` like `ws://127.0.0.1:port`).
    pub fn start(label: &str, s: Starling, recover: Option<(String, String)>) -> Collector {
        let shared = Rc::new(Shared {
            state: RefCell::new(Collected {
                label: label.to_string(),
                ..Collected::default()
            }),
            markers: RefCell::new(None),
        });
        let sh = shared.clone();
        let handle = actix_rt::spawn(async move {
            let outcome =
                tokio::time::timeout(DRIVER_DEADLINE, collect(sh.clone(), s, recover)).await;
            if outcome.is_err() {
                sh.state.borrow_mut().failed =
                    Some(format!("still collecting after {DRIVER_DEADLINE:?}"));
            }
        });
        Collector { shared, handle }
    }

    /// [`Collector::start`] with a fresh Starling `user` on `node` subscribed to `channels`.
    pub async fn subscribed(label: &str, node: &Node, user: &str, channels: &[&str]) -> Self {
        Self::start(label, subscribed(node, user, channels).await, None)
    }

    /// How many notes so far satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&Note) -> bool) -> usize {
        self.shared
            .state
            .borrow()
            .notes
            .iter()
            .filter(|n| pred(n))
            .count()
    }

    /// Recoveries completed so far.
    pub fn recoveries(&self) -> usize {
        self.shared.state.borrow().recovered.len()
    }

    /// Arms the barrier: the collector stops once it has seen every one of `markers`
    /// (as `data.marker`). Call it *before* publishing them.
    pub fn expect_markers(&self, markers: Vec<String>) {
        *self.shared.markers.borrow_mut() = Some(markers);
    }

    /// Waits (within `bound`) for the collector to stop and returns what it recorded.
    pub async fn finish(self, bound: Duration) -> Collected {
        let label = self.shared.state.borrow().label.clone();
        within(
            &format!("collector {label} to see its markers"),
            bound,
            self.handle,
        )
        .await
        .expect("the collector task does not panic");
        let state = self.shared.state.borrow().clone();
        if let Some(why) = &state.failed {
            panic!("collector {label}: {why}; ends {:?}", state.ends);
        }
        state
    }
}

/// The barrier that ends a fault test: arms every collector with one fresh marker, publishes
/// it on every channel through `node` (after everything else), and waits until each
/// collector has seen it; returns what they recorded, in order.
pub async fn barrier(node: &Node, channels: &[&str], collectors: Vec<Collector>) -> Vec<Collected> {
    let marker = uniq("end-");
    for c in &collectors {
        c.expect_markers(vec![marker.clone()]);
    }
    for ch in channels {
        publish_marker(node, ch, &marker).await;
    }
    let mut out = Vec::new();
    for c in collectors {
        out.push(c.finish(CROSS).await);
    }
    out
}

fn markers_seen(sh: &Shared) -> bool {
    let markers = sh.markers.borrow();
    let Some(want) = markers.as_ref() else {
        return false;
    };
    let state = sh.state.borrow();
    want.iter()
        .all(|m| state.notes.iter().any(|n| n.marker() == Some(m.as_str())))
}

async fn collect(sh: Rc<Shared>, s: Starling, recover: Option<(String, String)>) {
    let mut ws = s.into_ws();
    let mut conn = 0u32;
    loop {
        if markers_seen(&sh) {
            return;
        }
        let event = ws.try_recv(Duration::from_millis(100)).await;
        let end = match event {
            None => continue,
            Some(WsEvent::Text(text)) => {
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("non-JSON Helios message ({e}): {text}"));
                if v["type"] != "notification" {
                    continue;
                }
                let topic = v["notification"]["topic"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut state = sh.state.borrow_mut();
                match topic.as_str() {
                    "connection:recovered" => {
                        state.recovered.push(v["notification"]["data"].clone())
                    }
                    "connection:recovery_failed" => {
                        state.failed = Some(format!("recovery failed: {v}"));
                        return;
                    }
                    _ => state.notes.push(Note {
                        topic,
                        data: v["notification"]["data"].clone(),
                        seq: v["notification"]["seq"].as_u64(),
                        at_ms: now(),
                        conn,
                    }),
                }
                continue;
            }
            Some(WsEvent::Binary(_)) => continue,
            Some(WsEvent::Close(c)) => format!("close {c:?}"),
            Some(WsEvent::Closed) => "stream ended".to_string(),
        };
        sh.state.borrow_mut().ends.push(end);
        let Some((token, base)) = &recover else {
            // Nothing more can arrive.
            sh.state.borrow_mut().failed = Some("connection lost (no recovery token)".into());
            return;
        };
        // Reconnect at once, as a client would; a refusal is retried (bounded).
        let url = format!("{base}/starling?recover={token}");
        let recovered = poll_until(CROSS, || async {
            match WsClient::connect(&url).await {
                Ok(ws) => Some(ws),
                Err(e) => {
                    let why = format!("recovery refused: {e:?}");
                    sh.state.borrow_mut().ends.push(why);
                    None
                }
            }
        })
        .await;
        let Some(next) = recovered else {
            sh.state.borrow_mut().failed = Some(format!("cannot recover within {CROSS:?}"));
            return;
        };
        ws = next;
        conn += 1;
    }
}

// ---- Sink devices --------------------------------------------------------------------------

/// What happened to one event a [`SinkDevice`] sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub offset: u64,
    /// The node (index) that ACKed it, and when.
    pub acked: Option<(usize, i64)>,
    /// Every NACK: (machine message, human message, node).
    pub nacks: Vec<(Vec<u8>, String, usize)>,
    /// Nodes whose connection broke while this event waited for its answer.
    pub lost_in_flight: Vec<usize>,
}

/// One connection of a device: the node it went to, and how it ended.
#[derive(Debug, Clone)]
pub struct Connection {
    pub node: usize,
    pub opened_ms: i64,
    pub ended: Option<String>,
}

/// Everything a [`SinkDevice`] did.
#[derive(Debug, Clone, Default)]
pub struct DeviceLog {
    pub client: String,
    pub instance: u32,
    pub events: Vec<Sent>,
    pub connections: Vec<Connection>,
    /// Connection attempts that did not complete a handshake: (node, why).
    pub refused: Vec<(usize, String)>,
}

impl DeviceLog {
    /// Events ACKed so far.
    pub fn acked(&self) -> usize {
        self.acked_since(i64::MIN)
    }

    /// Events ACKed after `ms` (Unix ms).
    pub fn acked_since(&self, ms: i64) -> usize {
        self.offsets_acked(|_, at| at > ms).len()
    }

    /// Events ACKed by `node`.
    pub fn acked_by(&self, node: usize) -> usize {
        self.offsets_acked(|n, _| n == node).len()
    }

    /// Offsets of the events whose ACK (node, Unix ms) satisfies `pred`.
    pub fn offsets_acked(&self, pred: impl Fn(usize, i64) -> bool) -> Vec<u64> {
        self.events
            .iter()
            .filter(|e| e.acked.is_some_and(|(n, at)| pred(n, at)))
            .map(|e| e.offset)
            .collect()
    }

    /// Offsets of the events ACKed in `(from, to]` (Unix ms) by a node other than `node`:
    /// with `from` the fault and `to` the moment every node was ready again, those that
    /// `node` may have missed on `sink/<client>` while its bus had not subscribed again
    /// (channels are not durable: docs/cluster.md, "When Redis goes away").
    pub fn acked_elsewhere_between(&self, node: usize, from: i64, to: i64) -> Vec<u64> {
        self.offsets_acked(|n, at| n != node && at > from && at <= to)
    }

    /// Offsets of every event sent.
    pub fn offsets(&self) -> Vec<u64> {
        self.events.iter().map(|e| e.offset).collect()
    }

    /// The event ACKed last before the first NACK, if it was ACKed at most
    /// [`LOSS_WINDOW_MS`] before `fault_at` (or after it): the only event of the device
    /// whose publication may have gone down with Redis (see [`LOSS_WINDOW_MS`]).
    pub fn at_loss(&self, fault_at: i64) -> Option<u64> {
        let first_nacked = self.events.iter().position(|e| !e.nacks.is_empty())?;
        let e = &self.events[first_nacked.checked_sub(1)?];
        e.acked
            .is_some_and(|(_, at)| at >= fault_at - LOSS_WINDOW_MS)
            .then_some(e.offset)
    }

    /// NACKs received so far.
    pub fn nacks(&self) -> usize {
        self.events.iter().map(|e| e.nacks.len()).sum()
    }

    /// Asserts every event ended up ACKed.
    pub fn assert_all_acked(&self) {
        let open: Vec<&Sent> = self.events.iter().filter(|e| e.acked.is_none()).collect();
        assert!(
            open.is_empty(),
            "{}: every event ends up ACKed: {open:?}",
            self.client
        );
    }

    /// Asserts every NACK is `02` "temporarily unavailable" (the store was away) and
    /// returns the offsets of the events NACKed.
    pub fn assert_nacks_unavailable(&self) -> BTreeSet<u64> {
        let mut nacked = BTreeSet::new();
        for e in &self.events {
            for (machine, human, _) in &e.nacks {
                assert_eq!(
                    (machine.as_slice(), human.as_str()),
                    NACK_UNAVAILABLE,
                    "{}: the NACK while the store is away (event {})",
                    self.client,
                    e.offset
                );
                nacked.insert(e.offset);
            }
        }
        nacked
    }

    /// The events whose live publication a broken connection may have cut off: for each
    /// connection that broke, the event in flight and the last event ACKed on it.
    pub fn around_breaks(&self) -> HashSet<u64> {
        let mut out = HashSet::new();
        for (k, c) in self.connections.iter().enumerate() {
            if c.ended.is_none() {
                continue;
            }
            let opened = c.opened_ms;
            let closed_before = self.connections.get(k + 1).map(|n| n.opened_ms);
            for e in &self.events {
                if e.lost_in_flight.contains(&c.node) {
                    out.insert(e.offset);
                }
            }
            let last = self
                .offsets_acked(|n, at| {
                    n == c.node && at >= opened && closed_before.is_none_or(|b| at <= b)
                })
                .into_iter()
                .max();
            out.extend(last);
        }
        out
    }
}

/// The application version the devices announce.
pub const APP: &str = "v1.0.0";
/// The event type of every device event.
pub const EVENT_TYPE: u64 = 77;
/// The key of every device event.
pub const KEY: &[u8] = b"fault";

/// The event a device sends with `offset` (fixed timestamp, so a resend is identical).
pub fn device_event(client: &str, offset: u64, timestamp: u64) -> Event {
    Event {
        event_type_id: EVENT_TYPE,
        schema_version: 1,
        key: KEY.to_vec(),
        offset,
        timestamp,
        data: format!("{client}:{offset}").into_bytes(),
    }
}

struct Link {
    stream: TcpStream,
    reader: FrameReader,
    buf: Vec<u8>,
}

impl Link {
    async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        let bytes = encode(frame);
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        self.stream.write_all(&out).await
    }

    /// The next frame within `bound`: `Err` on close, read error, timeout or garbage.
    async fn recv(&mut self, bound: Duration) -> Result<Frame, String> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if let Some(f) = self.reader.next_frame() {
                return decode(&f).map_err(|e| format!("undecodable frame: {e}"));
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Err(_) => return Err(format!("no frame within {bound:?}")),
                Ok(Ok(0)) => return Err("EOF".into()),
                Ok(Ok(n)) => self.reader.extend(&self.buf[..n]),
                Ok(Err(e)) => return Err(format!("read error: {e}")),
            }
        }
    }
}

async fn sink_connect(
    addr: SocketAddr,
    instance: u32,
    server: Option<u32>,
) -> Result<(Link, u32), String> {
    let stream = tokio::time::timeout(SOON, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut link = Link {
        stream,
        reader: FrameReader::new(),
        buf: vec![0; 16 * 1024],
    };
    link.send(&Frame::ConnectionRequest {
        version: 0,
        application_version: APP.into(),
        client_instance_id: instance,
        server_instance_id: server,
    })
    .await
    .map_err(|e| format!("send: {e}"))?;
    match link.recv(SOON).await? {
        Frame::ConnectionResponse(ConnectionResponse::HelloNewClient(s)) => Ok((link, s)),
        Frame::ConnectionResponse(ConnectionResponse::Connected) => Ok((
            link,
            server.expect("connected is the answer to a known device"),
        )),
        other => Err(format!("handshake answered {other:?}")),
    }
}

/// A plaintext Sink device (client id `dev-<instance>`) on a background task. See the
/// module docs.
pub struct SinkDevice {
    pub log: Rc<RefCell<DeviceLog>>,
    stop: Rc<Cell<bool>>,
    handle: JoinHandle<()>,
}

impl SinkDevice {
    /// Starts a device that connects to `addrs[first]`, then the next address after each
    /// broken connection, and publishes one event per `period`.
    pub fn start(instance: u32, addrs: Vec<SocketAddr>, first: usize, period: Duration) -> Self {
        let client = format!("dev-{instance}");
        let log = Rc::new(RefCell::new(DeviceLog {
            client,
            instance,
            ..DeviceLog::default()
        }));
        let stop = Rc::new(Cell::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let handle = actix_rt::spawn(async move {
            if tokio::time::timeout(
                DRIVER_DEADLINE,
                drive_device(l.clone(), s, addrs, first, period),
            )
            .await
            .is_err()
            {
                let mut log = l.borrow_mut();
                let n = log.refused.len();
                log.refused.push((
                    usize::MAX,
                    format!("gave up after {DRIVER_DEADLINE:?} ({n} refusals)"),
                ));
            }
        });
        SinkDevice { log, stop, handle }
    }

    /// Starts a device per instance, device `k` first connecting to `addrs[home(k)]`,
    /// each publishing one event per [`PERIOD`].
    pub fn start_all(
        instances: &[u32],
        addrs: &[SocketAddr],
        home: impl Fn(usize) -> usize,
    ) -> Vec<SinkDevice> {
        let start = |(k, &inst)| SinkDevice::start(inst, addrs.to_vec(), home(k), PERIOD);
        instances.iter().enumerate().map(start).collect()
    }

    /// The client id.
    pub fn client(&self) -> String {
        self.log.borrow().client.clone()
    }

    /// Stops sending new events once every event sent so far is ACKed, and returns the
    /// log.
    pub async fn stop(self, bound: Duration) -> DeviceLog {
        self.stop.set(true);
        let client = self.client();
        within(
            &format!("device {client} to have every event ACKed and stop"),
            bound,
            self.handle,
        )
        .await
        .expect("the device task does not panic");
        let log = self.log.borrow().clone();
        log
    }
}

/// Stops every device (see [`SinkDevice::stop`]) and returns their logs, in order.
pub async fn stop_devices(devices: Vec<SinkDevice>) -> Vec<DeviceLog> {
    let mut logs = Vec::new();
    for d in devices {
        logs.push(d.stop(CROSS).await);
    }
    logs
}

async fn drive_device(
    log: Rc<RefCell<DeviceLog>>,
    stop: Rc<Cell<bool>>,
    addrs: Vec<SocketAddr>,
    first: usize,
    period: Duration,
) {
    let (client, instance) = {
        let l = log.borrow();
        (l.client.clone(), l.instance)
    };
    let timestamp = now_ms() / 1000;
    let mut server: Option<u32> = None;
    let mut cur = first;
    let mut id: u16 = 0;
    let mut tick = tokio::time::interval(period);
    loop {
        // Connect to the current node, or else the next ones in turn (bounded).
        let next = Cell::new(cur);
        let connected = poll_until(DRIVER_DEADLINE, || {
            let k = next.get();
            next.set((k + 1) % addrs.len());
            let (log, addr) = (&log, addrs[k]);
            async move {
                match sink_connect(addr, instance, server).await {
                    Ok((link, s)) => Some((k, link, s)),
                    Err(why) => {
                        log.borrow_mut().refused.push((k, why));
                        None
                    }
                }
            }
        })
        .await;
        let Some((k, mut link, s)) = connected else {
            let why = format!("no node took the device within {DRIVER_DEADLINE:?}");
            log.borrow_mut().refused.push((usize::MAX, why));
            return;
        };
        cur = k;
        server = Some(s);
        log.borrow_mut().connections.push(Connection {
            node: cur,
            opened_ms: now(),
            ended: None,
        });
        let broke = loop {
            let next = {
                let mut l = log.borrow_mut();
                match l.events.iter().position(|e| e.acked.is_none()) {
                    Some(k) => Some(k),
                    None if stop.get() => None,
                    None => {
                        let offset = l.events.len() as u64 + 1;
                        l.events.push(Sent {
                            offset,
                            acked: None,
                            nacks: Vec::new(),
                            lost_in_flight: Vec::new(),
                        });
                        Some(l.events.len() - 1)
                    }
                }
            };
            let Some(k) = next else {
                let _ = link.stream.shutdown().await;
                log.borrow_mut()
                    .connections
                    .last_mut()
                    .expect("a connection")
                    .ended = Some("closed by the device".into());
                return;
            };
            tick.tick().await;
            let offset = log.borrow().events[k].offset;
            id = murmur_shared::sink::next_id(id);
            let frame = Frame::Publish {
                id,
                event: device_event(&client, offset, timestamp),
            };
            if let Err(e) = link.send(&frame).await {
                break format!("write: {e}");
            }
            let answer = loop {
                match link.recv(SOON).await {
                    Ok(Frame::Ack { id: got }) if got == id => break Ok(None),
                    Ok(Frame::Nack {
                        id: got,
                        machine,
                        human,
                    }) if got == id => break Ok(Some((machine, human))),
                    Ok(_) => continue,
                    Err(why) => break Err(why),
                }
            };
            let mut l = log.borrow_mut();
            match answer {
                Ok(None) => l.events[k].acked = Some((cur, now())),
                Ok(Some((machine, human))) => l.events[k].nacks.push((machine, human, cur)),
                Err(why) => {
                    l.events[k].lost_in_flight.push(cur);
                    break why;
                }
            }
        };
        log.borrow_mut()
            .connections
            .last_mut()
            .expect("a connection")
            .ended = Some(broke);
        cur = (cur + 1) % addrs.len();
    }
}

/// Offsets of the events stored for `client` in the inbound stream `murmur:sink:in:<client>`
/// (docs/sink.md, "Where the state lives"), in stream order.
pub async fn stored_offsets(redis: &RedisServer, client: &str) -> Vec<u64> {
    let key = format!("murmur:sink:in:{client}");
    let reply = redis.cmd(&["XRANGE", &key, "-", "+"]).await;
    let Resp::Array(Some(entries)) = reply else {
        panic!("XRANGE {key}: {reply:?}");
    };
    entries
        .iter()
        .map(|entry| {
            let Resp::Array(Some(parts)) = entry else {
                panic!("stream entry: {entry:?}");
            };
            let Some(Resp::Array(Some(fields))) = parts.get(1) else {
                panic!("stream entry fields: {entry:?}");
            };
            fields
                .iter()
                .filter_map(Resp::as_str)
                .filter_map(|f| serde_json::from_str::<Value>(&f).ok())
                .find_map(|v| v["offset"].as_u64())
                .unwrap_or_else(|| panic!("no event JSON with an offset in {entry:?}"))
        })
        .collect()
}

/// Asserts the store holds every event of `log` exactly once: in the inbound stream and in
/// the seen-set (`SCARD murmur:sink:seen:<client>`).
pub async fn assert_stored_once(redis: &RedisServer, log: &DeviceLog) {
    let client = &log.client;
    let all = log.offsets();
    let stored = stored_offsets(redis, client).await;
    let what = format!("{client}: every ACKed event stored in murmur:sink:in");
    assert_each_once(&what, all.iter().copied(), stored);
    let key = format!("murmur:sink:seen:{client}");
    let seen = redis
        .cmd(&["SCARD", &key])
        .await
        .as_int()
        .unwrap_or_else(|| panic!("SCARD {key} is not an integer"));
    assert_eq!(
        seen,
        all.len() as i64,
        "{client}: the seen-set holds every identity once"
    );
}

/// The events of `log` that `c` did not receive on `sink/<client>`; asserts none arrived
/// twice (docs/sink.md: a duplicate is not published again).
pub fn unpublished(c: &Collected, log: &DeviceLog) -> Vec<u64> {
    let client = &log.client;
    let published = c.on(&format!("sink/{client}")).into_iter().map(|n| {
        assert_eq!(n.data["client"], client.as_str(), "{:?}", n.data);
        n.data["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("a sink publication without offset: {:?}", n.data))
    });
    let (missing, duplicated) = missing_and_duplicated(log.offsets(), published);
    assert!(
        duplicated.is_empty(),
        "{}: each event of {client} published at most once: {duplicated:?}",
        c.label
    );
    missing
}

// ---- TimeStick -----------------------------------------------------------------------------

/// What happened to one POST of a [`StickSender`].
#[derive(Debug, Clone)]
pub struct Posted {
    pub k: u64,
    /// (node, status or transport error) per attempt.
    pub attempts: Vec<(usize, Result<u16, String>)>,
}

impl Posted {
    /// 202 on some attempt, or 409 `DUPLICATE_MESSAGE` after a transport error (the
    /// earlier attempt was accepted).
    pub fn accepted(&self) -> bool {
        self.attempts
            .iter()
            .any(|(_, r)| matches!(r, Ok(202) | Ok(409)))
    }
}

/// A TimeStick session POSTing `request`s `m<k>` with payload `{"k": k}`.
pub struct StickSender {
    pub log: Rc<RefCell<Vec<Posted>>>,
    stop: Rc<Cell<bool>>,
    handle: JoinHandle<()>,
}

impl StickSender {
    /// Starts posting as `session` to `bases[first]` (public URLs), moving to the next base
    /// on a transport error (the same `message_id` is posted again there).
    pub fn start(session: &Session, bases: Vec<String>, first: usize, period: Duration) -> Self {
        let log = Rc::new(RefCell::new(Vec::new()));
        let stop = Rc::new(Cell::new(false));
        let (l, s, session) = (log.clone(), stop.clone(), session.clone());
        let handle = actix_rt::spawn(async move {
            let (client, auth) = (http(), format!("Bearer {}", session.token));
            let headers = [("Authorization", auth.as_str())];
            let mut cur = first;
            let mut tick = tokio::time::interval(period);
            let mut k = 0u64;
            loop {
                // The last message is the end marker `m-end`.
                let last = s.get();
                tick.tick().await;
                let message_id = if last {
                    "m-end".to_string()
                } else {
                    format!("m{k}")
                };
                let body = request_msg(&session.id, &message_id, json!({ "k": k }));
                let mut posted = Posted {
                    k,
                    attempts: Vec::new(),
                };
                for _ in 0..(4 * bases.len()) {
                    let url = format!("{}/timestick/session/{}", bases[cur], session.id);
                    let r = try_request(&client, Method::POST, &url, &headers, Some(&body))
                        .await
                        .map(|reply| reply.status);
                    let transport = r.is_err();
                    posted.attempts.push((cur, r));
                    if !transport {
                        break;
                    }
                    cur = (cur + 1) % bases.len();
                }
                l.borrow_mut().push(posted);
                if last {
                    return;
                }
                k += 1;
            }
        });
        StickSender { log, stop, handle }
    }

    /// Posts the end marker `m-end` and stops; returns the log (marker last).
    pub async fn stop(self) -> Vec<Posted> {
        self.stop.set(true);
        within("the TimeStick sender to stop", CROSS, self.handle)
            .await
            .expect("the sender task does not panic");
        let log = self.log.borrow().clone();
        log
    }
}

/// One message a [`StickReceiver`] got.
#[derive(Debug, Clone)]
pub struct Got {
    pub message_id: String,
    pub payload: Value,
    pub node: usize,
}

/// What a [`StickReceiver`] did.
#[derive(Debug, Clone, Default)]
pub struct ReceiverLog {
    pub got: Vec<Got>,
    /// (node, transport error or unexpected status) of polls that failed.
    pub poll_errors: Vec<(usize, String)>,
}

/// A TimeStick session long-polling with its cursor until `<sender>.m-end` arrives.
pub struct StickReceiver {
    pub log: Rc<RefCell<ReceiverLog>>,
    handle: JoinHandle<()>,
}

impl StickReceiver {
    /// Starts polling as `session` at `bases[first]`, moving to the next base on a
    /// transport error (with the last cursor it received), until the message
    /// `<sender>.m-end` arrives.
    pub fn start(session: &Session, sender: &str, bases: Vec<String>, first: usize) -> Self {
        let log = Rc::new(RefCell::new(ReceiverLog::default()));
        let (l, session) = (log.clone(), session.clone());
        let end = format!("{sender}.m-end");
        let handle = actix_rt::spawn(async move {
            let (client, auth) = (http(), format!("Bearer {}", session.token));
            let headers = [("Authorization", auth.as_str())];
            let cur = Cell::new(first);
            let cursor: RefCell<Option<String>> = RefCell::new(None);
            // One long-poll per attempt, until the end marker came.
            let done = poll_until(DRIVER_DEADLINE, || async {
                let k = cur.get();
                let mut url = format!("{}/timestick/session/{}?wait=1", bases[k], session.id);
                if let Some(a) = cursor.borrow().as_ref() {
                    url.push_str(&format!("&after={a}"));
                }
                let reply = try_request(&client, Method::GET, &url, &headers, None).await;
                let body = match reply {
                    Ok(r) if r.status == 200 => r.json(),
                    Ok(r) => {
                        let why = format!("{}: {}", r.status, r.text());
                        l.borrow_mut().poll_errors.push((k, why));
                        return None;
                    }
                    Err(e) => {
                        l.borrow_mut().poll_errors.push((k, e));
                        cur.set((k + 1) % bases.len());
                        return None;
                    }
                };
                let mut done = false;
                for m in body["messages"].as_array().into_iter().flatten() {
                    let id = m["message_id"].as_str().unwrap_or_default().to_string();
                    done |= id == end;
                    l.borrow_mut().got.push(Got {
                        message_id: id,
                        payload: m["payload"].clone(),
                        node: k,
                    });
                }
                if let Some(next) = body["cursor"].as_str() {
                    *cursor.borrow_mut() = Some(next.to_string());
                }
                done.then_some(())
            })
            .await;
            if done.is_none() {
                l.borrow_mut()
                    .poll_errors
                    .push((usize::MAX, format!("gave up after {DRIVER_DEADLINE:?}")));
            }
        });
        StickReceiver { log, handle }
    }

    /// Messages received so far.
    pub fn received(&self) -> usize {
        self.log.borrow().got.len()
    }

    /// Waits (within `bound`) until the end marker arrived; returns the log.
    pub async fn finish(self, bound: Duration) -> ReceiverLog {
        within("the TimeStick receiver to get m-end", bound, self.handle)
            .await
            .expect("the receiver task does not panic");
        let log = self.log.borrow().clone();
        log
    }
}

// ---- the mixed load of the Redis fault tests -----------------------------------------------

/// The load of `fault_redis_outage.rs` and `fault_redis_freeze.rs` on a 3-node cluster:
/// three Sink devices (two on node 0, one on node 1) publishing an event every
/// [`PERIOD`], watched on `sink/<client>` from node 0 and node 2; the backend publishing
/// on `feed_ch` through node 1's API at [`FEED_RATE`]; a subscriber of `feed_ch` and
/// `held_ch` on every node.
pub struct RedisLoad {
    pub feed_ch: String,
    pub held_ch: String,
    pub sink_channels: Vec<String>,
    /// Sink watchers on node 0 and node 2.
    pub watchers: Vec<Collector>,
    /// Subscribers on node 0, 1 and 2.
    pub subs: Vec<Collector>,
    pub feed: Feed,
    pub devices: Vec<SinkDevice>,
}

/// What [`RedisLoad::finish`] returns: the feed's log, the devices' logs, what the
/// watchers and what the subscribers received, and the holds released.
pub type RedisLoadLogs = (
    Vec<Pub>,
    Vec<DeviceLog>,
    Vec<Collected>,
    Vec<Collected>,
    f64,
);

impl RedisLoad {
    /// The node device `k` connects to first (its home).
    pub fn home(k: usize) -> usize {
        usize::from(k == 2)
    }

    /// Starts the load and waits until it runs (50 publications, 5 ACKs per device).
    pub async fn start(cluster: &Cluster) -> RedisLoad {
        let sinks: Vec<SocketAddr> = cluster.nodes().iter().map(Node::sink_addr).collect();
        let (feed_ch, held_ch) = (uniq("feed-"), uniq("held-"));
        let instances: Vec<u32> = (0..3).map(|_| sink_instance()).collect();
        let sink_channels: Vec<String> =
            instances.iter().map(|i| format!("sink/dev-{i}")).collect();
        let sink_refs: Vec<&str> = sink_channels.iter().map(String::as_str).collect();
        let mut watchers = Vec::new();
        for k in [0, 2] {
            let label = format!("sink watcher on node {k}");
            watchers.push(Collector::subscribed(&label, cluster.node(k), "w", &sink_refs).await);
        }
        let mut subs = Vec::new();
        for k in 0..3 {
            let label = format!("subscriber on node {k}");
            let channels = [feed_ch.as_str(), held_ch.as_str()];
            subs.push(Collector::subscribed(&label, cluster.node(k), "sub", &channels).await);
        }
        let feed = Feed::start(&feed_ch, &cluster.node(1).internal_url(), FEED_RATE);
        let devices = SinkDevice::start_all(&instances, &sinks, Self::home);
        let load = RedisLoad {
            feed_ch,
            held_ch,
            sink_channels,
            watchers,
            subs,
            feed,
            devices,
        };
        load.await_running(i64::MIN, "before the fault").await;
        load
    }

    /// Waits until, since `ms`, the feed had 50 publications accepted and every device 5
    /// events ACKed.
    pub async fn await_running(&self, ms: i64, when: &str) {
        eventually(&format!("the load to run {when}"), CROSS, || async {
            let ok = self.feed.accepted_since(ms) >= 50
                && self
                    .devices
                    .iter()
                    .all(|d| d.log.borrow().acked_since(ms) >= 5);
            ok.then_some(())
        })
        .await;
    }

    /// Waits until every device got at least `n` NACKs and the feed had 25 more answers.
    pub async fn await_nacked(&self, n: usize) {
        let answered = self.feed.answered();
        eventually(
            "every device to be NACKed and the feed to go on",
            CROSS,
            || async {
                let ok = self.devices.iter().all(|d| d.log.borrow().nacks() >= n)
                    && self.feed.answered() >= answered + 25;
                ok.then_some(())
            },
        )
        .await;
    }

    /// Stops the feed and the devices, waits (within `release_bound`) for `held` released
    /// holds over the cluster, then runs the [`barrier`] through node 2.
    pub async fn finish(
        self,
        cluster: &Cluster,
        held: usize,
        release_bound: Duration,
    ) -> RedisLoadLogs {
        let published = self.feed.stop().await;
        let logs = stop_devices(self.devices).await;
        let nodes: Vec<&Node> = cluster.nodes().iter().collect();
        let released = await_api_releases(&nodes, held, release_bound).await;
        let mut channels = vec![self.feed_ch.as_str(), self.held_ch.as_str()];
        channels.extend(self.sink_channels.iter().map(String::as_str));
        let n = self.watchers.len();
        let mut all = barrier(
            cluster.node(2),
            &channels,
            self.watchers.into_iter().chain(self.subs).collect(),
        )
        .await;
        let got = all.split_off(n);
        (published, logs, all, got, released)
    }
}

/// Checks the feed notifications `c` received on `channel`: none twice (asserted), the
/// publications of `after` all there and in order (asserted). Returns what arrived, as a
/// set.
pub fn check_feed(c: &Collected, channel: &str, after: &[u64]) -> BTreeSet<u64> {
    let is = c.feed_is(channel);
    let duplicated: Vec<(u64, usize)> = tally(is.iter().copied())
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(
        duplicated.is_empty(),
        "{}: no publication twice: {}",
        c.label,
        first(&duplicated, 10)
    );
    let after_got: Vec<u64> = is.iter().copied().filter(|i| after.contains(i)).collect();
    assert_eq!(
        after_got, after,
        "{}: receives again once every node is ready: everything, in order",
        c.label
    );
    is.into_iter().collect()
}

// ---- counting --------------------------------------------------------------------------------

/// Counts of each value: `value → occurrences`.
pub fn tally<T: Ord + Copy>(values: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut out = BTreeMap::new();
    for v in values {
        *out.entry(v).or_insert(0) += 1;
    }
    out
}

/// `(missing, duplicated)` of `got` against `want` (each wanted value exactly once).
pub fn missing_and_duplicated<T: Ord + Copy>(
    want: impl IntoIterator<Item = T>,
    got: impl IntoIterator<Item = T>,
) -> (Vec<T>, Vec<(T, usize)>) {
    let counts = tally(got);
    let missing = want
        .into_iter()
        .filter(|w| !counts.contains_key(w))
        .collect();
    let duplicated = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    (missing, duplicated)
}

/// Asserts `got` holds each of `want` exactly once (`what` names it in the message).
pub fn assert_each_once<T: Ord + Copy + std::fmt::Debug>(
    what: &str,
    want: impl IntoIterator<Item = T>,
    got: impl IntoIterator<Item = T>,
) {
    let (missing, duplicated) = missing_and_duplicated(want, got);
    assert!(
        missing.is_empty() && duplicated.is_empty(),
        "{what} exactly once: missing {}, duplicated {}",
        first(&missing, 20),
        first(&duplicated, 20)
    );
}

/// The items of `items` that `explained` does not account for.
pub fn unexplained<T: Copy>(items: &[T], explained: impl Fn(&T) -> bool) -> Vec<T> {
    items.iter().copied().filter(|i| !explained(i)).collect()
}

/// The first `n` items, for messages.
pub fn first<T: std::fmt::Debug>(items: &[T], n: usize) -> String {
    if items.len() <= n {
        format!("{items:?}")
    } else {
        format!("{:?} … ({} in all)", &items[..n], items.len())
    }
}
