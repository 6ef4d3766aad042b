//! Helpers shared by the `~timing` (Aries RFC 0032, CONTRACT §7) black-box test files
//! (`timing_*.rs`; each test file is its own crate and uses a subset, hence the
//! `dead_code` allowance).
//!
//! * A clock and an RFC 0074 timestamp writer of its own (independent of the product's
//!   formatter), so the tests can state instants in every accepted form.
//! * Timing windows: [`assert_delay`] (±0.5 s around a delay measured with [`Instant`]) and
//!   [`assert_due`] (not before, at most 0.5 s after a wall-clock instant).
//! * Metrics: `murmur_timing_total{protocol,event}` and `murmur_scheduled_messages`.
//! * Small clients: Helios request builders (the harness [`Starling`] does the rest), a
//!   chat client ([`Chat`]), a TimeStick session ([`Stick`]) and a plaintext Sink device
//!   ([`Device`]).
//!
//! Every wait is bounded (`eventually`, `within`, or a read with a timeout).
#![allow(dead_code, unused_imports)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use murmur_shared::sink::{decode, encode, ConnectionResponse, Event, Frame, FrameReader};
use murmur_tests::helios::kind;
use murmur_tests::{
    api_post, eventually, metric_value, metrics, request, token, Method, Node, NodeBuilder,
    Starling, WsClient, WsEvent,
};
/// The one timing vocabulary (murmur_tests::wait).
pub use murmur_tests::{CROSS, QUIET, SOON};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
/// The tolerance around a hold: delivered within ±0.5 s of when it is due.
pub const TOLERANCE_MS: i64 = 500;
/// The hold most tests use.
pub const DELAY_MS: i64 = 1500;

pub use murmur_tests::uniq;

/// Milliseconds since the Unix epoch (the same system clock the nodes use).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// One node in development mode (so the plaintext Sink listener accepts devices); the
/// harness sets the secrets and the API key explicitly, which development mode keeps.
pub async fn dev_node() -> Node {
    NodeBuilder::new().env("MURMUR_DEV", "1").spawn().await
}

// ---- RFC 0074 timestamps --------------------------------------------------------------------

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The zone designator of a written timestamp.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    /// `Z`.
    Z,
    /// `±HH:MM`, offset in minutes east of UTC.
    Colon(i64),
    /// `±HHMM`.
    Compact(i64),
    /// No designator (the contract: UTC).
    Bare,
}

/// How much of the time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `HH:MM`.
    Minute,
    /// `HH:MM:SS`.
    Second,
    /// `HH:MM:SS.sss`.
    Milli,
    /// `HH:MM:SS.ssssss` (`extra_micros` are written after the milliseconds).
    Micro,
}

/// Writes instant `ms` (Unix ms, plus `extra_micros` µs for [`Precision::Micro`]) with the
/// date/time separator `sep`, `precision` and `zone` (the wall time is shifted by the
/// zone's offset, so the written text denotes the same instant).
pub fn write_time(
    ms: i64,
    extra_micros: i64,
    sep: char,
    precision: Precision,
    zone: Zone,
) -> String {
    let offset_min = match zone {
        Zone::Z | Zone::Bare => 0,
        Zone::Colon(m) | Zone::Compact(m) => m,
    };
    let local = ms + offset_min * 60_000;
    let secs = local.div_euclid(1000);
    let millis = local.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    let mut out = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}");
    match precision {
        Precision::Minute => {}
        Precision::Second => out.push_str(&format!(":{s:02}")),
        Precision::Milli => out.push_str(&format!(":{s:02}.{millis:03}")),
        Precision::Micro => out.push_str(&format!(":{s:02}.{:06}", millis * 1000 + extra_micros)),
    }
    let sign = if offset_min < 0 { '-' } else { '+' };
    let (oh, om) = (offset_min.abs() / 60, offset_min.abs() % 60);
    match zone {
        Zone::Z => out.push('Z'),
        Zone::Colon(_) => out.push_str(&format!("{sign}{oh:02}:{om:02}")),
        Zone::Compact(_) => out.push_str(&format!("{sign}{oh:02}{om:02}")),
        Zone::Bare => {}
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`: the form the broker writes (`deliverAt`, "scheduled for").
pub fn canonical(ms: i64) -> String {
    write_time(ms, 0, 'T', Precision::Milli, Zone::Z)
}

/// Reads the canonical form back to Unix ms; panics on anything else.
pub fn parse_canonical(s: &str) -> i64 {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> i64 {
        s.get(from..from + len)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("not YYYY-MM-DDTHH:MM:SS.sssZ: {s:?}"))
    };
    assert!(
        b.len() == 24
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'.'
            && b[23] == b'Z',
        "not YYYY-MM-DDTHH:MM:SS.sssZ: {s:?}"
    );
    let days = days_from_civil(num(0, 4), num(5, 2), num(8, 2));
    let secs = days * 86_400 + num(11, 2) * 3600 + num(14, 2) * 60 + num(17, 2);
    secs * 1000 + num(20, 3)
}

/// One accepted way of writing a `wait_until_time` (CONTRACT §7).
#[derive(Debug, Clone, Copy)]
pub struct Form {
    pub name: &'static str,
    sep: char,
    precision: Precision,
    zone: Zone,
    /// µs written after the milliseconds ([`Precision::Micro`] only); the broker keeps
    /// milliseconds, so they move the instant by less than 1 ms.
    extra_micros: i64,
}

impl Form {
    /// The text for instant `ms` (which must be representable: whole seconds for
    /// second-precision forms).
    pub fn write(&self, ms: i64) -> String {
        write_time(ms, self.extra_micros, self.sep, self.precision, self.zone)
    }

    /// Whether the form carries a fraction (else the instant must be a whole second).
    pub fn has_fraction(&self) -> bool {
        matches!(self.precision, Precision::Milli | Precision::Micro)
    }
}

/// Every accepted form with second or finer precision: `T` or a space, seconds with and
/// without a fraction (3 and 6 digits), zone `Z`, `±HH:MM`, `±HHMM` and none (= UTC).
pub fn second_forms() -> Vec<Form> {
    let f = |name, sep, precision, zone, extra_micros| Form {
        name,
        sep,
        precision,
        zone,
        extra_micros,
    };
    vec![
        f("T millis Z", 'T', Precision::Milli, Zone::Z, 0),
        f("space millis Z", ' ', Precision::Milli, Zone::Z, 0),
        f("space seconds Z", ' ', Precision::Second, Zone::Z, 0),
        f("T seconds Z", 'T', Precision::Second, Zone::Z, 0),
        f(
            "space micros Z (ACA-Py)",
            ' ',
            Precision::Micro,
            Zone::Z,
            437,
        ),
        f(
            "T seconds +01:00",
            'T',
            Precision::Second,
            Zone::Colon(60),
            0,
        ),
        f(
            "space millis +01:00",
            ' ',
            Precision::Milli,
            Zone::Colon(60),
            0,
        ),
        f(
            "T millis +0100",
            'T',
            Precision::Milli,
            Zone::Compact(60),
            0,
        ),
        f(
            "space seconds -0530",
            ' ',
            Precision::Second,
            Zone::Compact(-330),
            0,
        ),
        f(
            "T millis -05:30",
            'T',
            Precision::Milli,
            Zone::Colon(-330),
            0,
        ),
        f("T millis +00:00", 'T', Precision::Milli, Zone::Colon(0), 0),
        f("T seconds no zone", 'T', Precision::Second, Zone::Bare, 0),
        f("space millis no zone", ' ', Precision::Milli, Zone::Bare, 0),
    ]
}

/// The minute-precision forms (the seed's own `2019-01-24 18:25Z` style).
pub fn minute_forms() -> Vec<Form> {
    vec![
        Form {
            name: "space minutes Z",
            sep: ' ',
            precision: Precision::Minute,
            zone: Zone::Z,
            extra_micros: 0,
        },
        Form {
            name: "T minutes +01:00",
            sep: 'T',
            precision: Precision::Minute,
            zone: Zone::Colon(60),
            extra_micros: 0,
        },
        Form {
            name: "space minutes no zone",
            sep: ' ',
            precision: Precision::Minute,
            zone: Zone::Bare,
            extra_micros: 0,
        },
    ]
}

/// Due instants for a round of [`second_forms`]: the first whole second at least 1.5 s
/// from now (for second-precision forms; room to send the whole round first) and 250 ms
/// after it (for forms with a fraction, so a fraction that was ignored would show as an
/// early delivery).
pub fn due_instants() -> (i64, i64) {
    let whole = (now_ms() + 1500 + 999) / 1000 * 1000;
    (whole, whole + 250)
}

/// The due instant of `form` in a round of [`due_instants`].
pub fn due_for(form: &Form, (whole, fractional): (i64, i64)) -> i64 {
    if form.has_fraction() {
        fractional
    } else {
        whole
    }
}

/// The `~timing` of a round: `{"wait_until_time": <form.write(due)>}`.
pub fn wait_until(form: &Form, due: i64) -> Value {
    json!({ "wait_until_time": form.write(due) })
}

// ---- windows --------------------------------------------------------------------------------

/// Asserts a message held for `delay_ms` arrived `elapsed` after it was sent, within
/// ±[`TOLERANCE_MS`] of the delay.
pub fn assert_delay(what: &str, delay_ms: i64, elapsed: Duration) {
    let ms = elapsed.as_millis() as i64;
    assert!(
        ms >= delay_ms - TOLERANCE_MS && ms <= delay_ms + TOLERANCE_MS,
        "{what}: held for {delay_ms} ms, arrived after {ms} ms (allowed {}..={} ms)",
        delay_ms - TOLERANCE_MS,
        delay_ms + TOLERANCE_MS
    );
}

/// Asserts a message due at wall-clock `due_ms` arrived at `arrived_ms`: not before it is
/// due (same clock as the broker's) and at most [`TOLERANCE_MS`] after.
pub fn assert_due(what: &str, due_ms: i64, arrived_ms: i64) {
    assert!(
        arrived_ms >= due_ms && arrived_ms <= due_ms + TOLERANCE_MS,
        "{what}: due at {} ({due_ms}), arrived at {} ({arrived_ms}): {:+} ms (allowed 0..={TOLERANCE_MS})",
        canonical(due_ms),
        canonical(arrived_ms),
        arrived_ms - due_ms
    );
}

/// Asserts a `deliverAt` answer (canonical form) lies in `[from, to]` (Unix ms).
pub fn assert_deliver_at(what: &str, deliver_at: &Value, from: i64, to: i64) -> i64 {
    let text = deliver_at
        .as_str()
        .unwrap_or_else(|| panic!("{what}: deliverAt must be a string, got {deliver_at}"));
    let at = parse_canonical(text);
    assert!(
        at >= from && at <= to,
        "{what}: deliverAt {text} ({at}) not within [{from}, {to}]"
    );
    at
}

/// Waits until the wall clock is past `ms` (polling the clock; no bare sleep).
pub async fn wait_clock_past(ms: i64) {
    let what = format!("the clock to pass {}", canonical(ms));
    eventually(&what, Duration::from_secs(30), || async move {
        (now_ms() > ms).then_some(())
    })
    .await;
}

// ---- metrics --------------------------------------------------------------------------------

/// `murmur_timing_total{protocol,event}` on `node` (0 when the series does not exist yet).
pub async fn timing_count(node: &Node, protocol: &str, event: &str) -> f64 {
    let text = metrics(node).await;
    metric_value(
        &text,
        "murmur_timing_total",
        &[("protocol", protocol), ("event", event)],
    )
    .unwrap_or(0.0)
}

/// Waits until `murmur_timing_total{protocol,event}` on `node` is `want`, and asserts it
/// does not overshoot.
pub async fn wait_timing_count(node: &Node, protocol: &str, event: &str, want: f64) {
    let what =
        format!("murmur_timing_total{{protocol=\"{protocol}\",event=\"{event}\"}} >= {want}");
    let got = eventually(&what, SOON, || async move {
        let v = timing_count(node, protocol, event).await;
        (v >= want).then_some(v)
    })
    .await;
    assert_eq!(
        got, want,
        "murmur_timing_total{{protocol=\"{protocol}\",event=\"{event}\"}} overshot"
    );
}

/// `murmur_scheduled_messages` on `node` (the held-queue depth the node last saw).
pub async fn scheduled(node: &Node) -> f64 {
    let text = metrics(node).await;
    metric_value(&text, "murmur_scheduled_messages", &[])
        .unwrap_or_else(|| panic!("murmur_scheduled_messages missing on {}", node.id()))
}

/// Waits until `murmur_scheduled_messages` on `node` is `want`.
pub async fn wait_scheduled(node: &Node, want: f64, bound: Duration) {
    let what = format!("murmur_scheduled_messages == {want} on {}", node.id());
    eventually(&what, bound, || async move {
        (scheduled(node).await == want).then_some(())
    })
    .await;
}

// ---- Helios -----------------------------------------------------------------------------------

/// A Helios request carrying `~timing` (omitted when `None`): `(request_id, message)`.
pub fn helios_request(method: &str, payload: Value, timing: Option<Value>) -> (String, Value) {
    let (id, mut msg) = murmur_tests::helios::request(method, payload);
    if let Some(t) = timing {
        msg["~timing"] = t;
    }
    (id, msg)
}

/// Sends `broker:publish {channel, data}` with `timing` and returns the whole response.
pub async fn helios_publish(
    s: &mut Starling,
    channel: &str,
    data: Value,
    timing: Option<Value>,
) -> Value {
    let (id, msg) = helios_request(
        "broker:publish",
        json!({ "channel": channel, "data": data }),
        timing,
    );
    s.ws().send_json(&msg).await;
    s.wait_response(&id, SOON).await
}

/// Asserts `resp` is a success and returns `data`.
pub fn helios_ok(resp: &Value) -> Value {
    assert_eq!(kind(resp), "response", "{resp}");
    assert_eq!(resp["success"], true, "expected success: {resp}");
    resp["data"].clone()
}

/// Asserts `resp` is an error response to `id` with `code`; returns `error`.
pub fn helios_err(resp: &Value, id: &str, code: &str) -> Value {
    assert_eq!(kind(resp), "response", "{resp}");
    assert_eq!(resp["requestId"], id, "{resp}");
    assert_eq!(resp["success"], false, "expected a failure: {resp}");
    assert_eq!(resp["error"]["code"], code, "error code: {resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message: {resp}"
    );
    resp["error"].clone()
}

/// Subscribes `s` to `channel`.
pub async fn subscribe(s: &mut Starling, channel: &str) {
    let data = s
        .call_ok("broker:subscribe", json!({ "channel": channel }))
        .await;
    assert_eq!(data["subscribed"], true, "{data}");
}

/// The next notification on `topic` (others on other topics stay queued), within `bound`.
pub async fn notification_on(s: &mut Starling, topic: &str, bound: Duration) -> Value {
    match s
        .try_next_matching(bound, |m| {
            kind(m) == "notification" && m["notification"]["topic"] == topic
        })
        .await
    {
        Some(n) => n,
        None => panic!(
            "no notification on {topic} within {bound:?} (queued: {:?})",
            s.pending()
        ),
    }
}

/// Publishes a marker on `channel` (no `~timing`) via the API of `node`, then reads the
/// notifications of `channel` on `s` up to the marker and returns those before it (other
/// markers aside).
pub async fn up_to_marker(node: &Node, s: &mut Starling, channel: &str) -> Vec<Value> {
    let marker = uniq("marker-");
    api_publish(node, channel, json!({ "marker": marker }), None).await;
    let mut before = Vec::new();
    loop {
        let n = notification_on(s, channel, CROSS).await;
        let seen = &n["notification"]["data"]["marker"];
        if seen == marker.as_str() {
            return before;
        }
        // Earlier markers (of other subscribers' checks on this channel) are not counted.
        if !seen.is_string() {
            before.push(n);
        }
    }
}

/// `POST /api/v1/publish {channel, data, ~timing?}` → `(status, body)`.
pub async fn api_publish_raw(
    node: &Node,
    channel: &str,
    data: Value,
    timing: Option<Value>,
) -> (u16, Value) {
    let mut body = json!({ "channel": channel, "data": data });
    if let Some(t) = timing {
        body["~timing"] = t;
    }
    api_post(node, "/api/v1/publish", body).await
}

/// [`api_publish_raw`], asserting 200; returns the body.
pub async fn api_publish(node: &Node, channel: &str, data: Value, timing: Option<Value>) -> Value {
    let (status, body) = api_publish_raw(node, channel, data, timing).await;
    assert_eq!(status, 200, "publish on {channel}: {body}");
    body
}

/// Asserts an API error `{"error":{"code","message"}}` with `status`/`code`.
pub fn assert_api_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(
        status, want_status,
        "status (want {want_status} {code}): {body}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message: {body}"
    );
}

// ---- malformed decorators ---------------------------------------------------------------------

/// `~timing` values every protocol must refuse as malformed (CONTRACT §7).
pub fn malformed_timings() -> Vec<Value> {
    vec![
        json!("2030-01-01T00:00:00Z"),
        json!(5),
        json!([]),
        json!({ "delay_milli": "5" }),
        json!({ "delay_milli": -1 }),
        json!({ "delay_milli": 1.5 }),
        json!({ "expires_time": 7 }),
        json!({ "wait_until_time": "tomorrow" }),
        json!({ "stale_time": "2019-13-01 00:00Z" }),
        json!({ "out_time": "2019-05-17 20:51:19 Z" }),
        json!({ "in_time": false }),
    ]
}

// ---- chat ---------------------------------------------------------------------------------------

/// A GradAgenda `/chat` connection dealing in individual actions (server batches are
/// flattened), for the `~timing` tests.
pub struct Chat {
    pub ws: WsClient,
    pub user: String,
    pub device: String,
    queue: VecDeque<Value>,
    seq: u64,
}

impl Chat {
    /// Connects and authenticates `user` from `device`.
    pub async fn login(node: &Node, user: &str, device: &str) -> Chat {
        let url = node.ws_url("/chat");
        let ws = WsClient::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("upgrade of {url} refused: {e:?}"));
        let mut c = Chat {
            ws,
            user: user.to_string(),
            device: device.to_string(),
            queue: VecDeque::new(),
            seq: 0,
        };
        let cdid = c.cdid("auth");
        c.send(
            &json!({"cdid": cdid, "type": "authenticate", "user-id": user,
                       "device-id": device, "token": token(user)}),
        )
        .await;
        let reply = c.status(&cdid).await;
        assert_eq!(reply["status"], "succeeded", "authenticate {user}: {reply}");
        c
    }

    /// A fresh cdid.
    pub fn cdid(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}-{}", self.seq)
    }

    pub async fn send(&mut self, action: &Value) {
        self.ws.send_json(action).await;
    }

    async fn read_frame(&mut self, timeout: Duration) -> bool {
        let Some(event) = self.ws.try_recv(timeout).await else {
            return false;
        };
        let WsEvent::Text(text) = event else {
            panic!("{}: expected a text frame, got {event:?}", self.user);
        };
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: frame is not JSON ({e}): {text}", self.user));
        if v["type"] == "batch-mode-action" {
            for a in v["actions"].as_array().cloned().unwrap_or_default() {
                self.queue.push_back(a);
            }
        } else {
            self.queue.push_back(v);
        }
        true
    }

    /// The first action satisfying `pred` within `bound` (others stay queued), or `None`.
    pub async fn try_expect(
        &mut self,
        bound: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.queue.iter().position(&mut pred) {
            return self.queue.remove(i);
        }
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let before = self.queue.len();
            if left.is_zero() || !self.read_frame(left).await {
                return None;
            }
            if let Some(off) = self.queue.iter().skip(before).position(&mut pred) {
                return self.queue.remove(before + off);
            }
        }
    }

    /// [`Chat::try_expect`] that panics naming `what` on timeout.
    pub async fn expect(
        &mut self,
        what: &str,
        bound: Duration,
        pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        match self.try_expect(bound, pred).await {
            Some(v) => v,
            None => panic!(
                "{}/{}: no {what} within {bound:?}; queued: {:?}",
                self.user, self.device, self.queue
            ),
        }
    }

    /// Actions read but not consumed yet.
    pub fn queued(&self) -> Vec<Value> {
        self.queue.iter().cloned().collect()
    }

    /// The `status-response` carrying `cdid`.
    pub async fn status(&mut self, cdid: &str) -> Value {
        let what = format!("status-response {cdid}");
        self.expect(&what, SOON, |v| {
            v["type"] == "status-response" && v["cdid"] == cdid
        })
        .await
    }

    /// The answer to `cdid` (a broadcast or a status-response).
    pub async fn answer(&mut self, cdid: &str) -> Value {
        let what = format!("answer to {cdid}");
        self.expect(&what, SOON, |v| v["cdid"] == cdid).await
    }

    /// The direct session id with `other`.
    pub async fn direct(&mut self, other: &str) -> String {
        let cdid = self.cdid("direct");
        self.send(&json!({"cdid": cdid, "type": "request-direct-session-info", "user-id": other}))
            .await;
        let info = self.answer(&cdid).await;
        assert_eq!(info["type"], "providing-session-info", "{info}");
        info["session-id"]
            .as_str()
            .unwrap_or_else(|| panic!("session-id: {info}"))
            .to_string()
    }

    /// Sends `body` to `session` with `timing`; returns the cdid.
    pub async fn say(&mut self, session: &str, body: &str, timing: Option<Value>) -> String {
        let cdid = self.cdid("say");
        let mut action = json!({"cdid": cdid, "type": "request-sending-a-message",
            "session-id": session, "message": {"type": "text", "body": body},
            "sender-timestamp": now_ms()});
        if let Some(t) = timing {
            action["~timing"] = t;
        }
        self.send(&action).await;
        cdid
    }

    /// The broadcast of `body` in `session`, within `bound`.
    pub async fn broadcast(&mut self, session: &str, body: &str, bound: Duration) -> Value {
        let what = format!("broadcast {body:?}");
        self.expect(&what, bound, |v| is_broadcast(v, session, body))
            .await
    }

    /// `request-message-history` of `session` → the items (in order).
    pub async fn history(&mut self, session: &str) -> Vec<Value> {
        let cdid = self.cdid("hist");
        self.send(&json!({"cdid": cdid, "type": "request-message-history", "session-id": session}))
            .await;
        let mut items = Vec::new();
        loop {
            let v = self.answer(&cdid).await;
            if v["type"] == "status-response" {
                assert_eq!(v["status"], "succeeded", "history: {v}");
                return items;
            }
            assert_eq!(v["type"], "message-broadcast", "history item: {v}");
            assert_eq!(v["history"], true, "history items are marked: {v}");
            items.push(v);
        }
    }
}

/// Whether `v` is the broadcast of `body` in `session`.
pub fn is_broadcast(v: &Value, session: &str, body: &str) -> bool {
    v["type"] == "message-broadcast" && v["session-id"] == session && v["message"]["body"] == body
}

/// The bodies of broadcasts.
pub fn bodies(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|v| {
            v["message"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Asserts a chat acknowledgement of a held message: `status-response succeeded` with
/// `message: "scheduled for <canonical due>"`; returns the due instant.
pub fn assert_scheduled(v: &Value) -> i64 {
    assert_eq!(v["type"], "status-response", "{v}");
    assert_eq!(
        v["status"], "succeeded",
        "a held message is acknowledged: {v}"
    );
    let note = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("scheduled acknowledgement without message: {v}"));
    let at = note
        .strip_prefix("scheduled for ")
        .unwrap_or_else(|| panic!("want `scheduled for <time>`: {v}"));
    parse_canonical(at)
}

/// Asserts a chat `status-response failed` and returns its reason.
pub fn assert_failed(v: &Value) -> String {
    assert_eq!(v["type"], "status-response", "{v}");
    assert_eq!(v["status"], "failed", "{v}");
    let m = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a failure carries a reason: {v}"));
    assert!(!m.is_empty(), "{v}");
    m.to_string()
}

// ---- TimeStick ------------------------------------------------------------------------------------

/// One started TimeStick session.
#[derive(Debug, Clone)]
pub struct Stick {
    pub id: String,
    pub user: String,
    pub token: String,
    pub base: String,
}

impl Stick {
    /// STARTs a session of `user` on `target` at `node`.
    pub async fn open(node: &Node, user: &str, target: &str) -> Stick {
        let token = token(user);
        let body = json!({
            "action": "START", "protocol": "TimeStick", "version": "0.1", "caller_id": user,
            "requested_uri": format!("timestick://localhost/{target}"),
            "capabilities": {"max_message_size": 65535, "supports_binary": false,
                             "supports_notifications": true}
        });
        let auth = format!("Bearer {token}");
        let reply = request(
            Method::POST,
            &format!("{}/timestick/start", node.public_url()),
            &[("Authorization", &auth)],
            Some(&body),
        )
        .await;
        let answer = reply.json();
        assert_eq!(reply.status, 200, "START: {answer}");
        assert_eq!(answer["action"], "START-OK", "{answer}");
        Stick {
            id: answer["session_id"].as_str().unwrap().to_string(),
            user: user.to_string(),
            token,
            base: node.public_url(),
        }
    }

    fn url(&self) -> String {
        format!("{}/timestick/session/{}", self.base, self.id)
    }

    /// A `request` with `timing` (omitted when `None`).
    pub fn request_msg(&self, message_id: &str, payload: Value, timing: Option<Value>) -> Value {
        let mut m = json!({"type": "request", "session_id": self.id, "message_id": message_id,
                           "correlation_id": null, "payload": payload});
        if let Some(t) = timing {
            m["~timing"] = t;
        }
        m
    }

    /// A `response` to `correlation` with `timing`.
    pub fn response_msg(
        &self,
        message_id: &str,
        correlation: &str,
        payload: Value,
        timing: Option<Value>,
    ) -> Value {
        let mut m = json!({"type": "response", "session_id": self.id, "message_id": message_id,
                           "correlation_id": correlation, "payload": payload});
        if let Some(t) = timing {
            m["~timing"] = t;
        }
        m
    }

    /// POSTs `msg` → `(status, body)`.
    pub async fn post(&self, msg: &Value) -> (u16, Value) {
        let auth = format!("Bearer {}", self.token);
        let reply = request(
            Method::POST,
            &self.url(),
            &[("Authorization", &auth)],
            Some(msg),
        )
        .await;
        (reply.status, reply.json())
    }

    /// POSTs `msg` and asserts 202.
    pub async fn post_ok(&self, msg: &Value) {
        let (status, body) = self.post(msg).await;
        assert_eq!(status, 202, "POST {msg}: {body}");
        assert_eq!(body["status"], "accepted", "{body}");
    }

    /// A long-poll (`wait` seconds) after `after` → `(messages, cursor)`.
    pub async fn poll(&self, wait: u64, after: Option<&str>) -> (Vec<Value>, String) {
        let auth = format!("Bearer {}", self.token);
        let url = match after {
            Some(a) => format!("{}?wait={wait}&after={a}", self.url()),
            None => format!("{}?wait={wait}", self.url()),
        };
        let reply = request(Method::GET, &url, &[("Authorization", &auth)], None).await;
        let body = reply.json();
        assert_eq!(reply.status, 200, "poll: {body}");
        let msgs = body["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("poll answer without messages: {body}"))
            .clone();
        let cursor = body["cursor"].as_str().unwrap_or_default().to_string();
        (msgs, cursor)
    }

    /// Long-polls (confirming as it goes) until a message satisfying `pred` arrives within
    /// `bound`; returns it, the messages before it, and the cursor after it.
    pub async fn until(
        &self,
        after: Option<&str>,
        bound: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> (Value, Vec<Value>, String) {
        let what = format!("a matching message on TimeStick session {}", self.id);
        murmur_tests::within(&what, bound, async {
            let mut before = Vec::new();
            let mut cursor = after.map(str::to_string);
            loop {
                let (msgs, next) = self.poll(5, cursor.as_deref()).await;
                cursor = Some(next);
                for m in msgs {
                    if pred(&m) {
                        return (m, before, cursor.clone().unwrap_or_default());
                    }
                    before.push(m);
                }
            }
        })
        .await
    }
}

/// Asserts a TimeStick refusal: HTTP 400 with the seed's error response carrying
/// `payload.error_code` `code`; returns the body.
pub fn assert_stick_error(status: u16, body: &Value, session: &str, code: &str) -> Value {
    assert_eq!(status, 400, "want 400 {code}: {body}");
    assert_eq!(body["type"], "response", "{body}");
    assert_eq!(body["session_id"], session, "{body}");
    assert_eq!(body["payload"]["status"], "error", "{body}");
    assert_eq!(body["payload"]["error_code"], code, "{body}");
    assert!(
        body["payload"]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body.clone()
}

// ---- Sink ------------------------------------------------------------------------------------------

/// A random non-zero client instance id.
pub fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(1)
}

/// A development-mode Sink device over plaintext TCP (client id `dev-<instance>`).
pub struct Device {
    pub client: String,
    pub instance: u32,
    /// The server instance id learnt in the first handshake.
    pub server: u32,
    stream: TcpStream,
    reader: FrameReader,
}

impl Device {
    async fn open(addr: SocketAddr, instance: u32, server: Option<u32>) -> Device {
        let stream = murmur_tests::within("Sink TCP connect", SOON, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("Sink connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        let mut d = Device {
            client: format!("dev-{instance}"),
            instance,
            server: server.unwrap_or_default(),
            stream,
            reader: FrameReader::new(),
        };
        d.send(&Frame::ConnectionRequest {
            version: 0,
            application_version: "v1.0.0".into(),
            client_instance_id: instance,
            server_instance_id: server,
        })
        .await;
        d
    }

    /// Connects to `addr` and completes a first (hello_new_client) handshake as `instance`.
    pub async fn connect(addr: SocketAddr, instance: u32) -> Device {
        let mut d = Self::open(addr, instance, None).await;
        match d.recv(SOON).await {
            Some(Frame::ConnectionResponse(ConnectionResponse::HelloNewClient(s))) => {
                d.server = s;
                d
            }
            other => panic!("{}: expected hello_new_client, got {other:?}", d.client),
        }
    }

    /// Connects again as a known device (both instance ids): must be `connected`.
    pub async fn reconnect(addr: SocketAddr, instance: u32, server: u32) -> Device {
        let mut d = Self::open(addr, instance, Some(server)).await;
        match d.recv(SOON).await {
            Some(Frame::ConnectionResponse(ConnectionResponse::Connected)) => d,
            other => panic!("{}: expected connected, got {other:?}", d.client),
        }
    }

    /// The next PUBLISH within `bound`, not acknowledged: `(message id, event)`.
    pub async fn publish_unacked(&mut self, bound: Duration) -> (u16, Event) {
        match self.recv(bound).await {
            Some(Frame::Publish { id, event }) => (id, event),
            other => panic!(
                "{}: expected a PUBLISH within {bound:?}, got {other:?}",
                self.client
            ),
        }
    }

    /// Closes the connection (FIN) and drops it.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    pub async fn send(&mut self, frame: &Frame) {
        let bytes = encode(frame);
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next frame within `bound`, or `None`; panics if the connection ends.
    pub async fn recv(&mut self, bound: Duration) -> Option<Frame> {
        let deadline = Instant::now() + bound;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(f) = self.reader.next_frame() {
                return Some(
                    decode(&f)
                        .unwrap_or_else(|e| panic!("{}: undecodable frame: {e:?}", self.client)),
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("{}: the broker closed the connection", self.client),
                Ok(Ok(n)) => self.reader.extend(&buf[..n]),
                Ok(Err(e)) => panic!("{}: read failed: {e}", self.client),
            }
        }
    }

    /// The next PUBLISH within `bound` (ACKed at once); panics on anything else.
    pub async fn publish(&mut self, bound: Duration) -> Event {
        match self.recv(bound).await {
            Some(Frame::Publish { id, event }) => {
                self.send(&Frame::Ack { id }).await;
                event
            }
            other => panic!(
                "{}: expected a PUBLISH within {bound:?}, got {other:?}",
                self.client
            ),
        }
    }

    /// PING; the next frame must be its PONG (so nothing was sent before it).
    pub async fn ping(&mut self) {
        self.send(&Frame::Ping).await;
        let f = self.recv(SOON).await;
        assert_eq!(f, Some(Frame::Pong), "{}: expected PONG first", self.client);
    }
}

/// A Sink API event body with `key` and `data` (and `timing` when given).
pub fn sink_event(key: &str, data: &str, timing: Option<Value>) -> Value {
    let mut v = json!({
        "event_type_id": 7,
        "schema_version": 1,
        "key": STANDARD.encode(key),
        "event_data": STANDARD.encode(data),
    });
    if let Some(t) = timing {
        v["~timing"] = t;
    }
    v
}

/// `POST /api/v1/sink/clients/<client>/events` → `(status, body)`.
pub async fn sink_queue_raw(node: &Node, client: &str, body: Value) -> (u16, Value) {
    api_post(node, &format!("/api/v1/sink/clients/{client}/events"), body).await
}

/// [`sink_queue_raw`], asserting 202; returns the body.
pub async fn sink_queue(node: &Node, client: &str, body: Value) -> Value {
    let (status, reply) = sink_queue_raw(node, client, body).await;
    assert_eq!(status, 202, "queue for {client}: {reply}");
    reply
}

/// `outbox_depth` of `client` (`GET /api/v1/sink/clients/<id>`).
pub async fn outbox_depth(node: &Node, client: &str) -> u64 {
    let (status, info) =
        murmur_tests::api_get(node, &format!("/api/v1/sink/clients/{client}")).await;
    assert_eq!(status, 200, "client info: {info}");
    info["outbox_depth"]
        .as_u64()
        .unwrap_or_else(|| panic!("outbox_depth: {info}"))
}

/// The event's data as text.
pub fn data_text(e: &Event) -> String {
    String::from_utf8_lossy(&e.data).into_owned()
}
