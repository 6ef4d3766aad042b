//! The backend/admin API on the internal port: `/api/v1/*`, bearer `MURMUR_API_KEY`.
//! Every error is `{"error":{"code","message"}}`: the code and status of a
//! [`Fault`] (`murmur_shared::fault`, docs/errors.md).

mod nodes;
mod publish;
mod starlings;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{body::BoxBody, web, HttpResponse};
use murmur_shared::fault::Fault;

use crate::state::{bearer, AppState};

/// Largest accepted API body.
pub const MAX_BODY: usize = 1024 * 1024;

/// An API error response.
pub fn error(fault: impl Into<Fault>, message: &str) -> HttpResponse {
    let fault = fault.into();
    let status = actix_web::http::StatusCode::from_u16(fault.http_status()).unwrap_or_default();
    HttpResponse::build(status).json(murmur_shared::api::body(fault, message))
}

/// A refused `~timing`, as an API error (400 malformed or too long, 422 expired).
pub struct TimingRefused(Fault, String);

impl From<TimingRefused> for HttpResponse {
    fn from(r: TimingRefused) -> HttpResponse {
        error(r.0, &r.1)
    }
}

/// Checks an API request's `~timing`; `Ok(Some(due))` when it is to be held.
pub fn plan_timing(
    state: &AppState,
    decorator: Option<&serde_json::Value>,
) -> Result<Option<i64>, TimingRefused> {
    let now = murmur_shared::ids::now_ms() as i64;
    match murmur_shared::timing::plan(decorator, now) {
        Ok(plan) => Ok(plan.and_then(|p| p.deliver_at)),
        Err(e) => {
            state
                .node
                .metrics
                .timing
                .with_label_values(&["api", "rejected"])
                .inc();
            let code = match e {
                murmur_shared::timing::TimingError::Expired => Fault::Expired,
                _ => Fault::Invalid,
            };
            Err(TimingRefused(code, e.to_string()))
        }
    }
}

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_api_key(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let resp = authorize_then(
        req,
        next,
        state.as_ref().and_then(|s| s.settings.api_key.clone()),
    )
    .await?;
    if let Some(state) = state {
        let status = resp.status().as_u16().to_string();
        state
            .node
            .metrics
            .api_requests
            .with_label_values(&[&route, &status])
            .inc();
    }
    Ok(resp)
}

async fn authorize_then(
    req: ServiceRequest,
    next: Next<BoxBody>,
    api_key: Option<String>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let ok = match api_key {
        Some(key) => {
            bearer(req.request()).is_some_and(|t| constant_time_eq(t.as_bytes(), key.as_bytes()))
        }
        None => false,
    };
    if !ok {
        let resp = error(Fault::Unauthorized, "missing or invalid API key");
        return Ok(req.into_response(resp));
    }
    next.call(req).await
}

/// JSON body errors in the API's shape.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY)
        .error_handler(|err, _| {
            let (code, msg) = match &err {
                actix_web::error::JsonPayloadError::Overflow { .. }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                    (Fault::TooLarge, "body too large".to_string())
                }
                e => (Fault::Invalid, format!("invalid JSON body: {e}")),
            };
            actix_web::error::InternalError::from_response(err, error(code, &msg)).into()
        })
}

/// Mounts `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(actix_web::middleware::from_fn(require_api_key))
            .app_data(json_config())
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                let resp = error(Fault::Invalid, &err.to_string());
                actix_web::error::InternalError::from_response(err, resp).into()
            }))
            .route("/publish", web::post().to(publish::publish))
            .route(
                "/starlings/{id}/requests",
                web::post().to(starlings::request),
            )
            .route("/nodes", web::get().to(nodes::nodes))
            .route(
                "/sink/clients/{id}/events",
                web::post().to(crate::sink::api::queue_event),
            )
            .route(
                "/sink/clients/{id}/nacks",
                web::get().to(crate::sink::api::nacks),
            )
            .route(
                "/sink/clients/{id}",
                web::get().to(crate::sink::api::client),
            )
            .route(
                "/sink/quarantine/{id}",
                web::put().to(crate::sink::api::quarantine),
            )
            .route(
                "/sink/quarantine/{id}",
                web::delete().to(crate::sink::api::lift),
            )
            .route(
                "/timestick/sessions/{id}/stop",
                web::post().to(crate::timestick::admin_stop),
            )
            .route(
                "/timestick/sessions/{id}/kill",
                web::post().to(crate::timestick::admin_kill),
            )
            .default_service(web::to(|| async {
                error(Fault::NotFound, "no such API endpoint")
            })),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
