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
    /// When expired sessions were last dropped ([`TsState::sweep`]).
    swept: Option<Instant>,
}

/// What a recorded message id's entry says: unsettled since a time, or settled.
fn known(since: Option<u64>) -> Recorded {
    match since {
        Some(since_ms) => Recorded::Unsettled { since_ms },
        None => Recorded::Settled,
    }
}

/// How often a START drops what expired sessions and quarantines left behind (Redis
/// expires their keys by itself).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl TsState {
    fn live(&self, id: &SessionId) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|(_, deadline)| Instant::now() < *deadline)
    }
}

impl TsState {
    /// Drops every trace of the sessions whose record expired before `now` (record,
    /// caller index, activity, message ids, queue, rate, confirmed position) and the
    /// expired quarantines, at most once per [`SWEEP_EVERY`]: what bounds the memory
    /// store's TimeStick state by the live sessions.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        let expired: Vec<(SessionId, String)> = self
            .sessions
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, (s, _))| (*id, s.caller.clone()))
            .collect();
        for (id, caller) in expired {
            self.sessions.remove(&id);
            if let Some(set) = self.by_caller.get_mut(&caller) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_caller.remove(&caller);
                }
            }
            self.activity.remove(&id);
            self.seen.remove(&id);
            self.queues.remove(&id);
            self.rate.remove(&id);
            self.confirmed.remove(&id);
        }
        self.quarantine.retain(|_, until| *until > now);
    }

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
        let seen = self.seen.entry(id).or_default();
        match seen.get(message_id) {
            Some(since) => known(*since),
            None => {
                seen.insert(message_id.to_string(), Some(now_ms));
                Recorded::New
            }
        }
    }

    /// A recorded message id's entry: `Some(since)` while unsettled.
    fn recorded_mut(&mut self, id: SessionId, message_id: &str) -> Option<&mut Option<u64>> {
        self.seen.get_mut(&id)?.get_mut(message_id)
    }

    fn message(&self, id: SessionId, message_id: &str) -> Option<Recorded> {
        Some(known(*self.seen.get(&id)?.get(message_id)?))
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
            t.sweep(Instant::now());
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
        self.with_ts(move |t| match t.recorded_mut(id, &message_id) {
            Some(since) if *since == Some(since_ms) => {
                *since = Some(now_ms);
                true
            }
            _ => false,
        })
    }

    fn ts_settle(&self, id: SessionId, message_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let message_id = message_id.to_string();
        self.with_ts(move |t| {
            if let Some(since) = t.recorded_mut(id, &message_id) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TsState as State;

    fn session(caller: &str) -> TsSession {
        TsSession {
            id: SessionId::random(),
            caller: caller.to_string(),
            target: "room".into(),
            max_message_size: 100,
            created_ms: 1,
            state: State::Active,
            channel_floor: String::new(),
            channel_confirmed: String::new(),
            channel_ceiling: None,
            final_seq: None,
        }
    }

    #[test]
    fn a_sweep_drops_every_trace_of_expired_sessions_only() {
        let mut t = TsState::default();
        let now = Instant::now();
        let (old, live) = (session("a"), session("a"));
        for (s, deadline) in [(&old, now), (&live, now + Duration::from_secs(60))] {
            t.sessions.insert(s.id, (s.clone(), deadline));
            t.by_caller
                .entry(s.caller.clone())
                .or_default()
                .insert(s.id);
            t.activity.insert(s.id, 1);
            t.record(s.id, "m1", 1);
            t.queues.entry(s.id).or_default().1.insert(1, Value::Null);
            t.rate(s.id, 10);
            t.confirmed.insert(s.id, "0-0".into());
        }
        t.quarantine.insert("q-old".into(), now);
        t.quarantine
            .insert("q-live".into(), now + Duration::from_secs(60));
        t.sweep(now);
        for (id, kept) in [(old.id, false), (live.id, true)] {
            assert_eq!(t.sessions.contains_key(&id), kept);
            assert_eq!(t.activity.contains_key(&id), kept);
            assert_eq!(t.seen.contains_key(&id), kept);
            assert_eq!(t.queues.contains_key(&id), kept);
            assert_eq!(t.rate.contains_key(&id), kept);
            assert_eq!(t.confirmed.contains_key(&id), kept);
            assert_eq!(t.by_caller["a"].contains(&id), kept);
        }
        assert_eq!(
            t.quarantine.keys().collect::<Vec<_>>(),
            vec![&"q-live".to_string()]
        );
        // Not again within SWEEP_EVERY; then again.
        let mut later = live.clone();
        later.id = SessionId::random();
        t.sessions.insert(later.id, (later.clone(), now));
        t.sweep(now + Duration::from_secs(1));
        assert!(
            t.sessions.contains_key(&later.id),
            "swept at most every 10 s"
        );
        t.sweep(now + SWEEP_EVERY);
        assert!(!t.sessions.contains_key(&later.id));
        assert!(t.sessions.contains_key(&live.id), "still live");
    }
}
