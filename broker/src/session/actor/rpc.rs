//! Helios RPC bookkeeping of a session: the calls it made (waiting for their provider)
//! and the calls it serves (waiting for its client), cancel and progress. Only Helios
//! sessions make or serve calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use murmur_shared::envelope::{Address, Body, Control, Destination, Envelope, ErrorBody, Kind};
use murmur_shared::helios::ErrorCode;
use serde_json::Value;
use tracing::debug;
use uuid::Uuid;

use crate::metrics::outcome;
use crate::session::CallError;

use murmur_shared::helios::custom::TOO_MANY_REQUESTS;

use super::SessionActor;

/// The RPC state of a session: empty but for Helios sessions.
#[derive(Default)]
pub(super) struct Rpc {
    /// Calls this session made, by request id.
    pub(super) pending: HashMap<String, PendingCall>,
    /// Calls this session serves, by request id.
    pub(super) inflight: HashMap<String, Inflight>,
}

/// A call this session made, waiting for its provider.
pub(super) struct PendingCall {
    pub(super) provider: Address,
    pub(super) timer: SpawnHandle,
}

/// A request this session serves, waiting for its client's answer.
pub(super) struct Inflight {
    pub(super) reply_to: Address,
    /// The requester's own id, echoed in the response.
    pub(super) correlation: String,
}

/// Send an RPC request to a provider; the answer comes back as a response envelope.
#[derive(Message)]
#[rtype(result = "Result<(), CallError>")]
pub struct Call {
    pub request_id: String,
    pub method: String,
    pub payload: Value,
    pub timeout: Duration,
    pub timing: Option<Value>,
    pub provider: Address,
    /// `~timing` hold: the request reaches the provider then (the timeout still runs
    /// from now).
    pub deliver_at: Option<i64>,
}

impl Handler<Call> for SessionActor {
    type Result = Result<(), CallError>;

    fn handle(&mut self, call: Call, ctx: &mut Context<Self>) -> Self::Result {
        if self.rpc.pending.contains_key(&call.request_id) {
            return Err(CallError::Duplicate);
        }
        if self.rpc.pending.len() >= self.node.config.max_inflight_calls {
            return Err(CallError::TooMany);
        }
        let request_id = call.request_id.clone();
        let timer = ctx.run_later(call.timeout, move |act, ctx| {
            if let Some(call) = act.rpc.pending.remove(&request_id) {
                act.node
                    .metrics
                    .rpc_requests
                    .with_label_values(&[act.label(), "timeout"])
                    .inc();
                act.send_cancel(&call.provider, &request_id);
                act.answer_self(
                    request_id,
                    ErrorCode::RequestTimeout.as_str(),
                    "the provider did not answer in time",
                    ctx,
                );
            }
        });
        let env = Envelope::new(
            self.node.id(),
            Kind::Request,
            call.provider.to.clone(),
            Body::Json(call.payload),
        )
        .from(self.origin())
        .reply_to(self.my_address())
        .correlation(call.request_id.clone())
        .subject(call.method)
        .timing(call.timing);
        self.rpc.pending.insert(
            call.request_id,
            PendingCall {
                provider: call.provider.clone(),
                timer,
            },
        );
        match call.deliver_at {
            Some(due) => {
                let node = self.node.clone();
                let job = crate::scheduler::Job::SendTo {
                    to: call.provider.clone(),
                    env,
                };
                actix::spawn(async move {
                    if crate::scheduler::hold(&node, due, job).await.is_err() {
                        node.metrics.store_errors.with_label_values(&["hold"]).inc();
                    }
                });
            }
            None => self.node.router.send_to(&call.provider, Arc::new(env)),
        }
        Ok(())
    }
}

/// Cancel one of this session's calls (`system:cancel`); true if it was pending. The
/// cancelled request is answered `REQUEST_CANCELLED`.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CancelCall(pub String);

impl Handler<CancelCall> for SessionActor {
    type Result = bool;

    fn handle(&mut self, CancelCall(id): CancelCall, ctx: &mut Context<Self>) -> bool {
        let Some(call) = self.rpc.pending.remove(&id) else {
            return false;
        };
        ctx.cancel_future(call.timer);
        self.node
            .metrics
            .rpc_requests
            .with_label_values(&[self.label(), "cancelled"])
            .inc();
        self.send_cancel(&call.provider, &id);
        self.answer_self(
            id,
            ErrorCode::RequestCancelled.as_str(),
            "cancelled by the caller",
            ctx,
        );
        true
    }
}

/// The client answered a request it was sent; false if the id is unknown.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Respond {
    pub id: String,
    pub outcome: Result<Value, ErrorBody>,
    /// The answer's `~timing` (e.g. `in_time`), passed on to the caller.
    pub timing: Option<Value>,
}

impl Handler<Respond> for SessionActor {
    type Result = bool;

    fn handle(&mut self, r: Respond, _: &mut Context<Self>) -> bool {
        let Some(req) = self.rpc.inflight.remove(&r.id) else {
            return false;
        };
        let body = match r.outcome {
            Ok(v) => Body::Json(v),
            Err(e) => Body::Error(e),
        };
        let env = Envelope::new(
            self.node.id(),
            Kind::Response,
            req.reply_to.to.clone(),
            body,
        )
        .from(self.origin())
        .correlation(req.correlation)
        .timing(r.timing);
        self.node.router.send_to(&req.reply_to, Arc::new(env));
        true
    }
}

/// The client sent a progress notification for a request it serves; false if unknown.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Progress {
    pub id: String,
    pub topic: Option<String>,
    pub data: Value,
}

impl Handler<Progress> for SessionActor {
    type Result = bool;

    fn handle(&mut self, p: Progress, _: &mut Context<Self>) -> bool {
        let Some(req) = self.rpc.inflight.get(&p.id) else {
            return false;
        };
        let mut env = Envelope::new(
            self.node.id(),
            Kind::Notification,
            req.reply_to.to.clone(),
            Body::Json(p.data),
        )
        .from(self.origin())
        .correlation(req.correlation.clone());
        env.subject = p.topic;
        self.node
            .router
            .send_to(&req.reply_to.clone(), Arc::new(env));
        true
    }
}

impl SessionActor {
    pub(super) fn cancel_inflight(&mut self, why: &str) {
        for (_, req) in self.rpc.inflight.drain() {
            let answer = Envelope::new(
                self.node.id(),
                Kind::Response,
                req.reply_to.to.clone(),
                Body::Error(ErrorBody {
                    code: ErrorCode::RequestCancelled.as_str().into(),
                    message: why.into(),
                    details: None,
                }),
            )
            .correlation(req.correlation);
            self.node.router.send_to(&req.reply_to, Arc::new(answer));
        }
    }

    /// An error response to this session's own client for one of its calls.
    pub(super) fn answer_self(
        &mut self,
        request_id: String,
        code: &str,
        message: &str,
        ctx: &mut Context<Self>,
    ) {
        let env = Envelope::new(
            self.node.id(),
            Kind::Response,
            Destination::Session(self.id),
            Body::Error(ErrorBody {
                code: code.into(),
                message: message.into(),
                details: None,
            }),
        )
        .correlation(request_id);
        self.forward(Arc::new(env), ctx);
    }

    pub(super) fn send_cancel(&self, provider: &Address, request_id: &str) {
        let env = Envelope::new(
            self.node.id(),
            Kind::Control,
            provider.to.clone(),
            // unwrap: serializing a unit-like enum cannot fail.
            Body::Json(serde_json::to_value(Control::Cancel).unwrap()),
        )
        .from(self.origin())
        .reply_to(self.my_address())
        .correlation(request_id);
        self.node.router.send_to(provider, Arc::new(env));
    }

    pub(super) fn on_request(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        let (Some(reply_to), Some(correlation)) = (env.reply_to.clone(), env.correlation.clone())
        else {
            debug!("request without a reply address dropped");
            return;
        };
        // A call routed from another session (not a backend call to this very session)
        // needs this session to provide the namespace now: a caller's cached lookup may
        // be a moment old.
        let routed = matches!(reply_to.to, Destination::Session(_));
        let ns = env
            .subject
            .as_deref()
            .map(murmur_shared::helios::namespace)
            .unwrap_or("");
        if routed && !self.node.registry.is_provider(ns, self.id) {
            let answer = Envelope::new(
                self.node.id(),
                Kind::Response,
                reply_to.to.clone(),
                Body::Error(ErrorBody {
                    code: ErrorCode::MethodNotFound.as_str().into(),
                    message: format!("no provider for {:?}", env.subject.as_deref().unwrap_or("")),
                    details: None,
                }),
            )
            .correlation(correlation);
            self.node.router.send_to(&reply_to, Arc::new(answer));
            return;
        }
        if self.rpc.inflight.len() >= self.node.config.max_inflight_calls {
            self.node
                .metrics
                .rpc_requests
                .with_label_values(&[self.label(), "rejected"])
                .inc();
            let answer = Envelope::new(
                self.node.id(),
                Kind::Response,
                reply_to.to.clone(),
                Body::Error(ErrorBody {
                    code: TOO_MANY_REQUESTS.into(),
                    message: "provider has too many requests in flight".into(),
                    details: None,
                }),
            )
            .correlation(correlation);
            self.node.router.send_to(&reply_to, Arc::new(answer));
            return;
        }
        let local_id = Uuid::new_v4().to_string();
        self.rpc.inflight.insert(
            local_id.clone(),
            Inflight {
                reply_to,
                correlation,
            },
        );
        let mut forwarded = (*env).clone();
        forwarded.correlation = Some(local_id);
        self.forward(Arc::new(forwarded), ctx);
    }

    pub(super) fn on_response(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        let Some(id) = env.correlation.as_deref() else {
            return;
        };
        let Some(call) = self.rpc.pending.remove(id) else {
            // Timed out or cancelled meanwhile: the caller already has its answer.
            self.node
                .metrics
                .delivery(self.label(), outcome::UNDELIVERABLE);
            return;
        };
        ctx.cancel_future(call.timer);
        let result = if matches!(env.body, Body::Error(_)) {
            "error"
        } else {
            "ok"
        };
        self.node
            .metrics
            .rpc_requests
            .with_label_values(&[self.label(), result])
            .inc();
        self.forward(env, ctx);
    }
}
