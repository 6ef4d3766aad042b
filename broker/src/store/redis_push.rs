//! [`PushStore`] for the Redis store: `push:due` (sorted set: push id → due ms; a claim
//! moves it to the lease's end), `push:jobs` (hash: push id → JSON), `push:dead` (the
//! dead-letter count), and per user `udevices:<user>` (sorted set: device → last sign-in).

use std::sync::LazyLock;

use futures_util::future::{BoxFuture, FutureExt};
use redis::Script;

use super::push::{PushCounts, PushJob, PushStore, DEVICES_KEPT};
use super::redis::{err, RedisStore};
use super::{StoreError, StoreResult};

/// KEYS: [1] due, [2] jobs, [3] dead. ARGV: [1] max, [2] now, then id, JSON pairs.
/// Returns how many were queued.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('HLEN', KEYS[2])
local queued, dead = 0, 0
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    if n >= tonumber(ARGV[1]) then
      dead = dead + 1
    else
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
      redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
      n = n + 1
      queued = queued + 1
    end
  end
end
if dead > 0 then redis.call('INCRBY', KEYS[3], dead) end
return queued
"#,
    )
});

/// KEYS: [1] due, [2] jobs. ARGV: [1] now, [2] lease end, [3] limit. Returns the JSON
/// of the claimed pushes.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do
  local j = redis.call('HGET', KEYS[2], id)
  if j then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    table.insert(out, j)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"#,
    )
});

/// KEYS: [1] due, [2] jobs, [3] dead. ARGV: [1] done count, the done ids, then the
/// retry count, (id, JSON, due) triples, then the dead ids. Settles only pushes still
/// queued.
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local i = 2
local done = tonumber(ARGV[1])
for _ = 1, done do
  redis.call('ZREM', KEYS[1], ARGV[i]); redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1
end
local retry = tonumber(ARGV[i]); i = i + 1
for _ = 1, retry do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
  end
  i = i + 3
end
local dead = 0
while i <= #ARGV do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then dead = dead + 1 end
  redis.call('ZREM', KEYS[1], ARGV[i]); i = i + 1
end
if dead > 0 then redis.call('INCRBY', KEYS[3], dead) end
return 1
"#,
    )
});

impl PushStore for RedisStore {
    fn push_enqueue(&self, jobs: Vec<PushJob>, max: usize) -> BoxFuture<'_, StoreResult<usize>> {
        async move {
            if jobs.is_empty() {
                return Ok(0);
            }
            let keys = self.keys();
            let mut call = ENQUEUE.prepare_invoke();
            call.key(keys.push_due())
                .key(keys.push_jobs())
                .key(keys.push_dead())
                .arg(max)
                .arg(murmur_shared::ids::now_ms());
            for job in &jobs {
                let json = serde_json::to_string(job).map_err(StoreError::corrupt)?;
                call.arg(&job.id).arg(json);
            }
            call.invoke_async(&mut self.c()).await.map_err(err)
        }
        .boxed()
    }

    fn push_claim(
        &self,
        now_ms: u64,
        lease_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<PushJob>>> {
        async move {
            let keys = self.keys();
            let raw: Vec<String> = CLAIM
                .key(keys.push_due())
                .key(keys.push_jobs())
                .arg(now_ms)
                .arg(now_ms + lease_ms)
                .arg(limit)
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            raw.iter()
                .map(|j| serde_json::from_str(j).map_err(StoreError::corrupt))
                .collect()
        }
        .boxed()
    }

    fn push_settle(
        &self,
        done: Vec<String>,
        retry: Vec<(PushJob, u64)>,
        dead: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let keys = self.keys();
            let mut call = SETTLE.prepare_invoke();
            call.key(keys.push_due())
                .key(keys.push_jobs())
                .key(keys.push_dead())
                .arg(done.len());
            for id in &done {
                call.arg(id);
            }
            call.arg(retry.len());
            for (job, at) in &retry {
                let json = serde_json::to_string(job).map_err(StoreError::corrupt)?;
                call.arg(&job.id).arg(json).arg(*at);
            }
            for id in &dead {
                call.arg(id);
            }
            let _: i64 = call.invoke_async(&mut self.c()).await.map_err(err)?;
            Ok(())
        }
        .boxed()
    }

    fn push_counts(&self) -> BoxFuture<'_, StoreResult<PushCounts>> {
        async move {
            let keys = self.keys();
            let (queued, dead): (usize, Option<u64>) = redis::pipe()
                .hlen(keys.push_jobs())
                .get(keys.push_dead())
                .query_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(PushCounts {
                queued,
                dead: dead.unwrap_or(0),
            })
        }
        .boxed()
    }

    fn note_device(&self, user: &str, device: &str, now_ms: u64) -> BoxFuture<'_, StoreResult<()>> {
        let key = self.keys().user_devices(user);
        let device = device.to_string();
        async move {
            redis::pipe()
                .zadd(&key, &device, now_ms)
                .ignore()
                .zremrangebyrank(&key, 0, -(DEVICES_KEPT as isize) - 1)
                .ignore()
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn devices_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let key = self.keys().user_devices(user);
        async move {
            redis::cmd("ZREVRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }
}
