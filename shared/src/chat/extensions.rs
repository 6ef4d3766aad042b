//! The extensions' part of the chat codec: the opt-in a device names at `authenticate`
//! ([`Extensions`]), and the server frames of read state (`message-read`,
//! `unread-count`), the inbox (`inbox-item` and its cursor), presence, typing and group
//! roles. Pure; re-exported by [`super`] (`chat::inbox_item`, …).

use serde_json::{json, Map, Value};

use super::message;
use super::{aggregated_frames, direct_participants, id_value, is_message_id, with_cdid};
use super::{ChatEvent, Invalid};

/// The server actions a device opted into at `authenticate` (`"extensions": [..]`):
/// a client that names none sees exactly the seed's actions and the earlier
/// extensions. Unknown names are ignored (a newer client on an older server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `"read-reports"`: `message-read` when participants read.
    pub read_reports: bool,
    /// `"roles"`: groups' `owner` and `admins` in `providing-session-info`.
    pub roles: bool,
    /// `"typing"`: `typing` when a participant types.
    pub typing: bool,
}

/// Names in an `extensions` list at most.
pub const MAX_EXTENSIONS: usize = 16;

pub(super) fn extensions_of(
    obj: &Map<String, Value>,
    cdid: &Option<String>,
) -> Result<Extensions, Invalid> {
    let fail = || Invalid {
        cdid: cdid.clone(),
        reason: format!("`extensions` must be an array of at most {MAX_EXTENSIONS} names"),
    };
    let names = match obj.get("extensions") {
        None | Some(Value::Null) => return Ok(Extensions::default()),
        Some(Value::Array(names)) if names.len() <= MAX_EXTENSIONS => names,
        Some(_) => return Err(fail()),
    };
    let mut out = Extensions::default();
    for name in names {
        match name.as_str() {
            Some("read-reports") => out.read_reports = true,
            Some("roles") => out.roles = true,
            Some("typing") => out.typing = true,
            Some(_) => {}
            None => return Err(fail()),
        }
    }
    Ok(out)
}

/// Sessions in one inbox page when none is asked for, and at most.
pub const INBOX_PAGE: usize = 20;
pub const MAX_INBOX_PAGE: usize = 100;
/// Unread counts of the inbox stop here (a badge shows "99+").
pub const INBOX_UNREAD_CAP: usize = 100;
/// Characters of a message's text an inbox preview carries at most.
pub const PREVIEW_CHARS: usize = 140;

/// Characters of a message's `type` an inbox item shows at most.
const MAX_TYPE_SHOWN: usize = 32;

/// The wire form of an inbox cursor: the last message id of the page's last session
/// (`0-0` for a group without messages), `~`, its session id.
pub fn inbox_cursor(last: &str, session: &str) -> String {
    format!("{last}~{session}")
}

pub(super) fn parse_inbox_cursor(s: &str) -> Option<(String, String)> {
    let (last, session) = s.split_once('~')?;
    let session = id_value(&Value::String(session.to_string()))?;
    is_message_id(last).then(|| (last.to_string(), session))
}

/// One `inbox-item` (extension): a session of the user's inbox with its newest
/// message's preview (`last`: the stored message's id, sender, server time and
/// message object; `None` for a group without messages) and unread count.
pub fn inbox_item(
    session_id: &str,
    last: Option<(&str, &str, u64, &Value)>,
    unread: usize,
    cdid: Option<&str>,
) -> Value {
    let kind = if direct_participants(session_id).is_some() {
        "direct"
    } else {
        "mutable"
    };
    let last = last.map(|(id, sender, at, message)| {
        json!({
            "message-id": id,
            "sender-id": sender,
            "server-timestamp": at,
            // Bounded: a message stored before types were checked may carry any type.
            "message-type": message["type"].as_str().map(|t| t.chars().take(MAX_TYPE_SHOWN).collect::<String>()),
            "preview": message::preview(message, PREVIEW_CHARS),
        })
    });
    let v = json!({
        "type": "inbox-item",
        "session-id": session_id,
        "session-type": kind,
        "unread": unread,
        "last-message": last,
    });
    with_cdid(v, cdid)
}

/// A group's `providing-session-info` with its roles (extension): `owner` and `admins`
/// (for a group that has roles). Devices that did not opt into `roles` get the info
/// [`without_roles`].
pub fn with_roles(mut info: Value, owner: Option<&str>, admins: &[String]) -> Value {
    if let (Some(o), Value::Object(m)) = (owner, &mut info) {
        m.insert("owner".into(), Value::String(o.to_string()));
        m.insert("admins".into(), json!(admins));
    }
    info
}

/// A `providing-session-info` as a device that did not opt into `roles` gets it: `None`
/// when it carries no roles (sent as it is).
pub fn without_roles(info: &Value) -> Option<Value> {
    let m = info.as_object()?;
    if !m.contains_key("owner") {
        return None;
    }
    let mut plain = m.clone();
    plain.remove("owner");
    plain.remove("admins");
    Some(Value::Object(plain))
}

/// One `read-by` entry of a `message-read`, as JSON text.
pub fn read_entry(user_id: &str, message_id: &str, read_ms: u64) -> String {
    json!({"user-id": user_id, "message-id": message_id, "read-timestamp": read_ms}).to_string()
}

/// `message-read` (extension, aggregated): participants of `session_id` read it up to
/// the message of each entry (user id, message id, [`read_entry`] text). One frame
/// carries as many entries as fit 4096 bytes, in `read-by`; `user-id` and
/// `message-id` repeat its first entry.
pub fn message_read_frames(session_id: &str, entries: &[(&str, &str, &str)]) -> Vec<String> {
    let head = |&(user, message, _): &(&str, &str, &str)| {
        json!({
            "type": ChatEvent::MessageRead.as_str(),
            "session-id": session_id,
            "user-id": user,
            "message-id": message,
        })
    };
    aggregated_frames(entries, "read-by", head, |e| e.2)
}

/// `presence` (extension): a user is `online` (a device connected on some node) or
/// `offline` since `last_seen` (ms; `None`: never seen).
pub fn presence(user_id: &str, online: bool, last_seen: Option<u64>, cdid: Option<&str>) -> Value {
    let v = json!({
        "type": ChatEvent::Presence.as_str(),
        "user-id": user_id,
        "status": if online { "online" } else { "offline" },
        "last-seen": last_seen,
    });
    with_cdid(v, cdid)
}

/// `typing` (extension): `user_id` is typing in `session_id` from `device_id`.
pub fn typing(session_id: &str, user_id: &str, device_id: &str) -> Value {
    json!({
        "type": ChatEvent::Typing.as_str(),
        "session-id": session_id,
        "user-id": user_id,
        "device-id": device_id,
    })
}

/// `unread-count` (extension): the answer to `request-unread-count`.
pub fn unread_count(
    session_id: &str,
    read: Option<&str>,
    unread: usize,
    newest: Option<&str>,
    cdid: Option<&str>,
) -> Value {
    let v = json!({
        "type": "unread-count",
        "session-id": session_id,
        "read-message-id": read,
        "unread": unread,
        "newest-message-id": newest,
    });
    with_cdid(v, cdid)
}

#[cfg(test)]
mod tests {
    use super::super::MAX_FRAME_BYTES;
    use super::*;

    #[test]
    fn read_reports_split_into_frames_that_fit() {
        let entries: Vec<(String, String)> = (0..200)
            .map(|i| (format!("user-{i:03}-{}", "x".repeat(60)), format!("{i}-0")))
            .collect();
        let texts: Vec<String> = entries
            .iter()
            .map(|(u, m)| read_entry(u, m, 1_700_000_000_000))
            .collect();
        let refs: Vec<(&str, &str, &str)> = entries
            .iter()
            .zip(&texts)
            .map(|((u, m), t)| (u.as_str(), m.as_str(), t.as_str()))
            .collect();
        let frames = message_read_frames("g", &refs);
        assert!(frames.len() > 1, "200 long entries need several frames");
        let mut seen = 0;
        for f in &frames {
            assert!(f.len() <= MAX_FRAME_BYTES, "{}", f.len());
            let v: Value = serde_json::from_str(f).unwrap();
            assert_eq!(v["type"], "message-read");
            let by = v["read-by"].as_array().unwrap();
            assert_eq!(
                v["user-id"], by[0]["user-id"],
                "the head repeats the first entry"
            );
            assert_eq!(v["message-id"], by[0]["message-id"]);
            assert_eq!(by[0]["read-timestamp"], 1_700_000_000_000u64);
            seen += by.len();
        }
        assert_eq!(seen, 200, "every entry once");
    }
}
