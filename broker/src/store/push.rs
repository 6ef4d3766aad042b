//! The push queue: notifications for chat participants who had no device connected
//! when a message reached them, kept in the store until the app backend's webhook took
//! them (so a node's loss drops nothing), claimed by any node with a lease (at least
//! once: a node that dies mid-delivery leaves its claim to expire and be taken again),
//! retried with backoff, and dead-lettered after [`PUSH_ATTEMPTS`].

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::StoreResult;

/// Deliveries of one push at most (the first included) before it is dead-lettered.
pub const PUSH_ATTEMPTS: u32 = 8;

/// One push: what the app backend needs to notify a user's phones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    /// Unique per message and user: the backend drops a push it has seen (a claim that
    /// outlived its node is delivered again).
    pub id: String,
    pub user: String,
    /// The user's known devices, most recent first.
    pub devices: Vec<String>,
    pub session: String,
    pub session_type: String,
    pub sender: String,
    pub message_id: String,
    pub preview: String,
    pub message_type: String,
    pub server_timestamp: u64,
    /// Deliveries tried so far.
    #[serde(default)]
    pub attempts: u32,
}

/// The queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    pub queued: usize,
    pub dead: u64,
}

/// The push queue operations (both backends, one conformance suite).
pub trait PushStore: Send + Sync {
    /// Queues `jobs` (due now) unless the queue holds `max` already; returns how many
    /// were queued (the rest are counted dead).
    fn push_enqueue(&self, jobs: Vec<PushJob>, max: usize) -> BoxFuture<'_, StoreResult<usize>>;
    /// Claims up to `limit` due pushes until `now + lease_ms` (they are due again then,
    /// unless settled).
    fn push_claim(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<PushJob>>>;
    /// Settles claimed pushes: `done` are removed; `retry` are due again at their time
    /// (with their attempts counted); `dead` are removed and counted.
    fn push_settle(
        &self,
        done: Vec<String>,
        retry: Vec<(PushJob, u64)>,
        dead: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// Queued pushes and the dead-letter count.
    fn push_counts(&self) -> BoxFuture<'_, StoreResult<PushCounts>>;

    /// Records that `user` signed in from `device` (kept: the 16 most recent).
    fn note_device(&self, user: &str, device: &str, now_ms: u64) -> BoxFuture<'_, StoreResult<()>>;
    /// The user's known devices, most recent first.
    fn devices_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<String>>>;
}

/// Devices remembered per user.
pub const DEVICES_KEPT: usize = 16;
