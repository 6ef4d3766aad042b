//! What a TimeStick request can be refused for: typed errors, turned into HTTP statuses
//! and bodies by the gateway (`gateway/src/timestick/handlers.rs`), never here.

use std::fmt;

use murmur_shared::fault::Fault;

use crate::bus::BusError;
use crate::store::{StoreError, TsState};

/// Why a session request (POST, poll, stream, admin STOP/KILL) was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum TsError {
    /// The session store failed (TimeStick's 503, whatever the failure's kind).
    Unavailable(StoreError),
    /// The cluster bus did not take a request's publication (Redis down, the queue
    /// full, the write failed): nothing was delivered; TimeStick's 503, and a retry
    /// publishes it.
    Unpublished(BusError),
    /// No such session (or its record expired).
    NotFound,
    /// The session belongs to another caller.
    Forbidden,
    /// The session has ended: its state says how (stopped or killed).
    Ended(TsState),
    /// The body is longer than the session's `max_message_size`.
    TooLarge { max: u64 },
    /// More messages in this second than the session's rate allows.
    RateLimited,
    /// This `message_id` was already received in the session.
    Duplicate,
    /// The message is not acceptable: it did not decode, names no message the session
    /// received, or its `~timing` is invalid or already expired.
    Invalid {
        reason: String,
        /// The message's `correlation_id`, for a response.
        correlation_id: Option<String>,
        /// Refused because its `~timing` had expired (`EXPIRED`, not `INVALID_MESSAGE`).
        expired: bool,
    },
    /// A response names a request whose session has ended.
    OriginEnded,
    /// A poll's `after` is ahead of every cursor the session was given.
    CursorAhead,
}

impl TsError {
    pub(crate) fn invalid(reason: impl Into<String>, correlation_id: Option<&str>) -> Self {
        TsError::Invalid {
            reason: reason.into(),
            correlation_id: correlation_id.map(str::to_string),
            expired: false,
        }
    }
}

impl TsError {
    /// Whether the refusal is the client's (its message is settled: a retry is a
    /// duplicate), not a failure of the store or the bus (left unsettled for a retry).
    pub(crate) fn is_final(&self) -> bool {
        !matches!(self, TsError::Unavailable(_) | TsError::Unpublished(_))
    }

    /// The neutral reason ([`Fault`]), whose HTTP status the gateway answers: a store
    /// failure is `Unavailable` whatever its kind, an expired `~timing` an `Invalid`
    /// message (400 `EXPIRED` in TimeStick's own codes).
    pub fn fault(&self) -> Fault {
        match self {
            TsError::Unavailable(_) | TsError::Unpublished(_) => Fault::Unavailable,
            TsError::NotFound | TsError::OriginEnded => Fault::NotFound,
            TsError::Forbidden => Fault::Forbidden,
            TsError::Ended(_) => Fault::Gone,
            TsError::TooLarge { .. } => Fault::TooLarge,
            TsError::RateLimited => Fault::RateLimited,
            TsError::Duplicate => Fault::Conflict,
            TsError::Invalid { .. } | TsError::CursorAhead => Fault::Invalid,
        }
    }
}

impl From<StoreError> for TsError {
    fn from(e: StoreError) -> Self {
        TsError::Unavailable(e)
    }
}

impl fmt::Display for TsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsError::Unavailable(e) => write!(f, "session store unavailable: {e}"),
            TsError::Unpublished(e) => write!(f, "the message could not be published: {e}"),
            TsError::NotFound => f.write_str("no such session"),
            TsError::Forbidden => f.write_str("this session belongs to another caller"),
            TsError::Ended(_) => f.write_str("the session has ended"),
            TsError::TooLarge { max } => write!(
                f,
                "larger than the session's max_message_size ({max} bytes)"
            ),
            TsError::RateLimited => f.write_str("too many messages per second in this session"),
            TsError::Duplicate => f.write_str("this message_id was already received"),
            TsError::Invalid { reason, .. } => f.write_str(reason),
            TsError::OriginEnded => f.write_str("the session that sent that request has ended"),
            TsError::CursorAhead => {
                f.write_str("after is ahead of every cursor this session was given")
            }
        }
    }
}

impl std::error::Error for TsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TsError::Unavailable(e) => Some(e),
            TsError::Unpublished(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a START was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum StartError {
    /// This node is draining: start on another one.
    Draining,
    /// `caller_id` is not the token's subject.
    CallerMismatch,
    /// The caller is quarantined (a KILL level 3).
    Quarantined,
    /// Neither the path nor `requested_uri` names a target.
    NoTarget,
    /// The caller has `limit` live sessions already.
    TooManySessions { limit: usize },
    /// The session store failed.
    Unavailable(StoreError),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::Unavailable(e)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Draining => {
                f.write_str("receiver is draining; start the session on another node")
            }
            StartError::CallerMismatch => f.write_str("caller_id does not match the token"),
            StartError::Quarantined => f.write_str("caller is quarantined"),
            StartError::NoTarget => f.write_str("requested_uri must name a target"),
            StartError::TooManySessions { limit } => {
                write!(f, "too many sessions for this caller (at most {limit})")
            }
            StartError::Unavailable(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Unavailable(e) => Some(e),
            _ => None,
        }
    }
}
