//! [`TsStore`] for the in-memory store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use murmur_shared::ids::SessionId;
use serde_json::Value;

use super::memory::MemoryStore;
use super::timestick::{PostCheck, PostRecord, Recorded, TsSession, TsStore};
use super::StoreResult;

/// TimeStick state of the memory store.
#[derive(Default)]
pub(crate) struct TsState {
    sessions: HashMap<SessionId, (TsSession, Instant)>,
    by_caller: HashMap<String, HashSet<SessionId>>,
    activity: HashMap<SessionId, u64>,
    /// Recorded message ids of a session: `Some(since)` while unsettled.
    seen: HashMap<SessionId, HashMap<String, Option<u64>>>,
    queues: HashMap<SessionId, (u64, BTreeMap<u64, Value>)>,
    quarantine: HashMap<String, Instant>,
    rate: HashMap<SessionId, (u64, u64)>,
    confirmed: HashMap<SessionId, String>,
}

impl TsState {
    fn live(&self, id: &SessionId) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|(_, deadline)| Instant::now() < *deadline)
    }
}

impl TsState {
    fn rate(&mut self, id: SessionId, per_second: u64) -> bool {
        let sec = murmur_shared::ids::now_ms() / 1000;
        let entry = self.rate.entry(id).or_insert((sec, 0));
        if entry.0 != sec {
            *entry = (sec, 0);
        }
        entry.1 += 1;
        entry.1 <= per_second
    }

    /// Records `message_id` (unsettled since `now_ms`) if new; what was known of it.
    fn record(&mut self, id: SessionId, message_id: &str, now_ms: u64) -> Recorded {
        match self.message(id, message_id) {
            Some(known) => known,
            None => {
                let seen = self.seen.entry(id).or_default();
                seen.insert(message_id.to_string(), Some(now_ms));
                Recorded::New
            }
        }
    }

    fn message(&self, id: SessionId, message_id: &str) -> Option<Recorded> {
        let since = self.seen.get(&id)?.get(message_id)?;
        Some(match since {
            Some(since_ms) => Recorded::Unsettled {
                since_ms: *since_ms,
            },
            None => Recorded::Settled,
        })
    }

    fn touch(&mut self, id: SessionId, now_ms: u64, ttl: Duration) {
        if let Some(v) = self.activity.get_mut(&id) {
            *v = (*v).max(now_ms);
        }
        if let Some((_, deadline)) = self.sessions.get_mut(&id) {
            *deadline = (*deadline).max(Instant::now() + ttl);
        }
    }
}

impl TsStore for MemoryStore {
    fn ts_post(&self, id: SessionId, check: PostCheck) -> BoxFuture<'_, StoreResult<PostRecord>> {
        self.with_ts(move |t| {
            let session = t.live(&id).then(|| t.sessions[&id].0.clone());
            let rate_ok = match (&session, check.per_second) {
                (Some(_), Some(limit)) => t.rate(id, limit),
                _ => true,
            };
            let recorded = match (&session, &check.message_id) {
                (Some(s), Some(m)) if check.admits(s, rate_ok) => {
                    let recorded = t.record(id, m, check.now_ms);
                    if recorded == Recorded::New {
                        t.touch(id, check.now_ms, check.ttl);
                    }
                    Some(recorded)
                }
                _ => None,
            };
            PostRecord {
                session,
                rate_ok,
                recorded,
                published: false,
            }
        })
    }

    fn ts_create(
        &self,
        s: TsSession,
        limit: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        self.with_ts(move |t| {
            let live: HashSet<SessionId> = t
                .by_caller
                .get(&s.caller)
                .into_iter()
                .flatten()
                .filter(|id| t.live(id))
                .copied()
                .collect();
            if live.len() >= limit {
                return false;
            }
            let mut live = live;
            live.insert(s.id);
            t.by_caller.insert(s.caller.clone(), live);
            t.activity.insert(s.id, s.created_ms);
            t.sessions.insert(s.id, (s, Instant::now() + ttl));
            true
        })
    }

    fn ts_get(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<TsSession>>> {
        self.with_ts(move |t| t.live(&id).then(|| t.sessions[&id].0.clone()))
    }

    fn ts_put(&self, s: TsSession, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        self.with_ts(move |t| {
            t.sessions.insert(s.id, (s, Instant::now() + ttl));
        })
    }

    fn ts_end(&self, id: SessionId, caller: &str) -> BoxFuture<'_, StoreResult<()>> {
        let caller = caller.to_string();
        self.with_ts(move |t| {
            if let Some(set) = t.by_caller.get_mut(&caller) {
                set.remove(&id);
            }
            t.activity.remove(&id);
        })
    }

    fn ts_sessions_of(&self, caller: &str) -> BoxFuture<'_, StoreResult<Vec<SessionId>>> {
        let caller = caller.to_string();
        self.with_ts(move |t| {
            let mut out: Vec<SessionId> = t
                .by_caller
                .get(&caller)
                .into_iter()
                .flatten()
                .filter(|id| t.live(id))
                .copied()
                .collect();
            out.sort();
            out
        })
    }

    fn ts_touch(
        &self,
        id: SessionId,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.with_ts(move |t| t.touch(id, now_ms, ttl))
    }

    fn ts_confirm_channel(
        &self,
        id: SessionId,
        position: &str,
        _ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let position = position.to_string();
        self.with_ts(move |t| {
            let cur = t.confirmed.entry(id).or_insert_with(|| "0-0".into());
            if murmur_shared::envelope::Envelope::seq_after(&position, cur) {
                *cur = position;
            }
        })
    }

    fn ts_channel_confirmed(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<String>>> {
        self.with_ts(move |t| t.confirmed.get(&id).cloned())
    }

    fn ts_idle(&self, before_ms: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<SessionId>>> {
        self.with_ts(move |t| {
            t.activity
                .iter()
                .filter(|(_, at)| **at < before_ms)
                .map(|(id, _)| *id)
                .take(limit)
                .collect()
        })
    }

    fn ts_claim_idle(&self, id: SessionId) -> BoxFuture<'_, StoreResult<bool>> {
        self.with_ts(move |t| t.activity.remove(&id).is_some())
    }

    fn ts_record_message(
        &self,
        id: SessionId,
        message_id: &str,
        now_ms: u64,
        _ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<Recorded>> {
        let message_id = message_id.to_string();
        self.with_ts(move |t| t.record(id, &message_id, now_ms))
    }

    fn ts_message(
        &self,
        id: SessionId,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Recorded>>> {
        let message_id = message_id.to_string();
        self.with_ts(move |t| t.message(id, &message_id))
    }

    fn ts_take_over(
        &self,
        id: SessionId,
        message_id: &str,
        since_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let message_id = message_id.to_string();
        self.with_ts(
            move |t| match t.seen.get_mut(&id).and_then(|s| s.get_mut(&message_id)) {
                Some(since) if *since == Some(since_ms) => {
                    *since = Some(now_ms);
                    true
                }
                _ => false,
            },
        )
    }

    fn ts_settle(&self, id: SessionId, message_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let message_id = message_id.to_string();
        self.with_ts(move |t| {
            if let Some(since) = t.seen.get_mut(&id).and_then(|s| s.get_mut(&message_id)) {
                *since = None;
            }
        })
    }

    fn ts_push(
        &self,
        id: SessionId,
        msg: Value,
        cap: usize,
        _ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        self.with_ts(move |t| {
            let (seq, q) = t.queues.entry(id).or_default();
            *seq += 1;
            q.insert(*seq, msg);
            while q.len() > cap.max(1) {
                q.pop_first();
            }
            *seq
        })
    }

    fn ts_read(
        &self,
        id: SessionId,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<(u64, Value)>>> {
        self.with_ts(move |t| {
            t.queues.get(&id).map_or_else(Vec::new, |(_, q)| {
                q.range(after + 1..)
                    .take(limit)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect()
            })
        })
    }

    fn ts_queue_tail(&self, id: SessionId) -> BoxFuture<'_, StoreResult<u64>> {
        self.with_ts(move |t| t.queues.get(&id).map_or(0, |(seq, _)| *seq))
    }

    fn ts_confirm(&self, id: SessionId, upto: u64) -> BoxFuture<'_, StoreResult<()>> {
        self.with_ts(move |t| {
            if let Some((_, q)) = t.queues.get_mut(&id) {
                *q = q.split_off(&(upto + 1));
            }
        })
    }

    fn ts_clear(&self, id: SessionId) -> BoxFuture<'_, StoreResult<()>> {
        self.with_ts(move |t| {
            if let Some((_, q)) = t.queues.get_mut(&id) {
                q.clear();
            }
        })
    }

    fn ts_quarantine(&self, caller: &str, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        let caller = caller.to_string();
        self.with_ts(move |t| {
            t.quarantine.insert(caller, Instant::now() + ttl);
        })
    }

    fn ts_quarantined(&self, caller: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let caller = caller.to_string();
        self.with_ts(move |t| {
            t.quarantine
                .get(&caller)
                .is_some_and(|d| Instant::now() < *d)
        })
    }

    fn ts_rate(&self, id: SessionId, per_second: u64) -> BoxFuture<'_, StoreResult<bool>> {
        self.with_ts(move |t| t.rate(id, per_second))
    }
}
