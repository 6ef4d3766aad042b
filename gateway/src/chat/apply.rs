//! What each chat action does. Parse ([`chat::decode_action`]), then apply. Every
//! failure is a `status-response` `failed` with the action's `cdid` and a reason; the
//! connection stays open.

use murmur_broker::chat as service;
use murmur_broker::chat::device::Device;
use murmur_broker::store::GroupChange;
use murmur_shared::chat::{self, Action, SessionKind, SessionStatus};
use murmur_shared::ids::now_ms;
use murmur_shared::timing::{self, TimingError};
use serde_json::{Map, Value};

use super::extensions;
use super::session::ChatConn;
use crate::edge::{Adapter, Stop};

/// The metrics label of an action.
fn label(a: &Action) -> &'static str {
    match a {
        Action::Authenticate { .. } => "authenticate",
        Action::DirectSessionInfo { .. } => "request-direct-session-info",
        Action::CreateMutable { .. } => "request-mutable-session-creation",
        Action::ModifyMutable { .. } => "request-mutable-session-modification",
        Action::DeleteMutable { .. } => "request-mutable-session-deletion",
        Action::ListMutable { .. } => "request-mutable-session-listing",
        Action::SendMessage { .. } => "request-sending-a-message",
        Action::History { .. } => "request-message-history",
        Action::MarkRead { .. } => "request-marking-read",
        Action::UnreadCount { .. } => "request-unread-count",
        Action::Inbox { .. } => "request-inbox",
        Action::LeaveMutable { .. } => "request-leaving-mutable-session",
        Action::Presence { .. } => "request-presence",
        Action::Typing { .. } => "request-typing",
        Action::MutableRoles { .. } => "request-mutable-session-roles",
        Action::Batch { .. } => "batch-mode-action",
    }
}

/// Writes the requester's own copy of a server action (with its `cdid`) at once, so
/// answers keep the order of the actions, even inside a batch.
async fn answer(
    conn: &mut ChatConn,
    result: Result<Value, service::ChatError>,
    cdid: &Option<String>,
) -> Result<Result<(), String>, Stop> {
    match result {
        Ok(mut action) => {
            if let Some(c) = cdid {
                action = chat::add_cdid(action, c);
            }
            conn.send(&action).await?;
            Ok(Ok(()))
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Answers a session change and applies it to this device's groups (the requester's
/// connection gets no inbox copy of its own change).
async fn changed(
    conn: &mut ChatConn,
    result: Result<service::Changed, service::ChatError>,
    cdid: &Option<String>,
) -> Result<Result<(), String>, Stop> {
    let result = result.map(|c| {
        if let Some(device) = &conn.device {
            let user = device.handle.user().to_string();
            if let Some(change) = conn.groups.apply(&c.info, &user, c.mark.as_deref()) {
                conn.change(change);
            }
        }
        conn.shown(c.info)
    });
    answer(conn, result, cdid).await
}

async fn failed(conn: &mut ChatConn, cdid: Option<&str>, reason: &str) -> Result<(), Stop> {
    conn.send(&chat::status_response(cdid, false, Some(reason)))
        .await
}

/// Handles one frame (a JSON object).
pub async fn frame(conn: &mut ChatConn, obj: Map<String, Value>) -> Result<(), Stop> {
    match chat::decode_action(&obj) {
        Err(invalid) => {
            count(conn, "invalid", false);
            failed(conn, invalid.cdid.as_deref(), &invalid.reason).await
        }
        Ok(Action::Batch { actions, .. }) => {
            count(conn, "batch-mode-action", true);
            // Each inner action is answered as if it had been sent alone, in order.
            for inner in actions {
                let Value::Object(inner) = inner else {
                    failed(conn, None, "batch entries must be action objects").await?;
                    continue;
                };
                match chat::decode_action(&inner) {
                    Ok(Action::Batch { cdid, .. }) => {
                        failed(conn, cdid.as_deref(), "batches do not nest").await?
                    }
                    Ok(action) => apply(conn, action).await?,
                    Err(invalid) => failed(conn, invalid.cdid.as_deref(), &invalid.reason).await?,
                }
            }
            Ok(())
        }
        Ok(action) => apply(conn, action).await,
    }
}

fn count(conn: &ChatConn, action: &str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    conn.state
        .node
        .metrics
        .chat_actions
        .with_label_values(&[action, result])
        .inc();
}

async fn apply(conn: &mut ChatConn, action: Action) -> Result<(), Stop> {
    let name = label(&action);
    let cdid = action.cdid().map(str::to_string);
    let result = match (&conn.device, action) {
        (
            None,
            Action::Authenticate {
                user_id,
                device_id,
                token,
                extensions,
                ..
            },
        ) => {
            let result = authenticate(conn, user_id, device_id, &token, cdid.as_deref()).await?;
            if result.is_ok() {
                conn.extensions = extensions;
            }
            result
        }
        (Some(_), Action::Authenticate { .. }) => Err("already authenticated".to_string()),
        (None, _) => Err("not authenticated".to_string()),
        (Some(device), action) => {
            let h = device.handle.clone();
            match action {
                Action::DirectSessionInfo { user_id, .. } => match service::direct(&h, &user_id) {
                    Ok((id, users)) => {
                        let info = chat::session_info(
                            &id,
                            SessionKind::Direct,
                            SessionStatus::Unchanged,
                            &users,
                            cdid.as_deref(),
                        );
                        conn.send(&info).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                },
                Action::CreateMutable { user_ids, .. } => {
                    let done = conn.during(service::create(&h, user_ids)).await?;
                    changed(conn, done, &cdid).await?
                }
                Action::ModifyMutable {
                    session_id,
                    user_ids,
                    ..
                } => {
                    let change = GroupChange::Participants(user_ids);
                    let done = conn
                        .during(service::change(&h, &session_id, change))
                        .await?;
                    changed(conn, done, &cdid).await?
                }
                Action::DeleteMutable { session_id, .. } => {
                    let change = GroupChange::Delete;
                    let done = conn
                        .during(service::change(&h, &session_id, change))
                        .await?;
                    changed(conn, done, &cdid).await?
                }
                Action::LeaveMutable { session_id, .. } => {
                    let change = GroupChange::Leave;
                    let done = conn
                        .during(service::change(&h, &session_id, change))
                        .await?;
                    changed(conn, done, &cdid).await?
                }
                Action::MutableRoles {
                    session_id,
                    owner,
                    admins,
                    ..
                } => {
                    let change = GroupChange::Roles { owner, admins };
                    let done = conn
                        .during(service::change(&h, &session_id, change))
                        .await?;
                    changed(conn, done, &cdid).await?
                }
                Action::ListMutable { .. } => match conn.during(service::list(&h)).await? {
                    Ok(groups) => {
                        for g in groups {
                            let info = service::group_info(&g, SessionStatus::Unchanged);
                            let info = conn.shown(info);
                            let info = match cdid.as_deref() {
                                Some(c) => chat::add_cdid(info, c),
                                None => info,
                            };
                            conn.send(&info).await?;
                        }
                        conn.send(&chat::status_response(cdid.as_deref(), true, None))
                            .await?;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                },
                Action::SendMessage {
                    session_id,
                    message,
                    sender_timestamp,
                    timing,
                    ..
                } => match timing::plan(timing.as_ref(), now_ms() as i64) {
                    Err(e) => {
                        conn.state
                            .node
                            .metrics
                            .timing
                            .with_label_values(&["chat", "rejected"])
                            .inc();
                        Err(match e {
                            TimingError::Expired => "expired".to_string(),
                            other => other.to_string(),
                        })
                    }
                    Ok(plan) => {
                        let due = plan.and_then(|p| p.deliver_at);
                        let sent = conn
                            .during(service::send(
                                &h,
                                &session_id,
                                message,
                                sender_timestamp,
                                timing,
                                due,
                                cdid.as_deref(),
                            ))
                            .await?;
                        match sent {
                            // Held: acknowledged now, broadcast to every device when due.
                            Ok(None) => {
                                let note = format!(
                                    "scheduled for {}",
                                    timing::format(due.unwrap_or_default())
                                );
                                let ack = chat::status_response(cdid.as_deref(), true, Some(&note));
                                conn.send(&ack).await?;
                                Ok(())
                            }
                            Ok(Some(copy)) => {
                                if let Some(id) = copy.get("message-id").and_then(Value::as_str) {
                                    conn.groups.note(&session_id, id);
                                }
                                answer(conn, Ok(copy), &cdid).await?
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                },
                Action::History {
                    session_id,
                    limit,
                    since,
                    ..
                } => match conn
                    .during(service::history(&h, &session_id, since.as_deref(), limit))
                    .await?
                {
                    Ok(messages) => {
                        let metrics = conn.state.node.metrics.clone();
                        let items: Vec<Value> = messages
                            .into_iter()
                            .filter(|m| {
                                crate::timing::deliverable(&metrics, "chat", m.timing.as_ref())
                            })
                            .map(|m| chat::history_item(m.broadcast(), cdid.as_deref()))
                            .collect();
                        // Messages are accepted when their history form fits without a
                        // cdid; with this request's cdid one may not: then nothing is
                        // sent and the request fails (a shorter cdid, or none, works).
                        if items
                            .iter()
                            .any(|i| i.to_string().len() > chat::MAX_FRAME_BYTES)
                        {
                            Err("the answer would not fit one 4096-byte frame".to_string())
                        } else {
                            for item in &items {
                                conn.send(item).await?;
                            }
                            conn.send(&chat::status_response(cdid.as_deref(), true, None))
                                .await?;
                            Ok(())
                        }
                    }
                    Err(e) => Err(e.to_string()),
                },
                Action::MarkRead {
                    session_id,
                    message_id,
                    ..
                } => {
                    extensions::mark_read(conn, &h, cdid.as_deref(), &session_id, &message_id)
                        .await?
                }
                Action::UnreadCount { session_id, .. } => {
                    extensions::unread_count(conn, &h, cdid.as_deref(), &session_id).await?
                }
                Action::Presence {
                    user_ids, watch, ..
                } => extensions::presence(conn, &h, cdid.as_deref(), &user_ids, watch).await?,
                Action::Typing { session_id, .. } => {
                    extensions::typing(conn, &h, cdid.as_deref(), &session_id).await?
                }
                Action::Inbox { limit, after, .. } => {
                    extensions::inbox(conn, &h, cdid.as_deref(), after, limit).await?
                }
                Action::Authenticate { .. } | Action::Batch { .. } => {
                    Err("unexpected action".to_string())
                }
            }
        }
    };
    count(conn, name, result.is_ok());
    match result {
        Ok(()) => Ok(()),
        Err(reason) => failed(conn, cdid.as_deref(), &reason).await,
    }
}

/// `authenticate`: the token's `sub` must be the claimed `user-id`. On success the
/// connection becomes a device session subscribed to the user's inbox and groups.
async fn authenticate(
    conn: &mut ChatConn,
    user_id: String,
    device_id: String,
    token: &str,
    cdid: Option<&str>,
) -> Result<Result<(), String>, Stop> {
    let principal = match conn.state.verifier.verify(token) {
        Ok(p) => p,
        Err(e) => return Ok(Err(format!("authentication failed: {e}"))),
    };
    if principal.sub != user_id {
        return Ok(Err(
            "authentication failed: user-id does not match the token".into(),
        ));
    }
    let opened = match Device::open(&conn.state.node, &user_id, &device_id).await {
        Ok(opened) => opened,
        Err(e) => return Ok(Err(format!("authentication failed: {e}"))),
    };
    conn.groups.start(opened.groups);
    conn.attach(opened.device, opened.attachment);
    conn.send(&chat::status_response(cdid, true, None)).await?;
    Ok(Ok(()))
}
