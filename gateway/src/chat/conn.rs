//! The chat connection loop. One task per socket, one exit path.
//!
//! Frames: UTF-8 JSON text of at most 4096 bytes. Larger → close 1009, binary → 1003,
//! invalid UTF-8 → 1007, not a JSON object → 1008. Not authenticated within
//! [`AUTH_TIMEOUT`] → close 1008. Outgoing actions that queue up while the socket is
//! busy are packed into `batch-mode-action` frames (each ≤ 4096 bytes). A broadcast
//! from another user is reported to its sender once its frame has been written to the
//! socket ([`murmur_broker::chat::reports`] aggregates the reports per node). Group
//! broadcasts are written only for the groups the device follows ([`super::groups`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use murmur_broker::chat::reports::{About, Device as ReportDevice};
use murmur_broker::metrics::outcome;
use murmur_broker::session::SessionHandle;
use murmur_broker::store::StoredMessage;
use murmur_shared::api::ApiErrorCode;
use murmur_shared::channel::{group_channel, GROUP_PREFIX};
use murmur_shared::chat;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind};
use murmur_shared::ids::now_ms;
use murmur_shared::wsframe::Message;
use prometheus::{Histogram, IntCounter};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use super::actions;
use super::groups::{Admit, Change, Following, Next};
use crate::api::error;
use crate::state::AppState;
use crate::ws::{SendError, WsSink, WsStream, CLIENT_TIMEOUT, PING_INTERVAL};

/// The metrics label of this protocol.
pub const LABEL: &str = "chat";
/// A connection must authenticate within this.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing actions packed into frames per wake-up at most.
const PACK_MAX: usize = 64;
/// Messages one replay (a group followed after a change) writes at most.
pub const REPLAY_MAX: usize = 256;

/// A group's history after its mark, read once its channel is subscribed.
type Replay = (String, Result<Vec<StoredMessage>, String>);

/// A broadcast written to the socket, reported to its sender once the bytes are out.
pub struct Report {
    /// The frame's end in the connection's byte count ([`WsSink::confirmed`]).
    end: u64,
    /// The broadcast's envelope id, the same on every device of this node (a replayed
    /// message gets one of its own).
    key: uuid::Uuid,
    what: Reported,
}

/// Where a report's sender, session and message id are read from (once per message).
enum Reported {
    Live(Arc<Envelope>),
    Replayed(About),
}

/// The socket cannot take more: it is gone, or (with `ChatConn::stop` set) full.
pub struct Closed;

/// An authenticated device connection.
pub struct Device {
    pub handle: SessionHandle,
    pub device_id: String,
    epoch: u64,
    /// This device as delivery reports name it (its user and device ids).
    reported_as: Arc<ReportDevice>,
}

/// One chat connection as the action handlers see it.
pub struct ChatConn {
    pub state: Arc<AppState>,
    pub device: Option<Device>,
    ws: WsSink,
    /// Why the connection must close, when a write found the buffer full.
    stop: Option<CloseReason>,
    /// Set once authenticated: the session's queue and close signal.
    outbound: Option<mpsc::Receiver<Arc<Envelope>>>,
    closed: Option<oneshot::Receiver<CloseReason>>,
    /// The groups this device follows.
    pub groups: Following<(Bytes, Option<Report>)>,
    replays: (mpsc::Sender<Replay>, mpsc::Receiver<Replay>),
    /// Written broadcasts whose bytes are not confirmed out yet, oldest first.
    reports: VecDeque<Report>,
    counters: Counters,
}

/// This protocol's series of the per-delivery metrics, looked up once per connection.
struct Counters {
    delivered: IntCounter,
    latency: Histogram,
    messages_out: IntCounter,
}

impl Counters {
    fn new(m: &murmur_broker::metrics::Metrics) -> Self {
        Counters {
            delivered: m.deliveries.with_label_values(&[LABEL, outcome::DELIVERED]),
            latency: m.delivery_latency.with_label_values(&[LABEL]),
            messages_out: m.messages_out.with_label_values(&[LABEL]),
        }
    }
}

impl ChatConn {
    /// Writes one server action.
    pub async fn send(&mut self, action: &Value) -> Result<(), Closed> {
        self.send_text(action.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Closed> {
        self.write(text.as_bytes()).map(|_| ())
    }

    /// Writes one text frame; returns its end in the connection's byte count.
    fn write(&mut self, text: &[u8]) -> Result<u64, Closed> {
        let end = match self.ws.text(text) {
            Ok(end) => end,
            Err(e) => {
                self.check(Err(e))?;
                return Err(Closed);
            }
        };
        self.counters.messages_out.inc();
        Ok(end)
    }

    /// A full buffer makes this a slow consumer.
    fn check(&mut self, res: Result<(), SendError>) -> Result<(), Closed> {
        match res {
            Ok(()) => Ok(()),
            Err(SendError::Full) => {
                self.stop = close(
                    CloseCode::SlowConsumer,
                    "slow consumer: outbound buffer full",
                );
                Err(Closed)
            }
            Err(SendError::Closed) => Err(Closed),
        }
    }

    /// Awaits a broker call of an action (a store round trip, most often) while writing
    /// what arrives for this device meanwhile: the device's deliveries do not wait for
    /// its own actions. The action's answer comes after them.
    pub async fn during<T>(
        &mut self,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, Closed> {
        tokio::pin!(call);
        loop {
            let env = tokio::select! {
                biased;
                out = &mut call => return Ok(out),
                env = next_outbound(&mut self.outbound) => env,
            };
            match env {
                Some(env) => {
                    if self.deliver(env).is_err() {
                        return Err(Closed);
                    }
                }
                // The session ended: the loop learns it next; finish the call first.
                None => return Ok(call.await),
            }
        }
    }

    /// Called by `authenticate` on success: the session is attached to this socket.
    pub fn attach(
        &mut self,
        handle: SessionHandle,
        device_id: String,
        attachment: murmur_broker::Attachment,
    ) {
        self.outbound = Some(attachment.outbound);
        self.closed = Some(attachment.closed);
        let reported_as = ReportDevice::new(handle.user(), &device_id);
        self.device = Some(Device {
            handle,
            device_id,
            epoch: attachment.epoch,
            reported_as,
        });
    }

    /// Encodes queued envelopes (this one and whatever else is ready), packs them into
    /// as few frames as fit, and writes them.
    fn deliver(&mut self, first: Arc<Envelope>) -> Result<(), Closed> {
        let mut envs = vec![first];
        if let Some(rx) = &mut self.outbound {
            while envs.len() < PACK_MAX {
                match rx.try_recv() {
                    Ok(e) => envs.push(e),
                    Err(_) => break,
                }
            }
        }
        let Some(device) = &self.device else {
            return Ok(());
        };
        // Shared, not copied: this runs once per wake-up of every connection.
        let reported_as = device.reported_as.clone();
        let user = reported_as.user.as_str();
        let own = device.handle.id();
        let metrics = self.state.node.metrics.clone();
        let now = now_ms();
        let mut texts: Vec<Bytes> = Vec::with_capacity(envs.len());
        let mut reports = Vec::new();
        for env in &envs {
            let Some(action) = body_of(env, own) else {
                continue;
            };
            let broadcast = env.subject.as_deref() == Some("message-broadcast");
            if env.subject.as_deref() == Some("providing-session-info") {
                if let Some(change) = self.groups.apply(action, user, env.history_mark.as_deref()) {
                    self.change(change);
                }
            }
            if !crate::timing::deliverable(&metrics, LABEL, action.get("~timing")) {
                continue;
            }
            self.counters
                .latency
                .observe(now.saturating_sub(env.created_ms) as f64 / 1000.0);
            // The same bytes for every device: encoded once per node.
            let text = env
                .wire
                .get_or_init(|| Bytes::from(action.to_string()))
                .clone();
            let report = if broadcast && !own_user(action, user) {
                Some(Report {
                    end: 0,
                    key: env.id,
                    what: Reported::Live(env.clone()),
                })
            } else {
                None
            };
            if broadcast && is_group(env) {
                let (Some(group), Some(id)) =
                    (str_of(action, "session-id"), str_of(action, "message-id"))
                else {
                    continue;
                };
                match self.groups.admit(group, id, (text, report)) {
                    Admit::Write((text, report)) => {
                        texts.push(text);
                        reports.extend(report);
                    }
                    Admit::Held | Admit::Drop => {}
                }
                continue;
            }
            texts.push(text);
            reports.extend(report);
        }
        self.counters.delivered.inc_by(texts.len() as u64);
        self.write_packed(&texts, reports)
    }

    /// Packs actions into as few frames as fit and writes them; the broadcasts among
    /// them are reported once the last frame is out.
    fn write_packed<T: AsRef<[u8]>>(
        &mut self,
        texts: &[T],
        reports: Vec<Report>,
    ) -> Result<(), Closed> {
        let count = texts.len();
        let frames = chat::pack_frames(texts);
        if frames.len() < count {
            self.state
                .node
                .metrics
                .chat_batched_frames
                .inc_by((count - frames.len()) as u64);
        }
        let mut end = 0;
        for frame in &frames {
            end = self.write(frame.bytes())?;
        }
        self.reports
            .extend(reports.into_iter().map(|r| Report { end, ..r }));
        Ok(())
    }

    /// Starts or stops following a group (the subscription is made off the loop).
    pub fn change(&mut self, change: Change) {
        let Some(device) = &self.device else { return };
        let h = device.handle.clone();
        match change {
            Change::Follow { group, mark } => {
                let tx = self.replays.0.clone();
                actix_web::rt::spawn(async move {
                    let subscribed = h.subscribe(&group_channel(&group)).await;
                    let Some(mark) = mark else { return };
                    let missed = match subscribed {
                        Ok(_) => h
                            .node()
                            .store()
                            .messages(&group, Some(&mark), REPLAY_MAX)
                            .await
                            .map_err(|e| e.message),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send((group, missed)).await;
                });
            }
            Change::Unfollow(group) => {
                actix_web::rt::spawn(async move {
                    let _ = h.unsubscribe(&group_channel(&group)).await;
                });
            }
        }
    }

    /// A group followed after a change: writes what its node received before the
    /// subscription (the history after the change's mark) and this device lacks.
    fn replay(&mut self, (group, missed): Replay) -> Result<(), Closed> {
        let missed = match missed {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group, error = %e, "chat: group replay failed");
                Vec::new()
            }
        };
        let next = self
            .groups
            .caught_up(&group, missed.iter().map(|m| m.id.as_str()));
        let Some(device) = &self.device else {
            return Ok(());
        };
        let user = device.handle.user().to_string();
        let metrics = self.state.node.metrics.clone();
        let mut texts: Vec<Bytes> = Vec::with_capacity(next.len());
        let mut reports = Vec::new();
        for n in next {
            let m = match n {
                Next::Held((text, report)) => {
                    texts.push(text);
                    reports.extend(report);
                    continue;
                }
                Next::Replayed(i) => &missed[i],
            };
            if !crate::timing::deliverable(&metrics, LABEL, m.timing.as_ref()) {
                continue;
            }
            if m.sender != user {
                reports.push(Report {
                    end: 0,
                    key: uuid::Uuid::new_v4(),
                    what: Reported::Replayed(About {
                        sender: m.sender.clone(),
                        session: m.session.clone(),
                        message: m.id.clone(),
                    }),
                });
            }
            texts.push(Bytes::from(m.broadcast().to_string()));
        }
        self.counters.delivered.inc_by(texts.len() as u64);
        self.write_packed(&texts, reports)
    }

    /// Hands the reports whose frames are out to the node's aggregator.
    fn confirm_reports(&mut self) {
        let Some(device) = &self.device else { return };
        let out = self.ws.confirmed();
        let node = device.handle.node();
        while self.reports.front().is_some_and(|r| r.end <= out) {
            let Some(r) = self.reports.pop_front() else {
                break;
            };
            let what = r.what;
            murmur_broker::chat::delivered(node, r.key, || about(what), &device.reported_as);
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Whether an envelope came on a group's channel (not a user inbox).
fn is_group(env: &Envelope) -> bool {
    matches!(&env.to, Destination::Channel(c) if c.starts_with(GROUP_PREFIX))
}

/// Whether a broadcast is from this device's own user (not reported).
fn own_user(action: &Value, user: &str) -> bool {
    str_of(action, "sender-id").is_none_or(|s| s == user)
}

/// What a report is about, read from the broadcast.
fn about(what: Reported) -> About {
    match what {
        Reported::Replayed(a) => a,
        Reported::Live(env) => {
            let body = env.json();
            let text = |k: &str| str_of(body, k).unwrap_or_default().to_string();
            About {
                sender: text("sender-id"),
                session: text("session-id"),
                message: text("message-id"),
            }
        }
    }
}

/// The wire form of an envelope from the user's inbox or a group's channel. The
/// connection that caused a session change or broadcast was answered directly (with its
/// `cdid`) and skips its copy (the router does not send it one; this holds when an
/// envelope reaches it another way).
fn body_of(env: &Envelope, own: murmur_shared::ids::SessionId) -> Option<&Value> {
    if env.kind != Kind::Message {
        return None;
    }
    let Body::Json(body) = &env.body else {
        return None;
    };
    let own_answer = env.from.session == Some(own)
        && matches!(
            env.subject.as_deref(),
            Some("providing-session-info" | "message-broadcast")
        );
    (!own_answer).then_some(body)
}

/// `GET /chat` (WebSocket upgrade). Authentication happens inside the protocol.
pub async fn chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if state.node.is_draining() {
        return Ok(error(
            ApiErrorCode::Unavailable,
            "node is draining; connect to another node",
        ));
    }
    let (resp, ws, stream) = state.ws_upgrade(&req, body, chat::MAX_FRAME_BYTES)?;
    actix_web::rt::spawn(run(state.into_inner(), ws, stream));
    Ok(resp)
}

async fn next_outbound(rx: &mut Option<mpsc::Receiver<Arc<Envelope>>>) -> Option<Arc<Envelope>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_close(rx: &mut Option<oneshot::Receiver<CloseReason>>) -> Option<CloseReason> {
    match rx {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

fn close(code: CloseCode, reason: &str) -> Option<CloseReason> {
    Some(CloseReason::new(code, reason))
}

async fn run(state: Arc<AppState>, ws: WsSink, mut stream: WsStream) {
    let metrics = state.node.metrics.clone();
    metrics.connections.with_label_values(&[LABEL]).inc();
    metrics.connections_total.with_label_values(&[LABEL]).inc();
    let mut conn = ChatConn {
        state,
        device: None,
        ws,
        stop: None,
        outbound: None,
        closed: None,
        groups: Following::default(),
        replays: mpsc::channel(16),
        reports: VecDeque::new(),
        counters: Counters::new(&metrics),
    };
    let auth_deadline = sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    let mut ping = interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let mut broker_closed = false;

    let reason: Option<CloseReason> = loop {
        tokio::select! {
            biased;
            reason = next_close(&mut conn.closed) => {
                // The session closed us and has counted the disconnect already.
                broker_closed = true;
                break reason;
            }
            _ = &mut auth_deadline, if conn.device.is_none() => {
                break close(CloseCode::PolicyViolation, "not authenticated in time");
            }
            msg = stream.recv() => {
                last_seen = Instant::now();
                let res = match msg {
                    None => break None,
                    Some(Ok(Message::Text(bytes))) => {
                        conn.state.node.metrics.messages_in.with_label_values(&[LABEL]).inc();
                        let text = std::str::from_utf8(&bytes).unwrap_or_default();
                        match chat::parse_frame(text) {
                            Ok(obj) => actions::frame(&mut conn, obj).await,
                            Err(e) => break close(CloseCode::PolicyViolation, &e.0),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break close(CloseCode::UnsupportedData, "binary frames are not accepted");
                    }
                    Some(Ok(Message::Ping(bytes))) => {
                        let res = conn.ws.pong(&bytes).map(|_| ());
                        conn.check(res)
                    }
                    Some(Ok(Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) => break close(CloseCode::Normal, "bye"),
                    Some(Err(e)) => break Some(CloseReason::new(e.close_code(), e.reason())),
                };
                if res.is_err() {
                    break conn.stop.take();
                }
            }
            _ = conn.ws.flushed(conn.reports.front().map(|r| r.end)) => conn.confirm_reports(),
            Some(replay) = conn.replays.1.recv() => {
                if conn.replay(replay).is_err() {
                    break conn.stop.take();
                }
            }
            env = next_outbound(&mut conn.outbound) => match env {
                Some(env) => {
                    if conn.deliver(env).is_err() {
                        break conn.stop.take();
                    }
                }
                None => break None,
            },
            _ = ping.tick() => {
                conn.groups.tick();
                if last_seen.elapsed() > CLIENT_TIMEOUT {
                    break close(CloseCode::IdleTimeout, "no traffic from the client");
                }
                let res = conn.ws.ping(b"").map(|_| ());
                if conn.check(res).is_err() {
                    break conn.stop.take();
                }
            }
        }
    };

    if let Some(r) = reason.as_ref().filter(|_| !broker_closed) {
        if r.code != CloseCode::Normal {
            metrics
                .disconnects
                .with_label_values(&[LABEL, r.code.label()])
                .inc();
        }
    }
    if let Some(device) = &conn.device {
        device.handle.detach(device.epoch);
    }
    metrics.connections.with_label_values(&[LABEL]).dec();
    let slow = reason
        .as_ref()
        .is_some_and(|r| r.code == CloseCode::SlowConsumer);
    conn.ws.close(reason.as_ref(), slow);
}
