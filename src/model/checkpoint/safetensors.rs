//! `.safetensors` files (timm weights on the Hugging Face hub, and what `init` writes).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::super::{ModelError, Tensor};

/// Reads every floating-point tensor, converted to fp32, keyed by its name in the file.
pub fn read(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Corrupt {
        path: path.to_owned(),
        format: "safetensors",
        detail: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in file.iter() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()) as f32)
                .collect(),
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_owned(),
                    tensor: name.to_owned(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        out.insert(name.to_owned(), Tensor::new(view.shape().to_vec(), data));
    }
    Ok(out)
}

/// Writes fp32 tensors as a `.safetensors` file with string metadata.
pub fn write(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: std::collections::HashMap<String, String>,
) -> Result<(), ModelError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Corrupt {
            path: path.to_owned(),
            format: "safetensors",
            detail: e.to_string(),
        })?;
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(io) => ModelError::io(path, io),
        other => ModelError::Corrupt {
            path: path.to_owned(),
            format: "safetensors",
            detail: other.to_string(),
        },
    })
}
