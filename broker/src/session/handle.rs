//! The handle the gateway holds for one session: async methods, no actor types.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use murmur_shared::close::CloseReason;
use murmur_shared::envelope::{Envelope, ErrorBody, Origin};
use murmur_shared::helios;
use murmur_shared::ids::SessionId;
use serde_json::Value;
use uuid::Uuid;

use super::actor::{
    Call, CancelCall, Detach, End, GetSnapshot, Progress, Provide, Respond, SessionActor, Snapshot,
    Subscribe, Unprovide, Unsubscribe,
};
use super::{CallError, Protocol, SessionError};
use crate::node::Node;
use crate::store::ProviderEntry;

/// How long `subscribe` waits for the bus to confirm a new channel subscription.
const SUBSCRIBE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);

/// See the module docs. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    pub(crate) id: SessionId,
    pub(crate) user: Arc<str>,
    pub(crate) protocol: Protocol,
    pub(crate) addr: Addr<SessionActor>,
    pub(crate) node: Arc<Node>,
}

impl SessionHandle {
    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    fn origin(&self) -> Origin {
        Origin {
            session: Some(self.id),
            user: Some(self.user.to_string()),
            protocol: Some(self.protocol),
        }
    }

    /// Joins a channel; `Ok(false)` if already a member. Returns once the node really
    /// receives the channel (cluster mode: Redis confirmed the subscription).
    pub async fn subscribe(&self, channel: &str) -> Result<bool, SessionError> {
        // Read before joining, so whatever a recovery must replay comes after it.
        let start = match self.protocol {
            Protocol::Helios => self.node.store().history_last(channel).await.ok().flatten(),
            _ => None,
        };
        let added = self
            .addr
            .send(Subscribe(channel.to_string(), start))
            .await
            .map_err(|_| SessionError::Gone)??;
        let bus = self.node.router.bus();
        if !bus
            .wait_subscribed(channel, SUBSCRIBE_CONFIRM_TIMEOUT)
            .await
            && bus.is_up()
        {
            return Err(SessionError::Unavailable(
                "the cluster bus did not confirm the subscription".into(),
            ));
        }
        Ok(added)
    }

    /// Leaves a channel; false if not a member.
    pub async fn unsubscribe(&self, channel: &str) -> Result<bool, SessionError> {
        self.addr
            .send(Unsubscribe(channel.to_string()))
            .await
            .map_err(|_| SessionError::Gone)
    }

    /// Publishes on a channel from this session (held until `deliver_at` if given);
    /// returns the message id.
    pub async fn publish(
        &self,
        channel: &str,
        data: Value,
        timing: Option<Value>,
        deliver_at: Option<i64>,
    ) -> Result<Uuid, SessionError> {
        self.node
            .publish_at(channel, data, timing, self.origin(), deliver_at)
            .await
            .map_err(|e| SessionError::Unavailable(e.to_string()))
    }

    /// Starts serving a namespace; `Ok(false)` if already served.
    pub async fn provide(&self, ns: &str) -> Result<bool, SessionError> {
        let added = self
            .addr
            .send(Provide(ns.to_string()))
            .await
            .map_err(|_| SessionError::Gone)??;
        // Answer only once other nodes can route to this provider (the store has it). If
        // the store is away, local routing works now and the entry is re-announced when
        // the bus reconnects.
        self.announce_provider(ns).await;
        Ok(added)
    }

    /// Writes this session's provider entry for `ns` to the store, awaiting it.
    async fn announce_provider(&self, ns: &str) {
        let entry = ProviderEntry {
            session: self.id,
            node: self.node.id().clone(),
        };
        if self.node.store().add_provider(ns, entry).await.is_err() {
            self.node
                .metrics
                .store_errors
                .with_label_values(&["add_provider"])
                .inc();
        }
    }

    /// Announces every namespace this session provides (after a recovery).
    pub async fn announce_provides(&self) -> Result<(), SessionError> {
        for ns in self.snapshot().await?.provides {
            self.announce_provider(&ns).await;
        }
        Ok(())
    }

    /// Stops serving a namespace; false if it was not served.
    pub async fn unprovide(&self, ns: &str) -> Result<bool, SessionError> {
        self.addr
            .send(Unprovide(ns.to_string()))
            .await
            .map_err(|_| SessionError::Gone)
    }

    /// Sends an RPC request to a provider of the method's namespace. The response (or
    /// `REQUEST_TIMEOUT` / `REQUEST_CANCELLED`) arrives later on the outbound queue with
    /// `correlation == request_id`.
    pub async fn call(
        &self,
        request_id: &str,
        method: &str,
        payload: Value,
        timeout: Duration,
        timing: Option<Value>,
        deliver_at: Option<i64>,
    ) -> Result<(), CallError> {
        let provider = self
            .node
            .pick_provider(helios::namespace(method))
            .await
            .ok_or(CallError::NoProvider)?;
        let call = Call {
            request_id: request_id.to_string(),
            method: method.to_string(),
            payload,
            timeout,
            timing,
            provider,
            deliver_at,
        };
        self.addr.send(call).await.map_err(|_| CallError::Gone)?
    }

    /// Cancels a pending call; false if it is not pending.
    pub async fn cancel(&self, request_id: &str) -> bool {
        self.addr
            .send(CancelCall(request_id.to_string()))
            .await
            .unwrap_or(false)
    }

    /// Answers a request this session's client was sent; false if the id is unknown.
    pub async fn respond(
        &self,
        id: &str,
        outcome: Result<Value, ErrorBody>,
        timing: Option<Value>,
    ) -> bool {
        self.addr
            .send(Respond {
                id: id.to_string(),
                outcome,
                timing,
            })
            .await
            .unwrap_or(false)
    }

    /// Forwards a progress notification for a request being served; false if unknown.
    pub async fn progress(&self, id: &str, topic: Option<String>, data: Value) -> bool {
        self.addr
            .send(Progress {
                id: id.to_string(),
                topic,
                data,
            })
            .await
            .unwrap_or(false)
    }

    /// The session's state now.
    pub async fn snapshot(&self) -> Result<Snapshot, SessionError> {
        self.addr
            .send(GetSnapshot)
            .await
            .map_err(|_| SessionError::Gone)
    }

    /// The transport of attachment `epoch` is gone (the client disconnected).
    pub fn detach(&self, epoch: u64) {
        self.detach_with(epoch, Vec::new());
    }

    /// As [`detach`](Self::detach), handing back envelopes the transport took but never
    /// wrote; a recoverable session delivers them first on recovery.
    pub fn detach_with(&self, epoch: u64, unsent: Vec<Arc<Envelope>>) {
        self.addr.do_send(Detach(epoch, unsent));
    }

    /// Ends the session now (no recovery).
    pub fn end(&self, reason: CloseReason) {
        self.addr.do_send(End(reason));
    }
}
