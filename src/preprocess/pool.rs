//! A bounded pool of preprocessing threads, off the async runtime. Handlers submit image bytes
//! and await the crop until the request's deadline (their admission place stays with them).
//!
//! Work nobody waits for costs nothing: when a waiter goes (client gone, deadline passed) it
//! takes its bytes back out of the task ([`Task::bytes`] is shared with the waiter), so a task
//! still queued holds a few dozen bytes, and a worker that reaches it skips it; a JPEG being
//! decoded stops between row bands as soon as its waiter is gone or its deadline passes.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::budget::DecodeBudget;
use super::{PreprocessConfig, PreprocessError};
use crate::cores::Lease;
use crate::supervise::Supervisor;

/// A preprocessed image: the 8-bit crop, normalised later into the batch tensor.
#[derive(Debug)]
pub struct Preprocessed {
    pub crop: Vec<u8>,
    pub elapsed: Duration,
}

/// Why the pool did not produce a crop.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the request deadline passed while the image waited for a preprocessing worker")]
    DeadlineExceeded,
    #[error("the preprocessing workers have stopped")]
    Stopped,
    #[error(transparent)]
    Image(#[from] PreprocessError),
}

/// The image of a task, shared with its waiter, which empties it when it stops waiting.
type Slot = Arc<Mutex<Option<Bytes>>>;

struct Task {
    bytes: Slot,
    /// The model's resize and crop (the pool serves every model).
    config: PreprocessConfig,
    /// The core this decode leased ([`crate::cores`]); returned when the task is done or skipped.
    core: Lease,
    deadline: Instant,
    reply: oneshot::Sender<Result<Preprocessed, PreprocessError>>,
    span: tracing::Span,
}

/// Handle to the pool. Dropping every handle closes the task channel; the threads then exit.
#[derive(Debug)]
pub struct PreprocessPool {
    /// Unbounded as a channel: live tasks are bounded by admission (each has a waiter holding
    /// a place); a dead one holds no image, only its empty slot, until a worker skips it.
    tasks: crossbeam_channel::Sender<Task>,
    handles: Vec<JoinHandle<()>>,
}

impl PreprocessPool {
    /// Starts `workers` threads; every decode first reserves its peak memory in `budget`
    /// (refused at once when it does not fit).
    pub fn start(workers: usize, budget: DecodeBudget, supervisor: &Supervisor) -> Self {
        let (tasks, rx) = crossbeam_channel::unbounded::<Task>();
        let handles = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                let budget = budget.clone();
                let watch = supervisor.watch(format!("preprocessing worker {i}"));
                std::thread::Builder::new()
                    .name(format!("preprocess-{i}"))
                    .spawn(move || {
                        let _watch = watch;
                        for task in rx {
                            let taken = task.bytes.lock().unwrap_or_else(|p| p.into_inner()).take();
                            let Some(bytes) = taken else {
                                continue; // the client left, or its deadline passed, meanwhile
                            };
                            let stop = || task.reply.is_closed() || Instant::now() >= task.deadline;
                            if stop() {
                                continue;
                            }
                            let entered = task.span.enter();
                            let started = Instant::now();
                            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                let config = &task.config;
                                let cost = super::decode::decode_cost(&bytes, config.max_pixels)?;
                                let _reservation = budget.reserve(cost)?;
                                config.crop_rgb_until(&bytes, &stop)
                            }))
                            .unwrap_or_else(|_| {
                                Err(PreprocessError::Undecodable("decoder panicked".into()))
                            })
                            .map(|crop| Preprocessed {
                                crop,
                                elapsed: started.elapsed(),
                            });
                            drop(task.core);
                            // The preprocess span ends here, before the waiter hears of it: a
                            // clone still held after the reply would close it after the next
                            // stage's span had started, and a trace would show them overlap.
                            drop(entered);
                            drop(task.span);
                            let _ = task.reply.send(result);
                        }
                    })
                    .expect("spawning a preprocessing thread")
            })
            .collect();
        Self { tasks, handles }
    }

    /// Preprocesses one admitted image on the pool as `config` says, waiting at most until
    /// `deadline`.
    pub(crate) async fn run(
        &self,
        config: PreprocessConfig,
        bytes: Bytes,
        deadline: Instant,
        core: Lease,
    ) -> Result<Preprocessed, PoolError> {
        let (reply, answer) = oneshot::channel();
        let slot: Slot = Arc::new(Mutex::new(Some(bytes)));
        let task = Task {
            bytes: slot.clone(),
            config,
            core,
            deadline,
            reply,
            span: tracing::Span::current(),
        };
        // Whatever ends this wait (an answer, the deadline, the future dropped) empties the
        // slot: a task still queued then holds no image.
        let _release = ReleaseOnDrop(slot);
        self.tasks.send(task).map_err(|_| PoolError::Stopped)?;
        tokio::time::timeout_at(deadline.into(), answer)
            .await
            .map_err(|_| PoolError::DeadlineExceeded)?
            // Dropped unanswered: skipped for its deadline, or the worker is gone.
            .map_err(|_| {
                if Instant::now() >= deadline {
                    PoolError::DeadlineExceeded
                } else {
                    PoolError::Stopped
                }
            })?
            .map_err(|e| match e {
                PreprocessError::Stopped => PoolError::DeadlineExceeded,
                other => PoolError::Image(other),
            })
    }

    /// Closes the queue and waits for the workers to finish what they hold.
    pub fn shutdown(self) {
        drop(self.tasks);
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// Empties a task's image slot when its waiter stops waiting.
struct ReleaseOnDrop(Slot);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
