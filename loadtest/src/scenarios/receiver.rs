//! The persistent receive loop of a WebSocket that only listens (subscribers, chat
//! members, RPC providers): handles every frame, answers when the protocol says so,
//! and flushes its samples whenever the socket has nothing more ready.

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};

use crate::clients::ws::{self, classify, Incoming, Ws};
use crate::metrics::{Local, Recorder};

/// What a protocol does with a received frame.
pub trait RecvProto: Send + 'static {
    /// Handles a text frame; may return a frame to send back.
    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String>;
    /// Handles a binary frame (ignored unless the protocol uses them).
    fn on_binary(&mut self, data: &[u8], local: &mut Local) -> Option<String> {
        let _ = (data, local);
        None
    }
}

/// Starts the receive loop of `ws`.
pub fn spawn(ws: Ws, proto: impl RecvProto, rec: &Arc<Recorder>, name: String) {
    tokio::spawn(run(ws, proto, rec.clone(), name));
}

async fn run(mut ws: Ws, mut proto: impl RecvProto, rec: Arc<Recorder>, name: String) {
    let mut local = Local::new(&rec);
    let why = 'outer: loop {
        let mut item = match ws.next().now_or_never() {
            Some(item) => item,
            None => {
                local.flush();
                if let Err(e) = ws::flush(&mut ws).await {
                    break e;
                }
                ws.next().await
            }
        };
        loop {
            match classify(item) {
                Incoming::Text(t) => {
                    if let Some(reply) = proto.on_text(t.as_str(), &mut local) {
                        if let Err(e) = ws::feed_text(&mut ws, reply).await {
                            break 'outer e;
                        }
                    }
                }
                Incoming::Binary(b) => {
                    if let Some(reply) = proto.on_binary(&b, &mut local) {
                        if let Err(e) = ws::feed_text(&mut ws, reply).await {
                            break 'outer e;
                        }
                    }
                }
                Incoming::Other => {}
                Incoming::Closed(why) => break 'outer why,
            }
            match ws.next().now_or_never() {
                Some(next) => item = next,
                None => break,
            }
        }
    };
    local.flush();
    rec.disconnect(format!("{name}: {why}"));
}
