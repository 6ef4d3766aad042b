//! The read side of a WebSocket: request-body chunks in, whole messages out.

use actix_web::web;
use bytes::BytesMut;
use futures_util::StreamExt;
use murmur_shared::wsframe::{Decoder, FrameError, Message};

/// A read buffer that grew past this for one large message is let go once empty, so an
/// idle connection keeps no large allocation.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Client messages of one connection. `recv` is cancel-safe (no bytes are lost when a
/// `select!` drops it mid-await).
pub struct WsStream {
    payload: web::Payload,
    buf: BytesMut,
    decoder: Decoder,
    done: bool,
}

impl WsStream {
    pub(super) fn new(payload: web::Payload, max_message: usize) -> Self {
        WsStream {
            payload,
            buf: BytesMut::new(),
            decoder: Decoder::new(max_message),
            done: false,
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
                    if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
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
            match self.payload.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}
