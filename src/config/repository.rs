//! The model repository (`--model-repository DIR`), in Triton's layout, and the plan of what to
//! load from it: scanned and validated whole before anything is loaded, so a mistake anywhere
//! in it stops the start with a message naming the file, and nothing half-applied serves.
//!
//! ```text
//! DIR/
//!   a0/                     a model, served as `a0` (and `a0-tensor` in the v2 protocol)
//!     config.json           optional: labels, resize, crop, max_batch_size, sessions,
//!                           version_policy
//!     1/a0_train.pth        a version: one checkpoint (.pth, .pt, .safetensors) or fused .onnx
//!     2/a0_deploy.safetensors
//!   b3/
//!     7/b3.onnx
//! ```
//!
//! Names starting with `.` are ignored everywhere (a version being copied in can be written as
//! `.3` and renamed to `3` when complete), and so are files beside the models and beside the
//! versions (a README, the labels). A directory that does not fit the layout is an error, not
//! skipped: a typo in a version directory must not silently serve an older version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::ModelSource;

/// The file in a model's directory that configures it.
pub const MODEL_CONFIG: &str = "config.json";

/// Extensions of the one weights file a version directory holds.
const WEIGHTS: &[&str] = &["pth", "pt", "safetensors", "onnx"];

/// `DIR/<model>/config.json`. Every field is optional; unknown fields are refused.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Class names, one per line; relative to the model's directory.
    pub labels: Option<PathBuf>,
    pub resize: Option<u32>,
    pub crop: Option<u32>,
    pub max_batch_size: Option<usize>,
    pub sessions: Option<usize>,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// A canary: requests without a version split between versions by weight, e.g.
    /// `{"1": 90, "2": 10}`; every version named must be served.
    pub traffic_split: Option<BTreeMap<String, u32>>,
}

/// Versions and their weights (at least one above 0).
pub type Split = Vec<(u64, u32)>;

/// Which versions of a model are served, as Triton words it:
/// `{"latest": {"num_versions": 1}}` (the default), `{"all": {}}`,
/// `{"specific": {"versions": [1, 3]}}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VersionPolicy {
    Latest { num_versions: usize },
    All {},
    Specific { versions: Vec<u64> },
}

impl Default for VersionPolicy {
    fn default() -> Self {
        Self::Latest { num_versions: 1 }
    }
}

/// One model of the repository: its settings and the versions its policy serves.
#[derive(Clone, Debug)]
pub struct RepositoryModel {
    pub name: String,
    pub settings: ModelSettings,
    /// Served versions, oldest first, each with its weights file.
    pub versions: Vec<(u64, ModelSource)>,
    /// `traffic_split`, checked against the served versions.
    pub split: Option<Split>,
}

/// Reads and checks the whole repository. The message of an error names the path at fault.
pub fn scan(dir: &Path) -> Result<Vec<RepositoryModel>, String> {
    let mut models = Vec::new();
    for entry in visible_entries(dir)? {
        let path = entry.path();
        if !path.is_dir() {
            continue; // a README or the like beside the models
        }
        models.push(scan_model(&path)?);
    }
    if models.is_empty() {
        return Err(format!(
            "--model-repository {}: no model directories (expected DIR/<model>/<version>/<file>)",
            dir.display()
        ));
    }
    Ok(models)
}

/// One model directory: its settings and the versions its policy serves.
pub fn scan_model(dir: &Path) -> Result<RepositoryModel, String> {
    let name = file_name(dir);
    check_name(&name).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join(MODEL_CONFIG);
    let mut settings = if config.is_file() {
        let text =
            std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        serde_json::from_str::<ModelSettings>(&text)
            .map_err(|e| format!("{}: {e}", config.display()))?
    } else {
        ModelSettings::default()
    };
    check_settings(&mut settings, dir).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut found = Vec::new();
    for entry in visible_entries(dir)? {
        let path = entry.path();
        if !path.is_dir() {
            continue; // config.json, the labels, notes
        }
        let version = file_name(&path)
            .parse::<u64>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| {
                format!(
                    "{}: not a version directory (a positive whole number)",
                    path.display()
                )
            })?;
        found.push((version, weights_file(&path)?));
    }
    found.sort_by_key(|(version, _)| *version);
    let versions = apply_policy(&settings.version_policy, found)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let split = settings
        .traffic_split
        .as_ref()
        .map(|split| check_split(split, &versions))
        .transpose()
        .map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(RepositoryModel {
        name,
        settings,
        versions,
        split,
    })
}

/// Model names are what clients type in URLs: letters, digits, `_`, `.`, `-`; `-tensor` at the
/// end is taken by every model's tensor twin.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    if name.is_empty() || !name.chars().all(ok) || name.starts_with('.') {
        return Err(format!(
            "model name `{name}` must be letters, digits, '_', '.' or '-', not starting with '.'"
        ));
    }
    if name.ends_with("-tensor") {
        return Err(format!(
            "model name `{name}` ends in `-tensor`, the suffix of every model's tensor twin"
        ));
    }
    Ok(())
}

fn check_settings(settings: &mut ModelSettings, dir: &Path) -> Result<(), String> {
    if let Some(labels) = settings.labels.take() {
        let path = dir.join(labels);
        if !path.is_file() {
            return Err(format!("labels {}: no such file", path.display()));
        }
        settings.labels = Some(path);
    }
    if settings.resize == Some(0) || settings.crop == Some(0) {
        return Err("resize and crop must be at least 1".into());
    }
    if let (Some(resize), Some(crop)) = (settings.resize, settings.crop) {
        if crop > resize {
            return Err(format!("crop {crop} is larger than resize {resize}"));
        }
    }
    if let Some(size) = settings.max_batch_size {
        if !(1..=crate::config::serve_args::MAX_BATCH_SIZE).contains(&size) {
            return Err(format!(
                "max_batch_size {size} is outside 1..={}",
                crate::config::serve_args::MAX_BATCH_SIZE
            ));
        }
    }
    if settings.sessions == Some(0) {
        return Err("sessions must be at least 1".into());
    }
    Ok(())
}

fn check_split(
    split: &BTreeMap<String, u32>,
    served: &[(u64, ModelSource)],
) -> Result<Split, String> {
    let mut checked = Vec::with_capacity(split.len());
    for (version, &weight) in split {
        let number = version
            .parse::<u64>()
            .ok()
            .filter(|v| served.iter().any(|(have, _)| have == v))
            .ok_or_else(|| {
                format!("traffic_split names version {version}, which its version_policy does not serve")
            })?;
        checked.push((number, weight));
    }
    if checked.iter().all(|(_, weight)| *weight == 0) {
        return Err("traffic_split gives no version a weight above 0".into());
    }
    Ok(checked)
}

/// The one weights file of a version directory.
fn weights_file(dir: &Path) -> Result<ModelSource, String> {
    let mut files: Vec<PathBuf> = visible_entries(dir)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    let weights = |p: &PathBuf| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WEIGHTS.contains(&e))
    };
    files.retain(weights);
    let [file] = <[PathBuf; 1]>::try_from(files).map_err(|files| {
        format!(
            "{}: a version holds exactly one weights file ({}); found {}",
            dir.display(),
            WEIGHTS
                .iter()
                .map(|e| format!(".{e}"))
                .collect::<Vec<_>>()
                .join(", "),
            files.len()
        )
    })?;
    Ok(if file.extension().is_some_and(|e| e == "onnx") {
        ModelSource::Onnx(file)
    } else {
        ModelSource::Checkpoint(file)
    })
}

fn apply_policy(
    policy: &VersionPolicy,
    found: Vec<(u64, ModelSource)>,
) -> Result<Vec<(u64, ModelSource)>, String> {
    if found.is_empty() {
        return Err("no versions (expected <version>/<weights file>)".into());
    }
    Ok(match policy {
        VersionPolicy::Latest { num_versions: 0 } => {
            return Err("version_policy latest needs num_versions of at least 1".into())
        }
        VersionPolicy::Latest { num_versions } => {
            let skip = found.len().saturating_sub(*num_versions);
            found.into_iter().skip(skip).collect()
        }
        VersionPolicy::All {} => found,
        VersionPolicy::Specific { versions } => {
            if versions.is_empty() {
                return Err("version_policy specific lists no versions".into());
            }
            if let Some(missing) = versions
                .iter()
                .find(|v| !found.iter().any(|(have, _)| have == *v))
            {
                return Err(format!(
                    "version_policy specific names version {missing}, which has no directory"
                ));
            }
            found
                .into_iter()
                .filter(|(v, _)| versions.contains(v))
                .collect()
        }
    })
}

/// A directory's entries, hidden ones (`.name`) left out, in name order.
fn visible_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries = read
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.retain(|e| !e.file_name().to_string_lossy().starts_with('.'));
    entries.sort_by_key(std::fs::DirEntry::file_name);
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for file in files {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"x").expect("write");
        }
        dir
    }

    fn versions(model: &RepositoryModel) -> Vec<u64> {
        model.versions.iter().map(|(v, _)| *v).collect()
    }

    #[test]
    fn the_latest_version_of_each_model_by_default() {
        let dir = repository(&[
            "a0/1/a.pth",
            "a0/2/a.safetensors",
            "a0/.3/a.pth",
            "b3/10/b.onnx",
            "b3/9/b.onnx",
            "README.md",
        ]);
        let models = scan(dir.path()).expect("scan");
        assert_eq!(models.len(), 2);
        assert_eq!(
            (models[0].name.as_str(), versions(&models[0])),
            ("a0", vec![2])
        );
        assert_eq!(
            (models[1].name.as_str(), versions(&models[1])),
            ("b3", vec![10])
        );
        assert!(matches!(models[1].versions[0].1, ModelSource::Onnx(_)));
        assert!(matches!(
            models[0].versions[0].1,
            ModelSource::Checkpoint(_)
        ));
    }

    #[test]
    fn version_policies_pick_versions() {
        let dir = repository(&["m/1/a.pth", "m/2/a.pth", "m/3/a.pth"]);
        let with = |policy: &str| {
            std::fs::write(
                dir.path().join("m/config.json"),
                format!(r#"{{"version_policy": {policy}}}"#),
            )
            .expect("write");
            scan(dir.path()).map(|models| versions(&models[0]))
        };
        assert_eq!(with(r#"{"latest": {"num_versions": 2}}"#), Ok(vec![2, 3]));
        assert_eq!(with(r#"{"all": {}}"#), Ok(vec![1, 2, 3]));
        assert_eq!(
            with(r#"{"specific": {"versions": [3, 1]}}"#),
            Ok(vec![1, 3])
        );
        let missing = with(r#"{"specific": {"versions": [4]}}"#).expect_err("no 4");
        assert!(missing.contains("version 4"), "{missing}");
        let unknown = with(r#"{"newest": {}}"#).expect_err("unknown policy");
        assert!(unknown.contains("config.json"), "{unknown}");
    }

    #[test]
    fn mistakes_are_refused_naming_the_path() {
        for (files, says) in [
            (&["m/1/a.pth", "m/1/b.onnx"][..], "exactly one weights file"),
            (&["m/1/notes.txt"][..], "found 0"),
            (&["m/v2/a.pth"][..], "not a version directory"),
            (&["m/0/a.pth"][..], "not a version directory"),
            (&["m/notes.txt"][..], "no versions"),
            (&["m-tensor/1/a.pth"][..], "-tensor"),
            (&["bad name/1/a.pth"][..], "letters, digits"),
            (&["README.md"][..], "no model directories"),
        ] {
            let dir = repository(files);
            let error = scan(dir.path()).expect_err(says);
            assert!(error.contains(says), "{files:?}: {error}");
        }
    }

    #[test]
    fn settings_are_checked_whole() {
        let dir = repository(&["m/1/a.pth", "m/labels.txt"]);
        let with = |json: &str| {
            std::fs::write(dir.path().join("m/config.json"), json).expect("write");
            scan(dir.path()).map(|models| models[0].settings.clone())
        };
        let settings = with(r#"{"labels": "labels.txt", "resize": 256, "crop": 224}"#)
            .expect("valid settings");
        assert_eq!(settings.labels, Some(dir.path().join("m/labels.txt")));
        assert_eq!((settings.resize, settings.crop), (Some(256), Some(224)));
        for (json, says) in [
            (r#"{"labels": "nope.txt"}"#, "no such file"),
            (r#"{"resize": 200, "crop": 224}"#, "larger than resize"),
            (r#"{"max_batch_size": 0}"#, "outside"),
            (r#"{"sessions": 0}"#, "at least 1"),
            (r#"{"precision": "bf16"}"#, "unknown field"),
            (r#"{"crop": "224"}"#, "invalid type"),
        ] {
            let error = with(json).expect_err(says);
            assert!(
                error.contains(says) && error.contains("config.json"),
                "{json}: {error}"
            );
        }
    }
}
