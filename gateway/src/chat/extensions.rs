//! What the extension actions do (read state, presence, typing, the inbox): each
//! answers the requesting connection in order with its other answers, or returns the
//! `failed` reason. Called from [`super::apply`].

use murmur_broker::chat as service;
use murmur_broker::session::SessionHandle;
use murmur_shared::chat;

use super::session::{ChatConn, MAX_WATCHED, TYPING_EVERY};
use crate::edge::{Adapter, Stop};

/// Done, or the `failed` reason; `Err(Stop)` when the connection ends meanwhile.
type Answer = Result<Result<(), String>, Stop>;

/// `request-marking-read`.
pub async fn mark_read(
    conn: &mut ChatConn,
    h: &SessionHandle,
    cdid: Option<&str>,
    session_id: &str,
    message_id: &str,
) -> Answer {
    match conn
        .during(service::reads::mark_read(h, session_id, message_id))
        .await?
    {
        Ok(()) => {
            conn.send(&chat::status_response(cdid, true, None)).await?;
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// `request-unread-count`.
pub async fn unread_count(
    conn: &mut ChatConn,
    h: &SessionHandle,
    cdid: Option<&str>,
    session_id: &str,
) -> Answer {
    match conn.during(service::reads::unread(h, session_id)).await? {
        Ok(u) => {
            let answer = chat::unread_count(
                session_id,
                u.read.as_deref(),
                u.count,
                u.newest.as_deref(),
                cdid,
            );
            conn.send(&answer).await?;
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// `request-presence`: watching (or no longer) at most [`MAX_WATCHED`] users.
pub async fn presence(
    conn: &mut ChatConn,
    h: &SessionHandle,
    cdid: Option<&str>,
    user_ids: &[String],
    watch: bool,
) -> Answer {
    let adding = user_ids
        .iter()
        .filter(|u| !conn.watching.contains(*u))
        .count();
    if watch && conn.watching.len() + adding > MAX_WATCHED {
        return Ok(Err(format!(
            "a device watches the presence of at most {MAX_WATCHED} users"
        )));
    }
    let states = match conn
        .during(service::presence::presence(h, user_ids, watch))
        .await?
    {
        Ok(states) => states,
        Err(e) => return Ok(Err(e.to_string())),
    };
    for u in user_ids {
        if watch {
            conn.watching.insert(u.clone());
        } else {
            conn.watching.remove(u);
        }
    }
    for p in states {
        conn.send(&chat::presence(&p.user, p.online, p.last_seen, cdid))
            .await?;
    }
    conn.send(&chat::status_response(cdid, true, None)).await?;
    Ok(Ok(()))
}

/// `request-typing`: at most one per [`TYPING_EVERY`] per session; answered only when
/// it carries a `cdid`.
pub async fn typing(
    conn: &mut ChatConn,
    h: &SessionHandle,
    cdid: Option<&str>,
    session_id: &str,
) -> Answer {
    let metrics = conn.state.node.metrics.clone();
    if !conn.may_type(session_id) {
        metrics.chat_typing.with_label_values(&["limited"]).inc();
        return Ok(Err(format!(
            "typing indicators: at most one per {} s per session",
            TYPING_EVERY.as_secs()
        )));
    }
    let device_id = conn
        .device
        .as_ref()
        .map(|d| d.device_id.clone())
        .unwrap_or_default();
    match conn
        .during(service::typing(h, session_id, &device_id))
        .await?
    {
        Ok(()) => {
            metrics.chat_typing.with_label_values(&["sent"]).inc();
            if cdid.is_some() {
                conn.send(&chat::status_response(cdid, true, None)).await?;
            }
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// `request-inbox`: one `inbox-item` per session, then `succeeded` with `next-cursor`
/// when more follow.
pub async fn inbox(
    conn: &mut ChatConn,
    h: &SessionHandle,
    cdid: Option<&str>,
    after: Option<(String, String)>,
    limit: usize,
) -> Answer {
    let page = match conn.during(service::inbox::inbox(h, after, limit)).await? {
        Ok(page) => page,
        Err(e) => return Ok(Err(e.to_string())),
    };
    for item in &page.items {
        let last = item.last.as_ref().map(|m| {
            (
                m.id.as_str(),
                m.sender.as_str(),
                m.server_timestamp,
                &m.message,
            )
        });
        conn.send(&chat::inbox_item(&item.session, last, item.unread, cdid))
            .await?;
    }
    let mut done = chat::status_response(cdid, true, None);
    if let (true, Some(last)) = (page.more, page.items.last()) {
        let c = last.cursor();
        done["next-cursor"] = chat::inbox_cursor(&c.last, &c.session).into();
    }
    conn.send(&done).await?;
    Ok(Ok(()))
}
