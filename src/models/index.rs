//! `POST /v2/repository/index`: every version the repository holds (and every served one), with
//! its state and, when it is not served, why.

use serde::Serialize;

use super::control::Control;
use super::poll::model_dirs;

/// One row of `POST /v2/repository/index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    /// `READY` (served) or `UNAVAILABLE`.
    pub state: &'static str,
    /// Why a version is not served (empty when it is).
    pub reason: String,
}

impl Control {
    /// Every version in the repository (and every served one), with its state.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let served = self.models.all();
        let reasons = self
            .reasons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut entries: Vec<IndexEntry> = served
            .iter()
            .map(|s| IndexEntry {
                name: s.name.clone(),
                version: s.version.to_string(),
                state: "READY",
                reason: String::new(),
            })
            .collect();
        if !ready_only {
            for (name, version) in self.on_disk() {
                if served
                    .iter()
                    .any(|s| s.name == name && s.version == version)
                {
                    continue;
                }
                let reason = reasons.get(&name).cloned().unwrap_or_else(|| {
                    "not served (not loaded, or left out by its version_policy)".into()
                });
                entries.push(IndexEntry {
                    name,
                    version: version.to_string(),
                    state: "UNAVAILABLE",
                    reason,
                });
            }
        }
        entries.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        entries
    }

    /// (model, version) of every version directory in the repository.
    fn on_disk(&self) -> Vec<(String, u64)> {
        let Some(repository) = &self.config.repository else {
            return Vec::new();
        };
        model_dirs(repository)
            .into_iter()
            .flat_map(|model| {
                std::fs::read_dir(repository.join(&model))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
                    .map(|version| (model.clone(), version))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
