//! [`TsStore`] for the Redis store. Key layout in [`crate::keys`].

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use murmur_shared::ids::SessionId;
use redis::{AsyncCommands, Script};
use serde_json::Value as Json;

use super::redis::{err, json_err, RedisStore};
use super::timestick::{ChannelPublication, PostCheck, PostRecord, Recorded, TsSession, TsStore};
use super::{StoreError, StoreResult};
use crate::bus::Settle;

/// KEYS: [1] caller set, [2] session record, [3] activity zset.
/// ARGV: [1] limit, [2] record JSON, [3] ttl ms, [4] session id, [5] now ms, [6] record
/// key prefix. Prunes ids whose record expired, then adds unless at the limit.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[6] .. id) == 0 then redis.call('SREM', KEYS[1], id) end
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
return 1
"#,
    )
});

/// KEYS: [1] position counter, [2] queue. ARGV: [1] entry JSON, [2] cap, [3] ttl ms.
static PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-1', 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return seq
"#,
    )
});

/// KEYS: [1] confirmed position. ARGV: [1] position `<ms>-<n>`, [2] ttl ms. Raises it.
static CONFIRM_CHANNEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local function parse(s)
  local a, b = string.match(s or '0-0', '^(%d+)-(%d+)$')
  return tonumber(a or '0'), tonumber(b or '0')
end
local cm, cn = parse(redis.call('GET', KEYS[1]))
local nm, nn = parse(ARGV[1])
if nm > cm or (nm == cm and nn > cn) then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#,
    )
});

/// KEYS: [1] record, [2] rate counter. ARGV: [1] per second. Returns {record or false,
/// count}; the counter is only touched when the record exists.
static GET_COUNTED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local rec = redis.call('GET', KEYS[1])
if not rec then return {false, 0} end
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 2000)
return {rec, n}
"#,
    )
});

/// Recording a message id in Lua, `record_on(seen set, unsettled hash, message id, now
/// ms, ttl ms, settled)`: `SADD` to the seen set and, when new and not `settled`, `HSET`
/// of the time in the unsettled hash. Returns code, since: see [`recorded`].
const RECORD_FN: &str = r#"
local function record_on(seen, unsettled, id, now, ttl, settled)
  if redis.call('SADD', seen, id) == 0 then
    local since = redis.call('HGET', unsettled, id)
    if since then return 2, tonumber(since) end
    return 0, 0
  end
  redis.call('PEXPIRE', seen, ttl)
  if not settled then
    redis.call('HSET', unsettled, id, now)
    redis.call('PEXPIRE', unsettled, ttl)
  end
  return 1, 0
end
"#;

/// A script of `body` after the Lua functions it uses.
fn script(functions: &[&str], body: &str) -> Script {
    Script::new(&format!("{}{body}", functions.concat()))
}

/// Records a message id (unsettled). KEYS: [1] seen set, [2] unsettled hash. ARGV: [1]
/// message id, [2] now ms, [3] ttl ms. Returns {code, since}: see [`recorded`].
static RECORD_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RECORD_FN],
        r#"
local code, since = record_on(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], false)
return {code, since}
"#,
    )
});

/// What a record script answered ({code, since}); `None` for "not looked at" (-1).
fn recorded(code: i64, since_ms: u64) -> Option<Recorded> {
    match code {
        1 => Some(Recorded::New),
        2 => Some(Recorded::Unsettled { since_ms }),
        0 => Some(Recorded::Settled),
        _ => None,
    }
}

/// Takes an unsettled message id over. KEYS: [1] unsettled hash. ARGV: [1] message id,
/// [2] the time found, [3] now ms. 1 = taken.
static TAKE_OVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"#,
    )
});

/// KEYS: [1] seen set, [2] activity zset, [3] record, [4] queue, [5] seq, [6] unsettled
/// hash. ARGV: [1] message id, [2] now ms, [3] ttl ms, [4] session id. Returns as
/// [`RECORD_MESSAGE`].
static ACCEPT_MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RECORD_FN],
        r#"
local code, since = record_on(KEYS[1], KEYS[6], ARGV[1], ARGV[2], ARGV[3], false)
if code ~= 1 then return {code, since} end
redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
redis.call('PEXPIRE', KEYS[5], ARGV[3])
return {1, 0}
"#,
    )
});

/// KEYS: [1] record, [2] rate counter, [3] seen set, [4] activity zset, [5] queue,
/// [6] seq, [7] unsettled hash; to publish, [8] history stream, [9] pub/sub channel,
/// [10] sequence hash. ARGV: [1] per second (empty: already counted), [2] caller, [3]
/// body length, [4] message id, [5] what to do once the checks pass: '' nothing, '1'
/// record it, '2' record it settled and publish it; [6] now ms, [7] ttl ms, [8] session
/// id; to publish, [9] envelope, [10] kept, [11] history ttl ms, [12] the channel the
/// envelope names (the session's target, checked).
/// Returns {record or false, count, seen, since}: seen and since as [`RECORD_MESSAGE`],
/// 3 = published (no record returned), -1 = not looked at (a check of
/// [`PostCheck::admits`] failed, checked here on the record).
static POST: LazyLock<Script> = LazyLock::new(|| {
    script(
        &[RECORD_FN, crate::bus::redis::PUBLISH_FN],
        r#"
local rec = redis.call('GET', KEYS[1])
if not rec then return {false, 0, -1, 0} end
local n = 0
if ARGV[1] ~= '' then
  n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('PEXPIRE', KEYS[2], 2000) end
  if n > tonumber(ARGV[1]) then return {rec, n, -1, 0} end
end
if ARGV[5] == '' then return {rec, n, -1, 0} end
local s = cjson.decode(rec)
local publish = ARGV[5] == '2'
if s.caller ~= ARGV[2] or s.state.state ~= 'active'
  or tonumber(ARGV[3]) > tonumber(s.max_message_size)
  or (publish and s.target ~= ARGV[12]) then
  return {rec, n, -1, 0}
end
local code, since = record_on(KEYS[3], KEYS[7], ARGV[4], ARGV[6], ARGV[7], publish)
if code ~= 1 then return {rec, n, code, since} end
redis.call('ZADD', KEYS[4], 'XX', 'GT', ARGV[6], ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[5], ARGV[7])
redis.call('PEXPIRE', KEYS[6], ARGV[7])
if publish then
  publish_on(KEYS[8], KEYS[9], KEYS[10], ARGV[9], ARGV[10], ARGV[11])
  return {false, n, 3, 0}
end
return {rec, n, 1, 0}
"#,
    )
});

fn unknown_answer() -> StoreError {
    StoreError::corrupt("unknown answer of a TimeStick record script")
}

impl RedisStore {
    /// [`TsStore::ts_post`], publishing in the same step when given a publication.
    async fn post(
        &self,
        id: SessionId,
        check: PostCheck,
        publication: Option<ChannelPublication>,
    ) -> StoreResult<PostRecord> {
        let keys = self.keys();
        let sec = murmur_shared::ids::now_ms() / 1000;
        let mode = match (&check.message_id, &publication) {
            (None, _) => "",
            (Some(_), None) => "1",
            (Some(_), Some(_)) => "2",
        };
        let mut call = POST.prepare_invoke();
        call.key(keys.ts_session(id))
            .key(keys.ts_rate(id, sec))
            .key(keys.ts_seen(id))
            .key(keys.ts_activity())
            .key(keys.ts_queue(id))
            .key(keys.ts_seq(id))
            .key(keys.ts_unsettled(id))
            .arg(check.per_second.map_or_else(String::new, |n| n.to_string()))
            .arg(&check.caller)
            .arg(check.len)
            .arg(check.message_id.as_deref().unwrap_or(""))
            .arg(mode)
            .arg(check.now_ms)
            .arg(ms(check.ttl))
            .arg(id.to_string());
        if let Some(p) = &publication {
            call.key(keys.history(&p.channel))
                .key(keys.channel(&p.channel))
                .key(keys.channel_seq(&p.channel))
                .arg(p.envelope.as_slice())
                .arg(p.history.len.max(1))
                .arg(ms(p.history.ttl))
                .arg(&p.channel);
        }
        let (rec, n, seen, since): (Option<String>, u64, i64, u64) =
            call.invoke_async(&mut self.c()).await.map_err(err)?;
        let session = rec
            .map(|j| serde_json::from_str(&j).map_err(json_err))
            .transpose()?;
        Ok(PostRecord {
            session,
            rate_ok: check.per_second.is_none_or(|limit| n <= limit),
            recorded: match seen {
                3 => Some(Recorded::New),
                _ => recorded(seen, since),
            },
            published: seen == 3,
        })
    }

    /// The unsettled hash field of `message_id`.
    fn settle_mark(&self, id: SessionId, message_id: &str) -> Settle {
        Settle {
            hash: self.keys().ts_unsettled(id),
            field: message_id.to_string(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

impl TsStore for RedisStore {
    fn ts_post(&self, id: SessionId, check: PostCheck) -> BoxFuture<'_, StoreResult<PostRecord>> {
        self.post(id, check, None).boxed()
    }

    fn ts_post_publish(
        &self,
        id: SessionId,
        check: PostCheck,
        publication: ChannelPublication,
    ) -> BoxFuture<'_, StoreResult<PostRecord>> {
        self.post(id, check, Some(publication)).boxed()
    }

    fn ts_get_counted(
        &self,
        id: SessionId,
        per_second: u64,
    ) -> BoxFuture<'_, StoreResult<(Option<TsSession>, bool)>> {
        async move {
            let keys = self.keys();
            let sec = murmur_shared::ids::now_ms() / 1000;
            let (rec, n): (Option<String>, u64) = GET_COUNTED
                .key(keys.ts_session(id))
                .key(keys.ts_rate(id, sec))
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            let s = rec
                .map(|j| serde_json::from_str(&j).map_err(json_err))
                .transpose()?;
            Ok((s, n <= per_second))
        }
        .boxed()
    }

    fn ts_accept_message(
        &self,
        id: SessionId,
        message_id: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<Recorded>> {
        let message_id = message_id.to_string();
        async move {
            let keys = self.keys();
            let (code, since): (i64, u64) = ACCEPT_MESSAGE
                .key(keys.ts_seen(id))
                .key(keys.ts_activity())
                .key(keys.ts_session(id))
                .key(keys.ts_queue(id))
                .key(keys.ts_seq(id))
                .key(keys.ts_unsettled(id))
                .arg(message_id)
                .arg(now_ms)
                .arg(ms(ttl))
                .arg(id.to_string())
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            recorded(code, since).ok_or_else(unknown_answer)
        }
        .boxed()
    }

    fn ts_create(
        &self,
        s: TsSession,
        limit: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        async move {
            let json = serde_json::to_string(&s).map_err(json_err)?;
            let keys = self.keys();
            let created: i64 = CREATE
                .key(keys.ts_caller(&s.caller))
                .key(keys.ts_session(s.id))
                .key(keys.ts_activity())
                .arg(limit)
                .arg(json)
                .arg(ms(ttl))
                .arg(s.id.to_string())
                .arg(s.created_ms)
                .arg(keys.ts_session_prefix())
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(created == 1)
        }
        .boxed()
    }

    fn ts_get(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<TsSession>>> {
        async move {
            let v: Option<String> = self
                .c()
                .get(self.keys().ts_session(id))
                .await
                .map_err(err)?;
            v.map(|j| serde_json::from_str(&j).map_err(json_err))
                .transpose()
        }
        .boxed()
    }

    fn ts_put(&self, s: TsSession, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let json = serde_json::to_string(&s).map_err(json_err)?;
            self.c()
                .pset_ex::<_, _, ()>(self.keys().ts_session(s.id), json, ms(ttl))
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_end(&self, id: SessionId, caller: &str) -> BoxFuture<'_, StoreResult<()>> {
        let caller = caller.to_string();
        async move {
            let keys = self.keys();
            redis::pipe()
                .srem(keys.ts_caller(&caller), id.to_string())
                .ignore()
                .zrem(keys.ts_activity(), id.to_string())
                .ignore()
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_sessions_of(&self, caller: &str) -> BoxFuture<'_, StoreResult<Vec<SessionId>>> {
        let key = self.keys().ts_caller(caller);
        async move {
            let ids: Vec<String> = self.c().smembers(key).await.map_err(err)?;
            let mut out: Vec<SessionId> = ids.iter().filter_map(|i| SessionId::parse(i)).collect();
            out.sort();
            Ok(out)
        }
        .boxed()
    }

    fn ts_touch(
        &self,
        id: SessionId,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let keys = self.keys();
            let ttl = ms(ttl) as i64;
            // XX: only sessions still in the index (not ended) are touched; GT: never back.
            redis::pipe()
                .cmd("ZADD")
                .arg(keys.ts_activity())
                .arg("XX")
                .arg("GT")
                .arg(now_ms)
                .arg(id.to_string())
                .ignore()
                .pexpire(keys.ts_session(id), ttl)
                .ignore()
                .pexpire(keys.ts_queue(id), ttl)
                .ignore()
                .pexpire(keys.ts_seq(id), ttl)
                .ignore()
                .pexpire(keys.ts_seen(id), ttl)
                .ignore()
                .pexpire(keys.ts_unsettled(id), ttl)
                .ignore()
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_confirm_channel(
        &self,
        id: SessionId,
        position: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let position = position.to_string();
        async move {
            CONFIRM_CHANNEL
                .key(self.keys().ts_confirmed(id))
                .arg(position)
                .arg(ms(ttl))
                .invoke_async::<i64>(&mut self.c())
                .await
                .map(|_| ())
                .map_err(err)
        }
        .boxed()
    }

    fn ts_channel_confirmed(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<String>>> {
        async move {
            self.c()
                .get(self.keys().ts_confirmed(id))
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_idle(&self, before_ms: u64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<SessionId>>> {
        async move {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.keys().ts_activity())
                .arg("-inf")
                .arg(format!("({before_ms}"))
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(ids.iter().filter_map(|i| SessionId::parse(i)).collect())
        }
        .boxed()
    }

    fn ts_claim_idle(&self, id: SessionId) -> BoxFuture<'_, StoreResult<bool>> {
        async move {
            let removed: i64 = self
                .c()
                .zrem(self.keys().ts_activity(), id.to_string())
                .await
                .map_err(err)?;
            Ok(removed == 1)
        }
        .boxed()
    }

    fn ts_record_message(
        &self,
        id: SessionId,
        message_id: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<Recorded>> {
        let message_id = message_id.to_string();
        async move {
            let keys = self.keys();
            let (code, since): (i64, u64) = RECORD_MESSAGE
                .key(keys.ts_seen(id))
                .key(keys.ts_unsettled(id))
                .arg(message_id)
                .arg(now_ms)
                .arg(ms(ttl))
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            recorded(code, since).ok_or_else(unknown_answer)
        }
        .boxed()
    }

    fn ts_message(
        &self,
        id: SessionId,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<Recorded>>> {
        let message_id = message_id.to_string();
        async move {
            let keys = self.keys();
            let (seen, since): (bool, Option<u64>) = redis::pipe()
                .sismember(keys.ts_seen(id), &message_id)
                .hget(keys.ts_unsettled(id), &message_id)
                .query_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(match (seen, since) {
                (false, _) => None,
                (true, Some(since_ms)) => Some(Recorded::Unsettled { since_ms }),
                (true, None) => Some(Recorded::Settled),
            })
        }
        .boxed()
    }

    fn ts_take_over(
        &self,
        id: SessionId,
        message_id: &str,
        since_ms: u64,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let message_id = message_id.to_string();
        async move {
            let taken: i64 = TAKE_OVER
                .key(self.keys().ts_unsettled(id))
                .arg(message_id)
                .arg(since_ms)
                .arg(now_ms)
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(taken == 1)
        }
        .boxed()
    }

    fn ts_settle(&self, id: SessionId, message_id: &str) -> BoxFuture<'_, StoreResult<()>> {
        let mark = self.settle_mark(id, message_id);
        async move {
            redis::cmd("HDEL")
                .arg(mark.hash)
                .arg(mark.field)
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_settle_mark(&self, id: SessionId, message_id: &str) -> Option<Settle> {
        Some(self.settle_mark(id, message_id))
    }

    fn ts_push(
        &self,
        id: SessionId,
        msg: Json,
        cap: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let keys = self.keys();
            let json = serde_json::to_string(&msg).map_err(json_err)?;
            PUSH.key(keys.ts_seq(id))
                .key(keys.ts_queue(id))
                .arg(json)
                .arg(cap.max(1))
                .arg(ms(ttl))
                .invoke_async(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_read(
        &self,
        id: SessionId,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<(u64, Json)>>> {
        async move {
            let entries = self
                .read_positions(&self.keys().ts_queue(id), after, limit)
                .await?;
            Ok(entries
                .into_iter()
                .filter_map(|(seq, m)| Some((seq, serde_json::from_slice(&m).ok()?)))
                .collect())
        }
        .boxed()
    }

    fn ts_queue_tail(&self, id: SessionId) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let seq: Option<u64> = self.c().get(self.keys().ts_seq(id)).await.map_err(err)?;
            Ok(seq.unwrap_or(0))
        }
        .boxed()
    }

    fn ts_confirm(&self, id: SessionId, upto: u64) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            redis::cmd("XTRIM")
                .arg(self.keys().ts_queue(id))
                .arg("MINID")
                .arg(format!("{}-0", upto + 1))
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_clear(&self, id: SessionId) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            self.c()
                .del::<_, ()>(self.keys().ts_queue(id))
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_quarantine(&self, caller: &str, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        let key = self.keys().ts_quarantine(caller);
        async move {
            self.c()
                .pset_ex::<_, _, ()>(key, 1, ms(ttl))
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn ts_quarantined(&self, caller: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let key = self.keys().ts_quarantine(caller);
        async move { self.c().exists(key).await.map_err(err) }.boxed()
    }

    fn ts_rate(&self, id: SessionId, per_second: u64) -> BoxFuture<'_, StoreResult<bool>> {
        async move {
            let sec = murmur_shared::ids::now_ms() / 1000;
            let key = self.keys().ts_rate(id, sec);
            let (n,): (u64,) = redis::pipe()
                .incr(&key, 1)
                .pexpire(&key, 2000)
                .ignore()
                .query_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(n <= per_second)
        }
        .boxed()
    }
}
