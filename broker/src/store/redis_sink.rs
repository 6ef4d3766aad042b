//! [`SinkStore`] for the Redis store. Key layout in [`crate::keys`].

use futures_util::future::{BoxFuture, FutureExt};
use redis::{AsyncCommands, Script};

use super::redis::{err, json_err, RedisStore};
use super::sink::{NackedEntry, OutboxEntry, Quarantine, SinkEvent, SinkStore};
use super::StoreResult;

/// NACKed entries kept per client.
const NACKS_KEPT: isize = 1000;
/// Accepted device events kept in the inbound log per client.
const INBOUND_KEPT: usize = 10_000;

/// How long a device's accepted event identities are remembered for de-duplication
/// after its last event (7 days).
const SEEN_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// KEYS: [1] seen set, [2] inbound stream. ARGV: [1] identity, [2] event JSON, [3] kept,
/// [4] seen TTL ms.
const ACCEPT: &str = r#"
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"#;

/// KEYS: [1] counter, [2] outbox. ARGV: [1] entry JSON starting `{"seq":0,` (the
/// position is spliced in as text: no JSON re-encoding in Lua, which would round
/// 64-bit integers).
const PUSH: &str = r#"
local seq = redis.call('INCR', KEYS[1])
local entry = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 10)
redis.call('XADD', KEYS[2], seq .. '-1', 'm', entry)
return seq
"#;

/// What the PUSH script expects the entry JSON to start with.
const SEQ_PLACEHOLDER: &str = "{\"seq\":0,";

/// KEYS: [1] outbox, [2] nack list. ARGV: [1] seq, [2] nack JSON template, [3] kept.
const NACK: &str = r#"
local id = ARGV[1] .. '-1'
local found = redis.call('XRANGE', KEYS[1], id, id)
if #found == 0 then return 0 end
local fields = found[1][2]
local entry = nil
for i = 1, #fields, 2 do if fields[i] == 'm' then entry = fields[i + 1] end end
redis.call('XDEL', KEYS[1], id)
redis.call('RPUSH', KEYS[2], '{"entry":' .. entry .. ',' .. string.sub(ARGV[2], 2))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return 1
"#;

/// KEYS: [1] mark. ARGV: [1] seq. Raises the mark, never lowers it.
const RAISE: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"#;

fn identity(e: &SinkEvent) -> String {
    let key: String = e.key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{}:{}", e.event_type_id, key, e.offset)
}

impl SinkStore for RedisStore {
    fn sink_server_instance(&self, candidate: u32) -> BoxFuture<'_, StoreResult<u32>> {
        async move {
            let key = self.keys().sink_server();
            let mut c = self.c();
            let _: bool = c.set_nx(&key, candidate).await.map_err(err)?;
            c.get(&key).await.map_err(err)
        }
        .boxed()
    }

    fn sink_client_instance(&self, client: &str) -> BoxFuture<'_, StoreResult<Option<u32>>> {
        let key = self.keys().sink_instance(client);
        async move { self.c().get(key).await.map_err(err) }.boxed()
    }

    fn sink_set_client_instance(&self, client: &str, id: u32) -> BoxFuture<'_, StoreResult<()>> {
        let key = self.keys().sink_instance(client);
        async move { self.c().set::<_, _, ()>(key, id).await.map_err(err) }.boxed()
    }

    fn sink_set_quarantine(
        &self,
        client: &str,
        q: Option<Quarantine>,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let key = self.keys().sink_quarantine(client);
        async move {
            let mut c = self.c();
            let existed: bool = c.exists(&key).await.map_err(err)?;
            match q {
                Some(q) => {
                    let json = serde_json::to_string(&q).map_err(json_err)?;
                    c.set::<_, _, ()>(&key, json).await.map_err(err)?;
                }
                None => c.del::<_, ()>(&key).await.map_err(err)?,
            }
            Ok(existed)
        }
        .boxed()
    }

    fn sink_quarantine(&self, client: &str) -> BoxFuture<'_, StoreResult<Option<Quarantine>>> {
        let key = self.keys().sink_quarantine(client);
        async move {
            let v: Option<String> = self.c().get(key).await.map_err(err)?;
            v.map(|j| serde_json::from_str(&j).map_err(json_err))
                .transpose()
        }
        .boxed()
    }

    fn sink_accept(&self, client: &str, event: &SinkEvent) -> BoxFuture<'_, StoreResult<bool>> {
        let keys = (
            self.keys().sink_seen(client),
            self.keys().sink_inbound(client),
        );
        let identity = identity(event);
        let json = serde_json::to_string(event);
        async move {
            let json = json.map_err(json_err)?;
            let added: i64 = Script::new(ACCEPT)
                .key(keys.0)
                .key(keys.1)
                .arg(identity)
                .arg(json)
                .arg(INBOUND_KEPT)
                .arg(SEEN_TTL_MS)
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(added == 1)
        }
        .boxed()
    }

    fn sink_next_offset(&self, client: &str, key: &[u8]) -> BoxFuture<'_, StoreResult<u64>> {
        let hash = self.keys().sink_offsets(client);
        let field: String = key.iter().map(|b| format!("{b:02x}")).collect();
        async move { self.c().hincr(hash, field, 1).await.map_err(err) }.boxed()
    }

    fn sink_outbox_push(
        &self,
        client: &str,
        entry: OutboxEntry,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        let keys = (
            self.keys().sink_outbox_seq(client),
            self.keys().sink_outbox(client),
        );
        async move {
            let mut entry = entry;
            entry.seq = 0;
            let json = serde_json::to_string(&entry).map_err(json_err)?;
            if !json.starts_with(SEQ_PLACEHOLDER) {
                return Err(super::StoreError::corrupt(
                    "outbox entry JSON must start with its seq",
                ));
            }
            Script::new(PUSH)
                .key(keys.0)
                .key(keys.1)
                .arg(json)
                .invoke_async(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn sink_outbox_read(
        &self,
        client: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEntry>>> {
        let key = self.keys().sink_outbox(client);
        async move {
            let entries = self.read_positions(&key, after, limit).await?;
            Ok(entries
                .into_iter()
                .filter_map(|(_, m)| serde_json::from_slice(&m).ok())
                .collect())
        }
        .boxed()
    }

    fn sink_outbox_remove(&self, client: &str, seq: u64) -> BoxFuture<'_, StoreResult<bool>> {
        let key = self.keys().sink_outbox(client);
        async move {
            let n: i64 = redis::cmd("XDEL")
                .arg(key)
                .arg(format!("{seq}-1"))
                .query_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(n == 1)
        }
        .boxed()
    }

    fn sink_outbox_nack(
        &self,
        client: &str,
        seq: u64,
        machine: Vec<u8>,
        human: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let keys = (
            self.keys().sink_outbox(client),
            self.keys().sink_nacks(client),
        );
        async move {
            // A template with a placeholder entry; the script puts the real one in.
            let template = serde_json::json!({
                "machine_message": base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD, &machine),
                "human_message": human,
                "nacked_ms": murmur_shared::ids::now_ms(),
            });
            let moved: i64 = Script::new(NACK)
                .key(keys.0)
                .key(keys.1)
                .arg(seq)
                .arg(template.to_string())
                .arg(NACKS_KEPT)
                .invoke_async(&mut self.c())
                .await
                .map_err(err)?;
            Ok(moved == 1)
        }
        .boxed()
    }

    fn sink_nacks(
        &self,
        client: &str,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<NackedEntry>>> {
        let key = self.keys().sink_nacks(client);
        async move {
            let raw: Vec<String> = self
                .c()
                .lrange(key, -(limit.max(1) as isize), -1)
                .await
                .map_err(err)?;
            Ok(raw
                .iter()
                .filter_map(|j| serde_json::from_str(j).ok())
                .collect())
        }
        .boxed()
    }

    fn sink_sent_mark(&self, client: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let key = self.keys().sink_sent_mark(client);
        async move {
            let v: Option<u64> = self.c().get(key).await.map_err(err)?;
            Ok(v.unwrap_or(0))
        }
        .boxed()
    }

    fn sink_raise_sent_mark(&self, client: &str, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        let key = self.keys().sink_sent_mark(client);
        async move {
            Script::new(RAISE)
                .key(key)
                .arg(seq)
                .invoke_async::<i64>(&mut self.c())
                .await
                .map(|_| ())
                .map_err(err)
        }
        .boxed()
    }

    fn sink_outbox_depth(&self, client: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let key = self.keys().sink_outbox(client);
        async move {
            redis::cmd("XLEN")
                .arg(key)
                .query_async(&mut self.c())
                .await
                .map_err(err)
        }
        .boxed()
    }
}
