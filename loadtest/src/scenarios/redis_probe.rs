//! The backplane's own limit: subscribers `SUBSCRIBE` one Redis channel, a publisher
//! `PUBLISH`es at the step's rate (pipelined when several are due at once); latency is
//! from the due time to the subscriber's receipt. Primary events: messages received
//! (expected = publishes × subscribers).

use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{run_steps, setup_all, step_one, Ctx, SentStats, Timetable};
use crate::cli::RedisProbeArgs;
use crate::clients::resp::{self, Resp};
use crate::metrics::{Kind, Local, Recorder};
use crate::payload::{self, Scanner};
use crate::report::RunResult;

use super::StepCmd as Cmd;

fn spawn_subscriber(mut conn: resp::Conn, rec: Arc<Recorder>, i: usize) {
    tokio::spawn(async move {
        let mut local = Local::new(&rec);
        let scan = Scanner::default();
        loop {
            if !conn.has_buffered() {
                local.flush();
            }
            match conn.next().await {
                Ok(Resp::Array(items)) => {
                    if let Some(Resp::Bulk(Some(p))) = items.get(2) {
                        scan.each(p, |t| local.sample(Kind::Primary, t));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    rec.disconnect(format!("redis subscriber {i}: {e}"));
                    return;
                }
            }
        }
    });
}

fn spawn_publisher(
    conn: resp::Conn,
    channel: String,
    rec: Arc<Recorder>,
    pad: usize,
) -> mpsc::Sender<Cmd> {
    let (tx, mut rx) = mpsc::channel::<Cmd>(4);
    let (mut rd, mut wr) = conn.stream.into_split();
    let rec2 = rec.clone();
    // Replies (integers) are read and dropped; errors are counted.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if buf[..n].windows(4).any(|w| w == b"-ERR") {
                        rec2.error("redis PUBLISH error");
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut seq = 0u64;
        while let Some((mut tt, done)) = rx.recv().await {
            let mut stats = SentStats::default();
            loop {
                let now = rec.now_us();
                let Some(due) = tt.next_due(now) else { break };
                if due > now {
                    tokio::time::sleep_until(rec.instant_at(due).into()).await;
                    continue;
                }
                let mut out = Vec::new();
                while let Some(due) = tt.next_due(now) {
                    if due > now || out.len() > 64 * 1024 {
                        break;
                    }
                    let p = payload::json(due, seq, pad);
                    seq += 1;
                    out.extend_from_slice(&resp::command(&[
                        b"PUBLISH",
                        channel.as_bytes(),
                        p.as_bytes(),
                    ]));
                    tt.advance();
                    stats.sent_total += 1;
                    if tt.window.counts(due) {
                        stats.sent_window += 1;
                    }
                    rec.add_sent(1);
                }
                if let Err(e) = wr.write_all(&out).await {
                    rec.disconnect(format!("redis publisher: {e}"));
                    break;
                }
            }
            let _ = done.send(stats);
        }
    });
    tx
}

pub async fn run(ctx: &Ctx, args: &RedisProbeArgs) -> Result<RunResult, String> {
    let channel = format!("murmur-load-probe-{}", ctx.run_id);
    let mut run = ctx.result(
        "redis-probe",
        "redis",
        "messages",
        json!({"redis": args.redis, "subscribers": args.subscribers,
               "rates_publishes_per_s": ctx.common.rates}),
    );
    let subs = setup_all(ctx, args.subscribers, "redis subscribers", |_| {
        let addr = args.redis.clone();
        let channel = channel.clone();
        async move {
            let mut c = resp::Conn::connect(&addr).await?;
            c.send(&resp::command(&[b"SUBSCRIBE", channel.as_bytes()]))
                .await?;
            match c.next().await? {
                Resp::Array(_) => Ok(c),
                other => Err(format!("SUBSCRIBE: {other:?}")),
            }
        }
    })
    .await?;
    for (i, c) in subs.into_iter().enumerate() {
        spawn_subscriber(c, ctx.rec.clone(), i);
    }
    let publisher = resp::Conn::connect(&args.redis).await?;
    let p = spawn_publisher(
        publisher,
        channel,
        ctx.rec.clone(),
        ctx.common.payload_bytes,
    );
    let p = &p;
    run_steps(ctx, args.subscribers as f64, None, &mut run, |w| {
        step_one(p, Timetable::new(w, 0, 1))
    })
    .await;
    Ok(run)
}
