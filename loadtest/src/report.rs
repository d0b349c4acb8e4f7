//! Results of a run: throughput, latency percentiles from an HDR histogram, errors by status.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::arrivals::Arrivals;

/// Latencies are recorded in microseconds, 1 us .. 10 min, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub mode: String,
    /// How an open loop spaced its arrivals; absent for closed loops (and older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<Arrivals>,
    /// Target arrival rate (open loop) or concurrency (closed loop).
    pub offered: f64,
    pub duration_s: f64,
    pub sent: u64,
    /// Answered with 200.
    pub ok: u64,
    /// Answers by HTTP status; `error` for connection failures.
    pub statuses: BTreeMap<String, u64>,
    /// Successful answers per second.
    pub throughput_rps: f64,
    /// Latency of successful answers (ms).
    pub latency_ms: Latency,
    /// When the run began (ms since the Unix epoch), to line its answers up with other events.
    #[serde(default)]
    pub started_unix_ms: u64,
    /// Every answer, when the run kept them (`--timeline`); not part of the JSON report.
    #[serde(skip)]
    pub timeline: Vec<Answer>,
}

/// One answer of a run that keeps its timeline.
#[derive(Clone, Debug)]
pub struct Answer {
    /// When the request was meant to be sent, ms after the run began.
    pub sent_ms: f64,
    /// From then to the whole answer (ms).
    pub latency_ms: f64,
    /// HTTP status, or `timeout` / `error`.
    pub status: String,
    /// The model version that answered (`/classify`'s `model.version`), when the answer says.
    pub version: Option<u64>,
}

impl Answer {
    /// The CSV of a timeline, after a `# started_unix_ms=N` line.
    pub fn csv(started_unix_ms: u64, answers: &[Answer]) -> String {
        let mut out =
            format!("# started_unix_ms={started_unix_ms}\nsent_ms,latency_ms,status,version\n");
        for a in answers {
            let version = a.version.map(|v| v.to_string()).unwrap_or_default();
            out += &format!(
                "{:.3},{:.3},{},{version}\n",
                a.sent_ms, a.latency_ms, a.status
            );
        }
        out
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1e3,
        }
    }
}

impl Report {
    pub fn new(
        mode: &str,
        arrivals: Option<Arrivals>,
        offered: f64,
        elapsed: Duration,
        statuses: BTreeMap<String, u64>,
        latencies: &Histogram<u64>,
    ) -> Self {
        let ok = statuses.get("200").copied().unwrap_or(0);
        Self {
            mode: mode.to_owned(),
            arrivals,
            offered,
            duration_s: elapsed.as_secs_f64(),
            sent: statuses.values().sum(),
            ok,
            statuses,
            throughput_rps: ok as f64 / elapsed.as_secs_f64().max(1e-9),
            latency_ms: Latency::from_histogram(latencies),
            started_unix_ms: 0,
            timeline: Vec::new(),
        }
    }

    pub fn summary(&self) -> String {
        let l = &self.latency_ms;
        let mode = match self.arrivals {
            Some(Arrivals::Poisson { seed }) => format!("{} (poisson, seed {seed})", self.mode),
            Some(Arrivals::Even) => format!("{} (even)", self.mode),
            None => self.mode.clone(),
        };
        format!(
            "{} offered {:.1}: {} sent, {} ok ({:.1}/s) in {:.1}s | p50 {:.1} ms p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | statuses {:?}",
            mode, self.offered, self.sent, self.ok, self.throughput_rps, self.duration_s, l.p50, l.p90, l.p99, l.p999, l.max, self.statuses
        )
    }
}
