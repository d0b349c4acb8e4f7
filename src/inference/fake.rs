//! A fake [`Backend`] for tests of the layers above the engine (batching, the pipeline, the
//! doors): no model, no ONNX Runtime, and behaviour a test can steer.
//!
//! - Logits are a function of the image alone: class `c` of an image whose first value is `v`
//!   gets `v * (c + 1)`, so a test knows which image an answer came from.
//! - Every run is recorded (its batch size and the first value of each image), in order.
//! - With a gate, a run waits for one token from it before answering: a test holds sessions
//!   busy, lets a queue form, and releases runs one by one.
//! - A run holding an image whose first value is negative fails (`InferenceError::Runtime`),
//!   as a session that hits a runtime error would.

use std::sync::{Arc, Mutex};

use super::{Backend, InferenceError};

/// One fake session; clones share the record and the gate.
#[derive(Clone, Debug)]
pub(crate) struct FakeBackend {
    classes: usize,
    runs: Arc<Mutex<Vec<Vec<f32>>>>,
    gate: Option<crossbeam_channel::Receiver<()>>,
}

impl FakeBackend {
    /// A backend answering `classes` logits per image, at once.
    pub(crate) fn new(classes: usize) -> Self {
        Self {
            classes,
            runs: Arc::default(),
            gate: None,
        }
    }

    /// The same backend, each run waiting for a token from the returned sender (dropping the
    /// sender opens the gate for good).
    pub(crate) fn gated(self) -> (Self, crossbeam_channel::Sender<()>) {
        let (open, gate) = crossbeam_channel::unbounded();
        (
            Self {
                gate: Some(gate),
                ..self
            },
            open,
        )
    }

    /// The runs so far: for each, the first value of each of its images.
    pub(crate) fn runs(&self) -> Vec<Vec<f32>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The logits the fake answers for an image whose first value is `value`.
    pub(crate) fn logits_of(&self, value: f32) -> Vec<f32> {
        (0..self.classes).map(|c| value * (c + 1) as f32).collect()
    }
}

impl Backend for FakeBackend {
    fn num_classes(&self) -> usize {
        self.classes
    }

    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        let slot = 3 * height * width;
        assert_eq!(input.len(), batch * slot, "the batch tensor's length");
        let firsts: Vec<f32> = input.chunks_exact(slot).map(|image| image[0]).collect();
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(firsts.clone());
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        if firsts.iter().any(|&v| v < 0.0) {
            return Err(InferenceError::Runtime(
                "the fake backend failed this run".into(),
            ));
        }
        Ok(firsts.iter().flat_map(|&v| self.logits_of(v)).collect())
    }
}
