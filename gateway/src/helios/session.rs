//! One Helios connection as the edge loop serves it: the session's handle, what was
//! written but not yet confirmed out, and the greeting. It decodes text frames, applies
//! them ([`super::apply`]) and writes what the session queues ([`super::encode`]).
//!
//! Envelopes whose frames never left the process (still buffered, refused, or queued
//! behind) are handed back to the session at the end, so a recovery delivers them:
//! channel publications by re-reading channel history from the last position written,
//! direct messages from the recovery buffer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use murmur_broker::metrics::outcome;
use murmur_broker::session::{Attachment, Protocol, SessionHandle};
use murmur_shared::close::CloseCode;
use murmur_shared::envelope::Envelope;
use murmur_shared::helios::{self, ErrorCode, Frame};
use murmur_shared::ids::now_ms;
use prometheus::{Histogram, IntCounter};
use serde_json::json;

use super::{apply, encode};
use crate::edge::{Adapter, Data, Edge, Flow, Heartbeat, Link, Out, Refusal};
use crate::state::AppState;

/// The metrics label of this protocol.
pub const LABEL: &str = "helios";

/// What the client is told right after the upgrade.
pub enum Greeting {
    Fresh,
    /// Resumed: buffered messages first, then `connection:recovered`.
    Recovered {
        detached_ms: u64,
    },
    /// A fresh Starling after a failed recovery: `connection:recovery_failed`.
    RecoveryFailed(String),
}

/// One attached Starling's connection.
pub struct Conn {
    pub state: Arc<AppState>,
    pub handle: SessionHandle,
    edge: Edge,
    counters: Counters,
    /// Envelopes whose frames are buffered but not yet written, with the frame's end
    /// (in bytes appended since the start): handed back if the connection ends first.
    unwritten: VecDeque<(u64, Arc<Envelope>)>,
    /// What [`Adapter::start`] writes: the session's buffered envelopes, the greeting.
    opening: Option<(Vec<Arc<Envelope>>, Greeting)>,
}

/// Metric handles resolved once per connection (not per message).
struct Counters {
    delivered: IntCounter,
    latency: Histogram,
}

impl Conn {
    pub fn new(
        state: Arc<AppState>,
        handle: SessionHandle,
        attachment: Attachment,
        out: Out,
        greeting: Greeting,
    ) -> Conn {
        let metrics = &state.node.metrics;
        let counters = Counters {
            delivered: metrics
                .deliveries
                .with_label_values(&[LABEL, outcome::DELIVERED]),
            latency: metrics.delivery_latency.with_label_values(&[LABEL]),
        };
        let (link, buffered) = Link::new(handle.clone(), attachment);
        let mut edge = Edge::new(out);
        edge.link = Some(link);
        Conn {
            state,
            handle,
            edge,
            counters,
            unwritten: VecDeque::new(),
            opening: Some((buffered, greeting)),
        }
    }

    /// Queues one text frame.
    pub fn send(&mut self, text: impl AsRef<[u8]>) -> Flow {
        self.edge.out.text(text.as_ref()).map(|_| ())
    }

    /// A notification for this client from the broker itself.
    pub fn notify(&mut self, topic: &str, data: serde_json::Value) -> Flow {
        self.send(helios::encode_notification(
            None,
            Some(topic),
            &data,
            None,
            now_ms(),
        ))
    }

    /// Queues the frame of one envelope for the client. On failure the envelope is
    /// kept for the session (see the module docs).
    fn write(&mut self, env: Arc<Envelope>) -> Flow {
        if env.timing.is_some()
            && !crate::timing::deliverable(&self.state.node.metrics, LABEL, env.timing.as_ref())
        {
            return Ok(());
        }
        let Some(text) = encode::frame(&env) else {
            return Ok(());
        };
        match self.edge.out.text(text.as_bytes()) {
            Ok(end) => {
                self.counters.delivered.inc();
                let latency = now_ms().saturating_sub(env.created_ms) as f64 / 1000.0;
                self.counters.latency.observe(latency);
                let written = self.edge.out.confirmed();
                while self.unwritten.front().is_some_and(|(e, _)| *e <= written) {
                    self.unwritten.pop_front();
                }
                self.unwritten.push_back((end, env));
                Ok(())
            }
            Err(stop) => {
                self.unwritten.push_back((u64::MAX, env));
                Err(stop)
            }
        }
    }
}

impl Adapter for Conn {
    type Frame = Frame;
    type Event = Infallible;
    const PROTOCOL: Protocol = Protocol::Helios;

    fn edge(&mut self) -> &mut Edge {
        &mut self.edge
    }

    fn decode(data: Data) -> Result<Frame, Refusal> {
        let text = match data {
            Data::Text(bytes) => bytes,
            Data::Binary(_) => {
                return Err(Refusal::Answer(text_data(helios::encode_protocol_error(
                    ErrorCode::InvalidMessageFormat,
                    "binary frames are not part of the protocol",
                    &["frames must be UTF-8 JSON text".to_string()],
                    now_ms(),
                ))))
            }
        };
        // The transport checked it: unreachable, but never a panic.
        let Ok(text) = std::str::from_utf8(&text) else {
            return Err(Refusal::Close(murmur_shared::close::CloseReason::new(
                CloseCode::InvalidPayload,
                "text message is not valid UTF-8",
            )));
        };
        helios::decode(text).map_err(|e| {
            Refusal::Answer(Data::Text(
                match &e.request_id {
                    Some(id) => helios::encode_error(id, &e.to_wire_error(), now_ms()),
                    None => helios::encode_protocol_error(
                        ErrorCode::InvalidMessageFormat,
                        "message does not conform to the protocol",
                        &e.violations,
                        now_ms(),
                    ),
                }
                .into(),
            ))
        })
    }

    async fn apply(&mut self, frame: Frame) -> Flow {
        apply::frame(self, frame).await
    }

    async fn deliver(&mut self, env: Arc<Envelope>) -> Flow {
        self.write(env)
    }

    async fn on_event(&mut self, event: Infallible) -> Flow {
        match event {}
    }

    fn heartbeat(&self) -> Heartbeat {
        Heartbeat::WEBSOCKET
    }

    /// What the session kept or replayed for this client, written as fast as the client
    /// reads (a long replay is no slow consumer, and never over the bound); then the
    /// greeting.
    async fn start(&mut self) -> Flow {
        let Some((buffered, greeting)) = self.opening.take() else {
            return Ok(());
        };
        let replayed = buffered.len();
        let mut buffered = buffered.into_iter();
        while let Some(env) = buffered.next() {
            self.edge.out.writable().await;
            if let Err(stop) = self.write(env) {
                self.unwritten.extend(buffered.map(|e| (u64::MAX, e)));
                return Err(stop);
            }
        }
        match greeting {
            Greeting::Fresh => Ok(()),
            Greeting::Recovered { detached_ms } => {
                let data = json!({
                    "timestamp": now_ms(),
                    "recoveredFrom": detached_ms,
                    "starlingId": self.handle.id().to_string(),
                    "buffered": replayed,
                });
                self.notify("connection:recovered", data)
            }
            Greeting::RecoveryFailed(reason) => {
                let data = json!({"timestamp": now_ms(), "reason": reason});
                self.notify("connection:recovery_failed", data)
            }
        }
    }

    /// The envelopes whose frames never left this process, oldest first.
    fn unwritten(&mut self) -> Vec<Arc<Envelope>> {
        let written = self.edge.out.confirmed();
        self.unwritten
            .drain(..)
            .filter(|(end, _)| *end > written)
            .map(|(_, env)| env)
            .collect()
    }
}

fn text_data(s: String) -> Data {
    Data::Text(s.into())
}

/// Tells a client why its recovery failed, then closes (no fresh Starling without a
/// client token). No session exists: nothing else is served.
pub fn refuse(out: Out, reason: String) {
    let data = json!({"timestamp": now_ms(), "reason": reason});
    let text = helios::encode_notification(
        None,
        Some("connection:recovery_failed"),
        &data,
        None,
        now_ms(),
    );
    let _ = out.text(text.as_bytes());
    let close = murmur_shared::close::CloseReason::new(
        CloseCode::Unauthorized,
        "recovery failed and no client token given",
    );
    out.close(Some(&close), false);
}
