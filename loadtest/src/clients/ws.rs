//! WebSocket connections for the load tool: plain `ws://`, TCP from the rotating source
//! addresses, buffers sized for thousands of connections.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::net::{resolve, split_url, Sources};

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long a connect plus upgrade may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(64 * 1024 * 1024)
}

/// Opens `url` (`ws://host:port/path?query`).
pub async fn connect(url: &str, sources: &Sources) -> Result<Ws, String> {
    let work = async {
        let (host, _) = split_url(url)?;
        let addr = resolve(&host).await?;
        let stream = sources
            .connect(addr)
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(url, stream, Some(config()))
            .await
            .map_err(|e| format!("upgrade {}: {e}", strip_query(url)))?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, work)
        .await
        .map_err(|_| format!("connect {}: timed out", strip_query(url)))?
}

/// A base URL (`http://host:port/`, or already `ws://…`) as `ws://host:port`, without a
/// trailing slash: where each client appends its path.
pub fn ws_base(base: &str) -> String {
    let base = base.trim_end_matches('/');
    base.strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .unwrap_or_else(|| base.to_string())
}

/// The URL without its query (tokens stay out of error messages).
pub fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// Sends one text message.
pub async fn send_text(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Queues one text message without flushing.
pub async fn feed_text(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.feed(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Flushes queued messages.
pub async fn flush(ws: &mut Ws) -> Result<(), String> {
    ws.flush().await.map_err(|e| format!("flush: {e}"))
}

/// What a received WebSocket message means to a receive loop.
pub enum Incoming {
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    /// A binary message (nats-server sends its protocol in binary frames).
    Binary(bytes::Bytes),
    /// Ping, pong, raw frames (control frames are answered by tungstenite itself).
    Other,
    /// Closed (with the close code and reason, if any) or failed.
    Closed(String),
}

/// Classifies the next item of the stream.
pub fn classify(item: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Incoming {
    match item {
        Some(Ok(Message::Text(t))) => Incoming::Text(t),
        Some(Ok(Message::Binary(b))) => Incoming::Binary(b),
        Some(Ok(Message::Close(frame))) => Incoming::Closed(match frame {
            Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
            None => "closed by the server".into(),
        }),
        Some(Ok(_)) => Incoming::Other,
        Some(Err(e)) => Incoming::Closed(format!("read error: {e}")),
        None => Incoming::Closed("connection ended".into()),
    }
}

/// Reads until a text message for which `want` returns `Some`, within `limit` (binary
/// messages are skipped).
pub async fn wait_for<T>(
    ws: &mut Ws,
    limit: Duration,
    what: &str,
    mut want: impl FnMut(&str) -> Option<Result<T, String>>,
) -> Result<T, String> {
    let work = async {
        loop {
            match classify(ws.next().await) {
                Incoming::Text(t) => {
                    if let Some(r) = want(t.as_str()) {
                        return r;
                    }
                }
                Incoming::Binary(_) | Incoming::Other => {}
                Incoming::Closed(why) => return Err(format!("{what}: {why}")),
            }
        }
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| format!("{what}: no answer within {limit:?}"))?
}
