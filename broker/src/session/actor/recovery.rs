//! Recovery: what a session was handed per channel (positions, sequences, where each
//! subscription started), the record saved for a recovery, the snapshot, restore, replay
//! and resume after a recovery.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{ChannelSeq, Destination, Envelope};
use murmur_shared::ids::{now_ms, SessionId};
use tokio::sync::mpsc;
use tracing::debug;

use crate::metrics::outcome;
use crate::store::RecoveryRecord;

use super::{SessionActor, Transport};

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

impl SessionActor {
    /// Where a recovery replays each channel from: its position, else where its
    /// subscription started.
    pub(super) fn resume_positions(
        &self,
    ) -> (BTreeMap<String, String>, BTreeMap<String, ChannelSeq>) {
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
    pub(super) fn already_had(&self, channel: &str, seq: &str) -> bool {
        self.positions
            .get(channel)
            .is_some_and(|pos| !Envelope::seq_after(seq, pos))
    }

    /// Records `env` as the last publication of its channel handed to the client.
    pub(super) fn advance(&mut self, channel: &str, env: &Envelope) {
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
    pub(super) fn rewind(&mut self, channel: &str, env: &Envelope) {
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
    pub(super) fn save_record(&mut self) {
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

    /// Channel publications pass here: duplicates (by history position) are skipped,
    /// during a replay live ones are held back. A publication with a history position
    /// that finds no transport is left to history: the position stays, and a recovery
    /// replays it (a disconnected client costs no memory per publication).
    pub(super) fn channel_publication(&mut self, env: Arc<Envelope>, ctx: &mut Context<Self>) {
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
}
