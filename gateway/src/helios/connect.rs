//! The `/starling` upgrade: who is connecting, and fresh session or recovery.
//!
//! * `?token=<jwt>` or `Authorization: Bearer <jwt>`: the Starling's user is `sub`. A
//!   present but invalid token is refused with 401 before the upgrade.
//! * `?recover=<recovery token>`: resume the Starling (any node, within the recovery
//!   window). `?recover=` alone is enough; with a client token too, its `sub` must be
//!   the recovered Starling's user.
//! * A failed recovery with a valid client token gives a fresh Starling and a
//!   `connection:recovery_failed` notification. Without a client token there is nobody
//!   to open a fresh Starling for: the notification is sent, then close 4003.
//! * Neither token: 401.

use actix_web::{web, HttpRequest, HttpResponse};
use std::sync::Arc;

use murmur_broker::session::{Attachment, OpenError, Protocol, SessionHandle};
use murmur_shared::fault::Fault;
use murmur_shared::ids::SessionId;
use serde::Deserialize;

use super::session::{self, Conn, Greeting};
use crate::api::error;
use crate::edge::{self, Out};
use crate::state::{client_token, refuse_if_draining, AppState};
use crate::ws::WsStream;

#[derive(Deserialize)]
pub struct StarlingQuery {
    token: Option<String>,
    recover: Option<String>,
}

/// `GET /starling` (WebSocket upgrade).
pub async fn starling(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<StarlingQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let node = state.node.clone();
    if let Some(refused) = refuse_if_draining(&state) {
        return Ok(refused);
    }
    let query = query.into_inner();
    let token = client_token(query.token.as_deref(), &req);
    let principal = match token.map(|t| state.verifier.verify(t)) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return Ok(error(Fault::Unauthorized, &e.to_string())),
        None => None,
    };
    let recover = query.recover.filter(|t| !t.is_empty());
    if principal.is_none() && recover.is_none() {
        return Ok(error(
            Fault::Unauthorized,
            "token required (?token= or Authorization)",
        ));
    }

    // Validate the upgrade before any session exists, so a bad handshake leaks nothing.
    let (resp, out, stream) = state.ws_upgrade(
        &req,
        body,
        murmur_shared::helios::MAX_MESSAGE_BYTES,
        Protocol::Helios,
    )?;
    let state = state.into_inner();
    let mut failure: Option<String> = None;
    if let Some(rt) = recover {
        match state.recovery.verify(&rt) {
            Err(e) => failure = Some(format!("invalid recovery token: {e}")),
            Ok(claims) => match SessionId::parse(&claims.starling_id) {
                None => failure = Some("invalid recovery token: bad starlingId".into()),
                Some(id) => {
                    let user = principal
                        .as_ref()
                        .map(|p| p.sub.as_str())
                        .or(claims.sub.as_deref());
                    match node.recover(id, user, Protocol::Helios).await {
                        Ok((handle, attachment, detached_ms)) => {
                            let greeting = Greeting::Recovered { detached_ms };
                            serve(state, handle, attachment, out, stream, greeting);
                            return Ok(resp);
                        }
                        Err(OpenError::Draining) => {
                            return Ok(error(Fault::Unavailable, "node is draining"))
                        }
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
            },
        }
    }

    let Some(principal) = principal else {
        // Recovery failed and there is no client token to open a fresh Starling with.
        let reason = failure.unwrap_or_default();
        session::refuse(out, reason);
        return Ok(resp);
    };
    match node.open(&principal.sub, Protocol::Helios, true).await {
        Ok((handle, attachment)) => {
            let greeting = match failure {
                Some(reason) => Greeting::RecoveryFailed(reason),
                None => Greeting::Fresh,
            };
            serve(state, handle, attachment, out, stream, greeting);
            Ok(resp)
        }
        Err(OpenError::Draining) => Ok(error(Fault::Unavailable, "node is draining")),
        Err(e) => Ok(error(Fault::Internal, &e.to_string())),
    }
}

/// Serves an attached Starling on the edge loop.
fn serve(
    state: Arc<AppState>,
    handle: SessionHandle,
    attachment: Attachment,
    out: Out,
    stream: WsStream,
    greeting: Greeting,
) {
    let metrics = state.node.metrics.clone();
    let conn = Conn::new(state, handle, attachment, out, greeting);
    actix_web::rt::spawn(edge::conn::serve(metrics, conn, stream));
}
