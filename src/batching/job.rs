//! What the batching queue holds and hands on: a [`Job`] per image, a [`Batch`] per model run,
//! and the [`Prediction`] each job gets back.

use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::inference::{InferenceError, ModelInput};

/// One image waiting for inference: its input and where to send the answer.
#[derive(Debug)]
pub struct Job {
    pub input: ModelInput,
    pub reply: oneshot::Sender<Result<Prediction, InferenceError>>,
    /// The request's span, re-entered on the inference thread.
    pub span: tracing::Span,
    /// Open while the job waits for a session; the inference thread closes it when the run
    /// begins (see [`crate::telemetry`]).
    pub queue_span: tracing::Span,
    pub enqueued: Instant,
    pub deadline: Instant,
}

impl Job {
    /// The client stopped waiting (disconnected, or its handler hit the deadline).
    pub fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// What a job gets back.
#[derive(Clone, Debug)]
pub struct Prediction {
    pub logits: Vec<f32>,
    pub queue: Duration,
    pub inference: Duration,
}

/// A batch cut by the batcher: its jobs in order. The inference thread that takes it builds
/// the batch tensor from the jobs still wanted.
#[derive(Debug)]
pub struct Batch {
    pub jobs: Vec<Job>,
    pub cut_at: Instant,
    /// Returned to the batcher as soon as the run is done: one permit per session.
    pub permit: OwnedSemaphorePermit,
    /// The cores the run leased from the budget decoding shares; returned with the permit.
    pub(crate) cores: crate::cores::Lease,
    /// A warm run (no jobs): one blank image through the session, the result dropped
    /// (`super::keep_warm`).
    pub(crate) warm: bool,
    /// Where the inference thread notes the end of the run.
    pub(crate) run_ends: std::sync::Arc<super::keep_warm::RunEnds>,
}

#[cfg(test)]
impl Job {
    /// A job for `input` due in ten seconds, and the receiver its answer goes to.
    pub(crate) fn for_test(
        input: ModelInput,
    ) -> (Self, oneshot::Receiver<Result<Prediction, InferenceError>>) {
        let (reply, answer) = oneshot::channel();
        let now = Instant::now();
        let job = Self {
            input,
            reply,
            span: tracing::Span::none(),
            queue_span: tracing::Span::none(),
            enqueued: now,
            deadline: now + Duration::from_secs(10),
        };
        (job, answer)
    }
}
