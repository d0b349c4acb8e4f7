//! `inspect`: what a checkpoint or a named variant is, as JSON.

use serde::Serialize;

use super::arch::{Architecture, StageSummary};
use super::footprint::{Footprint, Layout};
use super::{Dialect, Form};

/// The JSON `repvgg-serve inspect` prints.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// The named variant with this body, or null for a custom architecture.
    pub variant: Option<&'static str>,
    /// Naming of the checkpoint's tensors (null for `--variant`).
    pub dialect: Option<Dialect>,
    /// Training (three branches) or deploy (fused) (null for `--variant`).
    pub form: Option<Form>,
    pub num_classes: usize,
    /// Stem first, then stages 1..4.
    pub stages: Vec<StageSummary>,
    pub params_deploy: usize,
    pub params_train: usize,
    pub macs_224: usize,
    /// Expected memory and time to ready when served with `layout`.
    pub footprint: Footprint,
}

impl Inspection {
    pub fn new(
        arch: &Architecture,
        dialect: Option<Dialect>,
        form: Option<Form>,
        layout: Layout,
    ) -> Self {
        Self {
            variant: super::variants::of(arch).map(|v| v.name),
            dialect,
            form,
            num_classes: arch.num_classes,
            stages: arch.stage_summaries(),
            params_deploy: arch.params_deploy(),
            params_train: arch.params_train(),
            macs_224: arch.macs(224),
            footprint: Footprint::estimate(arch, layout),
        }
    }
}
