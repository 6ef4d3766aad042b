//! The read side of a WebSocket: bytes in, whole messages out. The bytes come from the
//! socket itself once the connection has left the HTTP/1 dispatcher ([`super::handover`]),
//! read only when the socket is readable, into a buffer that is let go whenever it is
//! empty (an idle connection holds no read buffer); or, for a connection served inside
//! the dispatcher, from its request-body stream.

use std::sync::Arc;

use actix_rt::net::TcpStream;
use actix_web::web;
use bytes::BytesMut;
use futures_util::StreamExt;
use murmur_shared::close::CloseReason;
use murmur_shared::wsframe::{Decoder, FrameError, Message};
use tokio::sync::oneshot;

use super::handover::Socket;
use crate::edge::conn::{Incoming, Input};
use crate::edge::Data;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;

/// Where the bytes come from.
enum Source {
    /// The socket, once [`super::handover`] has it.
    Pending(oneshot::Receiver<Socket>),
    Socket(Arc<TcpStream>),
    Body(web::Payload),
}

/// Client messages of one connection. `recv` is cancel-safe (no bytes are lost when a
/// `select!` drops it mid-await).
pub struct WsStream {
    source: Source,
    buf: BytesMut,
    decoder: Decoder,
    done: bool,
}

impl WsStream {
    pub(super) fn from_body(payload: web::Payload, max_message: usize) -> Self {
        Self::with(Source::Body(payload), max_message)
    }

    pub(super) fn from_socket(socket: oneshot::Receiver<Socket>, max_message: usize) -> Self {
        Self::with(Source::Pending(socket), max_message)
    }

    fn with(source: Source, max_message: usize) -> Self {
        WsStream {
            source,
            buf: BytesMut::new(),
            decoder: Decoder::new(max_message),
            done: false,
        }
    }

    /// Reads more bytes into the buffer; false once the client is gone.
    async fn fill(&mut self) -> bool {
        loop {
            match &mut self.source {
                Source::Pending(rx) => match rx.await {
                    Ok(Socket { io, early }) => {
                        self.source = Source::Socket(io);
                        if !early.is_empty() {
                            self.buf.extend_from_slice(&early);
                            return true;
                        }
                    }
                    Err(_) => return false,
                },
                Source::Socket(io) => {
                    if io.readable().await.is_err() {
                        return false;
                    }
                    self.buf.reserve(READ_CHUNK);
                    match io.try_read_buf(&mut self.buf) {
                        Ok(0) => return false,
                        Ok(_) => return true,
                        // A readiness that was not (the first one after the hand-over
                        // is): an idle connection waits without a read buffer.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if self.buf.is_empty() {
                                self.buf = BytesMut::new();
                            }
                        }
                        Err(_) => return false,
                    }
                }
                Source::Body(payload) => {
                    return match payload.next().await {
                        Some(Ok(chunk)) => {
                            self.buf.extend_from_slice(&chunk);
                            true
                        }
                        Some(Err(_)) | None => false,
                    }
                }
            }
        }
    }

    /// The message size limit of this connection.
    pub fn limit(&self) -> usize {
        self.decoder.limit()
    }

    /// The next message; `None` once the client is gone; an error (after which only
    /// `None` follows) when the bytes break a rule, with the close code it earns.
    pub async fn recv(&mut self) -> Option<Result<Message, FrameError>> {
        loop {
            if self.done {
                return None;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(msg)) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    return Some(Ok(msg));
                }
                Err(e) => {
                    self.done = true;
                    self.buf = BytesMut::new();
                    return Some(Err(e));
                }
                Ok(None) => {}
            }
            if !self.fill().await {
                self.done = true;
                return None;
            }
        }
    }
}

impl Input for WsStream {
    async fn recv(&mut self) -> Option<Result<Incoming, CloseReason>> {
        let msg = match WsStream::recv(self).await? {
            Ok(msg) => msg,
            Err(e) => return Some(Err(CloseReason::new(e.close_code(), e.reason()))),
        };
        Some(Ok(match msg {
            Message::Text(b) => Incoming::Data(Data::Text(b)),
            Message::Binary(b) => Incoming::Data(Data::Binary(b)),
            Message::Ping(p) => Incoming::Ping(p),
            Message::Pong(_) => Incoming::Pong,
            Message::Close(_) => Incoming::Close,
        }))
    }
}
