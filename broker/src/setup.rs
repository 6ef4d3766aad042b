//! Why a node could not be set up: a typed error with a kind and the error underneath,
//! returned by the backends' constructors and [`Node::clustered`](crate::Node::clustered).
//! A node that is set up never fails this way later: a Redis that is away after start
//! is a [`StoreError`](crate::store::StoreError) or a bus outage, not a setup error.

use std::fmt;

/// What could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupErrorKind {
    /// The Redis URL does not parse.
    RedisUrl,
    /// A Redis client (store, scheduler, bus) could not be built from a valid URL.
    Redis,
    /// A token verification key does not parse.
    Key,
}

/// A failed set-up: its kind, which part it was for, and the error underneath.
#[derive(Debug)]
pub struct SetupError {
    kind: SetupErrorKind,
    what: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl SetupError {
    pub fn new(
        kind: SetupErrorKind,
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SetupError {
            kind,
            what,
            source: source.into(),
        }
    }

    /// A Redis URL that does not parse (`redis::Client::open` failed).
    pub fn redis_url(what: &'static str, e: ::redis::RedisError) -> Self {
        SetupError::new(SetupErrorKind::RedisUrl, what, e)
    }

    pub fn kind(&self) -> SetupErrorKind {
        self.kind
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SetupErrorKind::RedisUrl => write!(
                f,
                "invalid Redis URL for the {}: {}",
                self.what, self.source
            ),
            SetupErrorKind::Redis => {
                write!(f, "cannot set up the Redis {}: {}", self.what, self.source)
            }
            SetupErrorKind::Key => write!(f, "{}: {}", self.what, self.source),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
