//! The seam for state that must outlive a connection or a node.
//!
//! Methods return boxed futures so the trait stays object-safe (`Arc<dyn Store>`), and
//! every record carries its own TTL so a crashed node's leftovers expire by themselves.
//! Implementations: [`memory::MemoryStore`] (embedded default) and a Redis store
//! (cluster mode). One conformance suite runs against both.

mod group;
pub mod memory;
mod memory_push;
mod memory_sink;
mod memory_ts;
pub mod push;
pub mod redis;
mod redis_chat;
mod redis_presence;
mod redis_push;
mod redis_sink;
mod redis_ts;
pub mod sink;
pub mod timestick;

pub use push::{PushCounts, PushJob, PushStore};
pub use sink::SinkStore;
pub use timestick::{
    ChannelPublication, PostCheck, PostRecord, Recorded, TsSession, TsState, TsStore,
};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use murmur_shared::envelope::Envelope;
use murmur_shared::fault::Fault;
use murmur_shared::ids::{NodeId, SessionId};
use serde::{Deserialize, Serialize};

/// What kind of failure a store operation met: what a caller may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store cannot be reached (connection refused, dropped, not yet up): try again
    /// later.
    Unavailable,
    /// The store did not answer in time; the operation may or may not have happened.
    Timeout,
    /// The operation conflicts with what is stored (an id that exists already).
    Conflict,
    /// What is stored cannot be read back (undecodable record, unexpected reply).
    Corrupt,
}

impl StoreErrorKind {
    /// The metric label (`murmur_store_errors_total{kind}`, `murmur_store_corrupt_total`).
    pub fn label(self) -> &'static str {
        match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Timeout => "timeout",
            StoreErrorKind::Conflict => "conflict",
            StoreErrorKind::Corrupt => "corrupt",
        }
    }
}

/// A failed store operation: its kind and the error underneath.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Arc<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    pub fn new(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            kind,
            source: Arc::from(source.into()),
        }
    }

    /// A Redis failure: a timeout, or the store being out of reach; a reply of the
    /// wrong type is a corrupt record.
    pub fn redis(e: ::redis::RedisError) -> Self {
        let kind = if e.is_timeout() {
            StoreErrorKind::Timeout
        } else if matches!(
            e.kind(),
            ::redis::ErrorKind::UnexpectedReturnType | ::redis::ErrorKind::Parse
        ) {
            StoreErrorKind::Corrupt
        } else {
            StoreErrorKind::Unavailable
        };
        StoreError::new(kind, e)
    }

    /// A stored record that does not decode.
    pub fn corrupt(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::new(StoreErrorKind::Corrupt, source)
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// How a client is answered: a store away or slow is `Unavailable` (the same call
    /// may succeed later), a conflict a `Conflict`, an unreadable record `Internal`.
    pub fn fault(&self) -> Fault {
        match self.kind {
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout => Fault::Unavailable,
            StoreErrorKind::Conflict => Fault::Conflict,
            StoreErrorKind::Corrupt => Fault::Internal,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {}: {}", self.kind.label(), self.source)
    }
}

/// Equal when of one kind with the same message (the sources are not comparable).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.source.to_string() == other.source.to_string()
    }
}

impl Eq for StoreError {}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What a disconnected Helios session needs to be resumed on any node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    pub session: SessionId,
    pub user: String,
    /// The node that held the session when it was detached.
    pub node: NodeId,
    pub subscriptions: Vec<String>,
    pub provides: Vec<String>,
    /// When the client went away (Unix ms); for a record saved while the session was
    /// still attached (its node may die), the time of that save.
    pub detached_ms: u64,
    /// Per subscribed channel, the history position of the last publication written to
    /// the session's client: recovery (on any node) replays what came after it.
    #[serde(default)]
    pub positions: std::collections::BTreeMap<String, String>,
    /// Per channel, the [`ChannelSeq`](murmur_shared::envelope::ChannelSeq) of that same
    /// publication: recovery checks that the replay continues it without a gap.
    #[serde(default)]
    pub seqs: std::collections::BTreeMap<String, murmur_shared::envelope::ChannelSeq>,
}

/// One RPC provider: a session on a node serving a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderEntry {
    pub session: SessionId,
    pub node: NodeId,
}

/// A live node as it heartbeats into the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Live sessions per protocol label.
    pub sessions: std::collections::BTreeMap<String, u64>,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    pub draining: bool,
}

pub use group::{GroupChange, GroupRecord, GroupRefusal};

/// The outcome of a change to a group ([`GroupRecord::apply`]).
// Returned once per group change (a rare action), never stored: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupUpdate {
    /// Applied: the group as it was before, and after (`None`: deleted).
    Done {
        before: GroupRecord,
        after: Option<GroupRecord>,
    },
    NotFound,
    /// The rules refused it.
    Refused(GroupRefusal),
}

/// One chat message as kept for history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Assigned by the store on append (`<ms>-<n>`, increasing per session).
    #[serde(default)]
    pub id: String,
    pub session: String,
    pub sender: String,
    pub message: serde_json::Value,
    pub sender_timestamp: serde_json::Value,
    pub server_timestamp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<serde_json::Value>,
}

impl StoredMessage {
    /// The `message-broadcast` action of this message (without `cdid`).
    pub fn broadcast(&self) -> serde_json::Value {
        murmur_shared::chat::message_broadcast(
            &self.session,
            &self.sender,
            &self.message,
            &self.sender_timestamp,
            &self.id,
            self.server_timestamp,
            self.timing.as_ref(),
        )
    }
}

/// What moving a read position did ([`Store::mark_read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadMark {
    /// Moved forward to the message.
    Advanced,
    /// Already at or past it: the position stays `at`.
    Unchanged { at: String },
    /// The id is newer than the session's newest message (or the session has none).
    Unknown,
}

/// A participant's read state in one session ([`Store::unread`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// The newest message the participant has read (`None`: nothing yet).
    pub read: Option<String>,
    /// Messages of other senders after `read`, counted in the kept history (at most
    /// the `cap` asked for).
    pub count: usize,
    /// The session's newest message.
    pub newest: Option<String>,
}

/// Where an inbox page starts: after the session `session` whose newest message is
/// `last` (`0-0` for a group without messages). Inbox order is newest message first,
/// then session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCursor {
    pub last: String,
    pub session: String,
}

/// One session of a user's inbox ([`Store::inbox`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InboxItem {
    pub session: String,
    /// Its newest kept message (`None`: a group without messages yet).
    pub last: Option<StoredMessage>,
    /// Messages of other senders after the user's read position, counted up to the cap.
    pub unread: usize,
}

impl InboxItem {
    /// The cursor of a page that ends with this item.
    pub fn cursor(&self) -> InboxCursor {
        InboxCursor {
            last: self
                .last
                .as_ref()
                .map_or_else(|| "0-0".to_string(), |m| m.id.clone()),
            session: self.session.clone(),
        }
    }
}

/// A user's presence ([`Store::presence_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub user: String,
    /// A device of the user is connected on some live node.
    pub online: bool,
    /// When the user was last online (ms), if ever and not now.
    pub last_seen: Option<u64>,
}

/// How long a user's last-seen time is kept after they go offline.
pub const LAST_SEEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// One page of an inbox: its items and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxPage {
    pub items: Vec<InboxItem>,
    pub more: bool,
}

/// The state seam. See the module docs. TimeStick's part is [`TsStore`], Sink's
/// [`SinkStore`].
pub trait Store: TsStore + SinkStore + PushStore + Send + Sync + 'static {
    /// Saves (or replaces) a recovery record for `ttl`.
    fn put_recovery(&self, rec: RecoveryRecord, ttl: Duration) -> BoxFuture<'_, StoreResult<()>>;
    /// Reads a recovery record that has not expired.
    fn get_recovery(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<RecoveryRecord>>>;
    /// Deletes a recovery record (the session ended for good, or was resumed elsewhere).
    fn delete_recovery(&self, id: SessionId) -> BoxFuture<'_, StoreResult<()>>;

    /// Records which node owns a session, for `ttl` (refreshed by the owner).
    fn set_owner(
        &self,
        id: SessionId,
        node: NodeId,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The owner of a session, if it is alive somewhere.
    fn get_owner(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<NodeId>>>;
    /// Forgets a session's owner, only if it is still `node` (a takeover elsewhere wins).
    fn delete_owner(&self, id: SessionId, node: NodeId) -> BoxFuture<'_, StoreResult<()>>;

    /// Registers a provider of a namespace.
    fn add_provider(&self, ns: &str, entry: ProviderEntry) -> BoxFuture<'_, StoreResult<()>>;
    /// Removes a provider of a namespace.
    fn remove_provider(&self, ns: &str, entry: ProviderEntry) -> BoxFuture<'_, StoreResult<()>>;
    /// Every registered provider of a namespace on live nodes.
    fn providers(&self, ns: &str) -> BoxFuture<'_, StoreResult<Vec<ProviderEntry>>>;

    /// Announces a live node for `ttl`.
    fn heartbeat(&self, info: NodeInfo, ttl: Duration) -> BoxFuture<'_, StoreResult<()>>;
    /// Every node whose heartbeat has not expired.
    fn nodes(&self) -> BoxFuture<'_, StoreResult<Vec<NodeInfo>>>;
    /// Removes a node's heartbeat and its providers (clean shutdown).
    fn remove_node(&self, node: NodeId) -> BoxFuture<'_, StoreResult<()>>;
    /// Removes every node whose heartbeat expired, with its providers; returns them.
    fn prune_dead_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<NodeId>>>;

    /// Creates a group (its id is fresh; an existing id is an error).
    fn create_group(&self, group: GroupRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// Reads a group.
    fn group(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<GroupRecord>>>;
    /// Applies `requester`'s `change` to a group atomically, by the rules of
    /// [`GroupRecord::apply`].
    fn update_group(
        &self,
        id: &str,
        requester: &str,
        change: GroupChange,
    ) -> BoxFuture<'_, StoreResult<GroupUpdate>>;
    /// Every group a user participates in.
    fn groups_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>>;
    /// Appends a chat message to its session's history (keeping the last `retention`,
    /// for `ttl` after the last message) and returns its id.
    fn append_message(
        &self,
        msg: StoredMessage,
        retention: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<String>>;
    /// Messages of a session: the last `limit`, or the first `limit` after `since`.
    fn messages(
        &self,
        session: &str,
        since: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>>;

    /// Moves `user`'s read position in chat session `session` forward to `message_id`
    /// (never back), kept for `ttl` after the last change.
    fn mark_read(
        &self,
        session: &str,
        user: &str,
        message_id: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<ReadMark>>;
    /// `user`'s read position in `session` and the messages of other senders after it
    /// (counted up to `cap`).
    fn unread(&self, session: &str, user: &str, cap: usize) -> BoxFuture<'_, StoreResult<Unread>>;

    /// A user's inbox: the groups they are in and the direct sessions with messages
    /// they are in, newest message first (then by session id; groups without messages
    /// last), `limit` items after `after`, each with its newest message and the
    /// unread count (up to `unread_cap`).
    fn inbox(
        &self,
        user: &str,
        after: Option<InboxCursor>,
        limit: usize,
        unread_cap: usize,
    ) -> BoxFuture<'_, StoreResult<InboxPage>>;

    /// The direct sessions with messages `user` is in.
    fn directs_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<String>>>;

    /// The users who share a session with `user`: the participants of their groups and
    /// the other users of their direct sessions with messages.
    fn contacts(
        &self,
        user: &str,
    ) -> BoxFuture<'_, StoreResult<std::collections::HashSet<String>>> {
        let user = user.to_string();
        async move {
            let mut out = std::collections::HashSet::new();
            for g in self.groups_of(&user).await? {
                out.extend(g.participants);
            }
            for d in self.directs_of(&user).await? {
                if let Some((a, b)) = murmur_shared::chat::direct_participants(&d) {
                    out.insert(a);
                    out.insert(b);
                }
            }
            out.remove(&user);
            Ok(out)
        }
        .boxed()
    }

    /// Marks `user` online (`online`) or offline on `node`; true when that changed the
    /// user's status cluster-wide (their first device anywhere, or their last).
    fn presence_set(
        &self,
        user: &str,
        node: &NodeId,
        online: bool,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// The presence of each of `users`.
    fn presence_of(&self, users: &[String]) -> BoxFuture<'_, StoreResult<Vec<Presence>>>;
    /// Forgets every user `node` had online (it died, or starts anew); returns the users
    /// that are offline everywhere now.
    fn presence_drop_node(
        &self,
        node: &NodeId,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>>;

    /// Channel publications after history position `after` (exclusive), oldest first, at
    /// most `limit`, with their `seq` (and `chan_seq`) set. The embedded node reads its
    /// in-memory channel history; a store without history returns nothing.
    fn history(
        &self,
        channel: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<murmur_shared::envelope::Envelope>>>;

    /// The newest publication of a channel's history, if any.
    fn history_last(&self, channel: &str) -> BoxFuture<'_, StoreResult<Option<Envelope>>> {
        let channel = channel.to_string();
        async move {
            let Some(id) = self.history_tail(&channel).await? else {
                return Ok(None);
            };
            let before = Envelope::seq_before(&id);
            Ok(self.history(&channel, &before, 1).await?.into_iter().next())
        }
        .boxed()
    }

    /// The position of a channel's newest publication (`None`: no history yet).
    fn history_tail(&self, channel: &str) -> BoxFuture<'_, StoreResult<Option<String>>>;
}
