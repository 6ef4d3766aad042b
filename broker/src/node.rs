//! The node: one per process. Owns the registry, router, bus, store, reply slots and
//! metrics, opens sessions, serves backend calls, heartbeats into the store and drains.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Address, Body, Control, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::{now_ms, NodeId, SessionId};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::bus::{Bus, Inbound};
use crate::config::BrokerConfig;
use crate::history::LocalHistory;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::replies::Replies;
use crate::router::Router;
use crate::scheduler::{Handlers, Scheduler};
use crate::session::actor::{Attach, Kick, Replay, Restore, Resume, ResumeFrom, SessionActor};
use crate::session::{Attachment, OpenError, Protocol, SessionHandle};
use crate::store::{NodeInfo, ProviderEntry, RecoveryRecord, Store, StoreError};

/// What the protocol services hand the core at start-up: the handlers of their held
/// jobs, and their background tasks (started once the node runs).
#[derive(Default)]
pub struct Services {
    pub due: Handlers,
    pub background: Vec<Background>,
}

/// A service's background task, started once the node runs.
pub type Background = Box<dyn FnOnce(&Arc<Node>)>;

/// How long a remote provider lookup is reused.
const PROVIDER_CACHE_TTL: Duration = Duration::from_secs(1);

type ProviderCacheEntry = (std::time::Instant, Vec<ProviderEntry>);

/// Bound of the queue between the bus and the router.
const INBOUND_QUEUE: usize = 65_536;

/// Why a backend call to a session failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No such session anywhere.
    NotFound,
    /// The session did not answer in time.
    Timeout,
    /// The session went away before answering.
    Cancelled(String),
}

/// See the module docs.
pub struct Node {
    pub config: BrokerConfig,
    pub metrics: Arc<Metrics>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) router: Router,
    /// Chat delivery reports waiting for their window.
    pub chat_reports: Arc<crate::chat::reports::DeliveryReports>,
    store: Arc<dyn Store>,
    scheduler: Arc<dyn Scheduler>,
    /// What carries out the protocol services' held jobs.
    due_handlers: Handlers,
    /// Wakes the scheduler runner when a job is held (it may be due sooner).
    pub(crate) scheduler_wake: Arc<Notify>,
    replies: Arc<Replies>,
    started_ms: u64,
    draining: AtomicBool,
    drain_notify: Notify,
    /// Remote providers per namespace, cached for [`PROVIDER_CACHE_TTL`].
    provider_cache: std::sync::Mutex<std::collections::HashMap<String, ProviderCacheEntry>>,
    /// The bus was up at the last heartbeat (a false → true edge re-announces state).
    bus_was_up: AtomicBool,
}

impl Node {
    /// A node with the given bus (built around the node's inbound queue), store and
    /// scheduler, and the protocol services' parts (see [`crate::wiring`]).
    pub async fn start(
        config: BrokerConfig,
        bus: impl FnOnce(Inbound, Arc<Metrics>) -> Arc<dyn Bus>,
        store: Arc<dyn Store>,
        scheduler: Arc<dyn Scheduler>,
        history: Option<Arc<LocalHistory>>,
        services: Services,
    ) -> Arc<Node> {
        let (tx, mut rx) = mpsc::channel::<Arc<Envelope>>(INBOUND_QUEUE);
        let metrics = Arc::new(Metrics::new());
        let bus = bus(tx, metrics.clone());
        let registry = Arc::new(Registry::default());
        let replies = Arc::new(Replies::default());
        let router = Router::new(
            config.node_id.clone(),
            registry.clone(),
            bus,
            replies.clone(),
            metrics.clone(),
            history,
        );
        let node = Arc::new(Node {
            config,
            metrics,
            registry,
            router,
            chat_reports: Arc::default(),
            store,
            scheduler,
            due_handlers: services.due,
            scheduler_wake: Arc::new(Notify::new()),
            replies,
            started_ms: now_ms(),
            draining: AtomicBool::new(false),
            drain_notify: Notify::new(),
            bus_was_up: AtomicBool::new(true),
            provider_cache: std::sync::Mutex::default(),
        });
        // Inbound: everything the bus receives is dispatched by the router.
        let weak = Arc::downgrade(&node);
        actix::spawn(async move {
            while let Some(env) = rx.recv().await {
                let Some(node) = weak.upgrade() else { break };
                node.metrics
                    .bus_received
                    .with_label_values(&[kind_label(&env)])
                    .inc();
                node.router.deliver_local(env);
            }
        });
        node.heartbeat().await;
        crate::scheduler::run(&node);
        for start in services.background {
            start(&node);
        }
        let weak = Arc::downgrade(&node);
        let every = node.config.heartbeat_interval;
        actix::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else { break };
                node.heartbeat().await;
                node.prune_dead_nodes().await;
            }
        });
        node
    }

    pub fn id(&self) -> &NodeId {
        &self.config.node_id
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The `~timing` scheduler.
    pub fn due_handlers(&self) -> &Handlers {
        &self.due_handlers
    }

    pub fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.scheduler
    }

    async fn heartbeat(&self) {
        let info = self.info();
        let up = self.router.bus().is_up();
        self.metrics.bus_up.set(i64::from(up));
        if up && !self.bus_was_up.swap(true, Ordering::Relaxed) {
            // The bus (re)connected: Redis may have lost what this node announced.
            self.reannounce().await;
        } else if !up {
            self.bus_was_up.store(false, Ordering::Relaxed);
        }
        if let Err(e) = self.store.heartbeat(info, self.config.heartbeat_ttl).await {
            self.metrics
                .store_errors
                .with_label_values(&["heartbeat"])
                .inc();
            debug!(error = %e, "heartbeat failed");
        }
    }

    /// Writes the routing state of every local session to the store again: owners and
    /// provider entries (the local registry is the truth; Redis mirrors it).
    async fn reannounce(&self) {
        let store = &self.store;
        let ttl = self.config.record_refresh * 3;
        let mut failed = false;
        for (id, _) in self.registry.all() {
            failed |= store.set_owner(id, self.id().clone(), ttl).await.is_err();
        }
        for (ns, sessions) in self.registry.providers() {
            for session in sessions {
                let entry = ProviderEntry {
                    session,
                    node: self.id().clone(),
                };
                failed |= store.add_provider(&ns, entry).await.is_err();
            }
        }
        if failed {
            self.metrics
                .store_errors
                .with_label_values(&["reannounce"])
                .inc();
            // Try again at the next heartbeat.
            self.bus_was_up.store(false, Ordering::Relaxed);
        }
    }

    /// Cleans up after nodes whose heartbeat expired (their providers leave the
    /// routing table; their sessions are already unreachable since owners are checked
    /// against live nodes).
    async fn prune_dead_nodes(&self) {
        match self.store.prune_dead_nodes().await {
            Ok(dead) => {
                for id in dead {
                    warn!(node = %id, "node stopped heartbeating: removed from the cluster");
                }
            }
            Err(_) => self
                .metrics
                .store_errors
                .with_label_values(&["prune"])
                .inc(),
        }
    }

    /// This node as it announces itself.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id().clone(),
            sessions: self.registry.counts(),
            started_ms: self.started_ms,
            heartbeat_ms: now_ms(),
            draining: self.is_draining(),
        }
    }

    /// Ready for traffic: not draining and the bus connected.
    /// The bus is connected (always, for the embedded node).
    pub fn bus_up(&self) -> bool {
        self.router.bus().is_up()
    }

    /// Whether this node is one of a cluster (a Redis bus) rather than embedded.
    pub fn is_clustered(&self) -> bool {
        self.router.bus().is_clustered()
    }

    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.router.bus().is_up()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops taking new sessions (readiness turns false).
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.drain_notify.notify_waiters();
    }

    /// Draining in a cluster: long-polls and streams end early so their clients come
    /// back through another node (an embedded node has none to hand over to).
    pub fn hands_over(&self) -> bool {
        self.is_draining() && self.router.bus().is_clustered()
    }

    /// Resolves when the node starts draining (long-polls end early so their clients
    /// come back through another node).
    pub async fn drained(&self) {
        let notified = self.drain_notify.notified();
        if self.is_draining() {
            return;
        }
        notified.await;
    }

    /// Closes every local transport with 1001 in batches of `batch`, pausing `pause`
    /// between batches so clients do not all reconnect at the same instant. Recoverable
    /// sessions keep their state for recovery on another node.
    pub async fn disconnect_all_in_batches(
        &self,
        reason: &str,
        batch: usize,
        pause: Duration,
    ) -> usize {
        let all = self.registry.all();
        for (i, chunk) in all.chunks(batch.max(1)).enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            for (_, s) in chunk {
                s.addr
                    .do_send(Kick(CloseReason::new(CloseCode::GoingAway, reason)));
            }
        }
        all.len()
    }

    /// Waits (at most `timeout`) until the bus has written everything it accepted.
    pub async fn flush_bus(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.router.bus().pending() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Leaves the cluster: removes this node's heartbeat and providers from the store.
    pub async fn shutdown(&self) {
        if let Err(e) = self.store.remove_node(self.id().clone()).await {
            warn!(error = %e, "could not remove node from the store");
        }
    }

    /// Opens a fresh session for `user`, attached to a new transport.
    pub async fn open(
        self: &Arc<Self>,
        user: &str,
        protocol: Protocol,
        recoverable: bool,
    ) -> Result<(SessionHandle, Attachment), OpenError> {
        if self.is_draining() {
            return Err(OpenError::Draining);
        }
        let id = SessionId::random();
        let handle = self.spawn_session(id, user, protocol, recoverable);
        let attachment = handle
            .addr
            .send(Attach)
            .await
            .map_err(|_| OpenError::NotFound)?;
        Ok((handle, attachment))
    }

    fn spawn_session(
        self: &Arc<Self>,
        id: SessionId,
        user: &str,
        protocol: Protocol,
        recoverable: bool,
    ) -> SessionHandle {
        let user: Arc<str> = Arc::from(user);
        let actor = SessionActor::new(self.clone(), id, user.clone(), protocol, recoverable);
        let addr = actor.start();
        SessionHandle {
            id,
            user,
            protocol,
            addr,
            node: self.clone(),
        }
    }

    /// Resumes a recoverable session by id: the local actor if it lives here, else a
    /// new actor restored from the store's recovery record (its old node, if alive, is
    /// told to let go). `user`, when given, must be the session's user.
    ///
    /// Either way, every channel publication after the last one written to the client
    /// is replayed from channel history, once and in order, before live traffic resumes;
    /// when history no longer covers that gap (or the session could not keep what was
    /// meant for it) the recovery fails with [`OpenError::Unrecoverable`] and the reason,
    /// and the session ends.
    pub async fn recover(
        self: &Arc<Self>,
        id: SessionId,
        user: Option<&str>,
        protocol: Protocol,
    ) -> Result<(SessionHandle, Attachment, u64), OpenError> {
        if self.is_draining() {
            return Err(OpenError::Draining);
        }
        let record = self
            .store
            .get_recovery(id)
            .await
            .map_err(OpenError::Store)?;
        let (handle, from) = match self.registry.get(id) {
            Some(local) => {
                if user.is_some_and(|u| u != &*local.user) {
                    return Err(OpenError::WrongUser);
                }
                let handle = SessionHandle {
                    id,
                    user: local.user.clone(),
                    protocol: local.protocol,
                    addr: local.addr.clone(),
                    node: self.clone(),
                };
                let from = local
                    .addr
                    .send(Resume)
                    .await
                    .map_err(|_| OpenError::NotFound)?
                    .map_err(OpenError::Unrecoverable)?;
                (handle, from)
            }
            None => {
                let record: RecoveryRecord = record.ok_or(OpenError::NotFound)?;
                if user.is_some_and(|u| u != record.user) {
                    return Err(OpenError::WrongUser);
                }
                self.take_over(id, &record.node);
                let handle = self.spawn_session(id, &record.user, protocol, true);
                let from = ResumeFrom {
                    subscriptions: record.subscriptions.clone(),
                    positions: record.positions.clone(),
                    seqs: record.seqs.clone(),
                    detached_ms: record.detached_ms,
                };
                handle
                    .addr
                    .send(Restore {
                        subscriptions: record.subscriptions,
                        provides: record.provides,
                        positions: record.positions,
                        seqs: record.seqs,
                    })
                    .await
                    .map_err(|_| OpenError::NotFound)?;
                (handle, from)
            }
        };
        let missed = match self.missed_publications(&from).await {
            Ok(missed) => missed,
            Err(reason) => {
                warn!(session = %id, %reason, "recovery refused");
                handle.end(CloseReason::new(CloseCode::Terminated, reason.clone()));
                return Err(OpenError::Unrecoverable(reason));
            }
        };
        handle
            .addr
            .send(Replay(missed))
            .await
            .map_err(|_| OpenError::NotFound)?;
        let attachment = handle
            .addr
            .send(Attach)
            .await
            .map_err(|_| OpenError::NotFound)?;
        // Routable cluster-wide before the client hears `connection:recovered`.
        let _ = handle.announce_provides().await;
        Ok((handle, attachment, from.detached_ms))
    }

    /// Tells the previous owner (if it is alive) to let go of its copy of a session.
    fn take_over(&self, id: SessionId, owner: &NodeId) {
        if owner == self.id() {
            return;
        }
        let takeover = Envelope::new(
            self.id(),
            Kind::Control,
            Destination::Session(id),
            // unwrap: serializing a unit-like enum cannot fail.
            Body::Json(serde_json::to_value(Control::Takeover).unwrap()),
        );
        self.router.send_to(
            &Address {
                node: owner.clone(),
                to: Destination::Session(id),
            },
            Arc::new(takeover),
        );
    }

    /// Every publication after `from`'s positions on its channels, oldest first per
    /// channel, or why they cannot all be had: the channel's history lost some (trimmed
    /// or expired), more than `recovery_replay_max` are missing, or the store failed.
    async fn missed_publications(&self, from: &ResumeFrom) -> Result<Vec<Envelope>, String> {
        const PAGE: usize = 1000;
        let max = self.config.recovery_replay_max;
        let mut out = Vec::new();
        for ch in &from.subscriptions {
            let mut after = from
                .positions
                .get(ch)
                .cloned()
                .unwrap_or_else(|| format!("{}-0", from.detached_ms));
            let mut first = true;
            loop {
                let page = self.store.history(ch, &after, PAGE).await.map_err(|e| {
                    self.metrics
                        .store_errors
                        .with_label_values(&["history"])
                        .inc();
                    format!("channel history unavailable: {e}")
                })?;
                if first {
                    first = false;
                    let next = page.first().and_then(|e| e.chan_seq.as_ref());
                    let last = from.seqs.get(ch);
                    // Nothing written yet on this channel: what it missed starts at the
                    // channel's first publication (seq 1) unless history lost some.
                    let unseen = last.is_none() && !from.positions.contains_key(ch);
                    let gap = match (last, next) {
                        (Some(last), Some(next)) => !last.continued_by(next),
                        (None, Some(next)) => unseen && next.seq != 1,
                        (_, None) => false,
                    };
                    if gap {
                        let after = last.map_or(0, |l| l.seq);
                        return Err(format!(
                            "channel {ch:?}: publications after seq {after} are no longer in \
                             its history"
                        ));
                    }
                }
                let full = page.len() == PAGE;
                if let Some(last) = page.last().and_then(|e| e.seq.clone()) {
                    after = last;
                }
                out.extend(page);
                if out.len() > max {
                    return Err(format!(
                        "more than {max} publications were missed; too many to replay"
                    ));
                }
                if !full {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A channel publication accepted by this node now.
    fn publication(
        &self,
        channel: &str,
        data: Value,
        timing: Option<Value>,
        from: Origin,
    ) -> Envelope {
        Envelope::new(
            self.id(),
            Kind::Notification,
            Destination::Channel(channel.to_string()),
            Body::Json(data),
        )
        .from(from)
        .timing(timing)
    }

    /// Publishes on a channel; returns the message id.
    pub fn publish(&self, channel: &str, data: Value, timing: Option<Value>, from: Origin) -> Uuid {
        let env = self.publication(channel, data, timing, from);
        let id = env.id;
        self.router.publish(env);
        id
    }

    /// Publishes on a channel now, or holds the publication until `deliver_at`.
    pub async fn publish_at(
        self: &Arc<Self>,
        channel: &str,
        data: Value,
        timing: Option<Value>,
        from: Origin,
        deliver_at: Option<i64>,
    ) -> Result<Uuid, crate::store::StoreError> {
        let Some(due) = deliver_at else {
            return Ok(self.publish(channel, data, timing, from));
        };
        let env = self.publication(channel, data, timing, from);
        let id = env.id;
        crate::scheduler::hold(self, due, crate::scheduler::Job::Publish { env }).await?;
        Ok(id)
    }

    /// The node a session lives on, if it is alive anywhere.
    pub async fn locate(&self, id: SessionId) -> Option<NodeId> {
        if self.registry.get(id).is_some() {
            return Some(self.id().clone());
        }
        let owner = self.store.get_owner(id).await.ok().flatten()?;
        let alive = self
            .store
            .nodes()
            .await
            .ok()?
            .into_iter()
            .any(|n| n.id == owner);
        alive.then_some(owner)
    }

    /// A provider of a namespace: a local one first, else one on another live node.
    pub async fn pick_provider(&self, ns: &str) -> Option<Address> {
        if let Some(id) = self.registry.pick_provider(ns) {
            return Some(Address {
                node: self.id().clone(),
                to: Destination::Session(id),
            });
        }
        let remote = self.remote_providers(ns).await?;
        let p = &remote[(now_ms() as usize) % remote.len()];
        Some(Address {
            node: p.node.clone(),
            to: Destination::Session(p.session),
        })
    }

    /// Providers of `ns` on other nodes, from a short-lived cache (so a busy caller does
    /// not read Redis on every call). Only non-empty answers are cached: a new provider is
    /// found at once when there was none. A cached provider that stopped providing answers
    /// `METHOD_NOT_FOUND` itself (see `SessionActor::on_request`).
    async fn remote_providers(&self, ns: &str) -> Option<Vec<ProviderEntry>> {
        {
            // unwrap: plain map operations under the lock.
            let cache = self.provider_cache.lock().unwrap();
            if let Some((at, list)) = cache.get(ns) {
                if at.elapsed() < PROVIDER_CACHE_TTL {
                    return Some(list.clone());
                }
            }
        }
        let remote: Vec<ProviderEntry> = self
            .store
            .providers(ns)
            .await
            .ok()?
            .into_iter()
            .filter(|p| p.node != *self.id())
            .collect();
        // unwrap: plain map operations under the lock.
        let mut cache = self.provider_cache.lock().unwrap();
        if remote.is_empty() {
            cache.remove(ns);
            return None;
        }
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(ns.to_string(), (std::time::Instant::now(), remote.clone()));
        Some(remote)
    }

    /// Sends a request from the backend to one session's client and waits for its answer.
    pub async fn request(
        &self,
        id: SessionId,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Arc<Envelope>, RequestError> {
        let owner = self.locate(id).await.ok_or(RequestError::NotFound)?;
        let mut slot = self.replies.open();
        let reply_to = Address {
            node: self.id().clone(),
            to: Destination::Reply(slot.id),
        };
        let target = Address {
            node: owner,
            to: Destination::Session(id),
        };
        let env = Envelope::new(
            self.id(),
            Kind::Request,
            target.to.clone(),
            Body::Json(payload),
        )
        .from(Origin::default())
        .reply_to(reply_to.clone())
        .correlation(slot.id.to_string())
        .subject(method);
        self.router.send_to(&target, Arc::new(env));
        match tokio::time::timeout(timeout, slot.wait()).await {
            Ok(Some(answer)) => match &answer.body {
                Body::Error(e) if e.code == "REQUEST_CANCELLED" => {
                    Err(RequestError::Cancelled(e.message.clone()))
                }
                _ => Ok(answer),
            },
            Ok(None) => Err(RequestError::Cancelled("reply slot closed".into())),
            Err(_) => {
                let cancel = Envelope::new(
                    self.id(),
                    Kind::Control,
                    target.to.clone(),
                    // unwrap: serializing a unit-like enum cannot fail.
                    Body::Json(serde_json::to_value(Control::Cancel).unwrap()),
                )
                .reply_to(reply_to)
                .correlation(slot.id.to_string());
                self.router.send_to(&target, Arc::new(cancel));
                Err(RequestError::Timeout)
            }
        }
    }

    /// Live nodes of the cluster (this one alone in embedded mode).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        self.store.nodes().await
    }
}

fn kind_label(env: &Envelope) -> &'static str {
    match env.to {
        Destination::Channel(_) => "channel",
        _ => "direct",
    }
}
