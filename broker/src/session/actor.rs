//! The session actor. See [`super`] for the lifecycle. Everything here runs on the
//! actor's arbiter thread: no blocking, no awaiting inside handlers (store writes are
//! spawned and their failures counted).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{
    Address, Body, ChannelSeq, Control, Destination, Envelope, ErrorBody, Kind, Origin,
};
use murmur_shared::helios::ErrorCode;
use murmur_shared::ids::{now_ms, SessionId};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use uuid::Uuid;

use super::{Attachment, CallError, Protocol, SessionError};
use crate::metrics::outcome;
use crate::node::Node;
use crate::registry::LocalSession;
use crate::store::{ProviderEntry, RecoveryRecord};

use murmur_shared::helios::custom::TOO_MANY_REQUESTS;

enum Transport {
    Attached {
        tx: mpsc::Sender<Arc<Envelope>>,
        close: Option<oneshot::Sender<CloseReason>>,
    },
    Detached,
}

/// A call this session made, waiting for its provider.
struct PendingCall {
    provider: Address,
    timer: SpawnHandle,
}

/// A request this session serves, waiting for its client's answer.
struct Inflight {
    reply_to: Address,
    /// The requester's own id, echoed in the response.
    correlation: String,
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
    pending: HashMap<String, PendingCall>,
    inflight: HashMap<String, Inflight>,
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
            pending: HashMap::new(),
            inflight: HashMap::new(),
            end_reason: None,
            positions: BTreeMap::new(),
            seqs: BTreeMap::new(),
            starts: BTreeMap::new(),
            positions_dirty: false,
            replay_hold: None,
        }
    }

    /// Where a recovery replays each channel from: its position, else where its
    /// subscription started.
    fn resume_positions(&self) -> (BTreeMap<String, String>, BTreeMap<String, ChannelSeq>) {
        let mut positions = self.positions.clone();
        let mut seqs = self.seqs.clone();
        for (ch, start) in &self.starts {
            if positions.contains_key(ch) {
                continue;
            }
            if let Some(seq) = &start.seq {
                positions.insert(ch.clone(), seq.clone());
                if let Some(cs) = &start.chan_seq {
                    seqs.insert(ch.clone(), cs.clone());
                }
            }
        }
        (positions, seqs)
    }

    /// Whether the publication at history position `seq` of `channel` is at or before
    /// the last one handed to the client (a duplicate).
    fn already_had(&self, channel: &str, seq: &str) -> bool {
        self.positions
            .get(channel)
            .is_some_and(|pos| !Envelope::seq_after(seq, pos))
    }

    fn is_attached(&self) -> bool {
        matches!(self.transport, Transport::Attached { .. })
    }

    /// Records `env` as the last publication of its channel handed to the client.
    fn advance(&mut self, channel: &str, env: &Envelope) {
        if let Some(seq) = &env.seq {
            self.positions.insert(channel.to_string(), seq.clone());
            self.starts.remove(channel);
            match &env.chan_seq {
                Some(cs) => self.seqs.insert(channel.to_string(), cs.clone()),
                None => self.seqs.remove(channel),
            };
            self.positions_dirty = true;
        }
    }

    /// `env` never reached the client: its channel's position goes back to just
    /// before it, so a recovery replays it from history.
    fn rewind(&mut self, channel: &str, env: &Envelope) {
        let Some(seq) = &env.seq else {
            return;
        };
        let at_or_after = self
            .positions
            .get(channel)
            .is_none_or(|pos| !Envelope::seq_after(seq, pos));
        if !at_or_after {
            return;
        }
        self.positions
            .insert(channel.to_string(), Envelope::seq_before(seq));
        match &env.chan_seq {
            Some(cs) => self.seqs.insert(
                channel.to_string(),
                ChannelSeq {
                    seq: cs.seq.saturating_sub(1),
                    epoch: cs.epoch.clone(),
                },
            ),
            None => self.seqs.remove(channel),
        };
        self.positions_dirty = true;
    }

    /// Saves what recovery on any node needs. While attached the record outlives the
    /// next refresh (so a crashed node's sessions stay recoverable for the whole window);
    /// once detached it lives exactly for the recovery window.
    fn save_record(&mut self) {
        if !self.recoverable {
            return;
        }
        self.positions_dirty = false;
        let attached = matches!(self.transport, Transport::Attached { .. });
        let cfg = &self.node.config;
        let ttl = if attached {
            cfg.recovery_ttl + cfg.record_refresh
        } else {
            cfg.recovery_ttl
        };
        let (positions, seqs) = self.resume_positions();
        let record = RecoveryRecord {
            session: self.id,
            user: self.user.to_string(),
            node: self.node.id().clone(),
            subscriptions: self.subscriptions.iter().cloned().collect(),
            provides: self.provides.iter().cloned().collect(),
            detached_ms: if attached { now_ms() } else { self.detached_ms },
            positions,
            seqs,
        };
        let node = self.node.clone();
        actix::spawn(async move {
            if let Err(e) = node.store().put_recovery(record, ttl).await {
                node.metrics
                    .store_errors
                    .with_label_values(&["put_recovery"])
                    .inc();
                debug!(error = %e, "could not save recovery state");
            }
        });
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

    /// Channel publications pass here: duplicates (by history position) are skipped,
    /// during a replay live ones are held back. A publication with a history position
    /// that finds no transport is left to history: the position stays, and a recovery
    /// replays it (a disconnected client costs no memory per publication).
    fn channel_publication(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        let Destination::Channel(ch) = &env.to else {
            return;
        };
        let Some(seq) = &env.seq else {
            // Not in any history (the bus was down): only a buffer can keep it.
            self.forward(env, ctx);
            return;
        };
        if let Some(hold) = &mut self.replay_hold {
            hold.push(env);
            return;
        }
        if self.already_had(ch, seq) {
            return;
        }
        let Transport::Attached { tx, .. } = &self.transport else {
            if !self.recoverable {
                self.node
                    .metrics
                    .delivery(self.label(), outcome::DROPPED_SLOW);
            }
            return;
        };
        match tx.try_send(env.clone()) {
            Ok(()) => {
                let ch = ch.clone();
                self.advance(&ch, &env);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.node
                    .metrics
                    .delivery(self.label(), outcome::DROPPED_SLOW);
                self.kick(
                    CloseReason::new(
                        CloseCode::SlowConsumer,
                        "slow consumer: outbound queue full",
                    ),
                    ctx,
                );
            }
            // The transport is going away; its detach is on its way.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
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

    fn cancel_inflight(&mut self, why: &str) {
        for (_, req) in self.inflight.drain() {
            let answer = Envelope::new(
                self.node.id(),
                Kind::Response,
                req.reply_to.to.clone(),
                Body::Error(ErrorBody {
                    code: ErrorCode::RequestCancelled.as_str().into(),
                    message: why.into(),
                    details: None,
                }),
            )
            .correlation(req.correlation);
            self.node.router.send_to(&req.reply_to, Arc::new(answer));
        }
    }

    fn spawn_store_remove_provider(&self, ns: String) {
        let node = self.node.clone();
        let entry = ProviderEntry {
            session: self.id,
            node: node.id().clone(),
        };
        actix::spawn(async move {
            if node.store().remove_provider(&ns, entry).await.is_err() {
                node.metrics
                    .store_errors
                    .with_label_values(&["remove_provider"])
                    .inc();
            }
        });
    }

    fn spawn_store_add_provider(&self, ns: String) {
        let node = self.node.clone();
        let entry = ProviderEntry {
            session: self.id,
            node: node.id().clone(),
        };
        actix::spawn(async move {
            if node.store().add_provider(&ns, entry).await.is_err() {
                node.metrics
                    .store_errors
                    .with_label_values(&["add_provider"])
                    .inc();
            }
        });
    }

    /// An error response to this session's own client for one of its calls.
    fn answer_self(
        &mut self,
        request_id: String,
        code: &str,
        message: &str,
        ctx: &mut Context<Self>,
    ) {
        let env = Envelope::new(
            self.node.id(),
            Kind::Response,
            Destination::Session(self.id),
            Body::Error(ErrorBody {
                code: code.into(),
                message: message.into(),
                details: None,
            }),
        )
        .correlation(request_id);
        self.forward(Arc::new(env), ctx);
    }

    fn send_cancel(&self, provider: &Address, request_id: &str) {
        let env = Envelope::new(
            self.node.id(),
            Kind::Control,
            provider.to.clone(),
            // unwrap: serializing a unit-like enum cannot fail.
            Body::Json(serde_json::to_value(Control::Cancel).unwrap()),
        )
        .from(self.origin())
        .reply_to(self.my_address())
        .correlation(request_id);
        self.node.router.send_to(provider, Arc::new(env));
    }

    fn on_request(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        let (Some(reply_to), Some(correlation)) = (env.reply_to.clone(), env.correlation.clone())
        else {
            debug!("request without a reply address dropped");
            return;
        };
        // A call routed from another session (not a backend call to this very session)
        // needs this session to provide the namespace now: a caller's cached lookup may
        // be a moment old.
        let routed = matches!(reply_to.to, Destination::Session(_));
        let ns = env
            .subject
            .as_deref()
            .map(murmur_shared::helios::namespace)
            .unwrap_or("");
        if routed && !self.node.registry.is_provider(ns, self.id) {
            let answer = Envelope::new(
                self.node.id(),
                Kind::Response,
                reply_to.to.clone(),
                Body::Error(ErrorBody {
                    code: ErrorCode::MethodNotFound.as_str().into(),
                    message: format!("no provider for {:?}", env.subject.as_deref().unwrap_or("")),
                    details: None,
                }),
            )
            .correlation(correlation);
            self.node.router.send_to(&reply_to, Arc::new(answer));
            return;
        }
        if self.inflight.len() >= self.node.config.max_inflight_calls {
            self.node
                .metrics
                .rpc_requests
                .with_label_values(&[self.label(), "rejected"])
                .inc();
            let answer = Envelope::new(
                self.node.id(),
                Kind::Response,
                reply_to.to.clone(),
                Body::Error(ErrorBody {
                    code: TOO_MANY_REQUESTS.into(),
                    message: "provider has too many requests in flight".into(),
                    details: None,
                }),
            )
            .correlation(correlation);
            self.node.router.send_to(&reply_to, Arc::new(answer));
            return;
        }
        let local_id = Uuid::new_v4().to_string();
        self.inflight.insert(
            local_id.clone(),
            Inflight {
                reply_to,
                correlation,
            },
        );
        let mut forwarded = (*env).clone();
        forwarded.correlation = Some(local_id);
        self.forward(Arc::new(forwarded), ctx);
    }

    fn on_response(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        let Some(id) = env.correlation.as_deref() else {
            return;
        };
        let Some(call) = self.pending.remove(id) else {
            // Timed out or cancelled meanwhile: the caller already has its answer.
            self.node
                .metrics
                .delivery(self.label(), outcome::UNDELIVERABLE);
            return;
        };
        ctx.cancel_future(call.timer);
        let result = if matches!(env.body, Body::Error(_)) {
            "error"
        } else {
            "ok"
        };
        self.node
            .metrics
            .rpc_requests
            .with_label_values(&[self.label(), result])
            .inc();
        self.forward(env, ctx);
    }

    fn on_control(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
        match serde_json::from_value::<Control>(env.json().clone()) {
            Ok(Control::Cancel) => {
                let key = self.inflight.iter().find_map(|(k, v)| {
                    (Some(&v.reply_to) == env.reply_to.as_ref()
                        && Some(&v.correlation) == env.correlation.as_ref())
                    .then(|| k.clone())
                });
                if let Some(k) = key {
                    self.inflight.remove(&k);
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
        for (id, call) in std::mem::take(&mut self.pending) {
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
                    .is_some_and(|c| self.pending.contains_key(c))
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

/// Join a channel; the second field is the channel's newest publication read before
/// joining (where a recovery replays from if nothing is delivered before it).
#[derive(Message)]
#[rtype(result = "Result<bool, SessionError>")]
pub struct Subscribe(pub String, pub Option<Envelope>);

impl Handler<Subscribe> for SessionActor {
    type Result = Result<bool, SessionError>;

    fn handle(&mut self, Subscribe(ch, start): Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        if self.subscriptions.contains(&ch) {
            return Ok(false);
        }
        // A chat device's subscriptions are the broker's (its inbox and its user's
        // groups), not the client's: they are not limited.
        if self.protocol != Protocol::Chat
            && self.subscriptions.len() >= self.node.config.max_subscriptions
        {
            return Err(SessionError::Limit(format!(
                "at most {} subscriptions per session",
                self.node.config.max_subscriptions
            )));
        }
        if self.node.registry.join(&ch, self.id, self.member(ctx)) {
            self.node.router.bus().subscribe(&ch);
        }
        if let Some(start) = start {
            self.starts.insert(ch.clone(), start);
        }
        self.subscriptions.insert(ch);
        self.save_record();
        Ok(true)
    }
}

/// Leave a channel; the result says whether the session was a member.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe(pub String);

impl Handler<Unsubscribe> for SessionActor {
    type Result = bool;

    fn handle(&mut self, Unsubscribe(ch): Unsubscribe, _: &mut Context<Self>) -> bool {
        if !self.subscriptions.remove(&ch) {
            return false;
        }
        if self.node.registry.leave(&ch, self.id) {
            self.node.router.bus().unsubscribe(&ch);
        }
        self.positions.remove(&ch);
        self.seqs.remove(&ch);
        self.starts.remove(&ch);
        self.save_record();
        true
    }
}

/// Serve a namespace.
#[derive(Message)]
#[rtype(result = "Result<bool, SessionError>")]
pub struct Provide(pub String);

impl Handler<Provide> for SessionActor {
    type Result = Result<bool, SessionError>;

    fn handle(&mut self, Provide(ns): Provide, _: &mut Context<Self>) -> Self::Result {
        if self.provides.contains(&ns) {
            return Ok(false);
        }
        if self.provides.len() >= self.node.config.max_provides {
            return Err(SessionError::Limit(format!(
                "at most {} provided namespaces per session",
                self.node.config.max_provides
            )));
        }
        self.node.registry.provide(&ns, self.id);
        self.provides.insert(ns);
        self.save_record();
        Ok(true)
    }
}

/// Stop serving a namespace.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unprovide(pub String);

impl Handler<Unprovide> for SessionActor {
    type Result = bool;

    fn handle(&mut self, Unprovide(ns): Unprovide, _: &mut Context<Self>) -> bool {
        if !self.provides.remove(&ns) {
            return false;
        }
        self.node.registry.unprovide(&ns, self.id);
        self.spawn_store_remove_provider(ns);
        self.save_record();
        true
    }
}

/// Send an RPC request to a provider; the answer comes back as a response envelope.
#[derive(Message)]
#[rtype(result = "Result<(), CallError>")]
pub struct Call {
    pub request_id: String,
    pub method: String,
    pub payload: Value,
    pub timeout: Duration,
    pub timing: Option<Value>,
    pub provider: Address,
    /// `~timing` hold: the request reaches the provider then (the timeout still runs
    /// from now).
    pub deliver_at: Option<i64>,
}

impl Handler<Call> for SessionActor {
    type Result = Result<(), CallError>;

    fn handle(&mut self, call: Call, ctx: &mut Context<Self>) -> Self::Result {
        if self.pending.contains_key(&call.request_id) {
            return Err(CallError::Duplicate);
        }
        if self.pending.len() >= self.node.config.max_inflight_calls {
            return Err(CallError::TooMany);
        }
        let request_id = call.request_id.clone();
        let timer = ctx.run_later(call.timeout, move |act, ctx| {
            if let Some(call) = act.pending.remove(&request_id) {
                act.node
                    .metrics
                    .rpc_requests
                    .with_label_values(&[act.label(), "timeout"])
                    .inc();
                act.send_cancel(&call.provider, &request_id);
                act.answer_self(
                    request_id,
                    ErrorCode::RequestTimeout.as_str(),
                    "the provider did not answer in time",
                    ctx,
                );
            }
        });
        let env = Envelope::new(
            self.node.id(),
            Kind::Request,
            call.provider.to.clone(),
            Body::Json(call.payload),
        )
        .from(self.origin())
        .reply_to(self.my_address())
        .correlation(call.request_id.clone())
        .subject(call.method)
        .timing(call.timing);
        self.pending.insert(
            call.request_id,
            PendingCall {
                provider: call.provider.clone(),
                timer,
            },
        );
        match call.deliver_at {
            Some(due) => {
                let node = self.node.clone();
                let job = crate::scheduler::Job::SendTo {
                    to: call.provider.clone(),
                    env,
                };
                actix::spawn(async move {
                    if crate::scheduler::hold(&node, due, job).await.is_err() {
                        node.metrics.store_errors.with_label_values(&["hold"]).inc();
                    }
                });
            }
            None => self.node.router.send_to(&call.provider, Arc::new(env)),
        }
        Ok(())
    }
}

/// Cancel one of this session's calls (`system:cancel`); true if it was pending. The
/// cancelled request is answered `REQUEST_CANCELLED`.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CancelCall(pub String);

impl Handler<CancelCall> for SessionActor {
    type Result = bool;

    fn handle(&mut self, CancelCall(id): CancelCall, ctx: &mut Context<Self>) -> bool {
        let Some(call) = self.pending.remove(&id) else {
            return false;
        };
        ctx.cancel_future(call.timer);
        self.node
            .metrics
            .rpc_requests
            .with_label_values(&[self.label(), "cancelled"])
            .inc();
        self.send_cancel(&call.provider, &id);
        self.answer_self(
            id,
            ErrorCode::RequestCancelled.as_str(),
            "cancelled by the caller",
            ctx,
        );
        true
    }
}

/// The client answered a request it was sent; false if the id is unknown.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Respond {
    pub id: String,
    pub outcome: Result<Value, ErrorBody>,
    /// The answer's `~timing` (e.g. `in_time`), passed on to the caller.
    pub timing: Option<Value>,
}

impl Handler<Respond> for SessionActor {
    type Result = bool;

    fn handle(&mut self, r: Respond, _: &mut Context<Self>) -> bool {
        let Some(req) = self.inflight.remove(&r.id) else {
            return false;
        };
        let body = match r.outcome {
            Ok(v) => Body::Json(v),
            Err(e) => Body::Error(e),
        };
        let env = Envelope::new(
            self.node.id(),
            Kind::Response,
            req.reply_to.to.clone(),
            body,
        )
        .from(self.origin())
        .correlation(req.correlation)
        .timing(r.timing);
        self.node.router.send_to(&req.reply_to, Arc::new(env));
        true
    }
}

/// The client sent a progress notification for a request it serves; false if unknown.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Progress {
    pub id: String,
    pub topic: Option<String>,
    pub data: Value,
}

impl Handler<Progress> for SessionActor {
    type Result = bool;

    fn handle(&mut self, p: Progress, _: &mut Context<Self>) -> bool {
        let Some(req) = self.inflight.get(&p.id) else {
            return false;
        };
        let mut env = Envelope::new(
            self.node.id(),
            Kind::Notification,
            req.reply_to.to.clone(),
            Body::Json(p.data),
        )
        .from(self.origin())
        .correlation(req.correlation.clone());
        env.subject = p.topic;
        self.node
            .router
            .send_to(&req.reply_to.clone(), Arc::new(env));
        true
    }
}

/// A copy of the session's state (recovery tokens, admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: SessionId,
    pub user: String,
    pub subscriptions: Vec<String>,
    pub provides: Vec<String>,
}

#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

impl Handler<GetSnapshot> for SessionActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(Snapshot {
            id: self.id,
            user: self.user.to_string(),
            subscriptions: self.subscriptions.iter().cloned().collect(),
            provides: self.provides.iter().cloned().collect(),
        })
    }
}

/// Restore subscriptions and provides from a recovery record (resume on another node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restore {
    pub subscriptions: Vec<String>,
    pub provides: Vec<String>,
    /// History positions to resume from; live publications are held until [`Attach`].
    pub positions: BTreeMap<String, String>,
    pub seqs: BTreeMap<String, ChannelSeq>,
}

impl Handler<Restore> for SessionActor {
    type Result = ();

    fn handle(&mut self, r: Restore, ctx: &mut Context<Self>) {
        self.positions = r.positions;
        self.seqs = r.seqs;
        self.replay_hold = Some(Vec::new());
        for ch in r.subscriptions {
            if self.subscriptions.len() < self.node.config.max_subscriptions
                && self.subscriptions.insert(ch.clone())
                && self.node.registry.join(&ch, self.id, self.member(ctx))
            {
                self.node.router.bus().subscribe(&ch);
            }
        }
        for ns in r.provides.into_iter().take(self.node.config.max_provides) {
            self.provides.insert(ns);
        }
    }
}

/// Channel history a recovering session missed, oldest first per channel: kept for the
/// next [`Attach`], which hands it over after the buffered direct messages and then
/// releases the live publications held since [`Restore`] / [`Resume`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay(pub Vec<Envelope>);

impl Handler<Replay> for SessionActor {
    type Result = ();

    fn handle(&mut self, Replay(history): Replay, _: &mut Context<Self>) {
        for env in history {
            let Destination::Channel(ch) = &env.to else {
                continue;
            };
            let Some(seq) = &env.seq else {
                continue;
            };
            if self.already_had(ch, seq) {
                continue;
            }
            let ch = ch.clone();
            self.advance(&ch, &env);
            self.replayed.push(Arc::new(env));
        }
    }
}

/// Where a recovery resumes from: subscriptions and the positions of the last
/// publications written to the client.
#[derive(Debug, Clone)]
pub struct ResumeFrom {
    pub subscriptions: Vec<String>,
    pub positions: BTreeMap<String, String>,
    pub seqs: BTreeMap<String, ChannelSeq>,
    pub detached_ms: u64,
}

/// A local session is about to be recovered: hold live publications and say where to
/// replay from, or why it cannot be recovered exactly (it then ends).
#[derive(Message)]
#[rtype(result = "Result<ResumeFrom, String>")]
pub struct Resume;

impl Handler<Resume> for SessionActor {
    type Result = Result<ResumeFrom, String>;

    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(reason) = self.lost.clone() {
            self.end(CloseReason::new(CloseCode::Terminated, reason.clone()), ctx);
            return Err(reason);
        }
        self.replay_hold = Some(Vec::new());
        let (positions, seqs) = self.resume_positions();
        Ok(ResumeFrom {
            subscriptions: self.subscriptions.iter().cloned().collect(),
            positions,
            seqs,
            detached_ms: self.detached_ms,
        })
    }
}
