//! Chat read state and the inbox in Redis. Read positions: one hash per session
//! (`chread:<session>`, user → message id) beside the session's history stream, moved
//! forward and counted by Lua scripts so that a position never goes back and a count
//! reads the stream once. The inbox: one script reads the user's groups (`ugrp:`) and
//! direct sessions (`udirect:`), the newest entry of each history, sorts, and counts
//! the unread messages of the page only — one round trip, no history read in full.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::redis::{err, RedisStore};
use super::{InboxCursor, InboxItem, InboxPage, ReadMark, StoreResult, StoredMessage, Unread};

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
static UNREAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{UNREAD_FN}{}",
        r#"
local at, count = unread_of(KEYS[2], KEYS[1], ARGV[1], tonumber(ARGV[2]), 0)
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local newest = false
if #last > 0 then newest = last[1][1] end
return {at or false, count, newest}
"#
    ))
});

/// Counting unread messages in Lua: `unread_of(stream, read hash, user, cap)` counts the
/// entries of other senders after the user's position (field `s`, or the JSON's
/// `sender` for entries written before it existed), stopping at `cap`; `scan` bounds
/// the entries read (0: all).
const UNREAD_FN: &str = r#"
local function sender_of(f)
  for j = 1, #f, 2 do
    if f[j] == 's' then return f[j + 1] end
  end
  for j = 1, #f, 2 do
    if f[j] == 'm' then
      local ok, m = pcall(cjson.decode, f[j + 1])
      if ok and type(m) == 'table' then return m.sender end
    end
  end
  return nil
end
local function unread_of(stream, reads, user, cap, scan)
  local at = redis.call('HGET', reads, user)
  local start = '-'
  if at then start = '(' .. at end
  local entries
  if scan > 0 then
    entries = redis.call('XRANGE', stream, start, '+', 'COUNT', scan)
  else
    entries = redis.call('XRANGE', stream, start, '+')
  end
  local count = 0
  for i = 1, #entries do
    if count >= cap then break end
    if sender_of(entries[i][2]) ~= user then count = count + 1 end
  end
  return at, count
end
"#;

/// KEYS: [1] the user's group set, [2] their direct-session set. ARGV: [1] user, [2]
/// history key prefix, [3] read hash prefix, [4] limit, [5] cursor's last id ('' for
/// the first page), [6] cursor's session, [7] unread cap, [8] entries scanned per
/// count. Returns {more (0/1), {{session, newest id, message JSON or false, unread}..}}.
static INBOX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{ID_AFTER}{UNREAD_FN}{}",
        r#"
-- items: {session, newest id, its fields or false, ms, n}; positions parsed once.
local items = {}
local function add(s, keep_empty)
  local last = redis.call('XREVRANGE', ARGV[2] .. s, '+', '-', 'COUNT', 1)
  if #last > 0 then
    local ms, n = id_parts(last[1][1])
    table.insert(items, {s, last[1][1], last[1][2], ms, n})
  elseif keep_empty then
    table.insert(items, {s, '0-0', false, 0, 0})
  end
end
for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do add(s, true) end
for _, s in ipairs(redis.call('SMEMBERS', KEYS[2])) do add(s, false) end
local function first(a, b)
  if a[4] ~= b[4] then return a[4] > b[4] end
  if a[5] ~= b[5] then return a[5] > b[5] end
  return a[1] < b[1]
end
table.sort(items, first)
local start = 1
if ARGV[5] ~= '' then
  local ms, n = id_parts(ARGV[5])
  local cursor = {ARGV[6], ARGV[5], false, ms, n}
  while start <= #items and not first(cursor, items[start]) do start = start + 1 end
end
local limit, cap, scan = tonumber(ARGV[4]), tonumber(ARGV[7]), tonumber(ARGV[8])
local out = {}
local stop = math.min(#items, start + limit - 1)
for i = start, stop do
  local it = items[i]
  local msg, unread = false, 0
  if it[3] then
    for j = 1, #it[3], 2 do
      if it[3][j] == 'm' then msg = it[3][j + 1] end
    end
    local _, n = unread_of(ARGV[2] .. it[1], ARGV[3] .. it[1], ARGV[1], cap, scan)
    unread = n
  end
  table.insert(out, {it[1], it[2], msg, unread})
end
local more = 0
if stop < #items then more = 1 end
return {more, out}
"#
    ))
});

/// One inbox row of the script: session, newest id, message JSON, unread.
type InboxRow = (String, String, Option<String>, usize);

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

    /// Entries scanned per inbox item to count its unread messages.
    const INBOX_SCAN: usize = 256;

    pub(super) async fn inbox_of(
        &self,
        user: &str,
        after: Option<InboxCursor>,
        limit: usize,
        unread_cap: usize,
    ) -> StoreResult<InboxPage> {
        let keys = self.keys();
        let (last, session) = after.map_or((String::new(), String::new()), |c| (c.last, c.session));
        let (more, rows): (u8, Vec<InboxRow>) = INBOX
            .key(keys.user_groups(user))
            .key(keys.user_directs(user))
            .arg(user)
            .arg(keys.chat_history(""))
            .arg(keys.chat_reads(""))
            .arg(limit)
            .arg(last)
            .arg(session)
            .arg(unread_cap)
            .arg(Self::INBOX_SCAN.max(unread_cap))
            .invoke_async(&mut self.c())
            .await
            .map_err(err)?;
        let mut items = Vec::with_capacity(rows.len());
        for (session, id, json, unread) in rows {
            let last = match json {
                None => None,
                Some(j) => {
                    let mut m: StoredMessage =
                        serde_json::from_str(&j).map_err(super::StoreError::corrupt)?;
                    m.id = id;
                    Some(m)
                }
            };
            items.push(InboxItem {
                session,
                last,
                unread,
            });
        }
        Ok(InboxPage {
            items,
            more: more == 1,
        })
    }
}
