//! Throughput-latency curve: open-loop steps of rising arrival rate, up to and past
//! saturation, written as JSON and as an SVG chart.

use std::sync::Arc;

use plotters::prelude::*;

use crate::run::{run, Mode, RunConfig};
use crate::{Bodies, Report};

/// Runs one open-loop step per rate, spaced as `base`'s open mode says.
pub async fn sweep(
    base: &RunConfig,
    rates: &[f64],
    bodies: Arc<Bodies>,
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    let arrivals = match base.mode {
        Mode::Open { arrivals, .. } => arrivals,
        Mode::Closed { .. } => anyhow::bail!("a sweep is open loop"),
    };
    for &rate in rates {
        let config = RunConfig {
            mode: Mode::Open { rate, arrivals },
            ..base.clone()
        };
        let report = run(&config, bodies.clone()).await?;
        eprintln!("{}", report.summary());
        reports.push(report);
    }
    Ok(reports)
}

/// p50 and p99 latency against the offered rate, one colour per series (several runs side by
/// side), drawn with `plotters`: the x axis is the arrival rate each step offered (ticks in
/// requests/s), so past saturation the curve keeps going right and up instead of folding back
/// (achieved throughput stops growing there; it is in the JSON). Latency is on a log scale, so
/// milliseconds at low load and seconds past saturation stay readable side by side.
pub fn svg(title: &str, series: &[(&str, &[Report])]) -> String {
    let reports = || series.iter().flat_map(|(_, r)| r.iter());
    let max_x = reports().map(|r| r.offered).fold(1.0, f64::max) * 1.05;
    let latencies = || reports().flat_map(|r| [r.latency_ms.p50, r.latency_ms.p99]);
    let lo = 10f64.powf(
        latencies()
            .fold(f64::MAX, f64::min)
            .max(0.1)
            .log10()
            .floor(),
    );
    let hi = 10f64
        .powf(latencies().fold(1.0, f64::max).log10().ceil())
        .max(lo * 10.0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 440)).into_drawing_area();
        // Drawing into a String cannot fail; a plotters error here is a bug in this function.
        draw(&root, title, series, max_x, lo..hi).expect("drawing the chart");
        root.present().expect("writing the SVG");
    }
    out.push('\n');
    out
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    series: &[(&str, &[Report])],
    max_x: f64,
    latency: std::ops::Range<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, latency.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered rate (requests/s, open loop)")
        .y_desc("latency (ms, log scale)")
        .x_labels(12)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v}"))
        .draw()?;
    for (k, (name, reports)) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut steps: Vec<&Report> = reports.iter().collect();
        steps.sort_by(|a, b| a.offered.total_cmp(&b.offered));
        let p50: Vec<(f64, f64)> = steps
            .iter()
            .map(|r| (r.offered, r.latency_ms.p50))
            .collect();
        let p99: Vec<(f64, f64)> = steps
            .iter()
            .map(|r| (r.offered, r.latency_ms.p99))
            .collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(p50.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        chart
            .draw_series(DashedLineSeries::new(
                p99.clone(),
                6,
                4,
                color.stroke_width(1),
            ))?
            .label(format!("{name} p99 (dashed)"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(1)));
        chart.draw_series(
            p99.iter()
                .map(|&p| TriangleMarker::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
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
        Report::new(
            "open",
            Some(crate::Arrivals::Even),
            rate,
            Duration::from_secs(10),
            statuses,
            &h,
        )
    }

    #[test]
    fn chart_has_rate_ticks_and_log_latency_and_every_series() {
        let ours = vec![step(10.0, 30, 40), step(40.0, 60, 90)];
        let theirs = vec![step(10.0, 50, 70), step(20.0, 2000, 9000)];
        // What `loadtest chart` reads back from a sweep's JSON.
        let json = serde_json::to_string(&theirs).expect("serialise");
        let theirs: Vec<Report> = serde_json::from_str(&json).expect("round trip");
        let svg = svg("t", &[("ours", &ours), ("theirs", &theirs)]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect();
        for label in [
            "ours p50",
            "ours p99 (dashed)",
            "theirs p50",
            "offered rate (requests/s, open loop)",
        ] {
            assert!(texts.contains(&label), "missing {label} in {texts:?}");
        }
        // Rate ticks on the x axis (0 to 42 req/s) and latency decades on the y axis.
        for tick in ["0", "10", "20", "40", "100", "1000", "10000"] {
            assert!(texts.contains(&tick), "missing tick {tick} in {texts:?}");
        }
        // One marker per step and quantile: 4 steps x (p50 circle + p99 triangle).
        assert_eq!(svg.matches("<circle").count(), 4, "p50 markers");
    }
}
