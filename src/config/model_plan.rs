//! What is served, resolved: one [`ModelPlan`] per model version, its settings taken from the
//! repository's `config.json` where it has them and from the flags ([`PlanDefaults`]) where it
//! is silent. `--checkpoint` / `--model` make one plan; a repository makes one per version its
//! policies serve, at start and at every load.

use std::path::PathBuf;

use super::repository::{ModelSettings, RepositoryModel};
use crate::inference::precision::Precision;
use crate::model::ModelSource;

/// One model version to load and serve, every setting resolved: the repository's
/// `config.json` over the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelPlan {
    pub name: String,
    pub version: u64,
    pub source: ModelSource,
    pub labels: Option<PathBuf>,
    /// Overrides of the model's resize / crop.
    pub resize: Option<u32>,
    pub crop: Option<u32>,
    pub max_batch_size: usize,
    pub sessions: usize,
    /// Intra-op threads per session.
    pub intra_threads: usize,
}

/// What a model version takes from the flags where its `config.json` is silent.
#[derive(Clone, Debug)]
pub struct PlanDefaults {
    pub(super) resize: Option<u32>,
    pub(super) crop: Option<u32>,
    pub(super) max_batch_size: usize,
    pub(super) sessions: Option<usize>,
    pub(super) intra_threads: Option<usize>,
    pub(super) cores: usize,
    pub(super) precision: Precision,
}

impl PlanDefaults {
    /// One version, its settings resolved.
    pub fn plan(
        &self,
        name: String,
        version: u64,
        source: ModelSource,
        settings: ModelSettings,
    ) -> ModelPlan {
        let sessions = settings
            .sessions
            .or(self.sessions)
            .unwrap_or(match self.precision {
                Precision::Fp32 => self.cores.min(2),
                Precision::Bf16 => 1,
            });
        ModelPlan {
            name,
            version,
            source,
            labels: settings.labels,
            resize: settings.resize.or(self.resize),
            crop: settings.crop.or(self.crop),
            max_batch_size: settings.max_batch_size.unwrap_or(self.max_batch_size),
            sessions,
            intra_threads: self.intra_threads.unwrap_or((self.cores / sessions).max(1)),
        }
    }

    /// Every version a repository model's policy serves.
    pub fn plans(&self, model: RepositoryModel) -> Vec<ModelPlan> {
        let RepositoryModel {
            name,
            settings,
            versions,
            ..
        } = model;
        versions
            .into_iter()
            .map(|(version, source)| self.plan(name.clone(), version, source, settings.clone()))
            .collect()
    }
}
