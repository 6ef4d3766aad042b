//! Helpers shared by the TimeStick black-box test files (`timestick_*.rs`; each test file is
//! its own crate and uses a subset, hence the `dead_code` and `unused_imports` allowance).
//!
//! * [`Session`]: one started TimeStick session (id, caller, token, the node it talks to)
//!   with POST / long-poll helpers. [`Session::at`] re-targets it at another node.
//! * Message builders in the seed's JSON format and assertions for the contract's bodies
//!   (START-OK, START-ERROR, the seed's error response, the session error bodies).
//! * [`raw_request`] (non-JSON bodies over awc) and [`raw_exchange`] (a literal request over
//!   TCP: unnormalised paths, a 10 MB body read back while it is still being sent).
//! * [`Sse`]: a Server-Sent-Events reader over a raw TCP connection, so a test can drop the
//!   stream at a chosen point and resume with `Last-Event-ID`.
#![allow(dead_code, unused_imports)]

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use murmur_tests::{request, within, HttpReply, Method, Node};
/// The one timing vocabulary (murmur_tests::wait).
pub use murmur_tests::{CROSS, QUIET, SOON};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
/// The receiver's (and the negotiated default) `max_message_size`.
pub const MAX_MESSAGE_SIZE: u64 = 65_535;
/// Live sessions per caller (broker/src/config.rs).
pub const SESSIONS_PER_CALLER: usize = 100;
/// Messages per second per session (broker/src/config.rs).
pub const RATE_PER_SECOND: usize = 100;

pub use murmur_tests::uniq;

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---- START ---------------------------------------------------------------------------------

/// The seed's START example for `caller`, asking for `uri` (omitted when `None`).
pub fn start_body(caller: &str, uri: Option<&str>) -> Value {
    let mut body = json!({
        "action": "START",
        "protocol": "TimeStick",
        "version": "0.1",
        "caller_id": caller,
        "capabilities": {
            "max_message_size": 65535,
            "supports_binary": false,
            "supports_notifications": true
        }
    });
    if let Some(uri) = uri {
        body["requested_uri"] = json!(uri);
    }
    body
}

/// `timestick://localhost/<target>`.
pub fn uri(target: &str) -> String {
    format!("timestick://localhost/{target}")
}

/// `POST <base>/timestick/<path>` with `body` (raw bytes) and, when given, a bearer token.
pub async fn start_raw(base: &str, path: &str, token: Option<&str>, body: &[u8]) -> HttpReply {
    let auth = token.map(bearer);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    raw_request(
        Method::POST,
        &format!("{base}/timestick/{path}"),
        &headers,
        Some(body.to_vec()),
    )
    .await
}

/// [`start_raw`] with a JSON body.
pub async fn start_json(base: &str, path: &str, token: Option<&str>, body: &Value) -> HttpReply {
    start_raw(base, path, token, body.to_string().as_bytes()).await
}

/// Asserts a START-OK (CONTRACT §3) negotiated to `max_message_size`; returns the session id.
pub fn assert_start_ok(reply: &HttpReply, max_message_size: u64) -> String {
    assert_eq!(reply.status, 200, "START must succeed: {}", reply.text());
    let body = reply.json();
    assert_eq!(body["action"], "START-OK", "{body}");
    assert_eq!(body["protocol"], "TimeStick", "{body}");
    assert_eq!(body["version"], "0.1", "{body}");
    let id = body["session_id"]
        .as_str()
        .unwrap_or_else(|| panic!("session_id must be a string: {body}"))
        .to_string();
    let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("session_id {id:?}: {e}"));
    assert_eq!(uuid.get_version_num(), 4, "session_id must be a UUID v4");
    assert_eq!(
        uuid.hyphenated().to_string(),
        id,
        "session_id must be UUID text"
    );
    assert_eq!(
        body["endpoint"],
        format!("/timestick/session/{id}"),
        "{body}"
    );
    assert_eq!(body["transport"], "http", "{body}");
    assert_eq!(
        body["capabilities"],
        json!({
            "max_message_size": max_message_size,
            "supports_binary": false,
            "supports_notifications": true,
            "server_can_stop_anytime": true
        }),
        "{body}"
    );
    id
}

/// Asserts a START-ERROR with `status` and returns its body.
pub fn assert_start_error(reply: &HttpReply, status: u16) -> Value {
    let body = reply.json();
    assert_eq!(reply.status, status, "START-ERROR status: {body}");
    assert_eq!(body["action"], "START-ERROR", "{body}");
    assert_eq!(body["protocol"], "TimeStick", "{body}");
    let reason = body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("START-ERROR needs a reason: {body}"));
    assert!(!reason.is_empty(), "{body}");
    body
}

// ---- messages ------------------------------------------------------------------------------

/// A `request` in the seed's format.
pub fn request_msg(session_id: &str, message_id: &str, payload: Value) -> Value {
    json!({"type": "request", "session_id": session_id, "message_id": message_id,
           "correlation_id": null, "payload": payload})
}

/// A `response` in the seed's format.
pub fn response_msg(
    session_id: &str,
    message_id: &str,
    correlation: &str,
    payload: Value,
) -> Value {
    json!({"type": "response", "session_id": session_id, "message_id": message_id,
           "correlation_id": correlation, "payload": payload})
}

/// A caller `STOP` control message.
pub fn stop_msg(session_id: &str, message_id: &str, reason: Option<&str>) -> Value {
    let mut payload = json!({"action": "STOP"});
    if let Some(r) = reason {
        payload["reason"] = json!(r);
    }
    json!({"type": "control", "session_id": session_id, "message_id": message_id,
           "correlation_id": null, "payload": payload})
}

/// A caller `KILL` control message.
pub fn kill_msg(session_id: &str, message_id: &str, level: u64, reason: Option<&str>) -> Value {
    let mut payload = json!({"action": "KILL", "kill_level": level});
    if let Some(r) = reason {
        payload["reason"] = json!(r);
    }
    json!({"type": "control", "session_id": session_id, "message_id": message_id,
           "correlation_id": null, "payload": payload})
}

/// Asserts a session error body `{"status":"error","error_code":code,"error_message":..}`
/// with HTTP `status`; returns the body.
pub fn assert_error(reply: &HttpReply, status: u16, code: &str) -> Value {
    let body = reply.json();
    assert_eq!(
        reply.status, status,
        "status (want {status} {code}): {body}"
    );
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(
        body["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error_message: {body}"
    );
    body
}

/// Asserts a 400 with the seed's error response shape (`error_code` `INVALID_MESSAGE`) for
/// session `session_id`; returns the body.
pub fn assert_invalid(reply: &HttpReply, session_id: &str) -> Value {
    let body = reply.json();
    assert_eq!(reply.status, 400, "want 400 INVALID_MESSAGE: {body}");
    assert_eq!(body["type"], "response", "{body}");
    assert_eq!(body["session_id"], session_id, "{body}");
    assert!(
        body["message_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("correlation_id").is_some(), "{body}");
    assert_eq!(body["payload"]["status"], "error", "{body}");
    assert_eq!(body["payload"]["error_code"], "INVALID_MESSAGE", "{body}");
    assert!(
        body["payload"]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Asserts a 410 for a session stopped with `reason`; returns the body.
pub fn assert_stopped(reply: &HttpReply, reason: &str) -> Value {
    let body = assert_error(reply, 410, "SESSION_STOPPED");
    assert_eq!(body["action"], "STOP", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    body
}

/// Asserts a 410 for a session killed at `level` with `reason`; returns the body.
pub fn assert_killed(reply: &HttpReply, level: u64, reason: &str) -> Value {
    let body = assert_error(reply, 410, "SESSION_KILLED");
    assert_eq!(body["action"], "KILL", "{body}");
    assert_eq!(body["kill_level"], level, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    body
}

/// Asserts a 202 for message `message_id`.
pub fn assert_accepted(reply: &HttpReply, message_id: &str) {
    assert_eq!(reply.status, 202, "POST must be accepted: {}", reply.text());
    assert_eq!(
        reply.json(),
        json!({"status": "accepted", "message_id": message_id})
    );
}

/// Asserts a delivered `request` (CONTRACT §3) to `session_id` that session `origin`
/// (caller `caller`) posted as `message_id` with `payload`.
pub fn assert_delivered_request(
    msg: &Value,
    session_id: &str,
    origin: &str,
    caller: &str,
    message_id: &str,
    payload: &Value,
) {
    assert_eq!(
        msg,
        &json!({
            "type": "request",
            "session_id": session_id,
            "message_id": format!("{origin}.{message_id}"),
            "correlation_id": null,
            "payload": payload,
            "from": {"caller": caller, "protocol": "timestick"}
        })
    );
}

/// Asserts a control message from the receiver to `session_id`; returns its payload.
pub fn assert_control(msg: &Value, session_id: &str, action: &str) -> Value {
    assert_eq!(msg["type"], "control", "{msg}");
    assert_eq!(msg["session_id"], session_id, "{msg}");
    assert!(msg["correlation_id"].is_null(), "{msg}");
    assert!(
        msg["message_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{msg}"
    );
    assert_eq!(msg["payload"]["action"], action, "{msg}");
    msg["payload"].clone()
}

// ---- sessions ------------------------------------------------------------------------------

/// One started session and the node it currently talks to.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user: String,
    pub token: String,
    pub target: String,
    /// `http://127.0.0.1:<public port>` of the node requests go to.
    pub base: String,
}

impl Session {
    /// STARTs a session of `user` on `target` via `POST /timestick/start` on `node`.
    pub async fn open(node: &Node, user: &str, target: &str) -> Session {
        Self::open_at(&node.public_url(), user, target).await
    }

    /// [`Session::open`] by base URL.
    pub async fn open_at(base: &str, user: &str, target: &str) -> Session {
        let token = murmur_tests::token(user);
        let reply = start_json(
            base,
            "start",
            Some(&token),
            &start_body(user, Some(&uri(target))),
        )
        .await;
        let id = assert_start_ok(&reply, MAX_MESSAGE_SIZE);
        Session {
            id,
            user: user.to_string(),
            token,
            target: target.to_string(),
            base: base.to_string(),
        }
    }

    /// The same session, talking to `node`.
    pub fn at(&self, node: &Node) -> Session {
        Session {
            base: node.public_url(),
            ..self.clone()
        }
    }

    /// The same session id presented with another principal's token (stolen id).
    pub fn with_token(&self, token: &str) -> Session {
        Session {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// `<base>/timestick/session/<id>`.
    pub fn url(&self) -> String {
        format!("{}/timestick/session/{}", self.base, self.id)
    }

    fn auth(&self) -> String {
        bearer(&self.token)
    }

    /// POSTs a JSON message.
    pub async fn post(&self, msg: &Value) -> HttpReply {
        let auth = self.auth();
        request(
            Method::POST,
            &self.url(),
            &[("Authorization", &auth)],
            Some(msg),
        )
        .await
    }

    /// POSTs raw bytes.
    pub async fn post_raw(&self, body: &[u8]) -> HttpReply {
        let auth = self.auth();
        raw_request(
            Method::POST,
            &self.url(),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_vec()),
        )
        .await
    }

    /// POSTs a `request` and asserts 202.
    pub async fn send(&self, message_id: &str, payload: Value) {
        let reply = self.post(&request_msg(&self.id, message_id, payload)).await;
        assert_accepted(&reply, message_id);
    }

    /// POSTs a `response` to `correlation` and asserts 202.
    pub async fn reply(&self, message_id: &str, correlation: &str, payload: Value) {
        let reply = self
            .post(&response_msg(&self.id, message_id, correlation, payload))
            .await;
        assert_accepted(&reply, message_id);
    }

    /// `GET ?wait=&after=` as given (`query` without the leading `?`).
    pub async fn get_query(&self, query: &str) -> HttpReply {
        let auth = self.auth();
        let url = if query.is_empty() {
            self.url()
        } else {
            format!("{}?{query}", self.url())
        };
        request(Method::GET, &url, &[("Authorization", &auth)], None).await
    }

    /// A long-poll with `wait` seconds after `after`.
    pub async fn poll(&self, wait: u64, after: Option<&str>) -> HttpReply {
        let query = match after {
            Some(a) => format!("wait={wait}&after={a}"),
            None => format!("wait={wait}"),
        };
        self.get_query(&query).await
    }

    /// A long-poll that must answer 200 `{"messages":[..],"cursor":".."}`.
    pub async fn poll_ok(&self, wait: u64, after: Option<&str>) -> (Vec<Value>, String) {
        let reply = self.poll(wait, after).await;
        parse_poll(&reply)
    }

    /// Long-polls (each poll confirming the previous cursor) until at least `n` messages
    /// arrived; returns them all and the last cursor. Panics after `bound`.
    pub async fn collect_within(
        &self,
        n: usize,
        after: Option<&str>,
        bound: Duration,
    ) -> (Vec<Value>, String) {
        let what = format!("{n} message(s) on session {}", self.id);
        within(&what, bound, async {
            let mut got = Vec::new();
            let mut cursor = after.map(str::to_string);
            while got.len() < n {
                let (msgs, next) = self.poll_ok(5, cursor.as_deref()).await;
                got.extend(msgs);
                cursor = Some(next);
            }
            (got, cursor.unwrap_or_default())
        })
        .await
    }

    /// [`Session::collect_within`] bounded by [`SOON`].
    pub async fn collect(&self, n: usize, after: Option<&str>) -> (Vec<Value>, String) {
        self.collect_within(n, after, SOON).await
    }

    /// A `wait=1` poll after `after` that must come back empty; returns its cursor.
    pub async fn expect_quiet(&self, after: Option<&str>) -> String {
        let (msgs, cursor) = self.poll_ok(1, after).await;
        assert!(
            msgs.is_empty(),
            "session {} must receive nothing, got {msgs:?}",
            self.id
        );
        cursor
    }
}

/// Asserts a 200 poll answer and splits it into messages and cursor.
pub fn parse_poll(reply: &HttpReply) -> (Vec<Value>, String) {
    let body = reply.json();
    assert_eq!(reply.status, 200, "poll must answer 200: {body}");
    let messages = body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("poll answer needs messages: {body}"))
        .clone();
    let cursor = body["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("poll answer needs a cursor: {body}"))
        .to_string();
    assert!(!cursor.is_empty(), "{body}");
    (messages, cursor)
}

/// `POST /api/v1/timestick/sessions/<id>/<action>` on `node` → `(status, body)`.
pub async fn admin(node: &Node, id: &str, action: &str, body: Value) -> (u16, Value) {
    murmur_tests::api_post(
        node,
        &format!("/api/v1/timestick/sessions/{id}/{action}"),
        body,
    )
    .await
}

// ---- raw HTTP ------------------------------------------------------------------------------

/// Sends `method url` with `headers` and an optional raw body over awc; panics on transport
/// errors, never on HTTP statuses.
pub async fn raw_request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> HttpReply {
    murmur_tests::http::request_raw(method, url, headers, body).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_head(stream: &mut (impl AsyncReadExt + Unpin), buf: &mut BytesMut) -> Head {
    let end = loop {
        if let Some(pos) = find(buf, b"\r\n\r\n") {
            break pos;
        }
        let n = stream
            .read_buf(buf)
            .await
            .unwrap_or_else(|e| panic!("reading a response head: {e}"));
        assert!(n > 0, "connection closed before a response head");
    };
    let head = buf.split_to(end + 4);
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Head { status, headers }
}

/// Writes `head` (a literal request head, `\r\n\r\n` included) and then `body_len` bytes of
/// `fill` (in the background, errors ignored: the server may stop reading), and reads the
/// response head and, if it has a `content-length`, its body, within `bound`. Lets a test
/// send paths no client library would (`..`) and learn the status of a huge upload while
/// it is still being sent.
pub async fn raw_exchange(
    addr: std::net::SocketAddr,
    head: &str,
    body_len: usize,
    fill: u8,
    bound: Duration,
) -> (Head, Bytes) {
    raw_exchange_framed(addr, head, body_len, fill, false, bound).await
}

/// [`raw_exchange`]; with `chunked`, the body is sent with chunked transfer encoding (the
/// head must say `Transfer-Encoding: chunked`).
pub async fn raw_exchange_framed(
    addr: std::net::SocketAddr,
    head: &str,
    body_len: usize,
    fill: u8,
    chunked: bool,
    bound: Duration,
) -> (Head, Bytes) {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let (mut rd, mut wr) = stream.into_split();
    let head_bytes = head.as_bytes().to_vec();
    let writer = tokio::spawn(async move {
        if wr.write_all(&head_bytes).await.is_err() {
            return;
        }
        let chunk = vec![fill; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            if chunked && wr.write_all(format!("{n:x}\r\n").as_bytes()).await.is_err() {
                return;
            }
            if wr.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            if chunked && wr.write_all(b"\r\n").await.is_err() {
                return;
            }
            left -= n;
        }
        if chunked && wr.write_all(b"0\r\n\r\n").await.is_err() {
            return;
        }
        let _ = wr.flush().await;
        // Keep the write half open until the reader is done (dropping it sends FIN).
        std::future::pending::<()>().await;
    });
    let out = within("the raw HTTP response", bound, async {
        let mut buf = BytesMut::with_capacity(8192);
        let head = read_head(&mut rd, &mut buf).await;
        let len = head
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok());
        if let Some(len) = len {
            while buf.len() < len {
                match rd.read_buf(&mut buf).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        let body = buf.split().freeze();
        (head, body)
    })
    .await;
    writer.abort();
    out
}

// ---- Server-Sent Events --------------------------------------------------------------------

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A Server-Sent-Events stream read over a raw TCP connection (chunked or until EOF).
pub struct Sse {
    stream: TcpStream,
    head: Head,
    raw: BytesMut,
    text: String,
    chunked: bool,
    ended: bool,
    events: VecDeque<SseEvent>,
    /// Comment lines (`: keep-alive`) seen so far.
    pub comments: usize,
}

impl Sse {
    /// `GET <base>/timestick/session/<id>/stream[?query]` with the given headers. `Ok` for a
    /// 200 stream, `Err((status, body))` otherwise.
    pub async fn connect(
        s: &Session,
        headers: &[(&str, &str)],
        query: Option<&str>,
    ) -> Result<Sse, (u16, Value)> {
        let host = s
            .base
            .strip_prefix("http://")
            .unwrap_or(&s.base)
            .to_string();
        let path = match query {
            Some(q) => format!("/timestick/session/{}/stream?{q}", s.id),
            None => format!("/timestick/session/{}/stream", s.id),
        };
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut stream = TcpStream::connect(&host)
            .await
            .unwrap_or_else(|e| panic!("connect {host}: {e}"));
        stream
            .write_all(req.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("send SSE request: {e}"));
        let mut raw = BytesMut::with_capacity(8192);
        let head = within(
            "the SSE response head",
            SOON,
            read_head(&mut stream, &mut raw),
        )
        .await;
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if head.status != 200 {
            let len = head
                .header("content-length")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(0);
            within("the SSE error body", SOON, async {
                while raw.len() < len {
                    if stream.read_buf(&mut raw).await.unwrap_or(0) == 0 {
                        break;
                    }
                }
            })
            .await;
            let body = serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
            return Err((head.status, body));
        }
        let mut sse = Sse {
            stream,
            head,
            raw,
            text: String::new(),
            chunked,
            ended: false,
            events: VecDeque::new(),
            comments: 0,
        };
        // Bytes read together with the head.
        sse.decode();
        Ok(sse)
    }

    /// [`Sse::connect`] with the session's bearer token (and `Last-Event-ID` when given);
    /// panics unless it answers 200.
    pub async fn open(s: &Session, last_event_id: Option<&str>) -> Sse {
        let auth = bearer(&s.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("Last-Event-ID", id));
        }
        match Sse::connect(s, &headers, None).await {
            Ok(sse) => sse,
            Err((status, body)) => panic!("SSE stream refused: {status} {body}"),
        }
    }

    /// Whether the server ended the stream (final chunk or EOF).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The response head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Decodes complete chunks from `raw` into `text`, then complete events from `text`.
    fn decode(&mut self) {
        if self.chunked {
            while let Some(line_end) = find(&self.raw, b"\r\n") {
                let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
                if size == 0 {
                    self.ended = true;
                    self.raw.clear();
                    break;
                }
                if self.raw.len() < line_end + 2 + size + 2 {
                    break;
                }
                let _ = self.raw.split_to(line_end + 2);
                let data = self.raw.split_to(size);
                let _ = self.raw.split_to(2);
                self.text.push_str(&String::from_utf8_lossy(&data));
            }
        } else {
            let data = self.raw.split();
            self.text.push_str(&String::from_utf8_lossy(&data));
        }
        while let Some(end) = self.text.find("\n\n") {
            let block: String = self.text.drain(..end + 2).collect();
            let mut id = None;
            let mut event = String::from("message");
            let mut data = Vec::new();
            let mut comment = false;
            for line in block.lines() {
                if line.starts_with(':') {
                    comment = true;
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim_start().to_string());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim_start().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            if data.is_empty() {
                if comment {
                    self.comments += 1;
                }
                continue;
            }
            let text = data.join("\n");
            let data = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {text:?}"));
            self.events.push_back(SseEvent {
                id: id.unwrap_or_else(|| panic!("SSE event without id: {block:?}")),
                event,
                data,
            });
        }
    }

    /// Reads once more from the socket (false at EOF or on an error).
    async fn fill(&mut self) -> bool {
        match self.stream.read_buf(&mut self.raw).await {
            Ok(n) if n > 0 => {
                self.decode();
                true
            }
            _ => {
                self.ended = true;
                false
            }
        }
    }

    /// The next event within `timeout`, or `None` (timeout, or the stream ended).
    pub async fn try_next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if tokio::time::timeout(left, self.fill()).await.is_err() {
                return None;
            }
        }
    }

    /// Waits (up to `timeout`) until at least `n` keep-alive comments were read and no
    /// event came; false on timeout or when the stream ended. Panics if an event arrives.
    pub async fn comments_within(&mut self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.comments < n {
            if let Some(e) = self.events.front() {
                panic!("expected a keep-alive comment, got event {e:?}");
            }
            if self.ended {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, self.fill()).await.is_err() {
                return false;
            }
        }
        self.events.is_empty()
    }

    /// The next event within [`SOON`]; panics otherwise.
    pub async fn next(&mut self) -> SseEvent {
        match self.try_next(SOON).await {
            Some(e) => e,
            None => panic!(
                "no SSE event within {SOON:?} (ended: {}, pending text: {:?})",
                self.ended, self.text
            ),
        }
    }

    /// `n` events, each within [`SOON`].
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// Whether the server ended the stream (final chunk or EOF) within `timeout` with no
    /// further event; panics if an event arrives instead.
    pub async fn ends_within(&mut self, timeout: Duration) -> bool {
        match self.try_next(timeout).await {
            Some(e) => panic!("expected the stream to end, got event {e:?}"),
            None => self.ended,
        }
    }
}
