//! The classification pipeline, the one path every API takes: admission -> preprocessing
//! (encoded images only) -> batching -> inference -> logits with stage timings.
//!
//! `/classify`, the v2 REST routes and the gRPC service are adapters around [`Pipeline`]: they
//! parse their protocol into [`Input`]s, call it, and render what comes back. Deadlines,
//! admission, cancellation and the per-image metrics are the same whichever door an image came
//! in by. An image's admission place is held by its waiting future: when the wait ends (answer,
//! 504, a pipeline failure, or the future dropped because the client left) the place is free
//! at once, and the work nobody waits for is withdrawn: its preprocessing task gives up its
//! bytes, its queued job leaves the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{join_all, try_join_all};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::admission::{Admission, QueueFull};
use crate::batching::{Batcher, Job};
use crate::cores::Cores;
use crate::inference::{InferenceError, InputShape, ModelInput};
use crate::metrics::{ModelMetrics, Outcome, StageTimings};
use crate::preprocess::pool::{PoolError, PreprocessPool};
use crate::preprocess::{PreprocessConfig, PreprocessError};
use crate::telemetry::STAGES;

/// One image as a client sent it.
#[derive(Debug)]
pub enum Input {
    /// Encoded image bytes (any format `/classify` takes): decoded, resized and cropped by the
    /// preprocessing pool.
    Encoded(Bytes),
    /// A normalised planar `3 x S x S` tensor (S = the crop size), checked for length by the
    /// caller: goes straight to the batching queue.
    Tensor(Vec<f32>),
}

/// One classified image.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The model's outputs in class order.
    pub logits: Vec<f32>,
    pub timings: StageTimings,
}

/// Why an image was not classified.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the queue is full; retry shortly")]
    QueueFull,
    /// A request answered as a whole that could never be admitted.
    #[error(
        "the request holds {count} images and the service admits at most {capacity} at once \
         (--queue-capacity); send at most {capacity} per request"
    )]
    LargerThanQueue { count: usize, capacity: usize },
    #[error("the request deadline passed before the image was classified")]
    DeadlineExceeded,
    #[error("the service is shutting down")]
    Stopped,
    #[error(transparent)]
    Image(#[from] PreprocessError),
    #[error("inference failed: {0}")]
    Inference(#[from] InferenceError),
}

impl PipelineError {
    /// How an image that ended in this error is counted.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::DeadlineExceeded => Outcome::Expired,
            Self::Inference(_) => Outcome::Failed,
            Self::QueueFull | Self::LargerThanQueue { .. } | Self::Stopped | Self::Image(_) => {
                Outcome::Rejected
            }
        }
    }
}

impl From<QueueFull> for PipelineError {
    fn from(_: QueueFull) -> Self {
        Self::QueueFull
    }
}

impl From<PoolError> for PipelineError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::DeadlineExceeded => Self::DeadlineExceeded,
            PoolError::Stopped => Self::Stopped,
            PoolError::Image(e) => Self::Image(e),
        }
    }
}

/// The handle every API holds; cloning is cheap.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pool: Arc<PreprocessPool>,
    /// This model's resize and crop.
    preprocess: PreprocessConfig,
    /// The core budget a decode leases one core of (shared with the inference runs).
    cores: Cores,
    batcher: Batcher,
    metrics: ModelMetrics,
    shape: InputShape,
}

impl Pipeline {
    pub(crate) fn new(
        (pool, preprocess): (Arc<PreprocessPool>, PreprocessConfig),
        cores: Cores,
        batcher: Batcher,
        metrics: ModelMetrics,
        shape: InputShape,
    ) -> Self {
        Self {
            pool,
            preprocess,
            cores,
            batcher,
            metrics,
            shape,
        }
    }

    /// Floats a [`Input::Tensor`] must hold.
    pub fn tensor_len(&self) -> usize {
        self.shape.slot_len()
    }

    /// Images admitted at once (`--queue-capacity`).
    pub fn capacity(&self) -> usize {
        self.batcher.capacity()
    }

    /// Side of the square model input.
    pub fn input_size(&self) -> usize {
        self.shape.size
    }

    /// Each image admitted and answered on its own (one may fail while the others succeed).
    pub async fn classify_each(
        &self,
        inputs: Vec<Input>,
        arrived: Instant,
        deadline: Instant,
    ) -> Vec<Result<Answer, PipelineError>> {
        join_all(inputs.into_iter().map(|input| async move {
            let mut outcome = OutcomeGuard::new(&self.metrics);
            let admitted =
                tracing::debug_span!(target: STAGES, "admission").in_scope(|| self.batcher.admit());
            let result = match admitted {
                Ok(admission) => self.run(input, admission, arrived, deadline).await,
                Err(full) => Err(full.into()),
            };
            outcome.set(&result);
            result
        }))
        .await
    }

    /// The images admitted together (all or none: a queue without room for every one of them
    /// refuses the request at once) and answered together: the first failure fails them all,
    /// and the others are cancelled (their queued jobs skipped, counted as cancelled).
    pub async fn classify_all(
        &self,
        inputs: Vec<Input>,
        arrived: Instant,
        deadline: Instant,
    ) -> Result<Vec<Answer>, PipelineError> {
        let capacity = self.batcher.capacity();
        let admitted = if inputs.len() > capacity {
            Err(PipelineError::LargerThanQueue {
                count: inputs.len(),
                capacity,
            })
        } else {
            tracing::debug_span!(target: STAGES, "admission", images = inputs.len() as i64)
                .in_scope(|| self.batcher.admit_all(inputs.len()))
                .map_err(Into::into)
        };
        let admissions = match admitted {
            Ok(admissions) => admissions,
            Err(refused) => {
                for _ in &inputs {
                    self.metrics.image_outcome(Outcome::Rejected);
                }
                return Err(refused);
            }
        };
        try_join_all(
            inputs
                .into_iter()
                .zip(admissions)
                .map(|(input, admission)| async move {
                    let mut outcome = OutcomeGuard::new(&self.metrics);
                    let result = self.run(input, admission, arrived, deadline).await;
                    outcome.set(&result);
                    result
                }),
        )
        .await
    }

    /// One admitted image through preprocessing (when encoded) and the batching queue. The
    /// admission place is held here, for exactly as long as somebody waits for the image.
    async fn run(
        &self,
        input: Input,
        admission: Admission,
        arrived: Instant,
        deadline: Instant,
    ) -> Result<Answer, PipelineError> {
        let _place = admission;
        let (input, preprocess) = match input {
            Input::Encoded(bytes) => {
                // The span covers the wait for a core and a worker as well as the work;
                // `worker_ms` is the work alone.
                let span = tracing::debug_span!(
                    target: STAGES,
                    "preprocess",
                    worker_ms = tracing::field::Empty
                );
                let preprocessed = async {
                    let core = tokio::time::timeout_at(deadline.into(), self.cores.lease(1))
                        .await
                        .map_err(|_| PoolError::DeadlineExceeded)?;
                    self.pool.run(self.preprocess, bytes, deadline, core).await
                }
                .instrument(span.clone())
                .await?;
                span.record("worker_ms", preprocessed.elapsed.as_secs_f64() * 1e3);
                self.metrics.preprocessed(preprocessed.elapsed);
                (ModelInput::Crop(preprocessed.crop), preprocessed.elapsed)
            }
            Input::Tensor(values) => (ModelInput::Tensor(values), Duration::ZERO),
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            input,
            reply,
            span: tracing::Span::current(),
            queue_span: tracing::debug_span!(target: STAGES, "queue"),
            enqueued: Instant::now(),
            deadline,
        };
        if job.enqueued >= deadline {
            return Err(PipelineError::DeadlineExceeded);
        }
        self.batcher.submit(job);
        let mut waiting = Waiting {
            answer,
            batcher: &self.batcher,
            answered: false,
        };
        // A pipeline failure (a dead part, a hung batch caught by the watchdog) answers every
        // waiting image at once (500), not at its deadline.
        let answered = tokio::select! {
            answered = tokio::time::timeout_at(deadline.into(), &mut waiting.answer) => answered,
            cause = self.batcher.failed() => {
                return Err(InferenceError::Failed(cause).into());
            }
        };
        let answered = answered.map_err(|_| PipelineError::DeadlineExceeded)?;
        waiting.answered = true;
        let prediction = answered.map_err(|_| {
            InferenceError::Failed("the inference thread died while running this image".into())
        })??;
        let timings = StageTimings {
            queue: prediction.queue,
            preprocess,
            inference: prediction.inference,
            total: arrived.elapsed(),
        };
        self.metrics.image_timings(timings);
        Ok(Answer {
            logits: prediction.logits,
            timings,
        })
    }

    /// Stops taking jobs: the batcher finishes its queue and its driver ends.
    pub fn close(&self) {
        self.batcher.close();
    }

    /// The pipeline failed: every queued job is answered with `cause` now.
    pub fn fail_queued(&self, cause: &str) {
        self.batcher.fail_queued(cause);
    }
}

/// An image's wait for its batch. However the wait ends, the job is withdrawn: the answer
/// channel closed (an inference thread skips the job) and the queue pruned of it, so a job
/// nobody waits for neither holds memory in the queue nor takes a place in a batch.
struct Waiting<'a> {
    answer: oneshot::Receiver<Result<crate::batching::Prediction, InferenceError>>,
    batcher: &'a Batcher,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.answer.close();
            self.batcher.prune();
        }
    }
}

/// Records an image's outcome once; an image whose future is dropped (client gone) counts as
/// cancelled.
struct OutcomeGuard<'a> {
    metrics: &'a ModelMetrics,
    outcome: Option<Outcome>,
}

impl<'a> OutcomeGuard<'a> {
    fn new(metrics: &'a ModelMetrics) -> Self {
        Self {
            metrics,
            outcome: None,
        }
    }

    fn set(&mut self, result: &Result<Answer, PipelineError>) {
        self.outcome = Some(match result {
            Ok(_) => Outcome::Ok,
            Err(e) => e.outcome(),
        });
    }
}

impl Drop for OutcomeGuard<'_> {
    fn drop(&mut self) {
        self.metrics
            .image_outcome(self.outcome.unwrap_or(Outcome::Cancelled));
    }
}

/// Class indices of the `k` largest logits, best first (ties: the lower index first).
pub fn top_classes(logits: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(k);
    order
}

/// Softmax over the logits, then the `k` most probable classes with their probabilities.
pub fn top_probabilities(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    top_classes(logits, k)
        .into_iter()
        .map(|class_id| (class_id, (exp[class_id] / sum) as f32))
        .collect()
}
