//! Channel / room fan-out. Subscribers join one channel (Helios `broker:subscribe`) or
//! room (Socket.IO `join`), spread round-robin over `--sub-url`; publishers on
//! `--pub-url` publish at the step's rate (Helios `broker:publish`, Socket.IO
//! `pub` → `io.to(room).emit`). Primary events: deliveries (expected = publishes ×
//! subscribers). Helios also reports the publish acknowledgement latency.

use serde_json::json;

use super::receiver::{self, RecvProto};
use super::sender::{step_all, SendProto, Sender};
use super::{or_default, run_steps, setup_all, Ctx};
use crate::cli::{FanoutArgs, System};
use crate::clients::{helios, socketio, ws};
use crate::metrics::{Kind, Local};
use crate::payload::{self, Scanner};
use crate::report::RunResult;
use crate::token;

/// Counts every embedded send time as a delivery; answers Engine.IO pings.
pub struct Subscriber {
    scan: Scanner,
}

impl RecvProto for Subscriber {
    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        if socketio::is_ping(text) {
            return Some(socketio::PONG.into());
        }
        self.scan
            .each(text.as_bytes(), |t| local.sample(Kind::Primary, t));
        None
    }
}

/// A Helios publisher: `broker:publish`; the request id carries the due time so the
/// answer's latency can be measured (secondary).
struct HeliosPublisher {
    id: u64,
    channel: String,
    pad: usize,
}

/// The due time hidden in the last 12 hex digits of a generated request id.
pub fn due_of_request_id(text: &str) -> Option<u64> {
    let id = helios::request_id_of(text)?;
    u64::from_str_radix(id.get(24..36)?, 16).ok()
}

impl SendProto for HeliosPublisher {
    fn message(&mut self, due_us: u64, seq: u64) -> String {
        let id = helios::request_id(self.id, due_us);
        helios::publish(&id, &self.channel, &payload::json(due_us, seq, self.pad))
    }

    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        if text.contains(r#""type":"response""#) {
            if helios::is_failure(text) {
                local
                    .recorder()
                    .error(format!("publish failed: {}", clip(text)));
            } else if let Some(due) = due_of_request_id(text) {
                local.sample(Kind::Secondary, due);
            }
        }
        None
    }
}

/// A Socket.IO publisher: `42["pub",room,data]`.
struct SioPublisher {
    room: String,
    pad: usize,
}

impl SendProto for SioPublisher {
    fn message(&mut self, due_us: u64, seq: u64) -> String {
        socketio::event(
            "pub",
            &[
                &serde_json::Value::from(self.room.as_str()).to_string(),
                &payload::json(due_us, seq, self.pad),
            ],
        )
    }

    fn on_text(&mut self, text: &str, _local: &mut Local) -> Option<String> {
        socketio::is_ping(text).then(|| socketio::PONG.into())
    }
}

pub fn clip(text: &str) -> String {
    text.chars().take(200).collect()
}

pub async fn run(ctx: &Ctx, args: &FanoutArgs) -> Result<RunResult, String> {
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| format!("bench-{}", ctx.run_id));
    let sub_urls = or_default(&args.sub_urls, &args.urls).to_vec();
    let pub_urls = or_default(&args.pub_urls, &args.urls).to_vec();
    let system = args.system;
    let secret = ctx.common.jwt_secret.clone();
    let mut run = ctx.result(
        "fanout",
        match system {
            System::Helios => "murmuration",
            System::Socketio => "socketio",
        },
        "deliveries",
        json!({"system": system, "subscribers": args.subscribers, "publishers": args.publishers,
               "sub_urls": sub_urls, "pub_urls": pub_urls, "channel": channel,
               "payload_bytes": ctx.common.payload_bytes, "rates_publishes_per_s": ctx.common.rates}),
    );

    let t0 = std::time::Instant::now();
    let subs = setup_all(ctx, args.subscribers, "subscribers", |i| {
        let url = sub_urls[i % sub_urls.len()].clone();
        let channel = channel.clone();
        let secret = secret.clone();
        let run_id = ctx.run_id.clone();
        let sources = ctx.sources.clone();
        async move {
            match system {
                System::Helios => {
                    let tok = token::mint(&secret, &format!("sub-{run_id}-{i}"));
                    let mut w = helios::connect(&url, &tok, &sources).await?;
                    helios::subscribe(&mut w, &helios::request_id(i as u64, 1), &channel).await?;
                    Ok(w)
                }
                System::Socketio => {
                    let mut w = socketio::connect(&url, &sources).await?;
                    socketio::join(&mut w, &channel).await?;
                    Ok(w)
                }
            }
        }
    })
    .await?;
    for (i, w) in subs.into_iter().enumerate() {
        let proto = Subscriber {
            scan: Scanner::default(),
        };
        receiver::spawn(w, proto, &ctx.rec, format!("subscriber {i}"));
    }
    let pubs = setup_all(ctx, args.publishers, "publishers", |i| {
        let url = pub_urls[i % pub_urls.len()].clone();
        let secret = secret.clone();
        let run_id = ctx.run_id.clone();
        let sources = ctx.sources.clone();
        async move {
            match system {
                System::Helios => {
                    let tok = token::mint(&secret, &format!("pub-{run_id}-{i}"));
                    helios::connect(&url, &tok, &sources).await
                }
                System::Socketio => socketio::connect(&url, &sources).await,
            }
        }
    })
    .await?;
    let senders: Vec<Sender> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, w): (usize, ws::Ws)| {
            let name = format!("publisher {i}");
            match system {
                System::Helios => Sender::spawn(
                    w,
                    HeliosPublisher {
                        id: 1_000 + i as u64,
                        channel: channel.clone(),
                        pad: ctx.common.payload_bytes,
                    },
                    &ctx.rec,
                    name,
                ),
                System::Socketio => Sender::spawn(
                    w,
                    SioPublisher {
                        room: channel.clone(),
                        pad: ctx.common.payload_bytes,
                    },
                    &ctx.rec,
                    name,
                ),
            }
        })
        .collect();
    run.setup.insert(
        "connections".into(),
        json!(args.subscribers + args.publishers),
    );
    run.setup.insert(
        "setup_s".into(),
        json!(super::round2(t0.elapsed().as_secs_f64())),
    );

    let secondary = (system == System::Helios).then_some("publish ack");
    run_steps(ctx, args.subscribers as f64, secondary, &mut run, |w| {
        step_all(&senders, w)
    })
    .await;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_carry_the_due_time() {
        let id = helios::request_id(7, 123_456_789);
        let frame = format!(r#"{{"type":"response","requestId":"{id}","success":true}}"#);
        assert_eq!(due_of_request_id(&frame), Some(123_456_789));
    }
}
