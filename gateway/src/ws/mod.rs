//! The WebSocket transport shared by the WebSocket protocols (`/starling`, `/chat`,
//! `/sink`).
//!
//! * [`upgrade`] checks the handshake and returns the 101 response, a `SendBuffer` and a
//!   [`WsStream`]. On the public server the connection then leaves the HTTP/1
//!   dispatcher ([`handover`]): the socket is read and written directly. Served inside
//!   a dispatcher (no hand-over slot), the response body is the outbound buffer.
//! * [`WsStream`] (`inbound`) reads client frames with the pure
//!   `murmur_shared::wsframe` decoder: a frame or message whose declared length is
//!   over the protocol's limit is refused when its header arrives (1009), before its
//!   payload is buffered; framing faults close 1008, invalid UTF-8 1007.
//! * Frames go out through the connection's byte-bounded buffer
//!   ([`crate::edge::buffer`], WebSocket framing); the connection itself is served by
//!   the protocol-neutral loop in [`crate::edge`].

pub mod handover;
mod inbound;

use std::sync::Arc;
use std::time::Duration;

use actix_http::body::{BodyStream, MessageBody};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

pub use inbound::WsStream;

use crate::edge::buffer::{self, Framing, OutboundBudget, OutboundLimits, SendBuffer};
/// After the server's close frame, how long a client has to read what is still in
/// flight before the socket is dropped (a slow consumer learns its 4001 if it reads).
pub const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Accepts a WebSocket upgrade whose messages may be at most `max_message` bytes.
/// A request that is not a valid WebSocket handshake gets its HTTP error, and nothing
/// is allocated for it.
pub fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    max_message: usize,
    limits: OutboundLimits,
    budget: &Arc<OutboundBudget>,
) -> Result<(HttpResponse, SendBuffer, WsStream), actix_web::Error> {
    let mut response = actix_http::ws::handshake(req.head())?;
    let (sink, body) = buffer::channel(Framing::WebSocket, limits, budget.clone());
    let slot = req.extensions().get::<handover::Slot>().cloned();
    if let Some(slot) = slot {
        let (socket, read) = tokio::sync::oneshot::channel();
        slot.put(handover::Accepted { body, socket });
        let response = response.finish().map_into_boxed_body();
        return Ok((
            HttpResponse::from(response),
            sink,
            WsStream::from_socket(read, max_message),
        ));
    }
    let response = response.message_body(BodyStream::new(body).boxed())?;
    Ok((
        HttpResponse::from(response),
        sink,
        WsStream::from_body(payload, max_message),
    ))
}
