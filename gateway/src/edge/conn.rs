//! The connection loop and its exit path, the same for every protocol and transport.
//!
//! The loop reads client messages first, then wakes for the session and the adapter
//! (the broker's close, the adapter's own events, queued envelopes), then for the
//! deadline and the heartbeat. Every way out is one [`End`]; the exit path then counts
//! it once, queues the close and detaches the session.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use murmur_broker::metrics::{outcome, Metrics};
use murmur_shared::close::{CloseCode, CloseReason};
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

use super::{Adapter, Data, End, Refusal, Stop, Wake, PING_INTERVAL};

/// One thing a transport received.
#[derive(Debug)]
pub enum Incoming {
    Data(Data),
    Ping(Bytes),
    Pong,
    /// The client's close (a WebSocket close frame).
    Close,
}

/// Where client messages come from.
pub trait Input {
    /// The next message; `None` once the client is gone; `Err` when the bytes break a
    /// transport rule, with the close they earn (nothing follows). Cancel-safe.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Incoming, CloseReason>>>;
}

/// Serves one connection until it ends, then runs the exit path.
pub async fn serve<A: Adapter>(metrics: Arc<Metrics>, mut adapter: A, mut input: impl Input) {
    let label = A::PROTOCOL.label();
    metrics.connections.with_label_values(&[label]).inc();
    metrics.connections_total.with_label_values(&[label]).inc();
    // The adapter's own futures (start, apply, on_event: broker calls, store round
    // trips) are boxed while they run, so the task an idle connection keeps is the loop's
    // state alone, not the largest future an adapter could await.
    let end = match Box::pin(adapter.start()).await {
        Ok(()) => run(&metrics, &mut adapter, &mut input).await,
        Err(stop) => End::of(stop),
    };
    drop(input);
    exit(&metrics, adapter, end);
    metrics.connections.with_label_values(&[label]).dec();
}

async fn run<A: Adapter>(metrics: &Metrics, a: &mut A, input: &mut impl Input) -> End {
    let label = A::PROTOCOL.label();
    let messages_in = metrics.messages_in.with_label_values(&[label]);
    let decode_errors = metrics.decode_errors.with_label_values(&[label]);
    let beat = a.heartbeat();
    let deadline = a.deadline();
    let ready_by = sleep(deadline.map_or(PING_INTERVAL, |d| d.after));
    tokio::pin!(ready_by);
    let silence = sleep(beat.silence);
    tokio::pin!(silence);
    let mut ping = interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let idle = || Stop::close(CloseCode::IdleTimeout, beat.reason);

    loop {
        let flow = tokio::select! {
            biased;
            msg = input.recv() => {
                last_seen = Instant::now();
                // Without a server heartbeat only the protocol's own frames count (a
                // WebSocket ping does not keep a silent Sink device connected).
                if !beat.ping && matches!(msg, Some(Ok(Incoming::Data(_)))) {
                    silence.as_mut().reset(last_seen + beat.silence);
                }
                match msg {
                    None => return End::here(None),
                    Some(Err(reason)) => {
                        decode_errors.inc();
                        return End::here(Some(reason));
                    }
                    Some(Ok(Incoming::Data(data))) => {
                        messages_in.inc();
                        match A::decode(data) {
                            Ok(frame) => Box::pin(a.apply(frame)).await,
                            Err(Refusal::Answer(answer)) => {
                                decode_errors.inc();
                                let out = &a.edge().out;
                                match answer {
                                    Data::Text(t) => out.text(&t).map(|_| ()),
                                    Data::Binary(b) => out.binary(&b).map(|_| ()),
                                }
                            }
                            Err(Refusal::Close(reason)) => {
                                decode_errors.inc();
                                Err(Stop::Close(reason))
                            }
                        }
                    }
                    Some(Ok(Incoming::Ping(payload))) => a.edge().out.pong(&payload),
                    Some(Ok(Incoming::Pong)) => Ok(()),
                    Some(Ok(Incoming::Close)) => Err(Stop::close(CloseCode::Normal, "bye")),
                }
            }
            wake = a.next() => match wake {
                Wake::Closed(reason) => return End { reason, by_broker: true },
                Wake::Envelope(Some(env)) => a.deliver(env).await,
                Wake::Envelope(None) => return End::here(None),
                Wake::Event(event) => Box::pin(a.on_event(event)).await,
            },
            _ = &mut ready_by, if deadline.is_some() && !a.ready() => {
                let reason = deadline.map_or("", |d| d.reason);
                Err(Stop::close(CloseCode::PolicyViolation, reason))
            }
            _ = &mut silence, if !beat.ping => Err(idle()),
            _ = ping.tick(), if beat.ping => {
                a.tick();
                if last_seen.elapsed() > beat.silence {
                    Err(idle())
                } else {
                    a.edge().out.ping()
                }
            }
        };
        if let Err(stop) = flow {
            return End::of(stop);
        }
    }
}

/// The one exit path: counts the end once, queues the close (a slow consumer's backlog
/// is dropped first so its close is not stuck behind it), and detaches the session with
/// what it queued but the socket never got.
fn exit<A: Adapter>(metrics: &Metrics, mut a: A, end: End) {
    let label = A::PROTOCOL.label();
    let slow = end.slow();
    if !end.by_broker {
        if let Some(r) = end.reason.as_ref().filter(|r| r.code != CloseCode::Normal) {
            metrics
                .disconnects
                .with_label_values(&[label, r.code.label()])
                .inc();
        }
        if slow {
            metrics.delivery(label, outcome::DROPPED_SLOW);
        }
    }
    // The queue stops first: what comes next is the session's to buffer.
    if let Some(link) = a.edge().link.as_mut() {
        link.queue.close();
    }
    a.edge().out.close(end.reason.as_ref(), slow);
    let mut unsent = a.unwritten();
    if let Some(mut link) = a.edge().link.take() {
        while let Ok(env) = link.queue.try_recv() {
            unsent.push(env);
        }
        link.handle.detach_with(link.epoch, unsent);
    }
}
