//! One Sink device connection as the edge loop serves it, over either transport
//! (WebSocket `/sink` or the TCP/TLS listener): the handshake phase, then the session
//! and its outbox pump, the broker's [`Outbox`] (this connection writes what it hands
//! out; it never reads the store).
//!
//! 1. The first frame must be a CONNECTION_REQUEST (anything else closes the
//!    connection, unanswered); the broker decides the answer (protocol version,
//!    quarantine, application version, instance ids) and refused devices are closed.
//! 2. Device PUBLISH → ACK once the event is durably stored (NACK with a machine code
//!    when it is malformed or the store is unavailable); PING → PONG ([`super::apply`]).
//! 3. The device's outbox is pumped with at most [`murmur_broker::sink::outbox::WINDOW`] PUBLISHes
//!    awaiting an ACK/NACK; unacknowledged ones are redelivered after a reconnect.
//! 4. Nothing received for the idle limit (90 s by default) → close 4004. A newer
//!    connection of the same client (any node) → 4002; a quarantine → its connection
//!    response, then 4005.
//!
//! NACK machine codes sent by the server: `0x01` malformed frame, `0x02` temporarily
//! unavailable (retry later).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use murmur_broker::session::{Protocol, SessionHandle};
use murmur_broker::sink::{Outbox, SinkControl};
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::Envelope;
use murmur_shared::sink::{self as wire, ConnectionResponse, Frame};

use super::{apply, encode};
use crate::edge::{self, Adapter, Data, Deadline, Edge, Flow, Heartbeat, Out, Refusal, Stop};
use crate::state::AppState;

/// A frame that finds the outbound buffer full for this long closes the connection
/// 4001 (the device stopped reading).
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The connection request must arrive within this (or the idle limit, if shorter).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The PUBLISH frame type (high nibble of byte 0).
const PUBLISH_TYPE: u8 = 4;

/// How the device's client id is known.
pub enum Identity {
    /// From the TLS client certificate's CN, or the WebSocket token's `sub`.
    Fixed(String),
    /// Development plaintext TCP: `dev-<client_instance_id>`.
    DevInstance,
}

/// A device frame, as far as its bytes tell.
pub enum Inbound {
    Frame(Frame),
    /// Undecodable. `publish_id`: the id of a PUBLISH whose body is malformed (it gets
    /// a NACK `01`); anything else undecodable closes the connection.
    Undecodable {
        publish_id: Option<u16>,
        reason: String,
    },
}

/// One device connection.
pub struct SinkConn {
    pub(super) state: Arc<AppState>,
    edge: Edge,
    pub(super) phase: Phase,
}

/// Where the connection is.
pub(super) enum Phase {
    /// Waiting for the CONNECTION_REQUEST.
    Handshake(Identity),
    /// Between the handshake's answer and the session (a refusal closes from here).
    Closing,
    Open(Box<Open>),
}

/// An accepted device: its session and outbox pump.
pub(super) struct Open {
    pub handle: SessionHandle,
    pub outbox: Outbox,
}

impl SinkConn {
    pub fn new(state: Arc<AppState>, out: Out, identity: Identity) -> SinkConn {
        SinkConn {
            state,
            edge: Edge::new(out),
            phase: Phase::Handshake(identity),
        }
    }

    /// Writes one frame (a reply, a control answer).
    pub(super) fn write(&self, frame: &Frame) -> Flow {
        self.edge.out.binary(&encode::frame(frame)).map(|_| ())
    }

    /// The session is open: the loop now serves its queue.
    pub(super) fn opened(&mut self, link: edge::Link, handle: SessionHandle, outbox: Outbox) {
        self.edge.link = Some(link);
        self.phase = Phase::Open(Box::new(Open { handle, outbox }));
    }

    /// Sends outbox entries until the window is full or the outbox is drained. A store
    /// that is away is retried on the next wake or ACK.
    pub(super) async fn fill(&mut self) -> Flow {
        let Phase::Open(open) = &mut self.phase else {
            return Ok(());
        };
        loop {
            let Ok(batch) = open.outbox.next().await else {
                return Ok(());
            };
            if batch.is_empty() {
                return Ok(());
            }
            for o in batch {
                // The window bounds what is in flight, so a full buffer is waited on,
                // like a TCP write (a reading device drains it, however large the
                // burst); a device that leaves its buffer full for WRITE_TIMEOUT is not
                // reading: 4001.
                self.edge
                    .out
                    .binary_waiting(&encode::publish(o.id, &o.event), WRITE_TIMEOUT)
                    .await?;
            }
        }
    }
}

impl Adapter for SinkConn {
    type Frame = Inbound;
    type Event = Infallible;
    const PROTOCOL: Protocol = Protocol::Sink;

    fn edge(&mut self) -> &mut Edge {
        &mut self.edge
    }

    fn decode(data: Data) -> Result<Inbound, Refusal> {
        let bytes: Bytes = match data {
            Data::Binary(b) => b,
            Data::Text(_) => {
                return Err(Refusal::Close(CloseReason::new(
                    CloseCode::UnsupportedData,
                    "binary frames only",
                )))
            }
        };
        Ok(match wire::decode(&bytes) {
            Ok(frame) => Inbound::Frame(frame),
            Err(e) => Inbound::Undecodable {
                publish_id: e
                    .id
                    .filter(|_| bytes.first().map(|b| b >> 4) == Some(PUBLISH_TYPE)),
                reason: e.reason.to_string(),
            },
        })
    }

    async fn apply(&mut self, frame: Inbound) -> Flow {
        apply::frame(self, frame).await
    }

    /// The session carries control signals only (the events come from the outbox).
    async fn deliver(&mut self, env: Arc<Envelope>) -> Flow {
        let Phase::Open(open) = &self.phase else {
            return Ok(());
        };
        match control_of(&env, &open.handle) {
            Control::Takeover => Err(Stop::close(
                CloseCode::Replaced,
                "replaced by a newer connection",
            )),
            Control::Quarantine(q) => {
                let _ = self.write(&Frame::ConnectionResponse(q));
                Err(Stop::close(CloseCode::Terminated, "quarantined"))
            }
            Control::Wake => self.fill().await,
            Control::Ignore => Ok(()),
        }
    }

    async fn on_event(&mut self, event: Infallible) -> Flow {
        match event {}
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            ping: false,
            silence: self.state.settings.sink_idle,
            reason: "idle: nothing received",
        }
    }

    fn deadline(&self) -> Option<Deadline> {
        Some(Deadline {
            after: self.state.settings.sink_idle.min(HANDSHAKE_TIMEOUT),
            reason: "no connection request in time",
        })
    }

    fn ready(&self) -> bool {
        !matches!(self.phase, Phase::Handshake(_))
    }
}

enum Control {
    Takeover,
    Quarantine(ConnectionResponse),
    Wake,
    Ignore,
}

fn control_of(env: &Envelope, me: &SessionHandle) -> Control {
    match SinkControl::parse(env.subject.as_deref()) {
        Some(SinkControl::Takeover) if env.from.session != Some(me.id()) => Control::Takeover,
        Some(SinkControl::Quarantine) => {
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
        Some(SinkControl::Wake) => Control::Wake,
        _ => Control::Ignore,
    }
}
