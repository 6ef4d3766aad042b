//! Sink devices over dev plaintext TCP. Each device PUBLISHes events (fresh offsets)
//! with at most `--window` awaiting their ACK; at a rate (events/s over all devices)
//! or closed loop (rate 0: the window is kept full). Primary events: ACKs; latency is
//! from the due time to the ACK, so waiting for window room counts too.

use std::sync::Arc;

use murmur_shared::sink::Frame;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::{run_steps, setup_all, step_each, Ctx, SentStats, Timetable};
use crate::cli::SinkArgs;
use crate::clients::sink::{self, Device};
use crate::metrics::{Kind, Local, Recorder};
use crate::report::RunResult;

use super::StepCmd as Cmd;

const IDS: usize = 4096;

fn spawn_device(
    mut dev: Device,
    n: u32,
    window: usize,
    rec: Arc<Recorder>,
    pad: usize,
) -> mpsc::Sender<Cmd> {
    let (tx, mut rx) = mpsc::channel::<Cmd>(4);
    tokio::spawn(async move {
        let mut local = Local::new(&rec);
        let data = vec![b'x'; pad];
        let mut due_of = vec![0u64; IDS];
        let mut inflight = 0usize;
        let mut next_id: u16 = 0;
        let mut offset: u64 = 0;
        let mut current: Option<(Timetable, oneshot::Sender<SentStats>, SentStats)> = None;
        let mut buf = vec![0u8; 64 * 1024];
        let why = loop {
            // Answers already received first: they free window room.
            while let Some(f) = dev.frames.next_frame() {
                match murmur_shared::sink::decode(&f) {
                    Ok(Frame::Ack { id }) => {
                        inflight = inflight.saturating_sub(1);
                        local.sample(Kind::Primary, due_of[id as usize]);
                    }
                    Ok(Frame::Nack { human, .. }) => {
                        inflight = inflight.saturating_sub(1);
                        rec.error(format!("NACK: {human}"));
                    }
                    Ok(Frame::Ping) => {
                        if let Err(e) = dev.write(&[Frame::Pong]).await {
                            rec.error(e);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => rec.error(format!("sink decode: {e}")),
                }
            }
            // Send whatever is due while there is window room.
            let now = rec.now_us();
            let mut batch = Vec::new();
            let mut wake = None;
            if let Some((tt, _, stats)) = current.as_mut() {
                while inflight + batch.len() < window {
                    let Some(due) = tt.next_due(now) else { break };
                    if due > now {
                        wake = Some(due);
                        break;
                    }
                    tt.advance();
                    stats.sent_total += 1;
                    if tt.window.counts(due) {
                        stats.sent_window += 1;
                    }
                    let id = next_id;
                    next_id = (next_id + 1) % IDS as u16;
                    due_of[id as usize] = due;
                    batch.push(sink::publish(id, n, offset, &data));
                    offset += 1;
                }
                if tt.next_due(now).is_none() {
                    // Exhausted: the step is over for this device (ACKs still count).
                    if let Some((_, done, stats)) = current.take() {
                        let _ = done.send(stats);
                    }
                }
            }
            if !batch.is_empty() {
                inflight += batch.len();
                rec.add_sent(batch.len() as u64);
                if let Err(e) = dev.write(&batch).await {
                    break e;
                }
            }
            local.flush();
            let sleep_to = wake.map(|d| rec.instant_at(d));
            tokio::select! {
                biased;
                cmd = rx.recv() => match cmd {
                    Some((tt, done)) => current = Some((tt, done, SentStats::default())),
                    None => return,
                },
                r = dev.reader.read(&mut buf) => match r {
                    Ok(0) => break "sink connection closed by the server".to_string(),
                    Ok(k) => dev.frames.extend(&buf[..k]),
                    Err(e) => break format!("sink read: {e}"),
                },
                _ = tokio::time::sleep_until(sleep_to.unwrap_or_else(std::time::Instant::now).into()), if sleep_to.is_some() => {}
            }
        };
        rec.disconnect(format!("device {n}: {why}"));
        if let Some((_, done, stats)) = current.take() {
            let _ = done.send(stats);
        }
        while let Some((_, done)) = rx.recv().await {
            let _ = done.send(SentStats::default());
        }
    });
    tx
}

pub async fn run(ctx: &Ctx, args: &SinkArgs) -> Result<RunResult, String> {
    let window = args.window.clamp(1, IDS - 1);
    let mut run = ctx.result(
        "sink",
        "murmuration",
        "ACKs",
        json!({"addr": args.addr, "devices": args.devices, "window": window,
               "payload_bytes": ctx.common.payload_bytes, "rates_events_per_s": ctx.common.rates}),
    );
    let base: u32 = u32::from_str_radix(&ctx.run_id[..6], 16).unwrap_or(1) << 8;
    let devices = setup_all(ctx, args.devices, "Sink devices", |i| {
        let addr = args.addr.clone();
        let sources = ctx.sources.clone();
        async move { sink::connect(&addr, base.wrapping_add(i as u32), &sources).await }
    })
    .await?;
    let cmds: Vec<mpsc::Sender<Cmd>> = devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            spawn_device(
                d,
                base.wrapping_add(i as u32),
                window,
                ctx.rec.clone(),
                ctx.common.payload_bytes,
            )
        })
        .collect();
    run.setup.insert("connections".into(), json!(args.devices));
    let cmds = &cmds;
    run_steps(ctx, 1.0, None, &mut run, |w| step_each(cmds, w)).await;
    Ok(run)
}
