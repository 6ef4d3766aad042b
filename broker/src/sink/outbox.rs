//! One device connection's outbox pump, and what the connection remembers of the
//! device's own PUBLISHes: the store-facing half of a Sink session. The gateway holds an
//! [`Outbox`] per open connection; it decodes frames, asks the outbox what to send and
//! what to answer, and writes the bytes. It never reads the store itself.
//!
//! * [`Outbox::open`]: a device was accepted: observes its outbox depth
//!   (`murmur_sink_outbox_depth`) and reads its sent mark (the highest position ever sent
//!   to it, on any connection).
//! * [`Outbox::next`]: the next outbox entries to send, at most the free room of the
//!   [`WINDOW`], each under a fresh message id. Entries whose `~timing` expired while
//!   waiting are removed and never sent; one at or below the sent mark is a redelivery.
//!   Counts `murmur_sink_events_total{out,sent|redelivered}` and the delivery latency,
//!   and raises the sent mark.
//! * [`Outbox::answered`]: the device's ACK (the entry leaves the outbox) or NACK (it
//!   moves to the NACK list) of one of those.
//! * [`Outbox::accept`]: a device PUBLISH, durably accepted (`sink::accept`); the
//!   resend of a PUBLISH whose earlier attempt met a store error is published even if
//!   the store finds it a duplicate (the timed-out write may have landed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::sink::{self as wire, Event};

use super::LABEL;
use crate::metrics::outcome;
use crate::node::Node;
use crate::store::StoreError;

/// PUBLISHes to a device awaiting its ACK/NACK at most, per connection.
pub const WINDOW: usize = 32;
/// Identities of device PUBLISHes met by a store error a connection remembers at most.
pub const NACKED_KEPT: usize = 64;

/// An outbox entry to send now: the PUBLISH's message id and its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: u16,
    pub event: Event,
}

/// The device's answer to one of the pump's PUBLISHes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ack,
    Nack { machine: Vec<u8>, human: String },
}

/// One connection's outbox pump. See the module docs.
pub struct Outbox {
    node: Arc<Node>,
    client: String,
    /// The connection's session (the origin of the device's publications).
    session: SessionId,
    next_id: u16,
    /// Highest outbox position handed out on this connection.
    sent_upto: u64,
    /// Message id → outbox position, awaiting ACK/NACK.
    inflight: HashMap<u16, u64>,
    /// Highest position ever sent to this client (any connection): at or below it, a
    /// send is a redelivery.
    sent_mark: u64,
    /// Device PUBLISHes met by a store error on this connection and not accepted since.
    unavailable: Remembered,
}

impl Outbox {
    /// The pump of a device just accepted on session `session`. A store that is away
    /// leaves the depth unobserved and the sent mark at 0 (sends then count as new).
    pub async fn open(node: &Arc<Node>, client: &str, session: SessionId) -> Outbox {
        let store = node.store();
        if let Ok(depth) = store.sink_outbox_depth(client).await {
            node.metrics.sink_outbox_depth.observe(depth as f64);
        }
        let sent_mark = store.sink_sent_mark(client).await.unwrap_or(0);
        Outbox {
            node: node.clone(),
            client: client.to_string(),
            session,
            next_id: super::random_message_id(),
            sent_upto: 0,
            inflight: HashMap::new(),
            sent_mark,
            unavailable: Remembered::default(),
        }
    }

    /// The device's client id.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// PUBLISHes sent on this connection and awaiting ACK/NACK.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// How many more PUBLISHes the window takes now.
    pub fn room(&self) -> usize {
        WINDOW.saturating_sub(self.inflight.len())
    }

    /// The next entries to send, oldest first, at most [`Outbox::room`]; each is in
    /// flight from now on (counted sent). Empty when the window is full or the outbox is
    /// drained. Expired entries met on the way are removed. On a store error nothing more
    /// is handed out now; the caller tries again on the next wake or answer.
    pub async fn next(&mut self) -> Result<Vec<Outgoing>, StoreError> {
        let mut out = Vec::new();
        while out.is_empty() {
            let room = self.room();
            if room == 0 {
                break;
            }
            let batch = self
                .node
                .store()
                .sink_outbox_read(&self.client, self.sent_upto, room)
                .await?;
            if batch.is_empty() {
                break;
            }
            for entry in batch {
                self.sent_upto = entry.seq;
                if !self.node.metrics.deliverable(LABEL, entry.timing.as_ref()) {
                    // Expired while waiting in the outbox: dropped, never delivered.
                    let _ = self
                        .node
                        .store()
                        .sink_outbox_remove(&self.client, entry.seq)
                        .await;
                    continue;
                }
                let id = self.next_id;
                self.next_id = wire::next_id(id);
                self.inflight.insert(id, entry.seq);
                let metrics = &self.node.metrics;
                if entry.seq <= self.sent_mark {
                    metrics
                        .sink_events
                        .with_label_values(&["out", "redelivered"])
                        .inc();
                }
                metrics
                    .sink_events
                    .with_label_values(&["out", "sent"])
                    .inc();
                let latency = now_ms().saturating_sub(entry.queued_ms) as f64 / 1000.0;
                metrics
                    .delivery_latency
                    .with_label_values(&[LABEL])
                    .observe(latency);
                out.push(Outgoing {
                    id,
                    event: super::wire(&entry.event),
                });
            }
            if self.sent_upto > self.sent_mark {
                self.sent_mark = self.sent_upto;
                let _ = self
                    .node
                    .store()
                    .sink_raise_sent_mark(&self.client, self.sent_mark)
                    .await;
            }
        }
        Ok(out)
    }

    /// The device answered PUBLISH `id`: an ACKed entry leaves the outbox, a NACKed one
    /// moves to the NACK list with its messages. False for an id not in flight (nothing
    /// done). The answer frees its place in the window and is counted even when the
    /// store then fails (the entry stays in the outbox: it is redelivered on the next
    /// connection).
    pub async fn answered(&mut self, id: u16, answer: Answer) -> Result<bool, StoreError> {
        let Some(seq) = self.inflight.remove(&id) else {
            return Ok(false);
        };
        let store = self.node.store();
        let (delivery, event, stored) = match answer {
            Answer::Ack => (
                outcome::ACKED,
                "acked",
                store.sink_outbox_remove(&self.client, seq).await,
            ),
            Answer::Nack { machine, human } => (
                outcome::NACKED,
                "nacked",
                store
                    .sink_outbox_nack(&self.client, seq, machine, human)
                    .await,
            ),
        };
        self.node.metrics.delivery(LABEL, delivery);
        self.node
            .metrics
            .sink_events
            .with_label_values(&["out", event])
            .inc();
        stored.map(|_| true)
    }

    /// A device PUBLISH: `Ok` once durably accepted (true if new, false for a
    /// redelivery), so the caller may ACK; a store error is the caller's NACK `02`, and
    /// this connection remembers the event's identity: its resend is published even if
    /// the store finds a duplicate.
    pub async fn accept(&mut self, event: &Event) -> Result<bool, StoreError> {
        let tag = identity_tag(event);
        let resent = self.unavailable.contains(tag);
        match super::accept(&self.node, &self.client, self.session, event, resent).await {
            Ok(new) => {
                self.unavailable.forget(tag);
                Ok(new)
            }
            Err(e) => {
                self.unavailable.remember(tag);
                self.node
                    .metrics
                    .sink_events
                    .with_label_values(&["in", "unavailable"])
                    .inc();
                Err(e)
            }
        }
    }
}

/// A bounded set of event identities, oldest forgotten first ([`NACKED_KEPT`]).
#[derive(Debug, Default)]
struct Remembered(VecDeque<u64>);

impl Remembered {
    fn contains(&self, tag: u64) -> bool {
        self.0.contains(&tag)
    }

    fn remember(&mut self, tag: u64) {
        if self.contains(tag) {
            return;
        }
        if self.0.len() == NACKED_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(tag);
    }

    fn forget(&mut self, tag: u64) {
        self.0.retain(|t| *t != tag);
    }
}

/// A hash of an event's identity `(event_type_id, key, offset)`.
fn identity_tag(event: &Event) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (event.event_type_id, &event.key, event.offset).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use murmur_shared::ids::NodeId;
    use serde_json::json;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::session::Protocol;
    use crate::sink::{enqueue, event_channel, nacks, status, ClientStatus};
    use crate::store::sink::SinkEvent;

    /// An embedded node: the memory store behind it.
    async fn node() -> Arc<Node> {
        Node::embedded(BrokerConfig::new(NodeId("sink-outbox-test".into()))).await
    }

    fn event(n: u64) -> SinkEvent {
        SinkEvent {
            event_type_id: 7,
            schema_version: 1,
            key: b"k".to_vec(),
            offset: n,
            timestamp: 1_700_000_000,
            data: vec![n as u8; 3],
        }
    }

    /// Queues `event(n)` (offset `n`) in the outbox; returns its position.
    async fn queue(
        node: &Arc<Node>,
        client: &str,
        n: u64,
        timing: Option<serde_json::Value>,
    ) -> u64 {
        let (seq, offset) = enqueue(node, client, event(n), Some(n), timing, None)
            .await
            .unwrap();
        assert_eq!(offset, n);
        seq.unwrap()
    }

    fn count(node: &Node, direction: &str, outcome: &str) -> u64 {
        node.metrics
            .sink_events
            .with_label_values(&[direction, outcome])
            .get()
    }

    fn offsets(batch: &[Outgoing]) -> Vec<u64> {
        batch.iter().map(|o| o.event.offset).collect()
    }

    #[actix_rt::test]
    async fn the_window_bounds_what_is_in_flight_and_answers_free_it() {
        let node = node().await;
        let client = "dev-window";
        let total = WINDOW as u64 + 8;
        for n in 0..total {
            queue(&node, client, n, None).await;
        }
        let mut outbox = Outbox::open(&node, client, SessionId::random()).await;
        assert_eq!(outbox.client(), client);
        let first = outbox.next().await.unwrap();
        assert_eq!(offsets(&first), (0..WINDOW as u64).collect::<Vec<_>>());
        assert_eq!(first[3].event, crate::sink::wire(&event(3)));
        for pair in first.windows(2) {
            assert_eq!(pair[1].id, wire::next_id(pair[0].id), "ids in sequence");
        }
        assert_eq!((outbox.inflight(), outbox.room()), (WINDOW, 0));
        assert!(
            outbox.next().await.unwrap().is_empty(),
            "the window is full"
        );

        // An ACK frees one place: the next entry goes out; an unknown id does nothing.
        assert_eq!(outbox.answered(first[0].id, Answer::Ack).await, Ok(true));
        assert_eq!(outbox.answered(first[0].id, Answer::Ack).await, Ok(false));
        let unknown = wire::next_id(first[WINDOW - 1].id);
        assert_eq!(outbox.answered(unknown, Answer::Ack).await, Ok(false));
        let next = outbox.next().await.unwrap();
        assert_eq!(offsets(&next), vec![WINDOW as u64]);
        assert_eq!(next[0].id, unknown, "the id after the last one sent");
        assert_eq!(
            status(&node, client).await,
            Ok(ClientStatus {
                outbox_depth: total - 1,
                quarantined: false
            })
        );

        // A NACK moves the entry to the NACK list with the device's messages.
        let nack = Answer::Nack {
            machine: vec![9, 9],
            human: "schema unknown".into(),
        };
        assert_eq!(outbox.answered(first[1].id, nack).await, Ok(true));
        let list = nacks(&node, client).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].entry.event, event(1));
        assert_eq!(
            (
                list[0].machine_message.as_slice(),
                list[0].human_message.as_str()
            ),
            (&[9u8, 9][..], "schema unknown")
        );
        assert_eq!(status(&node, client).await.unwrap().outbox_depth, total - 2);
        assert_eq!(
            offsets(&outbox.next().await.unwrap()),
            vec![WINDOW as u64 + 1]
        );

        assert_eq!(count(&node, "out", "sent"), WINDOW as u64 + 2);
        assert_eq!(count(&node, "out", "acked"), 1);
        assert_eq!(count(&node, "out", "nacked"), 1);
        assert_eq!(count(&node, "out", "redelivered"), 0);
    }

    #[actix_rt::test]
    async fn a_new_connection_redelivers_what_was_not_answered() {
        let node = node().await;
        let client = "dev-again";
        for n in 0..3 {
            queue(&node, client, n, None).await;
        }
        let mut first = Outbox::open(&node, client, SessionId::random()).await;
        let sent = first.next().await.unwrap();
        assert_eq!(offsets(&sent), vec![0, 1, 2]);
        first.answered(sent[0].id, Answer::Ack).await.unwrap();
        drop(first);
        let last = queue(&node, client, 3, None).await;

        let mut second = Outbox::open(&node, client, SessionId::random()).await;
        let again = second.next().await.unwrap();
        assert_eq!(offsets(&again), vec![1, 2, 3], "the unanswered ones first");
        assert_eq!(
            count(&node, "out", "redelivered"),
            2,
            "at or below the sent mark"
        );
        assert_eq!(node.store().sink_sent_mark(client).await, Ok(last));
        assert_eq!(count(&node, "out", "sent"), 6);
    }

    #[actix_rt::test]
    async fn entries_expired_in_the_outbox_are_removed_and_never_sent() {
        let node = node().await;
        let client = "dev-expired";
        let past = murmur_shared::timing::format(now_ms() as i64 - 60_000);
        // A whole window of expired entries, then a stale one and a plain one: the pump
        // reads past the expired batch.
        for n in 0..WINDOW as u64 {
            queue(&node, client, n, Some(json!({"expires_time": past}))).await;
        }
        let stale = WINDOW as u64;
        queue(&node, client, stale, Some(json!({"stale_time": past}))).await;
        queue(&node, client, stale + 1, None).await;
        let mut outbox = Outbox::open(&node, client, SessionId::random()).await;
        let batch = outbox.next().await.unwrap();
        assert_eq!(offsets(&batch), vec![stale, stale + 1]);
        assert_eq!(status(&node, client).await.unwrap().outbox_depth, 2);
        let timing = |kind: &str| node.metrics.timing.with_label_values(&[LABEL, kind]).get();
        assert_eq!((timing("expired"), timing("stale")), (WINDOW as u64, 1));
        assert!(outbox.next().await.unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn a_device_event_is_published_once_and_its_redelivery_is_acknowledged_only() {
        let node = node().await;
        let client = "dev-publish";
        let (listener, mut attachment) =
            node.open("backend", Protocol::Helios, false).await.unwrap();
        listener.subscribe(&event_channel(client)).await.unwrap();
        let mut outbox = Outbox::open(&node, client, SessionId::random()).await;
        let wire_event = |n| crate::sink::wire(&event(n));
        assert_eq!(outbox.accept(&wire_event(1)).await, Ok(true));
        assert_eq!(
            outbox.accept(&wire_event(1)).await,
            Ok(false),
            "a redelivery"
        );
        assert_eq!(outbox.accept(&wire_event(2)).await, Ok(true));
        assert_eq!(
            (
                count(&node, "in", "accepted"),
                count(&node, "in", "duplicate")
            ),
            (2, 1)
        );
        // Publications arrive in order: the one after the first is the second event's,
        // so the redelivery was not published.
        for offset in [1, 2] {
            let env = tokio::time::timeout(Duration::from_secs(5), attachment.outbound.recv())
                .await
                .expect("a publication")
                .expect("the session is open");
            let body = env.json();
            assert_eq!(body["offset"], offset, "{body}");
            assert_eq!(body["client"], client);
        }
    }

    #[test]
    fn remembered_identities_are_bounded_and_forgotten_once_accepted() {
        let mut r = Remembered::default();
        for tag in 0..NACKED_KEPT as u64 + 2 {
            r.remember(tag);
            r.remember(tag);
        }
        assert_eq!(r.0.len(), NACKED_KEPT, "no duplicates, bounded");
        assert!(
            !r.contains(0) && !r.contains(1),
            "the oldest forgotten first"
        );
        assert!(r.contains(2) && r.contains(NACKED_KEPT as u64 + 1));
        r.forget(2);
        assert!(!r.contains(2));
    }

    #[test]
    fn an_identity_is_type_key_and_offset() {
        let e = crate::sink::wire(&event(5));
        let mut other_data = e.clone();
        other_data.data = b"else".to_vec();
        other_data.timestamp += 1;
        assert_eq!(identity_tag(&e), identity_tag(&other_data));
        let mut other_offset = e.clone();
        other_offset.offset += 1;
        assert_ne!(identity_tag(&e), identity_tag(&other_offset));
    }
}
