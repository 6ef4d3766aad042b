//! The write side of a connection: one bounded byte buffer per connection.
//!
//! Frames are encoded straight into the buffer (WebSocket frames, or Sink's 2-byte
//! length prefix on TCP/TLS: [`Framing`]); the writer (the socket's writer task, or the
//! HTTP layer for a WebSocket served inside the dispatcher) polls [`OutboundBody`] and
//! gets everything pending as one chunk, written with one syscall. The writer polls
//! again only once it has written that chunk, so the bytes handed over at the previous
//! poll are counted against the bound until the next poll: a client that does not read
//! holds at most its bound.
//!
//! Bounds: `max_bytes` and `max_frames` per connection, and a node-wide ceiling on the
//! sum of every connection's bytes ([`OutboundBudget`], gauge `murmur_outbound_bytes`).
//! A frame is always accepted into an empty buffer (one message larger than the bound
//! is not a slow consumer); otherwise an append over any bound fails with
//! [`SendError::Full`] and the connection is closed 4001 by its loop.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use murmur_shared::close::CloseReason;
use murmur_shared::wsframe::{self, OpCode};
use prometheus::IntGauge;

/// A buffer that grew past this is let go once drained (idle connections stay small).
const KEEP_CAPACITY: usize = 16 * 1024;

/// How frames are put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// WebSocket frames (server side: unmasked).
    WebSocket,
    /// Sink over TCP/TLS: a 2-byte big-endian length, then the frame. Only binary
    /// frames exist; the close is the end of the stream.
    LengthPrefixed,
}

impl Framing {
    fn header_len(self, payload: usize) -> usize {
        match self {
            Framing::WebSocket => wsframe::header_len(payload),
            Framing::LengthPrefixed => 2,
        }
    }
}

/// Per-connection bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Bytes buffered for the socket, encoded frames included.
    pub max_bytes: usize,
    /// Frames buffered for the socket.
    pub max_frames: usize,
    /// How long the writer lets pending bytes gather before it writes them (zero: it
    /// writes as soon as it is woken).
    pub write_delay: std::time::Duration,
}

/// Bytes buffered for client sockets across the node, with a ceiling.
pub struct OutboundBudget {
    used: AtomicUsize,
    ceiling: usize,
    gauge: IntGauge,
}

impl OutboundBudget {
    pub fn new(ceiling: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(OutboundBudget {
            used: AtomicUsize::new(0),
            ceiling,
            gauge,
        })
    }

    /// Takes `n` bytes unless that passes the ceiling (`force` takes them anyway).
    fn take(&self, n: usize, force: bool) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if !force && before + n > self.ceiling {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        self.gauge.add(n as i64);
        true
    }

    fn give(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::Relaxed);
            self.gauge.sub(n as i64);
        }
    }

    /// Bytes buffered node-wide now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closing or gone.
    Closed,
    /// Over the connection's bound or the node's ceiling: a slow consumer.
    Full,
}

struct State {
    /// Encoded frames not yet handed to the writer.
    buf: BytesMut,
    frames: usize,
    /// Bytes handed over at the last poll, still counted (see the module docs).
    handed: usize,
    /// Bytes appended since the start, and of those the ones the writer took and
    /// then asked for more (written, as far as this process can tell).
    appended: u64,
    confirmed: u64,
    /// A close frame is queued: nothing more is accepted.
    closing: bool,
    /// The writer dropped the body: the connection is gone.
    gone: bool,
    waker: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken whenever the writer takes bytes or the connection goes.
    drained: tokio::sync::Notify,
    /// Woken when the close frame is queued.
    closing: tokio::sync::Notify,
    limits: OutboundLimits,
    budget: Arc<OutboundBudget>,
    framing: Framing,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // unwrap: nothing panics while the lock is held (buffer appends, counters).
        self.state.lock().unwrap()
    }
}

/// Waits on `notify` until `ready` (checked first, then after every wake-up) has an
/// answer. The waiter is registered before each check, so no wake-up is missed.
async fn wait_for<T>(notify: &tokio::sync::Notify, mut ready: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(answer) = ready() {
            return answer;
        }
        notified.await;
    }
}

/// The handle a connection loop writes through. Cheap to clone.
#[derive(Clone)]
pub struct SendBuffer {
    shared: Arc<Shared>,
}

/// The response body: hands pending bytes to the writer.
pub struct OutboundBody {
    shared: Arc<Shared>,
}

/// A sink and the body that drains it.
pub fn channel(
    framing: Framing,
    limits: OutboundLimits,
    budget: Arc<OutboundBudget>,
) -> (SendBuffer, OutboundBody) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: BytesMut::new(),
            frames: 0,
            handed: 0,
            appended: 0,
            confirmed: 0,
            closing: false,
            gone: false,
            waker: None,
        }),
        drained: tokio::sync::Notify::new(),
        closing: tokio::sync::Notify::new(),
        limits,
        budget,
        framing,
    });
    (
        SendBuffer {
            shared: shared.clone(),
        },
        OutboundBody { shared },
    )
}

impl SendBuffer {
    /// Queues a text frame (`payload` must be UTF-8). Returns the frame's end as a
    /// count of bytes appended since the start (compare with [`confirmed`](Self::confirmed)).
    pub fn text(&self, payload: &[u8]) -> Result<u64, SendError> {
        self.frame(OpCode::Text, payload)
    }

    pub fn binary(&self, payload: &[u8]) -> Result<u64, SendError> {
        self.frame(OpCode::Binary, payload)
    }

    pub fn ping(&self, payload: &[u8]) -> Result<u64, SendError> {
        self.frame(
            OpCode::Ping,
            &payload[..payload.len().min(wsframe::MAX_CONTROL_PAYLOAD)],
        )
    }

    pub fn pong(&self, payload: &[u8]) -> Result<u64, SendError> {
        self.frame(
            OpCode::Pong,
            &payload[..payload.len().min(wsframe::MAX_CONTROL_PAYLOAD)],
        )
    }

    /// Bytes the writer has written, as a count since the start: every frame that
    /// ended at or before it has left this process.
    pub fn confirmed(&self) -> u64 {
        self.shared.lock().confirmed
    }

    fn frame(&self, opcode: OpCode, payload: &[u8]) -> Result<u64, SendError> {
        let shared = &*self.shared;
        if shared.framing == Framing::LengthPrefixed
            && (opcode != OpCode::Binary || payload.len() > usize::from(u16::MAX))
        {
            // Nothing else exists on a length-prefixed stream; the codec never makes it.
            return Err(SendError::Closed);
        }
        let n = shared.framing.header_len(payload.len()) + payload.len();
        let mut st = shared.lock();
        if st.closing || st.gone {
            return Err(SendError::Closed);
        }
        let held = st.buf.len() + st.handed;
        let empty = held == 0;
        if !empty && (held + n > shared.limits.max_bytes || st.frames >= shared.limits.max_frames) {
            return Err(SendError::Full);
        }
        if !shared.budget.take(n, empty) {
            return Err(SendError::Full);
        }
        match shared.framing {
            Framing::WebSocket => wsframe::encode(opcode, payload, &mut st.buf),
            Framing::LengthPrefixed => {
                // Checked above: the length fits in two bytes.
                st.buf
                    .extend_from_slice(&(payload.len() as u16).to_be_bytes());
                st.buf.extend_from_slice(payload);
            }
        }
        st.frames += 1;
        st.appended += n as u64;
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        Ok(st.appended)
    }

    /// Queues the close frame (always accepted) and ends the connection once the bytes
    /// before it are written. A slow consumer's unwritten frames are dropped first, so
    /// the close reaches it without waiting behind them.
    pub fn close(&self, reason: Option<&CloseReason>, drop_pending: bool) {
        let shared = &*self.shared;
        let mut st = shared.lock();
        if st.closing || st.gone {
            return;
        }
        if drop_pending {
            let dropped = st.buf.len();
            st.buf = BytesMut::new();
            st.frames = 0;
            shared.budget.give(dropped);
        }
        let before = st.buf.len();
        match (shared.framing, reason) {
            (Framing::WebSocket, Some(r)) => {
                wsframe::encode_close(r.code.code(), &r.reason, &mut st.buf)
            }
            (Framing::WebSocket, None) => wsframe::encode(OpCode::Close, &[], &mut st.buf),
            // The stream just ends once what is before the close is written.
            (Framing::LengthPrefixed, _) => {}
        }
        shared.budget.take(st.buf.len() - before, true);
        st.closing = true;
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        shared.closing.notify_waiters();
    }

    /// Queues a binary frame like [`binary`](Self::binary), but while the buffer is
    /// full waits (at most `timeout`) for the writer to take bytes, for writers
    /// whose own window bounds what they queue (the Sink outbox pump): a reading client
    /// is not a slow consumer because a burst passed the bound. `Full` once `timeout`
    /// has passed with the buffer still full.
    pub async fn binary_waiting(
        &self,
        payload: &[u8],
        timeout: std::time::Duration,
    ) -> Result<u64, SendError> {
        let queued = wait_for(&self.shared.drained, || match self.binary(payload) {
            Err(SendError::Full) => None,
            done => Some(done),
        });
        tokio::time::timeout(timeout, queued)
            .await
            .unwrap_or(Err(SendError::Full))
    }

    /// Waits until at most half the byte bound is buffered (or the connection is gone),
    /// for writers that produce faster than a reading client takes (recovery replay).
    pub async fn writable(&self) {
        wait_for(&self.shared.drained, || {
            let st = self.shared.lock();
            (st.gone || st.closing || st.buf.len() + st.handed <= self.shared.limits.max_bytes / 2)
                .then_some(())
        })
        .await
    }

    /// Waits until the bytes up to `end` (a frame's end as [`text`](Self::text) returned
    /// it) have been written. Never returns for `None`, nor once the connection is gone
    /// (what was not written never will be).
    pub async fn flushed(&self, end: Option<u64>) {
        let Some(end) = end else {
            return std::future::pending().await;
        };
        let written = wait_for(&self.shared.drained, || {
            let st = self.shared.lock();
            match (st.confirmed >= end, st.gone) {
                (true, _) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            }
        })
        .await;
        if !written {
            std::future::pending::<()>().await;
        }
    }

    /// Bytes buffered for this connection now.
    pub fn buffered(&self) -> usize {
        let st = self.shared.lock();
        st.buf.len() + st.handed
    }
}

impl Stream for OutboundBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &*self.shared;
        let mut st = shared.lock();
        // Polled again: the writer wrote (nearly all of) what it got last time.
        let handed = std::mem::take(&mut st.handed);
        shared.budget.give(handed);
        st.confirmed += handed as u64;
        shared.drained.notify_waiters();
        if !st.buf.is_empty() {
            let chunk = st.buf.split().freeze();
            if st.buf.capacity() > KEEP_CAPACITY {
                st.buf = BytesMut::new();
            }
            st.handed = chunk.len();
            st.frames = 0;
            return Poll::Ready(Some(Ok(chunk)));
        }
        if st.closing {
            return Poll::Ready(None);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl OutboundBody {
    /// With a write delay: waits until bytes are pending, then for the delay, so that
    /// frames queued meanwhile go out in the same write. At once without a delay, or
    /// once the connection is closing.
    pub async fn gather(&self) {
        let delay = self.shared.limits.write_delay;
        if delay.is_zero() {
            return;
        }
        let closing = std::future::poll_fn(|cx| {
            let mut st = self.shared.lock();
            if st.closing {
                Poll::Ready(true)
            } else if !st.buf.is_empty() {
                Poll::Ready(false)
            } else {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        if !closing {
            tokio::time::sleep(delay).await;
        }
    }

    /// Resolves `linger` after the connection's close frame was queued: how long a
    /// writer still waits for a client that does not read before it gives up.
    pub async fn closed_for(&self, linger: std::time::Duration) {
        wait_for(&self.shared.closing, || {
            self.shared.lock().closing.then_some(())
        })
        .await;
        tokio::time::sleep(linger).await;
    }
}

impl Drop for OutboundBody {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut st = shared.lock();
        st.gone = true;
        let held = st.buf.len() + std::mem::take(&mut st.handed);
        st.buf = BytesMut::new();
        st.frames = 0;
        shared.budget.give(held);
        shared.drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn budget(ceiling: usize) -> Arc<OutboundBudget> {
        OutboundBudget::new(ceiling, IntGauge::new("t", "t").unwrap())
    }

    fn limits(max_bytes: usize, max_frames: usize) -> OutboundLimits {
        OutboundLimits {
            max_bytes,
            max_frames,
            write_delay: std::time::Duration::ZERO,
        }
    }

    #[actix_rt::test]
    async fn pending_frames_leave_in_one_chunk() {
        let b = budget(1 << 20);
        let (sink, mut body) = channel(Framing::WebSocket, limits(1024, 100), b.clone());
        assert_eq!(sink.text(b"one"), Ok(5));
        assert_eq!(sink.text(b"two"), Ok(10));
        assert_eq!(b.used(), 10);
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(
            &chunk[..],
            &[0x81, 3, b'o', b'n', b'e', 0x81, 3, b't', b'w', b'o']
        );
        // Still counted until the next poll: the writer may not have written it.
        assert_eq!(sink.buffered(), 10);
        assert_eq!(sink.confirmed(), 0);
        sink.close(None, false);
        assert_eq!(&body.next().await.unwrap().unwrap()[..], &[0x88, 0]);
        assert_eq!(sink.confirmed(), 10);
        assert!(body.next().await.is_none());
        assert_eq!(b.used(), 0);
        assert_eq!(sink.text(b"late"), Err(SendError::Closed));
    }

    /// With a write delay, frames queued while the writer waits leave in its one write;
    /// without one, the writer takes what is there when it is woken.
    #[actix_rt::test]
    async fn a_write_delay_gathers_what_comes_meanwhile() {
        let b = budget(1 << 20);
        let delayed = OutboundLimits {
            write_delay: std::time::Duration::from_millis(30),
            ..limits(1024, 100)
        };
        let (sink, mut body) = channel(Framing::WebSocket, delayed, b.clone());
        let writer = actix_rt::spawn(async move {
            body.gather().await;
            body.next().await.unwrap().unwrap()
        });
        sink.text(b"a").unwrap();
        // The writer is waiting out its delay: it has not taken the first frame yet.
        tokio::task::yield_now().await;
        sink.text(b"b").unwrap();
        let chunk = writer.await.unwrap();
        assert_eq!(&chunk[..], &[0x81, 1, b'a', 0x81, 1, b'b']);

        let (sink, mut body) = channel(Framing::WebSocket, limits(1024, 100), b.clone());
        sink.text(b"a").unwrap();
        body.gather().await;
        assert_eq!(&body.next().await.unwrap().unwrap()[..], &[0x81, 1, b'a']);
        // Closing: no delay for the close frame.
        let (sink, body) = channel(Framing::WebSocket, delayed, b);
        sink.close(None, false);
        tokio::time::timeout(std::time::Duration::from_millis(5), body.gather())
            .await
            .expect("no delay once closing");
    }

    #[actix_rt::test]
    async fn the_byte_bound_covers_what_was_handed_over() {
        let b = budget(1 << 20);
        let (sink, mut body) = channel(Framing::WebSocket, limits(100, 100), b.clone());
        sink.binary(&[0; 60]).unwrap();
        let _in_flight = body.next().await.unwrap().unwrap();
        // 62 handed over, not yet confirmed written: 40 more would pass 100.
        assert_eq!(sink.binary(&[0; 40]), Err(SendError::Full));
        sink.binary(&[0; 30]).unwrap();
    }

    #[test]
    fn one_large_frame_fits_an_empty_buffer_but_the_frame_count_holds() {
        let b = budget(1 << 20);
        let (sink, _body) = channel(Framing::WebSocket, limits(10, 2), b.clone());
        sink.binary(&[0; 500]).unwrap();
        assert_eq!(sink.binary(&[0; 1]), Err(SendError::Full));
        let (sink, _body) = channel(Framing::WebSocket, limits(1000, 2), b);
        sink.text(b"a").unwrap();
        sink.text(b"b").unwrap();
        assert_eq!(sink.text(b"c"), Err(SendError::Full));
    }

    #[test]
    fn the_node_ceiling_refuses_backlogged_connections_and_is_given_back() {
        let b = budget(100);
        let (s1, body1) = channel(Framing::WebSocket, limits(1000, 100), b.clone());
        let (s2, _body2) = channel(Framing::WebSocket, limits(1000, 100), b.clone());
        s1.binary(&[0; 90]).unwrap();
        s2.binary(&[0; 20]).unwrap(); // an empty buffer always takes one frame
        assert_eq!(s2.binary(&[0; 1]), Err(SendError::Full));
        assert_eq!(b.used(), 114);
        drop(body1);
        assert_eq!(b.used(), 22);
        assert_eq!(s1.text(b"x"), Err(SendError::Closed));
        s2.binary(&[0; 1]).unwrap();
    }

    #[actix_rt::test]
    async fn binary_waiting_waits_for_room_and_gives_up_after_its_timeout() {
        use std::time::Duration;
        let b = budget(1 << 20);
        let (sink, mut body) = channel(Framing::WebSocket, limits(100, 100), b.clone());
        sink.binary(&[0; 60]).unwrap();
        assert_eq!(sink.binary(&[0; 60]), Err(SendError::Full));
        // Nobody takes the bytes: full after the timeout.
        assert_eq!(
            sink.binary_waiting(&[0; 60], Duration::from_millis(50))
                .await,
            Err(SendError::Full)
        );
        // The writer takes the first chunk, then asks for more: room again.
        let waiting = sink.binary_waiting(&[0; 60], Duration::from_secs(5));
        let drain = async {
            let _ = body.next().await.unwrap().unwrap();
            let _ = body.next().await.unwrap().unwrap();
        };
        let (queued, ()) = tokio::join!(waiting, drain);
        assert_eq!(queued, Ok(124));
    }

    #[test]
    fn closing_a_slow_consumer_drops_its_backlog_first() {
        let b = budget(1 << 20);
        let (sink, _body) = channel(Framing::WebSocket, limits(1000, 100), b.clone());
        sink.binary(&[0; 500]).unwrap();
        let reason = CloseReason::new(murmur_shared::close::CloseCode::SlowConsumer, "slow");
        sink.close(Some(&reason), true);
        assert_eq!(sink.buffered(), 8);
        assert_eq!(b.used(), 8);
    }

    #[actix_rt::test]
    async fn length_prefixed_frames_carry_their_length_and_close_ends_the_stream() {
        let b = budget(1 << 20);
        let (sink, mut body) = channel(Framing::LengthPrefixed, limits(1024, 100), b.clone());
        assert_eq!(sink.binary(&[7, 8, 9]), Ok(5));
        // Text and control frames do not exist on the stream.
        assert_eq!(sink.text(b"x"), Err(SendError::Closed));
        assert_eq!(sink.ping(b""), Err(SendError::Closed));
        assert_eq!(sink.binary(&vec![0; 65536]), Err(SendError::Closed));
        let reason = CloseReason::new(murmur_shared::close::CloseCode::Normal, "bye");
        sink.close(Some(&reason), false);
        assert_eq!(&body.next().await.unwrap().unwrap()[..], &[0, 3, 7, 8, 9]);
        assert!(body.next().await.is_none());
        assert_eq!(b.used(), 0);
    }
}
