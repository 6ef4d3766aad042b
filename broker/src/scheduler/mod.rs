//! The `~timing` scheduler seam: messages held by `delay_milli` / `wait_until_time`
//! until they are due, then carried out by one node (at least once: a claim is a lease,
//! see [`CLAIM_LEASE`]; a node that dies between carrying a job out and acknowledging it
//! leaves it to run again elsewhere).
//!
//! The scheduler knows envelopes and destinations, not protocols. A held message is a
//! [`Job`]: an envelope to publish on a channel or send to an address, or a payload of a
//! protocol service that the service's [`DueHandler`] (registered at start-up, see
//! [`Handlers`]) carries out when it is due. Implementations: [`memory::MemoryScheduler`]
//! (ordered map) and [`redis::RedisScheduler`] (sorted set + hash; a Lua claim removes due
//! jobs atomically, so racing nodes never both claim one). Every node runs [`run`].

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use murmur_shared::envelope::{Address, Envelope};
use murmur_shared::ids::now_ms;
use murmur_shared::protocol::{origin_label, Protocol};
use murmur_shared::timing;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::node::Node;
use crate::store::StoreResult;

/// What to do with a held message when it is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case", from = "StoredJob")]
pub enum Job {
    /// A channel publication (Helios, API, TimeStick requests).
    Publish { env: Envelope },
    /// A directed envelope (an RPC request to a provider).
    SendTo { to: Address, env: Envelope },
    /// A payload of a protocol service (a TimeStick response, a chat message, a Sink
    /// event), carried out by the handler that protocol registered.
    Protocol { protocol: Protocol, payload: Value },
}

/// How jobs are read: as written, and as older nodes wrote protocol jobs (one tag per
/// protocol, the payload's fields beside it), so that messages held before an upgrade
/// still come due after it.
#[derive(Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
enum StoredJob {
    Publish { env: Envelope },
    SendTo { to: Address, env: Envelope },
    Protocol { protocol: Protocol, payload: Value },
    TimeStickPush(Map<String, Value>),
    ChatSend(Map<String, Value>),
    SinkEnqueue(Map<String, Value>),
}

impl From<StoredJob> for Job {
    fn from(j: StoredJob) -> Job {
        let legacy = |protocol, fields| Job::Protocol {
            protocol,
            payload: Value::Object(fields),
        };
        match j {
            StoredJob::Publish { env } => Job::Publish { env },
            StoredJob::SendTo { to, env } => Job::SendTo { to, env },
            StoredJob::Protocol { protocol, payload } => Job::Protocol { protocol, payload },
            StoredJob::TimeStickPush(f) => legacy(Protocol::TimeStick, f),
            StoredJob::ChatSend(f) => legacy(Protocol::Chat, f),
            StoredJob::SinkEnqueue(f) => legacy(Protocol::Sink, f),
        }
    }
}

impl Job {
    /// A protocol service's job: `payload` is what its handler gets back.
    pub fn protocol(protocol: Protocol, payload: &impl Serialize) -> Job {
        Job::Protocol {
            protocol,
            // unwrap: payloads are plain structs of JSON values and strings.
            payload: serde_json::to_value(payload).expect("a job payload serializes"),
        }
    }

    /// The `protocol` label of the timing metrics: the envelope's origin, or the
    /// protocol that holds the payload.
    pub fn label(&self) -> &'static str {
        match self {
            Job::Publish { env } | Job::SendTo { env, .. } => origin_label(env.from.protocol),
            Job::Protocol { protocol, .. } => protocol.label(),
        }
    }
}

/// A protocol service's part in the scheduler: carries out its payloads when due.
pub trait DueHandler: Send + Sync + 'static {
    /// The payload's `~timing` decorator, if it has one (checked for expiry first).
    fn timing<'a>(&self, payload: &'a Value) -> Option<&'a Value>;

    /// Carries the payload out.
    fn run(&self, node: Arc<Node>, payload: Value) -> DueRun;
}

/// What a [`DueHandler`] returns: the job carried out, or why not.
pub type DueRun = BoxFuture<'static, Result<(), Box<dyn std::error::Error + Send + Sync>>>;

/// The handlers of the protocol services, one per protocol, registered at start-up.
#[derive(Default)]
pub struct Handlers(Vec<(Protocol, Box<dyn DueHandler>)>);

impl Handlers {
    pub fn with(mut self, protocol: Protocol, handler: impl DueHandler) -> Self {
        self.0.retain(|(p, _)| *p != protocol);
        self.0.push((protocol, Box::new(handler)));
        self
    }

    fn get(&self, protocol: Protocol) -> Option<&dyn DueHandler> {
        self.0
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, h)| &**h)
    }
}

/// A job and when it is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub id: String,
    /// Unix ms.
    pub due_ms: i64,
    pub job: Job,
}

impl Held {
    pub fn new(due_ms: i64, job: Job) -> Self {
        Held {
            id: murmur_shared::ids::random_uuid().to_string(),
            due_ms,
            job,
        }
    }
}

/// What a claim returned: the jobs, and how many claimed records did not decode (they
/// stay leased, are counted in `murmur_store_corrupt_total{kind="scheduled_job"}` and
/// logged).
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Held>,
    pub corrupt: usize,
}

/// See the module docs.
pub trait Scheduler: Send + Sync + 'static {
    /// Keeps a job until it is due (durably in cluster mode).
    fn hold(&self, held: Held) -> BoxFuture<'_, StoreResult<()>>;
    /// Removes and returns jobs due at `now_ms`, at most `limit`; each job is returned
    /// to exactly one caller, whichever node asks.
    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, StoreResult<Claimed>>;
    /// The claimed jobs were carried out: forget them. A claimed job that is never
    /// acknowledged (its node died) returns to the schedule when its lease runs out.
    fn ack(&self, ids: Vec<String>) -> BoxFuture<'_, StoreResult<()>>;
    /// Puts jobs whose claim lease ran out (at `now_ms`) back on the schedule, due now;
    /// returns how many.
    fn reap(&self, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>>;
    /// When the earliest job is due.
    fn next_due(&self) -> BoxFuture<'_, StoreResult<Option<i64>>>;
    /// Jobs held.
    fn depth(&self) -> BoxFuture<'_, StoreResult<u64>>;
}

/// Jobs claimed per round trip.
pub const CLAIM_BATCH: usize = 256;
/// Pause between two full claim batches (≈ 25 600 releases/s per node at most).
const RELEASE_PACE: Duration = Duration::from_millis(10);
/// How long a claimed job may stay unacknowledged before another node takes it over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);
/// How often a node looks for expired claim leases.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// The longest a node sleeps between looks (other nodes may hold earlier jobs).
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Holds a job on the node's scheduler and wakes its runner.
pub async fn hold(node: &Arc<Node>, due_ms: i64, job: Job) -> StoreResult<()> {
    let protocol = job.label();
    node.scheduler().hold(Held::new(due_ms, job)).await?;
    node.metrics
        .timing
        .with_label_values(&[protocol, "held"])
        .inc();
    node.scheduler_wake.notify_one();
    Ok(())
}

/// The runner: claims due jobs and carries them out. One per node.
pub fn run(node: &Arc<Node>) {
    let weak = Arc::downgrade(node);
    actix::spawn(async move {
        let mut last_reap = tokio::time::Instant::now();
        loop {
            let Some(node) = weak.upgrade() else { break };
            let now = now_ms() as i64;
            if last_reap.elapsed() >= REAP_EVERY {
                last_reap = tokio::time::Instant::now();
                match node.scheduler().reap(now).await {
                    Ok(n) if n > 0 => warn!(jobs = n, "held messages of a lost node taken over"),
                    _ => {}
                }
            }
            match node.scheduler().claim_due(now, CLAIM_BATCH).await {
                Ok(Claimed { jobs, corrupt }) if !jobs.is_empty() || corrupt > 0 => {
                    node.metrics
                        .store_corrupt
                        .with_label_values(&["scheduled_job"])
                        .inc_by(corrupt as u64);
                    let full = jobs.len() + corrupt == CLAIM_BATCH;
                    let mut done = Vec::with_capacity(jobs.len());
                    for held in jobs {
                        execute(&node, held.job).await;
                        done.push(held.id);
                    }
                    if let Err(e) = node.scheduler().ack(done).await {
                        debug!(error = %e, "scheduler ack failed; the jobs may run again");
                    }
                    if full {
                        // More may be due right now: release them paced, so a burst
                        // of held messages due at one instant does not overrun the
                        // recipients' queues (at most CLAIM_BATCH per RELEASE_PACE).
                        tokio::time::sleep(RELEASE_PACE).await;
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "scheduler claim failed"),
            }
            if let Ok(depth) = node.scheduler().depth().await {
                node.metrics.scheduled.set(depth as i64);
            }
            let wait = match node.scheduler().next_due().await {
                Ok(Some(due)) => Duration::from_millis((due - now_ms() as i64).max(0) as u64),
                _ => LOOK_EVERY,
            }
            .min(LOOK_EVERY);
            let wake = node.scheduler_wake.clone();
            drop(node);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => {}
            }
        }
    });
}

/// Carries out a due job, unless its message expired while held.
async fn execute(node: &Arc<Node>, job: Job) {
    let protocol = job.label();
    let handler = match &job {
        Job::Protocol { protocol: p, .. } => match node.due_handlers().get(*p) {
            Some(h) => Some(h),
            None => {
                warn!(protocol, "a held message of a protocol without a handler");
                return;
            }
        },
        _ => None,
    };
    let timing = match (&job, handler) {
        (Job::Publish { env } | Job::SendTo { env, .. }, _) => env.timing.as_ref(),
        (Job::Protocol { payload, .. }, Some(h)) => h.timing(payload),
        (Job::Protocol { .. }, None) => None,
    };
    if timing::expired(timing, now_ms() as i64) {
        node.metrics
            .timing
            .with_label_values(&[protocol, "expired"])
            .inc();
        return;
    }
    node.metrics
        .timing
        .with_label_values(&[protocol, "released"])
        .inc();
    match (job, handler) {
        (Job::Publish { env }, _) => node.router.publish(env),
        (Job::SendTo { to, env }, _) => node.router.send_to(&to, Arc::new(env)),
        (Job::Protocol { payload, .. }, Some(h)) => {
            if let Err(e) = h.run(node.clone(), payload).await {
                warn!(protocol, error = %e, "a held message could not be carried out");
            }
        }
        (Job::Protocol { .. }, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protocol_jobs_round_trip_and_older_nodes_jobs_still_read() {
        let job = Job::protocol(Protocol::Chat, &json!({"session": "g1", "timing": null}));
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(
            text,
            r#"{"job":"protocol","protocol":"chat","payload":{"session":"g1","timing":null}}"#
        );
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
        for (tag, protocol) in [
            ("time_stick_push", Protocol::TimeStick),
            ("chat_send", Protocol::Chat),
            ("sink_enqueue", Protocol::Sink),
        ] {
            let old = format!(r#"{{"job":"{tag}","a":1,"b":{{"c":"d"}}}}"#);
            assert_eq!(
                serde_json::from_str::<Job>(&old).unwrap(),
                Job::Protocol {
                    protocol,
                    payload: json!({"a": 1, "b": {"c": "d"}})
                },
                "{tag}"
            );
        }
        assert!(serde_json::from_str::<Job>(r#"{"job":"teleport"}"#).is_err());
    }
}
