//! The inbox (extension): a page of the sessions a user is in — their groups and the
//! direct sessions with messages — newest message first, each with its newest message
//! and the user's unread count, read from the store in one step
//! ([`Store::inbox`](crate::store::Store::inbox)): the sessions' newest entries, never
//! their whole history.

use murmur_shared::chat::INBOX_UNREAD_CAP;

use super::ChatError;
use crate::session::SessionHandle;
use crate::store::{InboxCursor, InboxPage};

/// `request-inbox`: up to `limit` sessions after `after` (a previous page's last item).
pub async fn inbox(
    h: &SessionHandle,
    after: Option<(String, String)>,
    limit: usize,
) -> Result<InboxPage, ChatError> {
    let after = after.map(|(last, session)| InboxCursor { last, session });
    h.node()
        .store()
        .inbox(h.user(), after, limit, INBOX_UNREAD_CAP)
        .await
        .map_err(ChatError::Store)
}
