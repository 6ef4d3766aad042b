//! One chat connection as the edge loop serves it: the device (once authenticated),
//! the groups it follows, the delivery reports waiting for their bytes to be written.
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

use bytes::Bytes;
use murmur_broker::chat::device::Device;
use murmur_broker::chat::following::{Admit, Change, Following, Next};
use murmur_broker::chat::reports::About;
use murmur_broker::chat::ChatError;
use murmur_broker::metrics::outcome;
use murmur_broker::session::Protocol;
use murmur_broker::store::StoredMessage;
use murmur_shared::channel::GROUP_PREFIX;
use murmur_shared::chat;
use murmur_shared::chat::ChatEvent;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind};
use murmur_shared::ids::now_ms;
use prometheus::{Histogram, IntCounter};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::apply;
use crate::edge::{self, Adapter, Data, Deadline, Edge, Flow, Heartbeat, Link, Out, Refusal, Wake};
use crate::state::AppState;

/// The metrics label of this protocol.
pub const LABEL: &str = "chat";
/// A connection must authenticate within this.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing actions packed into frames per wake-up at most.
const PACK_MAX: usize = 64;
/// One typing indicator per session per device this often at most.
pub const TYPING_EVERY: Duration = Duration::from_secs(2);
/// Users one device watches the presence of at most.
pub const MAX_WATCHED: usize = 1024;

/// A group's history after its mark, read once its channel is subscribed.
type Replay = (String, Result<Vec<StoredMessage>, ChatError>);

/// A broadcast written to the socket, reported to its sender once the bytes are out.
pub struct Report {
    /// The frame's end in the connection's byte count ([`Out::confirmed`]).
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

/// One chat connection as the action handlers see it.
pub struct ChatConn {
    pub state: Arc<AppState>,
    pub device: Option<Device>,
    /// The write side, and (once authenticated) the session.
    edge: Edge,
    /// The groups this device follows.
    pub groups: Following<(Bytes, Option<Report>)>,
    replays: (mpsc::Sender<Replay>, mpsc::Receiver<Replay>),
    /// Written broadcasts whose bytes are not confirmed out yet, oldest first.
    reports: VecDeque<Report>,
    counters: Counters,
    /// The extensions the device opted into at `authenticate`.
    pub extensions: chat::Extensions,
    /// The users whose presence this device watches.
    pub watching: std::collections::HashSet<String>,
    /// When this device last sent a typing indicator, per session.
    typed: std::collections::HashMap<String, std::time::Instant>,
}

/// This protocol's series of the per-delivery metrics, looked up once per connection.
struct Counters {
    delivered: IntCounter,
    latency: Histogram,
}

impl Counters {
    fn new(m: &murmur_broker::metrics::Metrics) -> Self {
        Counters {
            delivered: m.deliveries.with_label_values(&[LABEL, outcome::DELIVERED]),
            latency: m.delivery_latency.with_label_values(&[LABEL]),
        }
    }
}

/// What a chat connection waits on besides frames and its session.
pub enum Event {
    /// Bytes were written: reports whose frames are out can go.
    Flushed,
    /// A group followed after a change: its history after the change's mark.
    Replay(Replay),
}

impl ChatConn {
    pub fn new(state: Arc<AppState>, out: Out) -> ChatConn {
        let counters = Counters::new(&state.node.metrics);
        ChatConn {
            state,
            device: None,
            edge: Edge::new(out),
            groups: Following::default(),
            replays: mpsc::channel(16),
            reports: VecDeque::new(),
            counters,
            extensions: chat::Extensions::default(),
            watching: Default::default(),
            typed: Default::default(),
        }
    }

    /// A `providing-session-info` as this device is shown it: without the group's roles
    /// unless it opted into `roles`.
    pub fn shown(&self, info: Value) -> Value {
        if self.extensions.roles {
            return info;
        }
        chat::without_roles(&info).unwrap_or(info)
    }

    /// Whether a typing indicator for `session` may go now ([`TYPING_EVERY`]); counts
    /// it when it may.
    pub fn may_type(&mut self, session: &str) -> bool {
        let now = std::time::Instant::now();
        if self.typed.len() >= 64 {
            self.typed
                .retain(|_, at| now.duration_since(*at) < TYPING_EVERY);
        }
        match self.typed.get(session) {
            Some(at) if now.duration_since(*at) < TYPING_EVERY => false,
            _ if self.typed.len() >= 64 => false,
            _ => {
                self.typed.insert(session.to_string(), now);
                true
            }
        }
    }

    /// Writes one server action.
    pub async fn send(&mut self, action: &Value) -> Flow {
        self.edge
            .out
            .text(action.to_string().as_bytes())
            .map(|_| ())
    }

    /// Called by `authenticate` on success: the session is attached to this socket.
    pub fn attach(&mut self, device: Device, attachment: murmur_broker::Attachment) {
        let (link, _buffered) = Link::new(device.handle.clone(), attachment);
        self.edge.link = Some(link);
        self.device = Some(device);
    }

    /// Encodes queued envelopes (this one and whatever else is ready), packs them into
    /// as few frames as fit, and writes them.
    fn write(&mut self, first: Arc<Envelope>) -> Flow {
        let mut envs = vec![first];
        if let Some(rx) = self.edge.link.as_mut().map(|l| &mut l.queue) {
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
            let event = ChatEvent::parse(env.subject.as_deref());
            let opted = match event {
                Some(ChatEvent::MessageRead) => self.extensions.read_reports,
                Some(ChatEvent::Typing) => self.extensions.typing,
                _ => true,
            };
            if !opted {
                continue;
            }
            if let (Kind::Message, Body::Texts(ts)) = (env.kind, &env.body) {
                // Encoded where they were made (a sender's delivery reports of a window):
                // written as they are, packed like any other actions.
                texts.extend(ts.iter().map(|t| Bytes::copy_from_slice(t.as_bytes())));
                continue;
            }
            let Some(action) = body_of(env, own) else {
                continue;
            };
            let broadcast = event == Some(ChatEvent::MessageBroadcast);
            if event == Some(ChatEvent::ProvidingSessionInfo) {
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
            // The same bytes for every device: encoded once per node (a session change
            // with roles, for a device that did not opt into them, on its own).
            let plain = match event {
                Some(ChatEvent::ProvidingSessionInfo) if !self.extensions.roles => {
                    chat::without_roles(action)
                }
                _ => None,
            };
            let text = match plain {
                Some(plain) => Bytes::from(plain.to_string()),
                None => env
                    .wire
                    .get_or_init(|| Bytes::from(action.to_string()))
                    .clone(),
            };
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
    fn write_packed<T: AsRef<[u8]>>(&mut self, texts: &[T], reports: Vec<Report>) -> Flow {
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
            end = self.edge.out.text(frame.bytes())?;
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
                    let missed = Device::follow(&h, &group, mark.as_deref()).await;
                    // Without a mark there is nothing to replay (a subscription
                    // failure is the next change's to repair).
                    if mark.is_some() {
                        let _ = tx.send((group, missed)).await;
                    }
                });
            }
            Change::Unfollow(group) => {
                actix_web::rt::spawn(async move { Device::unfollow(&h, &group).await });
            }
        }
    }

    /// A group followed after a change: writes what its node received before the
    /// subscription (the history after the change's mark) and this device lacks.
    fn replay(&mut self, (group, missed): Replay) -> Flow {
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
        let out = self.edge.out.confirmed();
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
            ChatEvent::parse(env.subject.as_deref()),
            Some(ChatEvent::ProvidingSessionInfo | ChatEvent::MessageBroadcast | ChatEvent::Typing)
        );
    (!own_answer).then_some(body)
}

impl Adapter for ChatConn {
    type Frame = Map<String, Value>;
    type Event = Event;
    const PROTOCOL: Protocol = Protocol::Chat;

    fn edge(&mut self) -> &mut Edge {
        &mut self.edge
    }

    fn decode(data: Data) -> Result<Map<String, Value>, Refusal> {
        let Data::Text(bytes) = data else {
            return Err(refuse(
                CloseCode::UnsupportedData,
                "binary frames are not accepted",
            ));
        };
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        chat::parse_frame(text).map_err(|e| refuse(CloseCode::PolicyViolation, &e.0))
    }

    async fn apply(&mut self, frame: Map<String, Value>) -> Flow {
        apply::frame(self, frame).await
    }

    async fn deliver(&mut self, env: Arc<Envelope>) -> Flow {
        self.write(env)
    }

    fn next(&mut self) -> impl std::future::Future<Output = Wake<Event>> {
        let (out, reports, replays) = (&self.edge.out, &self.reports, &mut self.replays.1);
        let own = async move {
            tokio::select! {
                _ = out.flushed(reports.front().map(|r| r.end)) => Event::Flushed,
                Some(replay) = replays.recv() => Event::Replay(replay),
            }
        };
        edge::wake(&mut self.edge.link, own)
    }

    async fn on_event(&mut self, event: Event) -> Flow {
        match event {
            Event::Flushed => {
                self.confirm_reports();
                Ok(())
            }
            Event::Replay(replay) => self.replay(replay),
        }
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat::WEBSOCKET
    }

    fn deadline(&self) -> Option<Deadline> {
        Some(Deadline {
            after: AUTH_TIMEOUT,
            reason: "not authenticated in time",
        })
    }

    fn ready(&self) -> bool {
        self.device.is_some()
    }

    fn tick(&mut self) {
        self.groups.tick();
    }
}

fn refuse(code: CloseCode, reason: &str) -> Refusal {
    Refusal::Close(CloseReason::new(code, reason))
}
