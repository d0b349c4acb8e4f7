//! Rolling windows for `GET /stats`: throughput and latency percentiles per stage over the
//! last 10 s and 60 s, readable without Prometheus.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Samples older than this are dropped.
const HORIZON: Duration = Duration::from_secs(60);
/// At most this many samples are kept per series (bounds memory under extreme load).
const MAX_SAMPLES: usize = 200_000;

/// Per-image stage timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimings {
    pub queue: Duration,
    pub preprocess: Duration,
    pub inference: Duration,
    pub total: Duration,
}

#[derive(Debug)]
pub(super) struct Windows {
    started: Instant,
    images: Mutex<VecDeque<(Instant, StageTimings)>>,
    requests: Mutex<VecDeque<(Instant, ())>>,
    batches: Mutex<VecDeque<(Instant, usize)>>,
    queue_depth: AtomicUsize,
    total_images: AtomicU64,
    total_requests: AtomicU64,
    total_batches: AtomicU64,
}

fn push<T>(series: &Mutex<VecDeque<(Instant, T)>>, now: Instant, value: T) {
    let mut series = series.lock().unwrap_or_else(|p| p.into_inner());
    while series
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > HORIZON)
        || series.len() >= MAX_SAMPLES
    {
        series.pop_front();
    }
    series.push_back((now, value));
}

impl Windows {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            images: Mutex::default(),
            requests: Mutex::default(),
            batches: Mutex::default(),
            queue_depth: AtomicUsize::new(0),
            total_images: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            total_batches: AtomicU64::new(0),
        }
    }

    pub(super) fn image(&self, timings: StageTimings) {
        self.total_images.fetch_add(1, Ordering::Relaxed);
        push(&self.images, Instant::now(), timings);
    }

    pub(super) fn request(&self) {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        push(&self.requests, Instant::now(), ());
    }

    pub(super) fn batch(&self, size: usize) {
        self.total_batches.fetch_add(1, Ordering::Relaxed);
        push(&self.batches, Instant::now(), size);
    }

    pub(super) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    pub(super) fn report(&self) -> StatsReport {
        let now = Instant::now();
        let images = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let batches = self
            .batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let uptime = now.duration_since(self.started);
        let window = |secs: u64| {
            let span = Duration::from_secs(secs);
            // Rates over the window, or over the uptime while it is shorter.
            let effective = span.min(uptime).as_secs_f64().max(1e-3);
            let recent: Vec<StageTimings> = images
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= span)
                .map(|(_, s)| *s)
                .collect();
            let request_count = requests
                .iter()
                .filter(|(t, ())| now.duration_since(*t) <= span)
                .count();
            let sizes: Vec<usize> = batches
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= span)
                .map(|(_, n)| *n)
                .collect();
            let stage = |pick: fn(&StageTimings) -> Duration| {
                Percentiles::of(recent.iter().map(|s| pick(s).as_secs_f64() * 1e3).collect())
            };
            WindowReport {
                seconds: secs,
                images_per_second: recent.len() as f64 / effective,
                requests_per_second: request_count as f64 / effective,
                mean_batch_size: if sizes.is_empty() {
                    0.0
                } else {
                    sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
                },
                latency_ms: StageReport {
                    queue: stage(|s| s.queue),
                    preprocess: stage(|s| s.preprocess),
                    inference: stage(|s| s.inference),
                    total: stage(|s| s.total),
                },
            }
        };
        StatsReport {
            uptime_seconds: uptime.as_secs_f64(),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            totals: Totals {
                images: self.total_images.load(Ordering::Relaxed),
                requests: self.total_requests.load(Ordering::Relaxed),
                batches: self.total_batches.load(Ordering::Relaxed),
            },
            last_10s: window(10),
            last_60s: window(60),
        }
    }
}

/// `GET /stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    pub uptime_seconds: f64,
    pub queue_depth: usize,
    pub totals: Totals,
    pub last_10s: WindowReport,
    pub last_60s: WindowReport,
}

/// Counts since start: images classified, HTTP requests answered, batches run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub images: u64,
    pub requests: u64,
    pub batches: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowReport {
    pub seconds: u64,
    pub images_per_second: f64,
    pub requests_per_second: f64,
    pub mean_batch_size: f64,
    pub latency_ms: StageReport,
}

/// Latency percentiles (ms) of successfully classified images, per stage.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StageReport {
    pub queue: Percentiles,
    pub preprocess: Percentiles,
    pub inference: Percentiles,
    pub total: Percentiles,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |p: f64| values[((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Self {
            count: values.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_ordered() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}
