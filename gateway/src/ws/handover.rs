//! WebSockets leave the HTTP/1 dispatcher. actix-http hands every request that asks for
//! an upgrade (`Connection: upgrade`) to [`serve`] together with its socket, instead of
//! serving it in its HTTP/1 dispatcher for the connection's whole life. [`serve`] runs
//! the request through the same actix-web application as any other (routes, handshake
//! checks, authentication, draining: nothing is special-cased), with a [`Slot`] in the
//! request's extensions. A handler that accepts the upgrade ([`super::upgrade`]) puts the
//! connection's outbound body and the read side's hand-over in the slot; [`serve`] then
//! writes the `101` itself, lets the dispatcher and its buffers go, and from then on
//! writes what the connection's outbound buffer holds straight to the socket, while the
//! connection's [`super::WsStream`] reads the socket itself with an on-demand buffer.
//!
//! A request that is refused (any status but 101) gets its response written as usual and
//! the connection is closed after it.
//!
//! Nothing here looks at the peer address: behind a TLS-terminating proxy the socket's
//! peer is the proxy.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::{Framed, FramedParts};
use actix_http::body::{BodySize, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::{HttpMessage, Request, Response, StatusCode};
use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_web::dev::ServiceResponse;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use super::CLOSE_LINGER;
use crate::edge::buffer::OutboundBody;

/// The socket as the read side of a connection gets it: the stream (shared with the
/// writer, which only writes) and the bytes the client sent after its handshake.
pub struct Socket {
    pub io: Arc<TcpStream>,
    pub early: BytesMut,
}

/// What an accepting handler leaves for [`serve`].
pub(super) struct Accepted {
    pub body: OutboundBody,
    pub socket: oneshot::Sender<Socket>,
}

/// Put in the request's extensions by [`serve`]; see the module docs.
#[derive(Clone, Default)]
pub struct Slot(Rc<RefCell<Option<Accepted>>>);

impl Slot {
    pub(super) fn put(&self, accepted: Accepted) {
        *self.0.borrow_mut() = Some(accepted);
    }

    fn take(&self) -> Option<Accepted> {
        self.0.borrow_mut().take()
    }
}

/// The upgrade service: see the module docs.
pub async fn serve<S>(
    app: Rc<S>,
    req: Request,
    framed: Framed<TcpStream, Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let res: Response<_> = match app.call(req).await {
        Ok(res) => res.into(),
        Err(e) => e.error_response().map_into_boxed_body().into(),
    };
    let accepted = slot.take();
    match accepted {
        Some(accepted) if res.status() == StatusCode::SWITCHING_PROTOCOLS => {
            run(framed, res.drop_body(), accepted).await
        }
        _ => refuse(framed, res).await,
    }
}

/// Writes the 101, hands the socket over and writes the outbound buffer until the
/// connection's close frame is out; then gives the client [`CLOSE_LINGER`] to close.
async fn run(
    mut framed: Framed<TcpStream, Codec>,
    head: Response<()>,
    accepted: Accepted,
) -> Result<(), actix_web::Error> {
    framed.send(Message::Item((head, BodySize::None))).await?;
    // The dispatcher's write buffer and codec are dropped here, its read buffer once
    // the reader has taken what the client sent early.
    let FramedParts {
        io,
        read_buf: early,
        ..
    } = framed.into_parts();
    let io = Arc::new(io);
    let Accepted { mut body, socket } = accepted;
    // A connection refused inside the protocol (its frames and close written at once)
    // no longer reads: what it wrote still goes out.
    let _ = socket.send(Socket {
        io: io.clone(),
        early,
    });
    // The writer is a task of its own, so the dispatcher's task (sized for serving any
    // HTTP request) ends here and its memory goes too.
    // A write may take as long as the client needs while the connection is open; once
    // its close frame is queued, the client has CLOSE_LINGER to take what is left (a slow
    // consumer that never reads does not keep its socket and buffer for ever).
    actix_rt::spawn(async move {
        loop {
            body.gather().await;
            let Some(Ok(chunk)) = body.next().await else {
                break;
            };
            let written = tokio::select! {
                r = write_all(&io, &chunk) => r.is_ok(),
                _ = body.closed_for(CLOSE_LINGER) => false,
            };
            if !written {
                return;
            }
        }
        drop(body);
        linger(&io, CLOSE_LINGER).await;
    });
    Ok(())
}

/// Writes through a shared stream (the read side reads it meanwhile).
async fn write_all(io: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        io.writable().await?;
        match io.try_write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After the close frame: waits (up to `limit`) for the client to close its side,
/// discarding what it still sends, so what was written reaches it before the socket is
/// dropped.
async fn linger(io: &TcpStream, limit: Duration) {
    let wait = async {
        // Allocated only now: an open connection's writer holds no buffer.
        let mut scratch = vec![0u8; 512];
        loop {
            if io.readable().await.is_err() {
                return;
            }
            match io.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(limit, wait).await;
}

/// A refused upgrade: its response, streamed, then the connection closes.
async fn refuse(
    mut framed: Framed<TcpStream, Codec>,
    res: Response<actix_http::body::BoxBody>,
) -> Result<(), actix_web::Error> {
    let (mut head, body) = res.into_parts();
    // Not `connection: upgrade` (the request's): this connection ends after the answer.
    head.head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    let size = body.size();
    framed.send(Message::Item((head, size))).await?;
    if !matches!(size, BodySize::None) {
        let mut body = Box::pin(body);
        while let Some(chunk) =
            futures_util::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await
        {
            let chunk: Bytes =
                chunk.map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?;
            framed.send(Message::Chunk(Some(chunk))).await?;
        }
        framed.send(Message::Chunk(None)).await?;
    }
    framed.flush().await?;
    let mut io = framed.into_parts().io;
    let _ = io.shutdown().await;
    Ok(())
}
