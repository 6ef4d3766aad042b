//! Channel / room / subject fan-out. Subscribers join one channel (Helios
//! `broker:subscribe`), room (Socket.IO `join`) or subject (NATS `SUB`), spread
//! round-robin over `--sub-url`; publishers on `--pub-url` publish at the step's rate
//! (Helios `broker:publish`, Socket.IO `pub` → `io.to(room).emit`, NATS `PUB`). Primary
//! events: deliveries (expected = publishes × subscribers). Helios also reports the
//! publish acknowledgement latency.

use serde_json::json;

use super::receiver::{self, RecvProto};
use super::sender::{step_all, SendProto, Sender};
use super::{or_default, run_steps, setup_all, Ctx};
use crate::cli::{FanoutArgs, System};
use crate::clients::{helios, nats, socketio, ws};
use crate::metrics::{Kind, Local};
use crate::payload::{self, Scanner};
use crate::report::RunResult;
use crate::token;

/// Counts every embedded send time as a delivery; answers Engine.IO pings.
#[derive(Default)]
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

/// A NATS receiving connection: the send time in every `MSG` payload is a delivery;
/// server PINGs are answered; `-ERR`s and protocol errors are counted as errors.
pub struct NatsReceiver {
    parser: nats::Parser,
    scan: Scanner,
}

impl NatsReceiver {
    /// Continues with the parser of the connection's setup.
    pub fn new(parser: nats::Parser) -> NatsReceiver {
        NatsReceiver {
            parser,
            scan: Scanner::default(),
        }
    }

    pub fn handle(&mut self, data: &[u8], local: &mut Local) -> Option<String> {
        let mut pongs = 0;
        let scan = &self.scan;
        let r = self.parser.feed(data, |op| match op {
            nats::Op::Msg(m) => {
                if let Some(t) = scan.first(m.payload) {
                    local.sample(Kind::Primary, t);
                }
            }
            nats::Op::Ping => pongs += 1,
            nats::Op::Err(e) => local
                .recorder()
                .error(format!("nats -ERR {}", String::from_utf8_lossy(e))),
            _ => {}
        });
        if let Err(e) = r {
            local.recorder().error(format!("nats protocol: {e}"));
        }
        (pongs > 0).then(|| nats::PONG.repeat(pongs))
    }
}

impl RecvProto for NatsReceiver {
    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        self.handle(text.as_bytes(), local)
    }

    fn on_binary(&mut self, data: &[u8], local: &mut Local) -> Option<String> {
        self.handle(data, local)
    }
}

/// A NATS publisher: `PUB` on one subject; what it receives goes through a
/// [`NatsReceiver`] (deliveries, when it is subscribed to the subject itself).
pub struct NatsPublisher {
    pub subject: String,
    pub pad: usize,
    pub recv: NatsReceiver,
}

impl SendProto for NatsPublisher {
    fn message(&mut self, due_us: u64, seq: u64) -> String {
        nats::publish(&self.subject, &payload::json(due_us, seq, self.pad))
    }

    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        self.recv.handle(text.as_bytes(), local)
    }

    fn on_binary(&mut self, data: &[u8], local: &mut Local) -> Option<String> {
        self.recv.handle(data, local)
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
    let token = ctx.common.nats_token.clone();
    let mut run = ctx.result(
        "fanout",
        system.name(),
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
        let token = token.clone();
        let run_id = ctx.run_id.clone();
        let sources = ctx.sources.clone();
        async move {
            match system {
                System::Helios => {
                    let tok = token::mint(&secret, &format!("sub-{run_id}-{i}"));
                    let mut w = helios::connect(&url, &tok, &sources).await?;
                    helios::subscribe(&mut w, &helios::request_id(i as u64, 1), &channel).await?;
                    Ok((w, nats::Parser::default()))
                }
                System::Socketio => {
                    let mut w = socketio::connect(&url, &sources).await?;
                    socketio::join(&mut w, &channel).await?;
                    Ok((w, nats::Parser::default()))
                }
                System::Nats => {
                    let mut c = nats::connect(&url, &token, &sources).await?;
                    nats::subscribe(&mut c, &channel, 1).await?;
                    Ok((c.ws, c.parser))
                }
            }
        }
    })
    .await?;
    for (i, (w, parser)) in subs.into_iter().enumerate() {
        let name = format!("subscriber {i}");
        if system == System::Nats {
            receiver::spawn(w, NatsReceiver::new(parser), &ctx.rec, name);
        } else {
            let proto = Subscriber {
                scan: Scanner::default(),
            };
            receiver::spawn(w, proto, &ctx.rec, name);
        }
    }
    let pubs = setup_all(ctx, args.publishers, "publishers", |i| {
        let url = pub_urls[i % pub_urls.len()].clone();
        let secret = secret.clone();
        let token = token.clone();
        let run_id = ctx.run_id.clone();
        let sources = ctx.sources.clone();
        async move {
            match system {
                System::Helios => {
                    let tok = token::mint(&secret, &format!("pub-{run_id}-{i}"));
                    let w = helios::connect(&url, &tok, &sources).await?;
                    Ok((w, nats::Parser::default()))
                }
                System::Socketio => {
                    let w = socketio::connect(&url, &sources).await?;
                    Ok((w, nats::Parser::default()))
                }
                System::Nats => {
                    let c = nats::connect(&url, &token, &sources).await?;
                    Ok((c.ws, c.parser))
                }
            }
        }
    })
    .await?;
    if system == System::Nats {
        // Subscriptions reach the other server over the route asynchronously; the
        // warm-up absorbs the rest, this keeps its first messages from being lost.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let senders: Vec<Sender> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, (w, parser)): (usize, (ws::Ws, nats::Parser))| {
            let name = format!("publisher {i}");
            match system {
                System::Nats => Sender::spawn(
                    w,
                    NatsPublisher {
                        subject: channel.clone(),
                        pad: ctx.common.payload_bytes,
                        recv: NatsReceiver::new(parser),
                    },
                    &ctx.rec,
                    name,
                ),
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
