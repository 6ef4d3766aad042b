//! START: checks the caller, picks the target and creates the session record.

use std::sync::Arc;

use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::timestick::{self as wire, Start};

use super::{event, record_ttl, StartError};
use crate::node::Node;
use crate::store::{TsSession, TsState};

/// A started session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub id: SessionId,
    /// The negotiated `max_message_size`.
    pub max_message_size: u64,
}

/// START: `sub` is the verified token's subject; `path_target` the target of
/// `POST /timestick/<target>` (else `requested_uri` names it).
pub async fn start(
    node: &Arc<Node>,
    sub: &str,
    start: Start,
    path_target: Option<String>,
) -> Result<Started, StartError> {
    if node.is_draining() {
        return Err(StartError::Draining);
    }
    if start.caller_id != sub {
        return Err(StartError::CallerMismatch);
    }
    let store = node.store();
    if store.ts_quarantined(sub).await? {
        return Err(StartError::Quarantined);
    }
    let target = match (path_target, start.requested_target) {
        (Some(p), _) => p,
        (None, Some(t)) => t,
        (None, None) => return Err(StartError::NoTarget),
    };
    let max = start
        .max_message_size
        .unwrap_or(wire::MAX_MESSAGE_SIZE)
        .min(wire::MAX_MESSAGE_SIZE);
    let tail = store
        .history_tail(&target)
        .await?
        .unwrap_or_else(|| "0-0".into());
    let session = TsSession {
        id: SessionId::random(),
        caller: sub.to_string(),
        target,
        max_message_size: max,
        created_ms: now_ms(),
        state: TsState::Active,
        channel_floor: tail.clone(),
        channel_confirmed: tail,
        channel_ceiling: None,
        final_seq: None,
    };
    let limit = node.config.timestick_sessions_per_caller;
    if !store
        .ts_create(session.clone(), limit, record_ttl(node))
        .await?
    {
        return Err(StartError::TooManySessions { limit });
    }
    event(node, "started");
    Ok(Started {
        id: session.id,
        max_message_size: max,
    })
}
