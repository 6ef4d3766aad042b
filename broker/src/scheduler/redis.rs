//! The Redis scheduler: `<prefix>sched` (sorted set: job id → due ms) and
//! `<prefix>sched:jobs` (hash: job id → JSON). Claiming is one Lua call that removes
//! due jobs from both, so each job is handed to exactly one node. Jobs survive the
//! loss of the node that held them.

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::ConnectionManager;
use redis::Script;

use super::{Held, Scheduler};
use crate::keys::Keys;
use crate::store::{StoreError, StoreResult};

/// KEYS: [1] zset, [2] hash. ARGV: [1] now ms, [2] limit. Returns the claimed JSONs.
const CLAIM: &str = r#"
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job = redis.call('HGET', KEYS[2], id)
    redis.call('HDEL', KEYS[2], id)
    if job then table.insert(out, job) end
  end
end
return out
"#;

/// See the module docs.
pub struct RedisScheduler {
    conn: ConnectionManager,
    keys: Keys,
    claim: Script,
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError::new(e.to_string())
}

impl RedisScheduler {
    pub fn new(url: &str, keys: Keys) -> Result<Self, String> {
        let conn = crate::store::redis::lazy_connection(url, "scheduler")?;
        Ok(RedisScheduler {
            conn,
            keys,
            claim: Script::new(CLAIM),
        })
    }
}

impl Scheduler for RedisScheduler {
    fn hold(&self, held: Held) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let json = serde_json::to_string(&held).map_err(|e| StoreError::new(e.to_string()))?;
            redis::pipe()
                .atomic()
                .hset(self.keys.scheduled_jobs(), &held.id, json)
                .ignore()
                .zadd(self.keys.scheduled(), &held.id, held.due_ms)
                .ignore()
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<Held>>> {
        async move {
            let raw: Vec<String> = self
                .claim
                .key(self.keys.scheduled())
                .key(self.keys.scheduled_jobs())
                .arg(now_ms)
                .arg(limit)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err)?;
            Ok(raw
                .iter()
                .filter_map(|j| serde_json::from_str(j).ok())
                .collect())
        }
        .boxed()
    }

    fn next_due(&self) -> BoxFuture<'_, StoreResult<Option<i64>>> {
        async move {
            let first: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(self.keys.scheduled())
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query_async(&mut self.conn.clone())
                .await
                .map_err(err)?;
            Ok(first.first().map(|(_, s)| *s as i64))
        }
        .boxed()
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            redis::cmd("ZCARD")
                .arg(self.keys.scheduled())
                .query_async(&mut self.conn.clone())
                .await
                .map_err(err)
        }
        .boxed()
    }
}
