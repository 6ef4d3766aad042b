//! `POST /api/v1/starlings/<id>/requests {method, payload, timeoutMs}`: call a method on
//! one connected Starling and answer with its response.
//!
//! * The Starling answered (success or its own error): 200 with
//!   `{"success": true, "data"}` or `{"success": false, "error": {code, message}}`.
//! * No such Starling anywhere: 404 `NOT_FOUND`. No answer in time: 504
//!   `REQUEST_TIMEOUT`. The Starling went away first: 502 `REQUEST_CANCELLED`.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use murmur_broker::node::RequestError;
use murmur_shared::envelope::Body;
use murmur_shared::fault::Fault;
use murmur_shared::helios;
use murmur_shared::ids::SessionId;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error;
use crate::state::AppState;

/// Longest timeout a backend call may ask for.
const MAX_TIMEOUT_MS: u64 = 300_000;
/// Timeout when the call does not say.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

#[derive(Deserialize)]
pub struct RequestBody {
    method: String,
    #[serde(default)]
    payload: Value,
    #[serde(rename = "timeoutMs")]
    timeout_ms: Option<u64>,
}

pub async fn request(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RequestBody>,
) -> HttpResponse {
    let body = body.into_inner();
    let Some(id) = SessionId::parse(&path) else {
        return error(Fault::NotFound, "no such starling (ids are UUIDs)");
    };
    if let Err(e) = helios::validate_method(&body.method) {
        return error(Fault::Invalid, &format!("method: {e}"));
    }
    let timeout_ms = body.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return error(
            Fault::Invalid,
            &format!("timeoutMs must be between 1 and {MAX_TIMEOUT_MS}"),
        );
    }
    let timeout = Duration::from_millis(timeout_ms);
    match state
        .node
        .request(id, &body.method, body.payload, timeout)
        .await
    {
        Ok(answer) => HttpResponse::Ok().json(match &answer.body {
            Body::Error(e) => json!({"success": false, "error": e}),
            Body::Json(v) => json!({"success": true, "data": v}),
            Body::Bytes(_) => json!({"success": true, "data": null}),
            Body::Texts(_) => json!({"success": true, "data": answer.body.value()}),
        }),
        Err(RequestError::NotFound) => error(Fault::NotFound, "no such starling"),
        Err(RequestError::Timeout) => error(Fault::Timeout, "the starling did not answer in time"),
        Err(RequestError::Cancelled(why)) => error(Fault::Cancelled, &why),
    }
}
