//! Helios-Starling wire codec: decoding, validation and encoding of the JSON text frames
//! exchanged on the `/starling` WebSocket.
//!
//! Every message carries the base fields `protocol` (`"helios-starling"`), `version`
//! (`x.y.z`), `timestamp` (Unix milliseconds) and `type`, and is one of:
//!
//! * a **request** — `requestId` (UUID), `method` (`namespace:action`), optional `payload`,
//!   optional `timeoutMs`, optional `~timing`;
//! * a **response** — `requestId`, `success`, then `data` (success) or
//!   `error: {code, message, details?}` (failure);
//! * a **notification** — `notification: {topic?, data}`, optional `requestId` (`null` for a
//!   plain notification, or the id of the in-flight request it reports progress for),
//!   optional `~timing`.
//!
//! The server also sends a top-level `type: "error"` message (see
//! [`encode_protocol_error`]) when it cannot read a `requestId` from a bad frame; that
//! message is never accepted by [`decode`].
//!
//! Everything here is pure: no I/O, no clock (callers pass `now_ms`), and [`decode`] never
//! panics whatever the input. It reports *every* problem it finds as a human-readable
//! violation naming the field, so one round trip tells a client everything that is wrong.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The value of the `protocol` base field.
pub const PROTOCOL: &str = "helios-starling";
/// The protocol version this codec writes in the `version` base field.
pub const VERSION: &str = "1.0.0";
/// Largest accepted message, in UTF-8 bytes of the JSON text (1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Longest accepted method name, in characters.
pub const MAX_METHOD_LEN: usize = 128;
/// Shortest accepted method name, in characters.
pub const MIN_METHOD_LEN: usize = 3;
/// Longest accepted `error.message` in a response, in characters (Unicode scalar values).
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Namespaces that no Starling may provide (`broker:provide` must refuse them).
pub const RESERVED_NAMESPACES: [&str; 4] = ["system", "internal", "stream", "helios"];

/// Longest namespace accepted by [`validate_namespace`], in characters.
const MAX_NAMESPACE_LEN: usize = 64;
/// How much of an offending string value is quoted back in a violation.
const MAX_QUOTED_LEN: usize = 32;

/// Field names on the wire.
const F_PROTOCOL: &str = "protocol";
const F_VERSION: &str = "version";
const F_TIMESTAMP: &str = "timestamp";
const F_TYPE: &str = "type";
const F_REQUEST_ID: &str = "requestId";
const F_METHOD: &str = "method";
const F_PAYLOAD: &str = "payload";
const F_TIMEOUT_MS: &str = "timeoutMs";
const F_TIMING: &str = "~timing";
const F_SUCCESS: &str = "success";
const F_DATA: &str = "data";
const F_ERROR: &str = "error";
const F_NOTIFICATION: &str = "notification";

/// The standard error codes: the seed's five plus the three the reference implementation
/// uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `INVALID_MESSAGE_FORMAT`: the message does not conform to the protocol.
    InvalidMessageFormat,
    /// `METHOD_NOT_FOUND`: no handler or provider for the requested method.
    MethodNotFound,
    /// `METHOD_ERROR`: the method failed while executing.
    MethodError,
    /// `REQUEST_TIMEOUT`: no answer within the request's timeout.
    RequestTimeout,
    /// `REQUEST_CANCELLED`: the request was cancelled (`system:cancel`, provider gone).
    RequestCancelled,
    /// `PROTOCOL_VIOLATION`: the peer broke a protocol rule.
    ProtocolViolation,
    /// `VALIDATION_ERROR`: a payload did not pass a method's validation.
    ValidationError,
    /// `INTERNAL_ERROR`: an unexpected failure on the answering side.
    InternalError,
}

impl ErrorCode {
    /// Every variant, in declaration order.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidMessageFormat,
        ErrorCode::MethodNotFound,
        ErrorCode::MethodError,
        ErrorCode::RequestTimeout,
        ErrorCode::RequestCancelled,
        ErrorCode::ProtocolViolation,
        ErrorCode::ValidationError,
        ErrorCode::InternalError,
    ];

    /// The wire spelling, e.g. `"INVALID_MESSAGE_FORMAT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessageFormat => "INVALID_MESSAGE_FORMAT",
            ErrorCode::MethodNotFound => "METHOD_NOT_FOUND",
            ErrorCode::MethodError => "METHOD_ERROR",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::RequestCancelled => "REQUEST_CANCELLED",
            ErrorCode::ProtocolViolation => "PROTOCOL_VIOLATION",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The code with this exact (case-sensitive) wire spelling, or `None` for a custom code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The broker's own codes beyond the seed's catalogue ([`ErrorCode`]), as sent on the
/// wire (docs/errors.md).
pub mod custom {
    /// A caller or provider over its in-flight limit.
    pub const TOO_MANY_REQUESTS: &str = "TOO_MANY_REQUESTS";
    /// A request whose `~timing.expires_time` has already passed.
    pub const EXPIRED: &str = "EXPIRED";
    /// The cluster's store or bus could not take the call now (Redis away or slow):
    /// nothing was done; the same call may succeed later.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
}

/// An error object as carried in a response: code is a String because providers may send
/// custom codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireError {
    /// A standard code ([`ErrorCode::as_str`]) or a provider's custom code.
    pub code: String,
    /// Human-readable description (at most [`MAX_ERROR_MESSAGE_LEN`] characters on the wire).
    pub message: String,
    /// Optional structured details, passed through unchanged.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub details: Option<Value>,
}

impl WireError {
    /// An error with a standard code and no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code: code.as_str().to_owned(),
            message: message.into(),
            details: None,
        }
    }

    /// The same error with `details` set.
    pub fn with_details(self, details: Value) -> Self {
        WireError {
            details: Some(details),
            ..self
        }
    }

    /// The standard code, or `None` when the code is a custom one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

/// A decoded `type: "request"` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The caller's request id, exactly as sent (a canonical hyphenated UUID).
    pub request_id: String,
    /// The method name, valid per [`validate_method`].
    pub method: String,
    /// The payload: `None` when absent, `Some(Value::Null)` for an explicit `null`.
    pub payload: Option<Value>,
    /// The top-level `timeoutMs` (always > 0), `None` when absent or `null`.
    pub timeout_ms: Option<u64>,
    /// The raw top-level `~timing` object, if any.
    pub timing: Option<Value>,
}

/// A decoded `type: "response"` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request this answers.
    pub request_id: String,
    /// `Ok(data)` when `success` is true (`None` when `data` is absent), otherwise the error.
    pub outcome: Result<Option<Value>, WireError>,
    /// The `~timing` decorator (e.g. `in_time`), passed on to the caller.
    pub timing: Option<Value>,
}

/// A decoded `type: "notification"` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The in-flight request this reports on, `None` for a plain notification.
    pub request_id: Option<String>,
    /// The routing topic (channel name), if any.
    pub topic: Option<String>,
    /// The notification data, `Value::Null` when absent.
    pub data: Value,
    /// The raw top-level `~timing` object, if any.
    pub timing: Option<Value>,
}

/// Any message a peer may send.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A request expecting a response.
    Request(Request),
    /// A response to an earlier request.
    Response(Response),
    /// A one-way notification.
    Notification(Notification),
}

impl Frame {
    /// The frame's request id, if it has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Frame::Request(r) => Some(&r.request_id),
            Frame::Response(r) => Some(&r.request_id),
            Frame::Notification(n) => n.request_id.as_deref(),
        }
    }
}

/// Why a text frame is not a valid message. `request_id` is set when one could be read
/// (a string field "requestId" at top level of a JSON object) so the server can answer with an
/// error *response*; otherwise it answers with a top-level error message.
///
/// Only a canonical UUID is "readable": an id that would itself be rejected is never echoed
/// back, so the error response is always well-formed. The id is read whatever the message
/// `type`; a server may prefer not to answer a malformed *response* with a response.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The message's valid `requestId`, if one could be read.
    pub request_id: Option<String>,
    /// Every problem found, as human-readable sentences naming the field. Never empty.
    pub violations: Vec<String>,
}

impl DecodeError {
    /// The `INVALID_MESSAGE_FORMAT` error to send back, with
    /// `details: {"violations": [..]}`; use it with [`encode_error`] when
    /// [`DecodeError::request_id`] is set.
    pub fn to_wire_error(&self) -> WireError {
        WireError::new(ErrorCode::InvalidMessageFormat, "Invalid message format")
            .with_details(serde_json::json!({ "violations": self.violations }))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Helios-Starling message: {}",
            self.violations.join("; ")
        )
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// Checks a method name: 3..=128 characters, starting with a letter, only
/// `[A-Za-z0-9_:]`, shaped `namespace:action` (`^[a-zA-Z][a-zA-Z0-9_]*(:[a-zA-Z][a-zA-Z0-9_]*)+$`).
///
/// Reserved namespaces are *not* rejected here: calling `system:ping` is legal, only
/// providing a reserved namespace is not (see [`is_reserved_namespace`]).
pub fn validate_method(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len < MIN_METHOD_LEN {
        return Err(format!(
            "method name must be at least {MIN_METHOD_LEN} characters long"
        ));
    }
    if len > MAX_METHOD_LEN {
        return Err(format!(
            "method name must be at most {MAX_METHOD_LEN} characters long"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("method name must start with a letter".to_owned());
    }
    if let Some(c) = name.chars().find(|&c| !is_word_char(c) && c != ':') {
        return Err(format!(
            "method name contains {c:?}; only letters, digits, '_' and ':' are allowed"
        ));
    }
    if !name.contains(':') {
        return Err("method name must have the form namespace:action".to_owned());
    }
    for segment in name.split(':') {
        if segment.is_empty() {
            return Err("method name must not have an empty segment around ':'".to_owned());
        }
        if !segment.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err("every segment of a method name must start with a letter".to_owned());
        }
    }
    Ok(())
}

/// The namespace of a method: the part before the first `':'` (the whole string if none).
pub fn namespace(method: &str) -> &str {
    method.split_once(':').map_or(method, |(ns, _)| ns)
}

/// Whether `ns` is one of [`RESERVED_NAMESPACES`] (exact, case-sensitive match, like method
/// routing).
pub fn is_reserved_namespace(ns: &str) -> bool {
    RESERVED_NAMESPACES.contains(&ns)
}

/// Checks a namespace as given to `broker:provide`: `^[a-zA-Z][a-zA-Z0-9_]*$`,
/// 1..=64 characters. Reservation is checked separately with [`is_reserved_namespace`].
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    let len = ns.chars().count();
    if len == 0 || len > MAX_NAMESPACE_LEN {
        return Err(format!(
            "namespace must be 1 to {MAX_NAMESPACE_LEN} characters long"
        ));
    }
    if !ns.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("namespace must start with a letter".to_owned());
    }
    if let Some(c) = ns.chars().find(|&c| !is_word_char(c)) {
        return Err(format!(
            "namespace contains {c:?}; only letters, digits and '_' are allowed"
        ));
    }
    Ok(())
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `^\d+\.\d+\.\d+$` with ASCII digits.
fn is_semver_triplet(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    parts == 3
}

/// A UUID (any version) in the canonical hyphenated 8-4-4-4-12 form.
fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b.get(i) == Some(&b'-'))
        && Uuid::parse_str(s).is_ok()
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// The three message types a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageType {
    Request,
    Response,
    Notification,
}

/// Decodes and validates one text frame.
///
/// Never panics. Oversized input is rejected before parsing; absurdly nested JSON is
/// rejected by the parser's recursion limit. Unknown fields are ignored. On failure every
/// violation found is reported (see [`DecodeError`]).
pub fn decode(text: &str) -> Result<Frame, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError {
            request_id: None,
            violations: vec![format!(
                "message is {} bytes, more than the limit of {MAX_MESSAGE_BYTES} bytes",
                text.len()
            )],
        });
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            return Err(DecodeError {
                request_id: None,
                violations: vec![format!("message is not valid JSON: {e}")],
            })
        }
    };
    let mut obj = match value {
        Value::Object(obj) => obj,
        other => {
            return Err(DecodeError {
                request_id: None,
                violations: vec![format!(
                    "message must be a JSON object, got {}",
                    kind(&other)
                )],
            })
        }
    };

    let request_id = obj
        .get(F_REQUEST_ID)
        .and_then(Value::as_str)
        .filter(|id| is_canonical_uuid(id))
        .map(str::to_owned);

    let mut violations = Vec::new();
    let message_type = check_base(&obj, &mut violations);
    let frame = match message_type {
        Some(MessageType::Request) => decode_request(&mut obj, &mut violations),
        Some(MessageType::Response) => decode_response(&mut obj, &mut violations),
        Some(MessageType::Notification) => decode_notification(&mut obj, &mut violations),
        None => None,
    };
    match frame {
        Some(frame) if violations.is_empty() => Ok(frame),
        _ => {
            if violations.is_empty() {
                // Unreachable by construction (a `None` frame always comes with a violation),
                // but the error must never be empty.
                violations.push("message is not a valid Helios-Starling message".to_owned());
            }
            Err(DecodeError {
                request_id,
                violations,
            })
        }
    }
}

/// Checks the four base fields; returns the message type when it is a known one.
fn check_base(obj: &Map<String, Value>, violations: &mut Vec<String>) -> Option<MessageType> {
    match obj.get(F_PROTOCOL) {
        None => violations.push(missing(F_PROTOCOL)),
        Some(Value::String(s)) if s == PROTOCOL => {}
        Some(_) => violations.push(format!("`{F_PROTOCOL}` must be \"{PROTOCOL}\"")),
    }

    match obj.get(F_VERSION) {
        None => violations.push(missing(F_VERSION)),
        Some(Value::String(s)) if is_semver_triplet(s) => {}
        Some(Value::String(s)) => violations.push(format!(
            "`{F_VERSION}` must be a version in x.y.z format, got {}",
            quote(s)
        )),
        Some(other) => violations.push(wrong_type(F_VERSION, "a string", other)),
    }

    match obj.get(F_TIMESTAMP) {
        None => violations.push(missing(F_TIMESTAMP)),
        Some(Value::Number(n)) => {
            let non_negative = n.is_u64() || (!n.is_i64() && n.as_f64().is_some_and(|f| f >= 0.0));
            if !non_negative {
                violations.push(format!(
                    "`{F_TIMESTAMP}` must be a non-negative number of milliseconds"
                ));
            }
        }
        Some(other) => violations.push(wrong_type(F_TIMESTAMP, "a number", other)),
    }

    match obj.get(F_TYPE) {
        None => {
            violations.push(missing(F_TYPE));
            None
        }
        Some(Value::String(s)) => match s.as_str() {
            "request" => Some(MessageType::Request),
            "response" => Some(MessageType::Response),
            "notification" => Some(MessageType::Notification),
            _ => {
                violations.push(format!(
                    "`{F_TYPE}` must be one of \"request\", \"response\", \"notification\", \
                     got {}",
                    quote(s)
                ));
                None
            }
        },
        Some(other) => {
            violations.push(wrong_type(F_TYPE, "a string", other));
            None
        }
    }
}

fn decode_request(obj: &mut Map<String, Value>, violations: &mut Vec<String>) -> Option<Frame> {
    let request_id = required_request_id(obj, violations);

    let method = match obj.get(F_METHOD) {
        None => {
            violations.push(missing(F_METHOD));
            None
        }
        Some(Value::String(s)) => match validate_method(s) {
            Ok(()) => Some(s.clone()),
            Err(reason) => {
                violations.push(format!("`{F_METHOD}` is invalid: {reason}"));
                None
            }
        },
        Some(other) => {
            violations.push(wrong_type(F_METHOD, "a string", other));
            None
        }
    };

    let timeout_ms = match obj.get(F_TIMEOUT_MS) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms) if ms > 0 => Some(Some(ms)),
            _ => {
                violations.push(format!(
                    "`{F_TIMEOUT_MS}` must be a positive integer number of milliseconds"
                ));
                None
            }
        },
        Some(other) => {
            violations.push(wrong_type(F_TIMEOUT_MS, "a positive integer", other));
            None
        }
    };

    let timing = optional_timing(obj, violations);
    let payload = obj.remove(F_PAYLOAD);

    Some(Frame::Request(Request {
        request_id: request_id?,
        method: method?,
        payload,
        timeout_ms: timeout_ms?,
        timing: timing?,
    }))
}

fn decode_response(obj: &mut Map<String, Value>, violations: &mut Vec<String>) -> Option<Frame> {
    let request_id = required_request_id(obj, violations);

    let outcome = match obj.get(F_SUCCESS) {
        None => {
            violations.push(missing(F_SUCCESS));
            None
        }
        Some(Value::Bool(true)) => Some(Ok(obj.remove(F_DATA))),
        Some(Value::Bool(false)) => decode_wire_error(obj.remove(F_ERROR), violations).map(Err),
        Some(other) => {
            violations.push(wrong_type(F_SUCCESS, "a boolean", other));
            None
        }
    };

    let timing = optional_timing(obj, violations);
    Some(Frame::Response(Response {
        request_id: request_id?,
        outcome: outcome?,
        timing: timing?,
    }))
}

/// Decodes the `error` object of a failed response.
fn decode_wire_error(error: Option<Value>, violations: &mut Vec<String>) -> Option<WireError> {
    let mut error = match error {
        None => {
            violations.push(format!(
                "missing required field `{F_ERROR}` (success is false)"
            ));
            return None;
        }
        Some(Value::Object(error)) => error,
        Some(other) => {
            violations.push(wrong_type(F_ERROR, "an object", &other));
            return None;
        }
    };

    let code = match error.remove("code") {
        None => {
            violations.push(missing("error.code"));
            None
        }
        Some(Value::String(code)) => Some(code),
        Some(other) => {
            violations.push(wrong_type("error.code", "a string", &other));
            None
        }
    };

    let message = match error.remove("message") {
        None => {
            violations.push(missing("error.message"));
            None
        }
        Some(Value::String(message)) if message.chars().count() <= MAX_ERROR_MESSAGE_LEN => {
            Some(message)
        }
        Some(Value::String(_)) => {
            violations.push(format!(
                "`error.message` must be at most {MAX_ERROR_MESSAGE_LEN} characters long"
            ));
            None
        }
        Some(other) => {
            violations.push(wrong_type("error.message", "a string", &other));
            None
        }
    };

    let details = error.remove("details");
    Some(WireError {
        code: code?,
        message: message?,
        details,
    })
}

fn decode_notification(
    obj: &mut Map<String, Value>,
    violations: &mut Vec<String>,
) -> Option<Frame> {
    let request_id = match obj.get(F_REQUEST_ID) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(id)) if is_canonical_uuid(id) => Some(Some(id.clone())),
        Some(Value::String(_)) => {
            violations.push(bad_uuid(F_REQUEST_ID));
            None
        }
        Some(other) => {
            violations.push(wrong_type(F_REQUEST_ID, "null or a UUID string", other));
            None
        }
    };

    let body = match obj.remove(F_NOTIFICATION) {
        None => {
            violations.push(missing(F_NOTIFICATION));
            None
        }
        Some(Value::Object(mut body)) => {
            let topic = match body.remove("topic") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(topic)) => Some(Some(topic)),
                Some(other) => {
                    violations.push(wrong_type("notification.topic", "a string", &other));
                    None
                }
            };
            let data = body.remove(F_DATA).unwrap_or(Value::Null);
            topic.map(|topic| (topic, data))
        }
        Some(other) => {
            violations.push(wrong_type(F_NOTIFICATION, "an object", &other));
            None
        }
    };

    let timing = optional_timing(obj, violations);
    let (topic, data) = body?;

    Some(Frame::Notification(Notification {
        request_id: request_id?,
        topic,
        data,
        timing: timing?,
    }))
}

/// The mandatory `requestId` of requests and responses.
fn required_request_id(obj: &Map<String, Value>, violations: &mut Vec<String>) -> Option<String> {
    match obj.get(F_REQUEST_ID) {
        None => {
            violations.push(missing(F_REQUEST_ID));
            None
        }
        Some(Value::String(id)) if is_canonical_uuid(id) => Some(id.clone()),
        Some(Value::String(_)) => {
            violations.push(bad_uuid(F_REQUEST_ID));
            None
        }
        Some(other) => {
            violations.push(wrong_type(F_REQUEST_ID, "a UUID string", other));
            None
        }
    }
}

/// The optional top-level `~timing`: `Some(None)` when absent, `None` after a violation.
/// An explicit `null` is a malformed `~timing` and is rejected.
fn optional_timing(
    obj: &mut Map<String, Value>,
    violations: &mut Vec<String>,
) -> Option<Option<Value>> {
    match obj.remove(F_TIMING) {
        None => Some(None),
        Some(timing @ Value::Object(_)) => Some(Some(timing)),
        Some(other) => {
            violations.push(wrong_type(F_TIMING, "an object", &other));
            None
        }
    }
}

fn missing(field: &str) -> String {
    format!("missing required field `{field}`")
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> String {
    format!("`{field}` must be {expected}, got {}", kind(got))
}

fn bad_uuid(field: &str) -> String {
    format!("`{field}` must be a UUID in canonical 8-4-4-4-12 hyphenated form")
}

/// The JSON type of a value, for violations.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An offending string value, escaped and shortened, for violations.
fn quote(s: &str) -> String {
    let short = truncate_chars(s, MAX_QUOTED_LEN);
    if short.len() < s.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

/// The longest prefix of `s` with at most `max` characters.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// The base fields, followed by a message-specific body.
#[derive(Serialize)]
struct Envelope<B: Serialize> {
    protocol: &'static str,
    version: &'static str,
    timestamp: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct RequestBody<'a> {
    #[serde(rename = "requestId")]
    request_id: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
    #[serde(rename = "~timing", skip_serializing_if = "Option::is_none")]
    timing: Option<&'a Value>,
}

#[derive(Serialize)]
struct SuccessBody<'a> {
    #[serde(rename = "requestId")]
    request_id: &'a str,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(rename = "~timing", skip_serializing_if = "Option::is_none")]
    timing: Option<&'a Value>,
}

#[derive(Serialize)]
struct ErrorBody<'a, D: Serialize> {
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    error: ErrorObject<'a, D>,
    #[serde(rename = "~timing", skip_serializing_if = "Option::is_none")]
    timing: Option<&'a Value>,
}

#[derive(Serialize)]
struct ErrorObject<'a, D: Serialize> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<D>,
}

#[derive(Serialize)]
struct Violations<'a> {
    violations: &'a [String],
}

#[derive(Serialize)]
struct NotificationBody<'a> {
    #[serde(rename = "requestId")]
    request_id: Option<&'a str>,
    notification: NotificationObject<'a>,
    #[serde(rename = "~timing", skip_serializing_if = "Option::is_none")]
    timing: Option<&'a Value>,
}

#[derive(Serialize)]
struct NotificationObject<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    data: &'a Value,
    /// Extension: the publication's per-channel sequence and its epoch (docs/helios.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
}

fn encode<B: Serialize>(kind: &'static str, now_ms: u64, body: B) -> String {
    let envelope = Envelope {
        protocol: PROTOCOL,
        version: VERSION,
        timestamp: now_ms,
        kind,
        body,
    };
    // Cannot fail: the writer is a `Vec` and every map key is a string (JSON values only
    // have string keys), so the fallback is never taken.
    serde_json::to_string(&envelope).unwrap_or_default()
}

/// Encodes a request. `payload` is omitted when `None`; `timing` becomes `~timing`.
///
/// The method name is written as given; callers validate it with [`validate_method`].
pub fn encode_request(
    request_id: &str,
    method: &str,
    payload: Option<&Value>,
    timing: Option<&Value>,
    now_ms: u64,
) -> String {
    encode(
        "request",
        now_ms,
        RequestBody {
            request_id,
            method,
            payload,
            timing,
        },
    )
}

/// Encodes a successful response (`success: true`); `data` is omitted when `None`.
pub fn encode_success(request_id: &str, data: Option<&Value>, now_ms: u64) -> String {
    encode_success_timed(request_id, data, None, now_ms)
}

/// [`encode_success`] with a `~timing` decorator.
pub fn encode_success_timed(
    request_id: &str,
    data: Option<&Value>,
    timing: Option<&Value>,
    now_ms: u64,
) -> String {
    encode(
        "response",
        now_ms,
        SuccessBody {
            request_id,
            success: true,
            data,
            timing,
        },
    )
}

/// Encodes a failed response (`success: false`). A message longer than
/// [`MAX_ERROR_MESSAGE_LEN`] characters is truncated so the output is always valid.
pub fn encode_error(request_id: &str, error: &WireError, now_ms: u64) -> String {
    encode_error_timed(request_id, error, None, now_ms)
}

/// [`encode_error`] with a `~timing` decorator.
pub fn encode_error_timed(
    request_id: &str,
    error: &WireError,
    timing: Option<&Value>,
    now_ms: u64,
) -> String {
    let body = ErrorBody {
        request_id: Some(request_id),
        success: Some(false),
        error: ErrorObject {
            code: &error.code,
            message: truncate_chars(&error.message, MAX_ERROR_MESSAGE_LEN),
            details: error.details.as_ref(),
        },
        timing,
    };
    encode("response", now_ms, body)
}

/// Encodes a notification. `requestId` is always written (`null` when `None`, as the
/// reference does for plain notifications); `topic` is omitted when `None`; `timing`
/// becomes `~timing`.
pub fn encode_notification(
    request_id: Option<&str>,
    topic: Option<&str>,
    data: &Value,
    timing: Option<&Value>,
    now_ms: u64,
) -> String {
    let body = NotificationBody {
        request_id,
        notification: NotificationObject {
            topic,
            data,
            seq: None,
            epoch: None,
        },
        timing,
    };
    encode("notification", now_ms, body)
}

/// A channel publication: a notification whose `topic` is the channel, with the
/// extension fields `seq` and `epoch` when the publication has a place in the channel's
/// history (`{"notification":{"topic":..,"data":..,"seq":42,"epoch":".."}}`).
pub fn encode_publication(
    channel: &str,
    data: &Value,
    timing: Option<&Value>,
    seq: Option<(u64, &str)>,
    now_ms: u64,
) -> String {
    let body = NotificationBody {
        request_id: None,
        notification: NotificationObject {
            topic: Some(channel),
            data,
            seq: seq.map(|s| s.0),
            epoch: seq.map(|s| s.1),
        },
        timing,
    };
    encode("notification", now_ms, body)
}

/// Top-level error for input with no readable requestId:
/// {"protocol","version","timestamp","type":"error","error":{"code":..,"message":..,"details":{"violations":[..]}}}
///
/// `details.violations` is always present (possibly empty). The message is truncated to
/// [`MAX_ERROR_MESSAGE_LEN`] characters.
pub fn encode_protocol_error(
    code: ErrorCode,
    message: &str,
    violations: &[String],
    now_ms: u64,
) -> String {
    let body = ErrorBody {
        request_id: None,
        success: None,
        error: ErrorObject {
            code: code.as_str(),
            message: truncate_chars(message, MAX_ERROR_MESSAGE_LEN),
            details: Some(Violations { violations }),
        },
        timing: None,
    };
    encode("error", now_ms, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    const ID2: &str = "00000000-0000-0000-0000-000000000000";
    const NOW: u64 = 1_704_700_800_000;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("encoder output is JSON")
    }

    fn base(kind: &str) -> Map<String, Value> {
        let Value::Object(map) = json!({
            "protocol": PROTOCOL,
            "version": VERSION,
            "timestamp": NOW,
            "type": kind,
        }) else {
            unreachable!()
        };
        map
    }

    fn valid_request() -> Map<String, Value> {
        let mut m = base("request");
        m.insert("requestId".into(), json!(ID));
        m.insert("method".into(), json!("chat:send"));
        m.insert("payload".into(), json!({"text": "hi"}));
        m
    }

    fn valid_response() -> Map<String, Value> {
        let mut m = base("response");
        m.insert("requestId".into(), json!(ID));
        m.insert("success".into(), json!(true));
        m.insert("data".into(), json!(42));
        m
    }

    fn valid_error_response() -> Map<String, Value> {
        let mut m = base("response");
        m.insert("requestId".into(), json!(ID));
        m.insert("success".into(), json!(false));
        m.insert(
            "error".into(),
            json!({"code": "METHOD_ERROR", "message": "boom"}),
        );
        m
    }

    fn valid_notification() -> Map<String, Value> {
        let mut m = base("notification");
        m.insert("requestId".into(), Value::Null);
        m.insert(
            "notification".into(),
            json!({"topic": "news", "data": [1, 2]}),
        );
        m
    }

    fn text(m: &Map<String, Value>) -> String {
        Value::Object(m.clone()).to_string()
    }

    fn with(mut m: Map<String, Value>, key: &str, value: Value) -> Map<String, Value> {
        m.insert(key.into(), value);
        m
    }

    fn without(mut m: Map<String, Value>, key: &str) -> Map<String, Value> {
        m.remove(key);
        m
    }

    fn decode_err(m: &Map<String, Value>) -> DecodeError {
        match decode(&text(m)) {
            Ok(frame) => panic!("expected an error, decoded {frame:?}"),
            Err(e) => e,
        }
    }

    /// Asserts a decode error with exactly one violation mentioning `needle`.
    fn assert_single_violation(m: &Map<String, Value>, needle: &str) -> DecodeError {
        let err = decode_err(m);
        assert_eq!(err.violations.len(), 1, "violations: {:?}", err.violations);
        assert!(
            err.violations[0].contains(needle),
            "violation {:?} should mention {needle:?}",
            err.violations[0]
        );
        err
    }

    // ---- constants and error codes ---------------------------------------------------

    #[test]
    fn constants() {
        assert_eq!(PROTOCOL, "helios-starling");
        assert_eq!(VERSION, "1.0.0");
        assert_eq!(MAX_MESSAGE_BYTES, 1_048_576);
        assert!(is_semver_triplet(VERSION));
    }

    #[test]
    fn error_code_round_trip() {
        let expected = [
            "INVALID_MESSAGE_FORMAT",
            "METHOD_NOT_FOUND",
            "METHOD_ERROR",
            "REQUEST_TIMEOUT",
            "REQUEST_CANCELLED",
            "PROTOCOL_VIOLATION",
            "VALIDATION_ERROR",
            "INTERNAL_ERROR",
        ];
        for (code, s) in ErrorCode::ALL.into_iter().zip(expected) {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.to_string(), s);
            assert_eq!(ErrorCode::parse(s), Some(code));
        }
        assert_eq!(ErrorCode::parse("invalid_message_format"), None);
        assert_eq!(ErrorCode::parse("CUSTOM"), None);
        assert_eq!(ErrorCode::parse(""), None);
    }

    #[test]
    fn wire_error_builders_and_serde() {
        let e = WireError::new(ErrorCode::MethodNotFound, "nope");
        assert_eq!(e.code, "METHOD_NOT_FOUND");
        assert_eq!(e.error_code(), Some(ErrorCode::MethodNotFound));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "METHOD_NOT_FOUND", "message": "nope"})
        );
        let e = e.with_details(json!({"x": 1}));
        assert_eq!(e.details, Some(json!({"x": 1})));
        let back: WireError = serde_json::from_value(json!({"code": "X", "message": "m"})).unwrap();
        assert_eq!(back.details, None);
        assert_eq!(back.error_code(), None);
    }

    // ---- encoders round-trip through decode ------------------------------------------

    #[test]
    fn request_round_trip() {
        let payload = json!({"a": [1, 2, {"b": null}], "s": "é\"\n"});
        let timing = json!({"delay_milli": 100});
        let out = encode_request(ID, "chat:send", Some(&payload), Some(&timing), NOW);
        let v = parse(&out);
        assert_eq!(v["protocol"], "helios-starling");
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["timestamp"], NOW);
        assert_eq!(v["type"], "request");
        assert_eq!(v["~timing"], timing);
        let frame = decode(&out).unwrap();
        assert_eq!(frame.request_id(), Some(ID));
        assert_eq!(
            frame,
            Frame::Request(Request {
                request_id: ID.into(),
                method: "chat:send".into(),
                payload: Some(payload),
                timeout_ms: None,
                timing: Some(timing),
            })
        );
    }

    #[test]
    fn request_without_payload_or_timing() {
        let out = encode_request(ID, "system:ping", None, None, 0);
        let v = parse(&out);
        assert!(v.get("payload").is_none());
        assert!(v.get("~timing").is_none());
        let Frame::Request(r) = decode(&out).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.payload, None);
        assert_eq!(r.timing, None);
        assert_eq!(r.method, "system:ping");
    }

    #[test]
    fn request_null_payload_is_kept() {
        let out = encode_request(ID, "a:b", Some(&Value::Null), None, NOW);
        let Frame::Request(r) = decode(&out).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.payload, Some(Value::Null));
    }

    #[test]
    fn success_round_trip() {
        for data in [
            Some(json!({"token": "t", "expiresIn": 3600})),
            Some(Value::Null),
            None,
        ] {
            let out = encode_success(ID, data.as_ref(), NOW);
            let v = parse(&out);
            assert_eq!(v["type"], "response");
            assert_eq!(v["success"], true);
            assert_eq!(v.get("data").is_some(), data.is_some());
            assert_eq!(
                decode(&out).unwrap(),
                Frame::Response(Response {
                    request_id: ID.into(),
                    outcome: Ok(data),
                    timing: None,
                })
            );
        }
    }

    #[test]
    fn error_round_trip() {
        let errors = [
            WireError::new(ErrorCode::RequestTimeout, "too slow"),
            WireError::new(ErrorCode::MethodError, "bad").with_details(json!({"field": "x"})),
            WireError {
                code: "MY_CUSTOM_CODE".into(),
                message: String::new(),
                details: None,
            },
        ];
        for error in errors {
            let out = encode_error(ID, &error, NOW);
            let v = parse(&out);
            assert_eq!(v["success"], false);
            assert_eq!(v["error"]["code"], json!(error.code));
            assert_eq!(
                decode(&out).unwrap(),
                Frame::Response(Response {
                    request_id: ID.into(),
                    outcome: Err(error),
                    timing: None,
                })
            );
        }
    }

    #[test]
    fn responses_carry_timing_both_ways() {
        let timing = json!({"in_time": "2019-01-23 18:03:27.123Z", "x": 1});
        let out = encode_success_timed(ID, Some(&json!(1)), Some(&timing), NOW);
        let Frame::Response(r) = decode(&out).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.timing, Some(timing.clone()));
        let err = WireError::new(ErrorCode::MethodError, "no");
        let Frame::Response(r) = decode(&encode_error_timed(ID, &err, Some(&timing), NOW)).unwrap()
        else {
            panic!("not a response")
        };
        assert_eq!(r.timing, Some(timing));
        let bad = format!(
            r#"{{"protocol":"helios-starling","version":"1.0.0","timestamp":1,"type":"response","requestId":"{ID}","success":true,"~timing":5}}"#
        );
        assert!(decode(&bad).is_err(), "a non-object ~timing is a violation");
    }

    #[test]
    fn encode_error_truncates_long_message() {
        let error = WireError::new(
            ErrorCode::InternalError,
            "é".repeat(MAX_ERROR_MESSAGE_LEN + 10),
        );
        let out = encode_error(ID, &error, NOW);
        let Frame::Response(Response {
            outcome: Err(back), ..
        }) = decode(&out).unwrap()
        else {
            panic!("not an error response")
        };
        assert_eq!(back.message.chars().count(), MAX_ERROR_MESSAGE_LEN);
    }

    #[test]
    fn notification_round_trip() {
        let data = json!({"n": 1});
        let timing = json!({"out_time": "2024-01-08T00:00:00Z"});
        let out = encode_notification(Some(ID), Some("sink/dev-1"), &data, Some(&timing), NOW);
        let v = parse(&out);
        assert_eq!(v["type"], "notification");
        assert_eq!(v["requestId"], ID);
        assert_eq!(v["notification"]["topic"], "sink/dev-1");
        assert_eq!(
            decode(&out).unwrap(),
            Frame::Notification(Notification {
                request_id: Some(ID.into()),
                topic: Some("sink/dev-1".into()),
                data,
                timing: Some(timing),
            })
        );
    }

    #[test]
    fn plain_notification_carries_null_request_id() {
        let out = encode_notification(None, None, &Value::Null, None, NOW);
        let v = parse(&out);
        assert_eq!(v.get("requestId"), Some(&Value::Null));
        assert!(v["notification"].get("topic").is_none());
        assert_eq!(v["notification"]["data"], Value::Null);
        let frame = decode(&out).unwrap();
        assert_eq!(frame.request_id(), None);
        assert_eq!(
            frame,
            Frame::Notification(Notification {
                request_id: None,
                topic: None,
                data: Value::Null,
                timing: None,
            })
        );
    }

    #[test]
    fn protocol_error_shape() {
        let violations = vec!["a".to_owned(), "b \"quoted\"".to_owned()];
        let out = encode_protocol_error(
            ErrorCode::InvalidMessageFormat,
            "Invalid message",
            &violations,
            NOW,
        );
        assert_eq!(
            parse(&out),
            json!({
                "protocol": "helios-starling",
                "version": "1.0.0",
                "timestamp": NOW,
                "type": "error",
                "error": {
                    "code": "INVALID_MESSAGE_FORMAT",
                    "message": "Invalid message",
                    "details": {"violations": ["a", "b \"quoted\""]}
                }
            })
        );
        let empty = parse(&encode_protocol_error(
            ErrorCode::ProtocolViolation,
            "x",
            &[],
            1,
        ));
        assert_eq!(empty["error"]["details"], json!({"violations": []}));
        // A top-level error is never accepted as an incoming message.
        assert!(decode(&out).is_err());
    }

    #[test]
    fn encoders_emit_compact_json() {
        let out = encode_success(ID, Some(&json!({"a": 1})), NOW);
        assert!(!out.contains(' '));
        assert!(!out.contains('\n'));
    }

    // ---- valid hand-written messages -------------------------------------------------

    #[test]
    fn valid_hand_written_messages_decode() {
        for m in [
            valid_request(),
            valid_response(),
            valid_error_response(),
            valid_notification(),
        ] {
            assert!(decode(&text(&m)).is_ok(), "{m:?}");
        }
    }

    #[test]
    fn extra_fields_are_ignored() {
        let m = with(valid_request(), "peer", json!(true));
        let m = with(m, "whatever", json!({"deep": [1]}));
        assert!(decode(&text(&m)).is_ok());
        let m = with(valid_notification(), "extra", json!(1));
        assert!(decode(&text(&m)).is_ok());
    }

    #[test]
    fn float_timestamp_is_accepted() {
        let m = with(valid_request(), "timestamp", json!(1.5));
        assert!(decode(&text(&m)).is_ok());
        let m = with(valid_request(), "timestamp", json!(0));
        assert!(decode(&text(&m)).is_ok());
    }

    #[test]
    fn uppercase_uuid_is_accepted_and_kept_verbatim() {
        let upper = ID.to_uppercase();
        let m = with(valid_request(), "requestId", json!(upper));
        let frame = decode(&text(&m)).unwrap();
        assert_eq!(frame.request_id(), Some(upper.as_str()));
    }

    // ---- base field violations -------------------------------------------------------

    #[test]
    fn missing_each_base_field() {
        for field in ["protocol", "version", "timestamp", "type"] {
            let err = assert_single_violation(&without(valid_request(), field), field);
            assert!(err.violations[0].starts_with("missing required field"));
            assert_eq!(err.request_id.as_deref(), Some(ID));
        }
    }

    #[test]
    fn bad_protocol() {
        for bad in [
            json!("helios"),
            json!("HELIOS-STARLING"),
            json!(1),
            Value::Null,
        ] {
            assert_single_violation(&with(valid_request(), "protocol", bad), "`protocol`");
        }
    }

    #[test]
    fn bad_versions() {
        for bad in [
            "1.0",
            "1.0.0-beta",
            "a.b.c",
            "",
            "1..0",
            "1.0.0.0",
            ".1.0",
            "1.0.",
            " 1.0.0",
            "1.0.0\n",
            "١.٠.٠",
        ] {
            assert_single_violation(&with(valid_request(), "version", json!(bad)), "`version`");
        }
        for bad in [json!(1), json!(1.0), Value::Null, json!(["1.0.0"])] {
            assert_single_violation(&with(valid_request(), "version", bad), "`version`");
        }
        for good in ["0.0.0", "2.10.300", "01.002.3"] {
            assert!(decode(&text(&with(valid_request(), "version", json!(good)))).is_ok());
        }
    }

    #[test]
    fn bad_timestamps() {
        for bad in [
            json!(-1),
            json!(-0.5),
            json!("1704700800000"),
            Value::Null,
            json!(true),
        ] {
            assert_single_violation(&with(valid_request(), "timestamp", bad), "`timestamp`");
        }
    }

    #[test]
    fn bad_types() {
        for bad in [
            json!("error"),
            json!("REQUEST"),
            json!(""),
            json!(1),
            Value::Null,
        ] {
            assert_single_violation(&with(valid_request(), "type", bad), "`type`");
        }
    }

    #[test]
    fn unknown_type_value_is_quoted_briefly() {
        let long = "x".repeat(10_000);
        let err = assert_single_violation(&with(valid_request(), "type", json!(long)), "`type`");
        assert!(err.violations[0].len() < 200);
    }

    #[test]
    fn all_violations_are_collected() {
        let m = with(valid_request(), "protocol", json!("nope"));
        let m = with(m, "version", json!("1.0"));
        let m = with(m, "method", json!("bad"));
        let m = with(m, "timeoutMs", json!(0));
        let m = with(m, "~timing", json!([]));
        let err = decode_err(&m);
        assert_eq!(err.violations.len(), 5, "{:?}", err.violations);
        for needle in [
            "`protocol`",
            "`version`",
            "`method`",
            "`timeoutMs`",
            "`~timing`",
        ] {
            assert!(
                err.violations.iter().any(|v| v.contains(needle)),
                "{needle}"
            );
        }
        assert_eq!(err.request_id.as_deref(), Some(ID));
    }

    // ---- requests --------------------------------------------------------------------

    #[test]
    fn request_missing_fields() {
        assert_single_violation(&without(valid_request(), "requestId"), "`requestId`");
        assert_single_violation(&without(valid_request(), "method"), "`method`");
        let err = decode_err(&without(without(valid_request(), "requestId"), "method"));
        assert_eq!(err.violations.len(), 2);
        assert_eq!(err.request_id, None);
    }

    #[test]
    fn bad_request_ids() {
        let bad = [
            json!("not-a-uuid"),
            json!("3f2504e04f8941d39a0c0305e82c3301"),
            json!("{3f2504e0-4f89-41d3-9a0c-0305e82c3301}"),
            json!("urn:uuid:3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
            json!("3f2504e0-4f89-41d3-9a0c-0305e82c330g"),
            json!("3f2504e04-f89-41d3-9a0c-0305e82c3301"),
            json!("3f2504e0-4f89-41d3-9a0c-0305e82c33011"),
            json!(" 3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
            json!(""),
            json!(12),
            Value::Null,
            json!({"id": ID}),
        ];
        for id in bad {
            let err = assert_single_violation(
                &with(valid_request(), "requestId", id.clone()),
                "`requestId`",
            );
            assert_eq!(err.request_id, None, "{id}");
            let err =
                assert_single_violation(&with(valid_response(), "requestId", id), "`requestId`");
            assert_eq!(err.request_id, None);
        }
        // Any UUID version is accepted.
        assert!(decode(&text(&with(valid_request(), "requestId", json!(ID2)))).is_ok());
    }

    #[test]
    fn invalid_request_id_gives_none_valid_one_gives_some() {
        let m = with(valid_request(), "requestId", json!("abc"));
        assert_eq!(decode_err(&m).request_id, None);
        let m = with(valid_request(), "method", json!("bad method"));
        assert_eq!(decode_err(&m).request_id.as_deref(), Some(ID));
        // Even with a broken base, a valid id is readable.
        let m = with(valid_request(), "protocol", json!("x"));
        assert_eq!(decode_err(&m).request_id.as_deref(), Some(ID));
        // ... and also for an unknown type.
        let m = with(valid_request(), "type", json!("bogus"));
        assert_eq!(decode_err(&m).request_id.as_deref(), Some(ID));
    }

    #[test]
    fn bad_method_names_are_rejected_by_decode() {
        let too_long = format!("a:{}", "b".repeat(MAX_METHOD_LEN - 1));
        assert_eq!(too_long.len(), MAX_METHOD_LEN + 1);
        let bad = [
            "ab",
            "a:",
            ":ab",
            "1ns:action",
            "_ns:action",
            "ns:1action",
            "ns-x:action",
            "ns:act ion",
            "ns.action",
            "nsaction",
            "ns:action:",
            "a::b",
            "ns:ação",
            "",
            too_long.as_str(),
        ];
        for name in bad {
            assert!(validate_method(name).is_err(), "{name:?} should be invalid");
            assert_single_violation(&with(valid_request(), "method", json!(name)), "`method`");
        }
        for bad in [json!(1), Value::Null, json!(["a:b"])] {
            assert_single_violation(&with(valid_request(), "method", bad), "`method`");
        }
    }

    #[test]
    fn method_name_reasons() {
        assert!(validate_method("ab").unwrap_err().contains("at least 3"));
        assert!(validate_method(&"a".repeat(129))
            .unwrap_err()
            .contains("at most 128"));
        assert!(validate_method("1a:b")
            .unwrap_err()
            .contains("start with a letter"));
        assert!(validate_method("a-b:c").unwrap_err().contains("'-'"));
        assert!(validate_method("abc")
            .unwrap_err()
            .contains("namespace:action"));
        assert!(validate_method("ab:")
            .unwrap_err()
            .contains("empty segment"));
        assert!(validate_method("a::b")
            .unwrap_err()
            .contains("empty segment"));
        assert!(validate_method("a:_b")
            .unwrap_err()
            .contains("start with a letter"));
    }

    #[test]
    fn valid_method_names() {
        let longest = format!("a:{}", "b".repeat(MAX_METHOD_LEN - 2));
        for name in [
            "a:b",
            "ns:action",
            "a:b:c",
            "A_1:x_2",
            "starling:getToken",
            longest.as_str(),
        ] {
            assert_eq!(validate_method(name), Ok(()), "{name:?}");
        }
        // Reserved namespaces may be *called*.
        for name in ["system:ping", "system:cancel", "helios:x"] {
            assert_eq!(validate_method(name), Ok(()));
        }
    }

    #[test]
    fn namespaces() {
        assert_eq!(namespace("chat:send"), "chat");
        assert_eq!(namespace("a:b:c"), "a");
        assert_eq!(namespace("plain"), "plain");
        assert_eq!(namespace(":x"), "");
        assert_eq!(namespace(""), "");
        for ns in RESERVED_NAMESPACES {
            assert!(is_reserved_namespace(ns));
            assert!(is_reserved_namespace(namespace(&format!("{ns}:x"))));
        }
        for ns in ["chat", "broker", "System", "systems", ""] {
            assert!(!is_reserved_namespace(ns), "{ns}");
        }
        let max = "n".repeat(64);
        for ns in ["a", "chat", "A_1", "x_", max.as_str()] {
            assert_eq!(validate_namespace(ns), Ok(()), "{ns}");
        }
        let over = "n".repeat(65);
        for ns in ["", "1a", "_a", "a:b", "a-b", "é", over.as_str()] {
            assert!(validate_namespace(ns).is_err(), "{ns:?}");
        }
    }

    #[test]
    fn timeout_ms() {
        let m = with(valid_request(), "timeoutMs", json!(5000));
        let Frame::Request(r) = decode(&text(&m)).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.timeout_ms, Some(5000));
        let m = with(valid_request(), "timeoutMs", Value::Null);
        let Frame::Request(r) = decode(&text(&m)).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.timeout_ms, None);
        for bad in [
            json!(0),
            json!(-1),
            json!(-5000),
            json!("100"),
            json!(1.5),
            json!(1e3),
            json!(true),
            json!({}),
        ] {
            assert_single_violation(&with(valid_request(), "timeoutMs", bad), "`timeoutMs`");
        }
        // Beyond u64 → parsed as a float → rejected.
        let t = text(&valid_request()).replacen('{', "{\"timeoutMs\":18446744073709551616,", 1);
        assert!(decode(&t).is_err());
    }

    #[test]
    fn timing_must_be_an_object() {
        for bad in [json!([]), json!("soon"), json!(1), Value::Null] {
            assert_single_violation(&with(valid_request(), "~timing", bad.clone()), "`~timing`");
            assert_single_violation(&with(valid_notification(), "~timing", bad), "`~timing`");
        }
    }

    // ---- responses -------------------------------------------------------------------

    #[test]
    fn response_success_field() {
        assert_single_violation(&without(valid_response(), "success"), "`success`");
        for bad in [json!("true"), json!(1), Value::Null] {
            assert_single_violation(&with(valid_response(), "success", bad), "`success`");
        }
        assert_single_violation(&without(valid_response(), "requestId"), "`requestId`");
    }

    #[test]
    fn response_success_ignores_error_field() {
        let m = with(valid_response(), "error", json!("whatever"));
        assert!(decode(&text(&m)).is_ok());
    }

    #[test]
    fn error_response_violations() {
        assert_single_violation(&without(valid_error_response(), "error"), "`error`");
        for bad in [json!("boom"), Value::Null, json!([])] {
            assert_single_violation(&with(valid_error_response(), "error", bad), "`error`");
        }
        let cases = [
            (json!({"message": "m"}), "`error.code`"),
            (json!({"code": 1, "message": "m"}), "`error.code`"),
            (json!({"code": "X"}), "`error.message`"),
            (json!({"code": "X", "message": null}), "`error.message`"),
        ];
        for (error, needle) in cases {
            assert_single_violation(&with(valid_error_response(), "error", error), needle);
        }
        let err = decode_err(&with(valid_error_response(), "error", json!({})));
        assert_eq!(err.violations.len(), 2);
        assert_eq!(err.request_id.as_deref(), Some(ID));
    }

    #[test]
    fn error_message_length_limit() {
        let ok = "é".repeat(MAX_ERROR_MESSAGE_LEN);
        let m = with(
            valid_error_response(),
            "error",
            json!({"code": "X", "message": ok}),
        );
        assert!(decode(&text(&m)).is_ok());
        let long = "e".repeat(MAX_ERROR_MESSAGE_LEN + 1);
        let m = with(
            valid_error_response(),
            "error",
            json!({"code": "X", "message": long}),
        );
        assert_single_violation(&m, "at most 1024");
    }

    #[test]
    fn custom_error_codes_and_details_are_preserved() {
        let error = json!({"code": "PAYMENT_REQUIRED", "message": "pay", "details": {"amount": 3}, "extra": 1});
        let m = with(valid_error_response(), "error", error);
        let Frame::Response(r) = decode(&text(&m)).unwrap() else {
            panic!("not a response")
        };
        let e = r.outcome.unwrap_err();
        assert_eq!(e.code, "PAYMENT_REQUIRED");
        assert_eq!(e.error_code(), None);
        assert_eq!(e.details, Some(json!({"amount": 3})));
    }

    // ---- notifications ---------------------------------------------------------------

    #[test]
    fn notification_request_id() {
        let m = without(valid_notification(), "requestId");
        let Frame::Notification(n) = decode(&text(&m)).unwrap() else {
            panic!("not a notification")
        };
        assert_eq!(n.request_id, None);
        assert_eq!(n.topic.as_deref(), Some("news"));
        assert_eq!(n.data, json!([1, 2]));

        let m = with(valid_notification(), "requestId", json!(ID));
        assert_eq!(decode(&text(&m)).unwrap().request_id(), Some(ID));

        for bad in [json!("nope"), json!(1), json!(false)] {
            let err = assert_single_violation(
                &with(valid_notification(), "requestId", bad),
                "`requestId`",
            );
            assert_eq!(err.request_id, None);
        }
    }

    #[test]
    fn notification_body() {
        assert_single_violation(
            &without(valid_notification(), "notification"),
            "`notification`",
        );
        for bad in [json!("x"), Value::Null, json!([1])] {
            assert_single_violation(
                &with(valid_notification(), "notification", bad),
                "`notification`",
            );
        }
        for bad in [json!(1), json!({"name": "x"}), json!(true)] {
            let body = json!({"topic": bad, "data": 1});
            assert_single_violation(
                &with(valid_notification(), "notification", body),
                "`notification.topic`",
            );
        }
        let m = with(valid_notification(), "notification", json!({}));
        let Frame::Notification(n) = decode(&text(&m)).unwrap() else {
            panic!("not a notification")
        };
        assert_eq!(n.topic, None);
        assert_eq!(n.data, Value::Null);
        let m = with(
            valid_notification(),
            "notification",
            json!({"topic": null, "data": 1}),
        );
        assert!(decode(&text(&m)).is_ok());
    }

    // ---- malformed input -------------------------------------------------------------

    #[test]
    fn oversize_is_rejected_before_parsing() {
        let skeleton = text(&with(valid_request(), "payload", json!("")));
        let pad = MAX_MESSAGE_BYTES - skeleton.len();
        let exact = text(&with(valid_request(), "payload", json!("p".repeat(pad))));
        assert_eq!(exact.len(), MAX_MESSAGE_BYTES);
        assert!(decode(&exact).is_ok());

        let over = text(&with(
            valid_request(),
            "payload",
            json!("p".repeat(pad + 1)),
        ));
        assert_eq!(over.len(), MAX_MESSAGE_BYTES + 1);
        let err = decode(&over).unwrap_err();
        assert_eq!(err.request_id, None);
        assert_eq!(err.violations.len(), 1);
        assert!(err.violations[0].contains("bytes"));

        // Not even parsed: garbage of the same size gets the same error.
        let err = decode(&"x".repeat(MAX_MESSAGE_BYTES + 1)).unwrap_err();
        assert!(err.violations[0].contains("limit"));
    }

    #[test]
    fn truncated_json() {
        let full = text(&valid_request());
        for end in 0..full.len() {
            if let Some(prefix) = full.get(..end) {
                let err = decode(prefix).unwrap_err();
                assert_eq!(err.request_id, None);
                assert!(!err.violations.is_empty());
            }
        }
        assert!(decode("").unwrap_err().violations[0].contains("not valid JSON"));
        assert!(decode("{\"protocol\":").is_err());
        assert!(decode("{} trailing").is_err());
    }

    #[test]
    fn non_object_json() {
        for (input, kind) in [
            ("[]", "array"),
            ("[1,2]", "array"),
            ("42", "number"),
            ("-1.5", "number"),
            ("\"request\"", "string"),
            ("null", "null"),
            ("true", "boolean"),
        ] {
            let err = decode(input).unwrap_err();
            assert_eq!(err.request_id, None);
            assert_eq!(err.violations.len(), 1);
            assert!(
                err.violations[0].contains("JSON object"),
                "{:?}",
                err.violations
            );
            assert!(err.violations[0].ends_with(kind), "{:?}", err.violations);
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep_arrays = "[".repeat(100_000);
        assert!(decode(&deep_arrays).is_err());
        let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(decode(&closed).is_err());
        let deep_objects = "{\"a\":".repeat(100_000);
        assert!(decode(&deep_objects).is_err());
        let in_payload =
            text(&valid_request()).replacen('{', &format!("{{\"x\":{}", "[".repeat(50_000)), 1);
        assert!(decode(&in_payload).is_err());
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let inputs = [
            "{}",
            "{\"requestId\":\"3f2504e0-4f89-41d3-9a0c-0305e82c3301\"}",
            "{\"type\":\"request\"}",
            "{\"type\":\"response\",\"success\":false}",
            "{\"type\":\"notification\",\"notification\":{\"data\":1}}",
            "\u{feff}{}",
            "{\"a\":\"\\ud800\"}",
            "{\"timestamp\":1e400}",
            "{\"timestamp\":-0}",
            "\0",
        ];
        for input in inputs {
            let err = decode(input).unwrap_err();
            assert!(!err.violations.is_empty(), "{input:?}");
        }
        let err = decode("{}").unwrap_err();
        assert_eq!(err.violations.len(), 4);
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let t = text(&valid_request()).replacen('{', "{\"method\":\"bad\",", 1);
        // serde_json keeps the last occurrence; whichever wins, decoding must not panic.
        let _ = decode(&t);
    }

    // ---- DecodeError -----------------------------------------------------------------

    #[test]
    fn decode_error_display_and_wire_error() {
        let err = DecodeError {
            request_id: Some(ID.into()),
            violations: vec!["a".into(), "b".into()],
        };
        assert_eq!(err.to_string(), "invalid Helios-Starling message: a; b");
        let wire = err.to_wire_error();
        assert_eq!(wire.error_code(), Some(ErrorCode::InvalidMessageFormat));
        assert_eq!(wire.details, Some(json!({"violations": ["a", "b"]})));
        let out = encode_error(ID, &wire, NOW);
        let Frame::Response(r) = decode(&out).unwrap() else {
            panic!("not a response")
        };
        assert_eq!(r.outcome, Err(wire));
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.to_string().contains("a; b"));
    }

    #[test]
    fn truncate_chars_respects_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
        assert_eq!(truncate_chars("", 0), "");
        assert_eq!(truncate_chars("abc", 0), "");
    }

    #[test]
    fn fuzz_regression_floats_survive_decode_and_encode() {
        // fuzz/helios: serde_json's default float parser can be one ULP off, so a float
        // relayed through decode -> encode -> decode changed value.
        let text = format!(
            r#"{{"protocol":"helios-starling","version":"1.0.0","timestamp":1,"type":"response","requestId":"{ID}","success":true,"data":[1.0470083333333333e+98,3.7777777777777777e+65]}}"#
        );
        let Ok(Frame::Response(r)) = decode(&text) else {
            panic!("decodes")
        };
        let data = r.outcome.unwrap().unwrap();
        assert_eq!(data[0].as_f64(), Some(1.0470083333333333e98));
        assert_eq!(data[1].as_f64(), Some(3.777_777_777_777_777_7e65));
        let again = decode(&encode_success(ID, Some(&data), NOW)).unwrap();
        let Frame::Response(r) = again else { panic!() };
        assert_eq!(r.outcome, Ok(Some(data)));
    }
}
