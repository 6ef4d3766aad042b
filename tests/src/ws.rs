//! [`WsClient`]: a small, strict WebSocket client for black-box tests.
//!
//! It speaks RFC 6455 directly over a tokio `TcpStream` (so it runs under `#[actix_rt::test]`
//! and plain tokio alike) because the tests need things awc cannot give: the status *and
//! body* of a refused upgrade from a single handshake, and raw frames (invalid UTF-8, odd
//! opcodes, fragments) to probe the server. The server's handshake (`Sec-WebSocket-Accept`)
//! and framing (no masking, no RSV bits) are validated; violations panic, since they are
//! product bugs. Pings are answered with pongs automatically; a received Close is echoed.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::rawhttp::{read_body, read_head, split_url};
use crate::wait::within;
use crate::wsframe::{
    accept_key, encode_frame, parse_close, parse_frame, Frame, OP_BINARY, OP_CLOSE,
    OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};

/// Default bound for [`WsClient::recv`], [`WsClient::recv_json`], [`WsClient::expect_close`]
/// and the handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server sent next (pings and pongs are handled internally and never surface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete (possibly reassembled) text message.
    Text(String),
    /// A complete (possibly reassembled) binary message.
    Binary(Bytes),
    /// A Close frame: `None` if it carried no status code.
    Close(Option<(u16, String)>),
    /// The TCP stream ended (or failed) without a Close frame, or after one.
    Closed,
}

/// A connected WebSocket client. See the module docs.
pub struct WsClient {
    url: String,
    stream: TcpStream,
    buf: BytesMut,
    fragments: Option<(u8, Vec<u8>)>,
    close_sent: bool,
    ended: bool,
    /// The payload of the ping [`WsClient::barrier`] waits for the pong of.
    barrier: Option<Vec<u8>>,
}

/// What the stream yields next: an event, or the pong of a barrier.
enum Item {
    Event(WsEvent),
    BarrierPong,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        let uuid = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&uuid.as_bytes()[..chunk.len()]);
    }
    out
}

impl WsClient {
    /// Connects to `url` (`ws://host:port/path?query`). On a refused upgrade returns
    /// `Err((status, body))`; if no HTTP response was obtained at all (connection refused,
    /// reset), returns `Err((0, description))`. Panics if the handshake exceeds
    /// [`DEFAULT_TIMEOUT`] or the server's 101 answer is malformed.
    pub async fn connect(url: &str) -> Result<WsClient, (u16, String)> {
        Self::connect_with_headers(url, &[]).await
    }

    /// [`WsClient::connect`] with extra request headers (e.g. `("Origin", "...")`,
    /// `("Authorization", "Bearer ...")`, `("Sec-WebSocket-Protocol", "...")`).
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<WsClient, (u16, String)> {
        let what = format!("WebSocket handshake with {url}");
        within(&what, DEFAULT_TIMEOUT, Self::handshake(url, headers)).await
    }

    async fn handshake(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, (u16, String)> {
        let (host, path) = split_url(url);
        let transport = |e: io::Error| (0u16, format!("{url}: {e}"));
        let mut stream = TcpStream::connect(&host).await.map_err(transport)?;
        stream.set_nodelay(true).map_err(transport)?;
        let key = crate::b64::base64_encode(&random_bytes::<16>());
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(transport)?;

        let mut buf = BytesMut::with_capacity(16 * 1024);
        let head = read_head(&mut stream, &mut buf).await.map_err(transport)?;
        if head.status != 101 {
            let body = read_body(&mut stream, &mut buf, &head)
                .await
                .unwrap_or_else(|e| format!("<body unreadable: {e}>").into_bytes());
            return Err((head.status, String::from_utf8_lossy(&body).into_owned()));
        }
        let upgrade = head.header("upgrade").unwrap_or_default();
        assert!(
            upgrade.eq_ignore_ascii_case("websocket"),
            "{url}: 101 response with Upgrade header {upgrade:?}"
        );
        let connection = head
            .header("connection")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            connection.contains("upgrade"),
            "{url}: 101 response with Connection header {connection:?}"
        );
        let expected = accept_key(&key);
        assert_eq!(
            head.header("sec-websocket-accept"),
            Some(expected.as_str()),
            "{url}: wrong Sec-WebSocket-Accept"
        );
        Ok(WsClient {
            url: url.to_string(),
            stream,
            buf,
            fragments: None,
            close_sent: false,
            ended: false,
            barrier: None,
        })
    }

    /// The URL this client connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    // ---- sending -------------------------------------------------------------------------

    /// Sends one raw frame (masked, as a client must). Errors are returned, not panicked on:
    /// use this to write into a connection that may already be gone.
    pub async fn try_send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let wire = encode_frame(fin, opcode, payload, Some(random_bytes::<4>()));
        self.stream.write_all(&wire).await
    }

    /// Writes raw bytes to the socket (a hand-built frame header, say); errors returned.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends one raw frame; panics on I/O error. Lets tests send invalid UTF-8 text,
    /// fragments, reserved opcodes, oversized control frames...
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        if let Err(e) = self.try_send_frame(fin, opcode, payload).await {
            panic!(
                "{}: sending a frame (opcode {opcode:#x}) failed: {e}",
                self.url
            );
        }
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes()).await;
    }

    /// Sends a JSON value as a text message.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.send_frame(true, OP_BINARY, &data).await;
    }

    /// Sends a ping (its pong is swallowed by the receive methods).
    pub async fn send_ping(&mut self, data: &[u8]) {
        self.send_frame(true, OP_PING, data).await;
    }

    // ---- receiving -----------------------------------------------------------------------

    async fn next_frame(&mut self) -> Option<Frame> {
        if self.ended {
            return None;
        }
        loop {
            match parse_frame(&mut self.buf) {
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => {}
                Err(e) => panic!("{}: bad frame from server: {e}", self.url),
            }
            // `read_buf` is cancellation safe, and partial frames stay in `self.buf`, so a
            // timed-out receive never desynchronises the stream.
            match self.stream.read_buf(&mut self.buf).await {
                Ok(n) if n > 0 => {}
                _ => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    fn data_event(&self, opcode: u8, payload: Vec<u8>) -> WsEvent {
        if opcode == OP_TEXT {
            match String::from_utf8(payload) {
                Ok(text) => WsEvent::Text(text),
                Err(_) => panic!("{}: server sent a text message that is not UTF-8", self.url),
            }
        } else {
            WsEvent::Binary(Bytes::from(payload))
        }
    }

    /// A barrier: sends a ping and returns every event that arrived before its pong.
    /// The server answers a ping in order with everything it queued for this connection
    /// before reading it, so nothing it had queued can come after. Panics without a pong
    /// within `timeout`.
    pub async fn barrier(&mut self, timeout: Duration) -> Vec<WsEvent> {
        let token = random_bytes::<16>().to_vec();
        self.barrier = Some(token.clone());
        self.send_ping(&token).await;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.next_item()).await {
                Ok(Item::BarrierPong) => break,
                Ok(Item::Event(WsEvent::Closed)) => {
                    panic!("{}: the stream ended before the barrier", self.url)
                }
                Ok(Item::Event(e)) => before.push(e),
                Err(_) => panic!(
                    "{}: no pong to the barrier ping within {timeout:?}",
                    self.url
                ),
            }
        }
        self.barrier = None;
        before
    }

    /// The next event, unbounded. Answers pings, echoes a Close once.
    async fn next_event(&mut self) -> WsEvent {
        loop {
            if let Item::Event(e) = self.next_item().await {
                return e;
            }
        }
    }

    /// The next event, or the pong a [`barrier`](Self::barrier) waits for.
    async fn next_item(&mut self) -> Item {
        loop {
            let Some(frame) = self.next_frame().await else {
                return Item::Event(WsEvent::Closed);
            };
            let url = &self.url;
            assert!(
                !frame.masked,
                "{url}: server sent a masked frame (RFC 6455 §5.1)"
            );
            assert_eq!(
                frame.rsv, 0,
                "{url}: server set RSV bits without an extension"
            );
            match frame.opcode {
                OP_PING => {
                    let _ = self.try_send_frame(true, OP_PONG, &frame.payload).await;
                }
                OP_PONG => {
                    if self.barrier.as_deref() == Some(&frame.payload[..]) {
                        return Item::BarrierPong;
                    }
                }
                OP_CLOSE => {
                    let close = parse_close(&frame.payload)
                        .unwrap_or_else(|e| panic!("{url}: bad close frame: {e}"));
                    if !self.close_sent {
                        self.close_sent = true;
                        let echo = frame.payload.get(..2).unwrap_or_default().to_vec();
                        let _ = self.try_send_frame(true, OP_CLOSE, &echo).await;
                    }
                    return Item::Event(WsEvent::Close(close));
                }
                OP_TEXT | OP_BINARY => {
                    assert!(
                        self.fragments.is_none(),
                        "{url}: new message inside a fragmented one"
                    );
                    if frame.fin {
                        return Item::Event(self.data_event(frame.opcode, frame.payload.to_vec()));
                    }
                    self.fragments = Some((frame.opcode, frame.payload.to_vec()));
                }
                OP_CONTINUATION => {
                    let Some((opcode, mut data)) = self.fragments.take() else {
                        panic!("{url}: continuation frame without a message to continue");
                    };
                    data.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return Item::Event(self.data_event(opcode, data));
                    }
                    self.fragments = Some((opcode, data));
                }
                other => panic!("{url}: server sent reserved opcode {other:#x}"),
            }
        }
    }

    /// The next event within [`DEFAULT_TIMEOUT`]; panics naming the timeout otherwise.
    pub async fn recv(&mut self) -> WsEvent {
        let what = format!("next WebSocket event from {}", self.url);
        within(&what, DEFAULT_TIMEOUT, self.next_event()).await
    }

    /// The next event within `timeout`, or `None`: use it to assert that nothing arrives.
    pub async fn try_recv(&mut self, timeout: Duration) -> Option<WsEvent> {
        tokio::time::timeout(timeout, self.next_event()).await.ok()
    }

    /// The next message as JSON (within [`DEFAULT_TIMEOUT`]). Panics if it is not JSON text
    /// or the connection closes.
    pub async fn recv_json(&mut self) -> Value {
        let event = self.recv().await;
        self.expect_json(event)
    }

    /// The next text message (within [`DEFAULT_TIMEOUT`]); panics on anything else.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            WsEvent::Text(text) => text,
            other => panic!("{}: expected a text message, got {other:?}", self.url),
        }
    }

    fn expect_json(&self, event: WsEvent) -> Value {
        match event {
            WsEvent::Text(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: expected JSON, got text {text:?} ({e})", self.url)),
            WsEvent::Binary(data) => {
                panic!(
                    "{}: expected JSON text, got binary ({} bytes)",
                    self.url,
                    data.len()
                )
            }
            WsEvent::Close(close) => panic!("{}: expected JSON, got Close {close:?}", self.url),
            WsEvent::Closed => panic!("{}: expected JSON, but the stream ended", self.url),
        }
    }

    /// Skips JSON messages (and binary ones) until one satisfies `pred`, within `timeout`.
    /// Skipped messages are discarded. Panics on timeout, non-JSON text or close.
    pub async fn recv_json_matching(
        &mut self,
        mut pred: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Value {
        let what = format!("a matching JSON message from {}", self.url);
        within(&what, timeout, async {
            loop {
                let event = self.next_event().await;
                if matches!(event, WsEvent::Binary(_)) {
                    continue;
                }
                let value = self.expect_json(event);
                if pred(&value) {
                    return value;
                }
            }
        })
        .await
    }

    /// Waits (within [`DEFAULT_TIMEOUT`]) for the server to close, skipping data messages:
    /// `Some((code, reason))` for a Close frame with a code, `None` for a Close without one
    /// or a stream that ended without a Close frame.
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        self.expect_close_within(DEFAULT_TIMEOUT).await
    }

    /// [`WsClient::expect_close`] with an explicit bound.
    pub async fn expect_close_within(&mut self, timeout: Duration) -> Option<(u16, String)> {
        let what = format!("server to close {}", self.url);
        within(&what, timeout, async {
            loop {
                match self.next_event().await {
                    WsEvent::Close(close) => return close,
                    WsEvent::Closed => return None,
                    WsEvent::Text(_) | WsEvent::Binary(_) => {}
                }
            }
        })
        .await
    }

    /// Waits until the TCP stream ends (after a close handshake, say), within `timeout`.
    pub async fn expect_stream_end(&mut self, timeout: Duration) {
        let what = format!("TCP stream of {} to end", self.url);
        within(&what, timeout, async {
            while self.next_frame().await.is_some() {}
        })
        .await;
    }

    /// Closes with 1000 (normal).
    pub async fn close(&mut self) {
        self.close_with(1000, "").await;
    }

    /// Sends a Close frame with `code`/`reason` and waits (up to 5 s, without panicking) for
    /// the server's Close or the end of the stream.
    pub async fn close_with(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            if self.try_send_frame(true, OP_CLOSE, &payload).await.is_err() {
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(event) = tokio::time::timeout_at(deadline, self.next_event()).await {
            if matches!(event, WsEvent::Close(_) | WsEvent::Closed) {
                break;
            }
        }
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{read_client_frame, ws_server};

    #[actix_rt::test]
    async fn refused_upgrade_yields_status_and_body() {
        let url = ws_server(true, |_, _, _| async {}).await;
        let err = WsClient::connect(&url)
            .await
            .err()
            .expect("must be refused");
        assert_eq!(err, (401, r#"{"error":"unauthorized"}"#.to_string()));
    }

    #[actix_rt::test]
    async fn connection_refused_yields_status_zero() {
        let port = crate::ports::free_port();
        let err = WsClient::connect(&format!("ws://127.0.0.1:{port}/x"))
            .await
            .err()
            .unwrap();
        assert_eq!(err.0, 0);
    }

    #[actix_rt::test]
    async fn exchanges_messages_pings_fragments_and_close() {
        let url = ws_server(false, |mut sock, mut buf, head| async move {
            assert!(
                head.to_lowercase().contains("x-test: yes"),
                "extra header missing: {head}"
            );
            assert!(
                head.starts_with("GET /starling?token=abc HTTP/1.1\r\n"),
                "{head}"
            );
            // Echo the client's first text message back as JSON, after a ping that the
            // client must answer with a pong.
            let frame = read_client_frame(&mut sock, &mut buf).await;
            assert_eq!(frame.opcode, OP_TEXT);
            let text = String::from_utf8(frame.payload.to_vec()).unwrap();
            sock.write_all(&encode_frame(true, OP_PING, b"p1", None))
                .await
                .unwrap();
            let pong = read_client_frame(&mut sock, &mut buf).await;
            assert_eq!((pong.opcode, &pong.payload[..]), (OP_PONG, &b"p1"[..]));
            let echoed = serde_json::json!({ "echo": text }).to_string();
            sock.write_all(&encode_frame(true, OP_TEXT, echoed.as_bytes(), None))
                .await
                .unwrap();
            // A fragmented binary message of 5 MiB.
            let big = vec![7u8; 5 * 1024 * 1024];
            let (a, b) = big.split_at(1000);
            sock.write_all(&encode_frame(false, OP_BINARY, a, None))
                .await
                .unwrap();
            sock.write_all(&encode_frame(true, OP_CONTINUATION, b, None))
                .await
                .unwrap();
            sock.write_all(&encode_frame(true, OP_TEXT, b"{\"n\":1}", None))
                .await
                .unwrap();
            sock.write_all(&encode_frame(true, OP_TEXT, b"{\"n\":2}", None))
                .await
                .unwrap();
            // Close with 4003 and expect the client's echo.
            let mut close = 4003u16.to_be_bytes().to_vec();
            close.extend_from_slice(b"unauthorized");
            sock.write_all(&encode_frame(true, OP_CLOSE, &close, None))
                .await
                .unwrap();
            let echo = read_client_frame(&mut sock, &mut buf).await;
            assert_eq!((echo.opcode, &echo.payload[..]), (OP_CLOSE, &close[..2]));
        })
        .await;

        let mut ws = WsClient::connect_with_headers(&url, &[("X-Test", "yes")])
            .await
            .unwrap_or_else(|e| panic!("refused: {e:?}"));
        ws.send_text("hi").await;
        assert_eq!(ws.recv_json().await, serde_json::json!({ "echo": "hi" }));
        match ws.recv().await {
            WsEvent::Binary(data) => assert_eq!(data.len(), 5 * 1024 * 1024),
            other => panic!("expected binary, got {other:?}"),
        }
        let two = ws
            .recv_json_matching(|v| v["n"] == 2, Duration::from_secs(5))
            .await;
        assert_eq!(two["n"], 2);
        assert_eq!(
            ws.expect_close().await,
            Some((4003, "unauthorized".to_string()))
        );
        assert_eq!(
            ws.try_recv(Duration::from_secs(5)).await,
            Some(WsEvent::Closed)
        );
    }

    #[actix_rt::test]
    async fn try_recv_times_out_without_losing_partial_frames() {
        let (resume_tx, resume_rx) = tokio::sync::oneshot::channel::<()>();
        let url = ws_server(false, |mut sock, mut buf, _| async move {
            let wire = encode_frame(true, OP_TEXT, b"{\"late\":true}", None);
            sock.write_all(&wire[..3]).await.unwrap();
            resume_rx.await.unwrap();
            sock.write_all(&wire[3..]).await.unwrap();
            // Keep the socket open until the client hangs up.
            while sock.read_buf(&mut buf).await.unwrap_or(0) > 0 {}
        })
        .await;
        let mut ws = WsClient::connect(&url).await.unwrap();
        assert_eq!(ws.try_recv(Duration::from_millis(100)).await, None);
        resume_tx.send(()).unwrap();
        assert_eq!(ws.recv_json().await, serde_json::json!({ "late": true }));
    }

    #[actix_rt::test]
    #[should_panic(expected = "expected JSON")]
    async fn recv_json_panics_on_non_json() {
        let url = ws_server(false, |mut sock, _, _| async move {
            sock.write_all(&encode_frame(true, OP_TEXT, b"not json", None))
                .await
                .unwrap();
        })
        .await;
        let mut ws = WsClient::connect(&url).await.unwrap();
        ws.recv_json().await;
    }
}
