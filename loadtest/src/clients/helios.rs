//! Helios-Starling: `ws://host/starling?token=<jwt>`, one JSON object per text message.

use std::time::Duration;

use serde_json::{json, Value};

use super::ws::{self, Ws};
use crate::net::Sources;

/// How long setup requests (subscribe, provide) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// `ws://…/starling?token=…` for a public base URL (`http://` or `ws://`).
pub fn url(base: &str, token: &str) -> String {
    let base = ws::ws_base(base);
    format!("{base}/starling?token={token}")
}

/// A canonical UUID-shaped request id built from two counters (no randomness needed).
pub fn request_id(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a & 0xffff_ffff,
        (a >> 32) & 0xffff,
        (b >> 48) & 0xfff,
        (b >> 36) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A request message. `payload` is raw JSON text (already encoded).
pub fn request(id: &str, method: &str, payload: &str) -> String {
    format!(
        r#"{{"protocol":"helios-starling","version":"1.0.0","timestamp":{},"type":"request","requestId":"{id}","method":"{method}","payload":{payload}}}"#,
        now_ms()
    )
}

/// A success response to `id` with raw JSON `data`.
pub fn response(id: &str, data: &str) -> String {
    format!(
        r#"{{"protocol":"helios-starling","version":"1.0.0","timestamp":{},"type":"response","requestId":"{id}","success":true,"data":{data}}}"#,
        now_ms()
    )
}

/// `broker:publish` of raw JSON `data` on `channel`.
pub fn publish(id: &str, channel: &str, data: &str) -> String {
    request(
        id,
        "broker:publish",
        &format!(r#"{{"channel":{},"data":{data}}}"#, Value::from(channel)),
    )
}

/// Connects a Starling for `user`.
pub async fn connect(base: &str, token: &str, sources: &Sources) -> Result<Ws, String> {
    ws::connect(&url(base, token), sources).await
}

/// Sends a request and waits for its success response; returns `data`.
pub async fn call(ws: &mut Ws, id: &str, method: &str, payload: Value) -> Result<Value, String> {
    ws::send_text(ws, request(id, method, &payload.to_string())).await?;
    ws::wait_for(ws, SETUP_TIMEOUT, method, |text| {
        let v: Value = serde_json::from_str(text).ok()?;
        if v["type"] != "response" || v["requestId"] != id {
            return None;
        }
        Some(if v["success"] == true {
            Ok(v["data"].clone())
        } else {
            Err(format!("{method} failed: {}", v["error"]))
        })
    })
    .await
}

/// `broker:subscribe {channel}`.
pub async fn subscribe(ws: &mut Ws, id: &str, channel: &str) -> Result<(), String> {
    call(ws, id, "broker:subscribe", json!({ "channel": channel }))
        .await
        .map(|_| ())
}

/// `broker:provide {namespace}`.
pub async fn provide(ws: &mut Ws, id: &str, namespace: &str) -> Result<(), String> {
    call(ws, id, "broker:provide", json!({ "namespace": namespace }))
        .await
        .map(|_| ())
}

/// Whether a frame is a response with `"success":false`, or a top-level error.
pub fn is_failure(text: &str) -> bool {
    text.contains(r#""success":false"#) || text.contains(r#""type":"error""#)
}

/// The `requestId` of an incoming request frame (the broker's id for an RPC).
pub fn request_id_of(text: &str) -> Option<&str> {
    let at = text.find(r#""requestId":""#)? + r#""requestId":""#.len();
    text.get(at..at + 36)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_canonical_uuids() {
        for (a, b) in [(0, 0), (1, 2), (u64::MAX, u64::MAX), (77, 1 << 40)] {
            let id = request_id(a, b);
            let u = uuid::Uuid::parse_str(&id).unwrap();
            assert_eq!(u.hyphenated().to_string(), id);
        }
        assert_ne!(request_id(1, 2), request_id(1, 3));
        assert_ne!(request_id(1, 2), request_id(2, 2));
    }

    #[test]
    fn messages_are_valid_json() {
        let p = publish(&request_id(1, 1), "news", r#"{"__lt":1}"#);
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["method"], "broker:publish");
        assert_eq!(v["payload"]["channel"], "news");
        assert_eq!(v["payload"]["data"]["__lt"], 1);
        let r: Value = serde_json::from_str(&response("x", "null")).unwrap();
        assert_eq!(r["success"], true);
        assert_eq!(
            url("http://127.0.0.1:1/", "t"),
            "ws://127.0.0.1:1/starling?token=t"
        );
        let req = format!(
            r#"{{"type":"request","requestId":"{}","method":"a:b"}}"#,
            request_id(3, 4)
        );
        assert_eq!(request_id_of(&req), Some(request_id(3, 4).as_str()));
        assert!(is_failure(r#"{"success":false}"#));
        assert!(!is_failure(r#"{"success":true}"#));
    }
}
