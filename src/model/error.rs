//! The model layer's one error type: every failure names the file and, where there is one,
//! the tensor.

use std::path::PathBuf;

/// Why a checkpoint could not be read, understood, fused or exported.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a checkpoint: {reason}")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{path}: corrupt or truncated {format} file: {detail}")]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    #[error(
        "{path}: refused to load: the pickle references `{global}`, which a tensor checkpoint \
         never needs (only torch tensor/storage rebuilders and OrderedDict are allowed); \
         re-save the state_dict alone with torch.save(model.state_dict(), ...) or as .safetensors"
    )]
    UnsafePickle { path: PathBuf, global: String },
    #[error("{path}: unknown layout: {detail}")]
    UnknownLayout { path: PathBuf, detail: String },
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    WrongShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("{path}: tensor `{tensor}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error(
        "{path}: tensor `{tensor}` has shape {shape:?}: {what}; every RepVGG weight has at least \
         one dimension and no empty one{hint}",
        what = if shape.is_empty() { "a scalar" } else { "empty" },
        hint = if tensor.contains("linear") || tensor.contains("head") {
            " (a classifier needs at least one class)"
        } else {
            ""
        }
    )]
    EmptyTensor {
        path: PathBuf,
        tensor: String,
        shape: Vec<usize>,
    },
    #[error(
        "{path}: --unfused needs a training checkpoint; this one is already fused (deploy form)"
    )]
    AlreadyFused { path: PathBuf },
    #[error("unknown variant `{0}` (known: {known})", known = crate::model::variants::names().join(", "))]
    UnknownVariant(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
