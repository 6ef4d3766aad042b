//! Read state (extension): a participant marks a session read up to a message; the
//! store keeps each participant's position ([`Store::mark_read`](crate::store::Store::mark_read),
//! forward only) and answers unread counts. Marks that moved a position are told to
//! the session's participants aggregated, like delivery reports: each node gathers
//! them for a short window and then publishes, per session, one `message-read`
//! carrying every reader of the window (their newest mark only) — never a frame per
//! message per reader. Only devices that opted into `read-reports` at `authenticate`
//! are written these (the gateway filters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use murmur_shared::channel::{group_channel, user_inbox};
use murmur_shared::chat::{self, ChatEvent};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::now_ms;
use tokio::sync::Notify;

use super::{participants, ChatError};
use crate::node::Node;
use crate::session::{Protocol, SessionHandle};
use crate::store::{ReadMark, Unread};

/// Readers waiting to be told, all sessions together. At this many the window is cut
/// short; past four times this many, further marks are not told (they are still
/// stored) and are counted.
pub const PENDING_FLUSH: usize = 4096;

/// One session's marks of a window.
pub(crate) struct Session {
    participants: Vec<String>,
    /// user → (message id, read ms): the newest mark of each reader.
    readers: Vec<(String, String, u64)>,
}

#[derive(Default)]
struct Pending {
    sessions: HashMap<String, Session>,
    readers: usize,
}

/// See the module docs (a node extension).
#[derive(Default)]
pub struct ReadReports {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl ReadReports {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // unwrap: nothing panics while the lock is held (map operations only).
        self.pending.lock().unwrap()
    }

    /// Records that `user` read `session` up to `message_id`; false when it could not
    /// be queued (too many pending).
    fn note(&self, session: &str, participants: Vec<String>, user: &str, message_id: &str) -> bool {
        let mut p = self.lock();
        if p.readers >= 4 * PENDING_FLUSH {
            return false;
        }
        let s = p
            .sessions
            .entry(session.to_string())
            .or_insert_with(|| Session {
                participants,
                readers: Vec::new(),
            });
        let mark = (user.to_string(), message_id.to_string(), now_ms());
        let added = match s.readers.iter_mut().find(|r| r.0 == user) {
            // Positions only move forward: a newer mark replaces the older one.
            Some(r) => {
                *r = mark;
                false
            }
            None => {
                s.readers.push(mark);
                true
            }
        };
        if !added {
            return true;
        }
        p.readers += 1;
        let (first, full) = (p.readers == 1, p.readers == PENDING_FLUSH);
        drop(p);
        if first || full {
            self.wake.notify_one();
        }
        true
    }

    fn pending(&self) -> usize {
        self.lock().readers
    }

    fn take(&self) -> HashMap<String, Session> {
        std::mem::take(&mut *self.lock()).sessions
    }
}

/// `request-marking-read`: participants only; the id must be a message of the session
/// (at most its newest). A mark that moves the position is told to the participants.
pub async fn mark_read(
    h: &SessionHandle,
    session_id: &str,
    message_id: &str,
) -> Result<(), ChatError> {
    let users = participants(h, session_id).await?;
    let node = h.node();
    let ttl = node.config.chat_history_ttl;
    let mark = node
        .store()
        .mark_read(session_id, h.user(), message_id, ttl)
        .await
        .map_err(ChatError::Store)?;
    match mark {
        ReadMark::Unknown => Err(ChatError::Invalid(
            "`message-id` is newer than the session's newest message".into(),
        )),
        ReadMark::Unchanged { .. } => Ok(()),
        ReadMark::Advanced => {
            let told = node
                .extension::<ReadReports>()
                .is_some_and(|r| r.note(session_id, users, h.user(), message_id));
            let outcome = if told { "queued" } else { "dropped" };
            node.metrics
                .chat_read_reports
                .with_label_values(&[outcome])
                .inc();
            Ok(())
        }
    }
}

/// `request-unread-count`: participants only; counted in the kept history (at most the
/// history length).
pub async fn unread(h: &SessionHandle, session_id: &str) -> Result<Unread, ChatError> {
    participants(h, session_id).await?;
    let node = h.node();
    node.store()
        .unread(session_id, h.user(), node.config.chat_history_len)
        .await
        .map_err(ChatError::Store)
}

/// Runs the node's read-report flusher: wakes on the first mark of a window, waits the
/// window (cut short when [`PENDING_FLUSH`] readers wait), then publishes.
pub fn spawn_flusher(node: &Arc<Node>, window: Duration) {
    super::window::spawn::<ReadReports>(node, window, PENDING_FLUSH, publish);
}

impl super::window::Windowed for ReadReports {
    type Batch = HashMap<String, Session>;

    fn wake(&self) -> &Notify {
        &self.wake
    }

    fn pending(&self) -> usize {
        ReadReports::pending(self)
    }

    fn take(&self) -> Self::Batch {
        ReadReports::take(self)
    }
}

/// One publication per session: on a group's channel, or to the two users' inboxes of
/// a direct session.
fn publish(node: &Node, sessions: HashMap<String, Session>) {
    let origin = Origin {
        session: None,
        user: None,
        protocol: Some(Protocol::Chat),
    };
    for (session, s) in sessions {
        let texts: Vec<String> = s
            .readers
            .iter()
            .map(|(u, m, at)| chat::read_entry(u, m, *at))
            .collect();
        let entries: Vec<(&str, &str, &str)> = s
            .readers
            .iter()
            .zip(&texts)
            .map(|((u, m, _), t)| (u.as_str(), m.as_str(), t.as_str()))
            .collect();
        let frames = chat::message_read_frames(&session, &entries);
        let channels = match chat::direct_participants(&session) {
            Some(_) => s.participants.iter().map(|u| user_inbox(u)).collect(),
            None => vec![group_channel(&session)],
        };
        node.metrics
            .chat_read_reports
            .with_label_values(&["published"])
            .inc_by(s.readers.len() as u64);
        for channel in channels {
            let env = Envelope::new(
                node.id(),
                Kind::Message,
                Destination::Channel(channel),
                Body::Texts(frames.clone()),
            )
            .from(origin.clone())
            .subject(ChatEvent::MessageRead.as_str());
            node.router.publish(env);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readers_newer_mark_replaces_the_older_one_within_a_window() {
        let r = ReadReports::default();
        let users = vec!["a".to_string(), "b".to_string()];
        assert!(r.note("g", users.clone(), "a", "1-0"));
        assert!(r.note("g", users.clone(), "a", "2-0"));
        assert!(r.note("g", users.clone(), "b", "1-0"));
        assert!(r.note("h", users, "a", "5-0"));
        assert_eq!(r.pending(), 3, "a twice in g counts once");
        let taken = r.take();
        let g: Vec<(&str, &str)> = taken["g"]
            .readers
            .iter()
            .map(|(u, m, _)| (u.as_str(), m.as_str()))
            .collect();
        assert_eq!(g, vec![("a", "2-0"), ("b", "1-0")]);
        assert_eq!(taken["h"].readers.len(), 1);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn pending_marks_are_bounded() {
        let r = ReadReports::default();
        for i in 0..4 * PENDING_FLUSH {
            assert!(r.note("g", Vec::new(), &format!("u{i}"), "1-0"));
        }
        assert!(!r.note("g", Vec::new(), "one-more", "1-0"));
        assert_eq!(r.pending(), 4 * PENDING_FLUSH);
    }
}
