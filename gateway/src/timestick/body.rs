//! TimeStick request bodies, read explicitly under a limit (CONTRACT §10, "limits before
//! buffering"): a body whose `Content-Length` is over the limit is refused before a byte
//! of it is read; a body without one (chunked) is read chunk by chunk and refused as soon
//! as the running total passes the limit. Nothing over the limit is ever buffered.
//!
//! A body refused (for its size or for any other reason found before it was read) is
//! not read further: when more of it is to come, the answer closes the connection
//! ([`unread`]; actix would otherwise drain the rest of a chunked body, without bound, to
//! keep the connection alive).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::StreamExt;

/// Why a body was not read.
#[derive(Debug)]
pub(super) enum BodyError {
    /// Over the limit, declared or while being read.
    TooLarge,
    /// The transfer failed (connection closed, malformed chunk).
    Broken(String),
}

/// The declared `Content-Length`, if the request has one. (actix refuses an unparsable
/// one with 400 before routing.)
fn declared(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the request declares a body longer than `limit` bytes.
pub(super) fn declared_over(req: &HttpRequest, limit: u64) -> bool {
    declared(req).is_some_and(|n| n > limit)
}

/// What of a body had arrived when first looked at ([`arrived`]).
#[derive(Debug)]
pub(super) enum Arrived {
    /// All of it (its declared length): nothing more is awaited.
    Whole(Bytes),
    /// Part of it (maybe none): the rest is still to come ([`read`]).
    Partial(BytesMut),
    /// The transfer failed, after what had arrived.
    Broken(String),
}

/// The part of a body with a declared length (at most its limit, checked before) that
/// has already arrived, without waiting for more: the handler steps aside once, so that
/// the connection's dispatcher hands over what it holds (a small request's body
/// usually comes in the same packet as its head). A streamed body (no `Content-Length`)
/// is left unread.
pub(super) async fn arrived(req: &HttpRequest, payload: &mut web::Payload) -> Arrived {
    let mut buf = BytesMut::new();
    if declared(req).is_none() {
        return Arrived::Partial(buf);
    }
    actix_web::rt::task::yield_now().await;
    loop {
        match payload.next().now_or_never() {
            Some(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
            Some(Some(Err(e))) => return Arrived::Broken(e.to_string()),
            Some(None) => return Arrived::Whole(buf.freeze()),
            None => return Arrived::Partial(buf),
        }
    }
}

/// Reads the whole body, at most `limit` bytes, after the part of it already read
/// (`buf`): a declared length over the limit is refused at once (nothing more read), a
/// streamed body as soon as it passes it.
pub(super) async fn read(
    req: &HttpRequest,
    payload: &mut web::Payload,
    mut buf: BytesMut,
    limit: u64,
) -> Result<Bytes, BodyError> {
    if declared_over(req, limit) {
        return Err(BodyError::TooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if buf.len() > limit {
        return Err(BodyError::TooLarge);
    }
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// An answer given while (part of) the request's body may still be unread: the answer
/// keeps the body's stream alive until it is written. When more of the body is still to
/// come, actix then answers `Connection: close` and closes the connection after the
/// answer, instead of draining the rest of a chunked body, however long, to keep the
/// connection alive. Before closing it lingers (the server's `client_disconnect_timeout`,
/// 10 s), discarding without buffering what still arrives, so that the client reads the
/// answer rather than a connection reset (RFC 9112 §9.6).
pub(super) fn unread(payload: web::Payload, resp: HttpResponse) -> HttpResponse {
    resp.map_body(|_, body| {
        BoxBody::new(Holding {
            body,
            _payload: payload,
        })
    })
}

/// A response body that holds the request's unread payload until it is written.
struct Holding {
    body: BoxBody,
    _payload: web::Payload,
}

impl MessageBody for Holding {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
