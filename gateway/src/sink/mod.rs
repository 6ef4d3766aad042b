//! Sink for devices (CONTRACT §6): the reference wire format over TCP (2-byte length
//! prefix; TLS with client certificates, or plaintext in development mode) and over
//! WebSocket `/sink?token=` (one binary message per frame).
//!
//! * [`conn`]: the transport-independent frame loop (handshake, ACK/NACK, outbox pump,
//!   keepalive, takeover and quarantine).
//! * [`tcp`]: the TCP/TLS listener and client identity from the certificate CN.
//! * [`ws`]: the WebSocket transport.
//! * [`api`]: `/api/v1/sink/*` (outbox events, NACK list, quarantine).

pub mod api;
pub mod conn;
pub mod tcp;
pub mod ws;

/// The metrics label.
pub const LABEL: &str = "sink";
