//! Results and their renderings.
//!
//! | module | output |
//! |---|---|
//! | [`json`] | the machine-readable result of one run |
//! | [`markdown`] | a Markdown summary of one run |
//! | [`svg`] | latency percentiles (and events/s) over time |
//! | [`bench`] | BENCHMARKS.md from a directory of results (`murmur-load report`) |

pub mod bench;
pub mod json;
pub mod markdown;
pub mod svg;

use serde::{Deserialize, Serialize};

use crate::metrics::histogram::Latency;
use crate::metrics::procstat::CpuUse;
use crate::metrics::SeriesPoint;

/// A scenario's second measurement in a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Secondary {
    pub name: String,
    pub count: u64,
    pub latency: Latency,
}

/// One step: a warm-up and a measurement window at one offered rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    pub label: String,
    /// Offered rate of the senders (messages/s; 0 = closed loop).
    pub offered_rate: f64,
    /// Primary events expected per message sent (subscribers, group size, 1).
    pub fanout: f64,
    pub warmup_s: f64,
    pub measure_s: f64,
    /// Messages whose intended send time is in the window.
    pub sent: u64,
    pub sent_per_s: f64,
    /// `sent * fanout`.
    pub expected: u64,
    /// Primary events of messages sent in the window (deliveries, responses, ACKs).
    pub received: u64,
    pub loss_pct: f64,
    /// `received / window length`.
    pub events_per_s: f64,
    pub latency: Latency,
    pub secondary: Option<Secondary>,
    pub errors: u64,
    pub disconnects: u64,
    pub cpu: CpuUse,
    /// p99 and loss within the limits of the run, no errors and no disconnects.
    pub sustained: bool,
}

/// One run of one scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub tool: String,
    pub scenario: String,
    pub system: String,
    pub label: String,
    /// What a primary event is ("deliveries", "responses", "ACKs", "accepted POSTs").
    pub events: String,
    pub started_unix_ms: u64,
    pub config: serde_json::Value,
    /// Setup figures (connections opened, seconds taken, ...).
    pub setup: serde_json::Map<String, serde_json::Value>,
    pub steps: Vec<StepResult>,
    /// Where each step's window starts on the series' time axis (s) and its label.
    pub marks: Vec<(f64, String)>,
    pub series: Vec<SeriesPoint>,
    /// Scenario-specific figures (memory per connection, delivery reports, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub errors: Vec<String>,
    pub limits: Limits,
}

/// What "sustained" meant for this run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub max_p99_ms: f64,
    pub max_loss_pct: f64,
}

impl RunResult {
    /// The highest sustained step, by events/s.
    pub fn best_sustained(&self) -> Option<&StepResult> {
        self.steps
            .iter()
            .filter(|s| s.sustained)
            .max_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s))
    }

    pub fn total_received(&self) -> u64 {
        self.steps.iter().map(|s| s.received).sum()
    }
}
