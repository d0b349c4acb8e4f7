//! `torch.save` files (zip + pickle), read without executing anything.
//!
//! A pickle is a program: `torch.load` would import and call whatever globals it names. Here
//! candle's pickle reader only *describes* the program as a tree of objects; this module then
//! refuses any file whose tree names a global outside [`allowed_global`] before a single tensor
//! is read, and reads tensor bytes straight from the zip's `data/` entries.

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::DType;

use super::super::{ModelError, Tensor};
use super::{f32_from_le, StoredFloat};

/// Keys under which training scripts store the state dict in a wrapping dict.
const WRAPPER_KEYS: &[&str] = &["state_dict", "model", "model_state_dict", "state_dict_ema"];

/// Globals a tensor checkpoint needs; everything else is refused.
fn allowed_global(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("collections", "OrderedDict")
            | ("torch._utils", "_rebuild_tensor_v2")
            | ("torch._utils", "_rebuild_parameter")
            | ("torch._tensor", "_rebuild_from_type_v2")
            | ("torch.nn.parameter", "Parameter")
    ) || (module == "torch" && name.ends_with("Storage"))
}

/// Reads every floating-point tensor of a `torch.save` zip, keyed by its name in the file.
pub fn read(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let corrupt = |detail: String| ModelError::Corrupt {
        path: path.to_owned(),
        format: "torch.save zip",
        detail,
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(e.to_string()))?;
    let pickle_name = zip
        .file_names()
        .filter_map(Result::ok)
        .find(|name| name.ends_with("data.pkl"))
        .map(|name| name.into_owned())
        .ok_or_else(|| ModelError::NotACheckpoint {
            path: path.to_owned(),
            reason: "zip archive without a data.pkl (not written by torch.save)".into(),
        })?;
    let mut pickle = Vec::new();
    zip.by_name(&pickle_name)
        .and_then(|mut entry| Ok(entry.read_to_end(&mut pickle)?))
        .map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;

    let mut stack = Stack::empty();
    stack
        .read_loop(&mut BufReader::new(pickle.as_slice()))
        .map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;
    let root = stack
        .finalize()
        .map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;
    if let Some(global) = forbidden_global(&root) {
        return Err(ModelError::UnsafePickle {
            path: path.to_owned(),
            global,
        });
    }
    let key = wrapper_key(&root);
    let state = match (root, key) {
        (Object::Dict(entries), Some(key)) => entries
            .into_iter()
            .find(|(k, _)| matches!(k, Object::Unicode(s) if s == key))
            .map(|(_, v)| v)
            .unwrap_or(Object::None),
        (root, _) => root,
    };
    let Object::Dict(entries) = state else {
        return Err(ModelError::NotACheckpoint {
            path: path.to_owned(),
            reason: "the pickle holds no state dict (a dict of tensors)".into(),
        });
    };
    // Tensor bytes come from the zip in memory, the same bytes that were hashed and checked:
    // a file replaced on disk meanwhile cannot change what is loaded.
    let dir_name = PathBuf::from(pickle_name.strip_suffix(".pkl").unwrap_or(&pickle_name));
    let mut out = BTreeMap::new();
    for (name, value) in entries {
        let info = value
            .into_tensor_info(name, &dir_name)
            .map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;
        let Some(info) = info else {
            continue; // not a tensor (an epoch counter, a config value)
        };
        if info.name.ends_with("num_batches_tracked") {
            continue;
        }
        if !matches!(
            info.dtype,
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(ModelError::UnsupportedDtype {
                path: path.to_owned(),
                tensor: info.name.clone(),
                dtype: format!("{:?}", info.dtype),
            });
        }
        let data = read_tensor(&mut zip, &info)
            .map_err(|e| corrupt(format!("tensor `{}`: {e}", info.name)))?;
        out.insert(info.name, Tensor::new(info.layout.dims().to_vec(), data));
    }
    Ok(out)
}

/// One tensor's values as f32, read from its storage entry in the zip (C- or Fortran-ordered;
/// the storage offset counts elements, as PyTorch writes it).
fn read_tensor(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    info: &TensorInfo,
) -> Result<Vec<f32>, String> {
    let mut reader = zip.by_name(&info.path).map_err(|e| e.to_string())?;
    let layout = &info.layout;
    let fortran = layout.is_fortran_contiguous();
    let rank = layout.shape().rank();
    if !layout.is_contiguous() && !fortran {
        return Err(format!("non-contiguous storage layout {layout:?}"));
    }
    let skip = (layout.start_offset() * info.dtype.size_in_bytes()) as u64;
    std::io::copy(&mut reader.by_ref().take(skip), &mut std::io::sink())
        .map_err(|e| e.to_string())?;
    let size = info.dtype.size_in_bytes();
    let mut raw = vec![0u8; layout.shape().elem_count() * size];
    reader.read_exact(&mut raw).map_err(|e| e.to_string())?;
    let stored = match info.dtype {
        DType::F32 => StoredFloat::F32,
        DType::F16 => StoredFloat::F16,
        DType::BF16 => StoredFloat::BF16,
        DType::F64 => StoredFloat::F64,
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    let values = f32_from_le(&raw, stored);
    if rank > 1 && fortran {
        // Stored column-major: read as the reversed shape, then reverse the axes.
        let reversed: Vec<usize> = layout.dims().iter().rev().copied().collect();
        let order: Vec<usize> = (0..rank).rev().collect();
        return candle_core::Tensor::from_vec(values, reversed, &candle_core::Device::Cpu)
            .and_then(|t| t.permute(order)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| e.to_string());
    }
    Ok(values)
}

/// The first global in the object tree that is not allowed, as `module.name`.
fn forbidden_global(object: &Object) -> Option<String> {
    match object {
        Object::Class {
            module_name,
            class_name,
        } => (!allowed_global(module_name, class_name))
            .then(|| format!("{module_name}.{class_name}")),
        Object::Tuple(items) | Object::List(items) => items.iter().find_map(forbidden_global),
        Object::Dict(entries) => entries
            .iter()
            .find_map(|(k, v)| forbidden_global(k).or_else(|| forbidden_global(v))),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            forbidden_global(callable).or_else(|| forbidden_global(args))
        }
        Object::PersistentLoad(inner) => forbidden_global(inner),
        _ => None,
    }
}

/// The key of the wrapped state dict when the root is `{"state_dict": {...}, "epoch": ...}`.
fn wrapper_key(root: &Object) -> Option<&'static str> {
    let Object::Dict(entries) = root else {
        return None;
    };
    WRAPPER_KEYS.iter().copied().find(|key| {
        entries.iter().any(|(k, v)| {
            matches!(k, Object::Unicode(s) if s == key) && matches!(v, Object::Dict(_))
        })
    })
}
