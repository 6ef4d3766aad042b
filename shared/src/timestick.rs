//! TimeStick wire codec (CONTRACT §3): the START handshake, session messages, the
//! `timestick://` URI mapping and target rules, cursors. Pure functions.

use std::fmt;

use serde_json::{json, Map, Value};

use crate::channel;

/// Protocol versions this receiver speaks.
pub const SUPPORTED_VERSIONS: [&str; 1] = ["0.1"];
/// Largest message the receiver accepts (the negotiated size is at most this).
pub const MAX_MESSAGE_SIZE: u64 = 65_535;
/// Longest `message_id` / `correlation_id`, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Why a request is refused; `status` is the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// A decoded START.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub caller_id: String,
    /// The target from `requested_uri`, when given.
    pub requested_target: Option<String>,
    /// The caller's `max_message_size`, when given.
    pub max_message_size: Option<u64>,
}

/// The target of a path after `/timestick/`: segments of printable text, no empty,
/// `.` or `..` segments, no reserved names (`start`, `session/…`), a valid channel name.
pub fn validate_target(path: &str) -> Result<String, String> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err("the target path is empty".into());
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("the target path has empty, '.' or '..' segments".into());
    }
    if path.contains(['%', '\\', '?', '#']) {
        return Err("the target path contains '%', '\\\\', '?' or '#'".into());
    }
    if path == "start" || path == "session" || path.starts_with("session/") {
        return Err("targets `start` and `session/…` are reserved".into());
    }
    if channel::is_broker_owned(path) {
        // A session's requests are publications on its target (CONTRACT §10).
        return Err(
            "targets `sink/…` and `@…` are broker-owned channels: they accept no publication"
                .into(),
        );
    }
    channel::validate(path)?;
    Ok(path.to_string())
}

/// Decodes the percent-escapes of a URL path strictly: every `%` must start an escape of
/// two hex digits, and the decoded bytes must be UTF-8 (an escape such as `%ff` that
/// decodes to invalid UTF-8 is refused, never replaced by U+FFFD, so two different raw
/// paths never name one target).
pub fn percent_decode(path: &str) -> Result<String, String> {
    let raw = path.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'%' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            raw.get(i + 1).and_then(|b| hex(*b)),
            raw.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => return Err("the target path has a malformed percent-escape".into()),
        }
        i += 3;
    }
    String::from_utf8(out)
        .map_err(|_| "the target path is not valid UTF-8 once percent-decoded".into())
}

/// The target named by a raw (still percent-encoded) request path
/// `/timestick/<target>`: `None` for `/timestick/start`, else the validated target.
pub fn target_of_path(raw_path: &str) -> Result<Option<String>, String> {
    let path = percent_decode(raw_path)?;
    let rest = path.strip_prefix("/timestick/").unwrap_or("");
    if rest == "start" {
        return Ok(None);
    }
    validate_target(rest).map(Some)
}

/// `timestick://host[:port]/path` → the target `path`.
pub fn target_of_uri(uri: &str) -> Result<String, String> {
    let rest = uri
        .strip_prefix("timestick://")
        .ok_or_else(|| "requested_uri must start with timestick://".to_string())?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains(['@', ' ']) {
        return Err("requested_uri has no valid host".into());
    }
    validate_target(path)
}

/// `timestick://host/path` ↔ `http(s)://host/timestick/path`.
pub fn http_url(uri: &str, https: bool) -> Result<String, String> {
    let target = target_of_uri(uri)?;
    let rest = &uri["timestick://".len()..];
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    Ok(format!(
        "{}://{host}/timestick/{target}",
        if https { "https" } else { "http" }
    ))
}

fn string(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(str::to_string)
}

/// Decodes and validates a START body. 400 for malformed input, with
/// `supported_versions` added by [`start_error`] when the version is unsupported.
pub fn decode_start(body: &[u8]) -> Result<Start, Refusal> {
    let bad = |r: &str| Refusal::new(400, r);
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("START body must be a JSON object"));
    };
    if string(&obj, "action").as_deref() != Some("START") {
        return Err(bad("`action` must be \"START\""));
    }
    if string(&obj, "protocol").as_deref() != Some("TimeStick") {
        return Err(bad("`protocol` must be \"TimeStick\""));
    }
    match obj.get("version").and_then(Value::as_str) {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => {}
        Some(_) => return Err(bad("Unsupported version")),
        None => return Err(bad("`version` must be a string")),
    }
    let caller_id = string(&obj, "caller_id")
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| bad("`caller_id` must be a non-empty string"))?;
    let requested_target = match obj.get("requested_uri") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(target_of_uri(u).map_err(|e| bad(&e))?),
        Some(_) => return Err(bad("`requested_uri` must be a string")),
    };
    let max_message_size = match obj.get("capabilities") {
        None | Some(Value::Null) => None,
        Some(Value::Object(caps)) => match caps.get("max_message_size") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Some(n),
                _ => {
                    return Err(bad(
                        "`capabilities.max_message_size` must be a positive integer",
                    ))
                }
            },
        },
        Some(_) => return Err(bad("`capabilities` must be an object")),
    };
    Ok(Start {
        caller_id,
        requested_target,
        max_message_size,
    })
}

/// `START-ERROR`; an unsupported version lists the supported ones.
pub fn start_error(reason: &str) -> Value {
    let mut v = json!({"action": "START-ERROR", "protocol": "TimeStick", "reason": reason});
    if reason == "Unsupported version" {
        v["supported_versions"] = json!(SUPPORTED_VERSIONS);
    }
    v
}

/// `START-OK`.
pub fn start_ok(session_id: &str, transport: &str, max_message_size: u64) -> Value {
    json!({
        "action": "START-OK",
        "protocol": "TimeStick",
        "version": SUPPORTED_VERSIONS[0],
        "session_id": session_id,
        "transport": transport,
        "endpoint": format!("/timestick/session/{session_id}"),
        "capabilities": {
            "max_message_size": max_message_size,
            "supports_binary": false,
            "supports_notifications": true,
            "server_can_stop_anytime": true,
        },
    })
}

/// What a caller can post on a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Posted {
    Request {
        message_id: String,
        payload: Value,
        timing: Option<Value>,
    },
    Response {
        message_id: String,
        correlation_id: String,
        payload: Value,
        timing: Option<Value>,
    },
    Stop {
        message_id: String,
        reason: Option<String>,
    },
    Kill {
        message_id: String,
        kill_level: u64,
        reason: Option<String>,
    },
}

impl Posted {
    pub fn message_id(&self) -> &str {
        match self {
            Posted::Request { message_id, .. }
            | Posted::Response { message_id, .. }
            | Posted::Stop { message_id, .. }
            | Posted::Kill { message_id, .. } => message_id,
        }
    }
}

fn id_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(Some(s.clone())),
        Some(_) => Err(format!(
            "`{field}` must be a string of 1..={MAX_ID_LEN} bytes or null"
        )),
    }
}

/// Decodes a message POSTed to a session endpoint. `Err` carries the reason for a 400
/// `INVALID_MESSAGE`.
pub fn decode_message(body: &[u8], session_id: &str) -> Result<Posted, String> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err("the body must be a JSON object".into());
    };
    match obj.get("session_id") {
        Some(Value::String(s)) if s == session_id => {}
        Some(Value::String(_)) => return Err("`session_id` does not match the endpoint".into()),
        _ => return Err("`session_id` must be the session's id".into()),
    }
    let message_id =
        id_field(&obj, "message_id")?.ok_or_else(|| "`message_id` is required".to_string())?;
    let correlation_id = id_field(&obj, "correlation_id")?;
    let payload = obj.get("payload").cloned().unwrap_or(Value::Null);
    let timing = match obj.get("~timing") {
        None => None,
        Some(t @ Value::Object(_)) => Some(t.clone()),
        Some(_) => return Err("`~timing` must be an object".into()),
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("request") => Ok(Posted::Request {
            message_id,
            payload,
            timing,
        }),
        Some("response") => {
            let correlation_id = correlation_id
                .ok_or_else(|| "a response needs the `correlation_id` it answers".to_string())?;
            Ok(Posted::Response {
                message_id,
                correlation_id,
                payload,
                timing,
            })
        }
        Some("control") => {
            let p = payload
                .as_object()
                .ok_or("a control message needs a payload object")?;
            let reason = p.get("reason").and_then(Value::as_str).map(str::to_string);
            match p.get("action").and_then(Value::as_str) {
                Some("STOP") => Ok(Posted::Stop { message_id, reason }),
                Some("KILL") => {
                    let level = p
                        .get("kill_level")
                        .and_then(Value::as_u64)
                        .ok_or("`payload.kill_level` must be a non-negative integer")?;
                    if level > 3 {
                        return Err("`payload.kill_level` must be 0, 1, 2 or 3".into());
                    }
                    Ok(Posted::Kill {
                        message_id,
                        kill_level: level,
                        reason,
                    })
                }
                _ => Err("`payload.action` must be STOP or KILL".into()),
            }
        }
        _ => Err("`type` must be request, response or control".into()),
    }
}

/// The seed's error response body for a rejected message.
pub fn error_response(
    session_id: &str,
    correlation_id: Option<&str>,
    code: &str,
    message: &str,
) -> Value {
    json!({
        "type": "response",
        "session_id": session_id,
        "message_id": format!("err-{}", uuid::Uuid::new_v4()),
        "correlation_id": correlation_id,
        "payload": {"status": "error", "error_code": code, "error_message": message},
    })
}

/// A control message from the receiver (`STOP-OK`, `STOP`, `KILL`).
pub fn control(
    session_id: &str,
    action: &str,
    reason: Option<&str>,
    details: Option<&str>,
) -> Value {
    let mut payload = json!({"action": action});
    if let Some(r) = reason {
        payload["reason"] = json!(r);
    }
    if let Some(d) = details {
        payload["details"] = json!(d);
    }
    json!({
        "type": "control",
        "session_id": session_id,
        "message_id": format!("rcv-{}", uuid::Uuid::new_v4()),
        "correlation_id": null,
        "payload": payload,
    })
}

/// A poll cursor: the position in the target channel's history and in the session's own
/// queue. Rendered `<channel position>.<queue position>`; opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    pub channel: String,
    pub queue: u64,
}

impl Cursor {
    pub fn render(&self) -> String {
        format!("{}.{}", self.channel, self.queue)
    }

    /// Parses a rendered cursor; garbage is `None`.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (channel, queue) = text.rsplit_once('.')?;
        let (ms, n) = channel.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(n) {
            return None;
        }
        ms.parse::<u64>().ok()?;
        n.parse::<u64>().ok()?;
        Some(Cursor {
            channel: channel.to_string(),
            queue: queue.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_body(extra: Value) -> Vec<u8> {
        let mut v = json!({"action": "START", "protocol": "TimeStick", "version": "0.1",
            "caller_id": "client-123", "requested_uri": "timestick://api.example.com/chat",
            "capabilities": {"max_message_size": 65535, "supports_binary": false,
            "supports_notifications": true}});
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn the_seed_start_example_decodes() {
        let s = decode_start(&start_body(json!({}))).unwrap();
        assert_eq!(s.caller_id, "client-123");
        assert_eq!(s.requested_target.as_deref(), Some("chat"));
        assert_eq!(s.max_message_size, Some(65535));
    }

    #[test]
    fn bad_starts_are_400() {
        for extra in [
            json!({"action": "STOP"}),
            json!({"protocol": "Other"}),
            json!({"version": 1}),
            json!({"caller_id": ""}),
            json!({"caller_id": 5}),
            json!({"requested_uri": "http://x/y"}),
            json!({"requested_uri": "timestick://x/session/abc"}),
            json!({"requested_uri": "timestick://x/a/../b"}),
            json!({"capabilities": {"max_message_size": 0}}),
            json!({"capabilities": "big"}),
        ] {
            let e = decode_start(&start_body(extra.clone())).unwrap_err();
            assert_eq!(e.status, 400, "{extra}");
        }
        for raw in [&b""[..], b"[]", b"{", b"null"] {
            assert_eq!(decode_start(raw).unwrap_err().status, 400);
        }
        let e = decode_start(&start_body(json!({"version": "9.9"}))).unwrap_err();
        assert_eq!(start_error(&e.reason)["supported_versions"], json!(["0.1"]));
    }

    #[test]
    fn uri_mapping_round_trips() {
        assert_eq!(
            target_of_uri("timestick://example.net:8443/room/123").unwrap(),
            "room/123"
        );
        assert_eq!(
            http_url("timestick://example.net:8443/room/123", true).unwrap(),
            "https://example.net:8443/timestick/room/123"
        );
        assert_eq!(
            http_url("timestick://api.example.com/chat", false).unwrap(),
            "http://api.example.com/timestick/chat"
        );
        assert!(
            target_of_uri("timestick://example.com").is_err(),
            "a target path is needed"
        );
        assert!(target_of_uri("timestick:///x").is_err());
    }

    #[test]
    fn targets_reject_traversal_and_reserved_names() {
        assert_eq!(validate_target("/room/123/").unwrap(), "room/123");
        for bad in [
            "",
            "/",
            "start",
            "session",
            "session/x",
            "a//b",
            "a/./b",
            "../etc/passwd",
            "a/..",
            "a%2e%2e",
            "a\\b",
            "a b",
            "@user/x",
            "a?b",
            "sink/dev-1",
            "/sink/dev-1/",
        ] {
            assert!(validate_target(bad).is_err(), "{bad:?}");
        }
        assert_eq!(validate_target("sinks/x").unwrap(), "sinks/x");
        // Trimmed to `sink`, which is an ordinary channel.
        assert_eq!(validate_target("sink/").unwrap(), "sink");
        assert!(target_of_uri("timestick://h/sink/dev-1").is_err());
    }

    #[test]
    fn url_paths_are_percent_decoded_strictly() {
        assert_eq!(target_of_path("/timestick/start"), Ok(None));
        assert_eq!(target_of_path("/timestick/%73tart"), Ok(None));
        assert_eq!(
            target_of_path("/timestick/room/1"),
            Ok(Some("room/1".into()))
        );
        assert_eq!(target_of_path("/timestick/a%2Fb"), Ok(Some("a/b".into())));
        assert_eq!(
            target_of_path("/timestick/%C3%BCber"),
            Ok(Some("über".into()))
        );
        assert_eq!(target_of_path("/%74imestick/x"), Ok(Some("x".into())));
        for bad in [
            "/timestick/%ff/x",
            "/timestick/%fe/x",
            "/timestick/%C3",
            "/timestick/a%zz",
            "/timestick/a%4",
            "/timestick/a%",
            "/timestick/%2e%2e/x",
            "/timestick/a%25b",
            "/timestick/sink%2Fdev",
            "/timestick/",
        ] {
            assert!(target_of_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            percent_decode("/%ff").unwrap_err(),
            "the target path is not valid UTF-8 once percent-decoded"
        );
    }

    #[test]
    fn messages_decode_by_type() {
        let sid = "s1";
        let m = |v: Value| decode_message(&serde_json::to_vec(&v).unwrap(), sid);
        assert!(matches!(
            m(
                json!({"type": "request", "session_id": sid, "message_id": "m1", "payload": {"k": 1}})
            ),
            Ok(Posted::Request { .. })
        ));
        assert!(matches!(
            m(
                json!({"type": "response", "session_id": sid, "message_id": "m2", "correlation_id": "x"})
            ),
            Ok(Posted::Response { .. })
        ));
        assert_eq!(
            m(
                json!({"type": "control", "session_id": sid, "message_id": "m3",
                "payload": {"action": "KILL", "kill_level": 3, "reason": "r"}})
            ),
            Ok(Posted::Kill {
                message_id: "m3".into(),
                kill_level: 3,
                reason: Some("r".into())
            })
        );
        for bad in [
            json!({"type": "request", "session_id": "other", "message_id": "m"}),
            json!({"type": "request", "session_id": sid}),
            json!({"type": "request", "session_id": sid, "message_id": 5}),
            json!({"type": "response", "session_id": sid, "message_id": "m"}),
            json!({"type": "control", "session_id": sid, "message_id": "m", "payload": {"action": "KILL"}}),
            json!({"type": "control", "session_id": sid, "message_id": "m", "payload": {"action": "KILL", "kill_level": 4}}),
            json!({"type": "control", "session_id": sid, "message_id": "m", "payload": {"action": "PAUSE"}}),
            json!({"type": "other", "session_id": sid, "message_id": "m"}),
            json!({"type": "request", "session_id": sid, "message_id": "m", "~timing": []}),
        ] {
            assert!(m(bad.clone()).is_err(), "{bad}");
        }
        assert!(decode_message(b"not json", sid).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            channel: "1700000000000-3".into(),
            queue: 17,
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        for bad in [
            "",
            "x",
            "1-2",
            "1-2.x",
            "a-b.1",
            "1-2.-1",
            "1.2",
            "99999999999999999999999-0.1",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
