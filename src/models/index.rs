//! `POST /v2/repository/index`: every version the repository holds (and every served one), with
//! its state and, when it is not served, why.

use std::cmp::Ordering;

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
        entries.sort_by(in_order);
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

/// By model name, then by version as a number (9 before 10).
fn in_order(a: &IndexEntry, b: &IndexEntry) -> Ordering {
    let number = |e: &IndexEntry| e.version.parse::<u64>().ok();
    a.name
        .cmp(&b.name)
        .then_with(|| number(a).cmp(&number(b)))
        .then_with(|| a.version.cmp(&b.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_listed_in_numeric_order_within_each_model() {
        let entry = |name: &str, version: &str| IndexEntry {
            name: name.into(),
            version: version.into(),
            state: "READY",
            reason: String::new(),
        };
        let mut entries = [
            entry("b", "1"),
            entry("a", "10"),
            entry("a", "9"),
            entry("a", "100"),
        ];
        entries.sort_by(in_order);
        let order: Vec<_> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.version.as_str()))
            .collect();
        assert_eq!(order, [("a", "9"), ("a", "10"), ("a", "100"), ("b", "1")]);
    }
}
