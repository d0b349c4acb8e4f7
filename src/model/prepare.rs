//! From what the user gave (a checkpoint, an `.onnx` file, or nothing) to ONNX bytes and the
//! facts about the model, with fused models cached by checkpoint sha256.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use onnx_protobuf::{Message, ModelProto};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint, Dialect};
use super::{init, onnx, variants, Form, ModelError, RepVgg};

/// Where the served model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A `.pth` or `.safetensors` checkpoint, training or deploy form, fused at start-up.
    Checkpoint(PathBuf),
    /// An ONNX file written by `repvgg-serve export` (or any RepVGG-compatible ONNX model).
    Onnx(PathBuf),
    /// Deterministic random weights of a named variant: a demo, not a classifier.
    Demo { variant: String, seed: u64 },
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

/// ONNX bytes ready for a session.
#[derive(Debug)]
pub struct PreparedModel {
    pub onnx: Vec<u8>,
    pub info: ModelInfo,
    /// Whether the fused model came from the cache (fusion skipped).
    pub from_cache: bool,
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
            Ok(PreparedModel {
                onnx: bytes,
                info,
                from_cache: false,
            })
        }
        ModelSource::Checkpoint(path) => {
            let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
            let cached = cache_dir.map(|dir| cache_path(dir, &checkpoint::sha256_hex(&bytes)));
            if let Some(cached) = cached.as_deref().filter(|p| p.is_file()) {
                let onnx = std::fs::read(cached).map_err(|e| ModelError::io(cached, e))?;
                if let Ok(info) = info_from_onnx(cached, &onnx) {
                    tracing::info!(cache = %cached.display(), "fused model found in cache");
                    return Ok(PreparedModel {
                        onnx,
                        info,
                        from_cache: true,
                    });
                }
                tracing::warn!(cache = %cached.display(), "ignoring unreadable cache entry");
            }
            let started = Instant::now();
            let (onnx, info) = export_checkpoint(path, &bytes, true)?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                variant = info.variant.as_deref().unwrap_or("custom"),
                "checkpoint fused and exported"
            );
            if let Some(cached) = cached {
                store(&cached, &onnx);
            }
            Ok(PreparedModel {
                onnx,
                info,
                from_cache: false,
            })
        }
        ModelSource::Demo { variant, seed } => {
            let v = variants::find(variant)
                .ok_or_else(|| ModelError::UnknownVariant(variant.clone()))?;
            let ckpt = init::random_checkpoint(v, *seed, 1000);
            let model = RepVgg::from_checkpoint(ckpt)?.fused();
            let source = format!("demo: random {} weights, seed {seed}", v.name);
            let info = describe(&model, None, None, None, source, true);
            let onnx = onnx::export(&model, &metadata(&info));
            Ok(PreparedModel {
                onnx,
                info,
                from_cache: false,
            })
        }
    }
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
    let variant = model.arch.variant();
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
fn info_from_onnx(path: &Path, bytes: &[u8]) -> Result<ModelInfo, ModelError> {
    let proto = ModelProto::parse_from_bytes(bytes).map_err(|e| ModelError::Corrupt {
        path: path.to_owned(),
        format: "ONNX",
        detail: e.to_string(),
    })?;
    let stored = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "repvgg_serve.model_info")
        .and_then(|p| serde_json::from_str::<ModelInfo>(&p.value).ok());
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
        .ok_or_else(|| ModelError::UnknownLayout {
            path: path.to_owned(),
            detail: "the ONNX graph's first output is not [batch, classes]".into(),
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

/// Cache entries are keyed by checkpoint hash and exporter version, so an upgrade re-fuses.
fn cache_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}-v{}.onnx", env!("CARGO_PKG_VERSION")))
}

/// Writes a cache entry atomically; a cache that cannot be written is logged, not fatal.
fn store(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("onnx.part");
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    match result {
        Ok(()) => tracing::info!(cache = %path.display(), "fused model cached"),
        Err(e) => {
            tracing::warn!(cache = %path.display(), error = %e, "could not cache the fused model")
        }
    }
}
