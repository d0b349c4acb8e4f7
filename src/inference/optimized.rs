//! ONNX Runtime's own optimisation of the fused graph (NCHWc layout, fused activations), made
//! once by a throw-away session and saved as a small graph plus one weights file. Serving
//! sessions load it with optimisation off (nothing left to do) and share its weights
//! ([`super::shared`]).
//!
//! The result depends on the runtime build and on the CPU (NCHWc block size follows the vector
//! width), so a cache entry lives under a key of runtime build, precision and CPU:
//! `<derived cache>/<key>/{model.onnx, weights.bin, manifest.json}`. An entry whose manifest
//! disagrees with the running process is never read; a missing or incomplete one is rebuilt.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{runtime, InferenceError};
use crate::model::FusedGraph;

pub(crate) const GRAPH_FILE: &str = "model.onnx";
pub(crate) const WEIGHTS_FILE: &str = "weights.bin";
const MANIFEST_FILE: &str = "manifest.json";

/// The numeric precision the engine computes in (part of every cache key).
pub(crate) const PRECISION: &str = "fp32";

/// What an optimised graph was made by and for; an entry is reused only when all of it matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RuntimeKey {
    /// The runtime library's file name (with its version) and build string (commit, type).
    pub runtime: String,
    pub precision: String,
    /// The CPU model and feature flags the layout was chosen for.
    pub cpu: String,
}

impl RuntimeKey {
    /// The key of this process: the loaded runtime, fp32, this CPU.
    pub(crate) fn current() -> Self {
        Self::current_for(PRECISION)
    }

    /// The key of this process for an engine computing in `precision`.
    pub(crate) fn current_for(precision: &str) -> Self {
        Self {
            runtime: runtime::loaded_build().unwrap_or_else(|| ort::info().to_owned()),
            precision: precision.to_owned(),
            cpu: cpu_fingerprint(),
        }
    }

    /// The folder name: readable version and precision, then a hash of the whole key.
    pub(crate) fn dir_name(&self) -> String {
        let version = self
            .runtime
            .split(" | ")
            .next()
            .and_then(|name| name.split_once(".so."))
            .map_or("unknown", |(_, version)| version);
        let digest = Sha256::digest(serde_json::to_vec(self).expect("key serialises"));
        let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("ort-{version}-{}-{short}", self.precision)
    }
}

/// The CPU model name and flags (Linux `/proc/cpuinfo`, first processor); elsewhere the
/// architecture only, which is still a safe key: the graph is then re-made rarely, not wrongly.
fn cpu_fingerprint() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name| super::precision::cpuinfo_field(&cpuinfo, name);
    format!(
        "{} | {} | {}",
        std::env::consts::ARCH,
        field("model name"),
        field("flags")
    )
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    key: RuntimeKey,
    weights_bytes: u64,
}

/// A folder holding `model.onnx` and `weights.bin`; a temporary one is removed when dropped.
#[derive(Debug)]
pub(crate) struct OptimizedGraph {
    pub dir: PathBuf,
    pub from_cache: bool,
    _temp: Option<tempfile::TempDir>,
}

/// The optimised graph for `graph`: from `cache` when an entry for this process's key is there,
/// otherwise made now (into `cache`, or a temporary folder without one).
pub(crate) fn obtain(
    graph: &FusedGraph,
    cache: Option<&Path>,
    library: Option<&Path>,
) -> Result<OptimizedGraph, InferenceError> {
    runtime::environment(library, runtime::Runtime::Cpu)?;
    let key = RuntimeKey::current();
    let Some(cache) = cache else {
        let temp = tempfile::Builder::new()
            .prefix("repvgg-serve-optimized-")
            .tempdir()
            .map_err(|e| io_error("creating a temporary folder", &std::env::temp_dir(), &e))?;
        optimize(graph, temp.path(), &key, library)?;
        return Ok(OptimizedGraph {
            dir: temp.path().to_owned(),
            from_cache: false,
            _temp: Some(temp),
        });
    };
    let dir = cache.join(key.dir_name());
    if is_complete(&dir, &key) {
        tracing::info!(cache = %dir.display(), "optimised graph found in cache");
        return Ok(OptimizedGraph {
            dir,
            from_cache: true,
            _temp: None,
        });
    }
    // Build beside the final place, then rename: a reader never sees half an entry.
    std::fs::create_dir_all(cache).map_err(|e| io_error("creating", cache, &e))?;
    let part = tempfile::Builder::new()
        .prefix(".part-")
        .tempdir_in(cache)
        .map_err(|e| io_error("creating a folder in", cache, &e))?;
    optimize(graph, part.path(), &key, library)?;
    if is_complete(&dir, &key) {
        // Another process sharing the cache finished first: use its entry, drop ours.
        return Ok(OptimizedGraph {
            dir,
            from_cache: false,
            _temp: None,
        });
    }
    if dir.exists() {
        // Incomplete, or made for another key under this name: replace it.
        let _ = std::fs::remove_dir_all(&dir);
    }
    match std::fs::rename(part.path(), &dir) {
        Ok(()) => {
            tracing::info!(cache = %dir.display(), "optimised graph cached");
            Ok(OptimizedGraph {
                dir,
                from_cache: false,
                _temp: None,
            })
        }
        Err(e) => {
            // Another process won the race, or the cache is read-only: serve from the part.
            tracing::warn!(cache = %dir.display(), error = %e, "could not cache the optimised graph");
            Ok(OptimizedGraph {
                dir: part.path().to_owned(),
                from_cache: false,
                _temp: Some(part),
            })
        }
    }
}

/// Whether `dir` holds a whole entry made for `key`.
fn is_complete(dir: &Path, key: &RuntimeKey) -> bool {
    let manifest = std::fs::read(dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|m| serde_json::from_slice::<Manifest>(&m).ok());
    let weights = std::fs::metadata(dir.join(WEIGHTS_FILE)).map(|m| m.len());
    match (manifest, weights) {
        (Some(m), Ok(len)) => {
            m.key == *key && m.weights_bytes == len && dir.join(GRAPH_FILE).is_file()
        }
        _ => false,
    }
}

/// Runs ONNX Runtime's full optimisation once and saves the graph with every initializer in
/// `weights.bin` (large ones page-aligned, as ONNX Runtime writes them).
fn optimize(
    graph: &FusedGraph,
    dir: &Path,
    key: &RuntimeKey,
    library: Option<&Path>,
) -> Result<(), InferenceError> {
    let env = runtime::environment(library, runtime::Runtime::Cpu)?;
    let started = std::time::Instant::now();
    let out = dir.join(GRAPH_FILE);
    let builder = Session::builder(env)
        .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::All)?))
        .and_then(|b| Ok(b.with_intra_threads(1)?))
        .and_then(|b| Ok(b.with_optimized_model_path(&out)?))
        .and_then(|b| {
            Ok(b.with_config_entry(
                "session.optimized_model_external_initializers_file_name",
                WEIGHTS_FILE,
            )?)
        })
        .and_then(|b| {
            Ok(b.with_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes",
                "0",
            )?)
        });
    let session = match graph {
        FusedGraph::Bytes(bytes) => builder.and_then(|mut b| b.commit_from_memory(bytes)),
        FusedGraph::File(path) => builder.and_then(|mut b| b.commit_from_file(path)),
    }
    .map_err(|e| InferenceError::Runtime(format!("cannot optimise the graph: {e}")))?;
    drop(session);
    let weights = dir.join(WEIGHTS_FILE);
    let weights_bytes = std::fs::metadata(&weights)
        .map_err(|e| io_error("reading", &weights, &e))?
        .len();
    let manifest = serde_json::to_vec_pretty(&Manifest {
        key: key.clone(),
        weights_bytes,
    })
    .expect("manifest serialises");
    let path = dir.join(MANIFEST_FILE);
    std::fs::write(&path, manifest).map_err(|e| io_error("writing", &path, &e))?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        weights_bytes,
        "graph optimised by ONNX Runtime"
    );
    Ok(())
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> InferenceError {
    InferenceError::Runtime(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RuntimeKey {
        RuntimeKey {
            runtime: "libonnxruntime.so.1.31.1 | ORT Build Info: git-commit-id=abc".into(),
            precision: "fp32".into(),
            cpu: "x86_64 | AMD EPYC | avx512f avx512_bf16".into(),
        }
    }

    #[test]
    fn key_names_the_version_and_precision() {
        assert!(key().dir_name().starts_with("ort-1.31.1-fp32-"));
    }

    #[test]
    fn another_runtime_precision_or_cpu_gets_another_folder() {
        let base = key().dir_name();
        let mut other = key();
        other.runtime = other.runtime.replace("1.31.1", "1.30.0");
        assert_ne!(other.dir_name(), base);
        let mut other = key();
        other.runtime = other.runtime.replace("abc", "abd");
        assert_ne!(other.dir_name(), base);
        let mut other = key();
        other.precision = "bf16".into();
        assert_ne!(other.dir_name(), base);
        let mut other = key();
        other.cpu = other.cpu.replace(" avx512_bf16", "");
        assert_ne!(other.dir_name(), base);
    }
}
