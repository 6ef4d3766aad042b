//! The session actor. See [`super`] for the lifecycle. Everything here runs on the
//! actor's arbiter thread: no blocking, no awaiting inside handlers (store writes are
//! spawned and their failures counted).
//!
//! | module | part of a session |
//! |---|---|
//! | this one | the actor itself: lifecycle, the transport (attach, detach, kick, end), the buffer of a detached session, delivery |
//! | [`membership`] | channel subscriptions and provided namespaces (registry and store) |
//! | [`recovery`] | per-channel positions, the recovery record, snapshot, restore, replay, resume |
//! | [`rpc`] | Helios RPC: calls made and served, cancel, progress (empty for other protocols) |

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Address, ChannelSeq, Control, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::{now_ms, SessionId};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Attachment, Protocol, SessionError};
use crate::metrics::outcome;
use crate::node::Node;
use crate::registry::LocalSession;

mod membership;
mod recovery;
mod rpc;

pub(crate) use membership::{Provide, Subscribe, Unprovide, Unsubscribe};
pub(crate) use recovery::{GetSnapshot, Replay, Restore, Resume, ResumeFrom, Snapshot};
use rpc::Rpc;
pub(crate) use rpc::{Call, CancelCall, Progress, Respond};

enum Transport {
    Attached {
        tx: mpsc::Sender<Arc<Envelope>>,
        close: Option<oneshot::Sender<CloseReason>>,
    },
    Detached,
}

/// See the module docs.
pub struct SessionActor {
    node: Arc<Node>,
    id: SessionId,
    user: Arc<str>,
    protocol: Protocol,
    /// Whether a detached session waits for recovery (Helios) or ends at once.
    recoverable: bool,
    subscriptions: BTreeSet<String>,
    provides: BTreeSet<String>,
    transport: Transport,
    /// Incremented per attachment, so a late detach of a replaced socket is ignored.
    epoch: u64,
    /// Direct envelopes waiting for a transport (bounded by `recovery_buffer`). Channel
    /// publications are not kept here: a recovery re-reads them from channel history.
    buffer: VecDeque<Arc<Envelope>>,
    /// Channel history replayed for the next attachment (recovery), oldest first.
    replayed: Vec<Arc<Envelope>>,
    /// Set when something meant for the client could not be kept: a recovery then
    /// fails with this reason instead of resuming with a gap.
    lost: Option<String>,
    detached_ms: u64,
    expiry: Option<SpawnHandle>,
    /// The calls it made and serves (Helios only).
    rpc: Rpc,
    /// Set when the session ends, sent to a still-attached transport.
    end_reason: Option<CloseReason>,
    /// Per channel, the history position of the last publication handed to the client's
    /// transport; older or equal positions are duplicates and skipped, and a recovery
    /// replays what follows.
    positions: BTreeMap<String, String>,
    /// Per channel, the sequence of that same publication (gap check on replay).
    seqs: BTreeMap<String, ChannelSeq>,
    /// Per channel with no position yet, the channel's newest publication when the
    /// subscription was made: a recovery replays from there. Not used to skip anything.
    starts: BTreeMap<String, Envelope>,
    /// Positions moved since the recovery record was last saved.
    positions_dirty: bool,
    /// While a recovered session replays channel history, live publications wait here.
    replay_hold: Option<Vec<Arc<Envelope>>>,
}

impl SessionActor {
    pub(crate) fn new(
        node: Arc<Node>,
        id: SessionId,
        user: Arc<str>,
        protocol: Protocol,
        recoverable: bool,
    ) -> Self {
        SessionActor {
            node,
            id,
            user,
            protocol,
            recoverable,
            subscriptions: BTreeSet::new(),
            provides: BTreeSet::new(),
            transport: Transport::Detached,
            epoch: 0,
            buffer: VecDeque::new(),
            replayed: Vec::new(),
            lost: None,
            detached_ms: now_ms(),
            expiry: None,
            rpc: Rpc::default(),
            end_reason: None,
            positions: BTreeMap::new(),
            seqs: BTreeMap::new(),
            starts: BTreeMap::new(),
            positions_dirty: false,
            replay_hold: None,
        }
    }

    fn is_attached(&self) -> bool {
        matches!(self.transport, Transport::Attached { .. })
    }

    /// Records this node as the session's owner for a few refresh periods.
    fn save_owner(&self) {
        let node = self.node.clone();
        let id = self.id;
        let ttl = node.config.record_refresh * 3;
        actix::spawn(async move {
            if node
                .store()
                .set_owner(id, node.id().clone(), ttl)
                .await
                .is_err()
            {
                node.metrics
                    .store_errors
                    .with_label_values(&["set_owner"])
                    .inc();
            }
        });
    }

    fn label(&self) -> &'static str {
        self.protocol.label()
    }

    fn my_address(&self) -> Address {
        Address {
            node: self.node.id().clone(),
            to: Destination::Session(self.id),
        }
    }

    fn origin(&self) -> Origin {
        Origin {
            session: Some(self.id),
            user: Some(self.user.to_string()),
            protocol: Some(self.protocol),
        }
    }

    /// This session as a channel member. A chat device's publications go straight to
    /// its connection's queue: they need nothing of the session (a chat session is not
    /// recoverable and ends with its connection).
    fn member(&self, ctx: &Context<Self>) -> crate::registry::Member {
        let direct = match (&self.transport, self.protocol) {
            (Transport::Attached { tx, .. }, Protocol::Chat) => Some(tx.clone()),
            _ => None,
        };
        crate::registry::Member {
            addr: ctx.address(),
            direct,
        }
    }

    /// Hands an envelope to the client, or buffers it while no transport is attached.
    fn forward(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        let metrics = &self.node.metrics;
        if let Transport::Attached { tx, .. } = &self.transport {
            match tx.try_send(env) {
                Ok(()) => {
                    return;
                }
                Err(mpsc::error::TrySendError::Full(env)) => {
                    metrics.delivery(self.label(), outcome::DROPPED_SLOW);
                    self.buffer_push(env, ctx);
                    self.kick(
                        CloseReason::new(
                            CloseCode::SlowConsumer,
                            "slow consumer: outbound queue full",
                        ),
                        ctx,
                    );
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(env)) => {
                    // The transport is going away; its detach is on its way.
                    self.buffer_push(env, ctx);
                    return;
                }
            }
        }
        self.buffer_push(env, ctx);
    }

    fn buffer_push(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        if !self.recoverable {
            self.node
                .metrics
                .delivery(self.label(), outcome::DROPPED_SLOW);
            return;
        }
        if self.lost.is_some() {
            self.node
                .metrics
                .delivery(self.label(), outcome::DROPPED_OVERFLOW);
            return;
        }
        if self.buffer.len() >= self.node.config.recovery_buffer {
            self.overflow();
            return;
        }
        let _ = ctx;
        self.node.metrics.delivery(self.label(), outcome::BUFFERED);
        self.buffer.push_back(env);
    }

    /// The recovery buffer is full: what follows cannot be kept, so the session can no
    /// longer be recovered exactly. It waits for its client to be told why.
    fn overflow(&mut self) {
        self.node
            .metrics
            .delivery(self.label(), outcome::DROPPED_OVERFLOW);
        warn!(session = %self.id, "recovery buffer overflow: recovery will fail");
        self.lost = Some(format!(
            "recovery buffer overflow: more than {} messages waited for this Starling",
            self.node.config.recovery_buffer
        ));
        self.buffer.clear();
    }

    /// Closes the current transport. Recoverable sessions then wait for recovery.
    fn kick(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        let label = self.label();
        if let Transport::Attached { close, .. } = &mut self.transport {
            self.node
                .metrics
                .disconnects
                .with_label_values(&[label, reason.code.label()])
                .inc();
            if let Some(close) = close.take() {
                let _ = close.send(reason.clone());
            }
            self.transport = Transport::Detached;
            self.on_detached(ctx);
        }
    }

    /// Ends the session for good.
    fn end(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        self.end_reason = Some(reason);
        ctx.stop();
    }

    fn on_detached(&mut self, ctx: &mut Context<Self>) {
        if !self.recoverable {
            self.end(CloseReason::new(CloseCode::Normal, "session closed"), ctx);
            return;
        }
        self.detached_ms = now_ms();
        // Requests in flight to this provider are answered at once: its client may
        // come back, but it cannot answer what it never saw.
        self.cancel_inflight("provider connection closed");
        for ns in &self.provides {
            self.node.registry.unprovide(ns, self.id);
            self.spawn_store_remove_provider(ns.clone());
        }
        self.save_record();
        let ttl = self.node.config.recovery_ttl;
        if let Some(h) = self.expiry.take() {
            ctx.cancel_future(h);
        }
        self.expiry = Some(ctx.run_later(ttl, |act, ctx| {
            debug!(session = %act.id, "recovery window passed");
            act.end(
                CloseReason::new(CloseCode::Terminated, "recovery window passed"),
                ctx,
            );
        }));
    }

    fn on_control(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        match serde_json::from_value::<Control>(env.json().clone()) {
            Ok(Control::Cancel) => {
                let key = self.rpc.inflight.iter().find_map(|(k, v)| {
                    (Some(&v.reply_to) == env.reply_to.as_ref()
                        && Some(&v.correlation) == env.correlation.as_ref())
                    .then(|| k.clone())
                });
                if let Some(k) = key {
                    self.rpc.inflight.remove(&k);
                }
            }
            Ok(Control::Takeover) => {
                // The session was resumed on another node: this copy ends quietly,
                // without deleting the state the new owner now uses.
                self.recoverable = false;
                self.end(
                    CloseReason::new(CloseCode::Replaced, "session resumed elsewhere"),
                    ctx,
                );
            }
            Err(e) => debug!(error = %e, "unknown control envelope"),
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.node.config.mailbox);
        self.node.registry.insert(
            self.id,
            LocalSession {
                addr: ctx.address(),
                user: self.user.clone(),
                protocol: self.protocol,
            },
        );
        self.node
            .metrics
            .sessions
            .with_label_values(&[self.label()])
            .inc();
        self.save_owner();
        // Keep the owner record (and, for recoverable sessions, the recovery record)
        // fresh, so both expire soon after this node dies and never while it lives.
        ctx.run_interval(self.node.config.record_refresh, |act, _| {
            act.save_owner();
            if act.recoverable && act.is_attached() {
                act.save_record();
            }
        });
        // Positions reach the store at most this far behind, so a node crash replays
        // little (clients drop the duplicates by `ChannelSeq`).
        if self.recoverable {
            ctx.run_interval(self.node.config.position_save_interval, |act, _| {
                if act.positions_dirty && act.is_attached() {
                    act.save_record();
                }
            });
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        let node = self.node.clone();
        node.registry.remove(self.id);
        node.metrics
            .sessions
            .with_label_values(&[self.label()])
            .dec();
        for ch in std::mem::take(&mut self.subscriptions) {
            if node.registry.leave(&ch, self.id) {
                node.router.bus().unsubscribe(&ch);
            }
        }
        for ns in std::mem::take(&mut self.provides) {
            node.registry.unprovide(&ns, self.id);
            self.spawn_store_remove_provider(ns);
        }
        self.cancel_inflight("provider session ended");
        for (id, call) in std::mem::take(&mut self.rpc.pending) {
            self.send_cancel(&call.provider, &id);
        }
        if let Transport::Attached { close, .. } = &mut self.transport {
            if let Some(close) = close.take() {
                let reason = self
                    .end_reason
                    .clone()
                    .unwrap_or_else(|| CloseReason::new(CloseCode::Normal, "session closed"));
                let _ = close.send(reason);
            }
        }
        let dropped = self.buffer.len();
        if dropped > 0 {
            debug!(session = %self.id, dropped, "session ended with buffered messages");
        }
        // A session that was taken over elsewhere leaves the shared state alone, and so
        // does a recoverable one on a draining node: it is about to resume elsewhere.
        let replaced = matches!(
            self.end_reason.as_ref().map(|r| r.code),
            Some(CloseCode::Replaced)
        );
        let resumes_elsewhere = self.recoverable && self.node.is_draining();
        let clean_store = !replaced && !resumes_elsewhere;
        let id = self.id;
        if clean_store {
            actix::spawn(async move {
                let store = node.store();
                let r1 = store.delete_recovery(id).await;
                let r2 = store.delete_owner(id, node.id().clone()).await;
                if r1.is_err() || r2.is_err() {
                    node.metrics
                        .store_errors
                        .with_label_values(&["session_cleanup"])
                        .inc();
                }
            });
        }
    }
}

/// An envelope for this session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<Envelope>);

impl Handler<Deliver> for SessionActor {
    type Result = ();

    fn handle(&mut self, Deliver(env): Deliver, ctx: &mut Context<Self>) {
        match env.kind {
            Kind::Request => self.on_request(env, ctx),
            Kind::Response => self.on_response(env, ctx),
            Kind::Control => self.on_control(env, ctx),
            // Channel publications first: they may carry a correlation of their own
            // (a TimeStick request's message id).
            Kind::Notification if matches!(env.to, Destination::Channel(_)) => {
                self.channel_publication(env, ctx)
            }
            Kind::Notification if env.correlation.is_some() => {
                // Progress of one of this session's calls: only while it is pending.
                if env
                    .correlation
                    .as_ref()
                    .is_some_and(|c| self.rpc.pending.contains_key(c))
                {
                    self.forward(env, ctx);
                }
            }
            Kind::Notification | Kind::Message => self.forward(env, ctx),
        }
    }
}

/// Close the current transport (slow consumer, drain); the session may be recovered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick(pub CloseReason);

impl Handler<Kick> for SessionActor {
    type Result = ();

    fn handle(&mut self, Kick(reason): Kick, ctx: &mut Context<Self>) {
        self.kick(reason, ctx);
    }
}

/// End the session now, whatever its state.
#[derive(Message)]
#[rtype(result = "()")]
pub struct End(pub CloseReason);

impl Handler<End> for SessionActor {
    type Result = ();

    fn handle(&mut self, End(reason): End, ctx: &mut Context<Self>) {
        self.end(reason, ctx);
    }
}

/// Attach a transport; an attached one is replaced (closed with 4002).
#[derive(Message)]
#[rtype(result = "Attachment")]
pub struct Attach;

impl Handler<Attach> for SessionActor {
    type Result = MessageResult<Attach>;

    fn handle(&mut self, _: Attach, ctx: &mut Context<Self>) -> Self::Result {
        if let Transport::Attached { close, .. } = &mut self.transport {
            if let Some(close) = close.take() {
                let _ = close.send(CloseReason::new(
                    CloseCode::Replaced,
                    "replaced by a newer connection",
                ));
            }
            self.cancel_inflight("provider connection replaced");
        }
        if let Some(h) = self.expiry.take() {
            ctx.cancel_future(h);
        }
        let (tx, outbound) = mpsc::channel(self.node.config.outbound_queue);
        let (close_tx, closed) = oneshot::channel();
        self.epoch += 1;
        self.transport = Transport::Attached {
            tx,
            close: Some(close_tx),
        };
        let mut buffered: Vec<Arc<Envelope>> = self.buffer.drain(..).collect();
        buffered.append(&mut self.replayed);
        for _ in &buffered {
            self.node.metrics.delivery(self.label(), outcome::RECOVERED);
        }
        // Live publications held during a replay follow it (duplicates skipped).
        for env in self.replay_hold.take().unwrap_or_default() {
            self.channel_publication(env, ctx);
        }
        for ns in &self.provides {
            self.node.registry.provide(ns, self.id);
            self.spawn_store_add_provider(ns.clone());
        }
        self.save_record();
        MessageResult(Attachment {
            epoch: self.epoch,
            buffered,
            outbound,
            closed,
        })
    }
}

/// The transport of attachment `epoch` is gone; `1` holds what it took but never wrote.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach(pub u64, pub Vec<Arc<Envelope>>);

impl Handler<Detach> for SessionActor {
    type Result = ();

    fn handle(&mut self, Detach(epoch, unsent): Detach, ctx: &mut Context<Self>) {
        if epoch != self.epoch {
            return;
        }
        if self.recoverable && !unsent.is_empty() {
            // Older than anything buffered since the transport stopped taking envelopes.
            // Newest first: the last rewind of a channel is its oldest unwritten one.
            let cap = self.node.config.recovery_buffer;
            for env in unsent.into_iter().rev() {
                if let (Destination::Channel(ch), Some(_)) = (&env.to, &env.seq) {
                    let ch = ch.clone();
                    self.rewind(&ch, &env);
                    continue;
                }
                if self.lost.is_some() {
                    continue;
                }
                if self.buffer.len() >= cap {
                    self.overflow();
                    continue;
                }
                self.buffer.push_front(env);
            }
        }
        if self.is_attached() {
            self.transport = Transport::Detached;
            self.on_detached(ctx);
        } else if self.positions_dirty {
            // Already detached (kicked): the saved record must carry the rewound positions.
            self.save_record();
        }
    }
}
