//! `torch.save` files (zip + pickle), read without executing anything.
//!
//! A pickle is a program: `torch.load` would import and call whatever globals it names. Here
//! candle's pickle reader only *describes* the program as a tree of objects; this module then
//! refuses any file whose tree names a global outside [`allowed_global`] before a single tensor
//! is read, and reads tensor bytes straight from the zip's `data/` entries.

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;

use candle_core::pickle::{Object, PthTensors, Stack};
use candle_core::DType;

use super::super::{ModelError, Tensor};

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

    let tensors = PthTensors::new(path, key).map_err(|e| corrupt(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, info) in tensors.tensor_infos() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        if !matches!(
            info.dtype,
            DType::F32 | DType::F16 | DType::BF16 | DType::F64
        ) {
            return Err(ModelError::UnsupportedDtype {
                path: path.to_owned(),
                tensor: name.clone(),
                dtype: format!("{:?}", info.dtype),
            });
        }
        let data = tensors
            .get(name)
            .and_then(|t| t.ok_or_else(|| candle_core::Error::Msg("vanished".into())))
            .and_then(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| corrupt(format!("tensor `{name}`: {e}")))?;
        out.insert(name.clone(), Tensor::new(info.layout.dims().to_vec(), data));
    }
    Ok(out)
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
