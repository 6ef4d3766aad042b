//! A session's queue: responses to its requests and control messages, pushed with a
//! wake-up of its polls on every node; responses held by `~timing` join it when due
//! ([`DuePush`], TimeStick's scheduler handler).

use std::sync::Arc;

use murmur_shared::ids::{now_ms, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{record_ttl, wake};
use crate::node::Node;
use crate::scheduler;
use crate::store::{StoreError, TsState};

/// A TimeStick response held by `~timing`, for its session's queue.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct HeldPush {
    pub(super) session: SessionId,
    pub(super) msg: Value,
}

/// TimeStick's scheduler handler: a held response joins its session's queue when due.
pub struct DuePush;

impl scheduler::DueHandler for DuePush {
    fn timing<'a>(&self, payload: &'a Value) -> Option<&'a Value> {
        payload.get("msg").and_then(|m| m.get("~timing"))
    }

    fn run(&self, node: Arc<Node>, payload: Value) -> scheduler::DueRun {
        Box::pin(async move {
            let h: HeldPush = serde_json::from_value(payload)?;
            push_held(&node, h.session, h.msg).await?;
            Ok(())
        })
    }
}

/// Queues a held response once due, unless its session has ended meanwhile.
async fn push_held(node: &Arc<Node>, id: SessionId, msg: Value) -> Result<(), StoreError> {
    match node.store().ts_get(id).await? {
        Some(s) if s.state == TsState::Active => push(node, id, msg).await.map(|_| ()),
        _ => Ok(()),
    }
}

/// Queues a message for a session and wakes its polls; returns its queue position.
pub(super) async fn push(node: &Arc<Node>, id: SessionId, msg: Value) -> Result<u64, StoreError> {
    let entry = json!({"m": msg, "t": now_ms()});
    let cap = node.config.timestick_queue;
    let seq = node
        .store()
        .ts_push(id, entry, cap, record_ttl(node))
        .await?;
    wake(node, id);
    Ok(seq)
}
