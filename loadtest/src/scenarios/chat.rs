//! Chat group fan-out. Members (one device each) log in over `/chat`, spread over the
//! URLs; each group of up to `--group-size` members is created by its first member;
//! `--senders` members (spread over the groups) send `request-sending-a-message` at the
//! step's rate. Every participant's device gets a `message-broadcast` (the sender's
//! own copy included), possibly packed in server `batch-mode-action` frames. Primary
//! events: broadcasts received (expected = messages × group size). The broker also
//! sends the sender a `message-delivered` report per recipient device; those are
//! counted in `extra.delivery_reports`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;

use super::receiver::{self, RecvProto};
use super::sender::{step_all, SendProto, Sender};
use super::{run_steps, setup_all, Ctx};
use crate::cli::ChatArgs;
use crate::clients::chat;
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

pub async fn run(ctx: &Ctx, args: &ChatArgs) -> Result<RunResult, String> {
    let n = args.members.max(1);
    let gsize = args.group_size.clamp(1, 256).min(n);
    let groups = n.div_ceil(gsize);
    // Equal groups: the last one may be smaller, so use the real sizes.
    let group_of = |i: usize| i / gsize;
    let sizes: Vec<usize> = (0..groups)
        .map(|g| (0..n).filter(|&i| group_of(i) == g).count())
        .collect();
    let senders_n = args.senders.clamp(1, n);
    let secret = ctx.common.jwt_secret.clone();
    let urls = args.urls.clone();
    let mut run = ctx.result(
        "chat",
        "murmuration",
        "deliveries",
        json!({"members": n, "group_size": gsize, "groups": groups, "senders": senders_n,
               "urls": urls, "rates_messages_per_s": ctx.common.rates}),
    );
    let users: Vec<String> = (0..n).map(|i| format!("m{}-{i}", ctx.run_id)).collect();
    let mut conns = setup_all(ctx, n, "chat members", |i| {
        let url = urls[i % urls.len()].clone();
        let user = users[i].clone();
        let tok = token::mint(&secret, &user);
        let sources = ctx.sources.clone();
        async move { chat::login(&url, &user, "d1", &tok, &sources).await }
    })
    .await?;
    ctx.rec.set_status(format!("setup: {groups} chat groups"));
    let mut sessions = Vec::new();
    for g in 0..groups {
        let first = g * gsize;
        let members: Vec<String> = users[first..first + sizes[g]].to_vec();
        sessions.push(chat::create_group(&mut conns[first], &members).await?);
    }
    // Senders: the first member(s) of each group, round-robin over groups.
    let mut sender_idx = Vec::new();
    for k in 0..senders_n {
        let g = k % groups;
        let i = g * gsize + k / groups;
        if i < n && group_of(i) == g {
            sender_idx.push(i);
        }
    }
    let reports = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut sender_groups = Vec::new();
    for (i, w) in conns.into_iter().enumerate() {
        let member = Member {
            scan: Scanner::default(),
            reports: reports.clone(),
        };
        if sender_idx.contains(&i) {
            let proto = ChatSender {
                member,
                session: sessions[group_of(i)].clone(),
                pad: ctx.common.payload_bytes,
            };
            senders.push(Sender::spawn(
                w,
                proto,
                &ctx.rec,
                format!("chat sender {i}"),
            ));
            sender_groups.push(sizes[group_of(i)]);
        } else {
            receiver::spawn(w, member, &ctx.rec, format!("chat member {i}"));
        }
    }
    run.setup.insert("connections".into(), json!(n));
    run.setup.insert("groups".into(), json!(groups));
    // Each message reaches its group; with equal groups the fan-out is the group size.
    let fanout = sender_groups.iter().sum::<usize>() as f64 / sender_groups.len().max(1) as f64;
    run_steps(ctx, fanout, None, &mut run, |w| step_all(&senders, w)).await;
    let total_sent = ctx.rec.sent_total();
    run.extra.insert(
        "delivery_reports".into(),
        json!(reports.load(Ordering::Relaxed)),
    );
    run.extra.insert(
        "note".into(),
        json!(format!(
            "each broadcast to another member's device also sends the sender a message-delivered report ({} reports for {} messages sent in the whole run, warm-ups included)",
            reports.load(Ordering::Relaxed),
            total_sent
        )),
    );
    Ok(run)
}
