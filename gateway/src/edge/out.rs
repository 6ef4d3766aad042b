//! What an adapter writes through: the connection's [`SendBuffer`], with the
//! slow-consumer rule and the per-protocol `murmur_messages_out_total` series applied
//! once, here.

use std::time::Duration;

use murmur_shared::close::{CloseCode, CloseReason};
use prometheus::IntCounter;

use super::buffer::{SendBuffer, SendError};
use super::Stop;

/// The close a full buffer earns.
pub fn slow_consumer() -> CloseReason {
    CloseReason::new(
        CloseCode::SlowConsumer,
        "slow consumer: outbound buffer full",
    )
}

fn stop(e: SendError) -> Stop {
    match e {
        SendError::Full => Stop::Close(slow_consumer()),
        SendError::Closed => Stop::Gone,
    }
}

/// A connection's write side. Appending never waits (except [`Out::binary_waiting`]).
pub struct Out {
    buf: SendBuffer,
    messages_out: IntCounter,
}

impl Out {
    pub fn new(buf: SendBuffer, messages_out: IntCounter) -> Out {
        Out { buf, messages_out }
    }

    /// Appends a text frame (`payload` is UTF-8); returns its end in the connection's
    /// byte count (compare with [`confirmed`](Self::confirmed)).
    pub fn text(&self, payload: &[u8]) -> Result<u64, Stop> {
        let end = self.buf.text(payload).map_err(stop)?;
        self.messages_out.inc();
        Ok(end)
    }

    /// Appends a binary frame.
    pub fn binary(&self, payload: &[u8]) -> Result<u64, Stop> {
        let end = self.buf.binary(payload).map_err(stop)?;
        self.messages_out.inc();
        Ok(end)
    }

    /// Appends a binary frame, waiting up to `timeout` for room (for writers whose own
    /// window bounds what they queue: Sink's outbox pump).
    pub async fn binary_waiting(&self, payload: &[u8], timeout: Duration) -> Result<u64, Stop> {
        let end = self
            .buf
            .binary_waiting(payload, timeout)
            .await
            .map_err(stop)?;
        self.messages_out.inc();
        Ok(end)
    }

    pub fn ping(&self) -> Result<(), Stop> {
        self.buf.ping(b"").map(|_| ()).map_err(stop)
    }

    pub fn pong(&self, payload: &[u8]) -> Result<(), Stop> {
        self.buf.pong(payload).map(|_| ()).map_err(stop)
    }

    /// Bytes written to the socket so far, as a count since the start.
    pub fn confirmed(&self) -> u64 {
        self.buf.confirmed()
    }

    /// Waits until at most half the bound is buffered (for writers that produce faster
    /// than a reading client takes: recovery replay).
    pub async fn writable(&self) {
        self.buf.writable().await
    }

    /// Waits until the bytes up to `end` are written (never, for `None` or once the
    /// connection is gone).
    pub async fn flushed(&self, end: Option<u64>) {
        self.buf.flushed(end).await
    }

    /// Queues the close (the exit path, or a refusal before any loop runs).
    pub fn close(&self, reason: Option<&CloseReason>, drop_pending: bool) {
        self.buf.close(reason, drop_pending)
    }
}
