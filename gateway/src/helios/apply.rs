//! What each Helios frame does: [`helios::decode`] (in the adapter's `decode`) gave a
//! typed frame; this module applies it to the session and answers. Broker calls run
//! through [`Adapter::during`], so deliveries keep flowing while they are awaited.
//!
//! Built-in methods (served by the broker): `starling:getToken` (alias `starling:state`),
//! `system:ping`, `system:cancel`, `broker:subscribe|unsubscribe|publish`,
//! `broker:provide|unprovide`. Any other `ns:action` goes to a provider of `ns`.

use std::time::Duration;

use murmur_broker::session::{CallError, SessionError, SessionHandle};
use murmur_shared::channel;
use murmur_shared::envelope::ErrorBody;
use murmur_shared::helios::{self, ErrorCode, Frame, Request, WireError};
use murmur_shared::ids::now_ms;
use murmur_shared::timing::{self, TimingError};
use serde_json::{json, Value};

use super::session::{Conn, LABEL};
use super::BUILTIN_NAMESPACES;
use crate::edge::{Adapter, Flow, Stop};

use murmur_shared::fault::Fault;
use murmur_shared::helios::custom::EXPIRED;

/// Applies one decoded frame.
pub async fn frame(conn: &mut Conn, frame: Frame) -> Flow {
    match frame {
        Frame::Request(req) => request(conn, req).await,
        Frame::Response(resp) => {
            let outcome = match resp.outcome {
                Ok(data) => Ok(data.unwrap_or(Value::Null)),
                Err(e) => Err(ErrorBody {
                    code: e.code,
                    message: e.message,
                    details: e.details,
                }),
            };
            // An answer to something no longer in flight (timed out, cancelled) is dropped.
            call(conn, |h| async move {
                h.respond(&resp.request_id, outcome, resp.timing).await
            })
            .await
            .map(|_| ())
        }
        Frame::Notification(n) => {
            // A notification naming a request this client serves is progress for its caller.
            if let Some(id) = n.request_id {
                call(
                    conn,
                    |h| async move { h.progress(&id, n.topic, n.data).await },
                )
                .await?;
            }
            Ok(())
        }
    }
}

fn ok(id: &str, data: Value) -> String {
    helios::encode_success(id, Some(&data), now_ms())
}

fn err(id: &str, code: ErrorCode, message: impl Into<String>) -> String {
    helios::encode_error(id, &WireError::new(code, message), now_ms())
}

/// A failed session operation, answered with its [`Fault`]'s Helios code: the store or
/// bus away is `UNAVAILABLE`, a session that ended meanwhile `INTERNAL_ERROR`, a
/// refused argument or limit `VALIDATION_ERROR`.
fn session_err(id: &str, e: SessionError) -> String {
    fault_err(id, e.fault(), &e.to_string())
}

fn fault_err(id: &str, fault: Fault, message: &str) -> String {
    custom_err(id, fault.helios_code(), message)
}

fn custom_err(id: &str, code: &str, message: &str) -> String {
    let e = WireError {
        code: code.into(),
        message: message.into(),
        details: None,
    };
    helios::encode_error(id, &e, now_ms())
}

/// A string field of the payload.
fn field<'a>(payload: &'a Option<Value>, name: &str) -> Result<&'a str, String> {
    payload
        .as_ref()
        .and_then(|p| p.get(name))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("payload.{name} must be a string"))
}

fn channel_arg(payload: &Option<Value>) -> Result<&str, String> {
    let c = field(payload, "channel")?;
    channel::validate(c).map(|()| c)
}

fn namespace_arg(payload: &Option<Value>) -> Result<&str, String> {
    let ns = field(payload, "namespace")?;
    helios::validate_namespace(ns)?;
    if helios::is_reserved_namespace(ns) || BUILTIN_NAMESPACES.contains(&ns) {
        return Err(format!("namespace {ns:?} is reserved"));
    }
    Ok(ns)
}

/// Runs a call on the session's handle while deliveries keep being written.
async fn call<T, F>(conn: &mut Conn, f: impl FnOnce(SessionHandle) -> F) -> Result<T, Stop>
where
    F: std::future::Future<Output = T>,
{
    let h = conn.handle.clone();
    conn.during(f(h)).await
}

async fn request(conn: &mut Conn, req: Request) -> Flow {
    let id = req.request_id.as_str();
    // `~timing`: malformed → INVALID_MESSAGE_FORMAT, already expired → EXPIRED, a hold
    // beyond ten minutes → VALIDATION_ERROR.
    let deliver_at = match timing::plan(req.timing.as_ref(), now_ms() as i64) {
        Ok(plan) => plan.and_then(|p| p.deliver_at),
        Err(e) => {
            conn.state
                .node
                .metrics
                .timing
                .with_label_values(&[LABEL, "rejected"])
                .inc();
            let out = match e {
                TimingError::Invalid(_) => err(id, ErrorCode::InvalidMessageFormat, e.to_string()),
                TimingError::Expired => custom_err(id, EXPIRED, &e.to_string()),
                TimingError::TooLong(_) => err(id, ErrorCode::ValidationError, e.to_string()),
            };
            return conn.send(out);
        }
    };
    let out = match req.method.as_str() {
        "system:ping" => ok(id, json!({"pong": true, "timestamp": now_ms()})),
        "starling:getToken" | "starling:state" => {
            match call(conn, |h| async move { h.snapshot().await }).await? {
                Ok(snap) => {
                    let state =
                        json!({"subscriptions": snap.subscriptions, "provides": snap.provides});
                    let token =
                        conn.state
                            .recovery
                            .issue(&snap.id.to_string(), &snap.user, state.clone());
                    let mut data = json!({
                        "token": token,
                        "expiresIn": conn.state.recovery.ttl_secs(),
                        "starlingId": snap.id.to_string(),
                    });
                    if req.method == "starling:state" {
                        data["state"] = state;
                    }
                    ok(id, data)
                }
                Err(e) => err(id, ErrorCode::InternalError, e.to_string()),
            }
        }
        "broker:subscribe" => match channel_arg(&req.payload) {
            Err(e) => err(id, ErrorCode::ValidationError, e),
            Ok(ch) => match call(conn, |h| async move { h.subscribe(ch).await }).await? {
                Ok(added) => ok(
                    id,
                    json!({"channel": ch, "subscribed": true, "changed": added}),
                ),
                Err(e) => session_err(id, e),
            },
        },
        "broker:unsubscribe" => match channel_arg(&req.payload) {
            Err(e) => err(id, ErrorCode::ValidationError, e),
            Ok(ch) => match call(conn, |h| async move { h.unsubscribe(ch).await }).await? {
                Ok(was) => ok(
                    id,
                    json!({"channel": ch, "subscribed": false, "changed": was}),
                ),
                Err(e) => session_err(id, e),
            },
        },
        "broker:publish" => match channel_arg(&req.payload)
            .and_then(|ch| channel::check_publishable(ch).map(|()| ch))
        {
            // Broker-owned channels (`sink/…`, `@…`) take no client publication.
            Err(e) => err(id, ErrorCode::ValidationError, e),
            Ok(ch) => {
                let data = req.payload.as_ref().and_then(|p| p.get("data")).cloned();
                let timing = req.timing.clone();
                let published = call(conn, |h| async move {
                    h.publish(ch, data.unwrap_or(Value::Null), timing, deliver_at)
                        .await
                })
                .await?;
                match published {
                    Ok(message_id) => {
                        let mut data = json!({"channel": ch, "messageId": message_id});
                        if let Some(due) = deliver_at {
                            data["deliverAt"] = json!(timing::format(due));
                        }
                        ok(id, data)
                    }
                    Err(e) => session_err(id, e),
                }
            }
        },
        "broker:provide" => match namespace_arg(&req.payload) {
            Err(e) => err(id, ErrorCode::ValidationError, e),
            Ok(ns) => match call(conn, |h| async move { h.provide(ns).await }).await? {
                Ok(added) => ok(
                    id,
                    json!({"namespace": ns, "providing": true, "changed": added}),
                ),
                Err(e) => session_err(id, e),
            },
        },
        "broker:unprovide" => match namespace_arg(&req.payload) {
            Err(e) => err(id, ErrorCode::ValidationError, e),
            Ok(ns) => match call(conn, |h| async move { h.unprovide(ns).await }).await? {
                Ok(was) => ok(
                    id,
                    json!({"namespace": ns, "providing": false, "changed": was}),
                ),
                Err(e) => session_err(id, e),
            },
        },
        "system:cancel" => match field(&req.payload, "requestId") {
            Err(e) => err(id, ErrorCode::ValidationError, e),
            Ok(target) => {
                let cancelled = call(conn, |h| async move { h.cancel(target).await }).await?;
                ok(id, json!({"requestId": target, "cancelled": cancelled}))
            }
        },
        method => {
            let ns = helios::namespace(method);
            if helios::is_reserved_namespace(ns) || BUILTIN_NAMESPACES.contains(&ns) {
                err(
                    id,
                    ErrorCode::MethodNotFound,
                    format!("no method {method:?}"),
                )
            } else {
                return route(conn, req, deliver_at).await;
            }
        }
    };
    conn.send(out)
}

/// Routes a request to a provider; its answer arrives later through the session.
async fn route(conn: &mut Conn, req: Request, deliver_at: Option<i64>) -> Flow {
    let default = conn.state.node.config.call_timeout;
    let timeout = req
        .timeout_ms
        .map_or(default, |ms| Duration::from_millis(ms).min(default));
    let payload = req.payload.unwrap_or(Value::Null);
    let id = req.request_id;
    let method = req.method.clone();
    let timing = req.timing;
    let call_id = id.clone();
    let result = call(conn, |h| async move {
        h.call(&call_id, &method, payload, timeout, timing, deliver_at)
            .await
    })
    .await?;
    let e = match result {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let counted = match e {
        CallError::NoProvider => Some("not_found"),
        CallError::TooMany => Some("rejected"),
        CallError::Duplicate | CallError::Gone => None,
    };
    if let Some(outcome) = counted {
        conn.state
            .node
            .metrics
            .rpc_requests
            .with_label_values(&[LABEL, outcome])
            .inc();
    }
    let message = match e {
        CallError::NoProvider => format!("no provider for {:?}", req.method),
        CallError::Duplicate => "a request with this requestId is in flight".into(),
        CallError::TooMany => "too many requests in flight".into(),
        CallError::Gone => "session ended".into(),
    };
    let out = fault_err(&id, e.fault(), &message);
    conn.send(out)
}
