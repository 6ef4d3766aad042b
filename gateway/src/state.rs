//! What every request handler shares.

use std::sync::Arc;

use murmur_broker::auth::{RecoveryTokens, Verifier};
use murmur_broker::Node;

use crate::config::Settings;

/// Shared by every handler on both listeners.
pub struct AppState {
    pub node: Arc<Node>,
    /// Client JWT verification (HS256 or a public key).
    pub verifier: Verifier,
    /// Helios-Starling recovery tokens.
    pub recovery: RecoveryTokens,
    pub settings: Settings,
    /// Node-wide bytes buffered for client sockets (`MURMUR_OUTBOUND_NODE_MAX_BYTES`).
    pub outbound_budget: Arc<crate::ws::OutboundBudget>,
}

impl AppState {
    /// Accepts a WebSocket upgrade with this node's outbound bounds.
    pub fn ws_upgrade(
        &self,
        req: &actix_web::HttpRequest,
        payload: actix_web::web::Payload,
        max_message: usize,
    ) -> Result<
        (
            actix_web::HttpResponse,
            crate::ws::WsSink,
            crate::ws::WsStream,
        ),
        actix_web::Error,
    > {
        crate::ws::upgrade(
            req,
            payload,
            max_message,
            self.settings.outbound,
            &self.outbound_budget,
        )
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
