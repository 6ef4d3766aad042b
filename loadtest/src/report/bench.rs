//! `murmur-load report`: BENCHMARKS.md from the directory `scripts/bench.sh` fills.
//!
//! Files read (each optional; a missing one is reported as not measured):
//! `machine.txt` (`key: value` lines), `commands.txt`, `notes.txt`,
//! `redis-benchmark-publish.txt`, `redis-benchmark-publish-p16.txt` (`redis-benchmark -q`
//! output), `wrk-healthz.txt` (wrk output), and the JSON results `redis-probe.json`,
//! `fanout-socketio.json`, `fanout-murmuration.json`, `fanout-nats.json`,
//! `cross-node.json`, `rpc.json`, `rpc-local.json`,
//! `group-{small,large}-{murmuration,nats,socketio}.json` (chat group fan-out),
//! `timestick-post.json`, `timestick-post-memory.json`, `timestick-poll.json`,
//! `sink-memory.json`, `idle-murmuration.json`, `idle-socketio.json`, `idle-nats.json`,
//! `inbox-memory.json`, `inbox-cluster.json`, `idle-chat.json` (chat inbox and presence),
//! `wrk-healthz-cpu.txt` (`server_cpu_s: X`) and the perf summaries `profile-*.txt`. It
//! also writes `fanout-compare.svg` next to them.

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
    pub nats: Option<RunResult>,
    pub cross: Option<RunResult>,
    pub rpc: Option<RunResult>,
    pub rpc_local: Option<RunResult>,
    /// Chat group fan-out: the small and the large group, each system.
    pub group_small: Systems,
    pub group_large: Systems,
    pub ts_post: Option<RunResult>,
    pub ts_post_mem: Option<RunResult>,
    pub ts_poll: Option<RunResult>,
    pub sink: Option<RunResult>,
    pub idle: Option<RunResult>,
    pub idle_sio: Option<RunResult>,
    pub idle_nats: Option<RunResult>,
    /// Chat: the inbox of a user in many sessions (memory mode, cluster mode), and idle
    /// chat devices (each counted for presence).
    pub inbox_mem: Option<RunResult>,
    pub inbox_cluster: Option<RunResult>,
    pub idle_chat: Option<RunResult>,
}

/// One scenario's runs against each system.
#[derive(Default)]
pub struct Systems {
    pub mur: Option<RunResult>,
    pub nats: Option<RunResult>,
    pub sio: Option<RunResult>,
}

impl Systems {
    fn load(dir: &Path, stem: &str) -> Systems {
        Systems {
            mur: load(dir, &format!("{stem}-murmuration.json")),
            nats: load(dir, &format!("{stem}-nats.json")),
            sio: load(dir, &format!("{stem}-socketio.json")),
        }
    }

    fn is_empty(&self) -> bool {
        self.mur.is_none() && self.nats.is_none() && self.sio.is_none()
    }
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
            nats: load(dir, "fanout-nats.json"),
            cross: load(dir, "cross-node.json"),
            rpc: load(dir, "rpc.json"),
            rpc_local: load(dir, "rpc-local.json"),
            group_small: Systems::load(dir, "group-small"),
            group_large: Systems::load(dir, "group-large"),
            ts_post: load(dir, "timestick-post.json"),
            ts_post_mem: load(dir, "timestick-post-memory.json"),
            ts_poll: load(dir, "timestick-poll.json"),
            sink: load(dir, "sink-memory.json"),
            idle: load(dir, "idle-murmuration.json"),
            idle_sio: load(dir, "idle-socketio.json"),
            idle_nats: load(dir, "idle-nats.json"),
            inbox_mem: load(dir, "inbox-memory.json"),
            inbox_cluster: load(dir, "inbox-cluster.json"),
            idle_chat: load(dir, "idle-chat.json"),
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
    // 5. TimeStick POST vs wrk /healthz: ≥ 30% in cluster mode, ≥ 50% in memory mode
    // (the broker-core issue).
    let healthz_us = match (b.wrk_cpu_s, b.wrk_requests) {
        (Some(c), Some(n)) if n > 0.0 => Some(c / n * 1e6),
        _ => None,
    };
    for (run, mode, share) in [
        (&b.ts_post, "cluster mode", 0.3),
        (&b.ts_post_mem, "memory mode", 0.5),
    ] {
        let target = format!(
            "TimeStick POST throughput ≥ {:.0}% of wrk on /healthz ({mode})",
            share * 100.0
        );
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
                met: Some(p.events_per_s >= share * w),
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

/// One system's columns in a comparison table.
pub struct Col<'a> {
    /// Its name in headers ("Murmuration").
    pub name: &'a str,
    /// Its initial in ratio headers ("M").
    pub short: &'a str,
    pub run: &'a RunResult,
}

/// A ratio pair of a comparison table: columns `num` / `den`; with `den_sustained` the
/// ratio is shown only at the steps the denominator sustained.
pub struct RatioCols {
    pub num: usize,
    pub den: usize,
    pub den_sustained: bool,
}

fn cpu_of(s: &StepResult) -> Option<f64> {
    s.cpu.server_cpu_s_per_million
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.3}"))
}

/// The side-by-side table of runs of one scenario, one row per offered rate (steps are
/// matched by offered rate): per system deliveries/s, p99 and server CPU-seconds per 1M
/// deliveries; then, per ratio pair, the CPU and p99 ratios. `unit` names the offered
/// rate ("publishes/s", "messages/s").
pub fn compare_table(unit: &str, cols: &[Col<'_>], ratios: &[RatioCols]) -> String {
    let mut head = format!("| {unit} | deliveries/s offered |");
    let mut rule = String::from("|---:|---:|");
    for c in cols {
        let _ = write!(
            head,
            " {n} deliveries/s | {n} p99 | {n} CPU s/1M |",
            n = c.name
        );
        rule.push_str("---:|---:|---:|");
    }
    for r in ratios {
        let (a, b) = (cols[r.num].short, cols[r.den].short);
        let _ = write!(head, " CPU ratio {a}/{b} | p99 ratio {a}/{b} |");
        rule.push_str("---:|---:|");
    }
    let mut out = format!("{head}\n{rule}\n");
    let mut rates: Vec<f64> = cols
        .iter()
        .flat_map(|c| c.run.steps.iter().map(|s| s.offered_rate))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    for r in rates {
        let steps: Vec<Option<&StepResult>> = cols.iter().map(|c| step_at(c.run, r)).collect();
        let fan = steps.iter().flatten().next().map_or(0.0, |s| s.fanout);
        let _ = write!(out, "| {} | {} |", fmt_rate(r), fmt_rate(r * fan));
        for s in &steps {
            match s {
                Some(s) => {
                    let _ = write!(
                        out,
                        " {}{} | {} | {} |",
                        fmt_rate(s.events_per_s),
                        if s.sustained { "" } else { " (not sustained)" },
                        if s.received > 0 {
                            ms(s.latency.p99_ms)
                        } else {
                            "–".into()
                        },
                        cpu_of(s).map_or("–".into(), |c| format!("{c:.2}"))
                    );
                }
                None => out.push_str(" – | – | – |"),
            }
        }
        for q in ratios {
            let (a, b) = match (steps[q.num], steps[q.den]) {
                (Some(a), Some(b)) if b.sustained || !q.den_sustained => (a, b),
                _ => {
                    out.push_str(" – | – |");
                    continue;
                }
            };
            let cpu = match (cpu_of(a), cpu_of(b)) {
                (Some(x), Some(y)) => ratio(x, y),
                _ => None,
            };
            let p99 = (a.received > 0 && b.received > 0)
                .then(|| ratio(a.latency.p99_ms, b.latency.p99_ms))
                .flatten();
            let _ = write!(out, " {} | {} |", fmt_ratio(cpu), fmt_ratio(p99));
        }
        out.push('\n');
    }
    out
}

/// Per system: the highest sustained step, and how far the ladder went.
pub fn best_table(cols: &[Col<'_>]) -> String {
    let mut out = String::from(
        "| system | highest sustained step | deliveries/s there | p99 there | server CPU s/1M there | steps sustained | first unsustained step |\n\
         |---|---|---:|---:|---:|---:|---|\n",
    );
    for c in cols {
        let best = c.run.best_sustained();
        let n_ok = c.run.steps.iter().filter(|s| s.sustained).count();
        let first_fail = c.run.steps.iter().find(|s| !s.sustained).map_or_else(
            || {
                if c.run.steps.is_empty() {
                    "no step ran".to_string()
                } else {
                    "none (every step sustained)".to_string()
                }
            },
            |f| {
                format!(
                    "{} ({} offered: loss {:.1}%, p99 {}, {} errors, {} disconnects)",
                    f.label,
                    fmt_rate(f.offered_rate * f.fanout),
                    f.loss_pct,
                    if f.received > 0 {
                        ms(f.latency.p99_ms)
                    } else {
                        "–".into()
                    },
                    f.errors,
                    f.disconnects
                )
            },
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}/{} | {} |",
            c.name,
            best.map_or("none".into(), |s| s.label.clone()),
            best.map_or("–".into(), |s| fmt_rate(s.events_per_s)),
            best.map_or("–".into(), |s| ms(s.latency.p99_ms)),
            best.and_then(cpu_of)
                .map_or("–".into(), |c| format!("{c:.2}")),
            n_ok,
            c.run.steps.len(),
            first_fail
        );
    }
    out
}

/// The columns of the systems present, in the order Murmuration, NATS, Socket.IO, and
/// the ratio pairs: Murmuration/NATS (at the steps NATS sustains) and
/// Murmuration/Socket.IO (at every step both ran).
fn columns<'a>(
    mur: Option<&'a RunResult>,
    nats: Option<&'a RunResult>,
    sio: Option<&'a RunResult>,
) -> (Vec<Col<'a>>, Vec<RatioCols>) {
    let mut cols = Vec::new();
    let mut idx = [None; 3];
    for (k, (run, name, short)) in [
        (mur, "Murmuration", "M"),
        (nats, "NATS", "N"),
        (sio, "Socket.IO", "S"),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(run) = run {
            idx[k] = Some(cols.len());
            cols.push(Col { name, short, run });
        }
    }
    let mut ratios = Vec::new();
    if let (Some(m), Some(n)) = (idx[0], idx[1]) {
        ratios.push(RatioCols {
            num: m,
            den: n,
            den_sustained: true,
        });
    }
    if let (Some(m), Some(s)) = (idx[0], idx[2]) {
        ratios.push(RatioCols {
            num: m,
            den: s,
            den_sustained: false,
        });
    }
    (cols, ratios)
}

/// The comparison section of one scenario: the highest sustained steps, the step by
/// step table, and each run's own summary.
fn comparison(o: &mut String, unit: &str, set: &Systems, level: usize) {
    let (cols, ratios) = columns(set.mur.as_ref(), set.nats.as_ref(), set.sio.as_ref());
    if cols.is_empty() {
        o.push_str("Not measured in this run (see the notes below).\n\n");
        return;
    }
    o.push_str("Highest sustained step of each system (loss ≤ 1%, no errors, p99 ≤ 500 ms):\n\n");
    o.push_str(&best_table(&cols));
    o.push_str("\nStep by step (M = Murmuration, N = NATS, S = Socket.IO; ratios below 1 favour Murmuration; M/N only at the steps NATS sustains):\n\n");
    o.push_str(&compare_table(unit, &cols, &ratios));
    o.push('\n');
    for c in &cols {
        o.push_str(&render_at(c.run, level));
        o.push('\n');
    }
}

/// `a–b` of the values (one value: `a`), 3 decimals.
fn span(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "–".into()
    } else if (hi - lo).abs() < 5e-4 {
        format!("{lo:.3}")
    } else {
        format!("{lo:.3}–{hi:.3}")
    }
}

/// One row per scenario: each system's highest sustained delivery rate, and the
/// Murmuration/NATS ratios over the steps NATS sustains.
pub fn overview<'a>(rows: impl IntoIterator<Item = (&'a str, &'a Systems)>) -> String {
    let mut out = String::from(
        "| scenario | receivers | Murmuration highest sustained | NATS highest sustained | Socket.IO highest sustained | CPU per delivery M/N | p99 M/N |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let best = |r: &Option<RunResult>| -> String {
        match r {
            None => "not run".into(),
            Some(r) => r.best_sustained().map_or("none".into(), |s| {
                format!("{} deliveries/s", fmt_rate(s.events_per_s))
            }),
        }
    };
    for (name, set) in rows {
        if set.is_empty() {
            continue;
        }
        let (mut cpu, mut p99) = (Vec::new(), Vec::new());
        if let (Some(m), Some(n)) = (&set.mur, &set.nats) {
            for ns in n.steps.iter().filter(|s| s.sustained) {
                if let Some(ms_) = step_at(m, ns.offered_rate) {
                    if let (Some(a), Some(b)) = (cpu_of(ms_), cpu_of(ns)) {
                        cpu.extend(ratio(a, b));
                    }
                    if ms_.received > 0 {
                        p99.extend(ratio(ms_.latency.p99_ms, ns.latency.p99_ms));
                    }
                }
            }
        }
        let receivers = [&set.mur, &set.nats, &set.sio]
            .into_iter()
            .flatten()
            .next()
            .and_then(|r| r.steps.first().map(|s| format!("{:.0}", s.fanout)))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "| {name} | {receivers} | {} | {} | {} | {} | {} |",
            best(&set.mur),
            best(&set.nats),
            best(&set.sio),
            span(&cpu),
            span(&p99)
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
         shared machine, so absolute throughput is bounded by the load generator and by neighbours. All systems \
         run in the same session on the same machine with the same load tool and the same scenario; the ratios \
         between them are the figure.\n\n",
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

    let fan = Systems {
        mur: b.mur.clone(),
        nats: b.nats.clone(),
        sio: b.sio.clone(),
    };
    let groups = [
        ("chat group fan-out, small group", &b.group_small),
        ("chat group fan-out, large group", &b.group_large),
    ];
    if !fan.is_empty() || groups.iter().any(|(_, g)| !g.is_empty()) {
        o.push_str("## Side by side: Murmuration, NATS, Socket.IO\n\n");
        o.push_str(
            "Each scenario run against each system in the same session, with the same load tool, open-loop sender, \
             receivers and measurement; details and the step-by-step tables in the sections below. Highest sustained = \
             the highest step with loss ≤ 1%, no errors or disconnects, p99 ≤ 500 ms. Ratios are Murmuration / NATS \
             over the steps NATS sustains (min–max; below 1 favours Murmuration).\n\n",
        );
        o.push_str(&overview(
            std::iter::once(("room / channel / subject fan-out", &fan)).chain(groups),
        ));
        o.push('\n');
    }

    o.push_str("## Room fan-out, side by side with Socket.IO and NATS\n\n");
    match &b.mur {
        Some(mur) if b.sio.is_some() || b.nats.is_some() => {
            let _ = writeln!(
                o,
                "Same scenario, same load tool, same machine, one after the other: {} subscribers in one room / channel / \
                 subject spread over 2 server processes (Socket.IO 4.8 with `@socket.io/redis-adapter`; Murmuration 2 nodes \
                 in cluster mode; NATS 2 clustered `nats-server`s, clients over WebSocket), {} publishers, open-loop publish \
                 rates. Server CPU = all server processes (+ Redis for Murmuration and Socket.IO), from \
                 `/proc/<pid>/stat`, over each measurement window. Ratios are Murmuration / the other system (lower is \
                 better for both).\n",
                mur.config["subscribers"], mur.config["publishers"]
            );
            comparison(&mut o, "publishes/s", &fan, 3);
            if b.sio.is_some() {
                o.push_str("![fan-out latency over time, Murmuration and Socket.IO](loadtest/results/fanout-compare.svg)\n\n");
            }
            for (r, file) in [
                (&b.mur, "fanout-murmuration"),
                (&b.nats, "fanout-nats"),
                (&b.sio, "fanout-socketio"),
            ] {
                if let Some(r) = r {
                    let _ = writeln!(
                        o,
                        "![{} fan-out latency over time](loadtest/results/{file}.svg)\n",
                        r.system
                    );
                }
            }
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
    o.push_str(
        "One group; every member's connection (the senders' included) receives every message; the senders (the first \
         members, spread over the 2 servers) send at open-loop rates (messages/s = deliveries/s offered ÷ receivers). Murmuration: \
         members log in over `/chat`, the group is created by its first member (`request-mutable-session-creation`), \
         senders send `request-sending-a-message`; a group has at most 256 participants, so the large group is \
         participants × devices (every device of a participant receives every message). NATS: a subject every \
         member subscribes to, senders `PUB` on it. Socket.IO: a room every member joins, senders emit `pub` → \
         `io.to(room).emit`.\n\n",
    );
    for (title, set) in [
        ("Small group", &b.group_small),
        ("Large group", &b.group_large),
    ] {
        let first = [&set.mur, &set.nats, &set.sio].into_iter().flatten().next();
        let receivers = first.and_then(|r| r.steps.first().map(|s| s.fanout));
        let senders = first.and_then(|r| r.config["senders"].as_u64());
        let _ = writeln!(
            o,
            "### {title}{}{}\n",
            receivers.map_or(String::new(), |n| format!(": {n:.0} receivers")),
            senders.map_or(String::new(), |n| format!(", {n} senders"))
        );
        comparison(&mut o, "messages/s", set, 4);
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
    let idles: Vec<&RunResult> = [&b.idle, &b.idle_nats, &b.idle_sio]
        .into_iter()
        .flatten()
        .collect();
    if !idles.is_empty() {
        o.push_str(
            "| system | connections held | server RSS per connection | connect rate | ramp p99 |\n|---|---:|---:|---:|---:|\n",
        );
        for r in &idles {
            let per = r
                .extra
                .get("server_rss_per_connection_bytes")
                .and_then(|v| v.as_f64());
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} /s | {} |",
                r.system,
                r.extra
                    .get("connections_open")
                    .map_or("–".into(), |v| v.to_string()),
                per.map_or("–".into(), |x| format!("{:.1} KiB", x / 1024.0)),
                r.extra
                    .get("connect_rate_per_s")
                    .and_then(|v| v.as_f64())
                    .map_or("–".into(), fmt_rate),
                r.steps.first().map_or("–".into(), |s| ms(s.latency.p99_ms))
            );
        }
        o.push('\n');
    }
    for r in idles {
        o.push_str(&run_md(r));
        o.push('\n');
    }
    if b.idle.is_none() {
        o.push_str("Not measured.\n");
    }
    o.push_str("\n## Chat: the inbox and presence\n\n");
    let chat: Vec<&RunResult> = [&b.inbox_mem, &b.inbox_cluster, &b.idle_chat]
        .into_iter()
        .flatten()
        .collect();
    if chat.is_empty() {
        o.push_str("Not measured.\n");
    }
    if let Some(r) = &b.idle_chat {
        let per = r
            .extra
            .get("server_rss_per_connection_bytes")
            .and_then(|v| v.as_f64());
        let _ = writeln!(
            o,
            "Presence with {} connected chat users (each its own user, counted for presence in the store): \
             server RSS {} per connection, connect rate {} /s (each connect authenticates and marks the user online).\n",
            r.extra.get("connections_open").map_or("–".into(), |v| v.to_string()),
            per.map_or("–".into(), |x| format!("{:.1} KiB", x / 1024.0)),
            r.extra
                .get("connect_rate_per_s")
                .and_then(|v| v.as_f64())
                .map_or("–".into(), fmt_rate),
        );
    }
    for r in chat {
        o.push_str(&run_md(r));
        o.push('\n');
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
            received: eps as u64,
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
        let (cols, ratios) = columns(b.mur.as_ref(), None, b.sio.as_ref());
        let table = compare_table("publishes/s", &cols, &ratios);
        assert_eq!(table.lines().count(), 2 + 3, "{table}");
        let md = render(&b);
        assert!(md.contains("## Targets"));
        assert!(md.contains("**met**"));
    }

    #[test]
    fn three_systems_side_by_side() {
        let run = |system: &str, steps| RunResult {
            system: system.into(),
            steps,
            ..RunResult::default()
        };
        let mur = run(
            "murmuration",
            vec![
                step(100.0, 20_000.0, 2.0, 4.0, true),
                step(200.0, 40_000.0, 3.0, 3.0, true),
                step(400.0, 80_000.0, 4.0, 2.0, true),
            ],
        );
        let nats = run(
            "nats",
            vec![
                step(100.0, 20_000.0, 1.0, 2.0, true),
                step(200.0, 40_000.0, 900.0, 1.0, false),
            ],
        );
        let sio = run("socketio", vec![step(100.0, 20_000.0, 8.0, 16.0, true)]);
        let (cols, ratios) = columns(Some(&mur), Some(&nats), Some(&sio));
        assert_eq!(
            cols.iter().map(|c| c.short).collect::<Vec<_>>(),
            ["M", "N", "S"]
        );
        let table = compare_table("messages/s", &cols, &ratios);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 3, "{table}");
        assert!(lines[0].contains("CPU ratio M/N | p99 ratio M/N | CPU ratio M/S"));
        // 100 msg/s: NATS sustained → M/N = 4/2 and 2/1; M/S = 0.25 both.
        assert!(
            lines[2].ends_with("| 2.000 | 2.000 | 0.250 | 0.250 |"),
            "{}",
            lines[2]
        );
        // 200 msg/s: NATS did not sustain it → no M/N ratio; no Socket.IO step.
        assert!(lines[3].ends_with("| – | – | – | – |"), "{}", lines[3]);
        assert!(lines[3].contains("(not sustained)"), "{}", lines[3]);
        let best = best_table(&cols);
        assert!(best.contains("| Murmuration | 400 | 80k |"), "{best}");
        assert!(best.contains("| NATS | 100 | 20k |"), "{best}");
        assert!(best.contains("| 1/2 | 200 (20k offered"), "{best}");
        let set = Systems {
            mur: Some(mur),
            nats: Some(nats),
            sio: Some(sio),
        };
        let ov = overview([("group", &set)]);
        assert!(
            ov.contains("| group | 100 | 80k deliveries/s | 20k deliveries/s | 20k deliveries/s | 2.000 | 2.000 |"),
            "{ov}"
        );
        let b = Bench {
            group_small: set,
            ..Bench::default()
        };
        let md = render(&b);
        assert!(
            md.contains("## Side by side: Murmuration, NATS, Socket.IO"),
            "{md}"
        );
        assert!(md.contains("### Small group: 100 receivers"), "{md}");
        assert!(md.contains("### Large group\n\nNot measured"), "{md}");
    }
}
