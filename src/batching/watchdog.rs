//! The inference watchdog: supervision catches a part that dies, this catches one that hangs.
//! Each inference thread marks when its current run started; a task looks every
//! [`Watchdog::tick`] and, when a run has gone on longer than the bound, reports the pipeline
//! failed: `/readyz` 503, every waiting request 500, the process exits non-zero (as for a
//! dead part, `crate::server`), so the orchestrator replaces it.
//!
//! The bound comes from the measured warm-up: [`FACTOR`] times what a run of the largest batch
//! should take (the slowest session's warm-up run, per image, times the maximum batch size),
//! and never less than [`FLOOR`], so a slow neighbour on a shared machine is not a hang.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::supervise::Supervisor;

/// A run may take this many times the warm-up estimate.
pub const FACTOR: u32 = 20;
/// The least bound, whatever the warm-up measured.
pub const FLOOR: Duration = crate::supervise::WATCHDOG_FLOOR;

/// When each inference thread's current run started (ms since `epoch`, plus one; 0: idle).
#[derive(Debug)]
pub struct Watchdog {
    epoch: Instant,
    running: Vec<AtomicU64>,
    bound: Duration,
}

impl Watchdog {
    /// For `threads` inference threads, with the bound derived from `warm_up_per_image` (the
    /// slowest measured warm-up run divided by its batch size).
    pub fn new(threads: usize, warm_up_per_image: Duration, max_batch: usize) -> Self {
        let estimate = warm_up_per_image.saturating_mul(max_batch as u32);
        Self {
            epoch: Instant::now(),
            running: (0..threads).map(|_| AtomicU64::new(0)).collect(),
            bound: estimate.saturating_mul(FACTOR).max(FLOOR),
        }
    }

    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Thread `thread` starts a run; [`RunMark`] ends it when dropped.
    pub fn start(&self, thread: usize) -> RunMark<'_> {
        let since = self.epoch.elapsed().as_millis() as u64 + 1;
        self.running[thread].store(since, Ordering::SeqCst);
        RunMark {
            slot: &self.running[thread],
        }
    }

    /// The longest run in progress: which thread, and for how long.
    fn longest(&self) -> Option<(usize, Duration)> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.running
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match slot.load(Ordering::SeqCst) {
                0 => None,
                since => Some((i, Duration::from_millis(now.saturating_sub(since)))),
            })
            .max_by_key(|&(_, running)| running)
    }

    fn tick(&self) -> Duration {
        (self.bound / 10).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }

    /// Watches until a run passes the bound, then reports the failure and returns.
    pub async fn watch(self: Arc<Self>, supervisor: Supervisor) {
        loop {
            tokio::time::sleep(self.tick()).await;
            if let Some((thread, running)) = self.longest().filter(|&(_, r)| r > self.bound) {
                supervisor.fail(format!(
                    "inference thread {thread} has been running one batch for {:.1} s, over the \
                     watchdog bound of {:.1} s ({FACTOR} x the warm-up estimate, at least {} s): \
                     the engine is hung",
                    running.as_secs_f64(),
                    self.bound.as_secs_f64(),
                    FLOOR.as_secs()
                ));
                return;
            }
        }
    }
}

/// A run in progress; dropping it marks the thread idle.
#[derive(Debug)]
pub struct RunMark<'a> {
    slot: &'a AtomicU64,
}

impl Drop for RunMark<'_> {
    fn drop(&mut self) {
        self.slot.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_follows_the_warm_up_with_a_floor() {
        let slow = Watchdog::new(1, Duration::from_millis(50), 8);
        assert_eq!(slow.bound(), Duration::from_secs(8));
        let fast = Watchdog::new(1, Duration::from_millis(1), 8);
        assert_eq!(fast.bound(), FLOOR);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_the_bound_fails_the_pipeline() {
        let dog = Arc::new(Watchdog::new(2, Duration::from_millis(1), 1));
        let supervisor = Supervisor::default();
        let watching = tokio::spawn(dog.clone().watch(supervisor.clone()));
        {
            let _short = dog.start(0);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(supervisor.failure(), None, "a short run is fine");
        let _hung = dog.start(1);
        // Paused time does not move `Instant` in `longest`; wait in real time past the floor.
        tokio::time::resume();
        tokio::time::sleep(FLOOR + Duration::from_millis(700)).await;
        watching.await.expect("watchdog");
        let cause = supervisor.failure().expect("failed");
        assert!(
            cause.contains("inference thread 1") && cause.contains("hung"),
            "{cause}"
        );
    }
}
