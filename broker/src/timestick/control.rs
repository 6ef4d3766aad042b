//! Ending sessions: STOP (by the caller or the receiver), KILL levels 0–3, the
//! receiver's admin STOP/KILL, stopping every session of a draining embedded node, and
//! the idle sweep.

use std::sync::Arc;
use std::time::Duration;

use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::timestick as wire;
use tracing::{debug, warn};

use super::queue::push;
use super::{event, record_ttl, wake, TsError};
use crate::node::Node;
use crate::store::{TsSession, TsState};

/// STOP: by the caller (queued messages discarded, `STOP-OK` queued) or by the receiver
/// (`STOP` with reason queued last, after what was already queued).
pub(super) async fn stop(
    node: &Arc<Node>,
    mut s: TsSession,
    by_caller: bool,
    reason: &str,
    details: Option<&str>,
) -> Result<(), TsError> {
    let store = node.store();
    let tail = store
        .history_tail(&s.target)
        .await?
        .unwrap_or_else(|| "0-0".into());
    let id_text = s.id.to_string();
    let fin = if by_caller {
        store.ts_clear(s.id).await?;
        s.channel_floor = tail.clone();
        wire::control(&id_text, "STOP-OK", Some(reason), None)
    } else {
        wire::control(&id_text, "STOP", Some(reason), details)
    };
    s.channel_ceiling = Some(tail);
    s.state = TsState::Stopped {
        reason: reason.to_string(),
        details: details.map(str::to_string),
    };
    s.final_seq = Some(push(node, s.id, fin).await?);
    store.ts_put(s.clone(), record_ttl(node)).await?;
    store.ts_end(s.id, &s.caller).await?;
    wake(node, s.id);
    event(
        node,
        if by_caller {
            "stopped_by_caller"
        } else {
            "stopped_by_receiver"
        },
    );
    Ok(())
}

/// KILL `level` (documented in docs/timestick.md): 0 = STOP; 1 = immediate, queue
/// dropped, open polls answered 410; 2 = level 1 for every session of the caller;
/// 3 = level 2 and the caller is quarantined from new STARTs.
pub(super) async fn kill(
    node: &Arc<Node>,
    s: TsSession,
    level: u64,
    reason: &str,
) -> Result<(), TsError> {
    if level == 0 {
        return stop(node, s, true, reason, None).await;
    }
    let store = node.store();
    let mut victims = vec![s.clone()];
    if level >= 2 {
        for id in store.ts_sessions_of(&s.caller).await? {
            if id != s.id {
                if let Some(other) = store.ts_get(id).await? {
                    victims.push(other);
                }
            }
        }
    }
    if level >= 3 {
        store
            .ts_quarantine(&s.caller, node.config.timestick_quarantine)
            .await?;
    }
    for mut v in victims {
        if matches!(v.state, TsState::Killed { .. }) {
            continue;
        }
        v.state = TsState::Killed {
            level,
            reason: reason.to_string(),
        };
        store.ts_clear(v.id).await?;
        store.ts_put(v.clone(), record_ttl(node)).await?;
        store.ts_end(v.id, &v.caller).await?;
        wake(node, v.id);
        event(node, "killed");
    }
    Ok(())
}

/// Receiver-initiated STOP (admin API, idle timeout).
pub async fn stop_by_receiver(
    node: &Arc<Node>,
    id: SessionId,
    reason: &str,
    details: Option<&str>,
) -> Result<(), TsError> {
    let s = node.store().ts_get(id).await?.ok_or(TsError::NotFound)?;
    if s.state != TsState::Active {
        return Err(TsError::Ended(s.state));
    }
    stop(node, s, false, reason, details).await
}

/// Receiver-initiated KILL (admin API).
pub async fn kill_by_receiver(
    node: &Arc<Node>,
    id: SessionId,
    level: u64,
    reason: &str,
) -> Result<(), TsError> {
    let s = node.store().ts_get(id).await?.ok_or(TsError::NotFound)?;
    if matches!(s.state, TsState::Killed { .. }) {
        return Err(TsError::Ended(s.state));
    }
    if level == 0 {
        if s.state != TsState::Active {
            return Err(TsError::Ended(s.state));
        }
        return stop(node, s, false, reason, None).await;
    }
    kill(node, s, level, reason).await
}

/// Stops every active session with a receiver STOP (`reason`), e.g. `draining` on an
/// embedded node whose sessions end with its process. Returns how many were stopped.
pub async fn stop_all(node: &Arc<Node>, reason: &str) -> usize {
    let Ok(ids) = node.store().ts_idle(u64::MAX, 100_000).await else {
        return 0;
    };
    let mut stopped = 0;
    for id in ids {
        if stop_by_receiver(node, id, reason, None).await.is_ok() {
            stopped += 1;
        }
    }
    stopped
}

/// Stops idle sessions (no request for `timestick_idle`) with reason `idle-timeout`;
/// runs on every node, each idle session is claimed by exactly one.
pub fn spawn_idle_sweeper(node: &Arc<Node>) {
    let weak = Arc::downgrade(node);
    let idle = node.config.timestick_idle;
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    actix::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let Some(node) = weak.upgrade() else { break };
            let before = now_ms().saturating_sub(idle.as_millis() as u64);
            let ids = match node.store().ts_idle(before, 100).await {
                Ok(ids) => ids,
                Err(e) => {
                    debug!(error = %e, "idle sweep skipped");
                    continue;
                }
            };
            for id in ids {
                if !matches!(node.store().ts_claim_idle(id).await, Ok(true)) {
                    continue;
                }
                match stop_by_receiver(&node, id, "idle-timeout", None).await {
                    Ok(()) => event(&node, "idle_timeout"),
                    Err(TsError::Ended(_) | TsError::NotFound) => {}
                    Err(e) => warn!(session = %id, error = %e, "idle stop failed"),
                }
            }
        }
    });
}
