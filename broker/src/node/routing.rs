//! Routing: publications, held publications, locating sessions, picking providers (with a
//! short cache), backend calls to sessions.

use std::sync::Arc;
use std::time::Duration;

use murmur_shared::envelope::{Address, Body, Control, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::{now_ms, NodeId, SessionId};
use serde_json::Value;
use uuid::Uuid;

use crate::store::ProviderEntry;

use super::{Node, PROVIDER_CACHE_TTL};

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

impl Node {
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
}
