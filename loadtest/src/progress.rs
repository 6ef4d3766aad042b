//! The live progress line on stderr: a bar over the current step, events/s and p99 of
//! the last second, errors and disconnects. On a terminal it redraws in place every
//! second; otherwise (logs) it prints a line every 5 s. One summary line per step.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::Progress;
use crate::metrics::Recorder;
use crate::report::StepResult;

/// Stops the progress task when dropped.
pub struct Guard {
    stop: Arc<AtomicBool>,
    tty: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Starts the progress task; `total` is the expected run time (for the bar).
pub fn start(rec: &Arc<Recorder>, mode: Progress, total: Duration) -> Guard {
    let tty = std::io::stderr().is_terminal();
    let stop = Arc::new(AtomicBool::new(false));
    let (show, every) = match mode {
        Progress::Never => (false, Duration::from_secs(1)),
        Progress::Always => (true, Duration::from_secs(1)),
        Progress::Auto if tty => (true, Duration::from_secs(1)),
        Progress::Auto => (true, Duration::from_secs(5)),
    };
    let live = tty && mode != Progress::Never;
    if show {
        let rec = rec.clone();
        let stop2 = stop.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut last = (0u64, 0u64);
            loop {
                tokio::time::sleep(every).await;
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let line = render(&rec, start.elapsed(), total, &mut last, every);
                if live {
                    eprint!("\r\x1b[2K{line}");
                } else {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
        });
    }
    Guard { stop, tty: live }
}

fn render(
    rec: &Recorder,
    elapsed: Duration,
    total: Duration,
    last: &mut (u64, u64),
    every: Duration,
) -> String {
    let frac = if total.is_zero() {
        0.0
    } else {
        (elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0)
    };
    let width = 24;
    let filled = (frac * width as f64) as usize;
    let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
    let (sent, got) = (rec.sent_total(), rec.delivered_total());
    let secs = every.as_secs_f64();
    let send_rate = (sent - last.0) as f64 / secs;
    let rate = (got - last.1) as f64 / secs;
    *last = (sent, got);
    let p99 = rec
        .last_second()
        .map(|(_, l)| format!("{:.1}ms", l.p99_ms))
        .unwrap_or_else(|| "-".into());
    format!(
        "[{bar}] {:>4.0}s {}  sent {}/s  recv {}/s  p99(1s) {p99}  err {}  disc {}",
        elapsed.as_secs_f64(),
        rec.status(),
        crate::scenarios::fmt_rate(send_rate),
        crate::scenarios::fmt_rate(rate),
        rec.errors(),
        rec.disconnects()
    )
}

/// The line printed when a step ends.
pub fn step_line(label: &str, s: &StepResult) {
    let cpu = s
        .cpu
        .server_cpu_s_per_million
        .map(|c| format!("  server CPU {c:.2} s/M"))
        .unwrap_or_default();
    let clear = if std::io::stderr().is_terminal() {
        "\r\x1b[2K"
    } else {
        ""
    };
    eprintln!(
        "{clear}{label}: {}  {} ev/s  loss {:.2}%  p50 {:.2}ms p99 {:.2}ms p999 {:.2}ms max {:.1}ms  err {} disc {}{cpu}  {}",
        s.label,
        crate::scenarios::fmt_rate(s.events_per_s),
        s.loss_pct,
        s.latency.p50_ms,
        s.latency.p99_ms,
        s.latency.p999_ms,
        s.latency.max_ms,
        s.errors,
        s.disconnects,
        if s.sustained { "sustained" } else { "NOT sustained" }
    );
}
