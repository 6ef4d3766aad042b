//! Chat read positions in Redis: one hash per session (`chread:<session>`, user →
//! message id) beside the session's history stream, moved forward and counted by Lua
//! scripts so that a position never goes back and a count reads the stream once.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::redis::{err, RedisStore};
use super::{ReadMark, StoreResult, Unread};

/// Compares two message ids (`<ms>-<n>`) in Lua: `id_after(a, b)` is a > b.
const ID_AFTER: &str = r#"
local function id_parts(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(n) or 0
end
local function id_after(a, b)
  local am, an = id_parts(a)
  local bm, bn = id_parts(b)
  if am ~= bm then return am > bm end
  return an > bn
end
"#;

/// KEYS: [1] read hash, [2] history stream. ARGV: [1] user, [2] message id, [3] ttl ms.
/// Returns {1} advanced, {0, at} unchanged, {-1} newer than the newest message.
static MARK_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ID_AFTER}{}",
        r#"
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last == 0 or id_after(ARGV[2], last[1][1]) then return {-1, false} end
local at = redis.call('HGET', KEYS[1], ARGV[1])
if at and not id_after(ARGV[2], at) then return {0, at} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, false}
"#
    ))
});

/// KEYS: [1] read hash, [2] history stream. ARGV: [1] user, [2] cap. Returns {read
/// position or false, messages of others after it (at most cap), newest id or false}.
/// The sender is the entry's `s` field (the JSON's `sender` for entries written before
/// it existed).
static UNREAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local at = redis.call('HGET', KEYS[1], ARGV[1])
local start = '-'
if at then start = '(' .. at end
local cap = tonumber(ARGV[2])
local count = 0
local entries = redis.call('XRANGE', KEYS[2], start, '+')
for i = #entries, 1, -1 do
  if count >= cap then break end
  local f = entries[i][2]
  local sender
  for j = 1, #f, 2 do
    if f[j] == 's' then sender = f[j + 1] end
  end
  if sender == nil then
    for j = 1, #f, 2 do
      if f[j] == 'm' then
        local ok, m = pcall(cjson.decode, f[j + 1])
        if ok and type(m) == 'table' then sender = m.sender end
      end
    end
  end
  if sender ~= ARGV[1] then count = count + 1 end
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local newest = false
if #last > 0 then newest = last[1][1] end
return {at or false, count, newest}
"#,
    )
});

impl RedisStore {
    pub(super) async fn mark_read_on(
        &self,
        session: &str,
        user: &str,
        message_id: &str,
        ttl: Duration,
    ) -> StoreResult<ReadMark> {
        let keys = self.keys();
        let (code, at): (i64, Option<String>) = MARK_READ
            .key(keys.chat_reads(session))
            .key(keys.chat_history(session))
            .arg(user)
            .arg(message_id)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.c())
            .await
            .map_err(err)?;
        Ok(match (code, at) {
            (1, _) => ReadMark::Advanced,
            (0, Some(at)) => ReadMark::Unchanged { at },
            _ => ReadMark::Unknown,
        })
    }

    pub(super) async fn unread_on(
        &self,
        session: &str,
        user: &str,
        cap: usize,
    ) -> StoreResult<Unread> {
        let keys = self.keys();
        let (read, count, newest): (Option<String>, usize, Option<String>) = UNREAD
            .key(keys.chat_reads(session))
            .key(keys.chat_history(session))
            .arg(user)
            .arg(cap)
            .invoke_async(&mut self.c())
            .await
            .map_err(err)?;
        Ok(Unread {
            read,
            count,
            newest,
        })
    }
}
