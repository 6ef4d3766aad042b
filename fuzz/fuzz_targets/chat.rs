//! GradAgenda chat frames: `chat::parse_frame` + `chat::decode_action` (and every inner
//! action of a batch), plus the direct-session id codec.
//!
//! Invariants: never panics; every decoded id is 1..=MAX_ID_LEN bytes without control
//! characters; participant lists are bounded and de-duplicated; history limits are in
//! 1..=MAX_HISTORY; batches hold at most MAX_BATCH actions; a rejected action reports the
//! `cdid` it could read; `direct_participants` only accepts canonical ids
//! (`direct_session_id(a, b) == id`), and `direct_session_id` always round-trips. The
//! input is tried as a frame, as a session id, and as the decoded content of one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur_shared::chat::{self, Action};
use serde_json::{Map, Value};

fn check_id(id: &str) {
    assert!(!id.is_empty() && id.len() <= chat::MAX_ID_LEN, "{id:?}");
    assert!(!id.chars().any(char::is_control), "{id:?}");
}

fn check_ids(ids: &[String]) {
    assert!(ids.len() <= chat::MAX_PARTICIPANTS);
    for (i, id) in ids.iter().enumerate() {
        check_id(id);
        assert!(!ids[..i].contains(id), "duplicate participant {id:?}");
    }
}

fn check_action(obj: &Map<String, Value>, depth: usize) {
    let cdid = obj.get("cdid").and_then(chat::id_value);
    match chat::decode_action(obj) {
        Err(invalid) => {
            assert_eq!(invalid.cdid, cdid);
            assert!(!invalid.reason.is_empty());
        }
        Ok(action) => {
            assert_eq!(action.cdid(), cdid.as_deref());
            if let Some(c) = action.cdid() {
                check_id(c);
            }
            match &action {
                Action::Authenticate {
                    user_id,
                    device_id,
                    token,
                    ..
                } => {
                    check_id(user_id);
                    check_id(device_id);
                    assert!(!token.is_empty());
                }
                Action::DirectSessionInfo { user_id, .. } => check_id(user_id),
                Action::CreateMutable { user_ids, .. } => check_ids(user_ids),
                Action::ModifyMutable {
                    session_id,
                    user_ids,
                    ..
                } => {
                    check_id(session_id);
                    check_ids(user_ids);
                }
                Action::DeleteMutable { session_id, .. } => check_id(session_id),
                Action::ListMutable { .. } => {}
                Action::SendMessage {
                    session_id,
                    message,
                    sender_timestamp,
                    timing,
                    ..
                } => {
                    check_id(session_id);
                    assert!(message.get("type").is_some_and(Value::is_string));
                    assert!(chat::message::validate(message).is_ok());
                    assert!(sender_timestamp.is_number());
                    assert!(timing.as_ref().is_none_or(Value::is_object));
                }
                Action::History {
                    session_id,
                    limit,
                    since,
                    ..
                } => {
                    check_id(session_id);
                    assert!((1..=chat::MAX_HISTORY).contains(limit));
                    if let Some(s) = since {
                        check_id(s);
                    }
                }
                Action::MarkRead {
                    session_id,
                    message_id,
                    ..
                } => {
                    check_id(session_id);
                    assert!(chat::is_message_id(message_id));
                }
                Action::UnreadCount { session_id, .. } => check_id(session_id),
                Action::LeaveMutable { session_id, .. } => check_id(session_id),
                Action::Presence { user_ids, .. } => {
                    assert!(!user_ids.is_empty());
                    check_ids(user_ids);
                }
                Action::Typing { session_id, .. } => check_id(session_id),
                Action::MutableRoles {
                    session_id,
                    owner,
                    admins,
                    ..
                } => {
                    check_id(session_id);
                    assert!(owner.is_some() || admins.is_some());
                    if let Some(o) = owner {
                        check_id(o);
                    }
                    if let Some(a) = admins {
                        check_ids(a);
                    }
                }
                Action::Inbox { limit, after, .. } => {
                    assert!((1..=chat::MAX_INBOX_PAGE).contains(limit));
                    if let Some((last, session)) = after {
                        assert!(chat::is_message_id(last));
                        check_id(session);
                    }
                }
                Action::Batch { actions, .. } => {
                    assert!(actions.len() <= chat::MAX_BATCH);
                    // The gateway decodes each inner action as if sent alone.
                    if depth < 2 {
                        for inner in actions {
                            if let Value::Object(m) = inner {
                                check_action(m, depth + 1);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_direct(id: &str) {
    if let Some((a, b)) = chat::direct_participants(id) {
        assert!(!a.is_empty() && a < b, "{a:?} {b:?}");
        assert_eq!(
            chat::direct_session_id(&a, &b),
            id,
            "a non-canonical direct session id is accepted"
        );
        assert_eq!(chat::direct_session_id(&b, &a), id);
    }
}

/// base64url without padding, as the chat codec writes it (so the fuzzer can mutate the
/// decoded `<len>:<a><b>` text of a direct session id directly).
fn b64url(bytes: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The input as the decoded content of a direct session id.
    check_direct(&format!("direct-{}", b64url(data)));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() <= chat::MAX_FRAME_BYTES {
        if let Ok(obj) = chat::parse_frame(text) {
            check_action(&obj, 0);
        }
    }
    check_direct(text);
    // Any pair of user ids (split at the first NUL) makes an id that decodes back.
    let (x, y) = text.split_once('\0').unwrap_or((text, "bob"));
    let id = chat::direct_session_id(x, y);
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    let expected = (!lo.is_empty() && lo != hi).then(|| (lo.to_string(), hi.to_string()));
    assert_eq!(chat::direct_participants(&id), expected, "{id}");
    check_direct(&id);
});
