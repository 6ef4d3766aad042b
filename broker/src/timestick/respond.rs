//! A posted `response`: it names a request by `correlation_id`
//! (`<origin session>.<message_id>`) and goes into the queue of the session that sent
//! it (held until due), provided that session shares the target and is still active.

use std::sync::Arc;

use murmur_shared::ids::SessionId;
use serde_json::{json, Value};

use super::queue::{push, HeldPush};
use super::{TsError, LABEL};
use crate::node::Node;
use crate::scheduler::{self, Job};
use crate::session::Protocol;
use crate::store::{TsSession, TsState};

/// A posted `response`.
pub(super) struct Reply<'a> {
    pub message_id: &'a str,
    pub correlation_id: &'a str,
    pub payload: Value,
    pub timing: Option<Value>,
}

/// A `response` goes to the session that sent the request named by `correlation_id`.
pub(super) async fn respond(
    node: &Arc<Node>,
    s: &TsSession,
    reply: Reply<'_>,
    deliver_at: Option<i64>,
) -> Result<(), TsError> {
    let correlation_id = reply.correlation_id;
    let unknown = || {
        TsError::invalid(
            "correlation_id names no message this session received",
            Some(correlation_id),
        )
    };
    let (origin, original) = correlation_id
        .split_once('.')
        .and_then(|(o, m)| Some((SessionId::parse(o)?, m)))
        .ok_or_else(unknown)?;
    let origin_session = node.store().ts_get(origin).await?;
    let Some(origin_session) = origin_session.filter(|o| o.target == s.target) else {
        return Err(unknown());
    };
    if origin_session.state != TsState::Active {
        return Err(TsError::OriginEnded);
    }
    let mut msg = json!({
        "type": "response",
        "session_id": origin.to_string(),
        "message_id": format!("{}.{}", s.id, reply.message_id),
        "correlation_id": original,
        "payload": reply.payload,
        "from": {"caller": s.caller, "protocol": LABEL},
    });
    if let Some(t) = reply.timing {
        msg["~timing"] = t;
    }
    match deliver_at {
        Some(due) => {
            let job = Job::protocol(
                Protocol::TimeStick,
                &HeldPush {
                    session: origin,
                    msg,
                },
            );
            scheduler::hold(node, due, job).await?;
        }
        None => {
            push(node, origin, msg).await?;
        }
    }
    Ok(())
}
