//! Sink on the broker (CONTRACT §6): the handshake decision, durable acceptance of
//! device events, device outboxes (queued by the API, held by `~timing`, pumped to a
//! connection by [`outbox`]), NACK lists and quarantine. The gateway owns the sockets,
//! the frame codec and the frame loop, and holds one [`Outbox`] per open connection;
//! everything that must outlive a connection or a node is in the store, and only this
//! module reads it for Sink.
//!
//! Each connected device is a session subscribed to its control channel
//! `@sink/<client id>`, which carries `sink.takeover` (a newer connection of the same
//! client, on any node), `sink.quarantine` and `sink.wake` (its outbox has news).

pub mod outbox;

pub use outbox::{Answer, Outbox, Outgoing};

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use murmur_shared::channel::{INTERNAL_PREFIX, SINK_PREFIX};
use murmur_shared::envelope::{Body, Destination, Envelope, Kind, Origin};
use murmur_shared::ids::{now_ms, SessionId};
use murmur_shared::sink::{ConnectionResponse, Event};
use serde_json::{json, Value};

use crate::node::Node;
use crate::scheduler::{self, DueHandler, Job};
use crate::session::Protocol;
use crate::store::sink::{NackedEntry, OutboxEntry, Quarantine, SinkEvent};
use crate::store::StoreError;

/// The metrics label.
pub const LABEL: &str = "sink";
/// NACKed entries [`nacks`] lists at most.
pub const NACKS_LISTED: usize = 1000;

/// The signals on a device's control channel (the envelope subject, written and read only
/// through this enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkControl {
    /// A newer connection of the device took over: older ones let go.
    Takeover,
    /// The device is quarantined: its connections close with the quarantine answer.
    Quarantine,
    /// The outbox has something new.
    Wake,
}

impl SinkControl {
    const ALL: [SinkControl; 3] = [
        SinkControl::Takeover,
        SinkControl::Quarantine,
        SinkControl::Wake,
    ];

    /// Its envelope subject on the control channel.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkControl::Takeover => "sink.takeover",
            SinkControl::Quarantine => "sink.quarantine",
            SinkControl::Wake => "sink.wake",
        }
    }

    /// The signal an envelope subject names, if any.
    pub fn parse(subject: Option<&str>) -> Option<SinkControl> {
        let subject = subject?;
        Self::ALL.into_iter().find(|c| c.as_str() == subject)
    }
}

/// The protocol versions the server speaks.
pub const PROTOCOL_VERSION: u8 = 0;

/// A device's control channel.
pub fn control_channel(client: &str) -> String {
    format!("{INTERNAL_PREFIX}sink/{client}")
}

/// The public channel a device's events are published on.
pub fn event_channel(client: &str) -> String {
    format!("{SINK_PREFIX}{client}")
}

/// What a device said in its connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    pub application_version: String,
    pub client_instance_id: u32,
    pub server_instance_id: Option<u32>,
}

/// Parses an application version leniently (`v1.2.3`, `1.2`, `1`), as semver.
pub fn parse_app_version(text: &str) -> Option<semver::Version> {
    let t = text.trim().trim_start_matches(['v', 'V']);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let parts: Vec<&str> = t.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut nums = [0u64; 3];
    for (i, p) in parts.iter().enumerate() {
        nums[i] = p.parse().ok()?;
    }
    Some(semver::Version::new(nums[0], nums[1], nums[2]))
}

/// The handshake decision (ORIGINS.md, Sink): protocol version, then quarantine, then
/// application version, then the instance-id table. Records a new client's instance id.
pub async fn handshake(
    node: &Arc<Node>,
    client: &str,
    hello: &Hello,
    min_app: Option<&semver::Version>,
) -> Result<ConnectionResponse, StoreError> {
    if hello.version != PROTOCOL_VERSION {
        return Ok(ConnectionResponse::UnsupportedProtocolVersion);
    }
    let store = node.store();
    if let Some(q) = store.sink_quarantine(client).await? {
        return Ok(ConnectionResponse::Quarantined {
            machine: q.machine_message,
            human: q.human_message,
        });
    }
    if let Some(min) = min_app {
        let ok = parse_app_version(&hello.application_version).is_some_and(|v| v >= *min);
        if !ok {
            return Ok(ConnectionResponse::UnsupportedApplicationVersion);
        }
    }
    let server = store.sink_server_instance(rand_u32()).await?;
    let known = store.sink_client_instance(client).await?;
    let c = hello.client_instance_id;
    Ok(match (known, hello.server_instance_id) {
        (Some(k), Some(s)) if k == c && s == server => ConnectionResponse::Connected,
        (None, None) => {
            store.sink_set_client_instance(client, c).await?;
            ConnectionResponse::HelloNewClient(server)
        }
        (Some(k), None) if k == c => ConnectionResponse::HelloNewClient(server),
        _ => ConnectionResponse::InstanceIdMismatch,
    })
}

fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4().into_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A random starting message id (ids start at a random value per direction).
pub fn random_message_id() -> u16 {
    (rand_u32() & 0x0fff) as u16
}

/// The stored form of a wire event.
pub fn stored(e: &Event) -> SinkEvent {
    SinkEvent {
        event_type_id: e.event_type_id,
        schema_version: e.schema_version,
        key: e.key.clone(),
        offset: e.offset,
        timestamp: e.timestamp,
        data: e.data.clone(),
    }
}

/// The wire form of a stored event.
pub fn wire(e: &SinkEvent) -> Event {
    Event {
        event_type_id: e.event_type_id,
        schema_version: e.schema_version,
        key: e.key.clone(),
        offset: e.offset,
        timestamp: e.timestamp,
        data: e.data.clone(),
    }
}

/// The JSON form of an event (API, channel publications): bytes as base64.
pub fn event_json(e: &SinkEvent) -> Value {
    json!({
        "event_type_id": e.event_type_id,
        "schema_version": e.schema_version,
        "key": STANDARD.encode(&e.key),
        "offset": e.offset,
        "timestamp": e.timestamp,
        "event_data": STANDARD.encode(&e.data),
    })
}

/// A device PUBLISH: durably accepted (the caller ACKs only after this returns `Ok`),
/// then, if it is not a redelivery, published on `sink/<client>` for every protocol.
/// Connections call it through [`Outbox::accept`].
///
/// `resent_after_error`: the caller answered an earlier attempt of this identity with a
/// store error (NACK `02`). A command that timed out may still have run in Redis after
/// the node gave up on it (a stalled Redis), storing the event without its publication;
/// so a duplicate is published too in that case.
async fn accept(
    node: &Arc<Node>,
    client: &str,
    session: SessionId,
    event: &Event,
    resent_after_error: bool,
) -> Result<bool, StoreError> {
    let stored = stored(event);
    let new = node.store().sink_accept(client, &stored).await?;
    let outcome = if new { "accepted" } else { "duplicate" };
    node.metrics
        .sink_events
        .with_label_values(&["in", outcome])
        .inc();
    if new || resent_after_error {
        let mut body = event_json(&stored);
        body["client"] = json!(client);
        let env = Envelope::new(
            node.id(),
            Kind::Notification,
            Destination::Channel(event_channel(client)),
            Body::Json(body),
        )
        .from(Origin {
            session: Some(session),
            user: Some(client.to_string()),
            protocol: Some(crate::session::Protocol::Sink),
        })
        .subject("sink.event");
        node.router.publish(env);
    }
    Ok(new)
}

/// Publishes a control message on a device's control channel (every node).
pub fn signal(
    node: &Node,
    client: &str,
    signal: SinkControl,
    from: Option<SessionId>,
    body: Value,
) {
    let env = Envelope::new(
        node.id(),
        Kind::Message,
        Destination::Channel(control_channel(client)),
        Body::Json(body),
    )
    .from(Origin {
        session: from,
        user: None,
        protocol: Some(crate::session::Protocol::Sink),
    })
    .subject(signal.as_str());
    node.router.publish(env);
}

/// Queues an event for a device (backend API) and wakes its connection. With a
/// `~timing` hold the event waits in the scheduler first. Returns the outbox position
/// (`None` while held) and the offset used.
pub async fn enqueue(
    node: &Arc<Node>,
    client: &str,
    mut event: SinkEvent,
    offset: Option<u64>,
    timing: Option<Value>,
    deliver_at: Option<i64>,
) -> Result<(Option<u64>, u64), StoreError> {
    let store = node.store();
    event.offset = match offset {
        Some(o) => o,
        None => store.sink_next_offset(client, &event.key).await?,
    };
    let offset = event.offset;
    let entry = OutboxEntry {
        seq: 0,
        event,
        timing,
        queued_ms: now_ms(),
    };
    if let Some(due) = deliver_at {
        let job = Job::protocol(
            Protocol::Sink,
            &HeldEvent {
                client: client.to_string(),
                entry,
            },
        );
        scheduler::hold(node, due, job).await?;
        return Ok((None, offset));
    }
    Ok((Some(enqueue_entry(node, client, entry).await?), offset))
}

/// A Sink outbox event held by `~timing` (its offset already assigned).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HeldEvent {
    client: String,
    entry: OutboxEntry,
}

/// Sink's scheduler handler: a held event joins its device's outbox when due.
pub struct DueEnqueue;

impl DueHandler for DueEnqueue {
    fn timing<'a>(&self, payload: &'a Value) -> Option<&'a Value> {
        payload
            .get("entry")
            .and_then(|e| e.get("timing"))
            .filter(|t| !t.is_null())
    }

    fn run(&self, node: Arc<Node>, payload: Value) -> scheduler::DueRun {
        Box::pin(async move {
            let h: HeldEvent = serde_json::from_value(payload)?;
            enqueue_entry(&node, &h.client, h.entry).await?;
            Ok(())
        })
    }
}

/// Appends an entry to a device's outbox and wakes its connection.
pub async fn enqueue_entry(
    node: &Arc<Node>,
    client: &str,
    mut entry: OutboxEntry,
) -> Result<u64, StoreError> {
    entry.queued_ms = now_ms();
    let seq = node.store().sink_outbox_push(client, entry).await?;
    node.metrics
        .sink_events
        .with_label_values(&["out", "queued"])
        .inc();
    signal(node, client, SinkControl::Wake, None, Value::Null);
    Ok(seq)
}

/// Sets or lifts a quarantine; a connected device is told and disconnected at once.
pub async fn set_quarantine(
    node: &Arc<Node>,
    client: &str,
    q: Option<Quarantine>,
) -> Result<bool, StoreError> {
    let existed = node.store().sink_set_quarantine(client, q.clone()).await?;
    if let Some(q) = q {
        let body = json!({
            "machine_message": STANDARD.encode(&q.machine_message),
            "human_message": q.human_message,
        });
        signal(node, client, SinkControl::Quarantine, None, body);
    }
    Ok(existed)
}

/// The events a device refused (API), newest last, at most [`NACKS_LISTED`].
pub async fn nacks(node: &Node, client: &str) -> Result<Vec<NackedEntry>, StoreError> {
    node.store().sink_nacks(client, NACKS_LISTED).await
}

/// What the API tells of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStatus {
    /// Entries waiting in its outbox (sent and unanswered ones included).
    pub outbox_depth: u64,
    pub quarantined: bool,
}

/// A device's outbox depth and whether it is quarantined (API).
pub async fn status(node: &Node, client: &str) -> Result<ClientStatus, StoreError> {
    let store = node.store();
    let outbox_depth = store.sink_outbox_depth(client).await?;
    let quarantined = store.sink_quarantine(client).await?.is_some();
    Ok(ClientStatus {
        outbox_depth,
        quarantined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_versions_parse_leniently() {
        assert_eq!(
            parse_app_version("v1.0.0"),
            Some(semver::Version::new(1, 0, 0))
        );
        assert_eq!(
            parse_app_version("2.3"),
            Some(semver::Version::new(2, 3, 0))
        );
        assert_eq!(parse_app_version("7"), Some(semver::Version::new(7, 0, 0)));
        assert!(parse_app_version("1.2.3-beta.1").is_some());
        for bad in ["", "v", "x.y.z", "1.2.3.4", "1..2"] {
            assert_eq!(parse_app_version(bad), None, "{bad}");
        }
        assert!(parse_app_version("1.10.0") > parse_app_version("1.9.9"));
    }
}
