//! The node: one per process. Owns the registry, router, bus, store, scheduler, reply
//! slots and metrics. Each of its jobs has a module:
//!
//! | module | job |
//! |---|---|
//! | this one | the node itself: its parts, start-up, accessors |
//! | `membership` | heartbeats, re-announce after a bus outage, pruning dead nodes, the node list |
//! | `drain` | drain and shutdown |
//! | `sessions` | opening and recovering sessions |
//! | `routing` | publications, provider lookup, backend calls to sessions |
//!
//! Building a node with the protocol services plugged in is [`crate::wiring`]'s job.

mod drain;
mod membership;
mod routing;
mod sessions;

pub use routing::RequestError;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use murmur_shared::envelope::{Destination, Envelope};
use murmur_shared::ids::{now_ms, NodeId};
use tokio::sync::{mpsc, Notify};

use crate::bus::{Bus, Inbound};
use crate::config::BrokerConfig;
use crate::history::LocalHistory;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::replies::Replies;
use crate::router::Router;
use crate::scheduler::{Handlers, Scheduler};
use crate::store::{ProviderEntry, Store};

/// Lost-node notices a slow listener may fall behind by (see [`Node::lost_nodes`]).
const LOST_NODES: usize = 64;

/// What the protocol services hand the core at start-up: the handlers of their held
/// jobs, and their background tasks (started once the node runs).
#[derive(Default)]
pub struct Services {
    pub due: Handlers,
    pub background: Vec<Background>,
    pub extensions: Extensions,
}

/// Per-node state of the protocol services, one value per type (e.g. chat's delivery
/// report aggregator), put in by the wiring at start-up. The core holds it without
/// knowing what it is.
#[derive(Default)]
pub struct Extensions(Vec<Box<dyn std::any::Any + Send + Sync>>);

impl Extensions {
    pub fn with<T: std::any::Any + Send + Sync>(mut self, value: T) -> Self {
        self.0.push(Box::new(Arc::new(value)));
        self
    }

    /// Looked up per delivery on some paths: no reference count is touched.
    fn get<T: std::any::Any + Send + Sync>(&self) -> Option<&Arc<T>> {
        self.0.iter().find_map(|v| v.downcast_ref::<Arc<T>>())
    }
}

/// A service's background task, started once the node runs.
pub type Background = Box<dyn FnOnce(&Arc<Node>)>;

/// How long a remote provider lookup is reused.
const PROVIDER_CACHE_TTL: Duration = Duration::from_secs(1);

type ProviderCacheEntry = (std::time::Instant, Vec<ProviderEntry>);

/// Bound of the queue between the bus and the router.
const INBOUND_QUEUE: usize = 65_536;

/// See the module docs.
pub struct Node {
    pub config: BrokerConfig,
    pub metrics: Arc<Metrics>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) router: Router,
    /// The protocol services' own per-node state (see [`Extensions`]).
    extensions: Extensions,
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
    /// Nodes this node found dead (their heartbeat expired) and pruned.
    lost: tokio::sync::broadcast::Sender<NodeId>,
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
            extensions: services.extensions,
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
            lost: tokio::sync::broadcast::channel(LOST_NODES).0,
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
    /// Tells of every node this node prunes from the cluster (its heartbeat expired):
    /// the protocol services clean up what that node left (chat presence).
    pub fn lost_nodes(&self) -> tokio::sync::broadcast::Receiver<NodeId> {
        self.lost.subscribe()
    }

    /// A service's per-node state, as the wiring put it in.
    pub fn extension<T: std::any::Any + Send + Sync>(&self) -> Option<&Arc<T>> {
        self.extensions.get::<T>()
    }

    pub fn due_handlers(&self) -> &Handlers {
        &self.due_handlers
    }

    pub fn scheduler(&self) -> &Arc<dyn Scheduler> {
        &self.scheduler
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
}

fn kind_label(env: &Envelope) -> &'static str {
    match env.to {
        Destination::Channel(_) => "channel",
        _ => "direct",
    }
}
