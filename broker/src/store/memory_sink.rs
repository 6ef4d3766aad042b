//! [`SinkStore`] for the in-memory store.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use futures_util::future::BoxFuture;

use super::memory::MemoryStore;
use super::sink::{NackedEntry, OutboxEntry, Quarantine, SinkEvent, SinkStore};
use super::StoreResult;

/// NACKed entries kept per client.
const NACKS_KEPT: usize = 1000;
/// Accepted event identities remembered per client for de-duplication.
const SEEN_KEPT: usize = 100_000;

type EventId = (u64, Vec<u8>, u64);

/// Sink state of the memory store.
#[derive(Default)]
pub(crate) struct SinkState {
    server_instance: Option<u32>,
    client_instances: HashMap<String, u32>,
    quarantine: HashMap<String, Quarantine>,
    /// Accepted event identities per client, oldest evicted beyond [`SEEN_KEPT`].
    seen: HashMap<String, (HashSet<EventId>, VecDeque<EventId>)>,
    offsets: HashMap<(String, Vec<u8>), u64>,
    outbox: HashMap<String, (u64, BTreeMap<u64, OutboxEntry>)>,
    nacks: HashMap<String, VecDeque<NackedEntry>>,
    sent_marks: HashMap<String, u64>,
}

impl SinkStore for MemoryStore {
    fn sink_server_instance(&self, candidate: u32) -> BoxFuture<'_, StoreResult<u32>> {
        self.with_sink(move |s| *s.server_instance.get_or_insert(candidate))
    }

    fn sink_client_instance(&self, client: &str) -> BoxFuture<'_, StoreResult<Option<u32>>> {
        let client = client.to_string();
        self.with_sink(move |s| s.client_instances.get(&client).copied())
    }

    fn sink_set_client_instance(&self, client: &str, id: u32) -> BoxFuture<'_, StoreResult<()>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            s.client_instances.insert(client, id);
        })
    }

    fn sink_set_quarantine(
        &self,
        client: &str,
        q: Option<Quarantine>,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let client = client.to_string();
        self.with_sink(move |s| match q {
            Some(q) => s.quarantine.insert(client, q).is_some(),
            None => s.quarantine.remove(&client).is_some(),
        })
    }

    fn sink_quarantine(&self, client: &str) -> BoxFuture<'_, StoreResult<Option<Quarantine>>> {
        let client = client.to_string();
        self.with_sink(move |s| s.quarantine.get(&client).cloned())
    }

    fn sink_accept(&self, client: &str, event: &SinkEvent) -> BoxFuture<'_, StoreResult<bool>> {
        let client = client.to_string();
        let identity = (event.event_type_id, event.key.clone(), event.offset);
        self.with_sink(move |s| {
            let (set, order) = s.seen.entry(client).or_default();
            if !set.insert(identity.clone()) {
                return false;
            }
            order.push_back(identity);
            if order.len() > SEEN_KEPT {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
            true
        })
    }

    fn sink_next_offset(&self, client: &str, key: &[u8]) -> BoxFuture<'_, StoreResult<u64>> {
        let k = (client.to_string(), key.to_vec());
        self.with_sink(move |s| {
            let next = s.offsets.entry(k).or_insert(0);
            *next += 1;
            *next
        })
    }

    fn sink_outbox_push(
        &self,
        client: &str,
        mut entry: OutboxEntry,
    ) -> BoxFuture<'_, StoreResult<u64>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            let (seq, q) = s.outbox.entry(client).or_default();
            *seq += 1;
            entry.seq = *seq;
            q.insert(*seq, entry);
            *seq
        })
    }

    fn sink_outbox_read(
        &self,
        client: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEntry>>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            s.outbox.get(&client).map_or_else(Vec::new, |(_, q)| {
                q.range(after + 1..)
                    .take(limit)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
        })
    }

    fn sink_outbox_remove(&self, client: &str, seq: u64) -> BoxFuture<'_, StoreResult<bool>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            s.outbox
                .get_mut(&client)
                .is_some_and(|(_, q)| q.remove(&seq).is_some())
        })
    }

    fn sink_outbox_nack(
        &self,
        client: &str,
        seq: u64,
        machine: Vec<u8>,
        human: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            let Some(entry) = s.outbox.get_mut(&client).and_then(|(_, q)| q.remove(&seq)) else {
                return false;
            };
            let list = s.nacks.entry(client).or_default();
            list.push_back(NackedEntry {
                entry,
                machine_message: machine,
                human_message: human,
                nacked_ms: murmur_shared::ids::now_ms(),
            });
            while list.len() > NACKS_KEPT {
                list.pop_front();
            }
            true
        })
    }

    fn sink_nacks(
        &self,
        client: &str,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<NackedEntry>>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            s.nacks.get(&client).map_or_else(Vec::new, |l| {
                let skip = l.len().saturating_sub(limit);
                l.iter().skip(skip).cloned().collect()
            })
        })
    }

    fn sink_sent_mark(&self, client: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let client = client.to_string();
        self.with_sink(move |s| s.sent_marks.get(&client).copied().unwrap_or(0))
    }

    fn sink_raise_sent_mark(&self, client: &str, seq: u64) -> BoxFuture<'_, StoreResult<()>> {
        let client = client.to_string();
        self.with_sink(move |s| {
            let mark = s.sent_marks.entry(client).or_insert(0);
            *mark = (*mark).max(seq);
        })
    }

    fn sink_outbox_depth(&self, client: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let client = client.to_string();
        self.with_sink(move |s| s.outbox.get(&client).map_or(0, |(_, q)| q.len() as u64))
    }
}
