//! A minimal Socket.IO v4 client over Engine.IO v4 WebSocket transport:
//! `GET /socket.io/?EIO=4&transport=websocket`, server open packet `0{…}`, connect to
//! the main namespace with `40` (answered `40{"sid":…}`), events `42["event",…]`, acks
//! `42<id>[…]` → `43<id>[…]`, and the heartbeat: server ping `2` → client pong `3`.

use std::time::Duration;

use serde_json::Value;

use super::ws::{self, Ws};
use crate::net::Sources;

const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// `ws://host:port/socket.io/?EIO=4&transport=websocket` for a base URL.
pub fn url(base: &str) -> String {
    let base = ws::ws_base(base);
    format!("{base}/socket.io/?EIO=4&transport=websocket")
}

/// Connects and joins the main namespace.
pub async fn connect(base: &str, sources: &Sources) -> Result<Ws, String> {
    let mut ws = ws::connect(&url(base), sources).await?;
    ws::wait_for(&mut ws, SETUP_TIMEOUT, "engine.io open", |t| {
        t.starts_with('0').then_some(Ok(()))
    })
    .await?;
    ws::send_text(&mut ws, "40".into()).await?;
    ws::wait_for(&mut ws, SETUP_TIMEOUT, "socket.io connect", |t| {
        if t.starts_with("44") {
            return Some(Err(format!("connect refused: {t}")));
        }
        t.starts_with("40").then_some(Ok(()))
    })
    .await?;
    Ok(ws)
}

/// An event packet `42["name",args…]` (args are raw JSON texts).
pub fn event(name: &str, args: &[&str]) -> String {
    let mut s = format!("42[{}", Value::from(name));
    for a in args {
        s.push(',');
        s.push_str(a);
    }
    s.push(']');
    s
}

/// Emits `join(room)` with an ack and waits for the ack (`43<id>[…]`).
pub async fn join(ws: &mut Ws, room: &str) -> Result<(), String> {
    let packet = format!("421[\"join\",{}]", Value::from(room));
    ws::send_text(ws, packet).await?;
    let mut pong_due = false;
    let r = ws::wait_for(ws, SETUP_TIMEOUT, "join ack", |t| {
        if t == "2" {
            pong_due = true;
        }
        t.starts_with("431").then_some(Ok(()))
    })
    .await;
    if pong_due {
        ws::send_text(ws, "3".into()).await?;
    }
    r
}

/// Whether a text message is an Engine.IO ping (to be answered with [`PONG`]).
pub fn is_ping(t: &str) -> bool {
    t == "2"
}

/// The Engine.IO pong.
pub const PONG: &str = "3";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        assert_eq!(
            event("pub", &["\"r\"", "{\"a\":1}"]),
            r#"42["pub","r",{"a":1}]"#
        );
        assert_eq!(
            url("http://127.0.0.1:3001"),
            "ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket"
        );
        assert!(is_ping("2"));
        assert!(!is_ping("42[]"));
    }
}
