//! The measurement core. Every latency is `receive time - intended send time`, both
//! in microseconds on one monotonic clock ([`Recorder::now_us`]): senders embed the
//! time a message was *scheduled* for, not the time it left, so a stalled sender cannot
//! hide the delay (no coordinated omission).
//!
//! Receiving tasks buffer samples in a [`Local`] and flush them in batches (whenever
//! their socket has nothing more ready). A sample belongs to the step whose measurement
//! window contains its intended send time; samples from warm-ups count only in the
//! per-second series, which is keyed by receive time.

pub mod histogram;
pub mod procstat;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use histogram::{new_hist, record, Latency};

/// Which measurement a sample belongs to. `Primary` decides throughput and loss
/// (deliveries, RPC responses, ACKs, accepted POSTs); `Secondary` is a scenario's second
/// figure (publish acknowledgements, long-poll deliveries, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Primary,
    Secondary,
}

/// A histogram and its count.
pub struct Acc {
    pub hist: Histogram<u64>,
    pub count: u64,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            hist: new_hist(),
            count: 0,
        }
    }
}

/// What one step has received so far.
pub struct StepAcc {
    /// Intended send times `[start, end)` that count for this step (µs).
    pub window: (u64, u64),
    pub primary: Acc,
    pub secondary: Acc,
}

struct Shared {
    steps: Vec<StepAcc>,
    /// Per second of receive time: primary latencies.
    intervals: Vec<Acc>,
}

/// One point of the latency-over-time series.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SeriesPoint {
    /// Seconds since the tool started.
    pub t_s: u64,
    /// Primary events received in that second (deliveries/s).
    pub events: u64,
    pub latency: Latency,
}

/// Shared by every task of a run.
pub struct Recorder {
    t0: Instant,
    shared: Mutex<Shared>,
    delivered_total: AtomicU64,
    sent_total: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    status: Mutex<String>,
}

/// How many distinct error messages are kept for the report.
const KEPT_ERRORS: usize = 8;

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            t0: Instant::now(),
            shared: Mutex::new(Shared {
                steps: Vec::new(),
                intervals: Vec::new(),
            }),
            delivered_total: AtomicU64::new(0),
            sent_total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
            status: Mutex::new(String::new()),
        })
    }

    /// Microseconds since the recorder was created (monotonic).
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// The instant of `us` on this clock.
    pub fn instant_at(&self, us: u64) -> Instant {
        self.t0 + std::time::Duration::from_micros(us)
    }

    /// Opens a step whose window is `[start_us, end_us)`; returns its index.
    pub fn begin_step(&self, start_us: u64, end_us: u64) -> usize {
        let mut s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.steps.push(StepAcc {
            window: (start_us, end_us),
            primary: Acc::new(),
            secondary: Acc::new(),
        });
        s.steps.len() - 1
    }

    /// Primary events of step `idx` so far.
    pub fn step_count(&self, idx: usize) -> u64 {
        let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        s.steps.get(idx).map_or(0, |st| st.primary.count)
    }

    /// Summaries of step `idx`: (primary count, primary latency, secondary count,
    /// secondary latency).
    pub fn step_summary(&self, idx: usize) -> (u64, Latency, u64, Latency) {
        let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        match s.steps.get(idx) {
            Some(st) => (
                st.primary.count,
                Latency::of(&st.primary.hist),
                st.secondary.count,
                Latency::of(&st.secondary.hist),
            ),
            None => (0, Latency::default(), 0, Latency::default()),
        }
    }

    /// The per-second series (receive time), skipping empty seconds at the start.
    pub fn series(&self) -> Vec<SeriesPoint> {
        let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let first = s.intervals.iter().position(|a| a.count > 0).unwrap_or(0);
        s.intervals
            .iter()
            .enumerate()
            .skip(first)
            .map(|(t, a)| SeriesPoint {
                t_s: t as u64,
                events: a.count,
                latency: Latency::of(&a.hist),
            })
            .collect()
    }

    /// The latency summary of the last complete second (for the progress line).
    pub fn last_second(&self) -> Option<(u64, Latency)> {
        let now_s = (self.now_us() / 1_000_000) as usize;
        let s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let idx = now_s.checked_sub(1)?;
        s.intervals
            .get(idx)
            .map(|a| (a.count, Latency::of(&a.hist)))
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered_total.load(Ordering::Relaxed)
    }

    pub fn sent_total(&self) -> u64 {
        self.sent_total.load(Ordering::Relaxed)
    }

    pub fn add_sent(&self, n: u64) {
        self.sent_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Counts an error; the first few distinct messages are kept for the report.
    pub fn error(&self, what: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.keep(what.into());
    }

    /// Counts a connection lost while the scenario still needed it.
    pub fn disconnect(&self, what: impl Into<String>) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        self.keep(format!("disconnect: {}", what.into()));
    }

    fn keep(&self, what: String) {
        let mut kept = self
            .first_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.len() < KEPT_ERRORS && !kept.contains(&what) {
            kept.push(what);
        }
    }

    pub fn error_samples(&self) -> Vec<String> {
        self.first_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the progress line shows as the current activity.
    pub fn set_status(&self, status: impl Into<String>) {
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status.into();
    }

    pub fn status(&self) -> String {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn absorb(&self, samples: &[(Kind, u64, u64)]) {
        let mut primary = 0;
        let mut s = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        for &(kind, sent, recv) in samples {
            let lat = recv.saturating_sub(sent);
            if kind == Kind::Primary {
                primary += 1;
                let sec = (recv / 1_000_000) as usize;
                if s.intervals.len() <= sec {
                    s.intervals.resize_with(sec + 1, Acc::new);
                }
                let a = &mut s.intervals[sec];
                record(&mut a.hist, lat);
                a.count += 1;
            }
            if let Some(st) = s
                .steps
                .iter_mut()
                .rev()
                .find(|st| sent >= st.window.0 && sent < st.window.1)
            {
                let a = match kind {
                    Kind::Primary => &mut st.primary,
                    Kind::Secondary => &mut st.secondary,
                };
                record(&mut a.hist, lat);
                a.count += 1;
            }
        }
        drop(s);
        self.delivered_total.fetch_add(primary, Ordering::Relaxed);
    }
}

/// A task's sample buffer. Call [`Local::flush`] whenever the task is about to wait;
/// it also flushes when full and when dropped.
pub struct Local {
    rec: Arc<Recorder>,
    samples: Vec<(Kind, u64, u64)>,
}

const LOCAL_CAP: usize = 512;

impl Local {
    pub fn new(rec: &Arc<Recorder>) -> Local {
        Local {
            rec: rec.clone(),
            samples: Vec::with_capacity(LOCAL_CAP),
        }
    }

    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.rec
    }

    /// One event whose intended send time was `sent_us`, received now.
    pub fn sample(&mut self, kind: Kind, sent_us: u64) {
        let now = self.rec.now_us();
        self.sample_at(kind, sent_us, now);
    }

    /// One event with an explicit receive time.
    pub fn sample_at(&mut self, kind: Kind, sent_us: u64, recv_us: u64) {
        self.samples.push((kind, sent_us, recv_us));
        if self.samples.len() >= LOCAL_CAP {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if !self.samples.is_empty() {
            self.rec.absorb(&self.samples);
            self.samples.clear();
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_step_of_their_send_time() {
        let rec = Recorder::new();
        let a = rec.begin_step(1_000, 2_000);
        let b = rec.begin_step(2_000, 3_000);
        let mut l = Local::new(&rec);
        l.sample_at(Kind::Primary, 500, 900); // warm-up: series only
        l.sample_at(Kind::Primary, 1_500, 1_700);
        l.sample_at(Kind::Primary, 2_500, 2_600);
        l.sample_at(Kind::Secondary, 2_100, 2_300);
        assert_eq!(rec.step_count(a), 0, "nothing before a flush");
        l.flush();
        assert_eq!(rec.step_count(a), 1);
        let (n, lat, n2, lat2) = rec.step_summary(b);
        assert_eq!((n, n2), (1, 1));
        assert!((lat.max_ms - 0.1).abs() < 0.001, "{lat:?}");
        assert!((lat2.max_ms - 0.2).abs() < 0.001, "{lat2:?}");
        assert_eq!(rec.delivered_total(), 3);
        let series = rec.series();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].events, 3);
    }

    #[test]
    fn errors_are_counted_and_sampled_once() {
        let rec = Recorder::new();
        for _ in 0..3 {
            rec.error("boom");
        }
        rec.disconnect("closed 4001");
        assert_eq!(rec.errors(), 3);
        assert_eq!(rec.disconnects(), 1);
        assert_eq!(rec.error_samples().len(), 2);
    }

    #[test]
    fn dropping_a_local_flushes() {
        let rec = Recorder::new();
        let s = rec.begin_step(0, 10_000_000);
        {
            let mut l = Local::new(&rec);
            l.sample(Kind::Primary, 0);
        }
        assert_eq!(rec.step_count(s), 1);
    }
}
