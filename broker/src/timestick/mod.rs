//! TimeStick on the broker (CONTRACT §3): sessions whose whole state lives in the
//! store, so any node serves any request and a session outlives the node that started
//! it. The service takes typed messages (decoded by the gateway) and returns typed
//! results and [`TsError`]s; bytes and HTTP statuses stay in `gateway/src/timestick`.
//!
//! * What a session receives is the merge of two sources: its **target channel's
//!   history** (requests of other sessions, Helios and backend publications) and its own
//!   **queue** (responses to its requests, control messages). A poll cursor
//!   (`<channel position>.<queue position>`) marks what the caller has; a poll with a
//!   later `after` confirms everything up to it (queue entries are then dropped).
//! * A long-poll that finds nothing waits on a [`Watch`](crate::watch::Watch) of the
//!   target channel and of the session's wake channel (`@ts/<id>`), on whichever node it
//!   landed.
//! * Message ids seen by other sessions are `<origin session>.<message_id>`, so a
//!   `response` naming one reaches exactly the session that sent the request.
//! * STOP / KILL levels and the idle sweep follow CONTRACT §3 (`docs/timestick.md`).
//!
//! | module | what it does |
//! |---|---|
//! | [`error`] | the refusals: [`TsError`], [`StartError`] |
//! | `start` | START: checks, the session record |
//! | `post` | POST of one message: one store round trip, then publish or queue |
//! | [`targets`] | each seen session's caller and target, for the one-step POST of a request |
//! | `respond` | a posted response: to the queue of the session whose request it names |
//! | `settle` | a message's settlement: the recording POST's lease, a copy's wait or take-over |
//! | `queue` | the session's queue: push; held responses ([`DuePush`]) |
//! | `control` | STOP, KILL, receiver STOP/KILL, the idle sweep |
//! | `poll` | long-poll: cursors, the merge of channel history and queue |

use std::time::Duration;

use murmur_shared::channel::INTERNAL_PREFIX;
use murmur_shared::envelope::{Body, Destination, Envelope, Kind};
use murmur_shared::ids::SessionId;
use serde_json::Value;

use crate::node::Node;

mod control;
pub mod error;
mod poll;
mod post;
mod queue;
mod respond;
mod settle;
mod start;
pub mod targets;

pub use control::{kill_by_receiver, spawn_idle_sweeper, stop_all, stop_by_receiver};
pub use error::{StartError, TsError};
pub use poll::{cursor_issuable, poll, Polled};
pub use post::{post, post_open, Accepted, PostGate, Submission};
pub use queue::DuePush;
pub use start::{start, Started};

/// Messages one poll returns at most.
pub const POLL_LIMIT: usize = 100;
/// The metrics label.
pub const LABEL: &str = "timestick";

/// How long a session's records outlive its last activity.
fn record_ttl(node: &Node) -> Duration {
    node.config.timestick_idle * 2 + Duration::from_secs(3600)
}

fn wake_channel(id: SessionId) -> String {
    format!("{INTERNAL_PREFIX}ts/{id}")
}

/// Wakes long-polls of a session on every node.
fn wake(node: &Node, id: SessionId) {
    let env = Envelope::new(
        node.id(),
        Kind::Notification,
        Destination::Channel(wake_channel(id)),
        Body::Json(Value::Null),
    );
    node.router.publish(env);
}

/// Counts a session event (`murmur_timestick_sessions_total{event}`).
fn event(node: &Node, what: &str) {
    node.metrics
        .timestick_sessions
        .with_label_values(&[what])
        .inc();
}

/// Loads a session and checks that `sub` is its caller.
async fn load(node: &Node, sub: &str, id: SessionId) -> Result<crate::store::TsSession, TsError> {
    owned_by(node.store().ts_get(id).await?, sub)
}

/// A loaded session, checked to exist and to belong to `sub`.
fn owned_by(
    s: Option<crate::store::TsSession>,
    sub: &str,
) -> Result<crate::store::TsSession, TsError> {
    let s = s.ok_or(TsError::NotFound)?;
    if s.caller != sub {
        return Err(TsError::Forbidden);
    }
    Ok(s)
}
