//! `murmur-load report`: BENCHMARKS.md from the directory `scripts/bench.sh` fills.
//!
//! Files read (each optional; a missing one is reported as not measured):
//! `machine.txt` (`key: value` lines), `commands.txt`, `notes.txt`,
//! `redis-benchmark-publish.txt`, `redis-benchmark-publish-p16.txt` (`redis-benchmark -q`
//! output), `wrk-healthz.txt` (wrk output), and the JSON results `redis-probe.json`,
//! `fanout-socketio.json`, `fanout-murmuration.json`, `cross-node.json`, `rpc.json`,
//! `rpc-local.json`, `chat.json`, `timestick-post.json`, `timestick-post-memory.json`,
//! `timestick-poll.json`, `sink-memory.json`, `idle-murmuration.json`,
//! `idle-socketio.json`, `wrk-healthz-cpu.txt` (`server_cpu_s: X`) and the perf
//! summaries `profile-*.txt`. It also writes
//! `fanout-compare.svg` next to them.

use std::fmt::Write as _;
use std::path::Path;

use super::markdown::{ms, render_at, write_file};
use super::{RunResult, StepResult};
use crate::scenarios::fmt_rate;

/// Everything loaded from a results directory.
#[derive(Default)]
pub struct Bench {
    pub machine: Vec<(String, String)>,
    pub commands: String,
    pub notes: String,
    /// (name, text) of every `profile-*.txt`.
    pub profiles: Vec<(String, String)>,
    pub redis_bench: Option<RedisBench>,
    pub redis_bench_pipelined: Option<RedisBench>,
    pub wrk_rps: Option<f64>,
    /// Requests completed by wrk, and the node's CPU seconds meanwhile.
    pub wrk_requests: Option<f64>,
    pub wrk_cpu_s: Option<f64>,
    pub wrk_raw: String,
    pub probe: Option<RunResult>,
    pub sio: Option<RunResult>,
    pub mur: Option<RunResult>,
    pub cross: Option<RunResult>,
    pub rpc: Option<RunResult>,
    pub rpc_local: Option<RunResult>,
    pub chat: Option<RunResult>,
    pub ts_post: Option<RunResult>,
    pub ts_post_mem: Option<RunResult>,
    pub ts_poll: Option<RunResult>,
    pub sink: Option<RunResult>,
    pub idle: Option<RunResult>,
    pub idle_sio: Option<RunResult>,
}

/// One `redis-benchmark -q` line.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisBench {
    pub rps: f64,
    pub p50_ms: Option<f64>,
}

/// Parses `… : 123456.79 requests per second, p50=0.199 msec`.
pub fn parse_redis_benchmark(text: &str) -> Option<RedisBench> {
    // -q output may carry progress lines separated by \r; the last line wins.
    let line = text
        .split(['\n', '\r'])
        .rfind(|l| l.contains("requests per second"))?;
    let before = line.split("requests per second").next()?;
    let rps: f64 = before.rsplit(": ").next()?.trim().parse().ok()?;
    let p50_ms = line
        .split("p50=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    Some(RedisBench { rps, p50_ms })
}

/// Parses wrk's `589931 requests in 5.00s, 69.20MB read`.
pub fn parse_wrk_requests(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Parses wrk's `Requests/sec:  12345.67`.
pub fn parse_wrk(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

fn run_md(run: &RunResult) -> String {
    render_at(run, 3)
}

fn load(dir: &Path, name: &str) -> Option<RunResult> {
    let p = dir.join(name);
    if !p.exists() {
        return None;
    }
    match super::json::read(&p) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("murmur-load report: skipping {e}");
            None
        }
    }
}

fn text(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

impl Bench {
    pub fn load(dir: &Path) -> Bench {
        let machine = text(dir, "machine.txt")
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let wrk_raw = text(dir, "wrk-healthz.txt");
        let mut profiles: Vec<(String, String)> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        let stem = name
                            .strip_prefix("profile-")?
                            .strip_suffix(".txt")?
                            .to_string();
                        Some((stem, std::fs::read_to_string(e.path()).ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        profiles.sort();
        Bench {
            profiles,
            machine,
            commands: text(dir, "commands.txt"),
            notes: text(dir, "notes.txt"),
            redis_bench: parse_redis_benchmark(&text(dir, "redis-benchmark-publish.txt")),
            redis_bench_pipelined: parse_redis_benchmark(&text(
                dir,
                "redis-benchmark-publish-p16.txt",
            )),
            wrk_rps: parse_wrk(&wrk_raw),
            wrk_requests: parse_wrk_requests(&wrk_raw),
            wrk_cpu_s: text(dir, "wrk-healthz-cpu.txt")
                .lines()
                .find_map(|l| l.strip_prefix("server_cpu_s: "))
                .and_then(|v| v.trim().parse().ok()),
            wrk_raw,
            probe: load(dir, "redis-probe.json"),
            sio: load(dir, "fanout-socketio.json"),
            mur: load(dir, "fanout-murmuration.json"),
            cross: load(dir, "cross-node.json"),
            rpc: load(dir, "rpc.json"),
            rpc_local: load(dir, "rpc-local.json"),
            chat: load(dir, "chat.json"),
            ts_post: load(dir, "timestick-post.json"),
            ts_post_mem: load(dir, "timestick-post-memory.json"),
            ts_poll: load(dir, "timestick-poll.json"),
            sink: load(dir, "sink-memory.json"),
            idle: load(dir, "idle-murmuration.json"),
            idle_sio: load(dir, "idle-socketio.json"),
        }
    }
}

/// A target's outcome.
pub struct Verdict {
    pub target: String,
    pub figure: String,
    pub met: Option<bool>,
}

fn verdict_cell(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn step_at(run: &RunResult, rate: f64) -> Option<&StepResult> {
    run.steps
        .iter()
        .find(|s| (s.offered_rate - rate).abs() < 1e-6)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The targets of the issue, evaluated.
pub fn verdicts(b: &Bench) -> Vec<Verdict> {
    let mut out = Vec::new();
    // 1. CPU and p99 at every rate Socket.IO sustains.
    let t1 = "At every rate Socket.IO sustains: Murmuration server CPU per 1M deliveries ≤ 1/10 of Socket.IO's, p99 ≤ 1/5 of Socket.IO's";
    match (&b.sio, &b.mur) {
        (Some(sio), Some(mur)) => {
            let mut parts = Vec::new();
            let mut ok = true;
            let mut any = false;
            for s in sio.steps.iter().filter(|s| s.sustained) {
                let Some(m) = step_at(mur, s.offered_rate) else {
                    ok = false;
                    parts.push(format!("{}: no Murmuration step", s.label));
                    continue;
                };
                any = true;
                let cpu = match (
                    m.cpu.server_cpu_s_per_million,
                    s.cpu.server_cpu_s_per_million,
                ) {
                    (Some(a), Some(b)) => ratio(a, b),
                    _ => None,
                };
                let p99 = ratio(m.latency.p99_ms, s.latency.p99_ms);
                let good =
                    m.sustained && cpu.is_some_and(|r| r <= 0.1) && p99.is_some_and(|r| r <= 0.2);
                ok &= good;
                parts.push(format!(
                    "{} ({} deliveries/s): CPU ratio {}, p99 ratio {}{}",
                    s.label,
                    fmt_rate(s.events_per_s),
                    cpu.map_or("–".into(), |r| format!("{r:.3}")),
                    p99.map_or("–".into(), |r| format!("{r:.3}")),
                    if good { "" } else { " ✗" }
                ));
            }
            if !any {
                parts.push("Socket.IO sustained no step".into());
            }
            out.push(Verdict {
                target: t1.into(),
                figure: parts.join("; "),
                met: Some(ok && any),
            });
        }
        _ => out.push(Verdict {
            target: t1.into(),
            figure: "–".into(),
            met: None,
        }),
    }
    // 2. 3x highest sustained rate.
    let t2 = "Murmuration sustains ≥ 3× Socket.IO's highest sustained delivery rate (loss ≤ 1%, p99 ≤ 500 ms)";
    match (&b.sio, &b.mur) {
        (Some(sio), Some(mur)) => {
            let s = sio.best_sustained().map_or(0.0, |s| s.events_per_s);
            let m = mur.best_sustained().map_or(0.0, |s| s.events_per_s);
            let top_tried = mur.steps.iter().map(|s| s.events_per_s).fold(0.0, f64::max);
            let all_m = mur.steps.iter().all(|s| s.sustained);
            let first_fail = mur.steps.iter().find(|s| !s.sustained).map(|f| {
                format!(
                    " — Murmuration's first unsustained step: {} ({} offered, loss {:.1}%, {} disconnects)",
                    f.label,
                    fmt_rate(f.offered_rate * f.fanout),
                    f.loss_pct,
                    f.disconnects
                )
            });
            out.push(Verdict {
                target: t2.into(),
                figure: format!(
                    "Socket.IO {} /s, Murmuration {} /s (×{:.2}){}",
                    fmt_rate(s),
                    fmt_rate(m),
                    ratio(m, s).unwrap_or(0.0),
                    if all_m && top_tried > 0.0 {
                        " — every Murmuration step was sustained: its ceiling is higher than measured".to_string()
                    } else {
                        first_fail.unwrap_or_default()
                    }
                ),
                met: Some(s > 0.0 && m >= 3.0 * s),
            });
        }
        _ => out.push(Verdict {
            target: t2.into(),
            figure: "–".into(),
            met: None,
        }),
    }
    // 3. RSS per idle connection.
    let t3 = "≤ 8 KiB RSS per idle authenticated WebSocket session";
    let rss = b.idle.as_ref().and_then(|r| {
        r.extra
            .get("server_rss_per_connection_bytes")
            .and_then(|v| v.as_f64())
    });
    let conns = b
        .idle
        .as_ref()
        .and_then(|r| r.steps.first())
        .map(|s| s.received);
    out.push(Verdict {
        target: t3.into(),
        figure: match rss {
            Some(x) => format!(
                "{:.1} KiB per connection ({} connections held)",
                x / 1024.0,
                conns.unwrap_or(0)
            ),
            None => "–".into(),
        },
        met: rss.map(|x| x <= 8192.0),
    });
    // 4. cross-node p99 vs raw Redis.
    let t4 = "Cross-node p99 ≤ 3× the raw Redis PUBLISH→SUBSCRIBE p99";
    match (&b.cross, &b.probe) {
        (Some(c), Some(p)) => {
            let cs = c.steps.first();
            let ps = p.steps.first();
            match (cs, ps) {
                (Some(cs), Some(ps)) => {
                    let r = ratio(cs.latency.p99_ms, ps.latency.p99_ms);
                    out.push(Verdict {
                        target: t4.into(),
                        figure: format!(
                            "cross-node p99 {} at {} publishes/s vs Redis p99 {} at {} publishes/s (×{})",
                            ms(cs.latency.p99_ms),
                            fmt_rate(cs.offered_rate),
                            ms(ps.latency.p99_ms),
                            fmt_rate(ps.offered_rate),
                            r.map_or("–".into(), |r| format!("{r:.2}"))
                        ),
                        met: r.map(|r| r <= 3.0 && cs.sustained),
                    });
                }
                _ => out.push(Verdict {
                    target: t4.into(),
                    figure: "–".into(),
                    met: None,
                }),
            }
        }
        _ => out.push(Verdict {
            target: t4.into(),
            figure: "–".into(),
            met: None,
        }),
    }
    // 5. TimeStick POST vs wrk /healthz (cluster mode and memory mode).
    let healthz_us = match (b.wrk_cpu_s, b.wrk_requests) {
        (Some(c), Some(n)) if n > 0.0 => Some(c / n * 1e6),
        _ => None,
    };
    for (run, mode) in [
        (&b.ts_post, "cluster mode"),
        (&b.ts_post_mem, "memory mode"),
    ] {
        let target = format!("TimeStick POST throughput ≥ 50% of wrk on /healthz ({mode})");
        let best = run.as_ref().and_then(|r| {
            r.steps
                .iter()
                .max_by(|x, y| x.events_per_s.total_cmp(&y.events_per_s))
        });
        match (best, b.wrk_rps) {
            (Some(p), Some(w)) => out.push(Verdict {
                target,
                figure: format!(
                    "TimeStick {} POSTs/s accepted vs wrk /healthz {} req/s ({:.0}%); server CPU {} µs per POST vs {} µs per /healthz",
                    fmt_rate(p.events_per_s),
                    fmt_rate(w),
                    p.events_per_s / w * 100.0,
                    p.cpu.server_cpu_s_per_million.map_or("–".into(), |c| format!("{c:.1}")),
                    healthz_us.map_or("–".into(), |c| format!("{c:.1}"))
                ),
                met: Some(p.events_per_s >= 0.5 * w),
            }),
            _ => out.push(Verdict {
                target,
                figure: format!(
                    "TimeStick {} / wrk {}",
                    best.map_or("–".into(), |p| fmt_rate(p.events_per_s)),
                    b.wrk_rps.map_or("not run".into(), fmt_rate)
                ),
                met: None,
            }),
        }
    }
    // 6. Sink.
    let t6 = "≥ 100k ACKed Sink events/s in memory mode";
    let sink = b.sink.as_ref().map(|r| {
        r.steps
            .iter()
            .filter(|s| s.loss_pct <= r.limits.max_loss_pct)
            .map(|s| s.events_per_s)
            .fold(0.0, f64::max)
    });
    out.push(Verdict {
        target: t6.into(),
        figure: sink.map_or("–".into(), |x| format!("{} ACKs/s", fmt_rate(x))),
        met: sink.map(|x| x >= 100_000.0),
    });
    out
}

/// The side-by-side table of the fan-out runs, by offered rate.
pub fn side_by_side(sio: &RunResult, mur: &RunResult) -> String {
    let mut out = String::from(
        "| publishes/s | deliveries/s offered | Socket.IO deliveries/s | Socket.IO p99 | Socket.IO CPU s/1M | Murmuration deliveries/s | Murmuration p99 | Murmuration CPU s/1M | CPU ratio M/S | p99 ratio M/S |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut rates: Vec<f64> = sio
        .steps
        .iter()
        .chain(&mur.steps)
        .map(|s| s.offered_rate)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let cell = |s: Option<&StepResult>| -> (String, String, String) {
        match s {
            Some(s) => (
                format!(
                    "{}{}",
                    fmt_rate(s.events_per_s),
                    if s.sustained { "" } else { " (not sustained)" }
                ),
                ms(s.latency.p99_ms),
                s.cpu
                    .server_cpu_s_per_million
                    .map_or("–".into(), |c| format!("{c:.2}")),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        }
    };
    for r in rates {
        let s = step_at(sio, r);
        let m = step_at(mur, r);
        let fan = s.or(m).map_or(0.0, |x| x.fanout);
        let (sd, sp, sc) = cell(s);
        let (md, mp, mc) = cell(m);
        let cpu_r = match (
            s.and_then(|x| x.cpu.server_cpu_s_per_million),
            m.and_then(|x| x.cpu.server_cpu_s_per_million),
        ) {
            (Some(a), Some(b)) => ratio(b, a).map_or("–".into(), |r| format!("{r:.3}")),
            _ => "–".into(),
        };
        let p99_r = match (s, m) {
            (Some(a), Some(b)) => ratio(b.latency.p99_ms, a.latency.p99_ms)
                .map_or("–".into(), |r| format!("{r:.3}")),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {sd} | {sp} | {sc} | {md} | {mp} | {mc} | {cpu_r} | {p99_r} |",
            fmt_rate(r),
            fmt_rate(r * fan)
        );
    }
    out
}

fn machine_line(b: &Bench, key: &str) -> String {
    b.machine
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "unknown".into())
}

/// Renders BENCHMARKS.md.
pub fn render(b: &Bench) -> String {
    let mut o = String::new();
    o.push_str("# Murmuration benchmarks\n\n");
    o.push_str(
        "Generated by `make bench` (`scripts/bench.sh`, then `murmur-load report`). Do not edit by hand: \
         run `make bench` again. How to run it and what each figure means: \
         [docs/benchmarks.md](docs/benchmarks.md). What the figures say about the product, with profiles and \
         experiments: [loadtest/FINDINGS.md](loadtest/FINDINGS.md).\n\n",
    );
    o.push_str(
        "**Read the ratios, not the absolute numbers.** Everything — servers, Redis, the load tool — runs on one \
         shared machine, so absolute throughput is bounded by the load generator and by neighbours. Both systems \
         run in the same session on the same machine with the same load tool and the same scenario; the ratio \
         between them is the figure.\n\n",
    );
    o.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (k, v) in &b.machine {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    o.push('\n');

    o.push_str("## Targets\n\nThe targets of the benchmark issue. They are recorded here, not enforced by tests.\n\n");
    o.push_str("| target | measured | verdict |\n|---|---|---|\n");
    for v in verdicts(b) {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            v.target,
            v.figure.replace('|', "/"),
            verdict_cell(v.met)
        );
    }
    o.push('\n');

    o.push_str("## Room fan-out, side by side with Socket.IO\n\n");
    match (&b.sio, &b.mur) {
        (Some(sio), Some(mur)) => {
            let _ = writeln!(
                o,
                "Same scenario, same load tool, same machine, one after the other: {} subscribers in one room/channel \
                 spread over 2 server processes (Socket.IO 4.8 with `@socket.io/redis-adapter`; Murmuration 2 nodes in \
                 cluster mode), {} publishers, open-loop publish rates. Server CPU = all server processes + Redis, \
                 from `/proc/<pid>/stat`, over each measurement window. Ratios are Murmuration / Socket.IO (lower is \
                 better for both).\n",
                mur.config["subscribers"], mur.config["publishers"]
            );
            o.push_str(&side_by_side(sio, mur));
            o.push_str("\n![fan-out latency over time, both systems](loadtest/results/fanout-compare.svg)\n\n");
            o.push_str(&run_md(sio));
            o.push_str("\n![Socket.IO fan-out latency over time](loadtest/results/fanout-socketio.svg)\n\n");
            o.push_str(&run_md(mur));
            o.push_str("\n![Murmuration fan-out latency over time](loadtest/results/fanout-murmuration.svg)\n\n");
        }
        _ => o.push_str("Not measured in this run (see the notes below).\n\n"),
    }

    o.push_str("## Cross-node delivery and the Redis ceiling\n\n");
    if let Some(r) = &b.redis_bench {
        let _ = writeln!(
            o,
            "* `redis-benchmark` PUBLISH, no pipelining: **{}** requests/s{}",
            fmt_rate(r.rps),
            r.p50_ms.map_or(String::new(), |p| format!(", p50 {p} ms"))
        );
    }
    if let Some(r) = &b.redis_bench_pipelined {
        let _ = writeln!(
            o,
            "* `redis-benchmark` PUBLISH, pipelining 16: **{}** requests/s{}",
            fmt_rate(r.rps),
            r.p50_ms.map_or(String::new(), |p| format!(", p50 {p} ms"))
        );
    }
    o.push('\n');
    for r in [&b.probe, &b.cross].into_iter().flatten() {
        o.push_str(&run_md(r));
        o.push('\n');
    }
    if b.cross.is_some() {
        o.push_str("![cross-node latency over time](loadtest/results/cross-node.svg)\n\n");
    }

    o.push_str("## Helios RPC\n\n");
    if b.rpc.is_none() && b.rpc_local.is_none() {
        o.push_str("Not measured.\n");
    }
    for r in [&b.rpc, &b.rpc_local].into_iter().flatten() {
        o.push_str(&run_md(r));
        o.push('\n');
    }
    o.push_str("\n## Chat group fan-out\n\n");
    match &b.chat {
        Some(r) => o.push_str(&run_md(r)),
        None => o.push_str("Not measured.\n"),
    }
    o.push_str("\n## TimeStick and the HTTP ceiling\n\n");
    match b.wrk_rps {
        Some(w) => {
            let _ = writeln!(o, "* `wrk` on `/healthz`: **{}** requests/s\n", fmt_rate(w));
            let _ = writeln!(o, "```\n{}\n```\n", b.wrk_raw.trim());
        }
        None => o.push_str("* `wrk` on `/healthz`: not run (see the notes).\n\n"),
    }
    if let (Some(c), Some(n)) = (b.wrk_cpu_s, b.wrk_requests) {
        let _ = writeln!(
            o,
            "Node CPU during wrk: {c:.2} s for {n:.0} requests = {:.1} µs per request (compare with the \"server CPU s per 1M\" column below, which is µs per POST).\n",
            c / n * 1e6
        );
    }
    for r in [&b.ts_post, &b.ts_post_mem, &b.ts_poll]
        .into_iter()
        .flatten()
    {
        o.push_str(&run_md(r));
        o.push('\n');
    }
    o.push_str("\n## Sink (memory mode)\n\n");
    match &b.sink {
        Some(r) => o.push_str(&run_md(r)),
        None => o.push_str("Not measured.\n"),
    }
    o.push_str("\n## Connection ramp and memory per idle connection\n\n");
    for r in [&b.idle, &b.idle_sio].into_iter().flatten() {
        o.push_str(&run_md(r));
        o.push('\n');
    }
    if b.idle.is_none() {
        o.push_str("Not measured.\n");
    }
    if !b.profiles.is_empty() {
        o.push_str(
            "\n## Profiles\n\nWhere the server's CPU time goes, sampled with `perf` (`scripts/bench/profile.sh`) during \
             separate short runs of the same scenarios (self time by symbol, top entries; `[k]` = kernel).\n",
        );
        for (name, text) in &b.profiles {
            let top: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .take(25)
                .collect();
            let _ = writeln!(o, "\n### {name}\n\n```\n{}\n```", top.join("\n"));
        }
    }
    if !b.notes.trim().is_empty() {
        o.push_str("\n## Notes from this run\n\n");
        o.push_str(b.notes.trim());
        o.push('\n');
    }
    o.push_str("\n## Exact commands\n\n```sh\n");
    o.push_str(b.commands.trim());
    o.push_str("\n```\n");
    let _ = machine_line(b, "date");
    o
}

/// `murmur-load report --dir D --out F`.
pub fn run(dir: &Path, out: &Path) -> Result<(), String> {
    let b = Bench::load(dir);
    if let (Some(sio), Some(mur)) = (&b.sio, &b.mur) {
        let svg = super::svg::compare(
            "Room fan-out: Murmuration (solid) vs Socket.IO (dashed)",
            mur,
            sio,
        );
        write_file(&dir.join("fanout-compare.svg"), &svg)?;
    }
    write_file(out, &render(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::Latency;
    use crate::metrics::procstat::CpuUse;

    #[test]
    fn tool_outputs_parse() {
        let rb = "PUBLISH ch hello: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                  PUBLISH ch hello: 98814.23 requests per second, p50=0.263 msec\n";
        assert_eq!(
            parse_redis_benchmark(rb),
            Some(RedisBench {
                rps: 98814.23,
                p50_ms: Some(0.263)
            })
        );
        let wrk = "Running 10s test\n  1 threads and 64 connections\nRequests/sec:  51234.50\nTransfer/sec: 5MB\n";
        assert_eq!(parse_wrk(wrk), Some(51234.5));
        assert_eq!(parse_wrk("nothing"), None);
        assert_eq!(
            parse_wrk_requests("  589931 requests in 5.00s, 69.20MB read\n"),
            Some(589931.0)
        );
    }

    fn step(rate: f64, eps: f64, p99: f64, cpu: f64, sustained: bool) -> StepResult {
        StepResult {
            label: format!("{rate}"),
            offered_rate: rate,
            fanout: 100.0,
            events_per_s: eps,
            latency: Latency {
                p99_ms: p99,
                ..Latency::default()
            },
            cpu: CpuUse {
                server_cpu_s_per_million: Some(cpu),
                ..CpuUse::default()
            },
            sustained,
            ..StepResult::default()
        }
    }

    #[test]
    fn verdicts_compare_by_rate() {
        let sio = RunResult {
            system: "socketio".into(),
            steps: vec![
                step(200.0, 20_000.0, 10.0, 10.0, true),
                step(400.0, 30_000.0, 900.0, 9.0, false),
            ],
            ..RunResult::default()
        };
        let mur = RunResult {
            system: "murmuration".into(),
            steps: vec![
                step(200.0, 20_000.0, 1.0, 0.5, true),
                step(400.0, 40_000.0, 1.5, 0.5, true),
                step(800.0, 80_000.0, 2.0, 0.5, true),
            ],
            ..RunResult::default()
        };
        let b = Bench {
            sio: Some(sio.clone()),
            mur: Some(mur.clone()),
            ..Bench::default()
        };
        let v = verdicts(&b);
        assert_eq!(v[0].met, Some(true), "{}", v[0].figure);
        assert_eq!(v[1].met, Some(true), "{}", v[1].figure);
        assert_eq!(v[2].met, None);
        let table = side_by_side(&sio, &mur);
        assert_eq!(table.lines().count(), 2 + 3, "{table}");
        let md = render(&b);
        assert!(md.contains("## Targets"));
        assert!(md.contains("**met**"));
    }
}
