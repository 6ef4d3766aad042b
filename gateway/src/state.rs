//! What every request handler shares.

use std::sync::Arc;

use murmur_broker::auth::{RecoveryTokens, Verifier};
use murmur_broker::Node;

use murmur_broker::session::Protocol;

use crate::config::Settings;
use crate::edge::buffer::{OutboundBudget, SendBuffer};
use crate::edge::Out;
use crate::ws::WsStream;

/// Shared by every handler on both listeners.
pub struct AppState {
    pub node: Arc<Node>,
    /// Client JWT verification (HS256 or a public key).
    pub verifier: Verifier,
    /// Helios-Starling recovery tokens.
    pub recovery: RecoveryTokens,
    pub settings: Settings,
    /// Node-wide bytes buffered for client sockets (`MURMUR_OUTBOUND_NODE_MAX_BYTES`).
    pub outbound_budget: Arc<OutboundBudget>,
}

impl AppState {
    /// Accepts a WebSocket upgrade of `protocol` with this node's outbound bounds.
    pub fn ws_upgrade(
        &self,
        req: &actix_web::HttpRequest,
        payload: actix_web::web::Payload,
        max_message: usize,
        protocol: Protocol,
    ) -> Result<(actix_web::HttpResponse, Out, WsStream), actix_web::Error> {
        let (resp, buf, stream) = crate::ws::upgrade(
            req,
            payload,
            max_message,
            self.settings.outbound,
            &self.outbound_budget,
        )?;
        Ok((resp, self.out(buf, protocol), stream))
    }

    /// The write side of a connection of `protocol` over `buf`.
    pub fn out(&self, buf: SendBuffer, protocol: Protocol) -> Out {
        let messages_out = self
            .node
            .metrics
            .messages_out
            .with_label_values(&[protocol.label()]);
        Out::new(buf, messages_out)
    }
}

/// The bearer token of an `Authorization` header, if any.
pub fn bearer(req: &actix_web::HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A client token from `?token=` (if not empty) or the `Authorization` header.
pub fn client_token<'a>(
    query: Option<&'a str>,
    req: &'a actix_web::HttpRequest,
) -> Option<&'a str> {
    query.filter(|t| !t.is_empty()).or_else(|| bearer(req))
}

/// The answer to a new connection while the node drains (503), if it does.
pub fn refuse_if_draining(state: &AppState) -> Option<actix_web::HttpResponse> {
    state.node.is_draining().then(|| {
        crate::api::error(
            murmur_shared::fault::Fault::Unavailable,
            "node is draining; connect to another node",
        )
    })
}
