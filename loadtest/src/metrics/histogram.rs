//! Latency histograms (microseconds) and their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly: 120 s (larger values saturate).
const HIGHEST_US: u64 = 120_000_000;

/// A fresh histogram of microseconds, 1 µs to 120 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    // unwrap: constant bounds, 1 < HIGHEST_US and 3 significant figures, are valid.
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid histogram bounds")
}

/// Records one latency (µs), clamping 0 to 1 and saturating beyond the top.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

impl Latency {
    /// The summary of `h` (all zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_in_milliseconds() {
        let mut h = new_hist();
        for us in 1..=1000u64 {
            record(&mut h, us * 10);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.p99_ms - 9.9).abs() < 0.02, "{l:?}");
        assert!((l.max_ms - 10.0).abs() < 0.02, "{l:?}");
        assert_eq!(Latency::of(&new_hist()), Latency::default());
    }

    #[test]
    fn zero_and_huge_values_are_kept() {
        let mut h = new_hist();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
    }
}
