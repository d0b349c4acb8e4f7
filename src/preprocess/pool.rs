//! A bounded pool of preprocessing threads, off the async runtime. Handlers submit image bytes
//! with their admission and await the crop until the request's deadline; work whose client has
//! gone or whose deadline has passed is skipped. Each task carries its image's admission, so
//! the task queue (sized to the admission capacity) always has room.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::oneshot;

use super::budget::DecodeBudget;
use super::{PreprocessConfig, PreprocessError};
use crate::admission::Admission;
use crate::supervise::Supervisor;

/// A preprocessed image: the 8-bit crop, normalised later into the batch tensor, and the
/// image's admission, handed on to its batching job.
#[derive(Debug)]
pub struct Preprocessed {
    pub crop: Vec<u8>,
    pub elapsed: Duration,
    pub admission: Admission,
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

struct Task {
    bytes: Bytes,
    admission: Admission,
    deadline: Instant,
    reply: oneshot::Sender<Result<Preprocessed, PreprocessError>>,
    span: tracing::Span,
}

/// Handle to the pool. Dropping every handle closes the task channel; the threads then exit.
#[derive(Debug)]
pub struct PreprocessPool {
    /// Unbounded as a channel, bounded by admission: every task holds an admitted image's
    /// place, so at most the admission capacity wait here, and sending never blocks.
    tasks: crossbeam_channel::Sender<Task>,
    handles: Vec<JoinHandle<()>>,
}

impl PreprocessPool {
    /// Starts `workers` threads; every decode first reserves its peak memory in `budget`
    /// (refused at once when it does not fit).
    pub fn start(
        workers: usize,
        config: PreprocessConfig,
        budget: DecodeBudget,
        supervisor: &Supervisor,
    ) -> Self {
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
                            if task.reply.is_closed() || Instant::now() >= task.deadline {
                                continue; // the client left, or its deadline passed, meanwhile
                            }
                            let _entered = task.span.enter();
                            let started = Instant::now();
                            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                let cost =
                                    super::decode::decode_cost(&task.bytes, config.max_pixels)?;
                                let _reservation = budget.reserve(cost)?;
                                config.crop_rgb(&task.bytes)
                            }))
                            .unwrap_or_else(|_| {
                                Err(PreprocessError::Undecodable("decoder panicked".into()))
                            })
                            .map(|crop| Preprocessed {
                                crop,
                                elapsed: started.elapsed(),
                                admission: task.admission,
                            });
                            let _ = task.reply.send(result);
                        }
                    })
                    .expect("spawning a preprocessing thread")
            })
            .collect();
        Self { tasks, handles }
    }

    /// Preprocesses one admitted image on the pool, waiting at most until `deadline`.
    pub async fn run(
        &self,
        bytes: Bytes,
        admission: Admission,
        deadline: Instant,
    ) -> Result<Preprocessed, PoolError> {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            bytes,
            admission,
            deadline,
            reply,
            span: tracing::Span::current(),
        };
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
            .map_err(PoolError::Image)
    }

    /// Closes the queue and waits for the workers to finish what they hold.
    pub fn shutdown(self) {
        drop(self.tasks);
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}
