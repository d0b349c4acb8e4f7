//! Reading checkpoints: `.pth` (torch.save zip + pickle) and `.safetensors`, any dialect.
//!
//! The format is sniffed from the bytes, never from the file name. The result is a flat map of
//! fp32 tensors under official names (`stage1.0.rbr_dense.conv.weight`), with the file's sha256
//! and dialect kept for error messages, the model metadata and the fused-model cache.

mod names;
mod pth;
pub(crate) mod safetensors;
pub(crate) mod unpickle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use names::Dialect;

use super::{ModelError, Tensor};

/// A checkpoint's tensors under official names.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub sha256: String,
    pub dialect: Dialect,
    pub tensors: BTreeMap<String, Tensor>,
}

impl Checkpoint {
    /// Reads and normalises a checkpoint file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Normalises a checkpoint already read into memory (`path` is for messages and `.pth`
    /// tensor data).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ModelError> {
        let sha256 = sha256_hex(bytes);
        let raw = match sniff(bytes) {
            Some(Format::TorchZip) => pth::read(path, bytes)?,
            Some(Format::Safetensors) => safetensors::read(path, bytes)?,
            Some(Format::LegacyPickle) => {
                return Err(ModelError::NotACheckpoint {
                    path: path.to_owned(),
                    reason:
                        "a bare pickle (legacy torch.save before PyTorch 1.6, or pickle.dump); \
                             re-save it with a current torch.save or as .safetensors"
                            .into(),
                })
            }
            None => {
                return Err(ModelError::NotACheckpoint {
                    path: path.to_owned(),
                    reason: "neither a torch.save zip nor a .safetensors file".into(),
                })
            }
        };
        Self::from_named(path, sha256, raw)
    }

    /// Unwraps `module.` prefixes, detects the dialect and translates names to official ones.
    pub fn from_named(
        path: &Path,
        sha256: String,
        raw: BTreeMap<String, Tensor>,
    ) -> Result<Self, ModelError> {
        let unwrapped: BTreeMap<String, Tensor> = raw
            .into_iter()
            .map(|(name, t)| (names::strip_wrappers(&name).to_owned(), t))
            .collect();
        let dialect = Dialect::detect(unwrapped.keys().map(String::as_str)).ok_or_else(|| {
            let sample: Vec<&str> = unwrapped.keys().take(5).map(String::as_str).collect();
            ModelError::UnknownLayout {
                path: path.to_owned(),
                detail: format!(
                    "no RepVGG tensors (expected `stage0.*` or timm's `stem.*`); {} tensors, \
                     first names: {sample:?}",
                    unwrapped.len()
                ),
            }
        })?;
        let tensors = unwrapped
            .into_iter()
            .map(|(name, t)| (dialect.to_official(&name), t))
            .collect();
        Ok(Self {
            path: path.to_owned(),
            sha256,
            dialect,
            tensors,
        })
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The floating-point types checkpoints store weights in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoredFloat {
    F32,
    F16,
    BF16,
    F64,
}

/// Little-endian stored floats as f32.
pub(crate) fn f32_from_le(raw: &[u8], stored: StoredFloat) -> Vec<f32> {
    match stored {
        StoredFloat::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        StoredFloat::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StoredFloat::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StoredFloat::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()) as f32)
            .collect(),
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

enum Format {
    TorchZip,
    Safetensors,
    LegacyPickle,
}

fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Some(Format::TorchZip);
    }
    if bytes.first() == Some(&0x80) && bytes.get(1).is_some_and(|p| (2..=5).contains(p)) {
        return Some(Format::LegacyPickle);
    }
    // safetensors: u64 little-endian header length, then a JSON object.
    let header_len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    (header_len > 1 && bytes.get(8) == Some(&b'{')).then_some(Format::Safetensors)
}
