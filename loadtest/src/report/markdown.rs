//! The Markdown summary of one run: setup, one row per step, scenario extras.

use std::fmt::Write as _;
use std::path::Path;

use super::{RunResult, StepResult};
use crate::scenarios::fmt_rate;

/// Writes `text` to `path`, creating parent directories.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `12.3 ms` with a sensible precision.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// The table header of [`step_row`].
pub fn step_header(events: &str) -> String {
    format!(
        "| step | sent/s | {events}/s | loss | p50 | p90 | p99 | p99.9 | max | server CPU s per 1M | errors | disc. | sustained |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
}

/// A latency cell: `–` when nothing was received.
fn lat(s: &StepResult, v: f64) -> String {
    if s.received == 0 {
        "–".into()
    } else {
        ms(v)
    }
}

/// One table row for a step.
pub fn step_row(s: &StepResult) -> String {
    format!(
        "| {} | {} | {} | {:.2}% | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        s.label,
        fmt_rate(s.sent_per_s),
        fmt_rate(s.events_per_s),
        s.loss_pct,
        lat(s, s.latency.p50_ms),
        lat(s, s.latency.p90_ms),
        lat(s, s.latency.p99_ms),
        lat(s, s.latency.p999_ms),
        lat(s, s.latency.max_ms),
        s.cpu
            .server_cpu_s_per_million
            .map(|c| format!("{c:.2}"))
            .unwrap_or_else(|| "–".into()),
        s.errors,
        s.disconnects,
        if s.sustained { "yes" } else { "**no**" },
    )
}

/// The summary of one run, under a second-level heading.
pub fn render(run: &RunResult) -> String {
    render_at(run, 2)
}

/// The summary of one run under a heading of `level` (2 = `##`).
pub fn render_at(run: &RunResult, level: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} {}\n", "#".repeat(level), run.label);
    let _ = writeln!(
        out,
        "Scenario `{}` against {}; primary events: {}. Sustained = loss ≤ {}%, p99 ≤ {} ms, no errors, no disconnects.\n",
        run.scenario, run.system, run.events, run.limits.max_loss_pct, run.limits.max_p99_ms
    );
    let _ = writeln!(out, "Configuration: `{}`\n", run.config);
    if !run.setup.is_empty() {
        let _ = writeln!(
            out,
            "Setup: `{}`\n",
            serde_json::Value::Object(run.setup.clone())
        );
    }
    out.push_str(&step_header(&run.events));
    for s in &run.steps {
        out.push_str(&step_row(s));
    }
    let secondaries: Vec<&StepResult> =
        run.steps.iter().filter(|s| s.secondary.is_some()).collect();
    if !secondaries.is_empty() {
        out.push('\n');
        let name = secondaries[0]
            .secondary
            .as_ref()
            .map(|x| x.name.clone())
            .unwrap_or_default();
        let _ = writeln!(out, "Second figure, {name}:\n");
        out.push_str(
            "| step | count | p50 | p99 | p99.9 | max |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for s in secondaries {
            // unwrap: the filter above kept only steps with a secondary figure.
            let x = s.secondary.as_ref().expect("filtered");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                s.label,
                x.count,
                ms(x.latency.p50_ms),
                ms(x.latency.p99_ms),
                ms(x.latency.p999_ms),
                ms(x.latency.max_ms)
            );
        }
    }
    if !run.extra.is_empty() {
        let _ = writeln!(
            out,
            "\nExtra: `{}`",
            serde_json::Value::Object(run.extra.clone())
        );
    }
    if !run.errors.is_empty() {
        let _ = writeln!(out, "\nFirst errors:\n");
        for e in &run.errors {
            let _ = writeln!(out, "* `{}`", e.replace('`', "'"));
        }
    }
    out
}

pub fn write(path: &Path, run: &RunResult) -> Result<(), String> {
    write_file(path, &render(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_renders_as_a_table() {
        let run = RunResult {
            label: "fanout (x)".into(),
            events: "deliveries".into(),
            steps: vec![StepResult {
                label: "100 msg/s".into(),
                events_per_s: 10_000.0,
                sustained: true,
                ..StepResult::default()
            }],
            ..RunResult::default()
        };
        let md = render(&run);
        assert!(md.contains("## fanout (x)"), "{md}");
        assert!(md.contains("| 100 msg/s | 0 | 10k |"), "{md}");
        assert!(md.contains("| yes |"), "{md}");
    }
}
