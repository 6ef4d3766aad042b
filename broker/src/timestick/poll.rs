//! Long-poll (and the SSE stream's reads): cursors, confirmation, and the merge of the
//! target channel's history with the session's queue.

use std::sync::Arc;
use std::time::Duration;

use murmur_shared::envelope::{Body, Envelope};
use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::timestick::Cursor;
use serde_json::{json, Value};

use super::{load, record_ttl, wake_channel, TsError, LABEL, POLL_LIMIT};
use crate::node::Node;
use crate::session::Protocol;
use crate::store::{TsSession, TsState};
use crate::watch::Watch;

/// One poll's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// `(cursor after this message, message)`, oldest first.
    pub messages: Vec<(String, Value)>,
    pub cursor: String,
    /// The session's final control message is among `messages`: nothing follows.
    pub finished: bool,
}

fn max_pos(a: &str, b: &str) -> String {
    if Envelope::seq_after(a, b) {
        a.to_string()
    } else {
        b.to_string()
    }
}

/// Long-poll: waits up to `wait` for at least one message after `after`. With
/// `confirm`, `after` confirms everything up to it (polls do; SSE streams confirm only
/// with `Last-Event-ID` on reconnect).
pub async fn poll(
    node: &Arc<Node>,
    sub: &str,
    id: SessionId,
    after: Option<Cursor>,
    wait: Duration,
    confirm: bool,
) -> Result<Polled, TsError> {
    let mut s = load(node, sub, id).await?;
    if matches!(s.state, TsState::Killed { .. }) {
        return Err(TsError::Ended(s.state));
    }
    let store = node.store();
    if let Some(a) = &after {
        check_cursor(node, &s, a).await?;
        if s.final_seq.is_some_and(|f| a.queue >= f) {
            // The caller has the final control message: the session is over.
            return Err(TsError::Ended(s.state));
        }
        if confirm {
            store.ts_confirm(id, a.queue).await?;
            store
                .ts_confirm_channel(id, &a.channel, record_ttl(node))
                .await?;
        }
    }
    if s.state == TsState::Active {
        store.ts_touch(id, now_ms(), record_ttl(node)).await?;
    }
    // Watch before looking again: a STOP or KILL from now on wakes this poll.
    let target_watch = Watch::new(node, &s.target);
    let wake_watch = Watch::new(node, &wake_channel(id));
    target_watch.ready(Duration::from_secs(2)).await;
    wake_watch.ready(Duration::from_secs(2)).await;
    let confirmed = store
        .ts_channel_confirmed(id)
        .await?
        .unwrap_or_else(|| s.channel_confirmed.clone());
    let mut cursor = Cursor {
        channel: max_pos(
            &max_pos(&s.channel_floor, &confirmed),
            after.as_ref().map_or("0-0", |a| a.channel.as_str()),
        ),
        queue: after.as_ref().map_or(0, |a| a.queue),
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register for wake-ups first, then look: a STOP, KILL or message arriving
        // after the look wakes this poll; one before it is seen by the look.
        let woken_target = target_watch.notified();
        let woken_self = wake_watch.notified();
        tokio::pin!(woken_target, woken_self);
        woken_target.as_mut().enable();
        woken_self.as_mut().enable();
        s = load(node, sub, id).await?;
        if matches!(s.state, TsState::Killed { .. }) {
            return Err(TsError::Ended(s.state));
        }
        let (messages, next, finished) = read(node, &s, &cursor).await?;
        cursor = next;
        if !messages.is_empty() {
            node.metrics
                .messages_out
                .with_label_values(&[LABEL])
                .inc_by(messages.len() as u64);
            return Ok(Polled {
                messages,
                cursor: cursor.render(),
                finished,
            });
        }
        if tokio::time::Instant::now() >= deadline || node.hands_over() {
            return Ok(Polled {
                messages,
                cursor: cursor.render(),
                finished,
            });
        }
        tokio::select! {
            _ = &mut woken_target => {}
            _ = &mut woken_self => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // Draining in a cluster: answer now, the next poll lands on another node.
            _ = node.drained(), if node.router.bus().is_clustered() => {}
        }
    }
}

/// Refuses (400 `INVALID_REQUEST`) a cursor that is well-formed but ahead of anything the
/// session can have been given: confirming it would skip, for good, the channel traffic
/// and queue entries that come before it.
async fn check_cursor(node: &Node, s: &TsSession, after: &Cursor) -> Result<(), TsError> {
    let store = node.store();
    let channel_tail = store.history_tail(&s.target).await?;
    let queue_tail = store.ts_queue_tail(s.id).await?;
    if cursor_issuable(after, channel_tail.as_deref(), queue_tail, now_ms()) {
        Ok(())
    } else {
        Err(TsError::CursorAhead)
    }
}

/// Whether a poll answer can have carried `after`: its queue position is at most the
/// newest queued entry's, its channel position at most the channel's newest publication
/// (positions are `<ms>-<n>` and only grow; when the channel has no history left, at most
/// the present millisecond).
pub fn cursor_issuable(
    after: &Cursor,
    channel_tail: Option<&str>,
    queue_tail: u64,
    now_ms: u64,
) -> bool {
    let bound = channel_tail.map_or_else(|| format!("{now_ms}-{}", u64::MAX), str::to_string);
    after.queue <= queue_tail && !Envelope::seq_after(&after.channel, &bound)
}

/// Reads what follows `cursor`: channel history and queue, merged by time.
async fn read(
    node: &Arc<Node>,
    s: &TsSession,
    cursor: &Cursor,
) -> Result<(Vec<(String, Value)>, Cursor, bool), TsError> {
    let store = node.store();
    let channel = store
        .history(&s.target, &cursor.channel, POLL_LIMIT)
        .await?
        .into_iter()
        .filter(|e| match (&s.channel_ceiling, &e.seq) {
            (Some(ceiling), Some(seq)) => !Envelope::seq_after(seq, ceiling),
            _ => true,
        })
        .collect::<Vec<_>>();
    let queue = store.ts_read(s.id, cursor.queue, POLL_LIMIT).await?;
    let id_text = s.id.to_string();
    let mut out = Vec::new();
    let mut next = cursor.clone();
    let mut finished = false;
    let (mut ci, mut qi) = (0, 0);
    while out.len() < POLL_LIMIT && (ci < channel.len() || qi < queue.len()) {
        let q_time = queue.get(qi).and_then(|(_, e)| e["t"].as_u64());
        let take_channel = match (channel.get(ci), q_time) {
            (Some(c), Some(t)) => c.created_ms <= t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_channel {
            let env = &channel[ci];
            ci += 1;
            if let Some(seq) = &env.seq {
                next.channel = seq.clone();
            }
            if env.from.session == Some(s.id) {
                continue; // the session's own request
            }
            if !node.metrics.deliverable(LABEL, env.timing.as_ref()) {
                continue;
            }
            out.push((next.render(), delivered_request(&id_text, env)));
        } else {
            let (seq, entry) = &queue[qi];
            qi += 1;
            next.queue = *seq;
            // The final control message ends the session, whether or not the record
            // says so yet (a STOP wakes readers before it records its position).
            finished |= s.final_seq == Some(*seq) || is_final(&entry["m"]);
            if !node.metrics.deliverable(LABEL, entry["m"].get("~timing")) {
                continue;
            }
            out.push((next.render(), entry["m"].clone()));
        }
    }
    Ok((out, next, finished))
}

/// Whether a queued message is a session's final control message.
fn is_final(msg: &Value) -> bool {
    msg["type"] == "control"
        && matches!(
            msg["payload"]["action"].as_str(),
            Some("STOP" | "STOP-OK" | "KILL")
        )
}

/// A channel publication as a TimeStick `request` from the receiver's point of view.
fn delivered_request(session_id: &str, env: &Envelope) -> Value {
    let message_id = match (&env.from.protocol, &env.from.session, &env.correlation) {
        (Some(Protocol::TimeStick), Some(origin), Some(original)) => {
            format!("{origin}.{original}")
        }
        _ => env.id.to_string(),
    };
    let payload = match &env.body {
        Body::Json(v) => v.clone(),
        Body::Bytes(b) => json!({"bytes": b}),
        Body::Error(e) => json!({"error": e}),
        Body::Texts(_) => env.body.value().map_or(Value::Null, |v| v.into_owned()),
    };
    let mut msg = json!({
        "type": "request",
        "session_id": session_id,
        "message_id": message_id,
        "correlation_id": null,
        "payload": payload,
        "from": {"caller": env.from.user, "protocol": murmur_shared::protocol::origin_label(env.from.protocol)},
    });
    if let Some(t) = &env.timing {
        msg["~timing"] = t.clone();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(channel: &str, queue: u64) -> Cursor {
        Cursor {
            channel: channel.into(),
            queue,
        }
    }

    #[test]
    fn only_cursors_a_poll_can_have_given_are_issuable() {
        let now = 1_795_300_000_000;
        let tail = Some("1795299999000-3");
        for ok in [
            cursor("0-0", 0),
            cursor("1795299999000-3", 7),
            cursor("1795299999000-2", 0),
            cursor("1700000000000-0", 5),
        ] {
            assert!(cursor_issuable(&ok, tail, 7, now), "{ok:?}");
        }
        for bad in [
            cursor("1795299999000-4", 0),
            cursor("1795299999001-0", 0),
            cursor("99999999999999-0", 0),
            cursor("0-0", 8),
            cursor("0-0", u64::MAX),
        ] {
            assert!(!cursor_issuable(&bad, tail, 7, now), "{bad:?}");
        }
        // No history left on the channel: any position up to now may have been given.
        assert!(cursor_issuable(&cursor("1795299999000-9", 0), None, 0, now));
        assert!(cursor_issuable(
            &cursor(&format!("{now}-5"), 0),
            None,
            0,
            now
        ));
        assert!(!cursor_issuable(
            &cursor(&format!("{}-0", now + 1), 0),
            None,
            0,
            now
        ));
    }
}
