//! Helpers shared by the Helios-Starling black-box test files (each test file is its own
//! crate and uses a subset, hence the `dead_code` and `unused_imports` allowance).
#![allow(dead_code, unused_imports)]

use std::time::Duration;

use murmur_tests::helios::{kind, VERSION};
use murmur_tests::{api_post, metric_value, metrics, Node, Starling, WsClient};
/// The one timing vocabulary (murmur_tests::wait).
pub use murmur_tests::{CROSS, QUIET, SOON};
use serde_json::{json, Value};

pub use murmur_tests::uniq;

/// A fresh UUID v4 text.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub use murmur_tests::helios::now_ms;

/// Asserts the base fields every Helios message carries (CONTRACT §4).
pub fn assert_base(msg: &Value) {
    assert_eq!(msg["protocol"], "helios-starling", "protocol field: {msg}");
    let version = msg["version"]
        .as_str()
        .unwrap_or_else(|| panic!("version: {msg}"));
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "version must be x.y.z: {msg}"
    );
    let ts = msg["timestamp"]
        .as_u64()
        .unwrap_or_else(|| panic!("timestamp: {msg}"));
    assert!(
        ts > 1_600_000_000_000 && ts < now_ms() + 60_000,
        "timestamp must be Unix ms: {msg}"
    );
    assert!(msg["type"].is_string(), "type: {msg}");
}

/// Asserts `resp` is a successful response to `id` and returns its `data`.
pub fn assert_success(resp: &Value, id: &str) -> Value {
    assert_base(resp);
    assert_eq!(kind(resp), "response", "{resp}");
    assert_eq!(resp["requestId"], id, "{resp}");
    assert_eq!(resp["success"], true, "expected success: {resp}");
    resp["data"].clone()
}

/// Asserts `resp` is an error response to `id` with error code `code`; returns `error`.
pub fn assert_error_response(resp: &Value, id: &str, code: &str) -> Value {
    assert_base(resp);
    assert_eq!(kind(resp), "response", "{resp}");
    assert_eq!(resp["requestId"], id, "{resp}");
    assert_eq!(resp["success"], false, "expected failure: {resp}");
    assert_eq!(resp["error"]["code"], code, "error code: {resp}");
    assert!(
        resp["error"]["message"].is_string(),
        "error.message must be a string: {resp}"
    );
    resp["error"].clone()
}

/// Asserts the top-level `{"type":"error","error":{"code":"INVALID_MESSAGE_FORMAT",
/// "message":..,"details":{"violations":[..]}}}` (CONTRACT §4).
pub fn assert_top_level_error(msg: &Value) {
    assert_eq!(msg["type"], "error", "expected a top-level error: {msg}");
    assert_eq!(msg["error"]["code"], "INVALID_MESSAGE_FORMAT", "{msg}");
    assert!(msg["error"]["message"].is_string(), "error.message: {msg}");
    let violations = msg["error"]["details"]["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("error.details.violations must be an array: {msg}"));
    assert!(
        !violations.is_empty(),
        "violations must not be empty: {msg}"
    );
    assert!(
        violations.iter().all(Value::is_string),
        "violations are strings: {msg}"
    );
    assert!(
        matches!(msg.get("requestId"), None | Some(Value::Null)),
        "a top-level error carries no requestId: {msg}"
    );
}

/// `system:ping` succeeds: proves the connection is open and served.
pub async fn ping(s: &mut Starling) {
    let id = s.send_request("system:ping", json!({})).await;
    let resp = s.wait_response(&id, SOON).await;
    assert_success(&resp, &id);
}

/// Calls a method and returns `(request_id, whole response)` (bounded by [`SOON`]).
pub async fn call(s: &mut Starling, method: &str, payload: Value) -> (String, Value) {
    let id = s.send_request(method, payload).await;
    let resp = s.wait_response(&id, SOON).await;
    (id, resp)
}

/// Calls a built-in and asserts success; returns `data`.
pub async fn call_ok(s: &mut Starling, method: &str, payload: Value) -> Value {
    let (id, resp) = call(s, method, payload).await;
    assert_success(&resp, &id)
}

/// A request message with explicit `timeoutMs`: `(request_id, message)`.
pub fn request_with_timeout(method: &str, payload: Value, timeout_ms: u64) -> (String, Value) {
    let (id, mut msg) = murmur_tests::helios::request(method, payload);
    msg["timeoutMs"] = json!(timeout_ms);
    (id, msg)
}

/// A well-formed request as a JSON object, for tests that then break one field.
pub fn raw_request(id: &str, method: &str) -> Value {
    json!({
        "protocol": "helios-starling",
        "version": VERSION,
        "timestamp": now_ms(),
        "type": "request",
        "requestId": id,
        "method": method,
        "payload": {},
    })
}

/// The recovery token of a Starling (`starling:getToken`) and its `starlingId` claim.
pub async fn recovery_token(s: &mut Starling) -> (String, String) {
    let data = call_ok(s, "starling:getToken", json!({})).await;
    let token = data["token"]
        .as_str()
        .unwrap_or_else(|| panic!("getToken: token must be a string: {data}"))
        .to_string();
    let claims = murmur_tests::decode_hs256(&token, murmur_tests::RECOVERY_SECRET)
        .unwrap_or_else(|e| panic!("recovery token must verify with the recovery secret: {e}"));
    let id = claims["starlingId"]
        .as_str()
        .unwrap_or_else(|| panic!("recovery token without starlingId: {claims}"))
        .to_string();
    (token, id)
}

/// Subscribes to `channel` and asserts success.
pub async fn subscribe(s: &mut Starling, channel: &str) {
    call_ok(s, "broker:subscribe", json!({ "channel": channel })).await;
}

/// Provides `namespace` and asserts success.
pub async fn provide(s: &mut Starling, namespace: &str) {
    call_ok(s, "broker:provide", json!({ "namespace": namespace })).await;
}

/// `POST /api/v1/publish` and asserts 200.
pub async fn api_publish(node: &Node, channel: &str, data: Value) {
    let (status, body) = api_post(
        node,
        "/api/v1/publish",
        json!({ "channel": channel, "data": data }),
    )
    .await;
    assert_eq!(status, 200, "publish on {channel}: {body}");
}

/// The next notification, asserted to be on `topic`; returns its `notification.data`.
pub async fn expect_notification(s: &mut Starling, topic: &str) -> Value {
    let n = s.next_notification(SOON).await;
    assert_base(&n);
    assert_eq!(
        n["notification"]["topic"], topic,
        "unexpected notification: {n}"
    );
    n["notification"]["data"].clone()
}

/// The value of `murmur_connections{protocol="helios"}` (0 when absent).
pub async fn helios_connections(node: &Node) -> f64 {
    let text = metrics(node).await;
    metric_value(&text, "murmur_connections", &[("protocol", "helios")]).unwrap_or(0.0)
}

/// Waits until the node counts exactly `n` open Helios connections (e.g. until a closed
/// socket has been detached from its session).
pub async fn wait_connections(node: &Node, n: f64) {
    murmur_tests::eventually(
        &format!("murmur_connections{{protocol=\"helios\"}} == {n}"),
        SOON,
        || async move { (helios_connections(node).await == n).then_some(()) },
    )
    .await;
}

/// Connects a raw client to `/starling` with `query` (without the leading `?`).
pub async fn connect_raw(node: &Node, query: &str) -> Result<WsClient, (u16, String)> {
    WsClient::connect(&node.ws_url(&format!("/starling?{query}"))).await
}
