//! The series of one served model version. Each carries `model` and `version` labels, so a
//! dashboard tells versions apart (and `sum` without them gives the service); the `/stats`
//! windows count every version together.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder};

use super::{names, Metrics, Outcome, StageTimings, METADATA};
use crate::inference::Precision;

/// One version's handles; cloning is cheap.
#[derive(Clone)]
pub struct ModelMetrics {
    service: Arc<Metrics>,
    labels: Vec<Label>,
    batches: Counter,
    keep_warm_runs: Counter,
    batch_size: Histogram,
    inference: Histogram,
    queue_wait: Histogram,
    preprocess: Histogram,
    queue_depth: Gauge,
    /// This version's queue depth as last set (the service's is the sum over versions).
    depth: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMetrics")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The series of model `name`, version `version`.
    pub fn for_model(self: &Arc<Self>, name: &str, version: u64) -> ModelMetrics {
        let labels = vec![
            Label::new("model", name.to_owned()),
            Label::new("version", version.to_string()),
        ];
        let key = |name: &'static str| Key::from_parts(name, labels.clone());
        let recorder = &self.recorder;
        ModelMetrics {
            batches: recorder.register_counter(&key(names::BATCHES_TOTAL), &METADATA),
            keep_warm_runs: recorder.register_counter(&key(names::KEEP_WARM_RUNS_TOTAL), &METADATA),
            batch_size: recorder.register_histogram(&key(names::BATCH_SIZE), &METADATA),
            inference: recorder.register_histogram(&key(names::INFERENCE_DURATION), &METADATA),
            queue_wait: recorder.register_histogram(&key(names::QUEUE_WAIT), &METADATA),
            preprocess: recorder.register_histogram(&key(names::PREPROCESS_DURATION), &METADATA),
            queue_depth: recorder.register_gauge(&key(names::QUEUE_DEPTH), &METADATA),
            depth: Arc::new(AtomicUsize::new(0)),
            service: self.clone(),
            labels,
        }
    }
}

impl ModelMetrics {
    pub fn image_outcome(&self, outcome: Outcome) {
        let mut labels = self.labels.clone();
        labels.push(Label::new("outcome", outcome.label()));
        self.service
            .recorder
            .register_counter(&Key::from_parts(names::IMAGES_TOTAL, labels), &METADATA)
            .increment(1);
    }

    /// An image answered successfully, with its stage timings.
    pub fn image_timings(&self, timings: StageTimings) {
        self.queue_wait.record(timings.queue.as_secs_f64());
        self.service.windows.image(timings);
    }

    pub fn preprocessed(&self, elapsed: Duration) {
        self.preprocess.record(elapsed.as_secs_f64());
    }

    pub fn batch_done(&self, size: usize, inference: Duration) {
        self.batches.increment(1);
        self.batch_size.record(size as f64);
        self.inference.record(inference.as_secs_f64());
        self.service.windows.batch(size);
    }

    /// A warm run of an idle model (`--keep-warm-ms`).
    pub fn keep_warm_run(&self) {
        self.keep_warm_runs.increment(1);
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as f64);
        let before = self.depth.swap(depth, Ordering::Relaxed);
        let total = &self.service.queue_depth_total;
        let total = if depth >= before {
            total.fetch_add(depth - before, Ordering::Relaxed) + (depth - before)
        } else {
            total.fetch_sub(before - depth, Ordering::Relaxed) - (before - depth)
        };
        self.service.windows.set_queue_depth(total);
    }

    /// `repvgg_model_info`: what this version is (value 1).
    pub fn set_info(
        &self,
        variant: &str,
        classes: usize,
        sha256: &str,
        fused: bool,
        precision: Precision,
    ) {
        let mut labels = self.labels.clone();
        labels.extend([
            Label::new("variant", variant.to_owned()),
            Label::new("classes", classes.to_string()),
            Label::new("checkpoint_sha256", sha256.to_owned()),
            Label::new("fused", fused.to_string()),
            Label::new("precision", precision.as_str()),
            Label::new("engine", precision.engine()),
        ]);
        self.service
            .recorder
            .register_gauge(&Key::from_parts(names::MODEL_INFO, labels), &METADATA)
            .set(1.0);
    }
}
