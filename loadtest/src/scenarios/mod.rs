//! Scenarios and the step runner they share.
//!
//! A scenario connects its clients once, then [`run_steps`] drives one step per offered
//! rate: every sender is handed a [`Timetable`] (warm-up + window), the CPU of the
//! watched processes is sampled at the window's edges, and after the window the runner
//! waits (at most `--drain`) for the expected events before it summarises the step.
//!
//! | module | scenario |
//! |---|---|
//! | [`fanout`] | Helios / Socket.IO / NATS channel fan-out, cross-node with split URLs |
//! | [`rpc`] | Helios RPC through the broker |
//! | [`chat`] | chat group fan-out (Murmuration chat groups, NATS subjects, Socket.IO rooms) |
//! | [`timestick`] | TimeStick POST throughput and long-poll delivery |
//! | [`sink`] | Sink PUBLISH/ACK throughput |
//! | [`idle`] | connection ramp and memory per idle connection |
//! | [`redis_probe`] | raw Redis PUBLISH→SUBSCRIBE latency |
//! | [`sender`] | the persistent open-loop WebSocket sender task |
//! | [`receiver`] | the persistent receive loop of listening WebSockets |

pub mod chat;
pub mod fanout;
pub mod idle;
pub mod inbox;
pub mod receiver;
pub mod redis_probe;
pub mod rpc;
pub mod sender;
pub mod sink;
pub mod timestick;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::cli::Common;
use crate::metrics::procstat::{CpuSnapshot, CpuUse};
use crate::metrics::{Local, Recorder};
use crate::net::Sources;
use crate::report::{Limits, RunResult, Secondary, StepResult};

/// Everything a scenario needs.
pub struct Ctx {
    pub rec: Arc<Recorder>,
    pub common: Common,
    pub sources: Arc<Sources>,
    /// A short random id that makes names (channels, users) unique per run.
    pub run_id: String,
}

impl Ctx {
    pub fn new(common: Common) -> Result<Ctx, String> {
        let ips = Sources::parse(&common.source_ips)?;
        Ok(Ctx {
            rec: Recorder::new(),
            sources: Sources::new(ips),
            run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            common,
        })
    }

    /// A result skeleton for `scenario`.
    pub fn result(
        &self,
        scenario: &str,
        system: &str,
        events: &str,
        config: serde_json::Value,
    ) -> RunResult {
        RunResult {
            tool: format!("murmur-load {}", env!("CARGO_PKG_VERSION")),
            scenario: scenario.into(),
            system: system.into(),
            label: self
                .common
                .label
                .clone()
                .unwrap_or_else(|| format!("{scenario} ({system})")),
            events: events.into(),
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default(),
            config,
            limits: Limits {
                max_p99_ms: self.common.max_p99_ms,
                max_loss_pct: self.common.max_loss_pct,
            },
            ..RunResult::default()
        }
    }
}

/// Runs `n` setup futures with `--connect-concurrency` at a time, in order of index;
/// fails on the first error.
pub async fn setup_all<T, F, Fut>(ctx: &Ctx, n: usize, what: &str, f: F) -> Result<Vec<T>, String>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    ctx.rec.set_status(format!("setup: {n} {what}"));
    let results: Vec<Result<T, String>> = stream::iter((0..n).map(f))
        .buffered(ctx.common.connect_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// One step's timing, in µs on the recorder's clock.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Offered rate (messages/s, 0 = closed loop).
    pub rate: f64,
    /// Sending starts (warm-up).
    pub start_us: u64,
    /// The measured window `[win_start_us, end_us)`; sending stops at `end_us`.
    pub win_start_us: u64,
    pub end_us: u64,
}

impl Window {
    pub fn counts(&self, t_us: u64) -> bool {
        t_us >= self.win_start_us && t_us < self.end_us
    }
}

/// The open-loop schedule of one of `n` senders sharing a step's rate: message `k` is
/// due at `start + (i/n + k) * period`, `period = n / rate`. Closed loop (rate 0): every
/// message is due "now" until the end.
#[derive(Debug, Clone)]
pub struct Timetable {
    pub window: Window,
    first_us: f64,
    period_us: f64,
    k: u64,
}

impl Timetable {
    pub fn new(window: Window, i: usize, n: usize) -> Timetable {
        let n = n.max(1) as f64;
        let period_us = if window.rate > 0.0 {
            1e6 * n / window.rate
        } else {
            0.0
        };
        Timetable {
            window,
            first_us: window.start_us as f64 + period_us * (i as f64 / n),
            period_us,
            k: 0,
        }
    }

    pub fn closed_loop(&self) -> bool {
        self.period_us == 0.0
    }

    /// When the next message is due (`now` in closed loop); `None` once past the end.
    pub fn next_due(&self, now_us: u64) -> Option<u64> {
        let due = if self.closed_loop() {
            now_us.max(self.window.start_us)
        } else {
            (self.first_us + self.period_us * self.k as f64) as u64
        };
        (due < self.window.end_us).then_some(due)
    }

    /// Marks the next message as sent.
    pub fn advance(&mut self) {
        self.k += 1;
    }

    /// For a request-response sender: waits until the next message is due (open loop;
    /// `local` is flushed before a wait), marks it sent and counts it in `stats` and the
    /// recorder; its due time, or `None` once the timetable is exhausted.
    pub async fn next_send(
        &mut self,
        rec: &Recorder,
        local: &mut Local,
        stats: &mut SentStats,
    ) -> Option<u64> {
        let due = self.next_due(rec.now_us())?;
        if !self.closed_loop() && due > rec.now_us() {
            local.flush();
            tokio::time::sleep_until(rec.instant_at(due).into()).await;
        }
        self.advance();
        stats.sent_total += 1;
        if self.window.counts(due) {
            stats.sent_window += 1;
        }
        rec.add_sent(1);
        Some(due)
    }
}

/// What a sender reports at the end of a step.
#[derive(Debug, Clone, Copy, Default)]
pub struct SentStats {
    pub sent_total: u64,
    pub sent_window: u64,
}

impl std::ops::AddAssign for SentStats {
    fn add_assign(&mut self, o: SentStats) {
        self.sent_total += o.sent_total;
        self.sent_window += o.sent_window;
    }
}

/// What a step hands a sending task: its timetable, and where to report what it sent.
pub type StepCmd = (Timetable, oneshot::Sender<SentStats>);

/// Hands `tt` to the sending task behind `tx`; resolves with its report when the timetable
/// is exhausted (nothing sent if the task is gone).
pub async fn step_one(tx: &mpsc::Sender<StepCmd>, tt: Timetable) -> SentStats {
    let (done, wait) = oneshot::channel();
    if tx.send((tt, done)).await.is_err() {
        return SentStats::default();
    }
    wait.await.unwrap_or_default()
}

/// Runs every sending task on its own share of `window` and sums what they sent.
pub async fn step_each(txs: &[mpsc::Sender<StepCmd>], window: Window) -> SentStats {
    let n = txs.len();
    let all = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| step_one(tx, Timetable::new(window, i, n)));
    let mut total = SentStats::default();
    for s in futures_util::future::join_all(all).await {
        total += s;
    }
    total
}

/// Runs every step of `--rates`. `step` starts the senders for a window and resolves
/// when they are done; `fanout` is the number of primary events expected per message;
/// `secondary` names the second figure (if the scenario has one).
pub async fn run_steps<F, Fut>(
    ctx: &Ctx,
    fanout: f64,
    secondary: Option<&str>,
    run: &mut RunResult,
    mut step: F,
) where
    F: FnMut(Window) -> Fut,
    Fut: Future<Output = SentStats>,
{
    let c = &ctx.common;
    let rec = &ctx.rec;
    let mut failures = 0;
    for (i, &rate) in c.rates.iter().enumerate() {
        let start_us = rec.now_us() + 100_000;
        let win_start_us = start_us + c.warmup.as_micros() as u64;
        let end_us = win_start_us + c.duration.as_micros() as u64;
        let idx = rec.begin_step(win_start_us, end_us);
        let window = Window {
            rate,
            start_us,
            win_start_us,
            end_us,
        };
        let label = if rate > 0.0 {
            format!("{} msg/s", fmt_rate(rate))
        } else {
            "closed loop".to_string()
        };
        rec.set_status(format!("step {}/{} {label}", i + 1, c.rates.len()));
        run.marks.push((win_start_us as f64 / 1e6, label.clone()));
        let (errors0, disc0) = (rec.errors(), rec.disconnects());

        let watched = c.watch.clone();
        let rec2 = rec.clone();
        let cpu = tokio::spawn(async move {
            tokio::time::sleep_until(rec2.instant_at(win_start_us).into()).await;
            let a = CpuSnapshot::take(&watched);
            tokio::time::sleep_until(rec2.instant_at(end_us).into()).await;
            let b = CpuSnapshot::take(&watched);
            (a, b)
        });
        let sent = step(window).await;
        // unwrap: the sampler task does not panic; a panic there is a bug to surface.
        let (a, b) = cpu.await.expect("cpu sampler");

        // Drain: wait for the expected events, at most --drain, and give up early when
        // nothing has arrived for a second.
        let expected = (sent.sent_window as f64 * fanout).round() as u64;
        let deadline = tokio::time::Instant::now() + c.drain;
        let mut last = (rec.step_count(idx), tokio::time::Instant::now());
        while tokio::time::Instant::now() < deadline {
            let got = rec.step_count(idx);
            if got >= expected {
                break;
            }
            if got != last.0 {
                last = (got, tokio::time::Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(1) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let (received, latency, sec_count, sec_latency) = rec.step_summary(idx);
        let measure_s = c.duration.as_secs_f64();
        let loss_pct = if expected > 0 {
            (expected.saturating_sub(received) as f64 / expected as f64 * 100.0 * 1000.0).round()
                / 1000.0
        } else if received == 0 {
            100.0
        } else {
            0.0
        };
        let cpu = CpuUse::between(&c.watch, &a, &b, received);
        let (errors, disconnects) = (rec.errors() - errors0, rec.disconnects() - disc0);
        let sustained = received > 0
            && loss_pct <= c.max_loss_pct
            && latency.p99_ms <= c.max_p99_ms
            && errors == 0
            && disconnects == 0;
        let result = StepResult {
            label,
            offered_rate: rate,
            fanout,
            warmup_s: c.warmup.as_secs_f64(),
            measure_s,
            sent: sent.sent_window,
            sent_per_s: round1(sent.sent_window as f64 / measure_s),
            expected,
            received,
            loss_pct,
            events_per_s: round1(received as f64 / measure_s),
            latency,
            secondary: secondary.map(|name| Secondary {
                name: name.to_string(),
                count: sec_count,
                latency: sec_latency,
            }),
            errors,
            disconnects,
            cpu,
            sustained,
        };
        crate::progress::step_line(&run.label, &result);
        run.steps.push(result);
        if sustained {
            failures = 0;
        } else {
            failures += 1;
            if c.stop_after_failures > 0 && failures >= c.stop_after_failures {
                eprintln!(
                    "murmur-load: {failures} unsustained step(s) in a row: skipping the higher rates"
                );
                break;
            }
        }
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `1500` → `1.5k`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.0}k", r / 1e3)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// `urls` if not empty, else `fallback`.
pub fn or_default<'a>(urls: &'a [String], fallback: &'a [String]) -> &'a [String] {
    if urls.is_empty() {
        fallback
    } else {
        urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(rate: f64) -> Window {
        Window {
            rate,
            start_us: 1_000_000,
            win_start_us: 2_000_000,
            end_us: 3_000_000,
        }
    }

    #[test]
    fn open_loop_timetables_interleave_senders() {
        let w = window(1000.0);
        let mut a = Timetable::new(w, 0, 2);
        let mut b = Timetable::new(w, 1, 2);
        assert_eq!(a.next_due(0), Some(1_000_000));
        assert_eq!(b.next_due(0), Some(1_001_000));
        a.advance();
        b.advance();
        assert_eq!(a.next_due(0), Some(1_002_000));
        let mut n = 2;
        while a.next_due(0).is_some() {
            a.advance();
            n += 1;
        }
        while b.next_due(0).is_some() {
            b.advance();
            n += 1;
        }
        // 2 s (warm-up and window) at 1000/s.
        assert_eq!(n, 2000);
        assert!(w.counts(2_000_000) && !w.counts(3_000_000) && !w.counts(1_999_999));
    }

    #[test]
    fn closed_loop_is_due_now_until_the_end() {
        let t = Timetable::new(window(0.0), 0, 4);
        assert!(t.closed_loop());
        assert_eq!(t.next_due(1_500_000), Some(1_500_000));
        assert_eq!(t.next_due(10), Some(1_000_000));
        assert_eq!(t.next_due(3_000_000), None);
    }

    #[test]
    fn rates_format() {
        assert_eq!(fmt_rate(800.0), "800");
        assert_eq!(fmt_rate(1500.0), "1.5k");
        assert_eq!(fmt_rate(80_000.0), "80k");
        assert_eq!(fmt_rate(2_500_000.0), "2.50M");
    }
}
