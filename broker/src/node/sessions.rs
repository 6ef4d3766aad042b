//! Sessions: opening fresh ones, recovering them (here or from another node), replaying
//! what they missed.

use std::sync::Arc;

use actix::prelude::*;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Address, Body, Control, Destination, Envelope, Kind};
use murmur_shared::ids::{NodeId, SessionId};
use tracing::warn;

use crate::session::actor::{Attach, Replay, Restore, Resume, ResumeFrom, SessionActor};
use crate::session::{Attachment, OpenError, Protocol, SessionHandle};
use crate::store::RecoveryRecord;

use super::Node;

impl Node {
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
}
