//! Sink for devices (CONTRACT §6): the reference wire format over TCP (2-byte length
//! prefix; TLS with client certificates, or plaintext in development mode) and over
//! WebSocket `/sink?token=` (one binary message per frame).
//!
//! * [`connect`]: the WebSocket route, the TCP/TLS listener's accept, client identity
//!   (token `sub`, certificate CN).
//! * [`session`]: one connection's state, the [`crate::edge::Adapter`]: decode, the
//!   handshake phase, writing what the broker's outbox pump
//!   ([`murmur_broker::sink::Outbox`]) hands out, takeover and quarantine.
//! * [`apply`]: what each device frame does (handshake, PUBLISH → ACK/NACK, ACK/NACK of
//!   the pump's PUBLISHes, PING), each answered from the broker's decision.
//! * [`encode`]: frames → bytes.
//! * [`api`]: `/api/v1/sink/*` (outbox events, NACK list, status, quarantine).
//!
//! Nothing here reads the store: the device's state that outlives a frame is the
//! broker's (`murmur_broker::sink`).

pub mod api;
pub mod apply;
pub mod connect;
pub mod encode;
pub mod session;

/// The metrics label.
pub const LABEL: &str = "sink";
