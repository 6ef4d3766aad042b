//! The Redis bus (cluster mode): PUBLISH/SUBSCRIBE.
//!
//! * Directed deliveries: `PUBLISH <prefix>node:<id> <envelope>`.
//! * Channel publications: one Lua call numbers the publication in its channel
//!   (`ChannelSeq`: seq and epoch, in `<prefix>chseq:<channel>`), appends it to the
//!   channel's history stream (`XADD … MAXLEN ~ N`, expiring with the history TTL) and
//!   publishes `<stream id> <seq> <epoch> <envelope>` on `<prefix>ch:<channel>`. Every node — the origin too —
//!   delivers what it receives, so all subscribers see one order, and each delivered
//!   publication carries its stream id (`seq`) for exact recovery replay.
//! * Publishing never waits: envelopes go into a bounded queue drained by one writer
//!   task that pipelines up to [`BATCH`] commands per round trip. While Redis is away
//!   `publish` answers `Down` at once (nothing is buffered), a full queue `Full`.
//! * One subscriber connection. The set of wanted channels mirrors the registry;
//!   after every reconnect it is replayed in full (the registry is the truth).
//! * Both tasks reconnect with capped exponential backoff; `is_up` is true only while
//!   both connections work.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::StreamExt;
use murmur_shared::channel::INTERNAL_PREFIX;
use murmur_shared::envelope::Envelope;
use murmur_shared::ids::NodeId;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{info, warn};

use super::{Bus, BusError, Inbound, Settle, Topic};
use crate::history::HistoryLimits;
use crate::keys::Keys;
use crate::metrics::Metrics;

/// Commands pipelined per round trip at most.
pub const BATCH: usize = 512;
/// Outgoing queue bound.
pub const OUT_QUEUE: usize = 65_536;
/// How often an idle connection is pinged (liveness while nothing flows).
const PING_EVERY: Duration = Duration::from_secs(1);
/// Timeouts of one Redis command and of connecting.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Prefix of a channel publication that has no history position.
const NO_SEQ: &[u8] = b"- ";

/// A channel publication in Lua, `publish_on(history, channel, seq hash, envelope, kept,
/// ttl ms)`: numbers the publication in its channel, appends it to the history stream
/// and publishes `<id> <seq> <epoch> <envelope>`; returns the stream id. A missing
/// sequence hash starts a new epoch and drops whatever stream is left, so a stream only
/// ever holds one epoch. Shared with the scripts that publish as part of a store change
/// (TimeStick's POST), so every publication is numbered and framed the same way.
pub(crate) const PUBLISH_FN: &str = r#"
local function publish_on(hist, chan, seqkey, payload, kept, ttl)
  local ep = redis.call('HGET', seqkey, 'p')
  if not ep then
    redis.call('DEL', hist)
    local t = redis.call('TIME')
    ep = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('HSET', seqkey, 'p', ep)
  end
  local n = redis.call('HINCRBY', seqkey, 'n', 1)
  local id = redis.call('XADD', hist, 'MAXLEN', '~', kept, '*', 'e', payload, 'n', n, 'p', ep)
  redis.call('PEXPIRE', hist, ttl)
  redis.call('PEXPIRE', seqkey, ttl)
  redis.call('PUBLISH', chan, id .. ' ' .. n .. ' ' .. ep .. ' ' .. payload)
  return id
end
"#;

/// [`PUBLISH_FN`] as a script. KEYS: history stream, pub/sub channel, sequence hash and,
/// to settle with the publication ([`Settle`]), the hash. ARGV: envelope, kept, ttl ms
/// and the field to delete.
static PUBLISH_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{PUBLISH_FN}{}",
        r#"
local id = publish_on(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
if KEYS[4] then redis.call('HDEL', KEYS[4], ARGV[4]) end
return id
"#
    )
});

enum Outgoing {
    Direct {
        key: String,
        payload: Vec<u8>,
    },
    Channel {
        /// The history stream and sequence hash; `None` for the broker's internal
        /// channels (chat inboxes): no history kept.
        history: Option<(String, String)>,
        key: String,
        payload: Vec<u8>,
        /// For [`Bus::publish_confirmed`]: deleted after the publication, and told
        /// whether the pipeline was written.
        confirm: Option<Confirm>,
    },
}

/// A publisher waiting for its publication to be written.
struct Confirm {
    settle: Option<Settle>,
    written: oneshot::Sender<bool>,
}

struct Shared {
    keys: Keys,
    node: NodeId,
    wanted: Mutex<HashSet<String>>,
    /// Channels Redis has confirmed; bumped version wakes `wait_subscribed`.
    active: Mutex<HashSet<String>>,
    active_version: watch::Sender<u64>,
    changed: Notify,
    /// The subscriber lost Redis: the writer's connection is suspect too, reconnect it.
    writer_reset: Notify,
    /// Bumped by the subscriber on every loss; a writer connection opened before the
    /// latest loss is not trusted with a batch.
    losses: std::sync::atomic::AtomicU64,
    pub_up: AtomicBool,
    /// Accepted by `publish`, not yet written (or dropped) by the writer.
    pending: std::sync::atomic::AtomicUsize,
    sub_up: AtomicBool,
    metrics: Arc<Metrics>,
    history_ttl_ms: u64,
    /// Publications kept per channel (approximate, `MAXLEN ~`).
    history_len: usize,
}

/// See the module docs.
pub struct RedisBus {
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
}

fn conn_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT))
}

/// Capped exponential backoff: 100 ms, 200 ms, … 2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(5)).min(2000))
}

impl RedisBus {
    /// Starts the writer and subscriber tasks (on the current runtime) and returns at
    /// once; the bus reports `is_up` when both are connected.
    pub fn start(
        url: &str,
        keys: Keys,
        node: NodeId,
        inbound: Inbound,
        metrics: Arc<Metrics>,
        history: HistoryLimits,
    ) -> Result<Self, crate::setup::SetupError> {
        let client =
            Client::open(url).map_err(|e| crate::setup::SetupError::redis_url("bus", e))?;
        let shared = Arc::new(Shared {
            keys,
            node,
            wanted: Mutex::new(HashSet::new()),
            active: Mutex::new(HashSet::new()),
            active_version: watch::channel(0).0,
            changed: Notify::new(),
            writer_reset: Notify::new(),
            losses: std::sync::atomic::AtomicU64::new(0),
            pub_up: AtomicBool::new(false),
            pending: std::sync::atomic::AtomicUsize::new(0),
            sub_up: AtomicBool::new(false),
            metrics,
            history_ttl_ms: history.ttl.as_millis() as u64,
            history_len: history.len.max(1),
        });
        let (out, rx) = mpsc::channel(OUT_QUEUE);
        tokio::spawn(writer(client.clone(), shared.clone(), rx));
        tokio::spawn(subscriber(client, shared.clone(), inbound));
        Ok(RedisBus { shared, out })
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // unwrap: the lock guards plain set operations only.
        self.shared.wanted.lock().unwrap()
    }
}

impl RedisBus {
    /// Queues `topic`'s envelope for the writer.
    fn enqueue(
        &self,
        topic: Topic,
        env: &Envelope,
        confirm: Option<Confirm>,
    ) -> Result<(), BusError> {
        // Either connection down means Redis is away: refuse at once, buffer nothing.
        if !self.is_up() {
            return Err(BusError::Down);
        }
        let payload = env.to_bytes();
        let keys = &self.shared.keys;
        let msg = match topic {
            Topic::Node(node) => Outgoing::Direct {
                key: keys.node_inbox(&node),
                payload,
            },
            Topic::Channel(ch) => Outgoing::Channel {
                history: (!ch.starts_with(INTERNAL_PREFIX))
                    .then(|| (keys.history(&ch), keys.channel_seq(&ch))),
                key: keys.channel(&ch),
                payload,
                confirm,
            },
        };
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        self.out.try_send(msg).map_err(|e| {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::error::TrySendError::Full(_) => BusError::Full,
                mpsc::error::TrySendError::Closed(_) => BusError::Down,
            }
        })
    }
}

impl Bus for RedisBus {
    fn publish(&self, topic: Topic, env: Arc<Envelope>) -> Result<(), BusError> {
        self.enqueue(topic, &env, None)
    }

    /// Directed topics are not confirmed: the envelope is queued and `Ok(false)`
    /// answered at once.
    fn publish_confirmed(
        &self,
        topic: Topic,
        env: Arc<Envelope>,
        settle: Option<Settle>,
    ) -> BoxFuture<'static, Result<bool, BusError>> {
        if matches!(topic, Topic::Node(_)) {
            let queued = self.enqueue(topic, &env, None).map(|()| false);
            return std::future::ready(queued).boxed();
        }
        let settles = settle.is_some();
        let (written, rx) = oneshot::channel();
        let queued = self.enqueue(topic, &env, Some(Confirm { settle, written }));
        async move {
            queued?;
            match rx.await {
                Ok(true) => Ok(settles),
                // Not written (Redis failed the pipeline) or the writer is gone.
                Ok(false) | Err(_) => Err(BusError::Down),
            }
        }
        .boxed()
    }

    fn subscribe(&self, channel: &str) {
        if self.wanted().insert(self.shared.keys.channel(channel)) {
            self.shared.changed.notify_one();
        }
    }

    fn wait_subscribed(&self, channel: &str, timeout: Duration) -> BoxFuture<'static, bool> {
        let shared = self.shared.clone();
        let key = self.shared.keys.channel(channel);
        async move {
            let mut version = shared.active_version.subscribe();
            let wait = async {
                loop {
                    // unwrap: plain set operations under the lock.
                    if shared.active.lock().unwrap().contains(&key) {
                        return true;
                    }
                    if version.changed().await.is_err() {
                        return false;
                    }
                }
            };
            tokio::time::timeout(timeout, wait).await.unwrap_or(false)
        }
        .boxed()
    }

    fn unsubscribe(&self, channel: &str) {
        if self.wanted().remove(&self.shared.keys.channel(channel)) {
            self.shared.changed.notify_one();
        }
    }

    fn is_up(&self) -> bool {
        self.shared.pub_up.load(Ordering::Relaxed) && self.shared.sub_up.load(Ordering::Relaxed)
    }

    fn is_clustered(&self) -> bool {
        true
    }

    fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }
}

fn set_up(shared: &Shared, flag: &AtomicBool, up: bool) {
    flag.store(up, Ordering::Relaxed);
    let both = shared.pub_up.load(Ordering::Relaxed) && shared.sub_up.load(Ordering::Relaxed);
    shared.metrics.bus_up.set(i64::from(both));
}

/// Counts a failed connection attempt, warns on the first of a series, and waits the
/// backoff before the next attempt.
async fn unreachable_retry(shared: &Shared, who: &str, e: &redis::RedisError, attempt: &mut u32) {
    shared
        .metrics
        .bus_errors
        .with_label_values(&["connection"])
        .inc();
    if *attempt == 0 {
        warn!(error = %e, "bus {who} cannot reach Redis; retrying");
    }
    tokio::time::sleep(backoff(*attempt)).await;
    *attempt += 1;
}

/// The writer: connects, loads the script, and pipelines the outgoing queue.
async fn writer(client: Client, shared: Arc<Shared>, mut rx: mpsc::Receiver<Outgoing>) {
    let script = redis::Script::new(&PUBLISH_SCRIPT);
    let mut attempt = 0;
    // Taken from the queue but not yet written: survives a reconnect.
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let epoch = shared.losses.load(Ordering::SeqCst);
        let conn = client
            .get_multiplexed_async_connection_with_config(&conn_config())
            .await;
        let mut conn: MultiplexedConnection = match conn {
            Ok(c) => c,
            Err(e) => {
                unreachable_retry(&shared, "writer", &e, &mut attempt).await;
                continue;
            }
        };
        let loaded: redis::RedisResult<String> = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(PUBLISH_SCRIPT.as_str())
            .query_async(&mut conn)
            .await;
        if loaded.is_err() {
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        attempt = 0;
        set_up(&shared, &shared.pub_up, true);
        let reason = write_loop(
            &mut conn,
            &shared,
            &mut rx,
            &mut batch,
            script.get_hash(),
            epoch,
        )
        .await;
        set_up(&shared, &shared.pub_up, false);
        shared
            .metrics
            .bus_errors
            .with_label_values(&["connection"])
            .inc();
        warn!(error = %reason, "bus writer lost Redis; reconnecting");
        // What is still queued was accepted while Redis was up: it goes out on the
        // next connection (the queue is bounded, and `publish` refuses while down).
    }
}

async fn write_loop(
    conn: &mut MultiplexedConnection,
    shared: &Shared,
    rx: &mut mpsc::Receiver<Outgoing>,
    batch: &mut Vec<Outgoing>,
    script_hash: &str,
    epoch: u64,
) -> redis::RedisError {
    let mut ping = tokio::time::interval(PING_EVERY);
    let suspect = || redis::RedisError::from((redis::ErrorKind::Io, "subscriber lost Redis"));
    loop {
        if batch.is_empty() {
            tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => batch.push(m),
                None => std::future::pending::<()>().await,
            },
            _ = ping.tick() => {
                if let Err(e) = redis::cmd("PING").query_async::<()>(conn).await {
                    return e;
                }
                continue;
            }
            _ = shared.writer_reset.notified() => return suspect(),
            }
        }
        if shared.losses.load(Ordering::SeqCst) != epoch {
            // Redis went away since this connection opened: write on a fresh one.
            return suspect();
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let n = batch.len();
        let mut pipe = redis::pipe();
        let mut confirms = Vec::new();
        for m in batch.drain(..) {
            match m {
                Outgoing::Direct { key, payload } => {
                    pipe.cmd("PUBLISH").arg(key).arg(payload).ignore();
                }
                Outgoing::Channel {
                    history,
                    key,
                    payload,
                    confirm,
                } => {
                    let (settle, written) = match confirm {
                        Some(Confirm { settle, written }) => (settle, Some(written)),
                        None => (None, None),
                    };
                    match history {
                        // The settle in the same script: never settled unpublished.
                        Some((history, seq)) => {
                            let cmd = pipe.cmd("EVALSHA").arg(script_hash);
                            match &settle {
                                Some(_) => cmd.arg(4),
                                None => cmd.arg(3),
                            };
                            cmd.arg(history).arg(key).arg(seq);
                            if let Some(Settle { hash, .. }) = &settle {
                                cmd.arg(hash);
                            }
                            cmd.arg(payload)
                                .arg(shared.history_len)
                                .arg(shared.history_ttl_ms);
                            if let Some(Settle { field, .. }) = &settle {
                                cmd.arg(field);
                            }
                            cmd.ignore();
                        }
                        None => {
                            let mut framed = Vec::with_capacity(payload.len() + 2);
                            framed.extend_from_slice(NO_SEQ);
                            framed.extend_from_slice(&payload);
                            pipe.cmd("PUBLISH").arg(key).arg(framed).ignore();
                            if let Some(Settle { hash, field }) = &settle {
                                pipe.cmd("HDEL").arg(hash).arg(field).ignore();
                            }
                        }
                    }
                    confirms.extend(written);
                }
            }
        }
        let written = pipe.query_async::<()>(conn).await;
        shared.pending.fetch_sub(n, Ordering::Relaxed);
        for c in confirms {
            // A publisher that stopped waiting is no loss.
            let _ = c.send(written.is_ok());
        }
        if let Err(e) = written {
            shared
                .metrics
                .bus_errors
                .with_label_values(&["publish"])
                .inc_by(n as u64);
            return e;
        }
    }
}

/// The subscriber: one pub/sub connection, the node inbox plus every wanted channel.
async fn subscriber(client: Client, shared: Arc<Shared>, inbound: Inbound) {
    let inbox = shared.keys.node_inbox(&shared.node);
    let channel_prefix = shared.keys.channel_prefix();
    let mut attempt = 0;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                unreachable_retry(&shared, "subscriber", &e, &mut attempt).await;
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        if sink.subscribe(&inbox).await.is_err() {
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
            continue;
        }
        attempt = 0;
        let mut current: HashSet<String> = HashSet::new();
        let mut ping = tokio::time::interval(PING_EVERY);
        // Wake the first sync at once: replay every wanted channel.
        shared.changed.notify_one();
        let mut synced = false;
        let reason: String = loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break "connection closed".into() };
                    receive(&shared, &inbound, &channel_prefix, msg.get_channel_name(), msg.get_payload_bytes());
                }
                _ = shared.changed.notified() => {
                    let wanted: HashSet<String> = {
                        // unwrap: plain set operations under the lock.
                        shared.wanted.lock().unwrap().clone()
                    };
                    let add: Vec<&String> = wanted.difference(&current).collect();
                    let remove: Vec<&String> = current.difference(&wanted).collect();
                    if !add.is_empty() {
                        if let Err(e) = sink.subscribe(&add).await {
                            break e.to_string();
                        }
                    }
                    if !remove.is_empty() {
                        if let Err(e) = sink.unsubscribe(&remove).await {
                            break e.to_string();
                        }
                    }
                    {
                        // unwrap: plain set operations under the lock.
                        let mut active = shared.active.lock().unwrap();
                        active.clone_from(&wanted);
                    }
                    shared.active_version.send_modify(|v| *v += 1);
                    current = wanted;
                    if !synced {
                        synced = true;
                        set_up(&shared, &shared.sub_up, true);
                        info!(channels = current.len(), "bus subscribed");
                    }
                }
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(IO_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break "ping failed".into();
                    }
                }
            }
        };
        set_up(&shared, &shared.sub_up, false);
        shared.losses.fetch_add(1, Ordering::SeqCst);
        shared.writer_reset.notify_waiters();
        shared
            .metrics
            .bus_errors
            .with_label_values(&["connection"])
            .inc();
        warn!(reason, "bus subscriber lost Redis; reconnecting");
        tokio::time::sleep(backoff(0)).await;
    }
}

/// Decodes one pub/sub message and hands it to the router's inbound queue.
fn receive(
    shared: &Shared,
    inbound: &Inbound,
    channel_prefix: &str,
    channel: &str,
    payload: &[u8],
) {
    let decoded = if channel.starts_with(channel_prefix) {
        Envelope::from_channel_payload(payload)
    } else {
        Envelope::from_bytes(payload).ok()
    };
    let Some(env) = decoded else {
        shared
            .metrics
            .bus_errors
            .with_label_values(&["decode"])
            .inc();
        return;
    };
    if inbound.try_send(Arc::new(env)).is_err() {
        shared
            .metrics
            .bus_errors
            .with_label_values(&["dropped"])
            .inc();
    }
}
