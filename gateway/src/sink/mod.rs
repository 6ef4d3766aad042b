//! Sink for devices (CONTRACT §6): the reference wire format over TCP (2-byte length
//! prefix; TLS with client certificates, or plaintext in development mode) and over
//! WebSocket `/sink?token=` (one binary message per frame).
//!
//! * [`connect`]: the WebSocket route, the TCP/TLS listener's accept, client identity
//!   (token `sub`, certificate CN).
//! * [`session`]: one connection's state, the [`crate::edge::Adapter`]: decode, the
//!   handshake phase, the outbox pump, takeover and quarantine.
//! * [`apply`]: what each device frame does (handshake, PUBLISH → ACK/NACK, ACK/NACK of
//!   the pump's PUBLISHes, PING).
//! * [`encode`]: frames → bytes.
//! * [`api`]: `/api/v1/sink/*` (outbox events, NACK list, quarantine).

pub mod api;
pub mod apply;
pub mod connect;
pub mod encode;
pub mod session;

/// The metrics label.
pub const LABEL: &str = "sink";
