//! TimeStick. `--sessions` sessions each START on their own target (callers of at most
//! 100 sessions each); `--connections` keep-alive connections POST `request` messages,
//! round-robin over the sessions, at the step's rate (0 = closed loop: each connection
//! POSTs as soon as the previous answer arrived, like wrk). Primary events: POSTs
//! answered 202; latency is from the due time to the answer. With `--pollers K`, the
//! first K targets also get a receiver session that long-polls; its deliveries are
//! the secondary figure (latency from the due time to the poll answer).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::{run_steps, setup_all, step_each, Ctx, SentStats};
use crate::cli::TimestickArgs;
use crate::clients::http::Conn;
use crate::clients::timestick::{self, Session};
use crate::metrics::{Kind, Local, Recorder};
use crate::net::{split_url, Sources};
use crate::payload::{self, Scanner};
use crate::report::RunResult;
use crate::token;

const POST_TIMEOUT: Duration = Duration::from_secs(30);
const SESSIONS_PER_CALLER: usize = 100;

use super::StepCmd as Cmd;

/// One POSTing connection for the whole run.
fn spawn_poster(
    host: String,
    sessions: Vec<Session>,
    rec: Arc<Recorder>,
    sources: Arc<Sources>,
    pad: usize,
    name: String,
) -> mpsc::Sender<Cmd> {
    let (tx, mut rx) = mpsc::channel::<Cmd>(4);
    tokio::spawn(async move {
        let mut conn = Conn::new(&host);
        let mut local = Local::new(&rec);
        let mut seq: u64 = 0;
        let mut next_session = 0;
        let mut failures_in_a_row = 0;
        while let Some((mut tt, done)) = rx.recv().await {
            let mut stats = SentStats::default();
            while let Some(due) = tt.next_send(&rec, &mut local, &mut stats).await {
                let s = &sessions[next_session % sessions.len()];
                next_session += 1;
                let body = timestick::request_body(
                    &s.id,
                    &format!("m{seq}"),
                    &payload::json(due, seq, pad),
                );
                seq += 1;
                match timestick::post(&mut conn, &sources, s, &body, POST_TIMEOUT).await {
                    Ok(r) if r.status == 202 => {
                        failures_in_a_row = 0;
                        local.sample(Kind::Primary, due);
                    }
                    Ok(r) => rec.error(format!(
                        "POST {}: {}",
                        r.status,
                        super::fanout::clip(&r.text())
                    )),
                    Err(e) => {
                        rec.error(e);
                        failures_in_a_row += 1;
                        if failures_in_a_row > 100 {
                            rec.disconnect(format!("{name}: 100 failed POSTs in a row"));
                            break;
                        }
                    }
                }
            }
            local.flush();
            let _ = done.send(stats);
        }
    });
    tx
}

/// A long-polling receiver for the whole run.
fn spawn_poller(host: String, session: Session, rec: Arc<Recorder>, sources: Arc<Sources>) {
    tokio::spawn(async move {
        let mut conn = Conn::new(&host);
        let mut local = Local::new(&rec);
        let scan = Scanner::default();
        let mut cursor: Option<String> = None;
        let mut failures = 0;
        loop {
            match timestick::poll(&mut conn, &sources, &session, 20, cursor.as_deref()).await {
                Ok((body, next)) => {
                    failures = 0;
                    scan.each(&body, |t| local.sample(Kind::Secondary, t));
                    local.flush();
                    if next.is_some() {
                        cursor = next;
                    }
                }
                Err(e) => {
                    rec.error(e);
                    failures += 1;
                    if failures > 20 {
                        rec.disconnect("poller: 20 failed polls in a row");
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

pub async fn run(ctx: &Ctx, args: &TimestickArgs) -> Result<RunResult, String> {
    let (host, _) = split_url(&args.url)?;
    let secret = ctx.common.jwt_secret.clone();
    let n = args.sessions.max(1);
    let pollers = args.pollers.min(n);
    let mut run = ctx.result(
        "timestick",
        "murmuration",
        "accepted POSTs",
        json!({"url": args.url, "sessions": n, "connections": args.connections,
               "pollers": pollers, "rates_posts_per_s": ctx.common.rates}),
    );
    let max_rate = ctx.common.rates.iter().cloned().fold(0.0, f64::max);
    if max_rate / n as f64 > 90.0 {
        eprintln!(
            "murmur-load: warning: {max_rate}/s over {n} sessions exceeds the broker's 100 messages/s per session; expect 429s"
        );
    }
    let target = |i: usize| format!("bench-{}/t{i}", ctx.run_id);
    let t0 = std::time::Instant::now();
    let sessions = setup_all(ctx, n, "TimeStick sessions", |i| {
        let host = host.clone();
        let caller = format!("ts-{}-{}", ctx.run_id, i / SESSIONS_PER_CALLER);
        let tok = token::mint(&secret, &caller);
        let target = target(i);
        let sources = ctx.sources.clone();
        async move {
            let mut c = Conn::new(&host);
            timestick::start(&mut c, &sources, &caller, &tok, &target).await
        }
    })
    .await?;
    let receivers = setup_all(ctx, pollers, "TimeStick receivers", |i| {
        let host = host.clone();
        let caller = format!("tr-{}-{}", ctx.run_id, i / SESSIONS_PER_CALLER);
        let tok = token::mint(&secret, &caller);
        let target = target(i);
        let sources = ctx.sources.clone();
        async move {
            let mut c = Conn::new(&host);
            timestick::start(&mut c, &sources, &caller, &tok, &target).await
        }
    })
    .await?;
    run.setup
        .insert("sessions_started".into(), json!(n + pollers));
    run.setup.insert(
        "starts_per_s".into(),
        json!(super::round1(
            (n + pollers) as f64 / t0.elapsed().as_secs_f64()
        )),
    );
    for s in receivers {
        spawn_poller(host.clone(), s, ctx.rec.clone(), ctx.sources.clone());
    }
    let c = args.connections.clamp(1, n);
    let posters: Vec<mpsc::Sender<Cmd>> = (0..c)
        .map(|k| {
            let mine: Vec<Session> = sessions.iter().skip(k).step_by(c).cloned().collect();
            spawn_poster(
                host.clone(),
                mine,
                ctx.rec.clone(),
                ctx.sources.clone(),
                ctx.common.payload_bytes,
                format!("poster {k}"),
            )
        })
        .collect();
    let posters = &posters;
    let secondary = (pollers > 0).then_some("long-poll delivery");
    run_steps(ctx, 1.0, secondary, &mut run, |w| step_each(posters, w)).await;
    Ok(run)
}
