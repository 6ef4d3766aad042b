//! GradAgenda chat over `/chat`: authenticate, create a mutable session (group), send
//! messages. The server may pack its own actions into `batch-mode-action` frames.

use std::time::Duration;

use serde_json::{json, Value};

use super::ws::{self, Ws};
use crate::net::Sources;

const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// `ws://…/chat` for a public base URL.
pub fn url(base: &str) -> String {
    let base = ws::ws_base(base);
    format!("{base}/chat")
}

/// The inner actions of a frame (a batch is flattened).
pub fn actions(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v["type"] == "batch-mode-action" => {
            v["actions"].as_array().cloned().unwrap_or_default()
        }
        Ok(v) => vec![v],
        Err(_) => Vec::new(),
    }
}

async fn wait_cdid(ws: &mut Ws, cdid: &str, what: &str) -> Result<Value, String> {
    ws::wait_for(ws, SETUP_TIMEOUT, what, |text| {
        actions(text).into_iter().find_map(|a| {
            if a["cdid"] != cdid {
                return None;
            }
            Some(if a["status"] == "failed" {
                Err(format!("{what} failed: {}", a["message"]))
            } else {
                Ok(a)
            })
        })
    })
    .await
}

/// Connects and authenticates `user` on device `device`.
pub async fn login(
    base: &str,
    user: &str,
    device: &str,
    token: &str,
    sources: &Sources,
) -> Result<Ws, String> {
    let mut ws = ws::connect(&url(base), sources).await?;
    let auth = json!({"cdid": "auth", "type": "authenticate", "user-id": user,
                      "device-id": device, "token": token});
    ws::send_text(&mut ws, auth.to_string()).await?;
    wait_cdid(&mut ws, "auth", "authenticate").await?;
    Ok(ws)
}

/// Creates a mutable session with `users` (the creator included); returns its id.
pub async fn create_group(ws: &mut Ws, users: &[String]) -> Result<String, String> {
    let req =
        json!({"cdid": "create", "type": "request-mutable-session-creation", "user-id": users});
    ws::send_text(ws, req.to_string()).await?;
    let info = wait_cdid(ws, "create", "create group").await?;
    info["session-id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("create group: no session-id in {info}"))
}

/// `request-sending-a-message` with a raw JSON `body` (no cdid: answers are not awaited).
pub fn send_message(session: &str, body: &str, sender_ms: u64) -> String {
    format!(
        r#"{{"type":"request-sending-a-message","session-id":{},"message":{{"type":"text","body":{body}}},"sender-timestamp":{sender_ms}}}"#,
        Value::from(session)
    )
}

/// Failed `status-response`s in a frame.
pub fn failures(text: &str) -> usize {
    text.matches(r#""status":"failed""#).count()
}

/// `message-delivered` reports in a frame.
pub fn delivery_reports(text: &str) -> usize {
    text.matches(r#""type":"message-delivered""#).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_flatten() {
        let f = r#"{"type":"batch-mode-action","actions":[{"type":"a"},{"type":"b"}]}"#;
        assert_eq!(actions(f).len(), 2);
        assert_eq!(actions(r#"{"type":"x"}"#).len(), 1);
        assert!(actions("nope").is_empty());
    }

    #[test]
    fn send_is_json() {
        let v: Value = serde_json::from_str(&send_message("g1", r#"{"__lt":3}"#, 5)).unwrap();
        assert_eq!(v["message"]["body"]["__lt"], 3);
        assert_eq!(v["session-id"], "g1");
        assert_eq!(failures(r#"[{"status":"failed"},{"status":"failed"}]"#), 2);
        assert_eq!(delivery_reports(r#"{"type":"message-delivered"}"#), 1);
        assert_eq!(url("http://h:1"), "ws://h:1/chat");
    }
}
