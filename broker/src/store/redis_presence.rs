//! Presence in Redis: per user, the set of nodes they have a device on
//! (`presence:<user>`); per node, the users it has online (`presence-node:<node>`, to
//! forget them when the node dies); when a user went offline (`lastseen:<user>`, kept
//! [`LAST_SEEN_TTL`]). Each change is one script, so "first device anywhere" and "last
//! device gone" are decided atomically across nodes.

use std::sync::LazyLock;

use murmur_shared::ids::NodeId;
use redis::Script;

use super::redis::{err, RedisStore};
use super::{Presence, StoreResult, LAST_SEEN_TTL};

/// KEYS: [1] presence set, [2] node's user set, [3] last seen. ARGV: [1] node, [2]
/// user, [3] '1' online / '0' offline, [4] now ms, [5] last-seen ttl ms. Returns 1 when
/// the user's cluster-wide status changed.
static PRESENCE_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[3] == '1' then
  local before = redis.call('SCARD', KEYS[1])
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
  if before == 0 then return 1 end
  return 0
end
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
  return 1
end
return 0
"#,
    )
});

/// KEYS: [1] the node's user set. ARGV: [1] node, [2] presence key prefix, [3] last-seen
/// key prefix, [4] now ms, [5] last-seen ttl ms. Returns the users now offline.
static DROP_NODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local gone = {}
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[2] .. u
  if redis.call('SREM', k, ARGV[1]) == 1 and redis.call('SCARD', k) == 0 then
    redis.call('SET', ARGV[3] .. u, ARGV[4], 'PX', ARGV[5])
    table.insert(gone, u)
  end
end
redis.call('DEL', KEYS[1])
return gone
"#,
    )
});

fn ttl_ms() -> u64 {
    LAST_SEEN_TTL.as_millis() as u64
}

impl RedisStore {
    pub(super) async fn presence_set_on(
        &self,
        user: &str,
        node: &NodeId,
        online: bool,
        now_ms: u64,
    ) -> StoreResult<bool> {
        let keys = self.keys();
        let changed: i64 = PRESENCE_SET
            .key(keys.presence(user))
            .key(keys.presence_node(node))
            .key(keys.last_seen(user))
            .arg(node.0.as_str())
            .arg(user)
            .arg(if online { "1" } else { "0" })
            .arg(now_ms)
            .arg(ttl_ms())
            .invoke_async(&mut self.c())
            .await
            .map_err(err)?;
        Ok(changed == 1)
    }

    pub(super) async fn presence_of_on(&self, users: &[String]) -> StoreResult<Vec<Presence>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let mut pipe = redis::pipe();
        for u in users {
            pipe.scard(keys.presence(u)).get(keys.last_seen(u));
        }
        let raw: Vec<(u64, Option<u64>)> = pipe
            .query_async::<Vec<redis::Value>>(&mut self.c())
            .await
            .map_err(err)?
            .chunks(2)
            .map(|pair| {
                let n = redis::from_redis_value::<u64>(pair[0].clone()).unwrap_or(0);
                let seen = redis::from_redis_value::<Option<u64>>(pair[1].clone()).unwrap_or(None);
                (n, seen)
            })
            .collect();
        Ok(users
            .iter()
            .zip(raw)
            .map(|(u, (n, seen))| Presence {
                user: u.clone(),
                online: n > 0,
                last_seen: seen.filter(|_| n == 0),
            })
            .collect())
    }

    pub(super) async fn presence_drop_node_on(
        &self,
        node: &NodeId,
        now_ms: u64,
    ) -> StoreResult<Vec<String>> {
        let keys = self.keys();
        DROP_NODE
            .key(keys.presence_node(node))
            .arg(node.0.as_str())
            .arg(keys.presence(""))
            .arg(keys.last_seen(""))
            .arg(now_ms)
            .arg(ttl_ms())
            .invoke_async(&mut self.c())
            .await
            .map_err(err)
    }

    pub(super) async fn directs_of_on(&self, user: &str) -> StoreResult<Vec<String>> {
        redis::cmd("SMEMBERS")
            .arg(self.keys().user_directs(user))
            .query_async(&mut self.c())
            .await
            .map_err(err)
    }
}
