//! Sink frames → bytes (the frame only: the transport adds its framing, a WebSocket
//! binary message or the 2-byte length prefix).

use murmur_shared::sink::{self as wire, Event, Frame};

/// A frame the server sends.
pub fn frame(frame: &Frame) -> Vec<u8> {
    wire::encode(frame)
}

/// The PUBLISH of an outbox event under message id `id`.
pub fn publish(id: u16, event: &Event) -> Vec<u8> {
    wire::encode(&Frame::Publish {
        id,
        event: event.clone(),
    })
}
