//! Latency percentiles over time as a self-contained SVG: a log-scale latency panel
//! (p50, p90, p99, p99.9, max per second of receive time) above a linear events/s
//! panel, with the steps' windows marked. [`compare`] overlays two runs (p50 and p99
//! of each) for the side-by-side figure.

use std::fmt::Write as _;
use std::path::Path;

use super::RunResult;

/// One polyline.
pub struct Line {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (seconds from the run's first point, value).
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 60.0;
const LAT_H: f64 = 300.0;
const GAP: f64 = 50.0;
const RATE_H: f64 = 120.0;
const H: f64 = TOP + LAT_H + GAP + RATE_H + 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders a chart. `marks` are (x, label) step starts.
pub fn chart(title: &str, latency: &[Line], rates: &[Line], marks: &[(f64, String)]) -> String {
    let all_x = latency
        .iter()
        .chain(rates)
        .flat_map(|l| l.points.iter().map(|p| p.0));
    let x_max = all_x.fold(1.0f64, f64::max);
    let plot_w = W - LEFT - RIGHT;
    let sx = |x: f64| LEFT + x / x_max * plot_w;
    // Latency axis: log10 from the decade below the smallest to the one above the largest.
    let lat_vals = latency
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for v in lat_vals {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi <= 0.0 {
        lo = 0.1;
        hi = 10.0;
    }
    let d_lo = lo.max(0.001).log10().floor();
    let d_hi = hi.log10().ceil().max(d_lo + 1.0);
    let sy = |v: f64| {
        let v = v.max(10f64.powf(d_lo));
        TOP + LAT_H - (v.log10() - d_lo) / (d_hi - d_lo) * LAT_H
    };
    let r_max = nice_ceil(
        rates
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(1.0f64, f64::max),
    );
    let r_top = TOP + LAT_H + GAP;
    let sr = |v: f64| r_top + RATE_H - v / r_max * RATE_H;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Grid: latency decades.
    let mut d = d_lo;
    while d <= d_hi + 1e-9 {
        let y = sy(10f64.powf(d));
        let v = (10f64.powf(d) * 1000.0).round() / 1000.0;
        let label = if v >= 1000.0 {
            format!("{} s", v / 1000.0)
        } else {
            format!("{v} ms")
        };
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            W - RIGHT
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#,
            LEFT - 6.0,
            y + 4.0
        );
        d += 1.0;
    }
    // Rate axis.
    for f in [0.0, 0.5, 1.0] {
        let v = r_max * f;
        let y = sr(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##,
            W - RIGHT
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}/s</text>"#,
            LEFT - 6.0,
            y + 4.0,
            crate::scenarios::fmt_rate(v)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">latency (log scale), per second of receive time</text>"#,
        TOP - 6.0
    );
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">events per second</text>"#,
        r_top - 6.0
    );
    // Time axis ticks.
    let step = nice_step(x_max / 8.0);
    let mut t = 0.0;
    while t <= x_max + 1e-9 {
        let x = sx(t);
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{t:.0}s</text>"#,
            r_top + RATE_H + 16.0
        );
        t += step;
    }
    // Step marks.
    for (x, label) in marks {
        if *x < 0.0 || *x > x_max {
            continue;
        }
        let px = sx(*x);
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{:.1}" stroke="#999" stroke-dasharray="3,3"/>"##,
            r_top + RATE_H
        );
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#555" text-anchor="end" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
            px + 10.0,
            TOP + 4.0,
            px + 10.0,
            TOP + 4.0,
            esc(label)
        );
    }
    let mut legend_y = TOP + 10.0;
    for (lines, scale) in [(latency, 0), (rates, 1)] {
        for l in lines {
            if l.points.is_empty() {
                continue;
            }
            let pts: Vec<String> = l
                .points
                .iter()
                .map(|&(x, v)| {
                    let y = if scale == 0 { sy(v) } else { sr(v) };
                    format!("{:.1},{:.1}", sx(x), y)
                })
                .collect();
            let dash = if l.dashed {
                r#" stroke-dasharray="6,3""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
                l.color,
                pts.join(" ")
            );
            let lx = W - RIGHT + 10.0;
            let _ = write!(
                s,
                r#"<line x1="{lx}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{}" stroke-width="2"{dash}/>"#,
                lx + 20.0,
                l.color
            );
            let _ = write!(
                s,
                r#"<text x="{}" y="{}">{}</text>"#,
                lx + 26.0,
                legend_y + 4.0,
                esc(&l.name)
            );
            legend_y += 16.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above `v`.
fn nice_ceil(v: f64) -> f64 {
    let v = v.max(1.0);
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

const COLORS: [&str; 5] = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#7f7f7f"];

/// The lines of one run: five percentiles and events/s, x relative to `t0`.
fn lines_of(
    run: &RunResult,
    t0: f64,
    prefix: &str,
    which: &[usize],
    dashed: bool,
) -> (Vec<Line>, Line) {
    let names = ["p50", "p90", "p99", "p99.9", "max"];
    let mut lat = Vec::new();
    for &k in which {
        let points = run
            .series
            .iter()
            .filter(|p| p.events > 0)
            .map(|p| {
                let l = &p.latency;
                let v = [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms][k];
                (p.t_s as f64 - t0, v)
            })
            .collect();
        lat.push(Line {
            name: format!("{prefix}{}", names[k]),
            color: COLORS[k],
            dashed,
            points,
        });
    }
    let rate = Line {
        name: format!("{prefix}events/s"),
        color: if dashed { "#9467bd" } else { "#8c564b" },
        dashed,
        points: run
            .series
            .iter()
            .map(|p| (p.t_s as f64 - t0, p.events as f64))
            .collect(),
    };
    (lat, rate)
}

/// The chart of one run.
pub fn render(run: &RunResult) -> String {
    let t0 = run.series.first().map_or(0.0, |p| p.t_s as f64);
    let (lat, rate) = lines_of(run, t0, "", &[0, 1, 2, 3, 4], false);
    let marks: Vec<(f64, String)> = run.marks.iter().map(|(x, l)| (x - t0, l.clone())).collect();
    chart(
        &format!("{}: latency over time", run.label),
        &lat,
        &[rate],
        &marks,
    )
}

/// Two runs overlaid (p50 and p99 of each, and events/s), each on its own time axis
/// starting at 0.
pub fn compare(title: &str, a: &RunResult, b: &RunResult) -> String {
    let ta = a.series.first().map_or(0.0, |p| p.t_s as f64);
    let tb = b.series.first().map_or(0.0, |p| p.t_s as f64);
    let (mut lat, ra) = lines_of(a, ta, &format!("{} ", a.system), &[0, 2], false);
    let (lb, rb) = lines_of(b, tb, &format!("{} ", b.system), &[0, 2], true);
    lat.extend(lb);
    let marks: Vec<(f64, String)> = a.marks.iter().map(|(x, l)| (x - ta, l.clone())).collect();
    chart(title, &lat, &[ra, rb], &marks)
}

pub fn write(path: &Path, run: &RunResult) -> Result<(), String> {
    super::markdown::write_file(path, &render(run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::Latency;
    use crate::metrics::SeriesPoint;

    #[test]
    fn renders_a_well_formed_svg() {
        let run = RunResult {
            label: "x & y".into(),
            series: (0..10)
                .map(|t| SeriesPoint {
                    t_s: 5 + t,
                    events: 1000 * t,
                    latency: Latency {
                        count: 10,
                        p50_ms: 0.5,
                        p99_ms: 3.0 + t as f64,
                        max_ms: 40.0,
                        ..Latency::default()
                    },
                })
                .collect(),
            marks: vec![(7.0, "100 msg/s".into())],
            ..RunResult::default()
        };
        let svg = render(&run);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("x &amp; y"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("100 msg/s"));
        assert_eq!(nice_ceil(643_000.0), 1_000_000.0);
        assert_eq!(nice_ceil(180_000.0), 200_000.0);
        assert_eq!(nice_ceil(0.5), 1.0);
        let both = compare("t", &run, &run);
        assert!(both.matches("<polyline").count() >= 6);
    }
}
