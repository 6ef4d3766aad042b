//! The Sink part of the store seam: the deployment's server instance id, each client's
//! last instance id, quarantine, accepted device events (durable before the ACK, and
//! de-duplicated on `(event_type_id, key, offset)`), and each device's durable outbox
//! with its NACK list.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreResult;

/// Bytes stored as base64 text inside JSON records.
pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// One device event (either direction), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkEvent {
    pub event_type_id: u64,
    pub schema_version: u64,
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    pub offset: u64,
    pub timestamp: u64,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

/// An outbox entry: an event for a device, with its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Assigned on push; increasing per client.
    #[serde(default)]
    pub seq: u64,
    pub event: SinkEvent,
    /// The `~timing` decorator of the API request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Value>,
    pub queued_ms: u64,
}

/// An outbox entry the device refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NackedEntry {
    pub entry: OutboxEntry,
    #[serde(with = "b64")]
    pub machine_message: Vec<u8>,
    pub human_message: String,
    pub nacked_ms: u64,
}

/// A quarantine order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    #[serde(with = "b64")]
    pub machine_message: Vec<u8>,
    pub human_message: String,
}

/// The Sink store operations. See the module docs.
pub trait SinkStore: Send + Sync {
    /// The deployment's server instance id: `candidate` if none was set yet.
    fn sink_server_instance(&self, candidate: u32) -> BoxFuture<'_, StoreResult<u32>>;
    /// A client's last instance id.
    fn sink_client_instance(&self, client: &str) -> BoxFuture<'_, StoreResult<Option<u32>>>;
    fn sink_set_client_instance(&self, client: &str, id: u32) -> BoxFuture<'_, StoreResult<()>>;
    /// Sets (`Some`) or lifts (`None`) a quarantine; true if one existed before.
    fn sink_set_quarantine(
        &self,
        client: &str,
        q: Option<Quarantine>,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    fn sink_quarantine(&self, client: &str) -> BoxFuture<'_, StoreResult<Option<Quarantine>>>;
    /// Durably records a device event; false if the same `(type, key, offset)` was
    /// accepted before (a redelivery).
    fn sink_accept(&self, client: &str, event: &SinkEvent) -> BoxFuture<'_, StoreResult<bool>>;
    /// The next offset for `key` in the client's outbox (API events without one).
    fn sink_next_offset(&self, client: &str, key: &[u8]) -> BoxFuture<'_, StoreResult<u64>>;
    /// Appends to the client's outbox; returns the entry's position.
    fn sink_outbox_push(&self, client: &str, entry: OutboxEntry)
        -> BoxFuture<'_, StoreResult<u64>>;
    /// Outbox entries after `after`, oldest first, at most `limit`.
    fn sink_outbox_read(
        &self,
        client: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxEntry>>>;
    /// Removes an entry (ACKed); false if it was not there.
    fn sink_outbox_remove(&self, client: &str, seq: u64) -> BoxFuture<'_, StoreResult<bool>>;
    /// Moves an entry to the NACK list; false if it was not there.
    fn sink_outbox_nack(
        &self,
        client: &str,
        seq: u64,
        machine: Vec<u8>,
        human: String,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// The newest NACKed entries, newest last, at most `limit`.
    fn sink_nacks(
        &self,
        client: &str,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<NackedEntry>>>;
    /// Entries waiting in the outbox.
    fn sink_outbox_depth(&self, client: &str) -> BoxFuture<'_, StoreResult<u64>>;
    /// The highest outbox position ever sent to the device (entries at or below it that
    /// are sent again are redeliveries).
    fn sink_sent_mark(&self, client: &str) -> BoxFuture<'_, StoreResult<u64>>;
    /// Raises the sent mark to `seq` (never lowers it).
    fn sink_raise_sent_mark(&self, client: &str, seq: u64) -> BoxFuture<'_, StoreResult<()>>;
}
