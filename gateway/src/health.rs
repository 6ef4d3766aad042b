//! Liveness, readiness and metrics on the internal port.

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// 200 while the process serves.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 only while the node accepts traffic: not draining and the bus connected.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let node = &state.node;
    let body = json!({
        "ready": node.is_ready(),
        "draining": node.is_draining(),
        "bus": node.bus_up(),
        "node": node.id(),
    });
    if node.is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.node.metrics.render())
}
