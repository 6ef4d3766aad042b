//! murmur-load: scenario load generator for Murmuration, with minimal Socket.IO and
//! NATS (over WebSocket) clients for side-by-side runs against the Socket.IO peer
//! (`loadtest/peers/socketio`) and nats-server.
//!
//! Module map:
//!
//! | module | what it holds |
//! |---|---|
//! | [`cli`] | the command line: one subcommand per scenario, plus `report` |
//! | [`scenarios`] | the step runner, open-loop timetables and every scenario |
//! | [`clients`] | protocol clients: Helios, chat, TimeStick (HTTP), Sink, Socket.IO, NATS, RESP |
//! | [`metrics`] | the recorder (HdrHistogram per step and per second), `/proc` CPU and RSS |
//! | [`payload`] | the payload that carries the intended send time, and its scanner |
//! | [`report`] | JSON result, Markdown summary, SVG plot, BENCHMARKS.md |
//! | [`progress`] | the live progress line |
//! | [`net`] | TCP from rotating 127.0.0.x source addresses, URL helpers |
//! | [`token`] | HS256 client tokens |
//!
//! Exit status: 0 when the run completed; 1 on a setup failure (connection refused,
//! subscription failed, ...); 2 on a usage error; 3 when fewer than `--min-events`
//! primary events were received.
#![forbid(unsafe_code)]

mod cli;
mod clients;
mod metrics;
mod net;
mod payload;
mod progress;
mod report;
mod scenarios;
mod token;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use report::RunResult;
use scenarios::Ctx;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Report(args) = &cli.command {
        return match report::bench::run(&args.dir, &args.out) {
            Ok(()) => {
                eprintln!("murmur-load: wrote {}", args.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("murmur-load report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // unwrap: every command but `report` (handled above) is a scenario with common options.
    let common = cli.command.common().expect("a scenario").clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.workers.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("murmur-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, common.clone()));
    // Connections are dropped with the runtime; do not wait for their tasks.
    runtime.shutdown_background();
    match outcome {
        Ok(run) => {
            if let Err(e) = write_outputs(&common, &run) {
                eprintln!("murmur-load: {e}");
                return ExitCode::FAILURE;
            }
            let total = run.total_received();
            eprintln!(
                "murmur-load: {} done: {total} {} in {} step(s)",
                run.label,
                run.events,
                run.steps.len()
            );
            if total < common.min_events {
                eprintln!(
                    "murmur-load: only {total} {} received, fewer than --min-events {}",
                    run.events, common.min_events
                );
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("murmur-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, common: cli::Common) -> Result<RunResult, String> {
    let ctx = Ctx::new(common)?;
    let c = &ctx.common;
    let per_step = c.warmup + c.duration + std::time::Duration::from_millis(500);
    let guard = progress::start(&ctx.rec, c.progress, per_step * c.rates.len() as u32);
    let mut result = match &command {
        Command::Fanout(a) => scenarios::fanout::run(&ctx, a).await,
        Command::Rpc(a) => scenarios::rpc::run(&ctx, a).await,
        Command::Chat(a) => scenarios::chat::run(&ctx, a).await,
        Command::Timestick(a) => scenarios::timestick::run(&ctx, a).await,
        Command::Inbox(a) => scenarios::inbox::run(&ctx, a).await,
        Command::Sink(a) => scenarios::sink::run(&ctx, a).await,
        Command::Idle(a) => scenarios::idle::run(&ctx, a).await,
        Command::RedisProbe(a) => scenarios::redis_probe::run(&ctx, a).await,
        Command::Report(_) => unreachable!("handled before the runtime starts"),
    }?;
    drop(guard);
    result.series = ctx.rec.series();
    result.errors = ctx.rec.error_samples();
    if let Some(obj) = result.config.as_object_mut() {
        obj.insert(
            "common".into(),
            serde_json::to_value(&ctx.common).unwrap_or_default(),
        );
        obj.insert(
            "watched".into(),
            serde_json::to_value(&ctx.common.watch).unwrap_or_default(),
        );
    }
    Ok(result)
}

fn write_outputs(c: &cli::Common, run: &RunResult) -> Result<(), String> {
    if let Some(p) = &c.json {
        report::json::write(p, run)?;
    }
    if let Some(p) = &c.markdown {
        report::markdown::write(p, run)?;
    }
    if let Some(p) = &c.svg {
        report::svg::write(p, run)?;
    }
    if c.json.is_none() && c.markdown.is_none() {
        println!("{}", report::markdown::render(run));
    }
    Ok(())
}
