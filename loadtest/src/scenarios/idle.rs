//! Connection ramp and memory per idle connection. Opens `--connections` connections
//! (`--connect-concurrency` at a time, from `--source-ips`), each authenticated
//! (Helios: token on the upgrade, then one `system:ping` answered; with `--chat`,
//! GradAgenda chat devices instead, each its own user: `authenticate` answered, so each
//! is counted for presence; Socket.IO: connect
//! to the main namespace; NATS: `CONNECT` with `--nats-token`, then a `PING` answered),
//! holds them for `--hold`, and reads the RSS of the first
//! `--watch` process before and after. Primary events: connections ready; latency is
//! from the start of the connect to ready.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::fanout::NatsReceiver;
use super::receiver::{self, RecvProto};
use super::{round1, round2, setup_all, Ctx};
use crate::cli::{IdleArgs, System};
use crate::clients::{chat, helios, nats, socketio};
use crate::metrics::histogram::Latency;
use crate::metrics::procstat::{open_files_limit, rss_kib, CpuSnapshot, CpuUse};
use crate::metrics::{Kind, Local};
use crate::report::{RunResult, StepResult};
use crate::token;

struct Idle;

impl RecvProto for Idle {
    fn on_text(&mut self, text: &str, _local: &mut Local) -> Option<String> {
        socketio::is_ping(text).then(|| socketio::PONG.into())
    }
}

pub async fn run(ctx: &Ctx, args: &IdleArgs) -> Result<RunResult, String> {
    let n = args.connections;
    let system = args.system;
    let mut run = ctx.result(
        "idle",
        system.name(),
        "connections",
        json!({"system": system, "chat": args.chat, "connections": n, "urls": args.urls,
               "source_ips": ctx.common.source_ips, "hold_s": args.hold.as_secs_f64(),
               "concurrency": ctx.common.connect_concurrency}),
    );
    if let Some(limit) = open_files_limit() {
        run.setup
            .insert("tool_open_files_limit".into(), json!(limit));
        if (limit as usize) < n + 64 {
            return Err(format!(
                "open-files limit {limit} is too low for {n} connections: raise it (ulimit -n)"
            ));
        }
    }
    let server = ctx.common.watch.first().cloned();
    // Let the server settle, then take the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = server.as_ref().and_then(|w| rss_kib(w.pid));
    let tool0 = rss_kib(0);
    let cpu0 = CpuSnapshot::take(&ctx.common.watch);
    let step = ctx.rec.begin_step(0, u64::MAX);
    let secret = ctx.common.jwt_secret.clone();
    let urls = args.urls.clone();
    let nats_token = ctx.common.nats_token.clone();
    let chat_devices = args.chat;
    let run_id = ctx.run_id.clone();
    let t0 = Instant::now();
    let rec = ctx.rec.clone();
    let conns = setup_all(ctx, n, "idle connections", |i| {
        let url = urls[i % urls.len()].clone();
        let tok = token::mint(&secret, &format!("idle-{}-{i}", ctx.run_id));
        let run_id = run_id.clone();
        let sources = ctx.sources.clone();
        let rec = rec.clone();
        let nats_token = nats_token.clone();
        async move {
            let start = rec.now_us();
            let mut parser = None;
            let w = match system {
                // Chat devices: authenticated, so counted for presence (each its own user).
                System::Helios if chat_devices => {
                    let user = format!("idle-{}-{i}", run_id);
                    chat::login(&url, &user, "d", &tok, &sources).await?
                }
                System::Helios => {
                    let mut w = helios::connect(&url, &tok, &sources).await?;
                    helios::call(
                        &mut w,
                        &helios::request_id(i as u64, 3),
                        "system:ping",
                        json!({}),
                    )
                    .await?;
                    w
                }
                System::Socketio => socketio::connect(&url, &sources).await?,
                System::Nats => {
                    let c = nats::connect(&url, &nats_token, &sources).await?;
                    parser = Some(c.parser);
                    c.ws
                }
            };
            let mut l = Local::new(&rec);
            l.sample(Kind::Primary, start);
            Ok((w, parser))
        }
    })
    .await?;
    let ramp_s = t0.elapsed().as_secs_f64();
    let (_stop_tx, _stop_rx) = watch::channel(false);
    for (i, (w, parser)) in conns.into_iter().enumerate() {
        let name = format!("idle connection {i}");
        match parser {
            Some(p) => receiver::spawn(w, NatsReceiver::new(p), &ctx.rec, name),
            None => receiver::spawn(w, Idle, &ctx.rec, name),
        }
    }
    ctx.rec.set_status(format!("holding {n} idle connections"));
    tokio::time::sleep(args.hold).await;
    let rss1 = server.as_ref().and_then(|w| rss_kib(w.pid));
    let tool1 = rss_kib(0);
    let cpu1 = CpuSnapshot::take(&ctx.common.watch);
    let (count, latency, _, _) = ctx.rec.step_summary(step);
    let disconnects = ctx.rec.disconnects();
    run.setup.insert("ramp_s".into(), json!(round2(ramp_s)));
    run.extra.insert(
        "connections_open".into(),
        json!(count - disconnects.min(count)),
    );
    run.extra.insert(
        "connect_rate_per_s".into(),
        json!(round1(n as f64 / ramp_s)),
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        let per = (b as f64 - a as f64) * 1024.0 / n.max(1) as f64;
        run.extra.insert("server_rss_before_kib".into(), json!(a));
        run.extra.insert("server_rss_after_kib".into(), json!(b));
        run.extra
            .insert("server_rss_per_connection_bytes".into(), json!(per.round()));
        run.extra.insert(
            "server_rss_per_connection_kib".into(),
            json!(round2(per / 1024.0)),
        );
    }
    if let (Some(a), Some(b)) = (tool0, tool1) {
        let per = (b as f64 - a as f64) * 1024.0 / n.max(1) as f64;
        run.extra
            .insert("tool_rss_per_connection_bytes".into(), json!(per.round()));
    }
    run.steps.push(StepResult {
        label: format!("{n} connections"),
        offered_rate: 0.0,
        fanout: 1.0,
        measure_s: round1(ramp_s),
        sent: n as u64,
        sent_per_s: round1(n as f64 / ramp_s),
        expected: n as u64,
        received: count,
        loss_pct: if n > 0 {
            round1((n as u64).saturating_sub(count) as f64 / n as f64 * 1000.0) / 10.0
        } else {
            0.0
        },
        events_per_s: round1(count as f64 / ramp_s),
        latency: if count > 0 {
            latency
        } else {
            Latency::default()
        },
        errors: ctx.rec.errors(),
        disconnects,
        cpu: CpuUse::between(&ctx.common.watch, &cpu0, &cpu1, count),
        sustained: count == n as u64 && disconnects == 0,
        ..StepResult::default()
    });
    Ok(run)
}
