//! TimeStick on the broker (CONTRACT §3): sessions whose whole state lives in the
//! store, so any node serves any request and a session outlives the node that started
//! it.
//!
//! * What a session receives is the merge of two sources: its **target channel's
//!   history** (requests of other sessions, Helios and backend publications) and its own
//!   **queue** (responses to its requests, control messages). A poll cursor
//!   (`<channel position>.<queue position>`) marks what the caller has; a poll with a
//!   later `after` confirms everything up to it (queue entries are then dropped).
//! * A long-poll that finds nothing waits on a [`Watch`] of the target channel and of
//!   the session's wake channel (`@ts/<id>`), on whichever node it landed.
//! * Message ids seen by other sessions are `<origin session>.<message_id>`, so a
//!   `response` naming one reaches exactly the session that sent the request.
//! * STOP / KILL levels and the idle sweep follow CONTRACT §3 (`docs/timestick.md`).

use std::sync::Arc;
use std::time::Duration;

use murmur_shared::channel::INTERNAL_PREFIX;
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::timestick::{self as wire, Cursor, Posted, Refusal, Start};
use murmur_shared::timing::TimingError;
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::node::Node;
use crate::scheduler::{self, Job};
use crate::store::{TsSession, TsState};
use crate::watch::Watch;

/// Messages one poll returns at most.
pub const POLL_LIMIT: usize = 100;
/// The metrics label.
pub const LABEL: &str = "timestick";

/// A refused session request: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct TsError {
    pub status: u16,
    pub body: Value,
}

fn fail(status: u16, code: &str, message: &str) -> TsError {
    TsError {
        status,
        body: json!({"status": "error", "error_code": code, "error_message": message}),
    }
}

fn store_fail(e: crate::store::StoreError) -> TsError {
    fail(
        503,
        "UNAVAILABLE",
        &format!("session store unavailable: {e}"),
    )
}

fn gone(s: &TsSession) -> TsError {
    let mut e = fail(410, "SESSION_ENDED", "the session has ended");
    match &s.state {
        TsState::Stopped { reason, details } => {
            e.body["error_code"] = json!("SESSION_STOPPED");
            e.body["action"] = json!("STOP");
            e.body["reason"] = json!(reason);
            e.body["details"] = json!(details);
        }
        TsState::Killed { level, reason } => {
            e.body["error_code"] = json!("SESSION_KILLED");
            e.body["action"] = json!("KILL");
            e.body["kill_level"] = json!(level);
            e.body["reason"] = json!(reason);
        }
        TsState::Active => {}
    }
    e
}

fn record_ttl(node: &Node) -> Duration {
    node.config.timestick_idle * 2 + Duration::from_secs(3600)
}

fn wake_channel(id: SessionId) -> String {
    format!("{INTERNAL_PREFIX}ts/{id}")
}

/// Wakes long-polls of a session on every node.
fn wake(node: &Node, id: SessionId) {
    let env = Envelope::new(
        node.id(),
        Kind::Notification,
        Destination::Channel(wake_channel(id)),
        Body::Json(Value::Null),
    );
    node.router.publish(env);
}

fn count(node: &Node, kind: &str, status: u16) {
    node.metrics
        .timestick_requests
        .with_label_values(&[kind, &status.to_string()])
        .inc();
}

fn event(node: &Node, what: &str) {
    node.metrics
        .timestick_sessions
        .with_label_values(&[what])
        .inc();
}

/// START: `sub` is the verified token's subject; `path_target` the target of
/// `POST /timestick/<target>` (else `requested_uri` names it).
pub async fn start(
    node: &Arc<Node>,
    sub: &str,
    start: Start,
    path_target: Option<String>,
    transport: &str,
) -> Result<Value, Refusal> {
    let out = start_inner(node, sub, start, path_target, transport).await;
    count(
        node,
        "start",
        out.as_ref().map_or_else(|r| r.status, |_| 200),
    );
    out
}

async fn start_inner(
    node: &Arc<Node>,
    sub: &str,
    start: Start,
    path_target: Option<String>,
    transport: &str,
) -> Result<Value, Refusal> {
    if node.is_draining() {
        return Err(Refusal::new(
            503,
            "receiver is draining; start the session on another node",
        ));
    }
    if start.caller_id != sub {
        return Err(Refusal::new(403, "caller_id does not match the token"));
    }
    let store = node.store();
    if store
        .ts_quarantined(sub)
        .await
        .map_err(|e| Refusal::new(503, e.to_string()))?
    {
        return Err(Refusal::new(403, "caller is quarantined"));
    }
    let target = match (path_target, start.requested_target) {
        (Some(p), _) => p,
        (None, Some(t)) => t,
        (None, None) => return Err(Refusal::new(400, "requested_uri must name a target")),
    };
    let max = start
        .max_message_size
        .unwrap_or(wire::MAX_MESSAGE_SIZE)
        .min(wire::MAX_MESSAGE_SIZE);
    let tail = store
        .history_tail(&target)
        .await
        .map_err(|e| Refusal::new(503, e.to_string()))?
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
    let created = store
        .ts_create(session.clone(), limit, record_ttl(node))
        .await
        .map_err(|e| Refusal::new(503, e.to_string()))?;
    if !created {
        return Err(Refusal::new(
            429,
            format!("too many sessions for this caller (at most {limit})"),
        ));
    }
    event(node, "started");
    Ok(wire::start_ok(&session.id.to_string(), transport, max))
}

/// Loads a session and checks that `sub` is its caller.
async fn load(node: &Node, sub: &str, id: SessionId) -> Result<TsSession, TsError> {
    owned_by(node.store().ts_get(id).await.map_err(store_fail)?, sub)
}

/// A loaded session, checked to exist and to belong to `sub`.
fn owned_by(s: Option<TsSession>, sub: &str) -> Result<TsSession, TsError> {
    let s = s.ok_or_else(|| fail(404, "SESSION_NOT_FOUND", "no such session"))?;
    if s.caller != sub {
        return Err(fail(
            403,
            "FORBIDDEN",
            "this session belongs to another caller",
        ));
    }
    Ok(s)
}

/// A POST that passed every check that needs no body (token, session, owner, state),
/// with its rate count taken: the body may now be read, up to
/// [`max_message_size`](Self::max_message_size) bytes.
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
}

/// POST of one message, first step (before its body is read): loads the session and
/// checks that `sub` is its caller and that it is active.
pub async fn post_open(node: &Arc<Node>, sub: &str, id: SessionId) -> Result<PostGate, TsError> {
    // One round trip for the record and the rate count (the POST hot path).
    let out = async {
        let (s, rate_ok) = node
            .store()
            .ts_get_counted(id, node.config.timestick_rate)
            .await
            .map_err(store_fail)?;
        let s = owned_by(s, sub)?;
        if s.state != TsState::Active {
            return Err(gone(&s));
        }
        Ok(PostGate { s, rate_ok })
    }
    .await;
    if let Err(e) = &out {
        count(node, "post", e.status);
    }
    out
}

/// The 413 `MESSAGE_TOO_LARGE` of a POST whose body is (declared or read so far) longer
/// than the session's `max_message_size`; counted.
pub fn post_too_large(node: &Node, gate: &PostGate) -> TsError {
    count(node, "post", 413);
    fail(
        413,
        "MESSAGE_TOO_LARGE",
        &format!(
            "larger than the session's max_message_size ({} bytes)",
            gate.max_message_size()
        ),
    )
}

/// POST of one message, second step: the body (at most `max_message_size` bytes, read
/// by the caller). `Ok` is the 202 body.
pub async fn post_body(node: &Arc<Node>, gate: PostGate, body: &[u8]) -> Result<Value, TsError> {
    if body.len() as u64 > gate.max_message_size() {
        return Err(post_too_large(node, &gate));
    }
    let out = post_inner(node, gate, body).await;
    count(
        node,
        "post",
        out.as_ref().map_or_else(|e| e.status, |_| 202),
    );
    out
}

async fn post_inner(node: &Arc<Node>, gate: PostGate, body: &[u8]) -> Result<Value, TsError> {
    let PostGate { s, rate_ok } = gate;
    let id = s.id;
    let store = node.store();
    if !rate_ok {
        return Err(fail(
            429,
            "RATE_LIMITED",
            "too many messages per second in this session",
        ));
    }
    let posted = wire::decode_message(body, &id.to_string()).map_err(|reason| TsError {
        status: 400,
        body: wire::error_response(&id.to_string(), None, "INVALID_MESSAGE", &reason),
    })?;
    let timing = match &posted {
        Posted::Request { timing, .. } | Posted::Response { timing, .. } => timing.as_ref(),
        _ => None,
    };
    let plan = murmur_shared::timing::plan(timing, now_ms() as i64).map_err(|e| {
        node.metrics
            .timing
            .with_label_values(&[LABEL, "rejected"])
            .inc();
        let code = match e {
            TimingError::Expired => "EXPIRED",
            _ => "INVALID_MESSAGE",
        };
        TsError {
            status: 400,
            body: wire::error_response(&id.to_string(), None, code, &e.to_string()),
        }
    })?;
    let deliver_at = plan.and_then(|p| p.deliver_at);
    let ttl = record_ttl(node);
    if !store
        .ts_accept_message(id, posted.message_id(), now_ms(), ttl)
        .await
        .map_err(store_fail)?
    {
        return Err(fail(
            409,
            "DUPLICATE_MESSAGE",
            "this message_id was already received",
        ));
    }
    node.metrics.messages_in.with_label_values(&[LABEL]).inc();
    let message_id = posted.message_id().to_string();
    match posted {
        Posted::Request {
            message_id,
            payload,
            timing,
        } => {
            let env = Envelope::new(
                node.id(),
                Kind::Notification,
                Destination::Channel(s.target.clone()),
                Body::Json(payload),
            )
            .from(Origin {
                session: Some(id),
                user: Some(s.caller.clone()),
                protocol: Some(crate::session::Protocol::TimeStick),
            })
            .correlation(message_id)
            .subject("timestick.request")
            .timing(timing);
            match deliver_at {
                Some(due) => scheduler::hold(node, due, Job::Publish { env })
                    .await
                    .map_err(store_fail)?,
                None => node.router.publish(env),
            }
        }
        Posted::Response {
            message_id,
            correlation_id,
            payload,
            timing,
        } => {
            respond(
                node,
                &s,
                &message_id,
                &correlation_id,
                payload,
                timing,
                deliver_at,
            )
            .await?;
        }
        Posted::Stop { reason, .. } => {
            stop(
                node,
                s,
                true,
                reason.as_deref().unwrap_or("normal-termination"),
                None,
            )
            .await?;
        }
        Posted::Kill {
            kill_level, reason, ..
        } => {
            let reason = reason.unwrap_or_else(|| "killed-by-caller".into());
            kill(node, s, kill_level, &reason).await?;
        }
    }
    Ok(json!({"status": "accepted", "message_id": message_id}))
}

/// A `response` goes to the session that sent the request named by `correlation_id`.
async fn respond(
    node: &Arc<Node>,
    s: &TsSession,
    message_id: &str,
    correlation_id: &str,
    payload: Value,
    timing: Option<Value>,
    deliver_at: Option<i64>,
) -> Result<(), TsError> {
    let invalid = |reason: &str| TsError {
        status: 400,
        body: wire::error_response(
            &s.id.to_string(),
            Some(correlation_id),
            "INVALID_MESSAGE",
            reason,
        ),
    };
    let (origin, original) = correlation_id
        .split_once('.')
        .and_then(|(o, m)| Some((SessionId::parse(o)?, m)))
        .ok_or_else(|| invalid("correlation_id names no message this session received"))?;
    let store = node.store();
    let origin_session = store.ts_get(origin).await.map_err(store_fail)?;
    let Some(origin_session) = origin_session.filter(|o| o.target == s.target) else {
        return Err(invalid(
            "correlation_id names no message this session received",
        ));
    };
    if origin_session.state != TsState::Active {
        return Err(fail(
            404,
            "ORIGIN_ENDED",
            "the session that sent that request has ended",
        ));
    }
    let mut msg = json!({
        "type": "response",
        "session_id": origin.to_string(),
        "message_id": format!("{}.{}", s.id, message_id),
        "correlation_id": original,
        "payload": payload,
        "from": {"caller": s.caller, "protocol": LABEL},
    });
    if let Some(t) = timing {
        msg["~timing"] = t;
    }
    match deliver_at {
        Some(due) => {
            let job = Job::protocol(
                crate::session::Protocol::TimeStick,
                &HeldPush {
                    session: origin,
                    msg,
                },
            );
            scheduler::hold(node, due, job).await.map_err(store_fail)?;
        }
        None => {
            push(node, origin, msg).await?;
        }
    }
    Ok(())
}

/// A TimeStick response held by `~timing`, for its session's queue.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HeldPush {
    session: SessionId,
    msg: Value,
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
            push_held(&node, h.session, h.msg)
                .await
                .map_err(|e| format!("HTTP {}: {}", e.status, e.body))?;
            Ok(())
        })
    }
}

/// Queues a held response once due, unless its session has ended meanwhile.
pub(crate) async fn push_held(node: &Arc<Node>, id: SessionId, msg: Value) -> Result<(), TsError> {
    match node.store().ts_get(id).await.map_err(store_fail)? {
        Some(s) if s.state == TsState::Active => push(node, id, msg).await.map(|_| ()),
        _ => Ok(()),
    }
}

/// Queues a message for a session and wakes its polls.
async fn push(node: &Arc<Node>, id: SessionId, msg: Value) -> Result<u64, TsError> {
    let entry = json!({"m": msg, "t": now_ms()});
    let cap = node.config.timestick_queue;
    let seq = node
        .store()
        .ts_push(id, entry, cap, record_ttl(node))
        .await
        .map_err(store_fail)?;
    wake(node, id);
    Ok(seq)
}

/// STOP: by the caller (queued messages discarded, `STOP-OK` queued) or by the receiver
/// (`STOP` with reason queued last, after what was already queued).
async fn stop(
    node: &Arc<Node>,
    mut s: TsSession,
    by_caller: bool,
    reason: &str,
    details: Option<&str>,
) -> Result<(), TsError> {
    let store = node.store();
    let tail = store
        .history_tail(&s.target)
        .await
        .map_err(store_fail)?
        .unwrap_or_else(|| "0-0".into());
    let id_text = s.id.to_string();
    let fin = if by_caller {
        store.ts_clear(s.id).await.map_err(store_fail)?;
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
    store
        .ts_put(s.clone(), record_ttl(node))
        .await
        .map_err(store_fail)?;
    store.ts_end(s.id, &s.caller).await.map_err(store_fail)?;
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
async fn kill(node: &Arc<Node>, s: TsSession, level: u64, reason: &str) -> Result<(), TsError> {
    if level == 0 {
        return stop(node, s, true, reason, None).await;
    }
    let store = node.store();
    let mut victims = vec![s.clone()];
    if level >= 2 {
        for id in store.ts_sessions_of(&s.caller).await.map_err(store_fail)? {
            if id != s.id {
                if let Some(other) = store.ts_get(id).await.map_err(store_fail)? {
                    victims.push(other);
                }
            }
        }
    }
    if level >= 3 {
        store
            .ts_quarantine(&s.caller, node.config.timestick_quarantine)
            .await
            .map_err(store_fail)?;
    }
    for mut v in victims {
        if matches!(v.state, TsState::Killed { .. }) {
            continue;
        }
        v.state = TsState::Killed {
            level,
            reason: reason.to_string(),
        };
        store.ts_clear(v.id).await.map_err(store_fail)?;
        store
            .ts_put(v.clone(), record_ttl(node))
            .await
            .map_err(store_fail)?;
        store.ts_end(v.id, &v.caller).await.map_err(store_fail)?;
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
    let s = node
        .store()
        .ts_get(id)
        .await
        .map_err(store_fail)?
        .ok_or_else(|| fail(404, "SESSION_NOT_FOUND", "no such session"))?;
    if s.state != TsState::Active {
        return Err(gone(&s));
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
    let s = node
        .store()
        .ts_get(id)
        .await
        .map_err(store_fail)?
        .ok_or_else(|| fail(404, "SESSION_NOT_FOUND", "no such session"))?;
    if matches!(s.state, TsState::Killed { .. }) {
        return Err(gone(&s));
    }
    if level == 0 {
        if s.state != TsState::Active {
            return Err(gone(&s));
        }
        return stop(node, s, false, reason, None).await;
    }
    kill(node, s, level, reason).await
}

/// One poll's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Polled {
    /// `(cursor after this message, message)`, oldest first.
    pub messages: Vec<(String, Value)>,
    pub cursor: String,
    /// The session's final control message is among `messages`: nothing follows.
    pub finished: bool,
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
    let out = poll_inner(node, sub, id, after, wait, confirm).await;
    count(
        node,
        "poll",
        out.as_ref().map_or_else(|e| e.status, |_| 200),
    );
    out
}

fn max_pos(a: &str, b: &str) -> String {
    if Envelope::seq_after(a, b) {
        a.to_string()
    } else {
        b.to_string()
    }
}

async fn poll_inner(
    node: &Arc<Node>,
    sub: &str,
    id: SessionId,
    after: Option<Cursor>,
    wait: Duration,
    confirm: bool,
) -> Result<Polled, TsError> {
    let mut s = load(node, sub, id).await?;
    if matches!(s.state, TsState::Killed { .. }) {
        return Err(gone(&s));
    }
    let store = node.store();
    if let Some(a) = &after {
        check_cursor(node, &s, a).await?;
        if s.final_seq.is_some_and(|f| a.queue >= f) {
            // The caller has the final control message: the session is over.
            return Err(gone(&s));
        }
        if confirm {
            store.ts_confirm(id, a.queue).await.map_err(store_fail)?;
            store
                .ts_confirm_channel(id, &a.channel, record_ttl(node))
                .await
                .map_err(store_fail)?;
        }
    }
    if s.state == TsState::Active {
        store
            .ts_touch(id, now_ms(), record_ttl(node))
            .await
            .map_err(store_fail)?;
    }
    // Watch before looking again: a STOP or KILL from now on wakes this poll.
    let target_watch = Watch::new(node, &s.target);
    let wake_watch = Watch::new(node, &wake_channel(id));
    target_watch.ready(Duration::from_secs(2)).await;
    wake_watch.ready(Duration::from_secs(2)).await;
    let confirmed = store
        .ts_channel_confirmed(id)
        .await
        .map_err(store_fail)?
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
            return Err(gone(&s));
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
    let channel_tail = store.history_tail(&s.target).await.map_err(store_fail)?;
    let queue_tail = store.ts_queue_tail(s.id).await.map_err(store_fail)?;
    if cursor_issuable(after, channel_tail.as_deref(), queue_tail, now_ms()) {
        Ok(())
    } else {
        Err(fail(
            400,
            "INVALID_REQUEST",
            "after is ahead of every cursor this session was given",
        ))
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
        .await
        .map_err(store_fail)?
        .into_iter()
        .filter(|e| match (&s.channel_ceiling, &e.seq) {
            (Some(ceiling), Some(seq)) => !Envelope::seq_after(seq, ceiling),
            _ => true,
        })
        .collect::<Vec<_>>();
    let queue = store
        .ts_read(s.id, cursor.queue, POLL_LIMIT)
        .await
        .map_err(store_fail)?;
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
            if !deliverable(node, env.timing.as_ref()) {
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
            if !deliverable(node, entry["m"].get("~timing")) {
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

/// `~timing` at delivery: an expired message is dropped (and counted), a stale one is
/// delivered and counted.
fn deliverable(node: &Node, timing: Option<&Value>) -> bool {
    let Some(t) = timing else { return true };
    let now = now_ms() as i64;
    if murmur_shared::timing::expired(Some(t), now) {
        node.metrics
            .timing
            .with_label_values(&[LABEL, "expired"])
            .inc();
        node.metrics
            .delivery(LABEL, crate::metrics::outcome::EXPIRED);
        return false;
    }
    if murmur_shared::timing::stale(Some(t), now) {
        node.metrics
            .timing
            .with_label_values(&[LABEL, "stale"])
            .inc();
        node.metrics.delivery(LABEL, crate::metrics::outcome::STALE);
    }
    true
}

/// A channel publication as a TimeStick `request` from the receiver's point of view.
fn delivered_request(session_id: &str, env: &Envelope) -> Value {
    let message_id = match (&env.from.protocol, &env.from.session, &env.correlation) {
        (Some(crate::session::Protocol::TimeStick), Some(origin), Some(original)) => {
            format!("{origin}.{original}")
        }
        _ => env.id.to_string(),
    };
    let payload = match &env.body {
        Body::Json(v) => v.clone(),
        Body::Bytes(b) => json!({"bytes": b}),
        Body::Error(e) => json!({"error": e}),
        Body::Text(_) => env.body.value().map_or(Value::Null, |v| v.into_owned()),
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
                if let Err(e) = stop_by_receiver(&node, id, "idle-timeout", None).await {
                    if e.status != 410 && e.status != 404 {
                        warn!(session = %id, status = e.status, "idle stop failed");
                    }
                } else {
                    event(&node, "idle_timeout");
                }
            }
        }
    });
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
