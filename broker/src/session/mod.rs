//! Sessions: one actix actor per logical session, reached only through a
//! [`SessionHandle`]. The actor owns the session's state (subscriptions, provided
//! namespaces, calls in flight both ways, the recovery buffer) and hands frames for the
//! client to its current transport through a bounded queue ([`Attachment`]).
//!
//! Lifecycle: `open` → attached ⇄ detached (recoverable protocols only; a detached
//! session buffers for the recovery window) → stopped. A transport that cannot keep
//! up is disconnected with close code 4001 ("slow consumer").

pub(crate) mod actor;
mod handle;

use std::fmt;
use std::sync::Arc;

use murmur_shared::close::CloseReason;
use murmur_shared::envelope::Envelope;
use murmur_shared::fault::Fault;
use tokio::sync::{mpsc, oneshot};

pub use handle::SessionHandle;

pub use murmur_shared::protocol::Protocol;

/// What a transport (the gateway's connection loop) receives when it attaches.
pub struct Attachment {
    /// Which attachment this is; pass it back to [`SessionHandle::detach`].
    pub epoch: u64,
    /// Envelopes buffered while no transport was attached, in order (recovery).
    pub buffered: Vec<Arc<Envelope>>,
    /// Envelopes for the client, bounded.
    pub outbound: mpsc::Receiver<Arc<Envelope>>,
    /// Fires when the broker closes this transport (slow consumer, takeover, drain, kill).
    pub closed: oneshot::Receiver<CloseReason>,
}

/// Why a session operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The session has ended.
    Gone,
    /// A per-session limit was reached; the message says which.
    Limit(String),
    /// The argument is not acceptable; the message says why.
    Invalid(String),
    /// The cluster's store or bus could not take it now; nothing was done.
    Unavailable(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Gone => f.write_str("session ended"),
            SessionError::Limit(m) | SessionError::Invalid(m) => f.write_str(m),
            SessionError::Unavailable(m) => write!(f, "temporarily unavailable: {m}"),
        }
    }
}

impl std::error::Error for SessionError {}

impl SessionError {
    pub fn fault(&self) -> Fault {
        match self {
            SessionError::Gone => Fault::Gone,
            SessionError::Limit(_) | SessionError::Invalid(_) => Fault::Invalid,
            SessionError::Unavailable(_) => Fault::Unavailable,
        }
    }
}

/// Why an RPC call could not be sent (errors after sending arrive as responses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No provider of the namespace anywhere.
    NoProvider,
    /// The same request id is already in flight.
    Duplicate,
    /// Too many calls in flight for this session.
    TooMany,
    /// The session ended.
    Gone,
}

impl CallError {
    pub fn fault(&self) -> Fault {
        match self {
            CallError::NoProvider => Fault::NotFound,
            CallError::Duplicate => Fault::Conflict,
            CallError::TooMany => Fault::RateLimited,
            CallError::Gone => Fault::Gone,
        }
    }
}

/// Why a session could not be opened or recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Nothing to recover: the window passed, or the session ended.
    NotFound,
    /// The recovery token belongs to another user.
    WrongUser,
    /// The node is draining and takes no new sessions.
    Draining,
    /// The store could not be read.
    Store(crate::store::StoreError),
    /// The session existed but cannot be resumed without a gap; the reason says why
    /// (recovery buffer overflow, history no longer covering what was missed).
    Unrecoverable(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::NotFound => "session not found or recovery window passed",
            OpenError::WrongUser => "recovery token belongs to another user",
            OpenError::Draining => "node is draining",
            OpenError::Store(e) => return write!(f, "temporarily unavailable: {e}"),
            OpenError::Unrecoverable(m) => m,
        })
    }
}

impl OpenError {
    pub fn fault(&self) -> Fault {
        match self {
            OpenError::NotFound => Fault::NotFound,
            OpenError::WrongUser => Fault::Forbidden,
            OpenError::Draining => Fault::Unavailable,
            OpenError::Store(e) => e.fault(),
            OpenError::Unrecoverable(_) => Fault::Gone,
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Store(e) => Some(e),
            _ => None,
        }
    }
}
