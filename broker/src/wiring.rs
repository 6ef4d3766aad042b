//! Wiring: builds a node, embedded or clustered, with the protocol services plugged in.
//! The core (node, router, registry, scheduler, bus, store) imports no protocol service;
//! this module is where they meet: each service's scheduler handler and background
//! tasks are registered here.

use std::sync::Arc;

use crate::bus::memory::MemoryBus;
use crate::bus::redis::RedisBus;
use crate::bus::Bus;
use crate::chat::reports::DeliveryReports;
use crate::config::BrokerConfig;
use crate::history::LocalHistory;
use crate::keys::Keys;
use crate::node::{Extensions, Node, Services};
use crate::scheduler::memory::MemoryScheduler;
use crate::scheduler::redis::RedisScheduler;
use crate::scheduler::Handlers;
use crate::session::Protocol;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;

/// The protocol services' parts of a node.
pub fn services() -> Services {
    Services {
        due: Handlers::default()
            .with(Protocol::Chat, crate::chat::DueSend)
            .with(Protocol::TimeStick, crate::timestick::DuePush)
            .with(Protocol::Sink, crate::sink::DueEnqueue),
        extensions: Extensions::default()
            .with(DeliveryReports::default())
            .with(crate::chat::reads::ReadReports::default())
            .with(crate::chat::presence::LocalPresence::default())
            .with(crate::chat::push::PushWake::default())
            .with(crate::timestick::targets::Targets::default()),
        background: vec![
            Box::new(crate::timestick::spawn_idle_sweeper),
            Box::new(|node: &Arc<Node>| {
                crate::chat::reports::spawn_flusher(node, node.config.chat_report_window)
            }),
            Box::new(|node: &Arc<Node>| {
                crate::chat::reads::spawn_flusher(node, node.config.chat_report_window)
            }),
            Box::new(crate::chat::presence::spawn_worker),
            Box::new(crate::chat::push::spawn_worker),
        ],
    }
}

impl Node {
    /// The embedded single-node broker: memory bus, memory store. Must be called inside
    /// an actix system.
    pub async fn embedded(config: BrokerConfig) -> Arc<Node> {
        let id = config.node_id.clone();
        let history = LocalHistory::new(config.channel_history);
        Node::start(
            config,
            move |inbound, _metrics| Arc::new(MemoryBus::standalone(id, inbound)) as Arc<dyn Bus>,
            Arc::new(MemoryStore::with_history(history.clone())),
            Arc::new(MemoryScheduler::default()),
            Some(history),
            services(),
        )
        .await
    }

    /// A cluster node: Redis bus and Redis store under `prefix`. Returns at once; the
    /// node is ready when the bus has connected (it keeps retrying while Redis is away).
    pub async fn clustered(
        config: BrokerConfig,
        redis_url: &str,
        prefix: &str,
    ) -> Result<Arc<Node>, crate::setup::SetupError> {
        let keys = Keys::new(prefix);
        let store = Arc::new(RedisStore::new(redis_url, keys.clone())?);
        let scheduler = Arc::new(RedisScheduler::new(redis_url, keys.clone())?);
        let client_check = redis_url.to_string();
        let node_id = config.node_id.clone();
        let history = config.channel_history;
        let mut failure = None;
        let node = Node::start(
            config,
            |inbound, metrics| -> Arc<dyn Bus> {
                match RedisBus::start(
                    &client_check,
                    keys,
                    node_id.clone(),
                    inbound.clone(),
                    metrics,
                    history,
                ) {
                    Ok(bus) => Arc::new(bus),
                    Err(e) => {
                        failure = Some(e);
                        Arc::new(MemoryBus::standalone(node_id, inbound))
                    }
                }
            },
            store,
            scheduler,
            None,
            services(),
        )
        .await;
        match failure {
            Some(e) => Err(e),
            None => Ok(node),
        }
    }
}
