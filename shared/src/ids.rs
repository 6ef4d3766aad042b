//! Identifiers and the wall clock.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One logical session anywhere in the cluster (a Starling, a chat device connection,
/// a TimeStick session, a Sink device). 128-bit random, rendered as UUID text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

/// A random (v4) UUID from the thread's CSPRNG (`rand`'s ChaCha-based thread RNG,
/// seeded from the OS): no system call per id, unlike `Uuid::new_v4`.
pub fn random_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

impl SessionId {
    /// A fresh random (v4) id.
    pub fn random() -> Self {
        SessionId(random_uuid())
    }

    /// Parses the canonical text form only: hyphenated and lower-case, exactly as
    /// [`Display`](fmt::Display) renders it (so one id has one spelling: upper-case,
    /// simple, braced and URN forms are `None`).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        Uuid::parse_str(text).ok().map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The identity of one node of the cluster (`MURMUR_NODE_ID`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    /// Node ids are used in Redis channel names: printable ASCII without spaces, 1..=64 bytes.
    pub fn validate(text: &str) -> Result<(), String> {
        if text.is_empty() || text.len() > 64 {
            return Err("node id must be 1..=64 characters".into());
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("node id may contain only letters, digits, '-', '_' and '.'".into());
        }
        Ok(())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_distinct() {
        let ids: std::collections::HashSet<Uuid> = (0..1000).map(|_| random_uuid()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn session_id_round_trips_through_text() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn session_id_rejects_non_canonical_forms() {
        assert_eq!(SessionId::parse(""), None);
        assert_eq!(SessionId::parse("not-a-uuid"), None);
        assert_eq!(SessionId::parse("67e5504410b1426f9247bb680e5fe0c8"), None);
        assert_eq!(
            SessionId::parse("{67e55044-10b1-426f-9247-bb680e5fe0c8}"),
            None
        );
        assert!(SessionId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").is_some());
        assert_eq!(
            SessionId::parse("67E55044-10B1-426F-9247-BB680E5FE0C8"),
            None
        );
        assert_eq!(
            SessionId::parse("67e55044-10b1-426f-9247-bb680e5fe0cA"),
            None
        );
    }

    #[test]
    fn node_id_validation() {
        assert!(NodeId::validate("node-1.a_b").is_ok());
        assert!(NodeId::validate("").is_err());
        assert!(NodeId::validate("has space").is_err());
        assert!(NodeId::validate("a:b").is_err());
        assert!(NodeId::validate(&"x".repeat(65)).is_err());
    }
}
