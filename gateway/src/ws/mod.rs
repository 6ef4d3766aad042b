//! The WebSocket transport shared by the WebSocket protocols (`/starling`, `/chat`,
//! `/sink`).
//!
//! * [`upgrade`] checks the handshake and returns the 101 response, a [`WsSink`] and a
//!   [`WsStream`]. On the public server the connection then leaves the HTTP/1
//!   dispatcher ([`handover`]): the socket is read and written directly. Served inside
//!   a dispatcher (no hand-over slot), the response body is the outbound buffer.
//! * [`WsStream`] (`inbound`) reads client frames with the pure
//!   `murmur_shared::wsframe` decoder: a frame or message whose declared length is
//!   over the protocol's limit is refused when its header arrives (1009), before its
//!   payload is buffered; framing faults close 1008, invalid UTF-8 1007.
//! * [`WsSink`] (`outbound`) appends encoded frames to one per-connection buffer
//!   bounded in bytes and frames, under a node-wide ceiling ([`OutboundBudget`]).
//!   Appending never waits: a full buffer is the slow-consumer signal (close 4001).
//!   Whatever is pending is handed to the socket in one write.
//!
//! Heartbeat: the server pings every [`PING_INTERVAL`]; a client from which nothing at
//! all (data, ping or pong) arrived for [`CLIENT_TIMEOUT`] is closed with 4004. The
//! timeout spans several ping intervals so one lost pong is not fatal.

pub mod handover;
mod inbound;
mod outbound;

use std::sync::Arc;
use std::time::Duration;

use actix_http::body::{BodyStream, MessageBody};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

pub use inbound::WsStream;
pub use outbound::{OutboundBudget, OutboundLimits, SendError, WsSink};

/// How often the server pings an idle connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Silence after which a client is considered gone (3 ping intervals).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
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
) -> Result<(HttpResponse, WsSink, WsStream), actix_web::Error> {
    let mut response = actix_http::ws::handshake(req.head())?;
    let (sink, body) = outbound::channel(limits, budget.clone());
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
