//! The chat connection loop. One task per socket, one exit path.
//!
//! Frames: UTF-8 JSON text of at most 4096 bytes. Larger → close 1009, binary → 1003,
//! invalid UTF-8 → 1007, not a JSON object → 1008. Not authenticated within
//! [`AUTH_TIMEOUT`] → close 1008. Outgoing actions that queue up while the socket is
//! busy are packed into `batch-mode-action` frames (each ≤ 4096 bytes).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use murmur_broker::metrics::outcome;
use murmur_broker::session::SessionHandle;
use murmur_shared::api::ApiErrorCode;
use murmur_shared::chat;
use murmur_shared::close::{CloseCode, CloseReason};
use murmur_shared::envelope::{Body, Envelope, Kind};
use murmur_shared::ids::now_ms;
use murmur_shared::wsframe::Message;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use super::actions;
use crate::api::error;
use crate::state::AppState;
use crate::ws::{SendError, WsSink, WsStream, CLIENT_TIMEOUT, PING_INTERVAL};

/// The metrics label of this protocol.
pub const LABEL: &str = "chat";
/// A connection must authenticate within this.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing actions packed into frames per wake-up at most.
const PACK_MAX: usize = 64;

/// The socket cannot take more: it is gone, or (with `ChatConn::stop` set) full.
pub struct Closed;

/// An authenticated device connection.
pub struct Device {
    pub handle: SessionHandle,
    pub device_id: String,
    epoch: u64,
}

/// One chat connection as the action handlers see it.
pub struct ChatConn {
    pub state: Arc<AppState>,
    pub device: Option<Device>,
    ws: WsSink,
    /// Why the connection must close, when a write found the buffer full.
    stop: Option<CloseReason>,
    /// Set once authenticated: the session's queue and close signal.
    outbound: Option<mpsc::Receiver<Arc<Envelope>>>,
    closed: Option<oneshot::Receiver<CloseReason>>,
}

impl ChatConn {
    /// Writes one server action.
    pub async fn send(&mut self, action: &Value) -> Result<(), Closed> {
        self.send_text(action.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Closed> {
        self.write(text.as_bytes())
    }

    fn write(&mut self, text: &[u8]) -> Result<(), Closed> {
        let res = self.ws.text(text).map(|_| ());
        self.check(res)?;
        self.state
            .node
            .metrics
            .messages_out
            .with_label_values(&[LABEL])
            .inc();
        Ok(())
    }

    /// A full buffer makes this a slow consumer.
    fn check(&mut self, res: Result<(), SendError>) -> Result<(), Closed> {
        match res {
            Ok(()) => Ok(()),
            Err(SendError::Full) => {
                self.stop = close(
                    CloseCode::SlowConsumer,
                    "slow consumer: outbound buffer full",
                );
                Err(Closed)
            }
            Err(SendError::Closed) => Err(Closed),
        }
    }

    /// Called by `authenticate` on success: the session is attached to this socket.
    pub fn attach(
        &mut self,
        handle: SessionHandle,
        device_id: String,
        attachment: murmur_broker::Attachment,
    ) {
        self.outbound = Some(attachment.outbound);
        self.closed = Some(attachment.closed);
        self.device = Some(Device {
            handle,
            device_id,
            epoch: attachment.epoch,
        });
    }

    /// Encodes queued envelopes (this one and whatever else is ready), packs them into
    /// as few frames as fit, and writes them.
    async fn deliver(&mut self, first: Arc<Envelope>) -> Result<(), Closed> {
        let mut envs = vec![first];
        if let Some(rx) = &mut self.outbound {
            while envs.len() < PACK_MAX {
                match rx.try_recv() {
                    Ok(e) => envs.push(e),
                    Err(_) => break,
                }
            }
        }
        let Some(device) = &self.device else {
            return Ok(());
        };
        let metrics = &self.state.node.metrics;
        let mut texts = Vec::with_capacity(envs.len());
        for env in &envs {
            let Some(action) = encode(env, device) else {
                continue;
            };
            if !crate::timing::deliverable(metrics, LABEL, action.get("~timing")) {
                continue;
            }
            metrics.delivery(LABEL, outcome::DELIVERED);
            let latency = now_ms().saturating_sub(env.created_ms) as f64 / 1000.0;
            metrics
                .delivery_latency
                .with_label_values(&[LABEL])
                .observe(latency);
            report_delivery(env, device);
            texts.push(action.to_string());
        }
        let count = texts.len();
        let frames = chat::pack_frames(texts);
        if frames.len() < count {
            metrics
                .chat_batched_frames
                .inc_by((count - frames.len()) as u64);
        }
        for frame in frames {
            self.write(frame.as_bytes())?;
        }
        Ok(())
    }
}

/// The wire form of an envelope from the user's inbox. The connection that caused a
/// session change or broadcast was answered directly (with its `cdid`) and skips the
/// inbox copy.
fn encode(env: &Envelope, device: &Device) -> Option<Value> {
    if env.kind != Kind::Message {
        return None;
    }
    let Body::Json(body) = &env.body else {
        return None;
    };
    let own_answer = env.from.session == Some(device.handle.id())
        && matches!(
            env.subject.as_deref(),
            Some("providing-session-info" | "message-broadcast")
        );
    (!own_answer).then(|| body.clone())
}

/// A broadcast from another user reached this device: tell the sender.
fn report_delivery(env: &Envelope, device: &Device) {
    if env.subject.as_deref() != Some("message-broadcast") {
        return;
    }
    let body = env.json();
    let (Some(sender), Some(session), Some(id)) = (
        body.get("sender-id").and_then(Value::as_str),
        body.get("session-id").and_then(Value::as_str),
        body.get("message-id").and_then(Value::as_str),
    ) else {
        return;
    };
    if sender != device.handle.user() {
        murmur_broker::chat::delivered(&device.handle, &device.device_id, sender, session, id);
    }
}

/// `GET /chat` (WebSocket upgrade). Authentication happens inside the protocol.
pub async fn chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if state.node.is_draining() {
        return Ok(error(
            ApiErrorCode::Unavailable,
            "node is draining; connect to another node",
        ));
    }
    let (resp, ws, stream) = state.ws_upgrade(&req, body, chat::MAX_FRAME_BYTES)?;
    actix_web::rt::spawn(run(state.into_inner(), ws, stream));
    Ok(resp)
}

async fn next_outbound(rx: &mut Option<mpsc::Receiver<Arc<Envelope>>>) -> Option<Arc<Envelope>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_close(rx: &mut Option<oneshot::Receiver<CloseReason>>) -> Option<CloseReason> {
    match rx {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

fn close(code: CloseCode, reason: &str) -> Option<CloseReason> {
    Some(CloseReason::new(code, reason))
}

async fn run(state: Arc<AppState>, ws: WsSink, mut stream: WsStream) {
    let metrics = state.node.metrics.clone();
    metrics.connections.with_label_values(&[LABEL]).inc();
    metrics.connections_total.with_label_values(&[LABEL]).inc();
    let mut conn = ChatConn {
        state,
        device: None,
        ws,
        stop: None,
        outbound: None,
        closed: None,
    };
    let auth_deadline = sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    let mut ping = interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let mut broker_closed = false;

    let reason: Option<CloseReason> = loop {
        tokio::select! {
            biased;
            reason = next_close(&mut conn.closed) => {
                // The session closed us and has counted the disconnect already.
                broker_closed = true;
                break reason;
            }
            _ = &mut auth_deadline, if conn.device.is_none() => {
                break close(CloseCode::PolicyViolation, "not authenticated in time");
            }
            msg = stream.recv() => {
                last_seen = Instant::now();
                let res = match msg {
                    None => break None,
                    Some(Ok(Message::Text(bytes))) => {
                        conn.state.node.metrics.messages_in.with_label_values(&[LABEL]).inc();
                        let text = std::str::from_utf8(&bytes).unwrap_or_default();
                        match chat::parse_frame(text) {
                            Ok(obj) => actions::frame(&mut conn, obj).await,
                            Err(e) => break close(CloseCode::PolicyViolation, &e.0),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        break close(CloseCode::UnsupportedData, "binary frames are not accepted");
                    }
                    Some(Ok(Message::Ping(bytes))) => {
                        let res = conn.ws.pong(&bytes).map(|_| ());
                        conn.check(res)
                    }
                    Some(Ok(Message::Pong(_))) => Ok(()),
                    Some(Ok(Message::Close(_))) => break close(CloseCode::Normal, "bye"),
                    Some(Err(e)) => break Some(CloseReason::new(e.close_code(), e.reason())),
                };
                if res.is_err() {
                    break conn.stop.take();
                }
            }
            env = next_outbound(&mut conn.outbound) => match env {
                Some(env) => {
                    if conn.deliver(env).await.is_err() {
                        break conn.stop.take();
                    }
                }
                None => break None,
            },
            _ = ping.tick() => {
                if last_seen.elapsed() > CLIENT_TIMEOUT {
                    break close(CloseCode::IdleTimeout, "no traffic from the client");
                }
                let res = conn.ws.ping(b"").map(|_| ());
                if conn.check(res).is_err() {
                    break conn.stop.take();
                }
            }
        }
    };

    if let Some(r) = reason.as_ref().filter(|_| !broker_closed) {
        if r.code != CloseCode::Normal {
            metrics
                .disconnects
                .with_label_values(&[LABEL, r.code.label()])
                .inc();
        }
    }
    if let Some(device) = &conn.device {
        device.handle.detach(device.epoch);
    }
    metrics.connections.with_label_values(&[LABEL]).dec();
    let slow = reason
        .as_ref()
        .is_some_and(|r| r.code == CloseCode::SlowConsumer);
    conn.ws.close(reason.as_ref(), slow);
}
