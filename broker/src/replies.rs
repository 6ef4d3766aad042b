//! Reply slots: a backend API call that waits for a client's answer registers a slot,
//! sends its request with `reply_to = (this node, Reply(slot))`, and awaits the slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use murmur_shared::envelope::Envelope;
use tokio::sync::oneshot;

/// The node's table of open reply slots.
#[derive(Default)]
pub struct Replies {
    next: AtomicU64,
    slots: Mutex<HashMap<u64, oneshot::Sender<Arc<Envelope>>>>,
}

/// An open slot; dropping it closes the slot.
pub struct ReplySlot {
    pub id: u64,
    rx: oneshot::Receiver<Arc<Envelope>>,
    owner: Arc<Replies>,
}

impl Replies {
    /// Opens a new slot.
    pub fn open(self: &Arc<Self>) -> ReplySlot {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        ReplySlot {
            id,
            rx,
            owner: self.clone(),
        }
    }

    /// Completes a slot; returns false when nobody waits for it any more.
    pub fn complete(&self, id: u64, env: Arc<Envelope>) -> bool {
        match self.lock().remove(&id) {
            Some(tx) => tx.send(env).is_ok(),
            None => false,
        }
    }

    /// Open slots (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Arc<Envelope>>>> {
        // unwrap: the lock is never held across a panic point (plain map operations).
        self.slots.lock().unwrap()
    }
}

impl ReplySlot {
    /// Waits for the answer; `None` when the slot was dropped by the node.
    pub async fn wait(&mut self) -> Option<Arc<Envelope>> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_shared::envelope::{Body, Destination, Kind};
    use murmur_shared::ids::NodeId;

    fn env() -> Arc<Envelope> {
        Arc::new(Envelope::new(
            &NodeId("n".into()),
            Kind::Response,
            Destination::Reply(1),
            Body::Json(serde_json::Value::Null),
        ))
    }

    #[actix_rt::test]
    async fn a_slot_receives_its_answer_once() {
        let replies = Arc::new(Replies::default());
        let mut slot = replies.open();
        assert!(replies.complete(slot.id, env()));
        assert!(slot.wait().await.is_some());
        assert!(!replies.complete(slot.id, env()), "a slot answers once");
    }

    #[actix_rt::test]
    async fn dropping_a_slot_frees_it() {
        let replies = Arc::new(Replies::default());
        let slot = replies.open();
        let id = slot.id;
        assert_eq!(replies.len(), 1);
        drop(slot);
        assert!(replies.is_empty());
        assert!(!replies.complete(id, env()));
    }
}
