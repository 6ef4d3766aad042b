//! One authenticated chat device: its session, its ids as delivery reports name them,
//! and the subscriptions that make it receive what its user receives — the user's
//! inbox, then the channel of every group of the user, and later each group it starts
//! or stops following ([`super::following`] decides which). The gateway holds a
//! [`Device`] per connection and never reads the store for it.

use std::sync::Arc;

use murmur_shared::channel::{group_channel, user_inbox};
use murmur_shared::ids::now_ms;

use super::reports;
use super::ChatError;
use crate::node::Node;
use crate::session::{Attachment, Protocol, SessionHandle};
use crate::store::StoredMessage;

/// Messages one replay (a group followed after a change) reads at most.
pub const REPLAY_MAX: usize = 256;

/// An authenticated device connection's session.
pub struct Device {
    pub handle: SessionHandle,
    pub device_id: String,
    /// This device as delivery reports name it (its user and device ids).
    pub reported_as: Arc<reports::Device>,
    /// Counts the device for its user's presence while it lives.
    _presence: super::presence::DevicePresence,
}

/// A device just authenticated: its session (attached to the caller's transport) and
/// the groups its user is in, all of them subscribed.
pub struct Opened {
    pub device: Device,
    pub attachment: Attachment,
    pub groups: Vec<String>,
}

impl Device {
    /// Opens a device session for `user` and subscribes it to the user's inbox, then to
    /// every group of the user (the inbox first: a change to the user's groups made
    /// after the list is read arrives there). On failure the session is ended.
    pub async fn open(node: &Arc<Node>, user: &str, device_id: &str) -> Result<Opened, ChatError> {
        let (handle, attachment) = node
            .open(user, Protocol::Chat, false)
            .await
            .map_err(ChatError::Open)?;
        if node.config.push.is_some() {
            // The devices a push names; a failure only leaves this one out of them.
            if let Err(e) = node.store().note_device(user, device_id, now_ms()).await {
                tracing::debug!(error = %e, "device not recorded for pushes");
            }
        }
        match follow_all(&handle, user).await {
            Ok(groups) => Ok(Opened {
                device: Device {
                    reported_as: reports::Device::new(user, device_id),
                    _presence: super::presence::DevicePresence::new(node, user),
                    handle,
                    device_id: device_id.to_string(),
                },
                attachment,
                groups,
            }),
            Err(e) => {
                handle.end(murmur_shared::close::CloseReason::new(
                    murmur_shared::close::CloseCode::InternalError,
                    "inbox unavailable",
                ));
                Err(e)
            }
        }
    }

    /// Starts following `group`: subscribes its channel, then (with a `mark`, the
    /// group's history id when the change was made) reads the history after the mark —
    /// what this node may have received before the subscription (at most
    /// [`REPLAY_MAX`] messages).
    pub async fn follow(
        handle: &SessionHandle,
        group: &str,
        mark: Option<&str>,
    ) -> Result<Vec<StoredMessage>, ChatError> {
        handle
            .subscribe(&group_channel(group))
            .await
            .map_err(ChatError::Session)?;
        let Some(mark) = mark else {
            return Ok(Vec::new());
        };
        handle
            .node()
            .store()
            .messages(group, Some(mark), REPLAY_MAX)
            .await
            .map_err(ChatError::Store)
    }

    /// Stops following `group` (its channel is left).
    pub async fn unfollow(handle: &SessionHandle, group: &str) {
        let _ = handle.unsubscribe(&group_channel(group)).await;
    }
}

/// Subscribes a device session to its user's inbox, then to the channel of every group
/// of the user; returns the groups.
async fn follow_all(handle: &SessionHandle, user: &str) -> Result<Vec<String>, ChatError> {
    handle
        .subscribe(&user_inbox(user))
        .await
        .map_err(ChatError::Session)?;
    let groups = handle
        .node()
        .store()
        .groups_of(user)
        .await
        .map_err(ChatError::Store)?;
    let ids: Vec<String> = groups.into_iter().map(|g| g.id).collect();
    let channels: Vec<String> = ids.iter().map(|id| group_channel(id)).collect();
    let subscribed =
        futures_util::future::join_all(channels.iter().map(|c| handle.subscribe(c))).await;
    if let Some(Err(e)) = subscribed.into_iter().find(Result::is_err) {
        return Err(ChatError::Session(e));
    }
    Ok(ids)
}
