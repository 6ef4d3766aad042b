//! GradAgenda chat on the broker: sessions (direct and mutable), participant-only
//! authorization, durable message history, and delivery to every device of every
//! participant on every node.
//!
//! Each device connection is a session subscribed to its user's inbox channel
//! (`@user/<id>`) and to the channel of every group its user is in (`@group/<id>`). A
//! group message is stored once and published once, on the group's channel; a direct
//! message goes to the two users' inboxes; session changes go to the inbox of every
//! participant, old and new, with the group's history mark, so a device that starts
//! following the group replays what its node received before it subscribed. Delivery
//! reports are aggregated per node ([`reports`]), and so are read reports ([`reads`]). Server actions
//! travel as [`Kind::Message`] envelopes whose `subject` is the action type and whose
//! body is the action without `cdid`; `from.session` is the requesting connection,
//! which gets no copy: it is answered directly, with its `cdid`.

pub mod device;
pub mod following;
pub mod inbox;
pub mod presence;
pub mod push;
pub mod reads;
pub mod reports;
mod window;

use std::fmt;

use murmur_shared::channel::{group_channel, user_inbox};
use murmur_shared::chat::{self, ChatEvent, SessionKind, SessionStatus};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::now_ms;
use serde_json::Value;

use std::sync::Arc;

use crate::node::Node;
use crate::scheduler::{self, DueHandler, Job};
use crate::session::Protocol;
use crate::session::SessionHandle;
use crate::store::{GroupChange, GroupRecord, GroupRefusal, GroupUpdate, StoredMessage};

/// Why a chat action failed; the text is the `status-response` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    NotFound,
    NotParticipant,
    /// The group's rules refused the change (roles).
    Denied(GroupRefusal),
    Invalid(String),
    /// The store failed: the client is told "temporarily unavailable".
    Store(crate::store::StoreError),
    /// The device session could not be opened (the node is draining).
    Open(crate::session::OpenError),
    /// The device session could not take a subscription (ended, or the bus is away).
    Session(crate::session::SessionError),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::NotFound => f.write_str("no such session"),
            ChatError::NotParticipant => f.write_str("not a participant of this session"),
            ChatError::Denied(why) => why.fmt(f),
            ChatError::Invalid(m) => f.write_str(m),
            ChatError::Store(e) => write!(f, "temporarily unavailable: {e}"),
            ChatError::Open(e) => e.fmt(f),
            ChatError::Session(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ChatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChatError::Store(e) => Some(e),
            ChatError::Open(e) => Some(e),
            ChatError::Session(e) => Some(e),
            _ => None,
        }
    }
}

impl ChatError {
    /// A store or bus failure is `Unavailable` ("temporarily unavailable").
    pub fn fault(&self) -> murmur_shared::fault::Fault {
        use murmur_shared::fault::Fault;
        match self {
            ChatError::NotFound => Fault::NotFound,
            ChatError::NotParticipant => Fault::Forbidden,
            ChatError::Denied(GroupRefusal::Empty | GroupRefusal::NotMember(_)) => Fault::Invalid,
            ChatError::Denied(_) => Fault::Forbidden,
            ChatError::Invalid(_) => Fault::Invalid,
            ChatError::Store(_) => Fault::Unavailable,
            ChatError::Open(e) => e.fault(),
            ChatError::Session(e) => e.fault(),
        }
    }
}

fn store_err(e: crate::store::StoreError) -> ChatError {
    ChatError::Store(e)
}

/// Publishes one server action to every device of `users`. The requesting connection
/// is answered directly by the gateway (in order with its other answers) and skips
/// this copy (`from.session` is its own).
fn publish_to(
    h: &SessionHandle,
    users: &[String],
    action: ChatEvent,
    body: Value,
    mark: Option<&str>,
) {
    let origin = Origin {
        session: Some(h.id()),
        user: Some(h.user().to_string()),
        protocol: Some(crate::session::Protocol::Chat),
    };
    node_publish(h.node(), origin, users, action, body, mark);
}

/// One publication per user inbox (session changes, direct messages).
fn node_publish(
    node: &Node,
    origin: Origin,
    users: &[String],
    action: ChatEvent,
    body: Value,
    mark: Option<&str>,
) {
    node.metrics.chat_fanout.observe(users.len() as f64);
    for user in users {
        publish_on(node, &origin, user_inbox(user), action, body.clone(), mark);
    }
}

fn publish_on(
    node: &Node,
    origin: &Origin,
    channel: String,
    action: ChatEvent,
    body: Value,
    mark: Option<&str>,
) {
    let mut env = Envelope::new(
        node.id(),
        Kind::Message,
        Destination::Channel(channel),
        Body::Json(body),
    )
    .from(origin.clone())
    .subject(action.as_str());
    env.history_mark = mark.map(str::to_string);
    node.router.publish(env);
}

/// The mark of a group with no history yet.
pub const EMPTY_MARK: &str = "0-0";

/// A group's newest history id ([`EMPTY_MARK`] when it has none).
async fn history_mark(node: &Node, session_id: &str) -> Result<String, ChatError> {
    let last = node
        .store()
        .messages(session_id, None, 1)
        .await
        .map_err(store_err)?;
    Ok(last
        .into_iter()
        .next()
        .map_or_else(|| EMPTY_MARK.to_string(), |m| m.id))
}

/// What a session change answers the requester: the `providing-session-info` action
/// and, while the requester's user is a participant, the group's history mark (where
/// the requester's device starts following the group from).
pub struct Changed {
    pub info: Value,
    pub mark: Option<String>,
}

/// The participants of a session: a direct session's two users (a pure function of its
/// id), or a group's, read from the store.
async fn session_participants(node: &Node, session_id: &str) -> Result<Vec<String>, ChatError> {
    match chat::direct_participants(session_id) {
        Some((a, b)) => Ok(vec![a, b]),
        None => match node.store().group(session_id).await.map_err(store_err)? {
            Some(g) => Ok(g.participants),
            None => Err(ChatError::NotFound),
        },
    }
}

/// The participants of a session, checking that `user` is one of them.
pub async fn participants(h: &SessionHandle, session_id: &str) -> Result<Vec<String>, ChatError> {
    let users = session_participants(h.node(), session_id).await?;
    if !users.iter().any(|u| u == h.user()) {
        return Err(ChatError::NotParticipant);
    }
    Ok(users)
}

/// `request-direct-session-info`: the id and participants of the direct session with
/// `other` (nothing is stored: the id is a pure function of the pair).
pub fn direct(h: &SessionHandle, other: &str) -> Result<(String, Vec<String>), ChatError> {
    if other == h.user() {
        return Err(ChatError::Invalid(
            "a direct session needs another user".into(),
        ));
    }
    let id = chat::direct_session_id(h.user(), other);
    let (a, b) = chat::direct_participants(&id)
        .ok_or_else(|| ChatError::Invalid("user ids cannot form a direct session".into()))?;
    Ok((id, vec![a, b]))
}

fn too_big() -> ChatError {
    ChatError::Invalid("the answer would not fit one 4096-byte frame".into())
}

/// `request-mutable-session-creation`: the creator joins; every participant's devices
/// are told (`created`). Returns the requester's answer (without `cdid`).
pub async fn create(h: &SessionHandle, mut users: Vec<String>) -> Result<Changed, ChatError> {
    if !users.iter().any(|u| u == h.user()) {
        users.insert(0, h.user().to_string());
    }
    if users.len() > chat::MAX_PARTICIPANTS {
        return Err(ChatError::Invalid(format!(
            "too many participants (at most {})",
            chat::MAX_PARTICIPANTS
        )));
    }
    let group = GroupRecord::new(
        murmur_shared::ids::random_uuid().to_string(),
        users,
        h.user(),
        now_ms(),
    );
    let info = group_info(&group, SessionStatus::Created);
    if !chat::fits_frame(&info) {
        return Err(too_big());
    }
    h.node()
        .store()
        .create_group(group.clone())
        .await
        .map_err(store_err)?;
    publish_to(
        h,
        &group.participants,
        ChatEvent::ProvidingSessionInfo,
        info.clone(),
        Some(EMPTY_MARK),
    );
    Ok(Changed {
        info,
        mark: Some(EMPTY_MARK.to_string()),
    })
}

/// A group's `providing-session-info` with its roles ([`chat::with_roles`]) when they
/// fit one frame with any `cdid` (else without: the participants always fit).
pub fn group_info(g: &GroupRecord, status: SessionStatus) -> Value {
    let info = chat::session_info(&g.id, SessionKind::Mutable, status, &g.participants, None);
    let with = chat::with_roles(info.clone(), g.owner.as_deref(), &g.admins);
    if chat::fits_frame(&with) {
        with
    } else {
        info
    }
}

/// A change to a group by one of its participants (`request-mutable-session-
/// modification`, `-deletion`, `request-leaving-mutable-session`,
/// `request-mutable-session-roles`), by the rules of [`GroupRecord::apply`]; the old and
/// new participants' devices are told. Returns the requester's answer (without `cdid`).
pub async fn change(
    h: &SessionHandle,
    session_id: &str,
    change: GroupChange,
) -> Result<Changed, ChatError> {
    if chat::direct_participants(session_id).is_some() {
        return Err(ChatError::Invalid("direct sessions are immutable".into()));
    }
    if let GroupChange::Participants(u) = &change {
        if u.is_empty() {
            return Err(ChatError::Denied(GroupRefusal::Empty));
        }
        let probe = chat::session_info(
            session_id,
            SessionKind::Mutable,
            SessionStatus::Modified,
            u,
            None,
        );
        if !chat::fits_frame(&probe) {
            return Err(too_big());
        }
    }
    let store = h.node().store();
    let (before, after) = match store.update_group(session_id, h.user(), change).await {
        Ok(GroupUpdate::Done { before, after }) => (before, after),
        Ok(GroupUpdate::NotFound) => return Err(ChatError::NotFound),
        Ok(GroupUpdate::Refused(GroupRefusal::NotParticipant)) => {
            return Err(ChatError::NotParticipant)
        }
        Ok(GroupUpdate::Refused(why)) => return Err(ChatError::Denied(why)),
        Err(e) => return Err(store_err(e)),
    };
    let (info, now) = match &after {
        Some(g) => (
            group_info(g, SessionStatus::Modified),
            g.participants.clone(),
        ),
        None => (
            group_info(&before, SessionStatus::Deleted),
            before.participants.clone(),
        ),
    };
    let mut told = before.participants.clone();
    for u in &now {
        if !told.contains(u) {
            told.push(u.clone());
        }
    }
    // Read after the change: a message stored later reaches every new participant.
    let mark = match after {
        Some(_) => Some(history_mark(h.node(), session_id).await?),
        None => None,
    };
    publish_to(
        h,
        &told,
        ChatEvent::ProvidingSessionInfo,
        info.clone(),
        mark.as_deref(),
    );
    let mark = mark.filter(|_| now.iter().any(|u| u == h.user()));
    Ok(Changed { info, mark })
}

/// `request-mutable-session-listing`: the user's groups.
pub async fn list(h: &SessionHandle) -> Result<Vec<GroupRecord>, ChatError> {
    h.node()
        .store()
        .groups_of(h.user())
        .await
        .map_err(store_err)
}

/// `request-sending-a-message`: participants only. Without a hold, the message is
/// stored durably first, then broadcast to every participant's devices, and the
/// requester's copy (without `cdid`) is returned. With a `~timing` hold, it is kept by
/// the scheduler (`Ok(None)`) and delivered when due. `cdid` is the request's: the
/// requester's copy will carry it.
pub async fn send(
    h: &SessionHandle,
    session_id: &str,
    message: Value,
    sender_timestamp: Value,
    timing: Option<Value>,
    deliver_at: Option<i64>,
    cdid: Option<&str>,
) -> Result<Option<Value>, ChatError> {
    let users = participants(h, session_id).await?;
    // Every frame the broadcast is sent as must fit: the requester's copy with its
    // cdid (a held message has no such copy), the other devices' copies and the
    // history form. Only the message id is not known yet: counted as its longest.
    let probe = chat::message_broadcast(
        session_id,
        h.user(),
        &message,
        &sender_timestamp,
        &"0".repeat(chat::MESSAGE_ID_ROOM),
        now_ms(),
        timing.as_ref(),
    );
    let own_cdid = if deliver_at.is_none() { cdid } else { None };
    if chat::broadcast_frame_len(&probe, own_cdid) > chat::MAX_FRAME_BYTES {
        return Err(ChatError::Invalid(
            "message too large for a broadcast frame".into(),
        ));
    }
    let node = h.node();
    if let Some(due) = deliver_at {
        let job = Job::protocol(
            Protocol::Chat,
            &HeldSend {
                session: session_id.to_string(),
                sender: h.user().to_string(),
                message,
                sender_timestamp,
                timing,
            },
        );
        scheduler::hold(node, due, job).await.map_err(store_err)?;
        return Ok(None);
    }
    let body = deliver(
        node,
        session_id,
        h.user(),
        message,
        sender_timestamp,
        timing,
        Sent::By(h, users),
    )
    .await?;
    Ok(Some(body))
}

/// Who a message is delivered for.
pub enum Sent<'a> {
    /// A connection sending now, with the participants it was checked against (read
    /// once per message).
    By(&'a SessionHandle, Vec<String>),
    /// A held (`~timing`) message coming due: the participants are read now.
    Held,
}

/// A chat message held by `~timing`: stored and broadcast when due.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HeldSend {
    session: String,
    sender: String,
    message: Value,
    sender_timestamp: Value,
    timing: Option<Value>,
}

/// Chat's scheduler handler: a held message is stored and broadcast when due, to the
/// participants of that moment.
pub struct DueSend;

impl DueHandler for DueSend {
    fn timing<'a>(&self, payload: &'a Value) -> Option<&'a Value> {
        payload.get("timing").filter(|t| !t.is_null())
    }

    fn run(&self, node: Arc<Node>, payload: Value) -> scheduler::DueRun {
        Box::pin(async move {
            let h: HeldSend = serde_json::from_value(payload)?;
            deliver(
                &node,
                &h.session,
                &h.sender,
                h.message,
                h.sender_timestamp,
                h.timing,
                Sent::Held,
            )
            .await?;
            Ok(())
        })
    }
}

/// Stores a chat message and broadcasts it to every participant's devices. A sending
/// connection ([`Sent::By`]) is answered directly and gets no copy of the broadcast.
pub async fn deliver(
    node: &Arc<Node>,
    session_id: &str,
    sender: &str,
    message: Value,
    sender_timestamp: Value,
    timing: Option<Value>,
    sent: Sent<'_>,
) -> Result<Value, ChatError> {
    let (from, users) = match sent {
        Sent::By(h, users) => (Some(h), users),
        Sent::Held => (None, session_participants(node, session_id).await?),
    };
    let server_timestamp = now_ms();
    let mut stored = StoredMessage {
        id: String::new(),
        session: session_id.to_string(),
        sender: sender.to_string(),
        message,
        sender_timestamp,
        server_timestamp,
        timing,
    };
    let cfg = &node.config;
    stored.id = node
        .store()
        .append_message(stored.clone(), cfg.chat_history_len, cfg.chat_history_ttl)
        .await
        .map_err(store_err)?;
    let body = stored.broadcast();
    let origin = Origin {
        session: from.map(|h| h.id()),
        user: Some(sender.to_string()),
        protocol: Some(crate::session::Protocol::Chat),
    };
    node.metrics.chat_fanout.observe(users.len() as f64);
    publish_in(
        node,
        &origin,
        session_id,
        &users,
        ChatEvent::MessageBroadcast,
        body.clone(),
    );
    push::queue_for_offline(node, &stored, &users).await;
    Ok(body)
}

/// Extension `request-message-history`: participants only.
pub async fn history(
    h: &SessionHandle,
    session_id: &str,
    since: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredMessage>, ChatError> {
    participants(h, session_id).await?;
    if let Some(s) = since {
        if !chat::is_message_id(s) {
            return Err(ChatError::Invalid(
                "`since-message-id` is not a message id".into(),
            ));
        }
    }
    h.node()
        .store()
        .messages(session_id, since, limit)
        .await
        .map_err(store_err)
}

/// Extension `request-typing`: participants only; `typing` goes to the session's
/// participants' devices (the gateway writes it to those that opted in, not to the
/// typing device itself). Ephemeral: never stored.
pub async fn typing(h: &SessionHandle, session_id: &str, device_id: &str) -> Result<(), ChatError> {
    let users = participants(h, session_id).await?;
    let body = chat::typing(session_id, h.user(), device_id);
    let origin = Origin {
        session: Some(h.id()),
        user: Some(h.user().to_string()),
        protocol: Some(crate::session::Protocol::Chat),
    };
    publish_in(
        h.node(),
        &origin,
        session_id,
        &users,
        ChatEvent::Typing,
        body,
    );
    Ok(())
}

/// Publishes an action for a session's participants: once on a group's channel, or on
/// each of a direct session's two users' inboxes.
fn publish_in(
    node: &Node,
    origin: &Origin,
    session_id: &str,
    users: &[String],
    action: ChatEvent,
    body: Value,
) {
    if chat::direct_participants(session_id).is_none() {
        publish_on(node, origin, group_channel(session_id), action, body, None);
        return;
    }
    for user in users {
        publish_on(node, origin, user_inbox(user), action, body.clone(), None);
    }
}

/// Extension `message-delivered`: records that broadcast `key` (its envelope id; `about`
/// says what it is) was written to `device`; the node reports it to the sender's
/// devices, aggregated ([`reports`]).
pub fn delivered(
    node: &Node,
    key: uuid::Uuid,
    about: impl FnOnce() -> reports::About,
    device: &Arc<reports::Device>,
) {
    let Some(reports) = node.extension::<reports::DeliveryReports>() else {
        return;
    };
    if !reports.delivered(key, about, device) {
        node.metrics
            .delivery("chat", crate::metrics::outcome::REPORT_DROPPED);
    }
}
