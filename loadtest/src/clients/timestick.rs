//! TimeStick over HTTP: START a session on a target, POST messages, long-poll.

use std::time::Duration;

use serde_json::{json, Value};

use super::http::{Conn, Reply};
use crate::net::Sources;

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One started session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    /// `/timestick/session/<id>`.
    pub path: String,
    /// `Bearer <token>` of the session's caller.
    pub auth: String,
}

/// `POST /timestick/<target>` with a START body for `caller`.
pub async fn start(
    conn: &mut Conn,
    sources: &Sources,
    caller: &str,
    token: &str,
    target: &str,
) -> Result<Session, String> {
    let body = json!({"action": "START", "protocol": "TimeStick", "version": "0.1",
        "caller_id": caller, "capabilities": {"max_message_size": 65535,
        "supports_binary": false, "supports_notifications": true}});
    let auth = format!("Bearer {token}");
    let reply = conn
        .request(
            sources,
            "POST",
            &format!("/timestick/{target}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
            START_TIMEOUT,
        )
        .await?;
    if reply.status != 200 {
        return Err(format!("START {target}: {} {}", reply.status, reply.text()));
    }
    let v: Value = serde_json::from_slice(&reply.body).map_err(|e| format!("START: {e}"))?;
    let id = v["session_id"]
        .as_str()
        .ok_or_else(|| format!("START: no session_id in {v}"))?
        .to_string();
    Ok(Session {
        path: format!("/timestick/session/{id}"),
        id,
        auth,
    })
}

/// A `request` message body carrying raw JSON `payload`.
pub fn request_body(session: &str, message_id: &str, payload: &str) -> String {
    format!(
        r#"{{"type":"request","session_id":"{session}","message_id":"{message_id}","correlation_id":null,"payload":{payload}}}"#
    )
}

/// POSTs one message; the reply (202 when accepted).
pub async fn post(
    conn: &mut Conn,
    sources: &Sources,
    s: &Session,
    body: &str,
    limit: Duration,
) -> Result<Reply, String> {
    conn.request(
        sources,
        "POST",
        &s.path,
        &[
            ("Authorization", &s.auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
        limit,
    )
    .await
}

/// One long-poll: `GET ?wait=<wait>&after=<cursor>`; returns the raw body and the next
/// cursor.
pub async fn poll(
    conn: &mut Conn,
    sources: &Sources,
    s: &Session,
    wait_s: u64,
    after: Option<&str>,
) -> Result<(Vec<u8>, Option<String>), String> {
    let path = match after {
        Some(c) => format!("{}?wait={wait_s}&after={c}", s.path),
        None => format!("{}?wait={wait_s}", s.path),
    };
    let reply = conn
        .request(
            sources,
            "GET",
            &path,
            &[("Authorization", &s.auth)],
            b"",
            Duration::from_secs(wait_s + 15),
        )
        .await?;
    if reply.status != 200 {
        return Err(format!("poll: {} {}", reply.status, reply.text()));
    }
    let cursor = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["cursor"].as_str().map(str::to_string));
    Ok((reply.body, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_is_the_seed_shape() {
        let v: Value = serde_json::from_str(&request_body("s1", "m1", r#"{"__lt":1}"#)).unwrap();
        assert_eq!(v["type"], "request");
        assert_eq!(v["session_id"], "s1");
        assert_eq!(v["message_id"], "m1");
        assert_eq!(v["payload"]["__lt"], 1);
    }
}
