//! Keeping an idle model warm (`--keep-warm-ms`): after a pause in traffic the driver sends a
//! run of one blank image down the lane a lone image takes, so the next real image does not
//! pay for memory that went cold meanwhile.
//!
//! Why: on some virtual machines, memory that a process leaves untouched for a fraction of a
//! second is slow to touch again (the host reclaims or ages its mappings; the guest sees no
//! swap). Measured on a 2-core Xeon VM (docs/anatomy.md, "The lowest step"): raw ONNX Runtime,
//! A0, 2 threads, 11-16 ms back to back, 76-92 ms after one second idle; a 32 MB array read in
//! 3 ms warm and 8-31 ms after one second, but 3.0-4.7 ms when one value per page was read every
//! 50 ms.
//! Spinning the CPU meanwhile did not help, so it is the memory, not a sleeping thread; the
//! only way to touch ONNX Runtime's own memory is to run the model. Warm runs every 100 ms
//! brought a run after a pause back to 19-20 ms. They cost CPU (one batch-1 run per period
//! while idle), so they are off by default, stop `horizon` after the last real batch, never
//! start before the first one, and are skipped while any session is busy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `--keep-warm-ms` / `--keep-warm-for-s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeepWarm {
    /// Idle time after which a warm run is due (since the last batch, real or warm).
    pub period: Duration,
    /// How long after the last real batch warm runs go on.
    pub horizon: Duration,
}

/// When the last run ended, written by the inference threads and read by the driver, so a
/// model counts as idle from the end of its last run, not from when that run's batch was cut
/// (a batch of 8 on one thread runs longer than a period).
#[derive(Debug)]
pub(crate) struct RunEnds {
    base: Instant,
    /// Microseconds from `base` to the end of the latest run; 0 before the first.
    latest_us: AtomicU64,
}

impl RunEnds {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            latest_us: AtomicU64::new(0),
        }
    }

    /// A run (real or warm) ended now.
    pub(super) fn ended(&self) {
        let us = u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latest_us.fetch_max(us.max(1), Ordering::Relaxed);
    }

    fn latest(&self) -> Option<Instant> {
        match self.latest_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.base + Duration::from_micros(us)),
        }
    }
}

/// The driver's record of when it last cut a real batch and a warm run.
#[derive(Debug)]
pub(super) struct Warmth {
    policy: Option<KeepWarm>,
    last_real: Option<Instant>,
    last_warm: Option<Instant>,
    runs: std::sync::Arc<RunEnds>,
}

impl Warmth {
    pub(super) fn new(policy: Option<KeepWarm>, runs: std::sync::Arc<RunEnds>) -> Self {
        Self {
            policy,
            last_real: None,
            last_warm: None,
            runs,
        }
    }

    /// A batch of real images was cut at `at`.
    pub(super) fn real(&mut self, at: Instant) {
        self.last_real = Some(at);
    }

    /// A warm run was cut (or skipped because a session was busy) at `at`.
    pub(super) fn warm(&mut self, at: Instant) {
        self.last_warm = Some(at);
    }

    /// When the next warm run is due (a period after the latest cut or run end): `None` when
    /// keeping warm is off, before the first real batch, and once the next one would fall
    /// past the horizon.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let policy = self.policy?;
        let real = self.last_real?;
        let latest = [self.last_warm, self.runs.latest()]
            .into_iter()
            .flatten()
            .fold(real, Instant::max);
        let due = latest + policy.period;
        (due <= real + policy.horizon).then_some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn warm_runs_follow_a_real_batch_every_period_until_the_horizon() {
        let policy = KeepWarm {
            period: 100 * MS,
            horizon: 250 * MS,
        };
        let runs = std::sync::Arc::new(RunEnds::new());
        let t0 = Instant::now();
        let mut warmth = Warmth::new(Some(policy), runs.clone());
        assert_eq!(warmth.next_due(), None, "warm before any traffic");
        warmth.real(t0);
        assert_eq!(warmth.next_due(), Some(t0 + 100 * MS));
        warmth.warm(t0 + 100 * MS);
        assert_eq!(warmth.next_due(), Some(t0 + 200 * MS));
        warmth.warm(t0 + 200 * MS);
        assert_eq!(warmth.next_due(), None, "a warm run past the horizon");
        warmth.real(t0 + 230 * MS);
        assert_eq!(
            warmth.next_due(),
            Some(t0 + 330 * MS),
            "a real batch restarts the period and the horizon"
        );
        runs.ended();
        assert!(
            warmth.next_due().is_some_and(|due| due >= t0 + 100 * MS),
            "a period after the end of the latest run"
        );
        assert_eq!(Warmth::new(None, runs).next_due(), None);
    }
}
