//! Test-only fault points: where a test makes the pipeline fail as it would in production.
//! Compiled only for tests (`cfg(test)`, or the `fault-injection` feature the integration
//! tests' dev-dependency turns on); release builds have neither [`Supervisor::inject`] nor the
//! checks at the points.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Supervisor;

/// Where a test can make the pipeline fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// The batching driver task, when it next wakes.
    Driver,
    /// An inference thread, before it next runs a batch.
    Inference,
    /// An inference thread's next batch hangs (as an engine run that never returns would)
    /// until the pipeline is declared failed; what the watchdog is for.
    InferenceHang,
}

/// Which points are armed; each fires once.
#[derive(Debug, Default)]
pub(super) struct Armed {
    driver: AtomicBool,
    inference: AtomicBool,
    hang: AtomicBool,
}

impl Armed {
    fn flag(&self, point: FaultPoint) -> &AtomicBool {
        match point {
            FaultPoint::Driver => &self.driver,
            FaultPoint::Inference => &self.inference,
            FaultPoint::InferenceHang => &self.hang,
        }
    }
}

impl Supervisor {
    /// The part at `point` fails the next time it passes there.
    pub fn inject(&self, point: FaultPoint) {
        self.inner.faults.flag(point).store(true, Ordering::SeqCst);
    }

    /// Panics when a fault was injected at `point`; for [`FaultPoint::InferenceHang`], blocks
    /// until the pipeline has failed instead.
    pub(crate) fn fault_point(&self, point: FaultPoint) {
        if !self.inner.faults.flag(point).swap(false, Ordering::SeqCst) {
            return;
        }
        if point == FaultPoint::InferenceHang {
            while self.failure().is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return;
        }
        panic!("fault injected at {point:?}");
    }
}
