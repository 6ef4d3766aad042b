//! Which caller and target channel each recently seen session has, per node: facts a
//! session never changes, so a POST of a request on a session this node has seen
//! before can build its publication up front and have the store check, record and
//! publish it in one step ([`TsStore::ts_post_publish`](crate::store::TsStore::ts_post_publish)).
//! The store checks the target again, so a stale entry can only cost the fast path,
//! never misdeliver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use murmur_shared::ids::SessionId;

use crate::store::TsSession;

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
