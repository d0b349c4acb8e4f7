//! Supervision. Every long-lived part of the pipeline (the batching driver, the inference
//! threads, the preprocessing workers) holds a [`Watch`]; when it dies (a panic anywhere in it)
//! the watch reports the cause here. The server then answers `/readyz` 503, fails every request
//! still waiting with 500 at once, and exits non-zero so the orchestrator restarts the process
//! (`server::App::run`).
//!
//! Fault points let tests make a part die where it would in production (a panic inside its
//! loop); they are armed only through [`Supervisor::inject`], never by a flag or setting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// The least time a batch may run before the inference watchdog declares the engine hung,
/// whatever the warm-up measured (see `crate::batching::watchdog`).
pub const WATCHDOG_FLOOR: std::time::Duration = std::time::Duration::from_secs(3);

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

#[derive(Debug)]
struct Inner {
    failure: watch::Sender<Option<String>>,
    driver_fault: AtomicBool,
    inference_fault: AtomicBool,
    hang_fault: AtomicBool,
}

/// Shared by the parts it watches and by the server; cloning is cheap.
#[derive(Clone, Debug)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                failure: watch::Sender::new(None),
                driver_fault: AtomicBool::new(false),
                inference_fault: AtomicBool::new(false),
                hang_fault: AtomicBool::new(false),
            }),
        }
    }
}

impl Supervisor {
    /// Records that the pipeline failed; the first cause is kept.
    pub fn fail(&self, cause: impl Into<String>) {
        let cause = cause.into();
        self.inner.failure.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            tracing::error!(cause = %cause, "pipeline failure");
            *current = Some(cause);
            true
        });
    }

    /// The failure's cause, once there is one.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.borrow().clone()
    }

    /// Resolves with the cause when the pipeline fails.
    pub async fn failed(&self) -> String {
        let mut rx = self.inner.failure.subscribe();
        let cause = rx.wait_for(Option::is_some).await.map(|c| c.clone());
        cause.ok().flatten().unwrap_or_default()
    }

    /// A watch for one part of the pipeline, named in the cause.
    pub fn watch(&self, part: impl Into<String>) -> Watch {
        Watch {
            supervisor: self.clone(),
            part: part.into(),
        }
    }

    /// Test hook: the part at `point` panics the next time it passes there.
    #[doc(hidden)]
    pub fn inject(&self, point: FaultPoint) {
        self.flag(point).store(true, Ordering::SeqCst);
    }

    /// Panics when a fault was injected at `point` (one relaxed load otherwise); for
    /// [`FaultPoint::InferenceHang`], blocks until the pipeline has failed instead.
    pub(crate) fn fault_point(&self, point: FaultPoint) {
        if !self.flag(point).swap(false, Ordering::SeqCst) {
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

    fn flag(&self, point: FaultPoint) -> &AtomicBool {
        match point {
            FaultPoint::Driver => &self.inner.driver_fault,
            FaultPoint::Inference => &self.inner.inference_fault,
            FaultPoint::InferenceHang => &self.inner.hang_fault,
        }
    }
}

/// Reports its part's death to the supervisor when dropped while panicking (a thread or task
/// unwinding), or when [`Watch::ended`] says the part stopped without being asked to.
#[derive(Debug)]
pub struct Watch {
    supervisor: Supervisor,
    part: String,
}

impl Watch {
    /// The part stopped on its own (not by shutdown): that is a failure too.
    pub fn ended(&self, why: &str) {
        self.supervisor
            .fail(format!("{} stopped: {why}", self.part));
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.supervisor.fail(format!("{} panicked", self.part));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_part_reports_its_death_once() {
        let supervisor = Supervisor::default();
        let watched = supervisor.clone();
        let died = std::thread::spawn(move || {
            let _watch = watched.watch("worker-7");
            watched.fault_point(FaultPoint::Inference);
            watched.inject(FaultPoint::Inference);
            watched.fault_point(FaultPoint::Inference);
        })
        .join();
        assert!(died.is_err());
        assert_eq!(supervisor.failure().as_deref(), Some("worker-7 panicked"));
        supervisor.fail("later cause");
        assert_eq!(supervisor.failure().as_deref(), Some("worker-7 panicked"));
    }

    #[test]
    fn a_part_that_ends_normally_reports_nothing() {
        let supervisor = Supervisor::default();
        drop(supervisor.watch("worker"));
        assert_eq!(supervisor.failure(), None);
    }
}
