//! The persistent open-loop sender: one task per sending WebSocket for the whole run.
//! It reads everything the server sends (answers, deliveries, pings) all the time and,
//! when a step hands it a [`Timetable`], sends each message at its due time — all
//! messages already due in one batch, so a late sender catches up instead of skipping.

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::{SentStats, Timetable};
use crate::clients::ws::{self, classify, Incoming, Ws};
use crate::metrics::{Local, Recorder};

/// What a protocol does with a sending connection.
pub trait SendProto: Send + 'static {
    /// The text frame for message `seq` due at `due_us`.
    fn message(&mut self, due_us: u64, seq: u64) -> String;
    /// Handles a received text frame; may return a frame to send back (pong, answer).
    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String>;
    /// Handles a received binary frame (ignored unless the protocol uses them).
    fn on_binary(&mut self, data: &[u8], local: &mut Local) -> Option<String> {
        let _ = (data, local);
        None
    }
}

/// Handle of a running sender task.
pub struct Sender {
    cmds: mpsc::Sender<(Timetable, oneshot::Sender<SentStats>)>,
}

/// Most messages sent in one batch before the socket is flushed and read again.
const BATCH: usize = 256;

impl Sender {
    /// Starts the task that owns `ws`.
    pub fn spawn(ws: Ws, proto: impl SendProto, rec: &Arc<Recorder>, name: String) -> Sender {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(run(ws, proto, rec.clone(), rx, name));
        Sender { cmds: tx }
    }

    /// Runs one timetable; resolves when it is exhausted (or the connection is gone).
    pub async fn step(&self, tt: Timetable) -> SentStats {
        super::step_one(&self.cmds, tt).await
    }
}

/// Runs every sender on its own timetable and sums what they sent.
pub async fn step_all(senders: &[Sender], window: super::Window) -> SentStats {
    let n = senders.len();
    let all = senders
        .iter()
        .enumerate()
        .map(|(i, s)| s.step(Timetable::new(window, i, n)));
    let mut total = SentStats::default();
    for s in futures_util::future::join_all(all).await {
        total += s;
    }
    total
}

async fn run(
    mut ws: Ws,
    mut proto: impl SendProto,
    rec: Arc<Recorder>,
    mut cmds: mpsc::Receiver<(Timetable, oneshot::Sender<SentStats>)>,
    name: String,
) {
    let mut local = Local::new(&rec);
    let mut current: Option<(Timetable, oneshot::Sender<SentStats>, SentStats)> = None;
    let mut seq: u64 = 0;
    let mut closed: Option<String> = None;
    while closed.is_none() {
        let now = rec.now_us();
        let due = current.as_ref().and_then(|(tt, _, _)| tt.next_due(now));
        if current.is_some() && due.is_none() {
            // Timetable exhausted: report and wait for the next step.
            if let Some((_, done, stats)) = current.take() {
                let _ = done.send(stats);
            }
            continue;
        }
        let wake = due.map(|d| rec.instant_at(d));
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                Some((tt, done)) => current = Some((tt, done, SentStats::default())),
                None => break,
            },
            _ = tokio::time::sleep_until(wake.unwrap_or_else(std::time::Instant::now).into()), if wake.is_some() => {
                let Some((tt, _, stats)) = current.as_mut() else { continue };
                let mut n = 0;
                let now = rec.now_us();
                while let Some(due) = tt.next_due(now) {
                    if due > now || n >= BATCH {
                        break;
                    }
                    let msg = proto.message(due, seq);
                    seq += 1;
                    tt.advance();
                    stats.sent_total += 1;
                    if tt.window.counts(due) {
                        stats.sent_window += 1;
                    }
                    n += 1;
                    if let Err(e) = ws::feed_text(&mut ws, msg).await {
                        closed = Some(e);
                        break;
                    }
                }
                rec.add_sent(n as u64);
                if closed.is_none() {
                    if let Err(e) = ws::flush(&mut ws).await {
                        closed = Some(e);
                    }
                }
            }
            item = ws.next() => {
                let mut item = item;
                loop {
                    let reply = match classify(item) {
                        Incoming::Text(t) => proto.on_text(t.as_str(), &mut local),
                        Incoming::Binary(b) => proto.on_binary(&b, &mut local),
                        Incoming::Other => None,
                        Incoming::Closed(why) => {
                            closed = Some(why);
                            break;
                        }
                    };
                    if let Some(reply) = reply {
                        if let Err(e) = ws::feed_text(&mut ws, reply).await {
                            closed = Some(e);
                            break;
                        }
                    }
                    match ws.next().now_or_never() {
                        Some(next) => item = next,
                        None => break,
                    }
                }
                local.flush();
                if closed.is_none() {
                    if let Err(e) = ws::flush(&mut ws).await {
                        closed = Some(e);
                    }
                }
            }
        }
    }
    if let Some(why) = closed {
        rec.disconnect(format!("{name}: {why}"));
    }
    if let Some((_, done, stats)) = current.take() {
        let _ = done.send(stats);
    }
    // Keep answering the step commands (with nothing sent) so steps do not hang.
    while let Some((_, done)) = cmds.recv().await {
        let _ = done.send(SentStats::default());
    }
}
