//! The router: given an envelope, deliver it to local sessions or hand it to the bus.
//!
//! * Channel publications: on a clustered bus they go to the bus only, and every node —
//!   the origin too — delivers what the bus hands back, so all subscribers see one order
//!   and each publication carries its history position. When the bus is down (or on the
//!   embedded node) they fan out to local members at once: same-node traffic keeps
//!   flowing through a Redis outage. Fan-out is a `try_send` into each member's bounded
//!   mailbox.
//! * A chat broadcast skips the connection that sent it (it was answered directly).
//! * Directed envelopes go to an [`Address`]: local when the node is this one, else the
//!   owning node's bus topic.
//! * Envelopes arriving from the bus are dispatched the same way as local ones.

use std::sync::Arc;

use actix::dev::SendError;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Address, Body, Destination, Envelope, ErrorBody, Kind};
use murmur_shared::helios::ErrorCode;
use murmur_shared::ids::NodeId;
use tracing::debug;

use crate::bus::{Bus, BusError, Settle, Topic};
use crate::history::LocalHistory;
use crate::metrics::{outcome, Metrics};
use crate::registry::Registry;
use crate::replies::Replies;
use crate::session::actor::{Deliver, Kick};

/// See the module docs.
pub struct Router {
    node: NodeId,
    registry: Arc<Registry>,
    bus: Arc<dyn Bus>,
    replies: Arc<Replies>,
    metrics: Arc<Metrics>,
    /// Channel history of the embedded node (`None` in cluster mode: Redis keeps it).
    history: Option<Arc<LocalHistory>>,
}

fn is_internal(channel: &str) -> bool {
    channel.starts_with(murmur_shared::channel::INTERNAL_PREFIX)
}

impl Router {
    pub fn new(
        node: NodeId,
        registry: Arc<Registry>,
        bus: Arc<dyn Bus>,
        replies: Arc<Replies>,
        metrics: Arc<Metrics>,
        history: Option<Arc<LocalHistory>>,
    ) -> Self {
        Router {
            node,
            registry,
            bus,
            replies,
            metrics,
            history,
        }
    }

    /// Publishes on a channel: local members now, other nodes through the bus.
    pub fn publish(&self, env: Envelope) {
        let Destination::Channel(channel) = &env.to else {
            debug!("publish called with a non-channel destination");
            return;
        };
        let channel = channel.clone();
        let env = if self.bus.is_clustered() {
            let env = Arc::new(env);
            match self
                .bus
                .publish(Topic::Channel(channel.clone()), env.clone())
            {
                Ok(()) => {
                    self.metrics
                        .bus_published
                        .with_label_values(&["channel"])
                        .inc();
                    return;
                }
                Err(e) => {
                    self.metrics
                        .bus_errors
                        .with_label_values(&["local_only"])
                        .inc();
                    debug!(error = %e, "bus unavailable: channel publication delivered locally only");
                    env
                }
            }
        } else if let Some(history) = self.history.as_ref().filter(|_| !is_internal(&channel)) {
            history.append(&channel, env)
        } else {
            Arc::new(env)
        };
        self.fan_out(&channel, &env);
    }

    /// Whether other nodes can exist behind this node's bus.
    pub fn is_clustered(&self) -> bool {
        self.bus.is_clustered()
    }

    /// Publishes on a channel like [`publish`](Self::publish), but answers only once the
    /// publication is durable for the cluster: written to Redis (deleting `settle` in
    /// the same script; `Ok(true)`), or delivered locally on the embedded node
    /// (`Ok(false)`: `settle` is the caller's). A bus that is down or full is an error
    /// and nothing is delivered, so that a caller who reports the failure can have the
    /// publication retried without a duplicate.
    pub async fn publish_confirmed(
        &self,
        env: Envelope,
        settle: Option<Settle>,
    ) -> Result<bool, BusError> {
        let Destination::Channel(channel) = &env.to else {
            debug!("publish called with a non-channel destination");
            return Ok(false);
        };
        let channel = channel.clone();
        if !self.bus.is_clustered() {
            self.publish(env);
            return Ok(false);
        }
        let settled = self
            .bus
            .publish_confirmed(Topic::Channel(channel), Arc::new(env), settle)
            .await;
        match settled {
            Ok(_) => self.metrics.bus_published.with_label_values(&["channel"]),
            Err(_) => self.metrics.bus_errors.with_label_values(&["unconfirmed"]),
        }
        .inc();
        settled
    }

    /// Sends to a known address.
    pub fn send_to(&self, addr: &Address, env: Arc<Envelope>) {
        if addr.node == self.node {
            self.deliver_local(env);
        } else {
            self.to_bus(Topic::Node(addr.node.clone()), env);
        }
    }

    /// Dispatches an envelope whose recipients live on this node (or which arrived
    /// from the bus).
    pub fn deliver_local(&self, env: Arc<Envelope>) {
        match &env.to {
            Destination::Channel(channel) => self.fan_out(channel, &env),
            Destination::Session(id) => match self.registry.get(*id) {
                Some(s) => self.try_deliver(s.protocol.label(), &s.addr, env),
                None => self.bounce(env, "the addressed session is gone"),
            },
            Destination::Reply(slot) => {
                let slot = *slot;
                if !self.replies.complete(slot, env) {
                    debug!(slot, "reply for a slot nobody waits for any more");
                }
            }
        }
    }

    fn fan_out(&self, channel: &str, env: &Arc<Envelope>) {
        // A chat connection that caused a broadcast was answered directly: it does not
        // get the broadcast back (its user's other devices do).
        let skip = env
            .from
            .session
            .filter(|_| env.from.protocol == Some(crate::session::Protocol::Chat));
        self.registry.for_each_member(channel, |id, member| {
            if Some(id) == skip {
                return;
            }
            match &member.direct {
                Some(queue) => self.try_queue(queue, &member.addr, env.clone()),
                None => self.try_deliver("channel", &member.addr, env.clone()),
            }
        });
    }

    /// Straight into a connection's queue (see [`crate::registry::Member`]).
    fn try_queue(
        &self,
        queue: &tokio::sync::mpsc::Sender<Arc<Envelope>>,
        addr: &actix::Addr<crate::session::actor::SessionActor>,
        env: Arc<Envelope>,
    ) {
        use tokio::sync::mpsc::error::TrySendError;
        match queue.try_send(env) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.slow_consumer("channel", addr, "slow consumer: outbound queue full")
            }
            // The connection is going; its session leaves the channel next.
            Err(TrySendError::Closed(_)) => {
                self.metrics.delivery("channel", outcome::UNDELIVERABLE);
            }
        }
    }

    fn try_deliver(
        &self,
        label: &str,
        addr: &actix::Addr<crate::session::actor::SessionActor>,
        env: Arc<Envelope>,
    ) {
        match addr.try_send(Deliver(env)) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                self.slow_consumer(label, addr, "slow consumer: session mailbox full")
            }
            Err(SendError::Closed(Deliver(env))) => self.bounce(env, "the addressed session ended"),
        }
    }

    /// A member that cannot keep up: the message is dropped and the session
    /// disconnected (the one message that jumps the bound is the Kick itself).
    fn slow_consumer(
        &self,
        label: &str,
        addr: &actix::Addr<crate::session::actor::SessionActor>,
        reason: &str,
    ) {
        self.metrics.delivery(label, outcome::DROPPED_SLOW);
        addr.do_send(Kick(CloseReason::new(CloseCode::SlowConsumer, reason)));
    }

    /// A request whose recipient is gone is answered at once, so the caller does not
    /// wait for its timeout.
    fn bounce(&self, env: Arc<Envelope>, why: &str) {
        self.metrics.delivery("none", outcome::UNDELIVERABLE);
        if env.kind != Kind::Request {
            return;
        }
        let (Some(reply_to), Some(correlation)) = (&env.reply_to, &env.correlation) else {
            return;
        };
        let answer = Envelope::new(
            &self.node,
            Kind::Response,
            reply_to.to.clone(),
            Body::Error(ErrorBody {
                code: ErrorCode::RequestCancelled.as_str().to_string(),
                message: why.to_string(),
                details: None,
            }),
        )
        .correlation(correlation.clone());
        self.send_to(reply_to, Arc::new(answer));
    }

    fn to_bus(&self, topic: Topic, env: Arc<Envelope>) {
        let kind = match topic {
            Topic::Node(_) => "direct",
            Topic::Channel(_) => "channel",
        };
        match self.bus.publish(topic, env) {
            Ok(()) => self.metrics.bus_published.with_label_values(&[kind]).inc(),
            Err(e) => {
                self.metrics
                    .bus_errors
                    .with_label_values(&["dropped"])
                    .inc();
                debug!(error = %e, "bus publish failed");
            }
        }
    }

    /// The bus for subscription management.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }
}
