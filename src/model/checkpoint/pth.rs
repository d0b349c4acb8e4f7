//! `torch.save` files (zip + pickle), read without executing anything.
//!
//! A pickle is a program: `torch.load` would import and call whatever globals it names. Here
//! our own restricted unpickler ([`super::unpickle`]) only *describes* the program, refusing any
//! global outside its allowlist the moment it is named; this module then takes the state dict's
//! tensors from that description and reads their bytes straight from the zip's `data/` entries.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use super::super::{ModelError, Tensor};
use super::unpickle::{unpickle, PickleError, StorageType, TensorRef, Unpickled, Value};
use super::{f32_from_le, StoredFloat};

/// Keys under which training scripts store the state dict in a wrapping dict.
const WRAPPER_KEYS: &[&str] = &["state_dict", "model", "model_state_dict", "state_dict_ema"];

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
    let pickle = stored_entry(&mut zip, bytes, &pickle_name)
        .map_err(|e| corrupt(format!("{pickle_name}: {e}")))?;
    let unpickled = unpickle(pickle).map_err(|e| match e {
        PickleError::Forbidden(global) => ModelError::UnsafePickle {
            path: path.to_owned(),
            global,
        },
        malformed => corrupt(format!("{pickle_name}: {malformed}")),
    })?;
    let entries = state_dict(&unpickled).ok_or_else(|| ModelError::NotACheckpoint {
        path: path.to_owned(),
        reason: "the pickle holds no state dict (a dict of tensors)".into(),
    })?;
    // Tensor bytes come from the zip in memory, the same bytes that were hashed and checked:
    // a file replaced on disk meanwhile cannot change what is loaded.
    let data_dir = pickle_name.strip_suffix("data.pkl").unwrap_or_default();
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let (Value::Str(name), Value::Tensor(tensor)) = (key, value) else {
            continue; // not a tensor (an epoch counter, a config value)
        };
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let stored = match tensor.dtype {
            StorageType::F32 => StoredFloat::F32,
            StorageType::F16 => StoredFloat::F16,
            StorageType::BF16 => StoredFloat::BF16,
            StorageType::F64 => StoredFloat::F64,
            StorageType::Other(dtype) => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_owned(),
                    tensor: name.to_string(),
                    dtype: dtype.into(),
                })
            }
        };
        let entry = format!("{data_dir}data/{}", tensor.storage_key);
        let values = stored_entry(&mut zip, bytes, &entry)
            .and_then(|storage| gather(storage, tensor, stored))
            .map_err(|e| corrupt(format!("tensor `{name}` ({entry}): {e}")))?;
        out.insert(name.to_string(), Tensor::new(tensor.size.clone(), values));
    }
    Ok(out)
}

/// The state dict's entries: the root dict, or the dict under a wrapper key
/// (`{"state_dict": {...}, "epoch": ...}`).
fn state_dict(unpickled: &Unpickled) -> Option<&[(Value, Value)]> {
    let root = unpickled.dict(unpickled.root())?;
    let wrapped = WRAPPER_KEYS.iter().find_map(|wrapper| {
        root.iter().find_map(|(k, v)| match k {
            Value::Str(k) if &**k == *wrapper => unpickled.dict(v),
            _ => None,
        })
    });
    Some(wrapped.unwrap_or(root))
}

/// The bytes of a zip entry, borrowed from the archive in memory. torch.save stores entries
/// uncompressed; anything else is not its file.
fn stored_entry<'a>(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    bytes: &'a [u8],
    name: &str,
) -> Result<&'a [u8], String> {
    let entry = zip.by_name(name).map_err(|e| e.to_string())?;
    if entry.compression() != zip::CompressionMethod::Stored {
        return Err(format!(
            "compressed with {:?} (torch.save stores entries uncompressed)",
            entry.compression()
        ));
    }
    let start = entry.data_start().ok_or("entry without a data offset")?;
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(entry.size()).ok())
        .and_then(|(start, len)| bytes.get(start..start.checked_add(len)?))
        .ok_or_else(|| "entry extends past the end of the file".to_owned())
}

/// A tensor's values as f32, in row-major order, read through its offset and strides from the
/// storage bytes (so contiguous, channels-last and transposed tensors all load). Every element
/// must lie inside the storage, and a tensor may not hold more elements than its storage (no
/// stride-0 expansion: a pickle cannot make a small file allocate without bound).
fn gather(storage: &[u8], tensor: &TensorRef, stored: StoredFloat) -> Result<Vec<f32>, String> {
    let elem = tensor.dtype.element_size();
    let available = storage.len() / elem;
    let count = tensor
        .size
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= available)
        .ok_or_else(|| {
            format!(
                "size {:?} holds more elements than its storage ({available})",
                tensor.size
            )
        })?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let last = tensor
        .size
        .iter()
        .zip(&tensor.stride)
        .try_fold(tensor.offset, |end, (&d, &s)| end.checked_add((d - 1).checked_mul(s)?))
        .filter(|&last| last < available)
        .ok_or_else(|| {
            format!(
                "offset {} with size {:?} and stride {:?} reads past the storage's {available} elements",
                tensor.offset, tensor.size, tensor.stride
            )
        })?;
    let contiguous = row_major_strides(&tensor.size) == tensor.stride;
    if contiguous {
        let start = tensor.offset * elem;
        return Ok(f32_from_le(&storage[start..(last + 1) * elem], stored));
    }
    let mut raw = Vec::with_capacity(count * elem);
    let mut index = vec![0usize; tensor.size.len()];
    for _ in 0..count {
        let at = tensor.offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        raw.extend_from_slice(&storage[at * elem..(at + 1) * elem]);
        // Advance the row-major index (last axis fastest).
        for (axis, i) in index.iter_mut().enumerate().rev() {
            *i += 1;
            if *i < tensor.size[axis] {
                break;
            }
            *i = 0;
        }
    }
    Ok(f32_from_le(&raw, stored))
}

fn row_major_strides(size: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; size.len()];
    for axis in (0..size.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * size[axis + 1];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(size: Vec<usize>, stride: Vec<usize>, offset: usize) -> TensorRef {
        TensorRef {
            storage_key: "0".into(),
            dtype: StorageType::F32,
            offset,
            size,
            stride,
        }
    }

    fn storage(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn gathers_contiguous_transposed_and_offset_views() {
        let s = storage(&[0., 1., 2., 3., 4., 5.]);
        let row = gather(&s, &tensor(vec![2, 3], vec![3, 1], 0), StoredFloat::F32);
        assert_eq!(row.expect("fits"), [0., 1., 2., 3., 4., 5.]);
        // The transpose of a 3x2 row-major matrix, as `t.t()` saves it.
        let t = gather(&s, &tensor(vec![2, 3], vec![1, 2], 0), StoredFloat::F32);
        assert_eq!(t.expect("fits"), [0., 2., 4., 1., 3., 5.]);
        let tail = gather(&s, &tensor(vec![2], vec![1], 4), StoredFloat::F32);
        assert_eq!(tail.expect("fits"), [4., 5.]);
    }

    #[test]
    fn refuses_views_outside_or_larger_than_the_storage() {
        let s = storage(&[0., 1., 2., 3.]);
        for bad in [
            tensor(vec![5], vec![1], 0),
            tensor(vec![2], vec![1], 3),
            tensor(vec![2, 2], vec![4, 1], 0),
            tensor(vec![4], vec![0], 0).clone(),
            tensor(vec![usize::MAX, 2], vec![1, 1], 0),
        ] {
            let out = gather(&s, &bad, StoredFloat::F32);
            if bad.stride == [0] {
                // Expansion within the element count is allowed: four reads of element 0.
                assert_eq!(out.expect("in bounds"), [0., 0., 0., 0.]);
            } else {
                assert!(out.is_err(), "{bad:?} accepted");
            }
        }
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;

    /// The fuzz corpus's miniature checkpoints are written by Python's own pickler
    /// (`fuzz/make_corpus.py`): a wrapped state dict with a transposed tensor and an integer
    /// counter, in fp32, fp16 and bf16 storages.
    #[test]
    fn reads_python_pickled_miniatures_including_a_transposed_tensor() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/checkpoint");
        for kind in ["FloatStorage", "HalfStorage", "BFloat16Storage"] {
            let path = dir.join(format!("mini_{kind}_wrap1.pth"));
            let bytes = std::fs::read(&path).expect("corpus file");
            let tensors = read(&path, &bytes).expect("miniature loads");
            let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
            assert_eq!(names, ["linear.weight", "stage0.rbr_dense.conv.weight"]);
            let linear = &tensors["linear.weight"];
            assert_eq!(linear.shape, [2, 3]);
            assert_eq!(linear.data, [1., 3., 5., 2., 4., 6.]);
            let conv = &tensors["stage0.rbr_dense.conv.weight"];
            assert_eq!(conv.shape, [2, 3, 2, 2]);
            for (i, v) in conv.data.iter().enumerate() {
                // bf16 keeps 8 significant bits: relative error below 2^-7 (truncation).
                let expected = i as f32 / 10.;
                assert!(
                    (v - expected).abs() <= expected / 128.,
                    "{kind} element {i}: {v}"
                );
            }
        }
    }
}
