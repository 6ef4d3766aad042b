//! Channel subscriptions and provided namespaces of a session, mirrored into the
//! registry and the store.

use actix::prelude::*;
use murmur_shared::envelope::Envelope;

use super::{Protocol, SessionError};
use crate::store::ProviderEntry;

use super::SessionActor;

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

impl SessionActor {
    pub(super) fn spawn_store_remove_provider(&self, ns: String) {
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

    pub(super) fn spawn_store_add_provider(&self, ns: String) {
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
}
