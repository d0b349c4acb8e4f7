//! Dynamic batching: the pipeline submits one [`Job`] per image; a driver task cuts batches
//! from the [`queue::Queue`] whenever a session can take one and hands them to the inference
//! threads ([`Workers`]), which build the batch tensor, run it and answer each job.
//!
//! ```text
//! pipeline --submit--> Mutex<Queue> --driver task (permit: a free session)--> crossbeam channel
//!                                                     --> inference threads (tensor, run, reply)
//! ```
//!
//! Permits: one per session. While every session is busy the next batch forms in the queue,
//! and it leaves the moment a session frees up, with everything that queued meanwhile (up to
//! the maximum batch size), shared with any other session that is idle too (two images for
//! two idle sessions: one each, side by side, not a batch of two on one core while the other
//! waits). Cutting it earlier, as soon as one job is there, would commit a
//! batch of one under moderate load and leave the rest of the run's arrivals waiting a whole
//! extra run (measured: p99 at 80 % load 9 x p50 that way, see docs/benchmarks.md).
//! Admission ([`crate::admission`]): an image takes one of `capacity` places on arrival, before
//! preprocessing, and its waiter holds the place; a waiter that goes (client gone, deadline)
//! takes its job out of the queue ([`Batcher::prune`]), so the queue never holds more than
//! `capacity` live jobs and never refuses one.

mod job;
pub mod queue;
mod runner;
pub mod watchdog;

pub use job::{Batch, Job, Prediction};
pub use runner::Workers;
pub use watchdog::Watchdog;

/// Where the driver sends batches. Each narrow session takes one permit (its share of the
/// cores); the wide session, when there is one, runs with every core and takes every permit,
/// and gets a batch only when it finds all the narrow sessions idle and nothing else queued:
/// a lone image runs on all the cores, a busy server keeps the throughput layout.
#[derive(Debug)]
pub struct Lanes {
    pub narrow: crossbeam_channel::Sender<Batch>,
    pub wide: Option<crossbeam_channel::Sender<Batch>>,
}

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, Semaphore};

use crate::admission::{Admission, Admissions, QueueFull};
use crate::inference::InferenceError;
use crate::metrics::Metrics;
use crate::supervise::{FaultPoint, Supervisor};
use queue::{Pending, Poll, Queue, QueueConfig};

impl Pending for Job {
    fn enqueued(&self) -> Instant {
        self.enqueued
    }
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn is_abandoned(&self) -> bool {
        Job::is_abandoned(self)
    }
}

/// Cheap handle handlers use to submit jobs. Closing it (on shutdown, after the HTTP server
/// has drained) lets the driver finish the queue and stop.
#[derive(Clone, Debug)]
pub struct Batcher {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Jobs waiting for a batch. Held only for push / poll, never across an await.
    queue: Mutex<Queue<Job>>,
    /// Wakes the driver when a job arrives or the batcher closes.
    wake: Notify,
    closed: AtomicBool,
    metrics: Arc<Metrics>,
    /// Places for images in the service (see [`crate::admission`]).
    admissions: Admissions,
    supervisor: Supervisor,
}

impl Batcher {
    /// Starts the driver task. Batches go to `batches`; `sessions` inference threads read it.
    pub fn start(
        config: QueueConfig,
        sessions: usize,
        lanes: Lanes,
        metrics: Arc<Metrics>,
        supervisor: Supervisor,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(config)),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            metrics: metrics.clone(),
            admissions: Admissions::new(config.capacity, metrics.clone()),
            supervisor,
        });
        let permits = Arc::new(Semaphore::new(sessions));
        let watch = shared.supervisor.watch("the batching driver");
        let driver = tokio::spawn({
            let shared = shared.clone();
            async move {
                drive(shared, permits, sessions, lanes, &watch).await;
            }
        });
        (Self { shared }, driver)
    }

    /// Admits one more image, or refuses it at once when `capacity` images are already in the
    /// service (being preprocessed, queued or inferred).
    pub fn admit(&self) -> Result<Admission, QueueFull> {
        self.shared.admissions.admit()
    }

    /// Images the service admits at once (`--queue-capacity`).
    pub fn capacity(&self) -> usize {
        self.shared.admissions.capacity()
    }

    /// Admits `count` images together, or none.
    pub fn admit_all(&self, count: usize) -> Result<Vec<Admission>, QueueFull> {
        self.shared.admissions.admit_all(count)
    }

    /// Queues a job (its waiter holds an admission place, so there is always room). After a pipeline
    /// failure the job is answered with the failure at once (500), never queued.
    pub fn submit(&self, job: Job) {
        if let Some(cause) = self.shared.supervisor.failure() {
            let _ = job.reply.send(Err(InferenceError::Failed(cause)));
            return;
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.push(job);
        self.shared.metrics.set_queue_depth(queue.len());
        drop(queue);
        self.shared.wake.notify_one();
    }

    /// Takes out of the queue every job whose waiter has gone (called by a waiter that stops
    /// waiting), so dead work holds neither memory nor a batch slot.
    pub fn prune(&self) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.remove_abandoned() > 0 {
            self.shared.metrics.set_queue_depth(queue.len());
        }
    }

    /// Resolves with the cause when the pipeline fails.
    pub async fn failed(&self) -> String {
        self.shared.supervisor.failed().await
    }

    /// Admission places taken now.
    pub fn admitted(&self) -> usize {
        self.shared.admissions.in_use()
    }

    /// No more jobs will come: the driver sends what is queued and stops.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// The pipeline failed: every queued job is answered with `cause` now.
    pub fn fail_queued(&self, cause: &str) {
        let jobs = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            let jobs = queue.drain_all();
            self.shared.metrics.set_queue_depth(0);
            jobs
        };
        for job in jobs {
            let _ = job
                .reply
                .send(Err(InferenceError::Failed(cause.to_owned())));
        }
    }
}

async fn drive(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    sessions: usize,
    lanes: Lanes,
    watch: &crate::supervise::Watch,
) {
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (jobs, left_queued) = loop {
            let (poll, removed, left) = {
                let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                // This session and every other one idle now share what is queued.
                let free = 1 + permits.available_permits();
                let (poll, removed) = queue.poll(Instant::now(), free);
                shared.metrics.set_queue_depth(queue.len());
                (poll, removed, queue.len())
            };
            if removed != Default::default() {
                tracing::debug!(
                    ?removed,
                    "dropped queued jobs that were abandoned or past their deadline"
                );
            }
            shared.supervisor.fault_point(FaultPoint::Driver);
            match poll {
                Poll::Ready(jobs) => break (jobs, left),
                Poll::WaitUntil(at) => {
                    tokio::select! {
                        () = shared.wake.notified() => {}
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                Poll::Idle if shared.closed.load(Ordering::SeqCst) => return,
                Poll::Idle => shared.wake.notified().await,
            }
        };
        let mut permit = permit;
        let mut lane = &lanes.narrow;
        if let Some(wide) = &lanes.wide {
            let others = u32::try_from(sessions - 1).unwrap_or(u32::MAX);
            if left_queued == 0 {
                if let Ok(rest) = permits.clone().try_acquire_many_owned(others) {
                    permit.merge(rest);
                    lane = wide;
                }
            }
        }
        let batch = Batch {
            jobs,
            cut_at: Instant::now(),
            permit,
        };
        if lane.send(batch).is_err() {
            watch.ended("every inference thread is gone");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::inference::ModelInput;

    fn job() -> (Job, tokio::sync::oneshot::Receiver<JobAnswer>) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let now = Instant::now();
        let job = Job {
            input: ModelInput::Crop(vec![0; 3]),
            reply,
            span: tracing::Span::none(),
            queue_span: tracing::Span::none(),
            enqueued: now,
            deadline: now + Duration::from_secs(10),
        };
        (job, answer)
    }

    type JobAnswer = Result<job::Prediction, InferenceError>;

    /// The next batch on `rx`, letting the driver task run meanwhile.
    async fn next(rx: &crossbeam_channel::Receiver<Batch>) -> Batch {
        for _ in 0..5000 {
            if let Ok(batch) = rx.try_recv() {
                return batch;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("no batch arrived");
    }

    /// One batch per job, two narrow sessions and a wide one. On the current-thread runtime the
    /// driver runs only while the test awaits, so jobs submitted back to back are queued
    /// together.
    #[tokio::test]
    async fn a_lone_batch_takes_the_wide_lane_and_a_busy_server_the_narrow_ones() {
        let (narrow, narrow_rx) = crossbeam_channel::unbounded();
        let (wide, wide_rx) = crossbeam_channel::unbounded();
        let config = QueueConfig {
            max_batch: 1,
            max_delay: Duration::ZERO,
            capacity: 16,
        };
        let lanes = Lanes {
            narrow,
            wide: Some(wide),
        };
        let (batcher, _driver) = Batcher::start(
            config,
            2,
            lanes,
            Arc::new(Metrics::new()),
            Supervisor::default(),
        );

        // Idle and nothing else queued: every permit, the wide session.
        let (lone, _a) = job();
        batcher.submit(lone);
        let batch = next(&wide_rx).await;
        assert_eq!(batch.permit.num_permits(), 2);
        assert!(narrow_rx.is_empty());
        drop(batch); // its run is over: the permits are back

        // Two at once: the first leaves others queued, the second finds a session busy.
        let (first, _b) = job();
        let (second, _c) = job();
        batcher.submit(first);
        batcher.submit(second);
        let one = next(&narrow_rx).await;
        let two = next(&narrow_rx).await;
        assert_eq!((one.permit.num_permits(), two.permit.num_permits()), (1, 1));
        assert!(
            wide_rx.is_empty(),
            "a busy server keeps the narrow sessions"
        );
    }
}
