//! `GET /chat`: the WebSocket upgrade. Authentication happens inside the protocol (the
//! `authenticate` action, within [`super::session::AUTH_TIMEOUT`]).

use actix_web::{web, HttpRequest, HttpResponse};
use murmur_broker::session::Protocol;
use murmur_shared::chat;

use super::session::ChatConn;
use crate::edge;
use crate::state::{refuse_if_draining, AppState};

/// `GET /chat` (WebSocket upgrade).
pub async fn chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if let Some(refused) = refuse_if_draining(&state) {
        return Ok(refused);
    }
    let (resp, out, stream) =
        state.ws_upgrade(&req, body, chat::MAX_FRAME_BYTES, Protocol::Chat)?;
    let state = state.into_inner();
    let metrics = state.node.metrics.clone();
    actix_web::rt::spawn(edge::conn::serve(
        metrics,
        ChatConn::new(state, out),
        stream,
    ));
    Ok(resp)
}
