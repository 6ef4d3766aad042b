//! The Sink frame loop, the same for every transport.
//!
//! 1. The first frame must be a CONNECTION_REQUEST (anything else closes the
//!    connection, unanswered); the broker decides the answer (protocol version,
//!    quarantine, application version, instance ids) and refused devices are closed.
//! 2. Device PUBLISH → ACK once the event is durably stored (NACK with a machine code
//!    when it is malformed or the store is unavailable); PING → PONG.
//! 3. The device's outbox is pumped with at most [`WINDOW`] PUBLISHes awaiting an
//!    ACK/NACK; unacknowledged ones are redelivered after a reconnect.
//! 4. Nothing received for the idle limit (90 s by default) → close. A newer connection
//!    of the same client (any node) or a quarantine closes this one.
//!
//! NACK machine codes sent by the server: `0x01` malformed frame, `0x02` temporarily
//! unavailable (retry later).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use murmur_broker::metrics::outcome;
use murmur_broker::session::Protocol;
use murmur_broker::sink::{self as service, control, Hello};
use murmur_shared::channel;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::Envelope;
use murmur_shared::ids::now_ms;
use murmur_shared::sink::{self as wire, ConnectionResponse, Frame};
use serde_json::Value;
use tokio::time::{sleep_until, Instant};
use tracing::debug;

use super::LABEL;
use crate::state::AppState;

/// A frame that cannot be written within this closes the connection (the device
/// stopped reading).
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The connection request must arrive within this (or the idle limit, if shorter).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// PUBLISHes to a device awaiting its ACK/NACK at most.
pub const WINDOW: usize = 32;
/// Identities of PUBLISHes answered NACK `02` a connection remembers at most.
const NACKED_KEPT: usize = 64;
/// The PUBLISH frame type (high nibble of byte 0).
const PUBLISH_TYPE: u8 = 4;
/// NACK machine code: the frame could not be decoded.
pub const NACK_MALFORMED: u8 = 0x01;
/// NACK machine code: the event could not be stored now; send it again later.
pub const NACK_UNAVAILABLE: u8 = 0x02;

/// A framed, bidirectional connection to one device.
pub trait FrameIo {
    /// The next frame; `None` when the peer closed, `Some(Err)` on a transport-level
    /// violation (the connection is then closed).
    fn read_frame(&mut self) -> impl Future<Output = Option<Result<Vec<u8>, &'static str>>>;
    /// Writes one frame; `Err` when the connection is gone.
    fn write_frame(&mut self, frame: &[u8]) -> impl Future<Output = Result<(), ()>>;
    /// Closes the connection; a WebSocket sends `reason` in its close frame, unless a
    /// transport error of its own decided the close. Returns the reason it closed with.
    fn close(self, reason: &CloseReason) -> impl Future<Output = CloseReason>;
}

/// How the device's client id is known.
pub enum Identity {
    /// From the TLS client certificate's CN, or the WebSocket token's `sub`.
    Fixed(String),
    /// Development plaintext TCP: `dev-<client_instance_id>`.
    DevInstance,
}

async fn write(io: &mut impl FrameIo, state: &AppState, frame: &Frame) -> Result<(), ()> {
    state
        .node
        .metrics
        .messages_out
        .with_label_values(&[LABEL])
        .inc();
    io.write_frame(&wire::encode(frame)).await
}

/// Serves one device connection until it ends.
pub async fn serve(state: Arc<AppState>, mut io: impl FrameIo, identity: Identity) {
    let metrics = state.node.metrics.clone();
    metrics.connections.with_label_values(&[LABEL]).inc();
    metrics.connections_total.with_label_values(&[LABEL]).inc();
    let (why, by_broker) = match run(&state, &mut io, identity).await {
        End::Broker(r) => (r, true),
        End::Here(r) => (r, false),
    };
    metrics.connections.with_label_values(&[LABEL]).dec();
    let why = io.close(&why).await;
    debug!(reason = %why.reason, code = why.code.code(), "sink connection closed");
    // A broker kick was counted where it was decided.
    if !by_broker && why.code != CloseCode::Normal {
        metrics
            .disconnects
            .with_label_values(&[LABEL, why.code.label()])
            .inc();
    }
}

/// The connection cannot be written (gone, or a slow consumer: the transport knows).
const WRITE_FAILED: &str = "write failed";

/// How a device connection ended: decided here, or by the broker (a kick, counted there).
enum End {
    Here(CloseReason),
    Broker(CloseReason),
}

fn end(code: CloseCode, reason: &str) -> End {
    End::Here(CloseReason::new(code, reason))
}

async fn run(state: &Arc<AppState>, io: &mut impl FrameIo, identity: Identity) -> End {
    let node = state.node.clone();
    let idle = state.settings.sink_idle;
    // 1. Handshake: an unidentified connection gets a short deadline.
    let first = tokio::select! {
        f = io.read_frame() => f,
        _ = tokio::time::sleep(idle.min(HANDSHAKE_TIMEOUT)) => {
            return end(CloseCode::PolicyViolation, "no connection request in time")
        }
    };
    let first = match first {
        Some(Ok(first)) => first,
        Some(Err(e)) => return end(CloseCode::PolicyViolation, e),
        None => return end(CloseCode::Normal, "closed before the handshake"),
    };
    node.metrics.messages_in.with_label_values(&[LABEL]).inc();
    let Ok(Frame::ConnectionRequest {
        version,
        application_version,
        client_instance_id,
        server_instance_id,
    }) = wire::decode(&first)
    else {
        return end(
            CloseCode::PolicyViolation,
            "first frame is not a connection request",
        );
    };
    let client = match identity {
        Identity::Fixed(id) => id,
        Identity::DevInstance => format!("dev-{client_instance_id}"),
    };
    if channel::validate(&service::event_channel(&client)).is_err() {
        return end(CloseCode::PolicyViolation, "client id not usable");
    }
    let hello = Hello {
        version,
        application_version,
        client_instance_id,
        server_instance_id,
    };
    let min = state
        .settings
        .sink_min_app_version
        .as_ref()
        .and_then(|v| service::parse_app_version(v));
    let answer = match service::handshake(&node, &client, &hello, min.as_ref()).await {
        Ok(a) => a,
        Err(_) => {
            return end(
                CloseCode::InternalError,
                "temporarily unavailable: store unreachable during the handshake",
            )
        }
    };
    let accepted = matches!(
        answer,
        ConnectionResponse::Connected | ConnectionResponse::HelloNewClient(_)
    );
    let label = match &answer {
        ConnectionResponse::Connected => "connected",
        ConnectionResponse::HelloNewClient(_) => "hello_new_client",
        ConnectionResponse::InstanceIdMismatch => "instance_id_mismatch",
        ConnectionResponse::Quarantined { .. } => "quarantined",
        ConnectionResponse::UnsupportedProtocolVersion => "unsupported_protocol_version",
        ConnectionResponse::UnsupportedApplicationVersion => "unsupported_application_version",
    };
    node.metrics
        .sink_events
        .with_label_values(&["handshake", label])
        .inc();
    let refused = match &answer {
        ConnectionResponse::Quarantined { .. } => Some((CloseCode::Terminated, "quarantined")),
        _ if !accepted => Some((CloseCode::PolicyViolation, "handshake refused")),
        _ => None,
    };
    if write(io, state, &Frame::ConnectionResponse(answer))
        .await
        .is_err()
    {
        return end(CloseCode::Normal, "write failed");
    }
    if let Some((code, reason)) = refused {
        return end(code, reason);
    }

    // 2. The session: one per connection, subscribed to the device's control channel.
    let Ok((handle, attachment)) = node.open(&client, Protocol::Sink, false).await else {
        return end(
            CloseCode::GoingAway,
            "node draining; reconnect to another node",
        );
    };
    let murmur_broker::Attachment {
        epoch,
        mut outbound,
        mut closed,
        ..
    } = attachment;
    if handle
        .subscribe(&service::control_channel(&client))
        .await
        .is_err()
    {
        handle.detach(epoch);
        return end(
            CloseCode::InternalError,
            "temporarily unavailable: control channel",
        );
    }
    // Any other connection of this client, on any node, now lets go.
    service::signal(
        &node,
        &client,
        control::TAKEOVER,
        Some(handle.id()),
        Value::Null,
    );
    if let Ok(depth) = node.store().sink_outbox_depth(&client).await {
        node.metrics.sink_outbox_depth.observe(depth as f64);
    }

    let sent_mark = node.store().sink_sent_mark(&client).await.unwrap_or(0);
    let mut pump = Pump {
        nacked_unavailable: VecDeque::new(),
        client: client.clone(),
        next_id: service::random_message_id(),
        sent_upto: 0,
        inflight: HashMap::new(),
        sent_mark,
    };
    let why = if pump.fill(state, io).await.is_err() {
        end(CloseCode::Normal, "write failed")
    } else {
        let mut deadline = Instant::now() + idle;
        loop {
            tokio::select! {
                biased;
                r = &mut closed => {
                    break End::Broker(r.unwrap_or_else(|_| CloseReason::new(CloseCode::Normal, "bye")))
                }
                env = outbound.recv() => {
                    let Some(env) = env else { break end(CloseCode::Normal, "session ended") };
                    match control_of(&env, &handle) {
                        Control::Takeover => {
                            break end(CloseCode::Replaced, "replaced by a newer connection")
                        }
                        Control::Quarantine(q) => {
                            let _ = write(io, state, &Frame::ConnectionResponse(q)).await;
                            break end(CloseCode::Terminated, "quarantined");
                        }
                        Control::Wake => {
                            if pump.fill(state, io).await.is_err() {
                                break end(CloseCode::Normal, "write failed");
                            }
                        }
                        Control::Ignore => {}
                    }
                }
                frame = io.read_frame() => {
                    let bytes = match frame {
                        None => break end(CloseCode::Normal, "device closed"),
                        Some(Err(e)) => break end(CloseCode::PolicyViolation, e),
                        Some(Ok(b)) => b,
                    };
                    deadline = Instant::now() + idle;
                    node.metrics.messages_in.with_label_values(&[LABEL]).inc();
                    match on_frame(state, io, &mut pump, &handle, &bytes).await {
                        Ok(()) => {}
                        Err(WRITE_FAILED) => break end(CloseCode::Normal, WRITE_FAILED),
                        Err(e) => break end(CloseCode::PolicyViolation, e),
                    }
                }
                _ = sleep_until(deadline) => break end(CloseCode::IdleTimeout, "idle: nothing received"),
            }
        }
    };
    handle.detach(epoch);
    why
}

enum Control {
    Takeover,
    Quarantine(ConnectionResponse),
    Wake,
    Ignore,
}

fn control_of(env: &Envelope, me: &murmur_broker::SessionHandle) -> Control {
    match env.subject.as_deref() {
        Some(control::TAKEOVER) if env.from.session != Some(me.id()) => Control::Takeover,
        Some(control::QUARANTINE) => {
            let body = env.json();
            let machine = body["machine_message"]
                .as_str()
                .and_then(|m| {
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, m).ok()
                })
                .unwrap_or_default();
            let human = body["human_message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Control::Quarantine(ConnectionResponse::Quarantined { machine, human })
        }
        Some(control::WAKE) => Control::Wake,
        _ => Control::Ignore,
    }
}

/// One frame from the device after the handshake.
async fn on_frame(
    state: &Arc<AppState>,
    io: &mut impl FrameIo,
    pump: &mut Pump,
    handle: &murmur_broker::SessionHandle,
    bytes: &[u8],
) -> Result<(), &'static str> {
    let node = &state.node;
    let w = |r: Result<(), ()>| r.map_err(|()| WRITE_FAILED);
    match wire::decode(bytes) {
        Ok(Frame::Publish { id, event }) => {
            let tag = identity_tag(&event);
            let resent = pump.nacked_unavailable.contains(&tag);
            let accepted = service::accept(node, &pump.client, handle.id(), &event, resent).await;
            let reply = match accepted {
                Ok(_) => {
                    pump.nacked_unavailable.retain(|t| *t != tag);
                    Frame::Ack { id }
                }
                Err(_) => {
                    if !resent {
                        if pump.nacked_unavailable.len() == NACKED_KEPT {
                            pump.nacked_unavailable.pop_front();
                        }
                        pump.nacked_unavailable.push_back(tag);
                    }
                    node.metrics
                        .sink_events
                        .with_label_values(&["in", "unavailable"])
                        .inc();
                    Frame::Nack {
                        id,
                        machine: vec![NACK_UNAVAILABLE],
                        human: "temporarily unavailable; send again later".into(),
                    }
                }
            };
            w(write(io, state, &reply).await)
        }
        Ok(Frame::Ack { id }) => {
            if let Some(seq) = pump.inflight.remove(&id) {
                node.metrics.delivery(LABEL, outcome::ACKED);
                node.metrics
                    .sink_events
                    .with_label_values(&["out", "acked"])
                    .inc();
                let _ = node.store().sink_outbox_remove(&pump.client, seq).await;
            }
            w(pump.fill(state, io).await)
        }
        Ok(Frame::Nack { id, machine, human }) => {
            if let Some(seq) = pump.inflight.remove(&id) {
                node.metrics.delivery(LABEL, outcome::NACKED);
                node.metrics
                    .sink_events
                    .with_label_values(&["out", "nacked"])
                    .inc();
                let _ = node
                    .store()
                    .sink_outbox_nack(&pump.client, seq, machine, human)
                    .await;
            }
            w(pump.fill(state, io).await)
        }
        Ok(Frame::Ping) => w(write(io, state, &Frame::Pong).await),
        Ok(Frame::Pong) => Ok(()),
        Ok(Frame::ConnectionRequest { .. } | Frame::ConnectionResponse(_)) => {
            Err("connection frames after the handshake")
        }
        // Only a PUBLISH can be refused with a NACK (its id is the device's); any other
        // malformed frame is a protocol violation and closes the connection.
        Err(e) => match e
            .id
            .filter(|_| bytes.first().map(|b| b >> 4) == Some(PUBLISH_TYPE))
        {
            Some(id) => {
                node.metrics.decode_errors.with_label_values(&[LABEL]).inc();
                node.metrics
                    .sink_events
                    .with_label_values(&["in", "malformed"])
                    .inc();
                let nack = Frame::Nack {
                    id,
                    machine: vec![NACK_MALFORMED],
                    human: e.reason.to_string(),
                };
                w(write(io, state, &nack).await)
            }
            None => Err("undecodable frame"),
        },
    }
}

/// A hash of an event's identity `(event_type_id, key, offset)`.
fn identity_tag(event: &wire::Event) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (event.event_type_id, &event.key, event.offset).hash(&mut h);
    h.finish()
}

/// The outbox pump of one connection, and what the connection remembers of the device's
/// PUBLISHes.
struct Pump {
    /// Identities (hashed) of the device PUBLISHes answered NACK `02` on this connection
    /// and not accepted since, the newest [`NACKED_KEPT`]: their resend is published even
    /// if the store finds a duplicate ([`service::accept`]).
    nacked_unavailable: VecDeque<u64>,
    client: String,
    next_id: u16,
    /// Highest outbox position sent on this connection.
    sent_upto: u64,
    /// Message id → outbox position, awaiting ACK/NACK.
    inflight: HashMap<u16, u64>,
    /// Highest position ever sent to this client (any connection): at or below it, a
    /// send is a redelivery.
    sent_mark: u64,
}

impl Pump {
    /// Sends outbox entries until the window is full or the outbox is drained.
    async fn fill(&mut self, state: &AppState, io: &mut impl FrameIo) -> Result<(), ()> {
        let node = &state.node;
        while self.inflight.len() < WINDOW {
            let room = WINDOW - self.inflight.len();
            let Ok(batch) = node
                .store()
                .sink_outbox_read(&self.client, self.sent_upto, room)
                .await
            else {
                return Ok(()); // store away: retried on the next wake or ACK
            };
            if batch.is_empty() {
                return Ok(());
            }
            for entry in batch {
                self.sent_upto = entry.seq;
                if !crate::timing::deliverable(&node.metrics, LABEL, entry.timing.as_ref()) {
                    // Expired while waiting in the outbox: dropped, never delivered.
                    let _ = node
                        .store()
                        .sink_outbox_remove(&self.client, entry.seq)
                        .await;
                    continue;
                }
                let id = self.next_id;
                self.next_id = wire::next_id(id);
                self.inflight.insert(id, entry.seq);
                if entry.seq <= self.sent_mark {
                    node.metrics
                        .sink_events
                        .with_label_values(&["out", "redelivered"])
                        .inc();
                }
                let frame = Frame::Publish {
                    id,
                    event: service::wire(&entry.event),
                };
                node.metrics
                    .sink_events
                    .with_label_values(&["out", "sent"])
                    .inc();
                let latency = now_ms().saturating_sub(entry.queued_ms) as f64 / 1000.0;
                node.metrics
                    .delivery_latency
                    .with_label_values(&[LABEL])
                    .observe(latency);
                write(io, state, &frame).await?;
            }
            if self.sent_upto > self.sent_mark {
                self.sent_mark = self.sent_upto;
                let _ = node
                    .store()
                    .sink_raise_sent_mark(&self.client, self.sent_mark)
                    .await;
            }
        }
        Ok(())
    }
}
