//! POST of one message: the session checks, the rate, the size and duplicate detection
//! in one store round trip ([`TsStore::ts_post`](crate::store::TsStore::ts_post)), then
//! the message is published (a request), queued for its origin (a response) or ends
//! the session (STOP, KILL), and settled once that is durable ([`settle`]). A request's
//! publication is settled by the Redis bus in the script that writes it.

use std::sync::Arc;

use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::timestick::Posted;
use murmur_shared::timing::TimingError;

use super::control::{kill, stop};
use super::respond::{respond, Reply};
use super::settle;
use super::targets::{immediate_publication, learn, request_envelope};
use super::{owned_by, record_ttl, TsError, LABEL};
use crate::bus::Settle;
use crate::node::Node;
use crate::scheduler::{self, Job};
use crate::store::{PostCheck, Recorded, StoreError, TsSession, TsState};

/// A POST's body, as the edge decoded it: its length and the typed message, or why it
/// is not one (reported only once the session checks have passed).
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub len: u64,
    pub message: Result<Posted, String>,
}

/// A message accepted (202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: String,
}

/// A POST that passed every check that needs no body (session, owner, state), with
/// its rate count taken: for a body that has not all arrived yet, which may now be
/// read, up to [`max_message_size`](Self::max_message_size) bytes.
#[derive(Debug)]
pub struct PostGate {
    s: TsSession,
    rate_ok: bool,
}

impl PostGate {
    /// The session's negotiated `max_message_size`: the longest body it accepts.
    pub fn max_message_size(&self) -> u64 {
        self.s.max_message_size
    }

    /// The refusal of a body longer than the session accepts.
    pub fn too_large(&self) -> TsError {
        TsError::TooLarge {
            max: self.max_message_size(),
        }
    }
}

/// A POST whose body is still to be read, first step: loads the session (counting the
/// message against its rate) and checks that `sub` is its caller and that it is active.
pub async fn post_open(node: &Arc<Node>, sub: &str, id: SessionId) -> Result<PostGate, TsError> {
    let (s, rate_ok) = node
        .store()
        .ts_get_counted(id, node.config.timestick_rate)
        .await?;
    let s = owned_by(s, sub)?;
    if s.state != TsState::Active {
        return Err(TsError::Ended(s.state));
    }
    learn(node, &s);
    Ok(PostGate { s, rate_ok })
}

/// POST of one message. `gate`: the first step's answer when the body was read after
/// it; without one, the session is checked in the same store round trip that records
/// the message ([`admit`]). Then the message takes effect ([`deliver`]).
pub async fn post(
    node: &Arc<Node>,
    sub: &str,
    id: SessionId,
    gate: Option<PostGate>,
    body: Submission,
) -> Result<Accepted, TsError> {
    let admitted = admit(node, sub, id, gate, body).await?;
    node.metrics.messages_in.with_label_values(&[LABEL]).inc();
    let (s, posted, deliver_at) = match admitted {
        Admitted::Published { message_id } => return Ok(Accepted { message_id }),
        Admitted::Recorded {
            session,
            posted,
            deliver_at,
        } => (*session, posted, deliver_at),
    };
    let message_id = posted.message_id().to_string();
    let settle = node.store().ts_settle_mark(id, &message_id);
    let delivered = settle::within_lease(deliver(node, s, posted, deliver_at, settle)).await;
    let settled = match delivered {
        Ok(settled) => settled,
        Err(e) if e.is_final() => {
            node.store().ts_settle(id, &message_id).await?;
            return Err(e);
        }
        // Unsettled: a retry of this message_id carries it out.
        Err(e) => return Err(e),
    };
    if !settled {
        node.store().ts_settle(id, &message_id).await?;
    }
    Ok(Accepted { message_id })
}

/// What the checks of a POST let through.
enum Admitted {
    /// A request due now, recorded and published by the store in the same step.
    Published { message_id: String },
    /// Recorded (unsettled): `posted` is still to take effect, due at `deliver_at`
    /// (`None`: now).
    Recorded {
        session: Box<TsSession>,
        posted: Posted,
        deliver_at: Option<i64>,
    },
}

/// The checks of a POST, in order: session (404, 403, 410), size, rate, the message
/// itself, its `~timing`, duplicate; around one store round trip, which records the
/// message only when all of them pass — and, for a request due now on a session this
/// node knows ([`super::targets`]), publishes it in the same step.
async fn admit(
    node: &Arc<Node>,
    sub: &str,
    id: SessionId,
    gate: Option<PostGate>,
    body: Submission,
) -> Result<Admitted, TsError> {
    if let Some(g) = &gate {
        if body.len > g.max_message_size() {
            return Err(g.too_large());
        }
        if !g.rate_ok {
            return Err(TsError::RateLimited);
        }
    }
    // The `~timing` plan before the store is asked, so that a refused message is not
    // recorded; reported (and counted) only once the session checks have passed.
    let plan = body.message.as_ref().ok().map(|posted| {
        let timing = match posted {
            Posted::Request { timing, .. } | Posted::Response { timing, .. } => timing.as_ref(),
            _ => None,
        };
        murmur_shared::timing::plan(timing, now_ms() as i64)
    });
    let message_id = match (&plan, &body.message) {
        (Some(Ok(_)), Ok(posted)) => Some(posted.message_id().to_string()),
        _ => None,
    };
    let check = PostCheck {
        caller: sub.to_string(),
        per_second: gate.is_none().then_some(node.config.timestick_rate),
        len: body.len,
        message_id,
        now_ms: now_ms(),
        ttl: record_ttl(node),
    };
    let immediate = match (&gate, &plan) {
        (None, Some(Ok(plan))) if plan.as_ref().is_none_or(|p| p.deliver_at.is_none()) => {
            immediate_publication(node, sub, id, &body.message)
        }
        _ => None,
    };
    let record = match immediate {
        Some((publication, message_id)) => {
            let record = node.store().ts_post_publish(id, check, publication).await?;
            if record.published {
                node.metrics
                    .bus_published
                    .with_label_values(&["channel"])
                    .inc();
                return Ok(Admitted::Published { message_id });
            }
            record
        }
        None => node.store().ts_post(id, check).await?,
    };
    let s = owned_by(record.session, sub)?;
    learn(node, &s);
    if s.state != TsState::Active {
        return Err(TsError::Ended(s.state));
    }
    if body.len > s.max_message_size {
        return Err(TsError::TooLarge {
            max: s.max_message_size,
        });
    }
    if !record.rate_ok {
        return Err(TsError::RateLimited);
    }
    let posted = body
        .message
        .map_err(|reason| TsError::invalid(reason, None))?;
    // A decoded message always has its plan (`None` cannot be met here).
    let deliver_at = match plan.unwrap_or(Ok(None)) {
        Ok(plan) => plan.and_then(|p| p.deliver_at),
        Err(e) => {
            node.metrics
                .timing
                .with_label_values(&[LABEL, "rejected"])
                .inc();
            return Err(TsError::Invalid {
                reason: e.to_string(),
                correlation_id: None,
                expired: matches!(e, TimingError::Expired),
            });
        }
    };
    match record.recorded {
        Some(Recorded::New) => {}
        Some(Recorded::Unsettled { since_ms }) => {
            settle::wait_or_take_over(node, id, posted.message_id(), since_ms).await?;
        }
        Some(Recorded::Settled) => return Err(TsError::Duplicate),
        None => {
            return Err(TsError::Unavailable(StoreError::corrupt(
                "the store did not record an admissible message",
            )))
        }
    }
    Ok(Admitted::Recorded {
        session: Box::new(s),
        posted,
        deliver_at,
    })
}

/// What an accepted message does: a request is published on the target channel (held
/// until due), a response queued for the session that sent the request, a STOP or
/// KILL ends the session. Each is durable when this returns; true when `settle` was
/// applied with it (a publication written through the Redis bus).
async fn deliver(
    node: &Arc<Node>,
    s: TsSession,
    posted: Posted,
    deliver_at: Option<i64>,
    settle: Option<Settle>,
) -> Result<bool, TsError> {
    match posted {
        Posted::Request {
            message_id,
            payload,
            timing,
        } => {
            let env = request_envelope(
                node,
                s.id,
                &s.caller,
                &s.target,
                &message_id,
                payload,
                timing,
            );
            match deliver_at {
                Some(due) => scheduler::hold(node, due, Job::Publish { env }).await?,
                None => {
                    return node
                        .router
                        .publish_confirmed(env, settle)
                        .await
                        .map_err(TsError::Unpublished)
                }
            }
        }
        Posted::Response {
            message_id,
            correlation_id,
            payload,
            timing,
        } => {
            let reply = Reply {
                message_id: &message_id,
                correlation_id: &correlation_id,
                payload,
                timing,
            };
            respond(node, &s, reply, deliver_at).await?;
        }
        Posted::Stop { reason, .. } => {
            let reason = reason.as_deref().unwrap_or("normal-termination");
            stop(node, s, true, reason, None).await?;
        }
        Posted::Kill {
            kill_level, reason, ..
        } => {
            let reason = reason.unwrap_or_else(|| "killed-by-caller".into());
            kill(node, s, kill_level, &reason).await?;
        }
    }
    Ok(false)
}
