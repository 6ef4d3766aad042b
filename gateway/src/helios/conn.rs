//! The Helios connection loop: one task per socket. It writes what the session queues,
//! reads frames and dispatches them, pings, and closes once with one reason.
//!
//! Frames go into the connection's bounded outbound buffer ([`WsSink`]); one that does
//! not fit closes the connection with 4001. Envelopes whose frames never left the
//! process (still buffered, refused, or queued behind) are handed back to the session
//! at the end, so a recovery delivers them: channel publications by re-reading channel
//! history from the last position written, direct messages from the recovery buffer.

use std::collections::VecDeque;
use std::sync::Arc;

use bytestring::ByteString;
use murmur_broker::metrics::outcome;
use murmur_broker::session::{Attachment, SessionHandle};
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::Envelope;
use murmur_shared::helios;
use murmur_shared::ids::now_ms;
use murmur_shared::wsframe::Message;
use prometheus::{Histogram, IntCounter};
use serde_json::json;
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::{dispatch, encode};
use crate::state::AppState;
use crate::ws::{SendError, WsSink, WsStream, CLIENT_TIMEOUT, PING_INTERVAL};

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

/// The socket cannot take more: it is gone, or (with [`Conn::stop`] set) full.
pub struct Closed;

/// One connection's writer side, as dispatch sees it.
pub struct Conn {
    pub state: Arc<AppState>,
    pub handle: SessionHandle,
    ws: WsSink,
    counters: Counters,
    /// Envelopes whose frames are buffered but not yet written, with the frame's end
    /// (in bytes appended since the start): handed back if the connection ends first.
    unwritten: VecDeque<(u64, Arc<Envelope>)>,
    /// Why the connection must close, when a write found the buffer full.
    stop: Option<CloseReason>,
}

/// Metric handles resolved once per connection (not per message).
struct Counters {
    out: IntCounter,
    delivered: IntCounter,
    latency: Histogram,
}

impl Counters {
    fn new(metrics: &murmur_broker::metrics::Metrics) -> Self {
        Counters {
            out: metrics.messages_out.with_label_values(&[LABEL]),
            delivered: metrics
                .deliveries
                .with_label_values(&[LABEL, outcome::DELIVERED]),
            latency: metrics.delivery_latency.with_label_values(&[LABEL]),
        }
    }
}

fn slow_consumer() -> CloseReason {
    CloseReason::new(
        CloseCode::SlowConsumer,
        "slow consumer: outbound buffer full",
    )
}

impl Conn {
    /// Queues one text frame.
    pub async fn send(&mut self, text: impl Into<ByteString>) -> Result<(), Closed> {
        self.write(text.into().as_bytes()).map(|_| ())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<u64, Closed> {
        let res = self.ws.text(bytes);
        let end = self.check(res)?;
        self.counters.out.inc();
        Ok(end)
    }

    /// A full buffer makes this a slow consumer: the loop closes with [`Conn::stop`].
    fn check(&mut self, res: Result<u64, SendError>) -> Result<u64, Closed> {
        res.map_err(|e| {
            if e == SendError::Full {
                self.stop = Some(slow_consumer());
            }
            Closed
        })
    }

    /// Queues the frame of one envelope for the client. On failure the envelope is
    /// kept for the session (see the module docs).
    fn deliver(&mut self, env: Arc<Envelope>) -> Result<(), Closed> {
        if env.timing.is_some()
            && !crate::timing::deliverable(&self.state.node.metrics, LABEL, env.timing.as_ref())
        {
            return Ok(());
        }
        let Some(text) = encode::frame(&env) else {
            return Ok(());
        };
        match self.write(text.as_bytes()) {
            Ok(end) => {
                self.counters.delivered.inc();
                let latency = now_ms().saturating_sub(env.created_ms) as f64 / 1000.0;
                self.counters.latency.observe(latency);
                let written = self.ws.confirmed();
                while self.unwritten.front().is_some_and(|(e, _)| *e <= written) {
                    self.unwritten.pop_front();
                }
                self.unwritten.push_back((end, env));
                Ok(())
            }
            Err(Closed) => {
                self.unwritten.push_back((u64::MAX, env));
                Err(Closed)
            }
        }
    }

    /// A notification for this client from the broker itself.
    pub async fn notify(&mut self, topic: &str, data: serde_json::Value) -> Result<(), Closed> {
        self.send(helios::encode_notification(
            None,
            Some(topic),
            &data,
            None,
            now_ms(),
        ))
        .await
    }

    /// The envelopes whose frames never left this process, oldest first.
    fn take_unwritten(&mut self) -> Vec<Arc<Envelope>> {
        let written = self.ws.confirmed();
        self.unwritten
            .drain(..)
            .filter(|(end, _)| *end > written)
            .map(|(_, env)| env)
            .collect()
    }
}

/// Serves one attached Starling until either side closes.
pub async fn run(
    state: Arc<AppState>,
    handle: SessionHandle,
    attachment: Attachment,
    ws: WsSink,
    mut stream: WsStream,
    greeting: Greeting,
) {
    let metrics = state.node.metrics.clone();
    metrics.connections.with_label_values(&[LABEL]).inc();
    metrics.connections_total.with_label_values(&[LABEL]).inc();
    let Attachment {
        epoch,
        buffered,
        mut outbound,
        mut closed,
    } = attachment;
    let counters = Counters::new(&metrics);
    let mut conn = Conn {
        state,
        handle,
        ws,
        counters,
        unwritten: VecDeque::new(),
        stop: None,
    };

    let reason: Option<CloseReason> = 'conn: {
        // What the session kept or replayed for this client: written as fast as the
        // client reads (a long replay is no slow consumer), never over the bound.
        let mut buffered = buffered.into_iter();
        let replayed = buffered.len();
        while let Some(env) = buffered.next() {
            conn.ws.writable().await;
            if conn.deliver(env).is_err() {
                conn.unwritten.extend(buffered.map(|e| (u64::MAX, e)));
                break 'conn conn.stop.take();
            }
        }
        let greeted = match greeting {
            Greeting::Fresh => Ok(()),
            Greeting::Recovered { detached_ms } => {
                let data = json!({
                    "timestamp": now_ms(),
                    "recoveredFrom": detached_ms,
                    "starlingId": conn.handle.id().to_string(),
                    "buffered": replayed,
                });
                conn.notify("connection:recovered", data).await
            }
            Greeting::RecoveryFailed(reason) => {
                let data = json!({"timestamp": now_ms(), "reason": reason});
                conn.notify("connection:recovery_failed", data).await
            }
        };
        if greeted.is_err() {
            break 'conn conn.stop.take();
        }

        let mut ping = interval(PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        loop {
            tokio::select! {
                biased;
                reason = &mut closed => break reason.ok(),
                msg = stream.recv() => {
                    last_seen = Instant::now();
                    let res = match msg {
                        None => break None,
                        Some(Ok(Message::Text(bytes))) => {
                            conn.state.node.metrics.messages_in.with_label_values(&[LABEL]).inc();
                            match std::str::from_utf8(&bytes) {
                                Ok(text) => dispatch::text(&mut conn, text).await,
                                // The decoder checked it: unreachable, but never a panic.
                                Err(_) => break Some(CloseReason::new(
                                    CloseCode::InvalidPayload,
                                    "text message is not valid UTF-8",
                                )),
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            conn.state.node.metrics.decode_errors.with_label_values(&[LABEL]).inc();
                            let text = helios::encode_protocol_error(
                                helios::ErrorCode::InvalidMessageFormat,
                                "binary frames are not part of the protocol",
                                &["frames must be UTF-8 JSON text".to_string()],
                                now_ms(),
                            );
                            conn.send(text).await
                        }
                        Some(Ok(Message::Ping(bytes))) => conn.pong(&bytes),
                        Some(Ok(Message::Pong(_))) => Ok(()),
                        Some(Ok(Message::Close(_))) => {
                            break Some(CloseReason::new(CloseCode::Normal, "bye"))
                        }
                        Some(Err(e)) => {
                            conn.state.node.metrics.decode_errors.with_label_values(&[LABEL]).inc();
                            break Some(CloseReason::new(e.close_code(), e.reason()))
                        }
                    };
                    if res.is_err() {
                        break conn.stop.take();
                    }
                }
                env = outbound.recv() => match env {
                    Some(env) => {
                        if conn.deliver(env).is_err() {
                            break conn.stop.take();
                        }
                    }
                    None => break None,
                },
                _ = ping.tick() => {
                    if last_seen.elapsed() > CLIENT_TIMEOUT {
                        break Some(CloseReason::new(CloseCode::IdleTimeout, "no traffic from the client"));
                    }
                    if conn.ping().is_err() {
                        break conn.stop.take();
                    }
                }
            }
        }
    };

    // Stop the queue first (the session then buffers what comes next), then hand back
    // what was queued but never written, so a recovery delivers it, in order.
    outbound.close();
    let slow = reason
        .as_ref()
        .is_some_and(|r| r.code == CloseCode::SlowConsumer);
    if slow {
        // Closed by this loop (not by the session): count it once, here.
        metrics
            .disconnects
            .with_label_values(&[LABEL, CloseCode::SlowConsumer.label()])
            .inc();
        metrics.delivery(LABEL, outcome::DROPPED_SLOW);
    }
    // A slow consumer's backlog is dropped so the close frame is not stuck behind it.
    conn.ws.close(reason.as_ref(), slow);
    let mut unsent = conn.take_unwritten();
    while let Ok(env) = outbound.try_recv() {
        unsent.push(env);
    }
    conn.handle.detach_with(epoch, unsent);
    metrics.connections.with_label_values(&[LABEL]).dec();
}

impl Conn {
    fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        let res = self.ws.pong(payload);
        self.check(res).map(|_| ())
    }

    fn ping(&mut self) -> Result<(), Closed> {
        let res = self.ws.ping(b"");
        self.check(res).map(|_| ())
    }
}

/// Tells a client why its recovery failed, then closes (no fresh Starling without a
/// client token).
pub fn refuse(ws: WsSink, reason: String) {
    let data = json!({"timestamp": now_ms(), "reason": reason});
    let text = helios::encode_notification(
        None,
        Some("connection:recovery_failed"),
        &data,
        None,
        now_ms(),
    );
    let _ = ws.text(text.as_bytes());
    let close = CloseReason::new(
        CloseCode::Unauthorized,
        "recovery failed and no client token given",
    );
    ws.close(Some(&close), false);
}
