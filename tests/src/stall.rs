//! [`Stalled`]: a client that stops reading its socket, to play a slow consumer.
//!
//! The TCP socket gets a small receive buffer (`SO_RCVBUF`, [`SMALL_RCVBUF`]) *before*
//! it connects, so the window it advertises stays small and the kernel holds little on
//! the client's side. The server's send buffer is the server's business: on Linux it
//! grows to `net.ipv4.tcp_wmem` (up to 4 MiB by default) even when the peer does not read,
//! so a few MiB can still leave the server's process before its own queue fills. Kernel
//! buffers are not part of the server's `VmRSS`.
//!
//! A [`Stalled`] client may read during its setup (the upgrade answer, a subscription's
//! response, a Sink handshake), then simply never reads again until [`Stalled::drain`],
//! which reads everything that is left up to the end of the stream and reports the
//! WebSocket close frame, if any. It speaks just enough RFC 6455 for that (masked client
//! frames, the server's frames parsed by [`crate::wsframe`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::rawhttp::{read_body, read_head, split_url};
use crate::wait::within;
use crate::ws::{WsEvent, DEFAULT_TIMEOUT};
use crate::wsframe::{
    accept_key, encode_frame, parse_close, parse_frame, OP_BINARY, OP_CLOSE, OP_CONTINUATION,
    OP_PING, OP_PONG, OP_TEXT,
};

/// The receive buffer asked for (Linux doubles it). Small next to what autotuning
/// would grow to (`net.ipv4.tcp_rmem`), yet at least one loopback segment (64 KiB), so
/// a [`Stalled::drain`] through it is not throttled by silly-window avoidance.
pub const SMALL_RCVBUF: u32 = 64 * 1024;

/// What [`Stalled::drain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Complete data messages (WebSocket) read; 0 on a raw TCP connection.
    pub messages: usize,
    /// Payload bytes of those messages (WebSocket), or bytes read (raw TCP).
    pub bytes: u64,
    /// The WebSocket close frame: `Some(None)` for a close without a code, `None` if no
    /// close frame came (or on a raw TCP connection).
    pub close: Option<Option<(u16, String)>>,
}

/// A connection that stops reading. See the module docs.
pub struct Stalled {
    label: String,
    stream: TcpStream,
    buf: BytesMut,
    ws: bool,
    rcvbuf: u32,
}

async fn connect_small(addr: SocketAddr, rcvbuf: u32) -> io::Result<(TcpStream, u32)> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(rcvbuf)?;
    let effective = socket.recv_buffer_size()?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok((stream, effective))
}

fn random_key() -> String {
    crate::b64::base64_encode(uuid::Uuid::new_v4().as_bytes())
}

impl Stalled {
    /// A WebSocket upgrade of `url` (`ws://127.0.0.1:port/path?query`) over a socket with
    /// [`SMALL_RCVBUF`]. `Err((status, body))` if the upgrade is refused, `Err((0, why))`
    /// if the connection fails.
    pub async fn ws(url: &str) -> Result<Stalled, (u16, String)> {
        Self::ws_with_rcvbuf(url, SMALL_RCVBUF).await
    }

    /// [`Stalled::ws`] with an explicit `SO_RCVBUF`.
    pub async fn ws_with_rcvbuf(url: &str, rcvbuf: u32) -> Result<Stalled, (u16, String)> {
        let what = format!("WebSocket handshake with {url} (small receive buffer)");
        within(&what, DEFAULT_TIMEOUT, Self::handshake(url, rcvbuf)).await
    }

    async fn handshake(url: &str, rcvbuf: u32) -> Result<Stalled, (u16, String)> {
        let (host, path) = split_url(url);
        let transport = |e: io::Error| (0u16, format!("{url}: {e}"));
        let addr: SocketAddr = host
            .parse()
            .map_err(|e| (0u16, format!("{url}: host {host:?} is not ip:port ({e})")))?;
        let (mut stream, effective) = connect_small(addr, rcvbuf).await.map_err(transport)?;
        let key = random_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
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
        assert_eq!(
            head.header("sec-websocket-accept"),
            Some(accept_key(&key).as_str()),
            "{url}: wrong Sec-WebSocket-Accept"
        );
        Ok(Stalled {
            label: format!("stalled {url}"),
            stream,
            buf,
            ws: true,
            rcvbuf: effective,
        })
    }

    /// A raw TCP connection to `addr` with [`SMALL_RCVBUF`] (e.g. a Sink device).
    pub async fn tcp(addr: SocketAddr) -> io::Result<Stalled> {
        let (stream, effective) = connect_small(addr, SMALL_RCVBUF).await?;
        Ok(Stalled {
            label: format!("stalled tcp {addr}"),
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            ws: false,
            rcvbuf: effective,
        })
    }

    /// The `SO_RCVBUF` the kernel granted (before connecting).
    pub fn rcvbuf(&self) -> u32 {
        self.rcvbuf
    }

    /// Sends raw bytes; panics on I/O error.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes).await {
            panic!("{}: write failed: {e}", self.label);
        }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        assert!(self.ws, "{}: not a WebSocket", self.label);
        let mask: [u8; 4] = uuid::Uuid::new_v4().as_bytes()[..4]
            .try_into()
            .expect("4 bytes");
        let wire = encode_frame(true, opcode, payload, Some(mask));
        self.send_raw(&wire).await;
    }

    /// Sends a WebSocket text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(OP_TEXT, text.as_bytes()).await;
    }

    /// Sends a JSON value as a WebSocket text message.
    pub async fn send_json(&mut self, value: &serde_json::Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a WebSocket binary message.
    pub async fn send_binary(&mut self, data: &[u8]) {
        self.send_frame(OP_BINARY, data).await;
    }

    async fn fill(&mut self) -> bool {
        matches!(self.stream.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Setup only: the next WebSocket event within `timeout` (`None` on timeout). Pings
    /// are answered; fragments are reassembled.
    pub async fn recv(&mut self, timeout: Duration) -> Option<WsEvent> {
        tokio::time::timeout(timeout, self.next_event()).await.ok()
    }

    async fn next_event(&mut self) -> WsEvent {
        assert!(self.ws, "{}: not a WebSocket", self.label);
        let mut partial: Option<(u8, Vec<u8>)> = None;
        loop {
            let frame = match parse_frame(&mut self.buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if !self.fill().await {
                        return WsEvent::Closed;
                    }
                    continue;
                }
                Err(e) => panic!("{}: bad frame from the server: {e}", self.label),
            };
            match frame.opcode {
                OP_PING => {
                    let mask = [0x11, 0x22, 0x33, 0x44];
                    let pong = encode_frame(true, OP_PONG, &frame.payload, Some(mask));
                    let _ = self.stream.write_all(&pong).await;
                }
                OP_PONG => {}
                OP_CLOSE => {
                    let close = parse_close(&frame.payload)
                        .unwrap_or_else(|e| panic!("{}: bad close frame: {e}", self.label));
                    return WsEvent::Close(close);
                }
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    let (opcode, mut data) = match partial.take() {
                        Some(p) => p,
                        None => (frame.opcode, Vec::new()),
                    };
                    data.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        partial = Some((opcode, data));
                        continue;
                    }
                    return if opcode == OP_TEXT {
                        WsEvent::Text(String::from_utf8_lossy(&data).into_owned())
                    } else {
                        WsEvent::Binary(data.into())
                    };
                }
                other => panic!("{}: reserved opcode {other:#x}", self.label),
            }
        }
    }

    /// Setup only (raw TCP): reads once, within `timeout`, and returns what arrived
    /// (empty at the end of the stream; `None` on timeout).
    pub async fn recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        if !self.buf.is_empty() {
            return Some(self.buf.split().to_vec());
        }
        match tokio::time::timeout(timeout, self.fill()).await {
            Err(_) => None,
            Ok(_) => Some(self.buf.split().to_vec()),
        }
    }

    /// Starts reading again, within `timeout`: everything the server had left for this
    /// client, then (WebSocket) its close frame, which is echoed before the socket is
    /// dropped; a raw TCP connection is read to its end. Panics if neither a close frame
    /// nor the end of the stream came within `timeout`.
    pub async fn drain(mut self, timeout: Duration) -> Drained {
        let label = self.label.clone();
        let what = format!("{label}: the server to end the stream");
        within(&what, timeout, async move {
            let mut out = Drained {
                messages: 0,
                bytes: 0,
                close: None,
            };
            if !self.ws {
                out.bytes = self.buf.len() as u64;
                let mut chunk = vec![0u8; 64 * 1024];
                while let Ok(n) = self.stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    out.bytes += n as u64;
                }
                return out;
            }
            loop {
                match self.next_event().await {
                    WsEvent::Text(t) => {
                        out.bytes += t.len() as u64;
                        out.messages += 1;
                    }
                    WsEvent::Binary(b) => {
                        out.bytes += b.len() as u64;
                        out.messages += 1;
                    }
                    WsEvent::Close(close) => {
                        out.close = Some(close.clone());
                        let mut echo = close
                            .map(|c| c.0.to_be_bytes().to_vec())
                            .unwrap_or_default();
                        echo.truncate(2);
                        let mask = [0x55, 0x66, 0x77, 0x88];
                        let _ = self
                            .stream
                            .write_all(&encode_frame(true, OP_CLOSE, &echo, Some(mask)))
                            .await;
                        // The close handshake is complete; the socket is dropped here
                        // (not waiting for the server to end the stream).
                        return out;
                    }
                    WsEvent::Closed => return out,
                }
            }
        })
        .await
    }
}
