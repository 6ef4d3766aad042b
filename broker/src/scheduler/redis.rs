//! The Redis scheduler: `<prefix>sched` (sorted set: job id → due ms),
//! `<prefix>sched:jobs` (hash: job id → JSON) and `<prefix>sched:lease` (sorted set:
//! claimed job id → lease deadline). Claiming is one Lua call that moves due jobs from
//! the schedule to the lease set, so each job is handed to exactly one node; the node
//! acknowledges (deletes) them once carried out. Jobs survive the loss of the node that
//! held them, and of a node that claimed them: an expired lease puts the job back on the
//! schedule for another node (at-least-once in that one case).

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::ConnectionManager;
use redis::Script;

use super::{Claimed, Held, Scheduler};
use crate::keys::Keys;
use crate::store::{StoreError, StoreResult};

/// KEYS: [1] schedule, [2] jobs, [3] leases. ARGV: [1] now ms, [2] limit, [3] lease
/// deadline. Moves due jobs to the lease set; returns their JSONs.
const CLAIM: &str = r#"
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local job = redis.call('HGET', KEYS[2], id)
    if job then
      redis.call('ZADD', KEYS[3], ARGV[3], id)
      table.insert(out, job)
    end
  end
end
return out
"#;

/// KEYS: [1] schedule, [2] leases. ARGV: [1] now ms. Re-queues expired leases, due now.
const REAP: &str = r#"
local ids = redis.call('ZRANGE', KEYS[2], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], ARGV[1], id)
end
return #ids
"#;

/// See the module docs.
pub struct RedisScheduler {
    conn: ConnectionManager,
    keys: Keys,
    claim: Script,
    reap: Script,
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError::redis(e)
}

impl RedisScheduler {
    pub fn new(url: &str, keys: Keys) -> Result<Self, crate::setup::SetupError> {
        let conn = crate::store::redis::lazy_connection(url, "scheduler")?;
        Ok(RedisScheduler {
            conn,
            keys,
            claim: Script::new(CLAIM),
            reap: Script::new(REAP),
        })
    }
}

impl Scheduler for RedisScheduler {
    fn hold(&self, held: Held) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let json = serde_json::to_string(&held).map_err(StoreError::corrupt)?;
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

    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, StoreResult<Claimed>> {
        async move {
            let raw: Vec<String> = self
                .claim
                .key(self.keys.scheduled())
                .key(self.keys.scheduled_jobs())
                .key(self.keys.scheduled_leases())
                .arg(now_ms)
                .arg(limit)
                .arg(now_ms + super::CLAIM_LEASE.as_millis() as i64)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err)?;
            let mut claimed = Claimed::default();
            for text in &raw {
                match serde_json::from_str(text) {
                    Ok(held) => claimed.jobs.push(held),
                    Err(e) => {
                        // Left leased: it comes back when the lease runs out and is
                        // counted again, until someone repairs or removes it.
                        tracing::warn!(error = %e, "undecodable held job");
                        claimed.corrupt += 1;
                    }
                }
            }
            Ok(claimed)
        }
        .boxed()
    }

    fn ack(&self, ids: Vec<String>) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            if ids.is_empty() {
                return Ok(());
            }
            redis::pipe()
                .atomic()
                .zrem(self.keys.scheduled_leases(), &ids)
                .ignore()
                .hdel(self.keys.scheduled_jobs(), &ids)
                .ignore()
                .query_async::<()>(&mut self.conn.clone())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn reap(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            self.reap
                .key(self.keys.scheduled())
                .key(self.keys.scheduled_leases())
                .arg(now_ms)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(err)
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
