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
//! and it leaves the moment a session frees up with its share of what queued meanwhile: the
//! queue divided by the number of narrow sessions, busy ones included (up to the maximum batch
//! size). Two images for two idle sessions run one each, side by side; four images queued
//! behind two busy sessions leave as two batches of two as the sessions free up, not as one
//! batch of four on one session's single thread while the other's core idles (that batch was
//! the slowest 1 % of requests at 30-45 % load: docs/anatomy.md). Cutting earlier, as soon as
//! one job is there, would commit a batch of one under moderate load and leave the rest of
//! the run's arrivals waiting a whole extra run (measured: p99 at 80 % load 9 x p50 that way,
//! see docs/benchmarks.md).
//! Cores ([`crate::cores`]): before it cuts a batch the driver leases the cores the run
//! needs from the budget decoding shares, so a batch is cut only when it can run at once and
//! keeps gathering arrivals while decodes hold the cores; the wide lane is taken only when
//! every core is free.
//! Admission ([`crate::admission`]): an image takes one of `capacity` places on arrival, before
//! preprocessing, and its waiter holds the place; a waiter that goes (client gone, deadline)
//! takes its job out of the queue ([`Batcher::prune`]), so the queue never holds more than
//! `capacity` live jobs and never refuses one.

mod driver;
#[cfg(test)]
mod fake_backend_tests;
mod job;
mod keep_warm;
pub mod queue;
mod runner;
pub mod watchdog;

pub use job::{Batch, Job, Prediction};
pub use keep_warm::KeepWarm;
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
use crate::cores::Cores;
use crate::inference::InferenceError;
use crate::metrics::ModelMetrics;
use crate::supervise::Supervisor;
use driver::Driver;
use queue::{Pending, Queue, QueueConfig};

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
    metrics: ModelMetrics,
    /// Places for images in the service (see [`crate::admission`]).
    admissions: Admissions,
    supervisor: Supervisor,
}

impl Batcher {
    /// Starts the driver task. Batches go to `lanes`; `sessions` narrow inference threads read
    /// its narrow channel, each run leasing `run_cores` of `cores` (a wide run: all of them).
    pub(crate) fn start(
        config: QueueConfig,
        sessions: usize,
        lanes: Lanes,
        (cores, run_cores): (Cores, u32),
        admissions: Admissions,
        metrics: ModelMetrics,
        supervisor: Supervisor,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(config)),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            metrics: metrics.clone(),
            admissions,
            supervisor,
        });
        let permits = Arc::new(Semaphore::new(sessions));
        let watch = shared.supervisor.watch("the batching driver");
        let driver = tokio::spawn({
            let shared = shared.clone();
            async move {
                let driver = Driver {
                    shared,
                    permits,
                    sessions,
                    lanes,
                    cores,
                    run_cores,
                    keep_warm: config.keep_warm,
                };
                driver.drive(&watch).await;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::inference::ModelInput;

    fn job() -> (
        Job,
        tokio::sync::oneshot::Receiver<Result<Prediction, InferenceError>>,
    ) {
        Job::for_test(ModelInput::Crop(vec![0; 3]))
    }

    type Receiver = crossbeam_channel::Receiver<Batch>;

    /// A batcher with two narrow sessions of one core each, batches of at most `max_batch`
    /// cut at once, and a wide lane when `wide`: the batcher, the narrow and wide receivers.
    fn start(max_batch: usize, cores: Cores, wide: bool) -> (Batcher, Receiver, Receiver) {
        let (narrow, narrow_rx) = crossbeam_channel::unbounded();
        let (wide_tx, wide_rx) = crossbeam_channel::unbounded();
        let config = QueueConfig {
            max_batch,
            max_delay: Duration::ZERO,
            capacity: 16,
            keep_warm: None,
        };
        let lanes = Lanes {
            narrow,
            wide: wide.then_some(wide_tx),
        };
        let supervisor = Supervisor::default();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let admissions = Admissions::new(config.capacity, metrics.clone());
        let metrics = metrics.for_model("m", 1);
        let (batcher, _driver) = Batcher::start(
            config,
            2,
            lanes,
            (cores, 1),
            admissions,
            metrics,
            supervisor,
        );
        (batcher, narrow_rx, wide_rx)
    }

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
        let (batcher, narrow_rx, wide_rx) = start(1, Cores::new(2), true);

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

    /// The core budget shared with decoding: no batch is cut while decodes hold every core, a
    /// batch cut beside a decode takes a narrow session (the wide one needs every core), and a
    /// lone image on an idle machine gets them all.
    #[tokio::test]
    async fn a_batch_waits_for_its_cores_and_the_wide_lane_needs_them_all() {
        let cores = Cores::new(2);
        let (batcher, narrow_rx, wide_rx) = start(8, cores.clone(), true);
        let (first_decode, second_decode) = (cores.lease(1).await, cores.lease(1).await);
        let (first, _a) = job();
        batcher.submit(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            narrow_rx.is_empty() && wide_rx.is_empty(),
            "a batch was cut while decodes held every core"
        );
        drop(first_decode);
        let batch = next(&narrow_rx).await;
        assert_eq!(batch.cores.cores(), 1);
        assert!(wide_rx.is_empty(), "the wide lane beside a decode");
        drop((batch, second_decode));

        let (lone, _c) = job();
        batcher.submit(lone);
        let batch = next(&wide_rx).await;
        assert_eq!((batch.cores.cores(), cores.in_use()), (2, 2));
    }

    /// What is queued when a session frees up is shared by every narrow session, busy ones
    /// too: four images queued behind two busy sessions do not leave as one batch of four on
    /// one session's threads while the other's cores idle after its run.
    #[tokio::test]
    async fn queued_images_are_shared_by_every_session_not_taken_by_the_first_free() {
        let (batcher, narrow_rx, _) = start(8, Cores::unlimited(), false);
        let (first, _a) = job();
        batcher.submit(first);
        let busy = next(&narrow_rx).await;
        let (second, _b) = job();
        batcher.submit(second);
        let other = next(&narrow_rx).await;
        // Both sessions busy: four images queue.
        let _waiting: Vec<_> = (0..4)
            .map(|_| {
                let (queued, answer) = job();
                batcher.submit(queued);
                answer
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(narrow_rx.is_empty());
        drop(busy);
        let half = next(&narrow_rx).await;
        assert_eq!(half.jobs.len(), 2, "the first free session took its share");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(narrow_rx.is_empty(), "the rest waits for a session");
        // Each session that frees up takes its share of what is left (with a run's time
        // linear in its images, a smaller batch never finishes the last image later).
        drop(other);
        let quarter = next(&narrow_rx).await;
        assert_eq!(quarter.jobs.len(), 1, "ceil(2 left / 2 sessions)");
        drop(half);
        assert_eq!(next(&narrow_rx).await.jobs.len(), 1);
        drop(quarter);
    }
}
