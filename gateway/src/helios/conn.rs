//! The Helios connection loop: one task per socket. It writes what the session queues,
//! reads frames and dispatches them, pings, and closes once with one reason.

use std::sync::Arc;

use actix_ws::{AggregatedMessage, MessageStream, Session};
use bytestring::ByteString;
use murmur_broker::metrics::outcome;
use murmur_broker::session::{Attachment, SessionHandle};
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::Envelope;
use murmur_shared::helios;
use murmur_shared::ids::now_ms;
use prometheus::{Histogram, IntCounter};
use serde_json::json;
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::{dispatch, encode};
use crate::state::AppState;
use crate::ws::{close_frame, protocol_error_close, CLIENT_TIMEOUT, PING_INTERVAL};

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

/// The socket was closed under us.
pub struct Closed;

/// One connection's writer side, as dispatch sees it.
pub struct Conn {
    pub state: Arc<AppState>,
    pub handle: SessionHandle,
    ws: Session,
    counters: Counters,
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

impl Conn {
    /// Writes one text frame.
    pub async fn send(&mut self, text: impl Into<ByteString>) -> Result<(), Closed> {
        self.counters.out.inc();
        self.ws.text(text).await.map_err(|_| Closed)
    }

    async fn deliver(&mut self, env: &Envelope) -> Result<(), Closed> {
        if env.timing.is_some()
            && !crate::timing::deliverable(&self.state.node.metrics, LABEL, env.timing.as_ref())
        {
            return Ok(());
        }
        let Some(text) = encode::frame(env) else {
            return Ok(());
        };
        self.counters.delivered.inc();
        let latency = now_ms().saturating_sub(env.created_ms) as f64 / 1000.0;
        self.counters.latency.observe(latency);
        self.send(text).await
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
}

/// Serves one attached Starling until either side closes.
pub async fn run(
    state: Arc<AppState>,
    handle: SessionHandle,
    attachment: Attachment,
    ws: Session,
    stream: MessageStream,
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
    };

    // Envelopes taken for this socket but not written: handed back for recovery.
    let mut unsent: Vec<Arc<Envelope>> = Vec::new();
    let reason: Option<CloseReason> = 'conn: {
        for (i, env) in buffered.iter().enumerate() {
            if conn.deliver(env).await.is_err() {
                unsent.extend(buffered[i..].iter().cloned());
                break 'conn None;
            }
        }
        let greeted = match greeting {
            Greeting::Fresh => Ok(()),
            Greeting::Recovered { detached_ms } => {
                let data = json!({
                    "timestamp": now_ms(),
                    "recoveredFrom": detached_ms,
                    "starlingId": conn.handle.id().to_string(),
                    "buffered": buffered.len(),
                });
                conn.notify("connection:recovered", data).await
            }
            Greeting::RecoveryFailed(reason) => {
                let data = json!({"timestamp": now_ms(), "reason": reason});
                conn.notify("connection:recovery_failed", data).await
            }
        };
        if greeted.is_err() {
            break 'conn None;
        }
        drop(buffered);

        let mut stream = stream
            .max_frame_size(helios::MAX_MESSAGE_BYTES)
            .aggregate_continuations()
            .max_continuation_size(helios::MAX_MESSAGE_BYTES);
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
                        Some(Ok(AggregatedMessage::Text(text))) => {
                            conn.state.node.metrics.messages_in.with_label_values(&[LABEL]).inc();
                            dispatch::text(&mut conn, &text).await
                        }
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            conn.state.node.metrics.decode_errors.with_label_values(&[LABEL]).inc();
                            let text = helios::encode_protocol_error(
                                helios::ErrorCode::InvalidMessageFormat,
                                "binary frames are not part of the protocol",
                                &["frames must be UTF-8 JSON text".to_string()],
                                now_ms(),
                            );
                            conn.send(text).await
                        }
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            conn.ws.pong(&bytes).await.map_err(|_| Closed)
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => Ok(()),
                        Some(Ok(AggregatedMessage::Close(_))) => {
                            break Some(CloseReason::new(CloseCode::Normal, "bye"))
                        }
                        Some(Err(e)) => {
                            break Some(protocol_error_close(&e, helios::MAX_MESSAGE_BYTES))
                        }
                    };
                    if res.is_err() {
                        break None;
                    }
                }
                env = outbound.recv() => match env {
                    Some(env) => {
                        if conn.deliver(&env).await.is_err() {
                            unsent.push(env);
                            break None;
                        }
                    }
                    None => break None,
                },
                _ = ping.tick() => {
                    if last_seen.elapsed() > CLIENT_TIMEOUT {
                        break Some(CloseReason::new(CloseCode::IdleTimeout, "no traffic from the client"));
                    }
                    if conn.ws.ping(b"").await.is_err() {
                        break None;
                    }
                }
            }
        }
    };

    // Stop the queue first (the session then buffers what comes next), then hand back
    // what was queued but never written, so a recovery delivers it, in order.
    outbound.close();
    while let Ok(env) = outbound.try_recv() {
        unsent.push(env);
    }
    conn.handle.detach_with(epoch, unsent);
    metrics.connections.with_label_values(&[LABEL]).dec();
    let _ = conn.ws.close(reason.as_ref().map(close_frame)).await;
}

/// Tells a client why its recovery failed, then closes (no fresh Starling without a
/// client token).
pub async fn refuse(mut ws: Session, reason: String) {
    let data = json!({"timestamp": now_ms(), "reason": reason});
    let text = helios::encode_notification(
        None,
        Some("connection:recovery_failed"),
        &data,
        None,
        now_ms(),
    );
    let _ = ws.text(text).await;
    let close = CloseReason::new(
        CloseCode::Unauthorized,
        "recovery failed and no client token given",
    );
    let _ = ws.close(Some(close_frame(&close))).await;
}
