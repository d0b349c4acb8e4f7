//! Throughput-latency curve: open-loop steps of rising arrival rate, up to and past
//! saturation, written as JSON and as an SVG chart.

use std::fmt::Write;
use std::sync::Arc;

use crate::run::{run, Mode, RunConfig};
use crate::{Bodies, Report};

/// Runs one open-loop step per rate.
pub async fn sweep(
    base: &RunConfig,
    rates: &[f64],
    bodies: Arc<Bodies>,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for &rate in rates {
        let config = RunConfig {
            mode: Mode::Open { rate },
            ..base.clone()
        };
        let report = run(&config, bodies.clone()).await?;
        eprintln!("{}", report.summary());
        reports.push(report);
    }
    Ok(reports)
}

/// Achieved throughput vs p50 / p99 latency, one line per series (several runs side by side).
/// Latency is on a log scale (decades marked), so a curve that goes from milliseconds at low
/// load to seconds past saturation stays readable next to one that does not.
pub fn svg(title: &str, series: &[(&str, &[Report])]) -> String {
    let (w, h, left, bottom, top) = (720.0, 420.0, 70.0, 50.0, 30.0);
    let reports = || series.iter().flat_map(|(_, r)| r.iter());
    let max_x = reports()
        .map(|r| r.offered.max(r.throughput_rps))
        .fold(1.0, f64::max);
    let latencies = || reports().flat_map(|r| [r.latency_ms.p50, r.latency_ms.p99]);
    let lo = latencies()
        .fold(f64::MAX, f64::min)
        .max(0.1)
        .log10()
        .floor();
    let hi = latencies().fold(1.0, f64::max).log10().ceil().max(lo + 1.0);
    let x = |v: f64| left + v / max_x * (w - left - 20.0);
    let y = |ms: f64| {
        let v = ms.max(0.1).log10().clamp(lo, hi);
        h - bottom - (v - lo) / (hi - lo) * (h - bottom - top)
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="18" text-anchor="middle" font-size="14">{title}</text><line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/><text x="{}" y="{}" text-anchor="middle">achieved throughput (requests/s, max {max_x:.0})</text><text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">latency (ms, log scale)</text>"#,
        w / 2.0,
        h - bottom,
        w - 20.0,
        h - bottom,
        h - bottom,
        w / 2.0,
        h - 15.0,
        h / 2.0,
        h / 2.0
    );
    for decade in lo as i32..=hi as i32 {
        let ms = 10f64.powi(decade);
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{ms}</text>"##,
            y(ms),
            w - 20.0,
            left - 5.0,
            y(ms) + 4.0
        );
    }
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    for (k, (name, reports)) in series.iter().enumerate() {
        let color = colors[k % colors.len()];
        for (quantile, dash) in [("p50", ""), ("p99", "6,3")] {
            let points: Vec<String> = reports
                .iter()
                .map(|r| {
                    let v = if quantile == "p50" {
                        r.latency_ms.p50
                    } else {
                        r.latency_ms.p99
                    };
                    format!("{:.1},{:.1}", x(r.throughput_rps), y(v))
                })
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
                points.join(" ")
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" fill="{color}">{name} (solid p50, dashed p99)</text>"#,
            left + 10.0,
            45.0 + 16.0 * k as f64
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn step(rate: f64, p50_ms: u64, p99_ms: u64) -> Report {
        let mut h = crate::report::new_histogram();
        h.record_n(p50_ms * 1000, 98).expect("in range");
        h.record_n(p99_ms * 1000, 2).expect("in range");
        let statuses = BTreeMap::from([("200".to_owned(), 100)]);
        Report::new("open", rate, Duration::from_secs(10), statuses, &h)
    }

    #[test]
    fn chart_draws_every_series_inside_the_canvas_on_a_log_axis() {
        let ours = vec![step(10.0, 30, 40), step(40.0, 60, 90)];
        let theirs = vec![step(10.0, 50, 70), step(20.0, 2000, 9000)];
        // What `loadtest chart` reads back from a sweep's JSON.
        let json = serde_json::to_string(&theirs).expect("serialise");
        let theirs: Vec<Report> = serde_json::from_str(&json).expect("round trip");
        let svg = svg("t", &[("ours", &ours), ("theirs", &theirs)]);
        assert!(svg.contains("ours (solid p50") && svg.contains("theirs (solid p50"));
        // Decades from 10 ms to 10 s are marked.
        for label in [">10<", ">100<", ">1000<", ">10000<"] {
            assert!(svg.contains(label), "missing gridline {label}");
        }
        for polyline in svg.split("points=\"").skip(1) {
            for point in polyline.split('"').next().expect("points").split(' ') {
                let (x, y) = point.split_once(',').expect("x,y");
                let (x, y): (f64, f64) = (x.parse().expect("x"), y.parse().expect("y"));
                assert!(
                    (0.0..=720.0).contains(&x) && (0.0..=420.0).contains(&y),
                    "{point}"
                );
            }
        }
    }
}
