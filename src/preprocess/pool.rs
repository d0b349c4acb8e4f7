//! A bounded pool of preprocessing threads, off the async runtime. Handlers submit image bytes
//! and await the crop; a full pool queue refuses at once (503), and work whose client has gone
//! is skipped.

use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::oneshot;

use super::budget::DecodeBudget;
use super::{PreprocessConfig, PreprocessError};
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
    #[error("preprocessing queue is full")]
    Busy,
    #[error(transparent)]
    Image(#[from] PreprocessError),
}

struct Task {
    bytes: Bytes,
    reply: oneshot::Sender<Result<Preprocessed, PreprocessError>>,
    span: tracing::Span,
}

/// Handle to the pool. Dropping every handle closes the task channel; the threads then exit.
#[derive(Debug)]
pub struct PreprocessPool {
    /// Bounded: `capacity` images may wait for a worker.
    tasks: crossbeam_channel::Sender<Task>,
    handles: Vec<JoinHandle<()>>,
}

impl PreprocessPool {
    /// Starts `workers` threads; `capacity` images may wait; every decode first reserves its
    /// peak memory in `budget` (refused at once when it does not fit).
    pub fn start(
        workers: usize,
        capacity: usize,
        config: PreprocessConfig,
        budget: DecodeBudget,
        supervisor: &Supervisor,
    ) -> Self {
        let (tasks, rx) = crossbeam_channel::bounded::<Task>(capacity);
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
                            if task.reply.is_closed() {
                                continue; // the client left while this waited
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
                            });
                            let _ = task.reply.send(result);
                        }
                    })
                    .expect("spawning a preprocessing thread")
            })
            .collect();
        Self { tasks, handles }
    }

    /// Preprocesses one image on the pool.
    pub async fn run(&self, bytes: Bytes) -> Result<Preprocessed, PoolError> {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            bytes,
            reply,
            span: tracing::Span::current(),
        };
        self.tasks.try_send(task).map_err(|_| PoolError::Busy)?;
        answer
            .await
            .map_err(|_| {
                PoolError::Image(PreprocessError::Undecodable(
                    "preprocessing worker stopped".into(),
                ))
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
