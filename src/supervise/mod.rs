//! Supervision. Every long-lived part of the pipeline (the batching driver, the inference
//! threads, the preprocessing workers) holds a [`Watch`]; when it dies (a panic anywhere in it)
//! the watch reports the cause here. The server then answers `/readyz` 503, fails every request
//! still waiting with 500 at once, and exits non-zero so the orchestrator restarts the process
//! (`server::App::run`).
//!
//! Fault points ([`faults`]) let tests make a part die where it would in production (a panic
//! inside its loop, a hung engine run). They exist only in test builds (the `fault-injection`
//! feature, which only the tests' dev-dependency turns on): a release binary has no way to arm
//! them and no check at the points.

#[cfg(any(test, feature = "fault-injection"))]
mod faults;

use std::sync::Arc;

#[cfg(any(test, feature = "fault-injection"))]
pub use faults::FaultPoint;

use tokio::sync::watch;

/// The least time a batch may run before the inference watchdog declares the engine hung,
/// whatever the warm-up measured (see `crate::batching::watchdog`).
pub const WATCHDOG_FLOOR: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug)]
struct Inner {
    failure: watch::Sender<Option<String>>,
    #[cfg(any(test, feature = "fault-injection"))]
    faults: faults::Armed,
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
                #[cfg(any(test, feature = "fault-injection"))]
                faults: faults::Armed::default(),
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
