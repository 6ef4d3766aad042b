//! The Redis store (cluster mode). Key layout in [`crate::keys`] and `docs/cluster.md`.
//!
//! One multiplexed connection manager (reconnects by itself; commands fail fast while
//! Redis is away, and callers count the failure). Records carry TTLs so a crashed
//! node's leftovers expire; compare-and-delete and node cleanup are Lua scripts so they
//! are atomic.

use crate::setup::{SetupError, SetupErrorKind};
use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use murmur_shared::envelope::{ChannelSeq, Envelope};
use murmur_shared::ids::{NodeId, SessionId};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script, Value};

use super::{
    GroupChange, GroupRecord, GroupUpdate, InboxCursor, InboxPage, NodeInfo, Presence,
    ProviderEntry, ReadMark, RecoveryRecord, Store, StoreError, StoreResult, StoredMessage, Unread,
};
use crate::keys::Keys;

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Deletes KEYS[1] only if it still holds ARGV[1].
const DELETE_IF: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Removes node ARGV[1] from the node set, its heartbeat and every provider entry.
/// KEYS: [1] nodes set, [2] node-ns set, [3] nodeinfo. ARGV: [1] node id, [2] providers key prefix.
const REMOVE_NODE: &str = r#"
local prefix = ARGV[1] .. '|'
for _, ns in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[2] .. ns
  for _, m in ipairs(redis.call('SMEMBERS', key)) do
    if string.sub(m, 1, #prefix) == prefix then redis.call('SREM', key, m) end
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"#;

/// A group change, compare-and-set: written only if KEYS[1] (the group) still holds
/// ARGV[1] (the JSON the change was computed from). ARGV: [2] new JSON or '' to delete,
/// [3] user-groups key prefix, [4] group id. Returns 1 written, 0 changed meanwhile.
const UPDATE_GROUP: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local g = cjson.decode(ARGV[1])
for _, u in ipairs(g.participants) do redis.call('SREM', ARGV[3] .. u, ARGV[4]) end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2])
  local n = cjson.decode(ARGV[2])
  for _, u in ipairs(n.participants) do redis.call('SADD', ARGV[3] .. u, ARGV[4]) end
end
return 1
"#;

/// Attempts of a group change that raced with another change of the same group.
const GROUP_CAS_ATTEMPTS: usize = 8;

/// See the module docs.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    delete_if: Script,
    remove_node: Script,
    update_group: Script,
}

/// A connection manager that connects lazily (a node starts while Redis is away),
/// reconnects by itself, and fails commands fast while Redis is unreachable.
pub(crate) fn lazy_connection(
    url: &str,
    what: &'static str,
) -> Result<ConnectionManager, SetupError> {
    let client = Client::open(url).map_err(|e| SetupError::redis_url(what, e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| SetupError::new(SetupErrorKind::Redis, what, e))
}

pub(super) fn err(e: redis::RedisError) -> StoreError {
    StoreError::redis(e)
}

pub(super) fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::corrupt(e)
}

fn member(p: &ProviderEntry) -> String {
    format!("{}|{}", p.node, p.session)
}

fn parse_member(m: &str) -> Option<ProviderEntry> {
    let (node, session) = m.split_once('|')?;
    Some(ProviderEntry {
        node: NodeId(node.to_string()),
        session: SessionId::parse(session)?,
    })
}

impl RedisStore {
    /// A store on `url`; connects lazily, so a node can start while Redis is away.
    pub fn new(url: &str, keys: Keys) -> Result<Self, SetupError> {
        let conn = lazy_connection(url, "store")?;
        Ok(RedisStore {
            conn,
            keys,
            delete_if: Script::new(DELETE_IF),
            remove_node: Script::new(REMOVE_NODE),
            update_group: Script::new(UPDATE_GROUP),
        })
    }

    pub(super) fn c(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(super) fn keys(&self) -> &Keys {
        &self.keys
    }

    async fn live_nodes(&self) -> StoreResult<(Vec<NodeInfo>, Vec<NodeId>)> {
        let mut c = self.c();
        let ids: Vec<String> = c.smembers(self.keys.nodes()).await.map_err(err)?;
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.keys.node(&NodeId(id.clone())))
            .collect();
        let infos: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, info) in ids.into_iter().zip(infos) {
            match info.and_then(|j| serde_json::from_str::<NodeInfo>(&j).ok()) {
                Some(n) => live.push(n),
                None => dead.push(NodeId(id)),
            }
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((live, dead))
    }

    async fn remove_node_now(&self, node: &NodeId) -> StoreResult<()> {
        let mut c = self.c();
        self.remove_node
            .key(self.keys.nodes())
            .key(self.keys.node_namespaces(node))
            .key(self.keys.node(node))
            .arg(&node.0)
            .arg(self.keys.providers(""))
            .invoke_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

impl Store for RedisStore {
    fn put_recovery(&self, rec: RecoveryRecord, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let json = serde_json::to_string(&rec).map_err(json_err)?;
            let ms = ttl.as_millis().max(1) as u64;
            self.c()
                .pset_ex::<_, _, ()>(self.keys.recovery(rec.session), json, ms)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn get_recovery(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<RecoveryRecord>>> {
        async move {
            let v: Option<String> = self.c().get(self.keys.recovery(id)).await.map_err(err)?;
            v.map(|j| serde_json::from_str(&j).map_err(json_err))
                .transpose()
        }
        .boxed()
    }

    fn delete_recovery(&self, id: SessionId) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            self.c()
                .del::<_, ()>(self.keys.recovery(id))
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn set_owner(
        &self,
        id: SessionId,
        node: NodeId,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let ms = ttl.as_millis().max(1) as u64;
            self.c()
                .pset_ex::<_, _, ()>(self.keys.owner(id), node.0, ms)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn get_owner(&self, id: SessionId) -> BoxFuture<'_, StoreResult<Option<NodeId>>> {
        async move {
            let v: Option<String> = self.c().get(self.keys.owner(id)).await.map_err(err)?;
            Ok(v.map(NodeId))
        }
        .boxed()
    }

    fn delete_owner(&self, id: SessionId, node: NodeId) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let mut c = self.c();
            self.delete_if
                .key(self.keys.owner(id))
                .arg(node.0)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|_| ())
                .map_err(err)
        }
        .boxed()
    }

    fn add_provider(&self, ns: &str, entry: ProviderEntry) -> BoxFuture<'_, StoreResult<()>> {
        let ns = ns.to_string();
        async move {
            redis::pipe()
                .sadd(self.keys.providers(&ns), member(&entry))
                .ignore()
                .sadd(self.keys.node_namespaces(&entry.node), &ns)
                .ignore()
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn remove_provider(&self, ns: &str, entry: ProviderEntry) -> BoxFuture<'_, StoreResult<()>> {
        let ns = ns.to_string();
        async move {
            self.c()
                .srem::<_, _, ()>(self.keys.providers(&ns), member(&entry))
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn providers(&self, ns: &str) -> BoxFuture<'_, StoreResult<Vec<ProviderEntry>>> {
        let ns = ns.to_string();
        async move {
            let members: Vec<String> = self
                .c()
                .smembers(self.keys.providers(&ns))
                .await
                .map_err(err)?;
            if members.is_empty() {
                return Ok(Vec::new());
            }
            let (live, _) = self.live_nodes().await?;
            let live: HashSet<NodeId> = live.into_iter().map(|n| n.id).collect();
            let mut out: Vec<ProviderEntry> = members
                .iter()
                .filter_map(|m| parse_member(m))
                .filter(|p| live.contains(&p.node))
                .collect();
            out.sort_by_key(|p| p.session);
            Ok(out)
        }
        .boxed()
    }

    fn heartbeat(&self, info: NodeInfo, ttl: Duration) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let json = serde_json::to_string(&info).map_err(json_err)?;
            let ms = ttl.as_millis().max(1) as u64;
            redis::pipe()
                .pset_ex(self.keys.node(&info.id), json, ms)
                .ignore()
                .sadd(self.keys.nodes(), &info.id.0)
                .ignore()
                .query_async::<()>(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn nodes(&self) -> BoxFuture<'_, StoreResult<Vec<NodeInfo>>> {
        async move { Ok(self.live_nodes().await?.0) }.boxed()
    }

    fn remove_node(&self, node: NodeId) -> BoxFuture<'_, StoreResult<()>> {
        async move { self.remove_node_now(&node).await }.boxed()
    }

    fn prune_dead_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<NodeId>>> {
        async move {
            let (_, dead) = self.live_nodes().await?;
            for id in &dead {
                self.remove_node_now(id).await?;
            }
            Ok(dead)
        }
        .boxed()
    }

    fn create_group(&self, group: GroupRecord) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            let json = serde_json::to_string(&group).map_err(json_err)?;
            let mut c = self.c();
            let created: bool = redis::cmd("SET")
                .arg(self.keys.group(&group.id))
                .arg(json)
                .arg("NX")
                .query_async::<Option<String>>(&mut c)
                .await
                .map_err(err)?
                .is_some();
            if !created {
                return Err(StoreError::new(
                    super::StoreErrorKind::Conflict,
                    "group id already exists",
                ));
            }
            let mut pipe = redis::pipe();
            for u in &group.participants {
                pipe.sadd(self.keys.user_groups(u), &group.id).ignore();
            }
            pipe.query_async::<()>(&mut c).await.map_err(err)
        }
        .boxed()
    }

    fn group(&self, id: &str) -> BoxFuture<'_, StoreResult<Option<GroupRecord>>> {
        let key = self.keys.group(id);
        async move {
            let v: Option<String> = self.c().get(key).await.map_err(err)?;
            v.map(|j| serde_json::from_str(&j).map_err(json_err))
                .transpose()
        }
        .boxed()
    }

    fn update_group(
        &self,
        id: &str,
        requester: &str,
        change: GroupChange,
    ) -> BoxFuture<'_, StoreResult<GroupUpdate>> {
        let id = id.to_string();
        let requester = requester.to_string();
        async move {
            let key = self.keys.group(&id);
            for _ in 0..GROUP_CAS_ATTEMPTS {
                let mut c = self.c();
                let Some(raw): Option<String> = c.get(&key).await.map_err(err)? else {
                    return Ok(GroupUpdate::NotFound);
                };
                let before: GroupRecord = serde_json::from_str(&raw).map_err(json_err)?;
                let after = match before.apply(&requester, &change) {
                    Ok(after) => after,
                    Err(why) => return Ok(GroupUpdate::Refused(why)),
                };
                let new_json = match &after {
                    Some(g) => serde_json::to_string(g).map_err(json_err)?,
                    None => String::new(),
                };
                // Written only if nobody changed the group since it was read.
                let written: i64 = self
                    .update_group
                    .key(&key)
                    .arg(&raw)
                    .arg(new_json)
                    .arg(self.keys.user_groups_prefix())
                    .arg(&id)
                    .invoke_async(&mut c)
                    .await
                    .map_err(err)?;
                if written == 1 {
                    return Ok(GroupUpdate::Done { before, after });
                }
            }
            Err(StoreError::new(
                super::StoreErrorKind::Conflict,
                "the group kept changing under concurrent updates",
            ))
        }
        .boxed()
    }

    fn groups_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>> {
        let key = self.keys.user_groups(user);
        async move {
            let mut c = self.c();
            let ids: Vec<String> = c.smembers(key).await.map_err(err)?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| self.keys.group(id)).collect();
            let raw: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            let mut out: Vec<GroupRecord> = raw
                .into_iter()
                .flatten()
                .filter_map(|j| serde_json::from_str(&j).ok())
                .collect();
            out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
            Ok(out)
        }
        .boxed()
    }

    fn append_message(
        &self,
        msg: StoredMessage,
        retention: usize,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<String>> {
        async move {
            let key = self.keys.chat_history(&msg.session);
            let json = serde_json::to_vec(&msg).map_err(json_err)?;
            let mut pipe = redis::pipe();
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg(retention.max(1))
                .arg("*")
                .arg("m")
                .arg(json)
                // The sender alone too: unread counts read it without decoding.
                .arg("s")
                .arg(&msg.sender)
                .pexpire(&key, ttl.as_millis().max(1) as i64)
                .ignore();
            if let Some((a, b)) = murmur_shared::chat::direct_participants(&msg.session) {
                for user in [a, b] {
                    pipe.sadd(self.keys.user_directs(&user), &msg.session)
                        .ignore();
                }
            }
            let (id,): (String,) = pipe.query_async(&mut self.c()).await.map_err(err)?;
            Ok(id)
        }
        .boxed()
    }

    fn messages(
        &self,
        session: &str,
        since: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredMessage>>> {
        let key = self.keys.chat_history(session);
        let since = since.map(|s| format!("({s}"));
        async move {
            let mut c = self.c();
            let mut cmd = match &since {
                Some(start) => {
                    let mut cmd = redis::cmd("XRANGE");
                    cmd.arg(&key).arg(start).arg("+");
                    cmd
                }
                None => {
                    let mut cmd = redis::cmd("XREVRANGE");
                    cmd.arg(&key).arg("+").arg("-");
                    cmd
                }
            };
            let reply: Value = cmd
                .arg("COUNT")
                .arg(limit)
                .query_async(&mut c)
                .await
                .map_err(err)?;
            let mut out: Vec<StoredMessage> = stream_entries(reply, "m")
                .into_iter()
                .filter_map(|(id, bytes)| {
                    let mut m: StoredMessage = serde_json::from_slice(&bytes).ok()?;
                    m.id = id;
                    Some(m)
                })
                .collect();
            if since.is_none() {
                out.reverse();
            }
            Ok(out)
        }
        .boxed()
    }

    fn mark_read(
        &self,
        session: &str,
        user: &str,
        message_id: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, StoreResult<ReadMark>> {
        let (session, user, id) = (
            session.to_string(),
            user.to_string(),
            message_id.to_string(),
        );
        async move { self.mark_read_on(&session, &user, &id, ttl).await }.boxed()
    }

    fn unread(&self, session: &str, user: &str, cap: usize) -> BoxFuture<'_, StoreResult<Unread>> {
        let (session, user) = (session.to_string(), user.to_string());
        async move { self.unread_on(&session, &user, cap).await }.boxed()
    }

    fn inbox(
        &self,
        user: &str,
        after: Option<InboxCursor>,
        limit: usize,
        unread_cap: usize,
    ) -> BoxFuture<'_, StoreResult<InboxPage>> {
        let user = user.to_string();
        async move { self.inbox_of(&user, after, limit, unread_cap).await }.boxed()
    }

    fn directs_of(&self, user: &str) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let user = user.to_string();
        async move { self.directs_of_on(&user).await }.boxed()
    }

    fn presence_set(
        &self,
        user: &str,
        node: &NodeId,
        online: bool,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (user, node) = (user.to_string(), node.clone());
        async move { self.presence_set_on(&user, &node, online, now_ms).await }.boxed()
    }

    fn presence_of(&self, users: &[String]) -> BoxFuture<'_, StoreResult<Vec<Presence>>> {
        let users = users.to_vec();
        async move { self.presence_of_on(&users).await }.boxed()
    }

    fn presence_drop_node(
        &self,
        node: &NodeId,
        now_ms: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        let node = node.clone();
        async move { self.presence_drop_node_on(&node, now_ms).await }.boxed()
    }

    fn history_tail(&self, channel: &str) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let channel = channel.to_string();
        async move { self.tail(&channel).await }.boxed()
    }

    fn history(
        &self,
        channel: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<Envelope>>> {
        let key = self.keys.history(channel);
        let start = format!("({after}");
        async move { Ok(parse_xrange(self.xrange_after(&key, &start, limit).await?)) }.boxed()
    }
}

impl RedisStore {
    /// `XRANGE key <start> + COUNT limit`; `start` is usually exclusive (`(id`).
    async fn xrange_after(&self, key: &str, start: &str, limit: usize) -> StoreResult<Value> {
        redis::cmd("XRANGE")
            .arg(key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.c())
            .await
            .map_err(err)
    }

    /// Entries of a positioned stream (ids `<position>-1`, field `m`) after `after`,
    /// oldest first, at most `limit`: the TimeStick queues and the Sink outboxes.
    pub(super) async fn read_positions(
        &self,
        key: &str,
        after: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Vec<u8>)>> {
        let v = self
            .xrange_after(key, &format!("({after}-1"), limit)
            .await?;
        Ok(stream_entries(v, "m")
            .into_iter()
            .filter_map(|(entry, bytes)| Some((entry.split_once('-')?.0.parse().ok()?, bytes)))
            .collect())
    }

    async fn tail(&self, channel: &str) -> StoreResult<Option<String>> {
        let v: Value = redis::cmd("XREVRANGE")
            .arg(self.keys.history(channel))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.c())
            .await
            .map_err(err)?;
        Ok(stream_entries(v, "e").into_iter().next().map(|(id, _)| id))
    }
}

/// `[[id, [field, value, …]], …]` → envelopes with `seq = id` and, where the entry
/// carries them (`n`, `p`), their [`ChannelSeq`]; garbage entries skipped.
fn parse_xrange(v: Value) -> Vec<Envelope> {
    stream_records(v)
        .into_iter()
        .filter_map(|(id, fields)| {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.as_slice() == name.as_bytes())
                    .map(|(_, v)| v.as_slice())
            };
            let mut env = Envelope::from_bytes(field("e")?).ok()?;
            let seq = field("n").and_then(|n| std::str::from_utf8(n).ok()?.parse().ok());
            let epoch = field("p").and_then(|p| std::str::from_utf8(p).ok());
            if let (Some(seq), Some(epoch)) = (seq, epoch) {
                env.chan_seq = Some(ChannelSeq {
                    seq,
                    epoch: epoch.to_string(),
                });
            }
            env.seq = Some(id);
            Some(env)
        })
        .collect()
}

/// `[[id, [field, value, …]], …]` → `(id, value of field)`; garbage entries skipped.
pub(super) fn stream_entries(v: Value, field: &str) -> Vec<(String, Vec<u8>)> {
    stream_records(v)
        .into_iter()
        .filter_map(|(id, fields)| {
            let (_, v) = fields.into_iter().find(|(k, _)| k == field.as_bytes())?;
            Some((id, v))
        })
        .collect()
}

/// One stream entry: its id and its `(field, value)` pairs.
type StreamRecord = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// `[[id, [field, value, …]], …]` → `(id, [(field, value), …])`; garbage entries skipped.
fn stream_records(v: Value) -> Vec<StreamRecord> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(mut parts) = entry else {
                return None;
            };
            if parts.len() != 2 {
                return None;
            }
            let fields = parts.pop()?;
            let id = match parts.pop()? {
                Value::BulkString(b) => String::from_utf8(b).ok()?,
                Value::SimpleString(s) => s,
                _ => return None,
            };
            let Value::Array(fields) = fields else {
                return None;
            };
            let pairs = fields
                .chunks(2)
                .filter_map(|kv| match kv {
                    [Value::BulkString(k), Value::BulkString(v)] => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect();
            Some((id, pairs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_members_round_trip() {
        let p = ProviderEntry {
            node: NodeId("n-1".into()),
            session: SessionId::random(),
        };
        assert_eq!(parse_member(&member(&p)), Some(p));
        assert_eq!(parse_member("garbage"), None);
        assert_eq!(parse_member("n|not-a-uuid"), None);
    }

    #[test]
    fn xrange_garbage_is_skipped() {
        assert!(parse_xrange(Value::Nil).is_empty());
        let bad = Value::Array(vec![Value::Int(1), Value::Array(vec![])]);
        assert!(parse_xrange(bad).is_empty());
    }
}
