//! The connection engine: one shape for every connection-oriented protocol, one loop,
//! one exit path.
//!
//! A protocol is an [`Adapter`]: `decode` (client bytes → a typed frame, a pure
//! function), `apply` (a typed frame → effects through the broker, answers written to
//! the connection) and `deliver` (an envelope from the session → encoded bytes in the
//! connection's outbound buffer). Everything else is here and the same for all:
//!
//! * [`conn::serve`] is the loop. It reads client frames from an [`conn::Input`] (a WebSocket,
//!   [`crate::ws::WsStream`], or Sink's length-prefixed TCP/TLS stream,
//!   [`stream::StreamInput`]), writes what the session queues, answers pings, keeps
//!   the heartbeat and the adapter's deadline, and ends with one [`End`].
//! * [`Out`] is the connection's write side: frames are appended to its byte-bounded
//!   buffer ([`buffer::SendBuffer`]); an append over the bound is the slow-consumer
//!   signal ([`Stop`], close 4001).
//! * [`Link`] is the session the connection is attached to (its queue and its close
//!   signal), set when the protocol attaches (at the upgrade for Helios, after
//!   authentication for chat, after the handshake for Sink).
//! * The exit path ([`conn::serve`]'s end) closes the socket with the connection's one
//!   [`CloseReason`] (from the catalogue in `murmur_shared::close`), counts it once in
//!   `murmur_disconnects_total{protocol,reason}` (a close the broker decided was counted
//!   where it was decided), and detaches the session, handing back what was never
//!   written.
//!
//! While an adapter's `apply` awaits the broker (a store round trip, an RPC), it runs
//! the call through [`Adapter::during`]: deliveries for the client keep being written.

pub mod buffer;
pub mod conn;
pub mod out;
pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use murmur_broker::session::{Attachment, Protocol, SessionHandle};
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::Envelope;
use tokio::sync::{mpsc, oneshot};

pub use buffer::{OutboundBudget, OutboundLimits, SendError};
pub use out::Out;

/// How often the server pings a client on a protocol with a server heartbeat.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Silence after which a WebSocket client is considered gone (3 ping intervals, so one
/// lost pong is not fatal).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A client message, as the transport delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// A WebSocket text message (valid UTF-8: the transport checked it).
    Text(Bytes),
    /// A WebSocket binary message, or one length-prefixed Sink frame.
    Binary(Bytes),
}

/// What a protocol does with a client message it cannot decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Answer it (an in-protocol error) and carry on.
    Answer(Data),
    /// Close the connection.
    Close(CloseReason),
}

/// Why a connection stops: the caller decided a close, or the socket cannot take more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Close with this reason (a slow consumer is `Close(4001)`).
    Close(CloseReason),
    /// The connection is gone (closed, or closing): nothing more can be written.
    Gone,
}

impl Stop {
    pub fn close(code: CloseCode, reason: &str) -> Stop {
        Stop::Close(CloseReason::new(code, reason))
    }
}

/// What an adapter's step returns: carry on, or stop.
pub type Flow = Result<(), Stop>;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// The close frame's reason (`None`: the client is gone, or no reason is given).
    pub reason: Option<CloseReason>,
    /// The broker closed it (a kick, takeover, drain, kill): already counted there.
    pub by_broker: bool,
}

impl End {
    pub fn here(reason: Option<CloseReason>) -> End {
        End {
            reason,
            by_broker: false,
        }
    }

    fn of(stop: Stop) -> End {
        match stop {
            Stop::Close(r) => End::here(Some(r)),
            Stop::Gone => End::here(None),
        }
    }

    /// Whether it ended as a slow consumer.
    pub fn slow(&self) -> bool {
        self.reason
            .as_ref()
            .is_some_and(|r| r.code == CloseCode::SlowConsumer)
    }
}

/// The session a connection is attached to.
pub struct Link {
    pub handle: SessionHandle,
    /// The attachment's epoch (passed back when detaching).
    pub epoch: u64,
    /// Envelopes for the client, bounded.
    pub queue: mpsc::Receiver<Arc<Envelope>>,
    /// Fires when the broker closes this connection.
    pub closed: oneshot::Receiver<CloseReason>,
}

impl Link {
    /// The link of an attachment; its buffered envelopes are returned for the adapter
    /// to write first.
    pub fn new(handle: SessionHandle, attachment: Attachment) -> (Link, Vec<Arc<Envelope>>) {
        let Attachment {
            epoch,
            buffered,
            outbound,
            closed,
        } = attachment;
        let link = Link {
            handle,
            epoch,
            queue: outbound,
            closed,
        };
        (link, buffered)
    }
}

/// What the loop owns of every connection: its write side and, once attached, its session.
pub struct Edge {
    pub out: Out,
    pub link: Option<Link>,
}

impl Edge {
    pub fn new(out: Out) -> Edge {
        Edge { out, link: None }
    }

    /// The attached session's handle.
    pub fn handle(&self) -> Option<&SessionHandle> {
        self.link.as_ref().map(|l| &l.handle)
    }
}

/// Why the loop woke for the session or the adapter.
pub enum Wake<E> {
    /// The broker closed the connection (`None`: the session went without a reason).
    Closed(Option<CloseReason>),
    /// An envelope for the client (`None`: the session's queue ended).
    Envelope(Option<Arc<Envelope>>),
    /// One of the adapter's own events.
    Event(E),
}

/// Waits for the session (its close signal first, then its queue) and for `own`, the
/// adapter's own events. Before a session is attached only `own` can fire. Cancel-safe
/// when `own` is.
pub async fn wake<E>(link: &mut Option<Link>, own: impl Future<Output = E>) -> Wake<E> {
    let Some(link) = link else {
        return Wake::Event(own.await);
    };
    tokio::select! {
        biased;
        r = &mut link.closed => Wake::Closed(r.ok()),
        e = own => Wake::Event(e),
        env = link.queue.recv() => Wake::Envelope(env),
    }
}

/// The heartbeat of a protocol.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// The server pings every [`PING_INTERVAL`] (WebSocket protocols).
    pub ping: bool,
    /// Silence (nothing at all received) after which the client is closed 4004.
    pub silence: Duration,
    /// The reason of that close.
    pub reason: &'static str,
}

impl Heartbeat {
    /// The WebSocket protocols' heartbeat: pings every [`PING_INTERVAL`], closed after
    /// [`CLIENT_TIMEOUT`] of silence.
    pub const WEBSOCKET: Heartbeat = Heartbeat {
        ping: true,
        silence: CLIENT_TIMEOUT,
        reason: "no traffic from the client",
    };
}

/// A deadline the connection must meet before it is ready (authentication, handshake).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub after: Duration,
    /// Closed 1008 with this reason when missed.
    pub reason: &'static str,
}

/// One protocol on a connection. See the module docs.
pub trait Adapter: Sized {
    /// A client frame, decoded.
    type Frame;
    /// What the adapter waits on besides client frames and the session (replays,
    /// written-byte confirmations); `()` when nothing.
    type Event;
    /// The protocol (metric label, close accounting).
    const PROTOCOL: Protocol;

    /// The loop's part of this connection.
    fn edge(&mut self) -> &mut Edge;

    /// Client bytes → a typed frame. Pure: no I/O, no state.
    fn decode(data: Data) -> Result<Self::Frame, Refusal>;

    /// Applies one frame: effects through the broker, answers to the client.
    fn apply(&mut self, frame: Self::Frame) -> impl Future<Output = Flow>;

    /// Encodes an envelope from the session and appends it to the outbound buffer (with
    /// whatever else the session has queued, when the protocol packs them).
    fn deliver(&mut self, env: Arc<Envelope>) -> impl Future<Output = Flow>;

    /// The next wake-up for the session or the adapter ([`wake`] with the adapter's own
    /// events; by default it has none). Cancel-safe.
    fn next(&mut self) -> impl Future<Output = Wake<Self::Event>> {
        wake(&mut self.edge().link, std::future::pending())
    }

    /// Handles one of the adapter's own events.
    fn on_event(&mut self, event: Self::Event) -> impl Future<Output = Flow>;

    /// The protocol's heartbeat.
    fn heartbeat(&self) -> Heartbeat;

    /// What must happen by when, if anything, before [`ready`](Self::ready).
    fn deadline(&self) -> Option<Deadline> {
        None
    }

    /// Whether the deadline is met (authenticated, handshake done).
    fn ready(&self) -> bool {
        true
    }

    /// Runs once before the first frame is read (a recovery's replay and greeting).
    fn start(&mut self) -> impl Future<Output = Flow> {
        std::future::ready(Ok(()))
    }

    /// Every ping interval.
    fn tick(&mut self) {}

    /// At the end, after the close is queued: envelopes taken from the session but never
    /// written, oldest first (a recoverable session delivers them on recovery).
    fn unwritten(&mut self) -> Vec<Arc<Envelope>> {
        Vec::new()
    }

    /// Awaits a broker call while writing what arrives for the client meanwhile: a
    /// connection's deliveries never wait for its own request. The call's answer is
    /// written after them.
    fn during<T>(
        &mut self,
        call: impl Future<Output = T>,
    ) -> impl Future<Output = Result<T, Stop>> {
        async move {
            tokio::pin!(call);
            loop {
                let env = {
                    let Some(link) = self.edge().link.as_mut() else {
                        return Ok(call.await);
                    };
                    tokio::select! {
                        biased;
                        out = &mut call => return Ok(out),
                        env = link.queue.recv() => env,
                    }
                };
                match env {
                    Some(env) => self.deliver(env).await?,
                    // The session ended: the loop learns it next; finish the call first.
                    None => return Ok(call.await),
                }
            }
        }
    }
}
