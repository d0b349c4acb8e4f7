//! `.safetensors` files (timm weights on the Hugging Face hub, and what `init` writes).

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::super::{ModelError, Tensor};
use super::{f32_from_le, StoredFloat};

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
        let stored = match view.dtype() {
            Dtype::F32 => StoredFloat::F32,
            Dtype::F16 => StoredFloat::F16,
            Dtype::BF16 => StoredFloat::BF16,
            Dtype::F64 => StoredFloat::F64,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_owned(),
                    tensor: name.to_owned(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        let data = f32_from_le(raw, stored);
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
