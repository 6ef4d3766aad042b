//! START, POST and long-poll handlers, and the admin STOP/KILL endpoints: bodies are
//! decoded here, the broker's typed answers and refusals become HTTP statuses and JSON
//! bodies here ([`refusal`]), and `murmur_timestick_requests_total{kind,status}` counts
//! what the broker answered.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use murmur_broker::node::Node;
use murmur_broker::store::TsState;
use murmur_broker::timestick::{self, StartError, Submission, TsError};
use murmur_shared::fault::Fault;
use murmur_shared::ids::SessionId;
use murmur_shared::timestick::{self as wire, Cursor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::{self, BodyError};
use super::MAX_START_BODY;
use crate::api::error;
use crate::state::{bearer, AppState};

/// Longest long-poll wait, seconds.
pub const MAX_WAIT: u64 = 60;
/// Long-poll wait when none is asked for, seconds.
pub const DEFAULT_WAIT: u64 = 25;

fn json_status(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .json(body)
}

/// Counts a request the broker answered (`kind`: start, post, poll).
pub(super) fn count(node: &Node, kind: &str, status: u16) {
    node.metrics
        .timestick_requests
        .with_label_values(&[kind, &status.to_string()])
        .inc();
}

fn error_body(code: &str, message: &str) -> Value {
    json!({"status": "error", "error_code": code, "error_message": message})
}

/// The HTTP status and JSON body of a refused session request (CONTRACT §3): the status
/// is the error's [`Fault`](murmur_shared::fault::Fault) (a store failure is 503
/// `UNAVAILABLE`, whatever its kind), the body TimeStick's own code.
pub(super) fn refusal(id: SessionId, e: &TsError) -> (u16, Value) {
    (e.fault().http_status(), refusal_body(id, e))
}

fn refusal_body(id: SessionId, e: &TsError) -> Value {
    let message = e.to_string();
    match e {
        TsError::Unavailable(_) | TsError::Unpublished(_) => error_body("UNAVAILABLE", &message),
        TsError::NotFound => error_body("SESSION_NOT_FOUND", &message),
        TsError::Forbidden => error_body("FORBIDDEN", &message),
        TsError::Ended(state) => gone(state),
        TsError::TooLarge { .. } => error_body("MESSAGE_TOO_LARGE", &message),
        TsError::RateLimited => error_body("RATE_LIMITED", &message),
        TsError::Duplicate => error_body("DUPLICATE_MESSAGE", &message),
        TsError::Invalid {
            reason,
            correlation_id,
            expired,
        } => {
            let code = if *expired {
                "EXPIRED"
            } else {
                "INVALID_MESSAGE"
            };
            wire::error_response(&id.to_string(), correlation_id.as_deref(), code, reason)
        }
        TsError::OriginEnded => error_body("ORIGIN_ENDED", &message),
        TsError::CursorAhead => error_body("INVALID_REQUEST", &message),
    }
}

/// The 410 body of an ended session: how it ended.
fn gone(state: &TsState) -> Value {
    let mut body = error_body("SESSION_ENDED", "the session has ended");
    match state {
        TsState::Stopped { reason, details } => {
            body["error_code"] = json!("SESSION_STOPPED");
            body["action"] = json!("STOP");
            body["reason"] = json!(reason);
            body["details"] = json!(details);
        }
        TsState::Killed { level, reason } => {
            body["error_code"] = json!("SESSION_KILLED");
            body["action"] = json!("KILL");
            body["kill_level"] = json!(level);
            body["reason"] = json!(reason);
        }
        TsState::Active => {}
    }
    body
}

/// The response to a refused session request, counted as `kind`.
pub(super) fn refused(node: &Node, kind: &str, id: SessionId, e: &TsError) -> HttpResponse {
    let (status, body) = refusal(id, e);
    count(node, kind, status);
    json_status(status, &body)
}

/// The START-ERROR status of a refused START.
fn start_status(e: &StartError) -> u16 {
    match e {
        StartError::Draining | StartError::Unavailable(_) => 503,
        StartError::CallerMismatch | StartError::Quarantined => 403,
        StartError::NoTarget => 400,
        StartError::TooManySessions { .. } => 429,
    }
}

/// A refusal decided before the broker is asked: status and JSON body.
pub(super) struct Refused(u16, Value);

impl From<Refused> for HttpResponse {
    fn from(r: Refused) -> HttpResponse {
        json_status(r.0, &r.1)
    }
}

/// The verified principal, or the 401 response (`start` shapes it as START-ERROR).
pub(super) fn principal(
    state: &AppState,
    req: &HttpRequest,
    start: bool,
) -> Result<String, Refused> {
    let refuse = |why: String| {
        let body = if start {
            wire::start_error(&why)
        } else {
            json!({"status": "error", "error_code": "UNAUTHORIZED", "error_message": why})
        };
        Refused(401, body)
    };
    let Some(token) = bearer(req) else {
        return Err(refuse("Authorization: Bearer <token> required".into()));
    };
    state
        .verifier
        .verify(token)
        .map(|p| p.sub)
        .map_err(|e| refuse(e.to_string()))
}

pub(super) fn session_id(raw: &str) -> Result<SessionId, Refused> {
    SessionId::parse(raw).ok_or_else(|| {
        Refused(
            404,
            json!({"status": "error", "error_code": "SESSION_NOT_FOUND",
                    "error_message": "no such session"}),
        )
    })
}

/// The verified caller and the session id of a session request.
pub(super) fn caller_and_session(
    state: &AppState,
    req: &HttpRequest,
    raw_id: &str,
) -> Result<(String, SessionId), Refused> {
    Ok((principal(state, req, false)?, session_id(raw_id)?))
}

/// `POST /timestick/start` and `POST /timestick/<target>`.
///
/// The body is read only after the checks that need none: a declared `Content-Length`
/// over [`MAX_START_BODY`] is 413 at once, then the token; a streamed body is refused as
/// soon as it passes the limit ([`body`]).
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> HttpResponse {
    let too_large = || json_status(413, &wire::start_error("START body too large"));
    if body::declared_over(&req, MAX_START_BODY) {
        return body::unread(payload, too_large());
    }
    let sub = match principal(&state, &req, true) {
        Ok(s) => s,
        Err(resp) => return body::unread(payload, resp.into()),
    };
    let bytes = match body::read(&req, &mut payload, BytesMut::new(), MAX_START_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return body::unread(payload, too_large()),
        Err(BodyError::Broken(e)) => {
            let reason = format!("the body could not be read: {e}");
            return body::unread(payload, json_status(400, &wire::start_error(&reason)));
        }
    };
    // The raw path, decoded strictly here (actix's decoding maps invalid UTF-8 to
    // U+FFFD, which would let different paths name one target).
    let path_target = match wire::target_of_path(req.uri().path()) {
        Ok(t) => t,
        Err(e) => return json_status(400, &wire::start_error(&e)),
    };
    let start = match wire::decode_start(&bytes) {
        Ok(s) => s,
        Err(r) => return json_status(r.status, &wire::start_error(&r.reason)),
    };
    let transport = if req.connection_info().scheme() == "https" {
        "https"
    } else {
        "http"
    };
    match timestick::start(&state.node, &sub, start, path_target).await {
        Ok(s) => {
            count(&state.node, "start", 200);
            let ok = wire::start_ok(&s.id.to_string(), transport, s.max_message_size);
            HttpResponse::Ok().json(ok)
        }
        Err(e) => {
            let status = start_status(&e);
            count(&state.node, "start", status);
            json_status(status, &wire::start_error(&e.to_string()))
        }
    }
}

/// `POST /timestick/session/<id>`: one message.
///
/// A declared `Content-Length` over the receiver's limit (65535) is 413 before anything
/// else; then the token. A body that has all arrived with its head (the usual case) is
/// decoded and handed to the broker, which checks the session and records the message
/// in one store round trip. Otherwise the session and its state are checked first, and
/// only then is the rest of the body read, refused (413) as soon as it is longer than
/// the session's `max_message_size`, declared or streamed.
pub async fn post(
    req: HttpRequest,
    state: web::Data<AppState>,
    raw_id: &str,
    mut payload: web::Payload,
) -> HttpResponse {
    if body::declared_over(&req, wire::MAX_MESSAGE_SIZE) {
        let message = format!(
            "larger than {} bytes, the receiver's max_message_size",
            wire::MAX_MESSAGE_SIZE
        );
        let refusal = error_body("MESSAGE_TOO_LARGE", &message);
        return body::unread(payload, json_status(413, &refusal));
    }
    let (sub, id) = match caller_and_session(&state, &req, raw_id) {
        Ok(v) => v,
        Err(resp) => return body::unread(payload, resp.into()),
    };
    let node = &state.node;
    let (gate, bytes) = match body::arrived(&req, &mut payload).await {
        body::Arrived::Whole(bytes) => (None, bytes),
        body::Arrived::Partial(buf) => {
            let gate = match timestick::post_open(node, &sub, id).await {
                Ok(g) => g,
                Err(e) => return body::unread(payload, refused(node, "post", id, &e)),
            };
            match body::read(&req, &mut payload, buf, gate.max_message_size()).await {
                Ok(b) => (Some(gate), b),
                Err(BodyError::TooLarge) => {
                    return body::unread(payload, refused(node, "post", id, &gate.too_large()));
                }
                Err(BodyError::Broken(e)) => return broken(id, &e),
            }
        }
        body::Arrived::Broken(e) => {
            // Reported after the checks that need no body, as if it were still read.
            if let Err(e) = timestick::post_open(node, &sub, id).await {
                return refused(node, "post", id, &e);
            }
            return broken(id, &e);
        }
    };
    let submission = Submission {
        len: bytes.len() as u64,
        message: wire::decode_message(&bytes, &id.to_string()),
    };
    match timestick::post(node, &sub, id, gate, submission).await {
        Ok(accepted) => {
            count(node, "post", 202);
            HttpResponse::Accepted().json(AcceptedBody {
                message_id: &accepted.message_id,
                status: "accepted",
            })
        }
        Err(e) => refused(node, "post", id, &e),
    }
}

/// The 202 body, `{"message_id": …, "status": "accepted"}`, written without building a
/// JSON tree (the fields in the order `json!` would sort them).
#[derive(Serialize)]
struct AcceptedBody<'a> {
    message_id: &'a str,
    status: &'static str,
}

/// The 400 of a body whose transfer failed.
fn broken(id: SessionId, e: &str) -> HttpResponse {
    let reason = format!("the body could not be read: {e}");
    let refusal = wire::error_response(&id.to_string(), None, "INVALID_MESSAGE", &reason);
    json_status(400, &refusal)
}

#[derive(Deserialize)]
pub struct PollQuery {
    wait: Option<String>,
    after: Option<String>,
}

/// Parses `wait` (seconds, 0..=60) and `after` (a cursor).
pub(super) fn poll_args(
    wait: Option<&str>,
    after: Option<&str>,
) -> Result<(Duration, Option<Cursor>), Refused> {
    let bad = |m: &str| {
        Refused(
            400,
            json!({"status": "error", "error_code": "INVALID_REQUEST", "error_message": m}),
        )
    };
    let wait = match wait {
        None | Some("") => DEFAULT_WAIT,
        Some(w) => match w.parse::<u64>() {
            Ok(n) if n <= MAX_WAIT => n,
            _ => return Err(bad("wait must be whole seconds from 0 to 60")),
        },
    };
    let after = match after {
        None | Some("") => None,
        Some(a) => Some(Cursor::parse(a).ok_or_else(|| bad("after is not a cursor"))?),
    };
    Ok((Duration::from_secs(wait), after))
}

/// `GET /timestick/session/<id>?wait=&after=`: long-poll.
pub async fn poll(
    req: HttpRequest,
    state: web::Data<AppState>,
    raw_id: &str,
    query: web::Query<PollQuery>,
) -> HttpResponse {
    let (sub, id) = match caller_and_session(&state, &req, raw_id) {
        Ok(v) => v,
        Err(resp) => return resp.into(),
    };
    let (wait, after) = match poll_args(query.wait.as_deref(), query.after.as_deref()) {
        Ok(a) => a,
        Err(resp) => return resp.into(),
    };
    match timestick::poll(&state.node, &sub, id, after, wait, true).await {
        Ok(p) => {
            count(&state.node, "poll", 200);
            let messages: Vec<Value> = p.messages.into_iter().map(|(_, m)| m).collect();
            HttpResponse::Ok().json(json!({"messages": messages, "cursor": p.cursor}))
        }
        Err(e) => refused(&state.node, "poll", id, &e),
    }
}

#[derive(Deserialize, Default)]
pub struct StopBody {
    reason: Option<String>,
    details: Option<String>,
}

/// `POST /api/v1/timestick/sessions/<id>/stop {reason?, details?}`.
pub async fn admin_stop(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Option<web::Json<StopBody>>,
) -> HttpResponse {
    let Some(id) = SessionId::parse(&path) else {
        return error(Fault::NotFound, "no such session");
    };
    let body = body.map(|b| b.into_inner()).unwrap_or_default();
    let reason = body.reason.unwrap_or_else(|| "server-initiated".into());
    match timestick::stop_by_receiver(&state.node, id, &reason, body.details.as_deref()).await {
        Ok(()) => HttpResponse::Ok().json(json!({"stopped": true, "reason": reason})),
        Err(e) => admin_error(id, &e),
    }
}

#[derive(Deserialize)]
pub struct KillBody {
    kill_level: u64,
    reason: Option<String>,
}

/// `POST /api/v1/timestick/sessions/<id>/kill {kill_level, reason}`.
pub async fn admin_kill(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<KillBody>,
) -> HttpResponse {
    let Some(id) = SessionId::parse(&path) else {
        return error(Fault::NotFound, "no such session");
    };
    if body.kill_level > 3 {
        return error(Fault::Invalid, "kill_level must be 0, 1, 2 or 3");
    }
    let reason = body
        .reason
        .clone()
        .unwrap_or_else(|| "killed-by-receiver".into());
    match timestick::kill_by_receiver(&state.node, id, body.kill_level, &reason).await {
        Ok(()) => HttpResponse::Ok().json(json!({"killed": true, "kill_level": body.kill_level})),
        Err(e) => admin_error(id, &e),
    }
}

fn admin_error(id: SessionId, e: &TsError) -> HttpResponse {
    let body = refusal_body(id, e);
    let msg = body["error_message"].as_str().unwrap_or("refused");
    error(e.fault(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_202_body_is_byte_for_byte_what_json_gave() {
        let typed = serde_json::to_string(&AcceptedBody {
            message_id: "m-\"1\"",
            status: "accepted",
        })
        .unwrap();
        let tree = json!({"status": "accepted", "message_id": "m-\"1\""}).to_string();
        assert_eq!(typed, tree);
    }
}
