//! Which caller and target channel each recently seen session has, per node: facts a
//! session never changes, so a POST of a request on a session this node has seen
//! before can build its publication up front ([`immediate_publication`]) and have the
//! store check, record and publish it in one step
//! ([`TsStore::ts_post_publish`](crate::store::TsStore::ts_post_publish)). The store
//! checks the target again, so a stale entry can only cost the fast path, never
//! misdeliver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use murmur_shared::channel::INTERNAL_PREFIX;
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::SessionId;
use murmur_shared::timestick::Posted;
use serde_json::Value;

use crate::node::Node;
use crate::session::Protocol;
use crate::store::{ChannelPublication, TsSession};

/// Sessions remembered per node at most; past it the map starts afresh (the next POST
/// of each takes the two-step path once).
pub const CAPACITY: usize = 100_000;

/// A session's fixed facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub caller: String,
    pub channel: String,
}

/// See the module docs. One per node, as an extension.
#[derive(Default)]
pub struct Targets {
    known: Mutex<HashMap<SessionId, Arc<Target>>>,
}

impl Targets {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Target>>> {
        // A panic cannot leave the map half-updated (plain insert/get): keep using it.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered facts of session `id`.
    pub fn get(&self, id: SessionId) -> Option<Arc<Target>> {
        self.known().get(&id).cloned()
    }

    /// Remembers what a session record says.
    pub fn learn(&self, s: &TsSession) {
        let mut known = self.known();
        if known.contains_key(&s.id) {
            return;
        }
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(
            s.id,
            Arc::new(Target {
                caller: s.caller.clone(),
                channel: s.target.clone(),
            }),
        );
    }
}

/// Remembers a session's target for the one-step POST (a clustered node's only).
pub(super) fn learn(node: &Node, s: &TsSession) {
    if let Some(targets) = node
        .extension::<Targets>()
        .filter(|_| node.router.is_clustered())
    {
        targets.learn(s);
    }
}

/// The publication of a request due now on a session whose target this node knows,
/// for the store to make with the record (and the message id it answers); `None`
/// otherwise (embedded node, unknown session, another caller's, not a request).
pub(super) fn immediate_publication(
    node: &Arc<Node>,
    sub: &str,
    id: SessionId,
    message: &Result<Posted, String>,
) -> Option<(ChannelPublication, String)> {
    let Ok(Posted::Request {
        message_id,
        payload,
        timing,
    }) = message
    else {
        return None;
    };
    if !node.router.is_clustered() {
        return None;
    }
    let target = node.extension::<Targets>()?.get(id)?;
    if target.caller != sub || target.channel.starts_with(INTERNAL_PREFIX) {
        return None;
    }
    let env = request_envelope(
        node,
        id,
        &target.caller,
        &target.channel,
        message_id,
        payload.clone(),
        timing.clone(),
    );
    let publication = ChannelPublication {
        channel: target.channel.clone(),
        envelope: env.to_bytes(),
        history: node.config.channel_history,
    };
    Some((publication, message_id.clone()))
}

/// A request as published on its session's target channel.
pub(super) fn request_envelope(
    node: &Node,
    session: SessionId,
    caller: &str,
    target: &str,
    message_id: &str,
    payload: Value,
    timing: Option<Value>,
) -> Envelope {
    Envelope::new(
        node.id(),
        Kind::Notification,
        Destination::Channel(target.to_string()),
        Body::Json(payload),
    )
    .from(Origin {
        session: Some(session),
        user: Some(caller.to_string()),
        protocol: Some(Protocol::TimeStick),
    })
    .correlation(message_id.to_string())
    .subject("timestick.request")
    .timing(timing)
}
