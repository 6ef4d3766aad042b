//! GradAgenda chat wire codec (CONTRACT §5): decode client actions, encode server
//! actions. Pure functions; the gateway maps [`FrameError`] to close codes and
//! [`Invalid`] to a `status-response` `failed`.
//!
//! [`message`] checks the `message` object of a send (text and the multimedia types);
//! [`extensions`] holds what the extensions add: the `authenticate` opt-in and the
//! server frames of read state, the inbox, presence, typing and roles.
//!
//! Ids (`user-id`, `session-id`, `device-id`, `cdid`) are strings; JSON numbers are
//! accepted and turned into their decimal text.

pub mod extensions;
pub mod message;

pub use extensions::*;

use std::fmt;

use serde_json::{json, Map, Value};

/// Largest text frame, either direction (the seed's 4 KB).
pub const MAX_FRAME_BYTES: usize = 4096;
/// Participants of one mutable session at most (documented limit).
pub const MAX_PARTICIPANTS: usize = 256;
/// Longest id (user, device, session, cdid), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Actions in one client batch at most.
pub const MAX_BATCH: usize = 64;
/// Messages one history request may return at most (and the default).
pub const MAX_HISTORY: usize = 100;

/// A frame that is not a JSON object: the connection is closed with 1008.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An action that cannot be carried out as sent: answered `status-response` `failed`
/// with `cdid` (when one could be read) and `reason`; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub cdid: Option<String>,
    pub reason: String,
}

/// A decoded client action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Authenticate {
        cdid: Option<String>,
        user_id: String,
        device_id: String,
        token: String,
        /// The extensions this device asks for (old clients send none).
        extensions: Extensions,
    },
    DirectSessionInfo {
        cdid: Option<String>,
        user_id: String,
    },
    CreateMutable {
        cdid: Option<String>,
        user_ids: Vec<String>,
    },
    ModifyMutable {
        cdid: Option<String>,
        session_id: String,
        user_ids: Vec<String>,
    },
    DeleteMutable {
        cdid: Option<String>,
        session_id: String,
    },
    ListMutable {
        cdid: Option<String>,
    },
    SendMessage {
        cdid: Option<String>,
        session_id: String,
        /// The seed's message-type object (`type`, `body`), passed through.
        message: Value,
        sender_timestamp: Value,
        timing: Option<Value>,
    },
    /// Extension: the last `limit` messages, or those after `since` (a message id).
    History {
        cdid: Option<String>,
        session_id: String,
        limit: usize,
        since: Option<String>,
    },
    /// Extension: moves the user's read position in a session forward.
    MarkRead {
        cdid: Option<String>,
        session_id: String,
        message_id: String,
    },
    /// Extension: the user's read position and unread count in a session.
    UnreadCount {
        cdid: Option<String>,
        session_id: String,
    },
    /// Extension: the requester leaves a mutable session.
    LeaveMutable {
        cdid: Option<String>,
        session_id: String,
    },
    /// Extension: the owner sets a mutable session's owner and/or admins.
    MutableRoles {
        cdid: Option<String>,
        session_id: String,
        owner: Option<String>,
        admins: Option<Vec<String>>,
    },
    /// Extension: the presence of users (now, then every change), or stop (`watch`
    /// false).
    Presence {
        cdid: Option<String>,
        user_ids: Vec<String>,
        watch: bool,
    },
    /// Extension: the requester is typing in a session (ephemeral).
    Typing {
        cdid: Option<String>,
        session_id: String,
    },
    /// Extension: a page of the user's sessions, newest message first.
    Inbox {
        cdid: Option<String>,
        limit: usize,
        /// Where the page starts: the `next-cursor` of the previous page, split into
        /// its last message id and session id.
        after: Option<(String, String)>,
    },
    /// Inner actions are decoded one by one, each answered as if sent alone.
    Batch {
        cdid: Option<String>,
        actions: Vec<Value>,
    },
}

impl Action {
    pub fn cdid(&self) -> Option<&str> {
        match self {
            Action::Authenticate { cdid, .. }
            | Action::DirectSessionInfo { cdid, .. }
            | Action::CreateMutable { cdid, .. }
            | Action::ModifyMutable { cdid, .. }
            | Action::DeleteMutable { cdid, .. }
            | Action::ListMutable { cdid }
            | Action::SendMessage { cdid, .. }
            | Action::History { cdid, .. }
            | Action::MarkRead { cdid, .. }
            | Action::UnreadCount { cdid, .. }
            | Action::Inbox { cdid, .. }
            | Action::LeaveMutable { cdid, .. }
            | Action::Presence { cdid, .. }
            | Action::Typing { cdid, .. }
            | Action::MutableRoles { cdid, .. }
            | Action::Batch { cdid, .. } => cdid.as_deref(),
        }
    }
}

/// A message id (`<ms>-<n>`, decimal digits).
pub fn is_message_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(a, b)| {
        (1..=20).contains(&a.len())
            && (1..=20).contains(&b.len())
            && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
    })
}

/// Parses a text frame into a JSON object. Anything else is a [`FrameError`].
pub fn parse_frame(text: &str) -> Result<Map<String, Value>, FrameError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FrameError("frame is not a JSON object".into())),
        Err(e) => Err(FrameError(format!("frame is not valid JSON: {e}"))),
    }
}

/// An id: a non-empty string (or a number, turned into text) of at most [`MAX_ID_LEN`]
/// bytes without control characters.
pub fn id_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ok = !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control);
    ok.then_some(s)
}

/// The action's `cdid`: absent (or `null`) is `None`; anything else must be an id
/// ([`id_value`]), or the action is refused (without a cdid: it has no usable one).
fn cdid_of(obj: &Map<String, Value>) -> Result<Option<String>, Invalid> {
    match obj.get("cdid") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => id_value(v).map(Some).ok_or_else(|| Invalid {
            cdid: None,
            reason: format!(
                "`cdid` must be a string id of 1..={MAX_ID_LEN} bytes without control characters"
            ),
        }),
    }
}

fn req_id(obj: &Map<String, Value>, field: &str, cdid: &Option<String>) -> Result<String, Invalid> {
    obj.get(field).and_then(id_value).ok_or_else(|| Invalid {
        cdid: cdid.clone(),
        reason: format!("`{field}` must be a string id of 1..={MAX_ID_LEN} bytes"),
    })
}

fn id_list(obj: &Map<String, Value>, cdid: &Option<String>) -> Result<Vec<String>, Invalid> {
    let fail = |reason: String| Invalid {
        cdid: cdid.clone(),
        reason,
    };
    let Some(Value::Array(items)) = obj.get("user-id") else {
        return Err(fail("`user-id` must be an array of user ids".into()));
    };
    if items.len() > MAX_PARTICIPANTS {
        return Err(fail(format!(
            "too many participants (at most {MAX_PARTICIPANTS})"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let id = id_value(item).ok_or_else(|| fail("`user-id` entries must be user ids".into()))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Decodes one action object (also used for each inner action of a batch).
pub fn decode_action(obj: &Map<String, Value>) -> Result<Action, Invalid> {
    let cdid = cdid_of(obj)?;
    let fail = |reason: &str| Invalid {
        cdid: cdid.clone(),
        reason: reason.to_string(),
    };
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err(fail("`type` must be a string"));
    };
    Ok(match kind {
        "authenticate" => {
            let user_id = req_id(obj, "user-id", &cdid)?;
            let device_id = req_id(obj, "device-id", &cdid)?;
            let token = obj
                .get("token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| fail("`token` must be a non-empty string"))?
                .to_string();
            let extensions = extensions_of(obj, &cdid)?;
            Action::Authenticate {
                cdid,
                user_id,
                device_id,
                token,
                extensions,
            }
        }
        "request-direct-session-info" => {
            let user_id = req_id(obj, "user-id", &cdid)?;
            Action::DirectSessionInfo { cdid, user_id }
        }
        "request-mutable-session-creation" => {
            let user_ids = id_list(obj, &cdid)?;
            Action::CreateMutable { cdid, user_ids }
        }
        "request-mutable-session-modification" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            let user_ids = id_list(obj, &cdid)?;
            Action::ModifyMutable {
                cdid,
                session_id,
                user_ids,
            }
        }
        "request-mutable-session-deletion" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            Action::DeleteMutable { cdid, session_id }
        }
        "request-mutable-session-listing" => Action::ListMutable { cdid },
        "request-sending-a-message" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            let message = obj.get("message").cloned().unwrap_or(Value::Null);
            message::validate(&message).map_err(|why| fail(&why))?;
            let sender_timestamp = obj.get("sender-timestamp").cloned().unwrap_or(Value::Null);
            if !sender_timestamp.is_number() {
                return Err(fail(
                    "`sender-timestamp` must be a number (ms since the epoch)",
                ));
            }
            let timing = match obj.get("~timing") {
                None => None,
                Some(t @ Value::Object(_)) => Some(t.clone()),
                Some(_) => return Err(fail("`~timing` must be an object")),
            };
            Action::SendMessage {
                cdid,
                session_id,
                message,
                sender_timestamp,
                timing,
            }
        }
        "request-message-history" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            let limit = match obj.get("limit") {
                None => MAX_HISTORY,
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => (n as usize).min(MAX_HISTORY),
                    _ => return Err(fail("`limit` must be a positive integer")),
                },
            };
            let since = match obj.get("since-message-id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    id_value(v).ok_or_else(|| fail("`since-message-id` must be a message id"))?,
                ),
            };
            Action::History {
                cdid,
                session_id,
                limit,
                since,
            }
        }
        "request-marking-read" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            let message_id = obj
                .get("message-id")
                .and_then(Value::as_str)
                .filter(|id| is_message_id(id))
                .ok_or_else(|| fail("`message-id` must be a message id (`<ms>-<n>`)"))?
                .to_string();
            Action::MarkRead {
                cdid,
                session_id,
                message_id,
            }
        }
        "request-unread-count" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            Action::UnreadCount { cdid, session_id }
        }
        "request-presence" => {
            let user_ids = id_list(obj, &cdid)?;
            if user_ids.is_empty() {
                return Err(fail("`user-id` must name at least one user"));
            }
            let watch = match obj.get("watch") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(fail("`watch` must be a boolean")),
            };
            Action::Presence {
                cdid,
                user_ids,
                watch,
            }
        }
        "request-typing" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            Action::Typing { cdid, session_id }
        }
        "request-leaving-mutable-session" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            Action::LeaveMutable { cdid, session_id }
        }
        "request-mutable-session-roles" => {
            let session_id = req_id(obj, "session-id", &cdid)?;
            let owner = match obj.get("owner") {
                None | Some(Value::Null) => None,
                Some(_) => Some(req_id(obj, "owner", &cdid)?),
            };
            let admins = match obj.get("admins") {
                None | Some(Value::Null) => None,
                Some(Value::Array(items)) if items.len() <= MAX_PARTICIPANTS => {
                    let mut out: Vec<String> = Vec::with_capacity(items.len());
                    for item in items {
                        let id = id_value(item)
                            .ok_or_else(|| fail("`admins` entries must be user ids"))?;
                        if !out.contains(&id) {
                            out.push(id);
                        }
                    }
                    Some(out)
                }
                Some(_) => {
                    return Err(fail(&format!(
                        "`admins` must be an array of at most {MAX_PARTICIPANTS} user ids"
                    )))
                }
            };
            if owner.is_none() && admins.is_none() {
                return Err(fail("give an `owner`, `admins`, or both"));
            }
            Action::MutableRoles {
                cdid,
                session_id,
                owner,
                admins,
            }
        }
        "request-inbox" => {
            let limit = match obj.get("limit") {
                None => INBOX_PAGE,
                Some(v) => match v.as_u64() {
                    Some(n) if (1..=MAX_INBOX_PAGE as u64).contains(&n) => n as usize,
                    _ => {
                        return Err(fail(&format!(
                            "`limit` must be an integer in 1..={MAX_INBOX_PAGE}"
                        )))
                    }
                },
            };
            let after = match obj.get("cursor") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_str()
                        .and_then(parse_inbox_cursor)
                        .ok_or_else(|| fail("`cursor` must be a `next-cursor` of this listing"))?,
                ),
            };
            Action::Inbox { cdid, limit, after }
        }
        "batch-mode-action" => {
            let Some(Value::Array(actions)) = obj.get("actions") else {
                return Err(fail("`actions` must be an array"));
            };
            if actions.len() > MAX_BATCH {
                return Err(fail(&format!("at most {MAX_BATCH} actions per batch")));
            }
            Action::Batch {
                cdid,
                actions: actions.clone(),
            }
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(fail(&format!("unknown action type {shown:?}")));
        }
    })
}

/// The direct session id of two users: a pure, reversible function of the unordered
/// pair, the same on every node forever. `direct-` + base64url(`<len(a)>:<a><b>`) with
/// `a <= b`.
pub fn direct_session_id(x: &str, y: &str) -> String {
    let (a, b) = if x <= y { (x, y) } else { (y, x) };
    format!(
        "direct-{}",
        b64url(format!("{}:{a}{b}", a.len()).as_bytes())
    )
}

/// The two users of a direct session id, if it is one.
pub fn direct_participants(id: &str) -> Option<(String, String)> {
    let raw = unb64url(id.strip_prefix("direct-")?)?;
    let text = String::from_utf8(raw).ok()?;
    let (len_text, rest) = text.split_once(':')?;
    let len: usize = len_text.parse().ok()?;
    // The length in canonical decimal only (not `01` or `+1`): one id per pair.
    if len.to_string() != len_text || len > rest.len() || !rest.is_char_boundary(len) {
        return None;
    }
    let (a, b) = rest.split_at(len);
    // `a < b`: a user has no direct session with themself.
    (a < b && !a.is_empty()).then(|| (a.to_string(), b.to_string()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn unb64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding (canonical encoding only).
    (acc == 0 && bits < 6).then_some(out)
}

fn with_cdid(mut v: Value, cdid: Option<&str>) -> Value {
    if let (Some(c), Value::Object(m)) = (cdid, &mut v) {
        m.insert("cdid".into(), Value::String(c.to_string()));
    }
    v
}

/// `status-response`.
pub fn status_response(cdid: Option<&str>, succeeded: bool, message: Option<&str>) -> Value {
    let mut v = json!({
        "type": "status-response",
        "status": if succeeded { "succeeded" } else { "failed" },
    });
    if let Some(m) = message {
        v["message"] = Value::String(m.to_string());
    }
    with_cdid(v, cdid)
}

/// Session kinds of `providing-session-info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Direct,
    Mutable,
}

/// Statuses of `providing-session-info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Created,
    Modified,
    Deleted,
    Unchanged,
}

/// `providing-session-info`.
pub fn session_info(
    session_id: &str,
    kind: SessionKind,
    status: SessionStatus,
    participants: &[String],
    cdid: Option<&str>,
) -> Value {
    let v = json!({
        "type": "providing-session-info",
        "session-id": session_id,
        "session-type": match kind { SessionKind::Direct => "direct", SessionKind::Mutable => "mutable" },
        "status": match status {
            SessionStatus::Created => "created",
            SessionStatus::Modified => "modified",
            SessionStatus::Deleted => "deleted",
            SessionStatus::Unchanged => "unchanged",
        },
        "user-id": participants,
    });
    with_cdid(v, cdid)
}

/// `message-broadcast` (without `cdid`; the gateway adds it to the sending connection's copy).
pub fn message_broadcast(
    session_id: &str,
    sender_id: &str,
    message: &Value,
    sender_timestamp: &Value,
    message_id: &str,
    server_timestamp: u64,
    timing: Option<&Value>,
) -> Value {
    let mut v = json!({
        "type": "message-broadcast",
        "session-id": session_id,
        "sender-id": sender_id,
        "message": message,
        "sender-timestamp": sender_timestamp,
        "message-id": message_id,
        "server-timestamp": server_timestamp,
    });
    if let Some(t) = timing {
        v["~timing"] = t.clone();
    }
    v
}

/// One `delivered-to` entry of a `message-delivered`, as JSON text.
pub fn delivered_entry(user_id: &str, device_id: &str) -> String {
    json!({"user-id": user_id, "device-id": device_id}).to_string()
}

/// The server actions the broker publishes to devices (the envelope's subject, written
/// and read only through this enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatEvent {
    /// A message for its session's participants.
    MessageBroadcast,
    /// A session was created, modified or deleted.
    ProvidingSessionInfo,
    /// Devices a message reached (aggregated).
    MessageDelivered,
    /// Participants read a session up to a message (aggregated; opted-in devices only).
    MessageRead,
    /// A watched user came online or went offline.
    Presence,
    /// A participant is typing (ephemeral; opted-in devices only).
    Typing,
}

impl ChatEvent {
    pub const ALL: [ChatEvent; 6] = [
        ChatEvent::MessageBroadcast,
        ChatEvent::ProvidingSessionInfo,
        ChatEvent::MessageDelivered,
        ChatEvent::MessageRead,
        ChatEvent::Presence,
        ChatEvent::Typing,
    ];

    /// Its action `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatEvent::MessageBroadcast => "message-broadcast",
            ChatEvent::ProvidingSessionInfo => "providing-session-info",
            ChatEvent::MessageDelivered => "message-delivered",
            ChatEvent::MessageRead => "message-read",
            ChatEvent::Presence => "presence",
            ChatEvent::Typing => "typing",
        }
    }

    /// The event an envelope subject names, if any.
    pub fn parse(subject: Option<&str>) -> Option<ChatEvent> {
        let subject = subject?;
        Self::ALL.into_iter().find(|e| e.as_str() == subject)
    }
}

/// `message-delivered` (extension, aggregated): the devices `devices` (user id, device
/// id and their [`delivered_entry`]) were handed message `message_id`. One frame
/// carries as many devices as fit 4096 bytes, in `delivered-to`; `user-id` and
/// `device-id` name its first device (the per-device form of earlier versions, kept for
/// the clients that read it). Built as JSON text, once per message per node.
pub fn message_delivered_frames(
    session_id: &str,
    message_id: &str,
    devices: &[(&str, &str, &str)],
) -> Vec<String> {
    let head = |&(user, device, _): &(&str, &str, &str)| {
        json!({
            "type": ChatEvent::MessageDelivered.as_str(),
            "session-id": session_id,
            "message-id": message_id,
            "user-id": user,
            "device-id": device,
        })
    };
    aggregated_frames(devices, "delivered-to", head, |d| d.2)
}

/// The frames of an aggregated report: `head` of each frame's first entry (a JSON
/// object) with `"<list>": [..]` holding as many entries (JSON texts, from `entry`) as
/// fit [`MAX_FRAME_BYTES`].
fn aggregated_frames<E>(
    entries: &[E],
    list: &str,
    head: impl Fn(&E) -> Value,
    entry: impl Fn(&E) -> &str,
) -> Vec<String> {
    let mut frames = Vec::new();
    let mut rest = entries;
    while let Some(first) = rest.first() {
        // `{…head…,"<list>":[e1,e2,…]}`: the entries are already JSON text.
        let mut text = head(first).to_string();
        text.pop();
        text.push_str(&format!(r#","{list}":["#));
        let mut n = 0;
        while n < rest.len()
            && (n == 0 || text.len() + 1 + entry(&rest[n]).len() + 2 <= MAX_FRAME_BYTES)
        {
            if n > 0 {
                text.push(',');
            }
            text.push_str(entry(&rest[n]));
            n += 1;
        }
        text.push_str("]}");
        frames.push(text);
        rest = &rest[n..];
    }
    frames
}

/// Whether a server action fits one frame even with the longest `cdid` a client may
/// attach ([`MAX_ID_LEN`] bytes, as JSON-escaped text).
pub fn fits_frame(action: &Value) -> bool {
    // `,"cdid":"<128 chars, up to 6 bytes each when escaped>"`
    const CDID_ROOM: usize = 10 + MAX_ID_LEN * 6;
    action.to_string().len() + CDID_ROOM <= MAX_FRAME_BYTES
}

/// Characters counted for the `message-id` of a broadcast whose id the store has not
/// assigned yet: `<13-digit ms>-<n>` with `n` of up to 6 digits.
pub const MESSAGE_ID_ROOM: usize = 20;

/// The size in bytes of the largest frame a `message-broadcast` (as built by
/// [`message_broadcast`]) is sent as: the sending connection's copy (with
/// `sender_cdid`), every other device's copy (as is) and its history form
/// (`"history": true`, without a cdid: a history request's own cdid is added only when
/// the answer fits, see [`history_item`]).
pub fn broadcast_frame_len(broadcast: &Value, sender_cdid: Option<&str>) -> usize {
    let plain = broadcast.to_string().len();
    let own = sender_cdid.map_or(plain, |c| {
        with_cdid(broadcast.clone(), Some(c)).to_string().len()
    });
    let mut history = broadcast.clone();
    history["history"] = Value::Bool(true);
    plain.max(own).max(history.to_string().len())
}

/// A stored message as a `request-message-history` item: the broadcast with
/// `"history": true` and the request's `cdid`.
pub fn history_item(broadcast: Value, cdid: Option<&str>) -> Value {
    let mut v = broadcast;
    v["history"] = Value::Bool(true);
    with_cdid(v, cdid)
}

/// Adds `cdid` to an encoded server action.
pub fn add_cdid(v: Value, cdid: &str) -> Value {
    with_cdid(v, Some(cdid))
}

/// One frame made by [`pack_frames`]: an action alone (borrowed as it is) or a
/// `batch-mode-action` packing several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packed<'a> {
    One(&'a [u8]),
    Batch(Vec<u8>),
}

impl Packed<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Packed::One(b) => b,
            Packed::Batch(b) => b,
        }
    }
}

/// Packs encoded server actions (JSON texts) into frames of at most
/// [`MAX_FRAME_BYTES`]: one action alone stays as it is; several go into one
/// `batch-mode-action`. Actions too large to fit a batch are sent alone.
pub fn pack_frames<'a, T: AsRef<[u8]>>(actions: &'a [T]) -> Vec<Packed<'a>> {
    const HEAD: &[u8] = br#"{"type":"batch-mode-action","actions":["#;
    let mut frames = Vec::new();
    let mut group: Vec<&'a [u8]> = Vec::new();
    let mut size = HEAD.len() + 2;
    let flush = |group: &mut Vec<&'a [u8]>, frames: &mut Vec<Packed<'a>>| {
        match group.len() {
            0 => {}
            1 => frames.push(Packed::One(group[0])),
            _ => {
                let len = HEAD.len() + 2 + group.iter().map(|a| a.len() + 1).sum::<usize>();
                let mut out = Vec::with_capacity(len);
                out.extend_from_slice(HEAD);
                for (k, a) in group.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(a);
                }
                out.extend_from_slice(b"]}");
                frames.push(Packed::Batch(out));
            }
        }
        group.clear();
    };
    for a in actions.iter().map(AsRef::as_ref) {
        if size + a.len() + 1 > MAX_FRAME_BYTES && !group.is_empty() {
            flush(&mut group, &mut frames);
            size = HEAD.len() + 2;
        }
        size += a.len() + 1;
        group.push(a);
    }
    flush(&mut group, &mut frames);
    frames
}

#[cfg(test)]
mod tests {

    #[test]
    fn delivery_reports_split_into_frames_that_fit() {
        let devices: Vec<(String, String)> = (0..300)
            .map(|i| (format!("user-{i:04}"), format!("device-{i:04}")))
            .collect();
        let entries: Vec<String> = devices.iter().map(|(u, d)| delivered_entry(u, d)).collect();
        let refs: Vec<(&str, &str, &str)> = devices
            .iter()
            .zip(&entries)
            .map(|((u, d), e)| (u.as_str(), d.as_str(), e.as_str()))
            .collect();
        let texts = message_delivered_frames("g", "1-0", &refs);
        assert!(texts.len() > 1);
        for t in &texts {
            assert!(t.len() <= MAX_FRAME_BYTES);
        }
        // Valid JSON, each an action object.
        let frames: Vec<Value> = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        let mut seen = Vec::new();
        for f in &frames {
            assert_eq!(f["type"], "message-delivered");
            let to = f["delivered-to"].as_array().unwrap();
            assert_eq!(f["user-id"], to[0]["user-id"]);
            assert_eq!(f["device-id"], to[0]["device-id"]);
            for d in to {
                seen.push((
                    d["user-id"].as_str().unwrap().to_string(),
                    d["device-id"].as_str().unwrap().to_string(),
                ));
            }
        }
        assert_eq!(seen, devices);
        // Each frame but the last is full: one more device would not have fitted.
        let first = texts[0].len();
        assert!(
            first + 1 + r#"{"device-id":"device-0000","user-id":"user-0000"}"#.len()
                > MAX_FRAME_BYTES
        );
        let one = message_delivered_frames("g", "1-0", &refs[..1]);
        assert_eq!(one.len(), 1);
        let one: Value = serde_json::from_str(&one[0]).unwrap();
        assert_eq!(one["user-id"], "user-0000");
    }
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn frames_must_be_json_objects() {
        assert!(parse_frame(r#"{"type":"x"}"#).is_ok());
        for bad in [
            "[]",
            "1",
            "\"s\"",
            "null",
            "{",
            "",
            "{\"a\":}",
            &"[".repeat(5000),
        ] {
            assert!(parse_frame(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn authenticate_decodes_and_numbers_become_strings() {
        let a = decode_action(&obj(
            json!({"cdid": 7, "type": "authenticate", "user-id": 42,
            "device-id": "phone&aa:bb", "token": "t"}),
        ))
        .unwrap();
        assert_eq!(
            a,
            Action::Authenticate {
                cdid: Some("7".into()),
                user_id: "42".into(),
                device_id: "phone&aa:bb".into(),
                token: "t".into(),
                extensions: Extensions::default(),
            }
        );
    }

    #[test]
    fn extensions_are_opted_into_at_authenticate() {
        let auth = |ext: Value| {
            let mut v = json!({"cdid": "c", "type": "authenticate", "user-id": "u",
                "device-id": "d", "token": "t"});
            v["extensions"] = ext;
            decode_action(&obj(v))
        };
        let opted = |ext: Value| match auth(ext) {
            Ok(Action::Authenticate { extensions, .. }) => extensions,
            other => panic!("{other:?}"),
        };
        assert_eq!(opted(json!(null)), Extensions::default());
        assert_eq!(opted(json!([])), Extensions::default());
        assert!(opted(json!(["read-reports"])).read_reports);
        assert!(
            opted(json!(["presence-v9", "read-reports"])).read_reports,
            "unknown names are ignored"
        );
        let reason = "`extensions` must be an array of at most 16 names";
        for bad in [
            json!("read-reports"),
            json!([1]),
            json!(vec!["x"; 17]),
            json!({}),
        ] {
            assert_eq!(auth(bad.clone()).unwrap_err().reason, reason, "{bad}");
        }
    }

    #[test]
    fn read_actions_decode_and_check_their_ids() {
        let a = decode_action(&obj(json!({"cdid": "r", "type": "request-marking-read",
            "session-id": "g", "message-id": "1700000000000-3"})))
        .unwrap();
        assert_eq!(
            a,
            Action::MarkRead {
                cdid: Some("r".into()),
                session_id: "g".into(),
                message_id: "1700000000000-3".into(),
            }
        );
        for bad in [
            json!(null),
            json!(5),
            json!("x-1"),
            json!("1-"),
            json!("-1"),
            json!("1-2-3"),
            json!(format!("{}-0", "9".repeat(21))),
        ] {
            let e = decode_action(&obj(json!({"cdid": "r", "type": "request-marking-read",
                "session-id": "g", "message-id": bad})))
            .unwrap_err();
            assert_eq!(e.reason, "`message-id` must be a message id (`<ms>-<n>`)");
            assert_eq!(e.cdid.as_deref(), Some("r"));
        }
        let u = decode_action(&obj(
            json!({"type": "request-unread-count", "session-id": 7}),
        ))
        .unwrap();
        assert_eq!(
            u,
            Action::UnreadCount {
                cdid: None,
                session_id: "7".into()
            }
        );
    }

    #[test]
    fn inbox_requests_decode_their_page() {
        let inbox = |v: Value| {
            let mut o = json!({"cdid": "i", "type": "request-inbox"});
            for (k, x) in v.as_object().unwrap() {
                o[k] = x.clone();
            }
            decode_action(&obj(o))
        };
        assert_eq!(
            inbox(json!({})).unwrap(),
            Action::Inbox {
                cdid: Some("i".into()),
                limit: INBOX_PAGE,
                after: None
            }
        );
        let cursor = inbox_cursor("1700000000000-2", "g~1");
        assert_eq!(
            inbox(json!({"limit": 100, "cursor": cursor})).unwrap(),
            Action::Inbox {
                cdid: Some("i".into()),
                limit: 100,
                after: Some(("1700000000000-2".into(), "g~1".into())),
            }
        );
        for bad in [json!(0), json!(101), json!("5"), json!(-1)] {
            assert_eq!(
                inbox(json!({"limit": bad})).unwrap_err().reason,
                "`limit` must be an integer in 1..=100"
            );
        }
        for bad in [
            json!("nope"),
            json!("1-0~"),
            json!("x~g"),
            json!(7),
            json!(format!("1-0~{}", "g".repeat(129))),
        ] {
            assert_eq!(
                inbox(json!({"cursor": bad})).unwrap_err().reason,
                "`cursor` must be a `next-cursor` of this listing"
            );
        }
        let item = inbox_item(
            "g",
            Some(("1-0", "bob", 5, &json!({"type": "text", "body": "hi"}))),
            3,
            Some("i"),
        );
        assert_eq!(
            item,
            json!({"type": "inbox-item", "cdid": "i", "session-id": "g", "session-type": "mutable",
                "unread": 3, "last-message": {"message-id": "1-0", "sender-id": "bob",
                "server-timestamp": 5, "message-type": "text", "preview": "hi"}})
        );
        assert_eq!(inbox_item("g", None, 0, None)["last-message"], Value::Null);
    }

    #[test]
    fn wrong_types_are_invalid_with_the_cdid() {
        for v in [
            json!({"cdid": "c", "type": "authenticate", "user-id": ["x"], "device-id": "d", "token": "t"}),
            json!({"cdid": "c", "type": "authenticate", "user-id": "u", "device-id": "d"}),
            json!({"cdid": "c", "type": "request-direct-session-info", "user-id": {}}),
            json!({"cdid": "c", "type": "request-mutable-session-creation", "user-id": "u"}),
            json!({"cdid": "c", "type": "request-mutable-session-creation", "user-id": [true]}),
            json!({"cdid": "c", "type": "request-sending-a-message", "session-id": "s",
                "message": "hi", "sender-timestamp": 1}),
            json!({"cdid": "c", "type": "request-sending-a-message", "session-id": "s",
                "message": {"type": "text", "body": "b"}, "sender-timestamp": "yesterday"}),
            json!({"cdid": "c", "type": "request-sending-a-message", "session-id": "s",
                "message": {"type": "text", "body": "b"}, "sender-timestamp": 1, "~timing": 5}),
            json!({"cdid": "c", "type": "request-message-history", "session-id": "s", "limit": 0}),
            json!({"cdid": "c", "type": "batch-mode-action", "actions": {}}),
            json!({"cdid": "c", "type": "no-such-action"}),
            json!({"cdid": "c", "type": 5}),
            json!({"cdid": "c"}),
            json!({"cdid": "c", "type": "request-direct-session-info", "user-id": ""}),
            json!({"cdid": "c", "type": "request-direct-session-info", "user-id": "x".repeat(129)}),
            json!({"cdid": "c", "type": "request-direct-session-info", "user-id": "a\u{0}b"}),
        ] {
            let e = decode_action(&obj(v.clone())).unwrap_err();
            assert_eq!(e.cdid.as_deref(), Some("c"), "{v}");
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn invalid_cdids_refuse_the_action_without_a_cdid() {
        for cdid in [
            json!({}),
            json!([]),
            json!(true),
            json!(""),
            json!("x".repeat(MAX_ID_LEN + 1)),
            json!("a\u{1}b"),
            json!("tab\there"),
        ] {
            let v = json!({"cdid": cdid, "type": "request-mutable-session-listing"});
            let e = decode_action(&obj(v.clone())).unwrap_err();
            assert_eq!(e.cdid, None, "{v}");
            assert_eq!(
                e.reason,
                "`cdid` must be a string id of 1..=128 bytes without control characters"
            );
        }
        // Absent or null: no cdid; numbers become text; 128 bytes are fine.
        for (cdid, want) in [
            (None, None),
            (Some(json!(null)), None),
            (Some(json!(7)), Some("7".to_string())),
            (Some(json!("é".repeat(64))), Some("é".repeat(64))),
        ] {
            let mut v = json!({"type": "request-mutable-session-listing"});
            if let Some(c) = cdid {
                v["cdid"] = c;
            }
            let a = decode_action(&obj(v.clone())).unwrap();
            assert_eq!(a.cdid().map(str::to_string), want, "{v}");
        }
    }

    #[test]
    fn broadcast_frames_are_measured_as_sent() {
        let b = message_broadcast(
            "direct-abc",
            "alice",
            &json!({"type": "text", "body": "hi \"there\""}),
            &json!(1),
            &"0".repeat(MESSAGE_ID_ROOM),
            1_795_300_000_000,
            None,
        );
        let plain = b.to_string().len();
        let history = history_item(b.clone(), None).to_string().len();
        assert_eq!(history, plain + r#","history":true"#.len());
        // A short cdid: the history form is the largest.
        assert_eq!(broadcast_frame_len(&b, Some("c1")), history);
        assert_eq!(broadcast_frame_len(&b, None), history);
        // A long one: the sender's copy, escapes counted as sent.
        let cdid = "\"".repeat(20);
        let own = add_cdid(b.clone(), &cdid).to_string().len();
        assert_eq!(own, plain + r#","cdid":""#.len() + 40 + 1);
        assert_eq!(broadcast_frame_len(&b, Some(&cdid)), own);
        assert_eq!(
            history_item(b, Some("h")).to_string().len(),
            history + r#","cdid":"h""#.len()
        );
    }

    #[test]
    fn participant_lists_are_deduplicated_and_bounded() {
        let ids: Vec<Value> = (0..MAX_PARTICIPANTS)
            .map(|i| json!(format!("u{i}")))
            .collect();
        let a = decode_action(&obj(json!({"type": "request-mutable-session-creation",
            "user-id": ids})))
        .unwrap();
        let Action::CreateMutable { user_ids, .. } = a else {
            panic!()
        };
        assert_eq!(user_ids.len(), MAX_PARTICIPANTS);
        let too_many: Vec<Value> = (0..=MAX_PARTICIPANTS).map(|i| json!(i)).collect();
        let e = decode_action(&obj(json!({"type": "request-mutable-session-creation",
            "user-id": too_many})))
        .unwrap_err();
        assert!(e.reason.contains("too many"));
        let a = decode_action(&obj(json!({"type": "request-mutable-session-creation",
            "user-id": ["a", "a", 1, "1"]})))
        .unwrap();
        assert_eq!(
            a,
            Action::CreateMutable {
                cdid: None,
                user_ids: vec!["a".into(), "1".into()]
            }
        );
    }

    #[test]
    fn history_limits_default_and_cap() {
        let a = decode_action(&obj(
            json!({"type": "request-message-history", "session-id": "s"}),
        ))
        .unwrap();
        assert_eq!(
            a,
            Action::History {
                cdid: None,
                session_id: "s".into(),
                limit: MAX_HISTORY,
                since: None
            }
        );
        let a = decode_action(&obj(
            json!({"type": "request-message-history", "session-id": "s",
            "limit": 100000, "since-message-id": "5-0"}),
        ))
        .unwrap();
        assert_eq!(
            a,
            Action::History {
                cdid: None,
                session_id: "s".into(),
                limit: MAX_HISTORY,
                since: Some("5-0".into())
            }
        );
    }

    #[test]
    fn direct_ids_are_symmetric_stable_and_reversible() {
        let id = direct_session_id("alice", "bob");
        assert_eq!(id, direct_session_id("bob", "alice"));
        assert_eq!(id, "direct-NTphbGljZWJvYg");
        assert_eq!(
            direct_participants(&id),
            Some(("alice".into(), "bob".into()))
        );
        for (a, b) in [("1", "12"), ("12", "1"), ("a:b", "c"), ("é", "ü")] {
            let id = direct_session_id(a, b);
            let (p, q) = direct_participants(&id).unwrap();
            let mut want = [a.to_string(), b.to_string()];
            want.sort();
            assert_eq!([p, q], want);
        }
        assert_ne!(direct_session_id("ab", "c"), direct_session_id("a", "bc"));
        assert_eq!(
            direct_participants(&direct_session_id("x", "x")),
            None,
            "no self sessions"
        );
    }

    #[test]
    fn hostile_direct_ids_are_rejected() {
        let swapped = format!("direct-{}", b64url(b"1:ba"));
        let overlong = format!("direct-{}", b64url(b"999:ab"));
        let empty_first = format!("direct-{}", b64url(b"0:ab"));
        let no_len = format!("direct-{}", b64url(b"ab"));
        for bad in [
            "",
            "direct-",
            "direct-!!!",
            "group-1",
            "direct-Mjpi YQ",
            "direct-A",
        ] {
            assert_eq!(direct_participants(bad), None, "{bad:?}");
        }
        for bad in [swapped, overlong, empty_first, no_len] {
            assert_eq!(direct_participants(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encoders_produce_the_seed_shapes() {
        let v = status_response(Some("c1"), false, Some("not authenticated"));
        assert_eq!(
            v,
            json!({"type":"status-response","status":"failed","message":"not authenticated","cdid":"c1"})
        );
        let v = session_info(
            "s",
            SessionKind::Direct,
            SessionStatus::Unchanged,
            &["a".into(), "b".into()],
            None,
        );
        assert_eq!(v["session-type"], "direct");
        assert_eq!(v["status"], "unchanged");
        assert!(v.get("cdid").is_none());
        let v = message_broadcast(
            "s",
            "a",
            &json!({"type":"text","body":"hi"}),
            &json!(5),
            "1-0",
            9,
            None,
        );
        assert_eq!(v["message-id"], "1-0");
        assert_eq!(add_cdid(v, "k")["cdid"], "k");
    }

    #[test]
    fn packing_respects_the_frame_limit() {
        let small: Vec<String> = (0..300)
            .map(|i| format!(r#"{{"type":"x","i":{i}}}"#))
            .collect();
        let frames = pack_frames(&small);
        assert!(frames.len() > 1);
        let mut seen = Vec::new();
        for f in &frames {
            let f = f.bytes();
            assert!(f.len() <= MAX_FRAME_BYTES, "{}", f.len());
            let v: Value = serde_json::from_slice(f).unwrap();
            if v["type"] == "batch-mode-action" {
                seen.extend(
                    v["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["i"].clone()),
                );
            } else {
                seen.push(v["i"].clone());
            }
        }
        let want: Vec<Value> = (0..300).map(|i| json!(i)).collect();
        assert_eq!(seen, want, "order preserved");
        assert_eq!(pack_frames(&["{}"]), vec![Packed::One(b"{}")]);
        assert!(pack_frames::<&str>(&[]).is_empty());
    }

    #[test]
    fn fuzz_regression_direct_ids_have_one_spelling() {
        // fuzz/chat: a length with leading zeros (or a `+`) named the same two users under
        // a second session id.
        for raw in [&b"01:ab"[..], b"+1:ab", b"0001:ab", b"05:alicebob"] {
            let id = format!("direct-{}", b64url(raw));
            assert_eq!(direct_participants(&id), None, "{id}");
        }
        let id = format!("direct-{}", b64url(b"1:ab"));
        assert_eq!(direct_participants(&id), Some(("a".into(), "b".into())));
        assert_eq!(direct_session_id("a", "b"), id);
        let long = "u".repeat(10);
        let id = direct_session_id(&long, "v");
        assert_eq!(direct_participants(&id), Some((long, "v".into())));
    }
}
