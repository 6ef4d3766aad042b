//! Chat group fan-out, for three systems. Members are split into groups of
//! `--group-size` and spread over the URLs; `--senders` members (spread over the groups,
//! the first members of each) send at the step's rate, and every message reaches every
//! connection of its group, the sender's own included. Primary events: deliveries
//! (expected = messages × receiving connections of the group).
//!
//! * **Murmuration** (`--system murmuration`): members log in over `/chat` with
//!   `--devices` devices each; each group (at most 256 participants, the protocol's
//!   limit) is created by its first member; senders send `request-sending-a-message`.
//!   Every participant's device gets a `message-broadcast` (the sending connection gets
//!   its copy as the answer), possibly packed in server `batch-mode-action` frames. The
//!   broker also sends the sender `message-delivered` reports; those are counted in
//!   `extra.delivery_reports`.
//! * **NATS** (`--system nats`): a subject per group that every member subscribes to;
//!   senders `PUB` on it (and get their own message back: NATS echoes by default).
//! * **Socket.IO** (`--system socketio`): a room per group that every member joins;
//!   senders emit `pub(room, data)` → `io.to(room).emit`, the sender included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::fanout::{NatsPublisher, NatsReceiver, Subscriber};
use super::receiver::{self, RecvProto};
use super::sender::{step_all, SendProto, Sender};
use super::{round2, run_steps, setup_all, Ctx};
use crate::cli::{ChatArgs, System};
use crate::clients::{chat, nats, socketio, ws};
use crate::metrics::{Kind, Local};
use crate::payload::{self, Scanner};
use crate::report::RunResult;
use crate::token;

struct Member {
    scan: Scanner,
    reports: Arc<AtomicU64>,
}

impl Member {
    fn handle(&mut self, text: &str, local: &mut Local) {
        self.scan
            .each(text.as_bytes(), |t| local.sample(Kind::Primary, t));
        let failed = chat::failures(text);
        if failed > 0 {
            local
                .recorder()
                .error(format!("chat action failed: {}", super::fanout::clip(text)));
        }
        let r = chat::delivery_reports(text);
        if r > 0 {
            self.reports.fetch_add(r as u64, Ordering::Relaxed);
        }
    }
}

impl RecvProto for Member {
    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        self.handle(text, local);
        None
    }
}

struct ChatSender {
    member: Member,
    session: String,
    pad: usize,
}

impl SendProto for ChatSender {
    fn message(&mut self, due_us: u64, seq: u64) -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        chat::send_message(&self.session, &payload::json(due_us, seq, self.pad), ms)
    }

    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        self.member.handle(text, local);
        None
    }
}

/// A Socket.IO member that also sends: `42["pub",room,data]`; counts the deliveries it
/// gets back (it is in the room) and answers Engine.IO pings.
struct SioMember {
    room: String,
    pad: usize,
    recv: Subscriber,
}

impl SendProto for SioMember {
    fn message(&mut self, due_us: u64, seq: u64) -> String {
        socketio::event(
            "pub",
            &[
                &serde_json::Value::from(self.room.as_str()).to_string(),
                &payload::json(due_us, seq, self.pad),
            ],
        )
    }

    fn on_text(&mut self, text: &str, local: &mut Local) -> Option<String> {
        self.recv.on_text(text, local)
    }
}

/// How members are split into groups, and who sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Groups {
    pub size: usize,
    /// The real size of each group (the last one may be smaller).
    pub sizes: Vec<usize>,
    /// Member indices of the senders: the first member(s) of each group, round-robin
    /// over the groups.
    pub senders: Vec<usize>,
}

impl Groups {
    pub fn new(members: usize, size: usize, senders: usize) -> Groups {
        let n = members.max(1);
        let size = size.clamp(1, n);
        let groups = n.div_ceil(size);
        let sizes: Vec<usize> = (0..groups).map(|g| size.min(n - g * size)).collect();
        let mut picked = Vec::new();
        for k in 0..senders.clamp(1, n) {
            let g = k % groups;
            let i = g * size + k / groups;
            if k / groups < sizes[g] {
                picked.push(i);
            }
        }
        Groups {
            size,
            sizes,
            senders: picked,
        }
    }

    pub fn of(&self, member: usize) -> usize {
        member / self.size
    }

    /// The members of group `g`.
    pub fn members(&self, g: usize) -> std::ops::Range<usize> {
        g * self.size..g * self.size + self.sizes[g]
    }
}

pub async fn run(ctx: &Ctx, args: &ChatArgs) -> Result<RunResult, String> {
    let n = args.members.max(1);
    let max = if args.system == System::Helios {
        murmur_shared::chat::MAX_PARTICIPANTS
    } else {
        n
    };
    if args.devices > 1 && args.system != System::Helios {
        return Err("--devices is for --system murmuration only".into());
    }
    let devices = args.devices.max(1);
    let g = Groups::new(n, args.group_size.min(max), args.senders);
    let mut run = ctx.result(
        "chat",
        args.system.name(),
        "deliveries",
        json!({"system": args.system, "members": n, "devices_per_member": devices,
               "connections": n * devices, "group_size": g.size, "groups": g.sizes.len(),
               "receivers_per_group": g.size * devices, "senders": g.senders.len(),
               "urls": args.urls, "payload_bytes": ctx.common.payload_bytes,
               "rates_messages_per_s": ctx.common.rates}),
    );
    let t0 = std::time::Instant::now();
    let (senders, reports) = match args.system {
        System::Helios => {
            let (s, r) = murmuration(ctx, args, &g, devices).await?;
            (s, Some(r))
        }
        System::Nats | System::Socketio => (rooms(ctx, args, &g, &mut run).await?, None),
    };
    run.setup.insert("connections".into(), json!(n * devices));
    run.setup.insert("groups".into(), json!(g.sizes.len()));
    run.setup
        .insert("setup_s".into(), json!(round2(t0.elapsed().as_secs_f64())));
    // Each message reaches its group; with equal groups the fan-out is the group size.
    let fanout = g.senders.iter().map(|&i| g.sizes[g.of(i)]).sum::<usize>() as f64
        / g.senders.len().max(1) as f64
        * devices as f64;
    run_steps(ctx, fanout, None, &mut run, |w| step_all(&senders, w)).await;
    if let Some(reports) = reports {
        let reports = reports.load(Ordering::Relaxed);
        run.extra.insert("delivery_reports".into(), json!(reports));
        run.extra.insert(
            "note".into(),
            json!(format!(
                "the broker also sends senders message-delivered reports, aggregated per message per node ({reports} report frames for {} messages sent in the whole run, warm-ups included)",
                ctx.rec.sent_total()
            )),
        );
    }
    Ok(run)
}

/// Murmuration: log in every device, create the groups, start receivers and senders.
async fn murmuration(
    ctx: &Ctx,
    args: &ChatArgs,
    g: &Groups,
    devices: usize,
) -> Result<(Vec<Sender>, Arc<AtomicU64>), String> {
    let n = args.members.max(1);
    let secret = ctx.common.jwt_secret.clone();
    let urls = args.urls.clone();
    let users: Vec<String> = (0..n).map(|i| format!("m{}-{i}", ctx.run_id)).collect();
    // Connection c is device c % devices of member c / devices; a member's devices
    // alternate over the URLs, starting at its own index.
    let mut conns = setup_all(ctx, n * devices, "chat devices", |c| {
        let (m, d) = (c / devices, c % devices);
        let url = urls[(m + d) % urls.len()].clone();
        let user = users[m].clone();
        let tok = token::mint(&secret, &user);
        let sources = ctx.sources.clone();
        async move { chat::login(&url, &user, &format!("d{}", d + 1), &tok, &sources).await }
    })
    .await?;
    ctx.rec
        .set_status(format!("setup: {} chat groups", g.sizes.len()));
    let mut sessions = Vec::new();
    for k in 0..g.sizes.len() {
        let members: Vec<String> = users[g.members(k)].to_vec();
        let first = g.members(k).start * devices;
        sessions.push(chat::create_group(&mut conns[first], &members).await?);
    }
    let reports = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (c, w) in conns.into_iter().enumerate() {
        let member = Member {
            scan: Scanner::default(),
            reports: reports.clone(),
        };
        let m = c / devices;
        if c % devices == 0 && g.senders.contains(&m) {
            let proto = ChatSender {
                member,
                session: sessions[g.of(m)].clone(),
                pad: ctx.common.payload_bytes,
            };
            senders.push(Sender::spawn(
                w,
                proto,
                &ctx.rec,
                format!("chat sender {m}"),
            ));
        } else {
            receiver::spawn(
                w,
                member,
                &ctx.rec,
                format!("chat member {m} device {}", c % devices),
            );
        }
    }
    Ok((senders, reports))
}

/// NATS and Socket.IO: connect every member, subscribe it to its group's subject or
/// join it to its group's room, start receivers and senders.
async fn rooms(
    ctx: &Ctx,
    args: &ChatArgs,
    g: &Groups,
    run: &mut RunResult,
) -> Result<Vec<Sender>, String> {
    let system = args.system;
    let urls = args.urls.clone();
    let token = ctx.common.nats_token.clone();
    let name = |k: usize| match system {
        System::Nats => format!("bench.{}.g{k}", ctx.run_id),
        _ => format!("group-{}-{k}", ctx.run_id),
    };
    let names: Vec<String> = (0..g.sizes.len()).map(name).collect();
    let conns = setup_all(ctx, args.members.max(1), "group members", |i| {
        let url = urls[i % urls.len()].clone();
        let room = names[g.of(i)].clone();
        let token = token.clone();
        let sources = ctx.sources.clone();
        async move {
            if system == System::Nats {
                let mut c = nats::connect(&url, &token, &sources).await?;
                nats::subscribe(&mut c, &room, 1).await?;
                let version = c.info["version"].as_str().unwrap_or_default().to_string();
                Ok((c.ws, Some(c.parser), version))
            } else {
                let mut w = socketio::connect(&url, &sources).await?;
                socketio::join(&mut w, &room).await?;
                Ok((w, None, String::new()))
            }
        }
    })
    .await?;
    if system == System::Nats {
        // Subscriptions reach the other server over the route asynchronously; the
        // warm-up absorbs the rest, this keeps its first messages from being lost.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut senders = Vec::new();
    for (i, (w, parser, version)) in conns.into_iter().enumerate() {
        let w: ws::Ws = w;
        if i == 0 && !version.is_empty() {
            run.setup.insert("server_version".into(), json!(version));
        }
        let room = names[g.of(i)].clone();
        let pad = ctx.common.payload_bytes;
        let sending = g.senders.contains(&i);
        match parser {
            Some(p) if sending => senders.push(Sender::spawn(
                w,
                NatsPublisher {
                    subject: room,
                    pad,
                    recv: NatsReceiver::new(p),
                },
                &ctx.rec,
                format!("nats sender {i}"),
            )),
            Some(p) => receiver::spawn(
                w,
                NatsReceiver::new(p),
                &ctx.rec,
                format!("nats member {i}"),
            ),
            None if sending => senders.push(Sender::spawn(
                w,
                SioMember {
                    room,
                    pad,
                    recv: Subscriber::default(),
                },
                &ctx.rec,
                format!("socket.io sender {i}"),
            )),
            None => receiver::spawn(
                w,
                Subscriber::default(),
                &ctx.rec,
                format!("socket.io member {i}"),
            ),
        }
    }
    Ok(senders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_senders() {
        let g = Groups::new(200, 200, 20);
        assert_eq!(g.sizes, vec![200]);
        assert_eq!(g.senders, (0..20).collect::<Vec<_>>());
        // 2000 members in groups of 256: 8 groups, the last one smaller.
        let g = Groups::new(2000, 256, 4);
        assert_eq!(g.sizes.len(), 8);
        assert_eq!(g.sizes.iter().sum::<usize>(), 2000);
        assert_eq!(g.sizes[7], 2000 - 7 * 256);
        assert_eq!(g.senders, vec![0, 256, 512, 768]);
        assert_eq!(g.of(511), 1);
        assert_eq!(g.members(7), 1792..2000);
        // More senders than members of a small last group.
        let g = Groups::new(5, 4, 5);
        assert_eq!(g.sizes, vec![4, 1]);
        assert_eq!(g.senders, vec![0, 4, 1, 2]);
        assert_eq!(Groups::new(0, 0, 0).sizes, vec![1]);
    }
}
