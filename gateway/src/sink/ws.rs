//! Sink over WebSocket `/sink?token=<jwt>`: one binary message per frame, no length
//! prefix; the client id is the token's `sub`.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use murmur_broker::metrics::{outcome, Metrics};
use murmur_shared::api::ApiErrorCode;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::sink::MAX_FRAME;
use murmur_shared::wsframe::Message;
use serde::Deserialize;

use super::conn::{serve, FrameIo, Identity, WRITE_TIMEOUT};
use super::LABEL;
use crate::api::error;
use crate::state::{bearer, AppState};
use crate::ws::{SendError, WsSink, WsStream};

/// Frames as WebSocket binary messages.
pub struct WsFrames {
    ws: WsSink,
    stream: WsStream,
    /// Why the transport ends, sent in the close frame.
    close: Option<CloseReason>,
    /// A slow-consumer close is counted as `dropped_slow`.
    metrics: Arc<Metrics>,
}

impl FrameIo for WsFrames {
    async fn read_frame(&mut self) -> Option<Result<Vec<u8>, &'static str>> {
        loop {
            match self.stream.recv().await? {
                Ok(Message::Binary(b)) => return Some(Ok(b.to_vec())),
                Ok(Message::Text(_)) => {
                    self.close = Some(CloseReason::new(
                        CloseCode::UnsupportedData,
                        "binary frames only",
                    ));
                    return Some(Err("text message on the Sink WebSocket"));
                }
                Ok(Message::Ping(p)) => {
                    if self.ws.pong(&p).is_err() {
                        return None;
                    }
                }
                Ok(Message::Pong(_)) => {}
                Ok(Message::Close(_)) => return None,
                Err(e) => {
                    self.close = Some(CloseReason::new(e.close_code(), e.reason()));
                    return Some(Err("WebSocket protocol error"));
                }
            }
        }
    }

    async fn write_frame(&mut self, frame: &[u8]) -> Result<(), ()> {
        // The outbox pump's window bounds what is in flight, so a full buffer is waited
        // on, like a TCP write (a reading device drains it, however large the burst); a
        // device that leaves the window unacknowledged and its buffer full for the write
        // timeout is not reading.
        match self.ws.binary_waiting(frame, WRITE_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err(SendError::Full) => {
                self.close = Some(CloseReason::new(
                    CloseCode::SlowConsumer,
                    "slow consumer: outbound buffer full",
                ));
                Err(())
            }
            Err(SendError::Closed) => Err(()),
        }
    }

    async fn close(self, why: &CloseReason) -> CloseReason {
        let reason = self.close.unwrap_or_else(|| match why.code {
            CloseCode::Normal => CloseReason::new(CloseCode::Normal, "bye"),
            _ => why.clone(),
        });
        let slow = reason.code == CloseCode::SlowConsumer;
        if slow {
            self.metrics.delivery(LABEL, outcome::DROPPED_SLOW);
        }
        self.ws.close(Some(&reason), slow);
        reason
    }
}

#[derive(Deserialize)]
pub struct SinkQuery {
    token: Option<String>,
}

/// `GET /sink?token=` (WebSocket upgrade).
pub async fn sink(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<SinkQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    if state.node.is_draining() {
        return Ok(error(
            ApiErrorCode::Unavailable,
            "node is draining; connect to another node",
        ));
    }
    let token = query
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .or_else(|| bearer(&req));
    let Some(token) = token else {
        return Ok(error(
            ApiErrorCode::Unauthorized,
            "token required (?token=)",
        ));
    };
    let client = match state.verifier.verify(token) {
        Ok(p) => p.sub,
        Err(e) => return Ok(error(ApiErrorCode::Unauthorized, &e.to_string())),
    };
    let (resp, ws, stream) = state.ws_upgrade(&req, body, MAX_FRAME)?;
    let io = WsFrames {
        ws,
        stream,
        close: None,
        metrics: state.node.metrics.clone(),
    };
    actix_web::rt::spawn(serve(state.into_inner(), io, Identity::Fixed(client)));
    Ok(resp)
}
