//! The `~timing` scheduler seam: messages held by `delay_milli` / `wait_until_time`
//! until they are due, then delivered exactly once by exactly one node.
//!
//! A held message is a [`Job`]: what to do when it is due (publish on a channel, send
//! to an address, queue for a TimeStick session, broadcast a chat message, queue a
//! Sink outbox event). Implementations: [`memory::MemoryScheduler`] (ordered map) and
//! [`redis::RedisScheduler`] (sorted set + hash; a Lua claim removes due jobs
//! atomically, so racing nodes never both run one). Every node runs [`run`].

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use murmur_shared::envelope::{Address, Envelope};
use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::timing;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, warn};

use crate::node::Node;
use crate::store::sink::OutboxEntry;
use crate::store::StoreResult;

/// What to do with a held message when it is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    /// A channel publication (Helios, API, TimeStick requests).
    Publish { env: Envelope },
    /// A directed envelope (an RPC request to a provider).
    SendTo { to: Address, env: Envelope },
    /// A message for a TimeStick session's queue (a response).
    TimeStickPush { session: SessionId, msg: Value },
    /// A chat message: stored in history and broadcast when due.
    ChatSend {
        session: String,
        sender: String,
        message: Value,
        sender_timestamp: Value,
        timing: Option<Value>,
    },
    /// A Sink outbox event (its offset already assigned).
    SinkEnqueue { client: String, entry: OutboxEntry },
}

impl Job {
    /// The protocol label for metrics.
    pub fn protocol(&self) -> &'static str {
        match self {
            Job::Publish { env } | Job::SendTo { env, .. } => match env.from.protocol.as_deref() {
                Some("helios") => "helios",
                Some("timestick") => "timestick",
                _ => "api",
            },
            Job::TimeStickPush { .. } => "timestick",
            Job::ChatSend { .. } => "chat",
            Job::SinkEnqueue { .. } => "sink",
        }
    }

    /// The job's `~timing` decorator.
    pub fn timing(&self) -> Option<&Value> {
        match self {
            Job::Publish { env } | Job::SendTo { env, .. } => env.timing.as_ref(),
            Job::TimeStickPush { msg, .. } => msg.get("~timing"),
            Job::ChatSend { timing, .. } => timing.as_ref(),
            Job::SinkEnqueue { entry, .. } => entry.timing.as_ref(),
        }
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
            id: uuid::Uuid::new_v4().to_string(),
            due_ms,
            job,
        }
    }
}

/// See the module docs.
pub trait Scheduler: Send + Sync + 'static {
    /// Keeps a job until it is due (durably in cluster mode).
    fn hold(&self, held: Held) -> BoxFuture<'_, StoreResult<()>>;
    /// Removes and returns jobs due at `now_ms`, at most `limit`; each job is returned
    /// to exactly one caller, whichever node asks.
    fn claim_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<Held>>>;
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
    let protocol = job.protocol();
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
                Ok(jobs) if !jobs.is_empty() => {
                    let full = jobs.len() == CLAIM_BATCH;
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
    let protocol = job.protocol();
    let now = now_ms() as i64;
    if timing::expired(job.timing(), now) {
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
    match job {
        Job::Publish { env } => node.router.publish(env),
        Job::SendTo { to, env } => node.router.send_to(&to, Arc::new(env)),
        Job::TimeStickPush { session, msg } => {
            if let Err(e) = crate::timestick::push_held(node, session, msg).await {
                warn!(
                    status = e.status,
                    "held TimeStick message could not be queued"
                );
            }
        }
        Job::ChatSend {
            session,
            sender,
            message,
            sender_timestamp,
            timing,
        } => {
            let sent = crate::chat::deliver(
                node,
                &session,
                &sender,
                message,
                sender_timestamp,
                timing,
                crate::chat::Sent::Held,
            )
            .await;
            if let Err(e) = sent {
                warn!(error = %e, "held chat message could not be delivered");
            }
        }
        Job::SinkEnqueue { client, entry } => {
            if let Err(e) = crate::sink::enqueue_entry(node, &client, entry).await {
                warn!(error = %e, "held Sink event could not be queued");
            }
        }
    }
}
