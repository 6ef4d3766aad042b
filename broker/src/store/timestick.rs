//! The TimeStick part of the store seam: session records, per-session queues (responses
//! and control messages; channel traffic is read from the channel history), duplicate
//! detection, the idle index, caller quarantine and rate counters. Everything a
//! TimeStick request needs lives here, so any node can serve any request.

use std::time::Duration;

use futures_util::future::BoxFuture;
use murmur_shared::ids::SessionId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreResult;
use crate::bus::Settle;
use crate::history::HistoryLimits;

/// What one POST asks of the store, in its one round trip ([`TsStore::ts_post`]).
#[derive(Debug, Clone)]
pub struct PostCheck {
    /// The verified principal: only its own session records the message.
    pub caller: String,
    /// Count the message against this per-second limit; `None`: it was counted already
    /// ([`TsStore::ts_get_counted`], a POST whose body was read after a first look).
    pub per_second: Option<u64>,
    /// The body's length: over the session's `max_message_size`, nothing is recorded.
    pub len: u64,
    /// The `message_id` to record as seen (and the activity with it) when every check
    /// passes; `None` (the body did not decode) records nothing.
    pub message_id: Option<String>,
    pub now_ms: u64,
    pub ttl: Duration,
}

impl PostCheck {
    /// Whether the message may be recorded in `s`: the caller's, active, within its
    /// size and rate. (The Redis script checks the same, on the stored record.)
    pub fn admits(&self, s: &TsSession, rate_ok: bool) -> bool {
        s.caller == self.caller
            && s.state == TsState::Active
            && self.len <= s.max_message_size
            && rate_ok
            && self.message_id.is_some()
    }
}

/// What the store found and did for one POST.
#[derive(Debug, Clone, PartialEq)]
pub struct PostRecord {
    pub session: Option<TsSession>,
    /// Within the rate (true when the check did not count).
    pub rate_ok: bool,
    /// What the store knew of the message id (a new one is now recorded, with the
    /// activity); `None`: not looked at (a check failed).
    pub recorded: Option<Recorded>,
    /// [`TsStore::ts_post_publish`] only: every check passed and the message was
    /// recorded settled and published in the same step (`session` is then `None`: the
    /// caller knew it).
    pub published: bool,
}

/// A `request`'s channel publication, for [`TsStore::ts_post_publish`].
#[derive(Debug, Clone)]
pub struct ChannelPublication {
    pub channel: String,
    /// The envelope as the bus carries it.
    pub envelope: Vec<u8>,
    pub history: HistoryLimits,
}

/// What a session's store knew of a posted `message_id`. A message is recorded
/// *unsettled* (with the time it was recorded) and settled ([`TsStore::ts_settle`])
/// once what it does is durable (its publication written, its reply queued). A copy
/// that finds it unsettled is a concurrent duplicate while the recording POST is still
/// working, or the retry of one whose node died or failed in between: it waits for the
/// settlement and takes the message over ([`TsStore::ts_take_over`]) when the
/// recording POST's lease runs out, instead of refusing a message that never went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Not seen before: recorded now, unsettled.
    New,
    /// Recorded, not settled yet: recorded (or last taken over) at `since_ms`.
    Unsettled { since_ms: u64 },
    /// Recorded and settled: a duplicate.
    Settled,
}

/// Where a TimeStick session stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TsState {
    Active,
    /// Stopped by the caller or the receiver; the final control message is queued.
    Stopped {
        reason: String,
        details: Option<String>,
    },
    /// Killed (level ≥ 1): nothing more is delivered.
    Killed {
        level: u64,
        reason: String,
    },
}

/// One TimeStick session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsSession {
    pub id: SessionId,
    /// The principal that started it (JWT `sub` = `caller_id`).
    pub caller: String,
    /// The target channel.
    pub target: String,
    pub max_message_size: u64,
    pub created_ms: u64,
    pub state: TsState,
    /// Channel publications at or before this position are not for this session (its
    /// start, or a caller STOP that discarded what was queued).
    pub channel_floor: String,
    /// The highest channel position a poll has confirmed.
    pub channel_confirmed: String,
    /// After a receiver STOP, channel publications after this are not delivered.
    pub channel_ceiling: Option<String>,
    /// Queue position of the final control message; once confirmed, the session is gone.
    pub final_seq: Option<u64>,
}

/// The TimeStick store operations. See the module docs.
pub trait TsStore: Send + Sync {
    /// Creates a session unless its caller already has `limit` live sessions (false).
    fn ts_create(
        &self,
        s: TsSession,
        limit: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    fn ts_get(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<TsSession>>>;
    /// Saves a session's record (state changes, confirmed positions).
    fn ts_put(&self, s: TsSession, ttl: Duration) -> BoxFuture<'_, StoreResult<()>>;
    /// The session no longer counts for its caller's limit nor for idleness; its record
    /// stays (answering 410) until its TTL.
    fn ts_end(&self, id: SessionId, caller: &str) -> BoxFuture<'_, StoreResult<()>>;
    /// Live sessions of a caller.
    fn ts_sessions_of(&self, caller: &str) -> BoxFuture<'_, StoreResult<Vec<SessionId>>>;
    /// Records activity now (the idle clock restarts) and keeps the session's record,
    /// queue and counters alive for another `ttl`.
    fn ts_touch(&self, id: SessionId, now_ms: u64, ttl: Duration)
        -> BoxFuture<'_, StoreResult<()>>;
    /// Raises the channel position a poll confirmed (never lowers it). Kept apart from
    /// the record so a poll never overwrites a concurrent STOP or KILL.
    fn ts_confirm_channel(
        &self,
        id: SessionId,
        position: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The confirmed channel position, if any poll confirmed one.
    fn ts_channel_confirmed(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<String>>>;
    /// Sessions idle since before `before_ms`, at most `limit`.
    fn ts_idle(&self, before_ms: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<SessionId>>>;
    /// Claims an idle session for stopping; true for exactly one claimant.
    fn ts_claim_idle(&self, id: SessionId) -> BoxFuture<'_, StoreResult<bool>>;
    /// Records a `message_id` as seen in a session (unsettled since `now_ms`), answering
    /// what was known of it before.
    fn ts_record_message(
        &self,
        id: SessionId,
        message_id: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<Recorded>>;
    /// What is known of a `message_id` now, recording nothing (`None`: never recorded).
    fn ts_message(
        &self,
        id: SessionId,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Recorded>>>;
    /// Takes an unsettled `message_id` over: true for exactly one caller naming the
    /// `since_ms` it found, which becomes `now_ms`; false when it was settled or taken
    /// over by someone else meanwhile.
    fn ts_take_over(
        &self,
        id: SessionId,
        message_id: &str,
        since_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Settles a recorded `message_id`: from now on it is a duplicate.
    fn ts_settle(&self, id: SessionId, message_id: &str) -> BoxFuture<'_, StoreResult<()>>;
    /// [`ts_post`](Self::ts_post) of a `request` due now, publishing it in the same
    /// atomic step when every check passes (it is then recorded settled,
    /// [`PostRecord::published`]): for a store that is also the bus's Redis. The
    /// default only posts: the caller publishes, then settles.
    fn ts_post_publish(
        &self,
        id: SessionId,
        check: PostCheck,
        publication: ChannelPublication,
    ) -> BoxFuture<'_, StoreResult<PostRecord>> {
        let _ = publication;
        self.ts_post(id, check)
    }
    /// The bus's way of settling `message_id` in the script that writes its
    /// publication, when this store is the bus's Redis; `None`: settle with
    /// [`ts_settle`](Self::ts_settle).
    fn ts_settle_mark(&self, id: SessionId, message_id: &str) -> Option<Settle> {
        let _ = (id, message_id);
        None
    }
    /// Appends to a session's queue (keeping the newest `cap`); returns its position.
    fn ts_push(
        &self,
        id: SessionId,
        msg: Value,
        cap: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>>;
    /// Queue entries after `after`, oldest first, at most `limit`.
    fn ts_read(
        &self,
        id: SessionId,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<(u64, Value)>>>;
    /// The position of the newest entry ever queued for a session (0: none yet). No poll
    /// cursor the session was given can name a later one.
    fn ts_queue_tail(&self, id: SessionId) -> BoxFuture<'_, StoreResult<u64>>;
    /// Drops queue entries at or before `upto` (confirmed by a poll).
    fn ts_confirm(&self, id: SessionId, upto: u64) -> BoxFuture<'_, StoreResult<()>>;
    /// Drops every queue entry.
    fn ts_clear(&self, id: SessionId) -> BoxFuture<'_, StoreResult<()>>;
    /// Refuses new STARTs of `caller` for `ttl`.
    fn ts_quarantine(&self, caller: &str, ttl: Duration) -> BoxFuture<'_, StoreResult<()>>;
    fn ts_quarantined(&self, caller: &str) -> BoxFuture<'_, StoreResult<bool>>;
    /// Counts a message in this second; false once `per_second` is exceeded.
    fn ts_rate(&self, id: SessionId, per_second: u64) -> BoxFuture<'_, StoreResult<bool>>;

    /// The POST hot path, first step, in one round trip: the session's record and the
    /// rate count ([`ts_get`](Self::ts_get) + [`ts_rate`](Self::ts_rate)).
    fn ts_get_counted(
        &self,
        id: SessionId,
        per_second: u64,
    ) -> BoxFuture<'_, StoreResult<(Option<TsSession>, bool)>> {
        Box::pin(async move {
            let s = self.ts_get(id).await?;
            let ok = match &s {
                Some(_) => self.ts_rate(id, per_second).await?,
                None => true,
            };
            Ok((s, ok))
        })
    }

    /// The whole store work of one POST, in one round trip: the record, the rate count
    /// and, when [`PostCheck::admits`] the message, its `message_id` and the activity
    /// ([`ts_get_counted`](Self::ts_get_counted) + [`ts_accept_message`](Self::ts_accept_message)).
    fn ts_post(&self, id: SessionId, check: PostCheck) -> BoxFuture<'_, StoreResult<PostRecord>> {
        Box::pin(async move {
            let (session, rate_ok) = match check.per_second {
                Some(limit) => self.ts_get_counted(id, limit).await?,
                None => (self.ts_get(id).await?, true),
            };
            let recorded = match (&session, &check.message_id) {
                (Some(s), Some(m)) if check.admits(s, rate_ok) => Some(
                    self.ts_accept_message(id, m, check.now_ms, check.ttl)
                        .await?,
                ),
                _ => None,
            };
            Ok(PostRecord {
                session,
                rate_ok,
                recorded,
                published: false,
            })
        })
    }

    /// The POST hot path, second step, in one round trip: records `message_id` and, if
    /// it is new, the activity ([`ts_record_message`] + [`ts_touch`]).
    ///
    /// [`ts_record_message`]: Self::ts_record_message
    /// [`ts_touch`]: Self::ts_touch
    fn ts_accept_message(
        &self,
        id: SessionId,
        message_id: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<Recorded>> {
        let message_id = message_id.to_string();
        Box::pin(async move {
            let recorded = self.ts_record_message(id, &message_id, now_ms, ttl).await?;
            if recorded == Recorded::New {
                self.ts_touch(id, now_ms, ttl).await?;
            }
            Ok(recorded)
        })
    }
}
