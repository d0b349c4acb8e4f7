//! Inference threads: each owns one [`Backend`] (in service an ONNX Runtime session), receives batches
//! over a channel, builds the batch tensor from the jobs still wanted (normalising crops on
//! this thread, off the async runtime), runs it and answers every job on its oneshot.
//!
//! The channel is closed by the batcher when it stops; each thread then finishes the batch in
//! hand and exits, and [`Workers::join`] waits for them.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::job::{Batch, Job, Prediction};
use super::watchdog::Watchdog;
use crate::inference::{batch_tensor, Backend, InputShape};
use crate::metrics::ModelMetrics;
#[cfg(any(test, feature = "fault-injection"))]
use crate::supervise::FaultPoint;
use crate::supervise::Supervisor;
use crate::telemetry::STAGES;

/// The running inference threads.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts one thread per engine, each reading batches from the channel paired with it.
    pub fn spawn(
        engines: Vec<(Box<dyn Backend>, crossbeam_channel::Receiver<Batch>)>,
        shape: InputShape,
        metrics: ModelMetrics,
        supervisor: &Supervisor,
        watchdog: &Arc<Watchdog>,
    ) -> Self {
        let handles = engines
            .into_iter()
            .enumerate()
            .map(|(i, (engine, batches))| {
                let metrics = metrics.clone();
                let supervisor = supervisor.clone();
                let watchdog = watchdog.clone();
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || {
                        let _watch = supervisor.watch(format!("inference thread {i}"));
                        let thread = Thread {
                            index: i,
                            shape,
                            metrics: &metrics,
                            #[cfg(any(test, feature = "fault-injection"))]
                            supervisor: &supervisor,
                            watchdog: &watchdog,
                        };
                        thread.run(engine, batches);
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

/// What one inference thread works with.
struct Thread<'a> {
    index: usize,
    shape: InputShape,
    metrics: &'a ModelMetrics,
    #[cfg(any(test, feature = "fault-injection"))]
    supervisor: &'a Supervisor,
    watchdog: &'a Watchdog,
}

impl Thread<'_> {
    /// Trace spans of a run about to start: each job's queue span ends, its `inference` span
    /// begins, and one `batch` span (a root of its own) links to every request it carries.
    /// All disabled, and nothing done, while tracing is off.
    fn stage_spans(&self, live: &mut [Job]) -> (tracing::Span, Vec<tracing::Span>) {
        let size = live.len() as i64;
        let session = self.index as i64;
        let batch = tracing::debug_span!(target: STAGES, parent: None, "batch", size, session);
        let spans = live
            .iter_mut()
            .map(|job| {
                drop(std::mem::replace(
                    &mut job.queue_span,
                    tracing::Span::none(),
                ));
                crate::telemetry::link(&batch, &job.span);
                tracing::debug_span!(
                    target: STAGES,
                    parent: &job.span,
                    "inference",
                    batch_size = size,
                    session
                )
            })
            .collect();
        (batch, spans)
    }

    /// A warm run (`super::keep_warm`): one blank image, the result dropped; counted, but
    /// not in the batch and inference series.
    fn warm(&self, engine: &mut dyn Backend, blank: &mut Vec<f32>) {
        let size = self.shape.size;
        blank.resize(self.shape.slot_len(), 0.0);
        let running = self.watchdog.start(self.index);
        let result = engine.run(blank, 1, size, size);
        drop(running);
        match result {
            Ok(_) => self.metrics.keep_warm_run(),
            Err(e) => tracing::error!(error = %e, "a warm run failed"),
        }
    }

    fn run(&self, mut engine: Box<dyn Backend>, batches: crossbeam_channel::Receiver<Batch>) {
        let Self { shape, metrics, .. } = *self;
        let mut blank = Vec::new();
        for batch in batches {
            let Batch {
                jobs,
                cut_at,
                permit,
                cores,
                warm,
                run_ends,
            } = batch;
            if warm {
                self.warm(&mut *engine, &mut blank);
                run_ends.ended();
                drop((permit, cores));
                continue;
            }
            // Skip jobs whose client left while the batch waited.
            let total = jobs.len();
            let mut live: Vec<_> = jobs.into_iter().filter(|job| !job.is_abandoned()).collect();
            let dropped = total - live.len();
            if dropped > 0 {
                tracing::debug!(
                    dropped,
                    "skipped jobs whose client left while the batch waited"
                );
            }
            if live.is_empty() {
                drop((permit, cores));
                continue;
            }
            let (batch_span, job_spans) = self.stage_spans(&mut live);
            let tensor = batch_tensor(live.iter().map(|job| &job.input), shape);
            #[cfg(any(test, feature = "fault-injection"))]
            self.supervisor.fault_point(FaultPoint::Inference);
            let started = Instant::now();
            let running = self.watchdog.start(self.index);
            #[cfg(any(test, feature = "fault-injection"))]
            self.supervisor.fault_point(FaultPoint::InferenceHang);
            let result = engine.run(&tensor, live.len(), shape.size, shape.size);
            drop(running);
            let inference = started.elapsed();
            run_ends.ended();
            drop((permit, cores));
            match &result {
                Ok(_) => metrics.batch_done(live.len(), inference),
                Err(e) => tracing::error!(error = %e, batch = live.len(), "inference failed"),
            }
            drop((batch_span, job_spans));
            let classes = engine.num_classes();
            for (i, job) in live.into_iter().enumerate() {
                let _entered = job.span.enter();
                let answer = result
                    .as_ref()
                    .map_err(Clone::clone)
                    .map(|logits| Prediction {
                        logits: logits[i * classes..(i + 1) * classes].to_vec(),
                        queue: cut_at.saturating_duration_since(job.enqueued),
                        inference,
                    });
                // The receiver may have gone meanwhile; nothing to do then.
                let _ = job.reply.send(answer);
            }
        }
    }
}
