//! Inference threads: each owns one [`Engine`] (one ONNX Runtime session), receives ready
//! batches over a channel and answers every job of a batch on its oneshot.
//!
//! The channel is closed by the batcher when it stops; each thread then finishes the batch in
//! hand and exits, and [`Workers::join`] waits for them.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::{Engine, InferenceError};
use crate::metrics::Metrics;
use crate::supervise::{FaultPoint, Supervisor};

/// One image waiting for inference: its 8-bit crop and where to send the answer.
#[derive(Debug)]
pub struct Job {
    /// Interleaved RGB `crop x crop` pixels, normalised into the batch tensor when batched.
    pub crop: Vec<u8>,
    pub reply: oneshot::Sender<Result<Prediction, InferenceError>>,
    /// The request's span, re-entered on the inference thread.
    pub span: tracing::Span,
    pub enqueued: Instant,
    pub deadline: Instant,
    /// The image's place in the service, freed when the job is answered or dropped.
    pub admission: crate::admission::Admission,
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
    pub batch_size: usize,
}

/// A batch cut by the batcher: jobs and the NCHW tensor holding their images, in order.
#[derive(Debug)]
pub struct Batch {
    pub jobs: Vec<Job>,
    pub tensor: Vec<f32>,
    pub cut_at: Instant,
    /// Returned to the batcher as soon as the run is done: one permit per session.
    pub permit: OwnedSemaphorePermit,
}

/// Side length of the (square) model input, and floats per image.
#[derive(Clone, Copy, Debug)]
pub struct InputShape {
    pub size: usize,
}

impl InputShape {
    pub fn slot_len(self) -> usize {
        3 * self.size * self.size
    }
}

/// The running inference threads.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one thread per engine, all reading from `batches`.
    pub fn spawn(
        engines: Vec<Engine>,
        batches: crossbeam_channel::Receiver<Batch>,
        shape: InputShape,
        metrics: Arc<Metrics>,
        supervisor: &Supervisor,
    ) -> Self {
        let handles = engines
            .into_iter()
            .enumerate()
            .map(|(i, engine)| {
                let batches = batches.clone();
                let metrics = metrics.clone();
                let supervisor = supervisor.clone();
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || {
                        let _watch = supervisor.watch(format!("inference thread {i}"));
                        run(engine, batches, shape, &metrics, &supervisor);
                    })
                    .expect("spawning an inference thread")
            })
            .collect();
        Self { handles }
    }

    /// Waits for every thread to finish (after the batch channel closed).
    pub fn join(self) {
        for handle in self.handles {
            if handle.join().is_err() {
                tracing::error!("an inference thread panicked");
            }
        }
    }
}

fn run(
    mut engine: Engine,
    batches: crossbeam_channel::Receiver<Batch>,
    shape: InputShape,
    metrics: &Metrics,
    supervisor: &Supervisor,
) {
    for batch in batches {
        let Batch {
            jobs,
            mut tensor,
            cut_at,
            permit,
        } = batch;
        // Drop jobs whose client left while the batch waited; compact the tensor over them.
        let slot = shape.slot_len();
        let total = jobs.len();
        let mut live = Vec::with_capacity(total);
        for (index, job) in jobs.into_iter().enumerate() {
            if job.is_abandoned() {
                continue;
            }
            let to = live.len();
            if to != index {
                tensor.copy_within(index * slot..(index + 1) * slot, to * slot);
            }
            live.push(job);
        }
        let dropped = total - live.len();
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "skipped jobs whose client left while the batch waited"
            );
        }
        if live.is_empty() {
            drop(permit);
            continue;
        }
        tensor.truncate(live.len() * slot);
        supervisor.fault_point(FaultPoint::Inference);
        let started = Instant::now();
        let result = engine.run(&tensor, live.len(), shape.size, shape.size);
        let inference = started.elapsed();
        drop(permit);
        match &result {
            Ok(_) => metrics.batch_done(live.len(), inference),
            Err(e) => tracing::error!(error = %e, batch = live.len(), "inference failed"),
        }
        let classes = engine.num_classes();
        let batch_size = live.len();
        for (i, job) in live.into_iter().enumerate() {
            let _entered = job.span.enter();
            let answer = result
                .as_ref()
                .map_err(Clone::clone)
                .map(|logits| Prediction {
                    logits: logits[i * classes..(i + 1) * classes].to_vec(),
                    queue: cut_at.saturating_duration_since(job.enqueued),
                    inference,
                    batch_size,
                });
            // The receiver may have gone meanwhile; nothing to do then.
            let _ = job.reply.send(answer);
        }
    }
}
