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
//!   has seen the markers the test arms ([`Collector::finish`]): publishing a marker after
//!   everything else is the barrier that proves nothing more arrives.
//! * [`SinkDevice`]: a development-mode Sink device over TCP publishing one event at a time
//!   (window 1), recording which node ACKed or NACKed each event, reconnecting to the next
//!   node when its connection breaks and sending the unacknowledged event again.
//! * [`StickSender`] / [`StickReceiver`]: a TimeStick session POSTing numbered requests and
//!   one long-polling them with its cursor, each moving to the next node on a transport
//!   error.
//!
//! Pacing uses `tokio::time::interval` (a load rate, not a wait for something); every wait
//! for an outcome is bounded with [`murmur_tests::within`] or [`murmur_tests::eventually`].
#![allow(dead_code, unused_imports)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use actix_rt::task::JoinHandle;
use murmur_shared::sink::{decode, encode, ConnectionResponse, Event, Frame, FrameReader};
use murmur_tests::{
    api_post, metric_value, metrics, token, within, Method, Node, Starling, WsEvent, API_KEY,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use murmur_tests::helios::now_ms;
pub use murmur_tests::uniq;

/// Bound for anything that crosses nodes through Redis.
pub const CROSS: Duration = Duration::from_secs(10);
/// Bound for things that should happen at once on a node.
pub const SOON: Duration = Duration::from_secs(5);
/// How long a background driver may run at most before it gives up.
pub const DRIVER_DEADLINE: Duration = Duration::from_secs(90);

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

// ---- HTTP that does not panic on transport errors ------------------------------------------

/// An awc client with a 10 s timeout (keep-alive connections are reused).
pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .disable_redirects()
        .finish()
}

/// `method url` with an optional bearer and JSON body → `Ok((status, JSON body))`
/// (`Null` for an empty body, a JSON string for a non-JSON one), `Err(why)` on a
/// transport error (refused, reset, timeout).
pub async fn try_json(
    c: &awc::Client,
    method: Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut req = c.request(method, url);
    if let Some(b) = bearer {
        req = req.insert_header(("Authorization", format!("Bearer {b}")));
    }
    let sent = match body {
        Some(b) => req.send_json(b).await,
        None => req.send().await,
    };
    let mut res = sent.map_err(|e| format!("{url}: {e}"))?;
    let bytes = res
        .body()
        .limit(16 * 1024 * 1024)
        .await
        .map_err(|e| format!("{url}: reading the body: {e}"))?;
    let json = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((res.status().as_u16(), json))
}

/// `POST <internal>/api/v1/publish {channel, data, ~timing?}` without panicking.
pub async fn try_publish(
    c: &awc::Client,
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
    try_json(c, Method::POST, &url, Some(API_KEY), Some(&body)).await
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

/// Sum of the series of `name` with `labels` on `node` (0 when absent).
pub async fn metric(node: &Node, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&metrics(node).await, name, labels).unwrap_or(0.0)
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
            let c = client();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
            let mut i = 0u64;
            while !s.get() {
                tick.tick().await;
                let sent_ms = now();
                let outcome = try_publish(&c, &url, &ch, json!({ "i": i }), None)
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
        self.log
            .borrow()
            .iter()
            .filter(|p| p.outcome == Ok(200))
            .count()
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
}

struct Shared {
    state: RefCell<Collected>,
    /// Markers to see before stopping; `None` until [`Collector::finish`].
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

    /// Connections ended so far.
    pub fn ends(&self) -> usize {
        self.shared.state.borrow().ends.len()
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
        // Reconnect at once, as a client would; a refusal is retried a few times.
        let url = format!("{base}/starling?recover={token}");
        let mut attempt = 0;
        ws = loop {
            match murmur_tests::WsClient::connect(&url).await {
                Ok(ws) => break ws,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    sh.state
                        .borrow_mut()
                        .ends
                        .push(format!("recovery refused: {e:?}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    sh.state.borrow_mut().failed = Some(format!("cannot recover: {e:?}"));
                    return;
                }
            }
        };
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
        self.events.iter().filter(|e| e.acked.is_some()).count()
    }

    /// Events ACKed by `node`.
    pub fn acked_by(&self, node: usize) -> usize {
        self.events
            .iter()
            .filter(|e| e.acked.is_some_and(|(n, _)| n == node))
            .count()
    }

    /// NACKs received so far.
    pub fn nacks(&self) -> usize {
        self.events.iter().map(|e| e.nacks.len()).sum()
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
                if !e.lost_in_flight.is_empty() && e.lost_in_flight.contains(&c.node) {
                    out.insert(e.offset);
                }
            }
            let last = self
                .events
                .iter()
                .filter(|e| {
                    e.acked.is_some_and(|(n, at)| {
                        n == c.node && at >= opened && closed_before.is_none_or(|b| at <= b)
                    })
                })
                .map(|e| e.offset)
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
        let (mut link, s) = match sink_connect(addrs[cur], instance, server).await {
            Ok(ok) => ok,
            Err(why) => {
                log.borrow_mut().refused.push((cur, why));
                cur = (cur + 1) % addrs.len();
                // A device's reconnect backoff.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
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
pub async fn stored_offsets(redis: &murmur_tests::RedisServer, client: &str) -> Vec<u64> {
    use murmur_tests::Resp;
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

/// `SCARD murmur:sink:seen:<client>`: identities the store remembers for `client`.
pub async fn seen_count(redis: &murmur_tests::RedisServer, client: &str) -> i64 {
    let key = format!("murmur:sink:seen:{client}");
    redis
        .cmd(&["SCARD", &key])
        .await
        .as_int()
        .unwrap_or_else(|| panic!("SCARD {key} is not an integer"))
}

/// Offsets of the `sink/<client>` publications a collector received, in order.
pub fn published_offsets(c: &Collected, client: &str) -> Vec<u64> {
    c.on(&format!("sink/{client}"))
        .iter()
        .map(|n| {
            assert_eq!(n.data["client"], client, "{:?}", n.data);
            n.data["offset"]
                .as_u64()
                .unwrap_or_else(|| panic!("a sink publication without offset: {:?}", n.data))
        })
        .collect()
}

// ---- TimeStick -----------------------------------------------------------------------------

/// STARTs a TimeStick session of `user` on `target` at `public_url`; its id.
pub async fn stick_start(public_url: &str, user: &str, target: &str) -> String {
    let body = json!({"action": "START", "protocol": "TimeStick", "version": "0.1",
        "caller_id": user, "requested_uri": format!("timestick://localhost/{target}")});
    let (status, answer) = try_json(
        &client(),
        Method::POST,
        &format!("{public_url}/timestick/start"),
        Some(&token(user)),
        Some(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("TimeStick START: {e}"));
    assert_eq!(status, 200, "START: {answer}");
    assert_eq!(answer["action"], "START-OK", "{answer}");
    answer["session_id"].as_str().unwrap().to_string()
}

/// A TimeStick request body.
pub fn stick_request(session: &str, message_id: &str, payload: Value) -> Value {
    json!({"type": "request", "session_id": session, "message_id": message_id,
           "correlation_id": null, "payload": payload})
}

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
    pub session: String,
    pub user: String,
    pub log: Rc<RefCell<Vec<Posted>>>,
    stop: Rc<Cell<bool>>,
    handle: JoinHandle<()>,
}

impl StickSender {
    /// Starts posting to `bases[first]` (public URLs), moving to the next base on a
    /// transport error (the same `message_id` is posted again there).
    pub fn start(
        session: &str,
        user: &str,
        bases: Vec<String>,
        first: usize,
        period: Duration,
    ) -> StickSender {
        let log = Rc::new(RefCell::new(Vec::new()));
        let stop = Rc::new(Cell::new(false));
        let (l, s, sid, u) = (
            log.clone(),
            stop.clone(),
            session.to_string(),
            user.to_string(),
        );
        let handle = actix_rt::spawn(async move {
            let c = client();
            let tok = token(&u);
            let mut cur = first;
            let mut tick = tokio::time::interval(period);
            let mut k = 0u64;
            // The last message is the end marker `m-end`.
            let mut last = false;
            loop {
                if s.get() {
                    last = true;
                }
                tick.tick().await;
                let message_id = if last {
                    "m-end".to_string()
                } else {
                    format!("m{k}")
                };
                let body = stick_request(&sid, &message_id, json!({ "k": k }));
                let mut posted = Posted {
                    k,
                    attempts: Vec::new(),
                };
                for _ in 0..(4 * bases.len()) {
                    let url = format!("{}/timestick/session/{sid}", bases[cur]);
                    let r = try_json(&c, Method::POST, &url, Some(&tok), Some(&body))
                        .await
                        .map(|(status, _)| status);
                    let transport = r.is_err();
                    posted.attempts.push((cur, r));
                    if !transport {
                        break;
                    }
                    cur = (cur + 1) % bases.len();
                }
                if last {
                    l.borrow_mut().push(posted);
                    return;
                }
                l.borrow_mut().push(posted);
                k += 1;
            }
        });
        StickSender {
            session: session.to_string(),
            user: user.to_string(),
            log,
            stop,
            handle,
        }
    }

    /// Requests accepted so far (the end marker not counted).
    pub fn accepted(&self) -> usize {
        self.log.borrow().iter().filter(|p| p.accepted()).count()
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
    /// Starts polling `bases[first]`, moving to the next base on a transport error (with
    /// the last cursor it received), until the message `<sender>.m-end` arrives.
    pub fn start(
        session: &str,
        user: &str,
        sender: &str,
        bases: Vec<String>,
        first: usize,
    ) -> StickReceiver {
        let log = Rc::new(RefCell::new(ReceiverLog::default()));
        let (l, sid, u) = (log.clone(), session.to_string(), user.to_string());
        let end = format!("{sender}.m-end");
        let handle = actix_rt::spawn(async move {
            let c = client();
            let tok = token(&u);
            let mut cur = first;
            let mut cursor: Option<String> = None;
            let run = async {
                loop {
                    let mut url = format!("{}/timestick/session/{sid}?wait=1", bases[cur]);
                    if let Some(a) = &cursor {
                        url.push_str(&format!("&after={a}"));
                    }
                    match try_json(&c, Method::GET, &url, Some(&tok), None).await {
                        Ok((200, body)) => {
                            let msgs = body["messages"].as_array().cloned().unwrap_or_default();
                            let mut done = false;
                            for m in msgs {
                                let id = m["message_id"].as_str().unwrap_or_default().to_string();
                                done |= id == end;
                                l.borrow_mut().got.push(Got {
                                    message_id: id,
                                    payload: m["payload"].clone(),
                                    node: cur,
                                });
                            }
                            if let Some(next) = body["cursor"].as_str() {
                                cursor = Some(next.to_string());
                            }
                            if done {
                                return;
                            }
                        }
                        Ok((status, body)) => {
                            l.borrow_mut()
                                .poll_errors
                                .push((cur, format!("{status}: {body}")));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => {
                            l.borrow_mut().poll_errors.push((cur, e));
                            cur = (cur + 1) % bases.len();
                        }
                    }
                }
            };
            if tokio::time::timeout(DRIVER_DEADLINE, run).await.is_err() {
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
    let want: Vec<T> = want.into_iter().collect();
    let missing = want
        .iter()
        .copied()
        .filter(|w| !counts.contains_key(w))
        .collect();
    let duplicated = counts.into_iter().filter(|(_, n)| *n > 1).collect();
    (missing, duplicated)
}

/// The first `n` items, for messages.
pub fn first<T: std::fmt::Debug>(items: &[T], n: usize) -> String {
    if items.len() <= n {
        format!("{items:?}")
    } else {
        format!("{:?} … ({} in all)", &items[..n], items.len())
    }
}
