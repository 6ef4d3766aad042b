//! `GET /api/v1/nodes`: live nodes and their session counts.

use actix_web::{web, HttpResponse};
use murmur_shared::fault::Fault;
use serde_json::json;

use super::error;
use crate::state::AppState;

pub async fn nodes(state: web::Data<AppState>) -> HttpResponse {
    match state.node.nodes().await {
        Ok(nodes) => {
            let list: Vec<_> = nodes
                .into_iter()
                .map(|n| {
                    let total: u64 = n.sessions.values().sum();
                    json!({
                        "id": n.id,
                        "sessions": total,
                        "sessionsByProtocol": n.sessions,
                        "startedMs": n.started_ms,
                        "heartbeatMs": n.heartbeat_ms,
                        "draining": n.draining,
                    })
                })
                .collect();
            HttpResponse::Ok().json(json!({"nodes": list}))
        }
        Err(e) => error(Fault::Unavailable, &format!("store unavailable: {e}")),
    }
}
