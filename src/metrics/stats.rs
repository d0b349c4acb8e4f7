//! Rolling windows for `GET /stats`: throughput and latency percentiles per stage over the
//! last 10 s and 60 s, readable without Prometheus.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The longest window reported, in seconds.
const HORIZON_S: u64 = 60;
/// One slot per second of the horizon, plus the second being filled.
const SLOTS: usize = HORIZON_S as usize + 1;
/// Largest latency a histogram holds (µs); longer ones are counted at this value.
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept: percentiles are exact to within 1 %.
const SIGFIG: u8 = 2;

/// Per-image stage timings.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageTimings {
    pub queue: Duration,
    pub preprocess: Duration,
    pub inference: Duration,
    pub total: Duration,
}

/// Latency histograms of the four stages, in microseconds.
#[derive(Clone, Debug)]
struct Stages([Histogram<u32>; 4]);

impl Stages {
    fn new() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG).expect("valid histogram bounds");
        Self([histogram(), histogram(), histogram(), histogram()])
    }

    fn record(&mut self, t: StageTimings) {
        for (h, d) in self
            .0
            .iter_mut()
            .zip([t.queue, t.preprocess, t.inference, t.total])
        {
            h.saturating_record((d.as_micros() as u64).clamp(1, MAX_MICROS));
        }
    }

    fn add(&mut self, other: &Self) {
        for (h, o) in self.0.iter_mut().zip(&other.0) {
            // Same bounds on both sides: adding cannot fail.
            let _ = h.add(o);
        }
    }

    fn reset(&mut self) {
        self.0.iter_mut().for_each(Histogram::reset);
    }
}

/// What happened in one second.
#[derive(Clone, Debug)]
struct Slot {
    /// Seconds since start this slot holds; slots of older seconds are stale.
    second: u64,
    requests: u64,
    batches: u64,
    batch_images: u64,
    /// Batches by size: `batch_sizes[n]` batches of n images.
    batch_sizes: Vec<u64>,
    /// Failed requests by error type (a handful of distinct types: a list beats a map).
    errors: Vec<(String, u64)>,
    stages: Stages,
}

impl Slot {
    fn new() -> Self {
        Self {
            second: u64::MAX,
            requests: 0,
            batches: 0,
            batch_images: 0,
            batch_sizes: Vec::new(),
            errors: Vec::new(),
            stages: Stages::new(),
        }
    }

    fn clear(&mut self, second: u64) {
        self.second = second;
        self.requests = 0;
        self.batches = 0;
        self.batch_images = 0;
        self.batch_sizes.iter_mut().for_each(|n| *n = 0);
        self.errors.clear();
        self.stages.reset();
    }
}

/// A ring of per-second slots, each behind its own lock. Recording touches the current
/// second's slot (O(1)); a report adds up at most 60 slots' histograms (fixed size, no
/// sorting, no per-sample storage), holding one slot's lock at a time, so the inference and
/// request threads wait for a report only while it reads the current second's slot (four
/// histogram additions), never for the whole aggregation.
#[derive(Debug)]
pub(super) struct Windows {
    started: Instant,
    slots: Vec<Mutex<Slot>>,
    queue_depth: AtomicUsize,
    admission_in_use: AtomicI64,
    admission_capacity: AtomicUsize,
    ready: AtomicBool,
    total_images: AtomicU64,
    total_requests: AtomicU64,
    total_batches: AtomicU64,
}

impl Windows {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            slots: (0..SLOTS).map(|_| Mutex::new(Slot::new())).collect(),
            queue_depth: AtomicUsize::new(0),
            admission_in_use: AtomicI64::new(0),
            admission_capacity: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            total_images: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            total_batches: AtomicU64::new(0),
        }
    }

    /// Runs `update` on the current second's slot, clearing it first if it holds an old second.
    fn record(&self, update: impl FnOnce(&mut Slot)) {
        let second = self.started.elapsed().as_secs();
        let mut slot = self.slots[(second % SLOTS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.second != second {
            slot.clear(second);
        }
        update(&mut slot);
    }

    pub(super) fn image(&self, timings: StageTimings) {
        self.total_images.fetch_add(1, Ordering::Relaxed);
        self.record(|slot| slot.stages.record(timings));
    }

    /// A request answered; `error`: its error type when it failed.
    pub(super) fn request(&self, error: Option<&str>) {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        self.record(|slot| {
            slot.requests += 1;
            let Some(error) = error else { return };
            match slot.errors.iter_mut().find(|(e, _)| e == error) {
                Some((_, n)) => *n += 1,
                None => slot.errors.push((error.to_owned(), 1)),
            }
        });
    }

    pub(super) fn batch(&self, size: usize) {
        self.total_batches.fetch_add(1, Ordering::Relaxed);
        self.record(|slot| {
            slot.batches += 1;
            slot.batch_images += size as u64;
            if slot.batch_sizes.len() <= size {
                slot.batch_sizes.resize(size + 1, 0);
            }
            slot.batch_sizes[size] += 1;
        });
    }

    pub(super) fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.store(depth, Ordering::Relaxed);
    }

    pub(super) fn admission(&self, delta: i64) {
        self.admission_in_use.fetch_add(delta, Ordering::Relaxed);
    }

    pub(super) fn set_admission_capacity(&self, capacity: usize) {
        self.admission_capacity.store(capacity, Ordering::Relaxed);
    }

    pub(super) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub(super) fn report(&self) -> StatsReport {
        let uptime = self.started.elapsed();
        let now = uptime.as_secs();
        let mut short = Window::new(10);
        let mut long = Window::new(HORIZON_S);
        for slot in &self.slots {
            let slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if slot.second > now {
                continue;
            }
            let age = now - slot.second;
            for window in [&mut short, &mut long] {
                if age < window.seconds {
                    window.add(&slot);
                }
            }
        }
        StatsReport {
            uptime_seconds: uptime.as_secs_f64(),
            ready: self.ready.load(Ordering::Relaxed),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            admission: Admission {
                in_use: self.admission_in_use.load(Ordering::Relaxed).max(0) as u64,
                capacity: self.admission_capacity.load(Ordering::Relaxed),
            },
            totals: Totals {
                images: self.total_images.load(Ordering::Relaxed),
                requests: self.total_requests.load(Ordering::Relaxed),
                batches: self.total_batches.load(Ordering::Relaxed),
            },
            last_10s: short.report(uptime),
            last_60s: long.report(uptime),
        }
    }
}

/// The sum of the slots inside one window.
struct Window {
    seconds: u64,
    requests: u64,
    batches: u64,
    batch_images: u64,
    batch_sizes: BTreeMap<usize, u64>,
    errors: BTreeMap<String, u64>,
    stages: Stages,
}

impl Window {
    fn new(seconds: u64) -> Self {
        Self {
            seconds,
            requests: 0,
            batches: 0,
            batch_images: 0,
            batch_sizes: BTreeMap::new(),
            errors: BTreeMap::new(),
            stages: Stages::new(),
        }
    }

    fn add(&mut self, slot: &Slot) {
        self.requests += slot.requests;
        self.batches += slot.batches;
        self.batch_images += slot.batch_images;
        for (size, &n) in slot.batch_sizes.iter().enumerate().filter(|(_, &n)| n > 0) {
            *self.batch_sizes.entry(size).or_default() += n;
        }
        for (error, n) in &slot.errors {
            *self.errors.entry(error.clone()).or_default() += n;
        }
        self.stages.add(&slot.stages);
    }

    fn report(&self, uptime: Duration) -> WindowReport {
        // Rates over the window, or over the uptime while it is shorter. The window covers
        // the current, partly elapsed second plus `seconds - 1` whole ones.
        let span = Duration::from_secs(self.seconds - 1)
            + Duration::from_secs_f64(uptime.as_secs_f64().fract());
        let effective = span.min(uptime).as_secs_f64().max(1e-3);
        let [queue, preprocess, inference, total] = &self.stages.0;
        WindowReport {
            seconds: self.seconds,
            images_per_second: total.len() as f64 / effective,
            requests_per_second: self.requests as f64 / effective,
            mean_batch_size: if self.batches == 0 {
                0.0
            } else {
                self.batch_images as f64 / self.batches as f64
            },
            batch_sizes: self.batch_sizes.clone(),
            errors: self.errors.clone(),
            latency_ms: StageReport {
                queue: Percentiles::of(queue),
                preprocess: Percentiles::of(preprocess),
                inference: Percentiles::of(inference),
                total: Percentiles::of(total),
            },
        }
    }
}

/// `GET /stats`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    pub uptime_seconds: f64,
    /// Whether `/readyz` says ready.
    pub ready: bool,
    /// Images waiting in the batching queue.
    pub queue_depth: usize,
    pub admission: Admission,
    pub totals: Totals,
    pub last_10s: WindowReport,
    pub last_60s: WindowReport,
}

/// Images admitted (being preprocessed, queued or inferred) against `--queue-capacity`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Admission {
    pub in_use: u64,
    pub capacity: usize,
}

/// Counts since start: images classified, API requests answered (HTTP and gRPC; probes,
/// scrapes, `/stats` polls and the UI's files are not counted), batches run.
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
    /// Batches run, by their number of images (`{"1": 40, "4": 3}`).
    pub batch_sizes: BTreeMap<usize, u64>,
    /// Failed requests by error type: the HTTP `error_type`, or the gRPC status name.
    pub errors: BTreeMap<String, u64>,
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
    /// Percentiles (ms) of a histogram of microseconds, within 1 % (two significant digits).
    fn of(histogram: &Histogram<u32>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1e3;
        Self {
            count: histogram.len() as usize,
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(ms: u64) -> StageTimings {
        let d = Duration::from_millis(ms);
        StageTimings {
            queue: d,
            preprocess: d,
            inference: d,
            total: d,
        }
    }

    #[test]
    fn percentiles_are_within_one_percent_and_ordered() {
        let windows = Windows::new();
        for ms in 1..=100 {
            windows.image(timings(ms));
        }
        let report = windows.report();
        let p = &report.last_10s.latency_ms.total;
        assert_eq!(p.count, 100);
        for (got, want) in [(p.p50, 50.0), (p.p90, 90.0), (p.p99, 99.0), (p.max, 100.0)] {
            assert!((got - want).abs() <= want * 0.01, "{got} vs {want}");
        }
        assert_eq!(report.last_60s.latency_ms.queue.count, 100);
        assert_eq!(Percentiles::of(&Stages::new().0[0]).count, 0);
    }

    #[test]
    fn recording_does_not_wait_for_a_report_reading_other_seconds() {
        let windows = std::sync::Arc::new(Windows::new());
        // A report in progress, holding the slot of a second that is not the current one.
        let current = (windows.started.elapsed().as_secs() % SLOTS as u64) as usize;
        let held = windows.slots[(current + SLOTS / 2) % SLOTS]
            .lock()
            .expect("lock");
        let (done, recorded) = std::sync::mpsc::channel();
        let recorder = windows.clone();
        std::thread::spawn(move || {
            recorder.image(timings(5));
            recorder.batch(1);
            let _ = done.send(());
        });
        assert!(
            recorded.recv_timeout(Duration::from_secs(5)).is_ok(),
            "recording waited for the report's lock"
        );
        drop(held);
    }

    #[test]
    fn a_slot_from_an_old_second_is_cleared_before_reuse() {
        let windows = Windows::new();
        {
            let mut slot = windows.slots[0].lock().expect("lock");
            // Pretend slot 0 was last written 61 seconds ago with a huge latency.
            slot.second = 0;
            slot.stages.record(timings(5000));
            slot.requests = 7;
        }
        let started = windows.started;
        let stale = Windows {
            started: started - Duration::from_secs(SLOTS as u64),
            ..windows
        };
        stale.image(timings(3));
        let report = stale.report();
        assert_eq!(report.last_60s.latency_ms.total.count, 1);
        assert!(report.last_60s.latency_ms.total.max < 4.0);
        assert_eq!(report.last_60s.requests_per_second, 0.0);
    }
}
