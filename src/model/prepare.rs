//! From what the user gave (a checkpoint, an `.onnx` file, or nothing) to a fused ONNX graph
//! and the facts about the model, with fused models cached by checkpoint sha256.
//!
//! Cache layout (`--cache-dir`), one entry per checkpoint content and exporter version:
//!
//! ```text
//! <sha256>-v<version>.onnx      the fused graph (portable)
//! <sha256>-v<version>.json      its ModelInfo, so a cached start never parses the graph
//! <sha256>-v<version>.engines/  what the inference layer derives from the graph (see
//!                               inference::optimized), keyed there by runtime, precision, CPU
//! ```
//!
//! A cached start hashes the checkpoint (streamed, SHA-NI where the CPU has it) and reads
//! nothing else of it; a changed file has another hash and is fused again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use onnx_protobuf::{Message, ModelProto};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::{self, hex, Checkpoint, Dialect};
use super::{init, onnx, variants, Form, ModelError, RepVgg};

/// Where the served model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A `.pth` or `.safetensors` checkpoint, training or deploy form, fused at start-up.
    Checkpoint(PathBuf),
    /// An ONNX file written by `repvgg-serve export` (or any RepVGG-compatible ONNX model).
    Onnx(PathBuf),
    /// Deterministic random weights of a named variant: a demo, not a classifier.
    Demo { variant: String, seed: u64 },
}

impl ModelSource {
    /// The file the weights come from (none for the demo).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Checkpoint(path) | Self::Onnx(path) => Some(path),
            Self::Demo { .. } => None,
        }
    }
}

/// What the service knows about the model it serves (also written into the ONNX metadata).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub variant: Option<String>,
    pub num_classes: usize,
    pub checkpoint_sha256: Option<String>,
    pub source: String,
    /// True when the weights are random (no checkpoint given): predictions mean nothing.
    pub demo: bool,
    pub fused: bool,
    pub dialect: Option<Dialect>,
    pub form: Option<Form>,
    /// Evaluation resize (shorter side) and centre crop of the variant (D2se: 320/320).
    pub resize: u32,
    pub crop: u32,
}

/// The fused graph: in memory when just made (or read from the user's file), or the cache file.
#[derive(Debug)]
pub enum FusedGraph {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl FusedGraph {
    /// The ONNX bytes (read from the file when it is one).
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>, ModelError> {
        match self {
            Self::Bytes(bytes) => Ok(Cow::Borrowed(bytes)),
            Self::File(path) => std::fs::read(path)
                .map(Cow::Owned)
                .map_err(|e| ModelError::io(path, e)),
        }
    }
}

/// A fused graph ready for sessions.
#[derive(Debug)]
pub struct PreparedModel {
    pub graph: FusedGraph,
    pub info: ModelInfo,
    /// Whether the fused model came from the cache (fusion skipped).
    pub from_cache: bool,
    /// Folder where the inference layer may cache what it derives from this graph; `None`
    /// when nothing is cached (`--no-cache`, demo weights).
    pub derived_cache: Option<PathBuf>,
}

/// Loads, fuses and exports the model, using and filling `cache_dir` for checkpoints.
pub fn prepare(
    source: &ModelSource,
    cache_dir: Option<&Path>,
) -> Result<PreparedModel, ModelError> {
    match source {
        ModelSource::Onnx(path) => {
            let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
            let info = info_from_onnx(path, &bytes)?;
            let derived_cache = cache_dir.map(|dir| {
                let stem = format!("onnx-{}", checkpoint::sha256_hex(&bytes));
                CacheEntry::new(dir, &stem).derived()
            });
            Ok(PreparedModel {
                graph: FusedGraph::Bytes(bytes),
                info,
                from_cache: false,
                derived_cache,
            })
        }
        ModelSource::Checkpoint(path) => match cache_dir {
            None => fuse_checkpoint(path, None),
            Some(dir) => {
                let started = Instant::now();
                let sha256 = sha256_file(path)?;
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "checkpoint hashed"
                );
                let entry = CacheEntry::new(dir, &sha256);
                match entry.load() {
                    Some(info) => {
                        tracing::info!(cache = %entry.onnx.display(), "fused model found in cache");
                        Ok(PreparedModel {
                            graph: FusedGraph::File(entry.onnx.clone()),
                            info,
                            from_cache: true,
                            derived_cache: Some(entry.derived()),
                        })
                    }
                    None => fuse_checkpoint(path, Some(dir)),
                }
            }
        },
        ModelSource::Demo { variant, seed } => {
            let v = variants::find(variant)
                .ok_or_else(|| ModelError::UnknownVariant(variant.clone()))?;
            let ckpt = init::random_checkpoint(v, *seed, 1000);
            let model = RepVgg::from_checkpoint(ckpt)?.fused();
            let source = format!("demo: random {} weights, seed {seed}", v.name);
            let info = describe(&model, None, None, None, source, true);
            let onnx = onnx::export(&model, &metadata(&info));
            Ok(PreparedModel {
                graph: FusedGraph::Bytes(onnx),
                info,
                from_cache: false,
                derived_cache: None,
            })
        }
    }
}

/// Reads, fuses and exports a checkpoint; caches the result under the hash of the bytes that
/// were fused (not of an earlier read: a file replaced meanwhile cannot poison the cache).
fn fuse_checkpoint(path: &Path, cache_dir: Option<&Path>) -> Result<PreparedModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let started = Instant::now();
    let (onnx, info) = export_checkpoint(path, &bytes, true)?;
    drop(bytes);
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        variant = info.variant.as_deref().unwrap_or("custom"),
        "checkpoint fused and exported"
    );
    let Some((dir, sha256)) = cache_dir.zip(info.checkpoint_sha256.as_deref()) else {
        return Ok(PreparedModel {
            graph: FusedGraph::Bytes(onnx),
            info,
            from_cache: false,
            derived_cache: None,
        });
    };
    let entry = CacheEntry::new(dir, sha256);
    // Once cached, the graph is read from the file by whoever needs it: the bytes are dropped
    // here rather than held through session building (B3: 444 MB less at the start-up peak).
    let graph = if entry.store(&onnx, &info) {
        FusedGraph::File(entry.onnx.clone())
    } else {
        FusedGraph::Bytes(onnx)
    };
    Ok(PreparedModel {
        graph,
        info,
        from_cache: false,
        derived_cache: Some(entry.derived()),
    })
}

/// The sha256 of a file, streamed (a large checkpoint is never held in memory for it).
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Loads a checkpoint (already read into `bytes`) and writes its network as ONNX: fused, or
/// with `fuse = false` the three-branch training graph (a deploy checkpoint cannot be unfused).
pub fn export_checkpoint(
    path: &Path,
    bytes: &[u8],
    fuse: bool,
) -> Result<(Vec<u8>, ModelInfo), ModelError> {
    let ckpt = Checkpoint::from_bytes(path, bytes)?;
    let (sha256, dialect) = (ckpt.sha256.clone(), ckpt.dialect);
    let model = RepVgg::from_checkpoint(ckpt)?;
    let form = model.form;
    if !fuse && form == Form::Deploy {
        return Err(ModelError::AlreadyFused {
            path: path.to_owned(),
        });
    }
    let model = if fuse { model.fused() } else { model };
    let source = path.display().to_string();
    let info = describe(
        &model,
        Some(sha256),
        Some(dialect),
        Some(form),
        source,
        false,
    );
    Ok((onnx::export(&model, &metadata(&info)), info))
}

/// `repvgg-serve init`: writes a random training-form checkpoint as `.safetensors`.
pub fn write_random_checkpoint(
    variant: &str,
    seed: u64,
    num_classes: usize,
    output: &Path,
) -> Result<(), ModelError> {
    let v = variants::find(variant).ok_or_else(|| ModelError::UnknownVariant(variant.into()))?;
    let tensors = init::random_training_weights(&v.architecture(num_classes), seed);
    let metadata = HashMap::from([
        ("variant".to_owned(), v.name.to_owned()),
        ("seed".to_owned(), seed.to_string()),
        (
            "note".to_owned(),
            "random weights from repvgg-serve init".to_owned(),
        ),
    ]);
    checkpoint::safetensors::write(output, &tensors, metadata)
}

fn describe(
    model: &RepVgg,
    sha256: Option<String>,
    dialect: Option<Dialect>,
    form: Option<Form>,
    source: String,
    demo: bool,
) -> ModelInfo {
    let variant = super::variants::of(&model.arch);
    ModelInfo {
        variant: variant.map(|v| v.name.to_owned()),
        num_classes: model.arch.num_classes,
        checkpoint_sha256: sha256,
        source,
        demo,
        fused: model.form == Form::Deploy,
        dialect,
        form,
        resize: variant.map_or(256, |v| v.resize),
        crop: variant.map_or(224, |v| v.crop),
    }
}

/// ONNX metadata properties: the model info as one JSON value plus the headline keys.
fn metadata(info: &ModelInfo) -> Vec<(&'static str, String)> {
    vec![
        ("variant", info.variant.clone().unwrap_or_default()),
        (
            "checkpoint_sha256",
            info.checkpoint_sha256.clone().unwrap_or_default(),
        ),
        ("demo", info.demo.to_string()),
        ("fused", info.fused.to_string()),
        (
            "repvgg_serve.model_info",
            serde_json::to_string(info).expect("model info serialises"),
        ),
    ]
}

/// Reads model facts back from an ONNX file: our own metadata when present, otherwise the
/// output shape alone.
pub(super) fn info_from_onnx(path: &Path, bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    let proto = ModelProto::parse_from_bytes(bytes).map_err(|e| ModelError::Corrupt {
        path: path.to_owned(),
        format: "ONNX",
        detail: e.to_string(),
    })?;
    let stored = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "repvgg_serve.model_info")
        .and_then(|p| serde_json::from_str::<ModelInfo>(&p.value).ok())
        .filter(|info| info.num_classes > 0);
    if let Some(stored) = stored {
        return Ok(stored);
    }
    let num_classes = proto
        .graph
        .output
        .first()
        .and_then(|o| match &o.type_.value {
            Some(onnx_protobuf::type_proto::Value::TensorType(t)) => t.shape.dim.get(1).cloned(),
            _ => None,
        })
        .and_then(|d| match d.value {
            Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(n)) => {
                usize::try_from(n).ok()
            }
            _ => None,
        })
        .filter(|&classes| classes > 0)
        .ok_or_else(|| ModelError::UnknownLayout {
            path: path.to_owned(),
            detail: "the ONNX graph's first output is not [batch, classes] with classes >= 1"
                .into(),
        })?;
    Ok(ModelInfo {
        variant: None,
        num_classes,
        checkpoint_sha256: None,
        source: path.display().to_string(),
        demo: false,
        fused: true,
        dialect: None,
        form: None,
        resize: 256,
        crop: 224,
    })
}

/// One cache entry: keyed by content hash and exporter version, so an upgrade re-fuses.
struct CacheEntry {
    onnx: PathBuf,
    info: PathBuf,
}

impl CacheEntry {
    fn new(dir: &Path, sha256: &str) -> Self {
        let stem = format!("{sha256}-v{}", env!("CARGO_PKG_VERSION"));
        Self {
            onnx: dir.join(format!("{stem}.onnx")),
            info: dir.join(format!("{stem}.json")),
        }
    }

    fn derived(&self) -> PathBuf {
        self.onnx.with_extension("engines")
    }

    /// The cached model's facts, when the entry is complete and readable.
    fn load(&self) -> Option<ModelInfo> {
        if !self.onnx.is_file() {
            return None;
        }
        let stored = std::fs::read(&self.info)
            .ok()
            .and_then(|json| serde_json::from_slice::<ModelInfo>(&json).ok());
        // Entries written before the JSON existed: read the facts from the graph once.
        let info = stored.or_else(|| {
            let onnx = std::fs::read(&self.onnx).ok()?;
            let info = info_from_onnx(&self.onnx, &onnx).ok()?;
            write_atomically(&self.info, &serde_json::to_vec(&info).ok()?).ok()?;
            Some(info)
        });
        if info.is_none() {
            tracing::warn!(cache = %self.onnx.display(), "ignoring unreadable cache entry");
        }
        info
    }

    /// Writes the entry; a cache that cannot be written is logged, not fatal. True when written.
    fn store(&self, onnx: &[u8], info: &ModelInfo) -> bool {
        let json = serde_json::to_vec(info).expect("model info serialises");
        match write_atomically(&self.onnx, onnx).and_then(|()| write_atomically(&self.info, &json))
        {
            Ok(()) => {
                tracing::info!(cache = %self.onnx.display(), "fused model cached");
                true
            }
            Err(e) => {
                tracing::warn!(cache = %self.onnx.display(), error = %e, "could not cache the fused model");
                false
            }
        }
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file (also when
/// several processes share the cache folder).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map(drop).map_err(|e| e.error)
}
