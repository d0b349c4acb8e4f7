//! Weights held once. The optimised graph's initializers are read from `weights.bin` into
//! memory once, 64-byte aligned as ONNX Runtime's own allocator places them (unaligned weights
//! measured 5-8 % slower), and handed to every session with `AddInitializer`; weights a kernel
//! pre-packs are shared through one `PrepackedWeightsContainer`. A second session costs its
//! activations, not another copy of the model.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{Array1, Axis, IxDyn, Slice};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{Message, ModelProto, TensorProto};
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::Session;

use ort::value::{DynValue, PrimitiveTensorElementType, Tensor};

use super::optimized::{self, OptimizedGraph, GRAPH_FILE, WEIGHTS_FILE};
use super::{runtime, Engine, EngineConfig, InferenceError};
use crate::model::PreparedModel;

/// Initializers by name, each held once and handed to every session.
type Initializers = Vec<(String, Arc<DynValue>)>;

/// One model's optimised graph and its weights, from which any number of sessions are built.
pub struct SharedModel {
    optimized: OptimizedGraph,
    initializers: Initializers,
    prepacked: PrepackedWeights,
    weights_bytes: usize,
    num_classes: usize,
    library: Option<PathBuf>,
}

impl std::fmt::Debug for SharedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedModel")
            .field("graph", &self.optimized.dir)
            .field("initializers", &self.initializers.len())
            .field("weights_bytes", &self.weights_bytes)
            .finish_non_exhaustive()
    }
}

impl SharedModel {
    /// Optimises the prepared graph (or finds it in the cache) and reads its weights once.
    pub fn load(prepared: &PreparedModel, library: Option<&Path>) -> Result<Self, InferenceError> {
        let optimized =
            optimized::obtain(&prepared.graph, prepared.derived_cache.as_deref(), library)?;
        let (initializers, weights_bytes) = read_initializers(&optimized.dir)?;
        Ok(Self {
            optimized,
            initializers,
            prepacked: PrepackedWeights::new(),
            weights_bytes,
            num_classes: prepared.info.num_classes,
            library: library.map(Path::to_path_buf),
        })
    }

    /// Whether the optimised graph came from the cache.
    pub fn from_cache(&self) -> bool {
        self.optimized.from_cache
    }

    /// Bytes of weights held (once, whatever the number of sessions).
    pub fn weights_bytes(&self) -> usize {
        self.weights_bytes
    }

    /// A new session over the shared weights.
    pub fn session(&self, config: &EngineConfig) -> Result<Engine, InferenceError> {
        let env = runtime::environment(self.library.as_deref(), runtime::Runtime::Cpu)?;
        let mut builder = Session::builder(env)
            .and_then(|b| Ok(b.with_optimization_level(GraphOptimizationLevel::Disable)?))
            .and_then(|b| Ok(b.with_intra_threads(config.intra_threads)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|b| Ok(b.with_intra_op_spinning(config.spinning)?))
            .and_then(|b| Ok(b.with_prepacked_weights(&self.prepacked)?))
            .map_err(|e| InferenceError::Runtime(format!("cannot build the session: {e}")))?;
        for (name, value) in &self.initializers {
            builder = builder.with_initializer(name, value.clone()).map_err(|e| {
                InferenceError::Runtime(format!("cannot share initializer {name}: {e}"))
            })?;
        }
        let session = builder
            .commit_from_file(self.optimized.dir.join(GRAPH_FILE))
            .map_err(|e| InferenceError::Runtime(format!("cannot build the session: {e}")))?;
        Ok(Engine::from_session(session, self.num_classes))
    }
}

/// Reads every float/int64 initializer the graph keeps in `weights.bin`. Others (none in our
/// graphs) are left to ONNX Runtime, which then holds a copy per session.
fn read_initializers(dir: &Path) -> Result<(Initializers, usize), InferenceError> {
    let graph_path = dir.join(GRAPH_FILE);
    let bytes = std::fs::read(&graph_path).map_err(|e| io_error(&graph_path, &e))?;
    let proto = ModelProto::parse_from_bytes(&bytes).map_err(|e| corrupt(&graph_path, &e))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let mut weights = File::open(&weights_path).map_err(|e| io_error(&weights_path, &e))?;
    let mut shared = Vec::new();
    let mut total = 0;
    for tensor in &proto.graph.initializer {
        let Some((offset, length)) = external_location(tensor) else {
            continue;
        };
        weights
            .seek(SeekFrom::Start(offset))
            .map_err(|e| io_error(&weights_path, &e))?;
        let value = match tensor.data_type {
            t if t == DataType::FLOAT as i32 => read_tensor::<f32>(&mut weights, tensor, length),
            t if t == DataType::INT64 as i32 => read_tensor::<i64>(&mut weights, tensor, length),
            _ => continue,
        }
        .map_err(|e| {
            InferenceError::Runtime(format!(
                "{}: initializer {}: {e}",
                weights_path.display(),
                tensor.name
            ))
        })?;
        total += length;
        shared.push((tensor.name.clone(), Arc::new(value)));
    }
    Ok((shared, total))
}

/// `(offset, length)` of an initializer stored in the weights file.
fn external_location(tensor: &TensorProto) -> Option<(u64, usize)> {
    let fields: HashMap<&str, &str> = tensor
        .external_data
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    if fields.get("location") != Some(&WEIGHTS_FILE) {
        return None;
    }
    let offset = fields.get("offset").map_or(Ok(0), |o| o.parse()).ok()?;
    let length = fields.get("length")?.parse().ok()?;
    Some((offset, length))
}

/// Reads `length` little-endian bytes into a 64-byte-aligned owned tensor of `tensor`'s shape.
fn read_tensor<T>(file: &mut File, tensor: &TensorProto, length: usize) -> Result<DynValue, String>
where
    T: PrimitiveTensorElementType + bytemuck::Pod + Default + std::fmt::Debug + 'static,
{
    const ALIGN: usize = 64;
    let size = std::mem::size_of::<T>();
    let dims: Vec<usize> = tensor
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let count: usize = dims.iter().product();
    if count * size != length {
        return Err(format!(
            "{length} bytes stored for shape {dims:?} of {size}-byte elements"
        ));
    }
    // Over-allocate by one alignment unit and start the view where the address is aligned.
    let slack = ALIGN / size;
    let padded = Array1::<T>::default(count + slack);
    let misalignment = padded.as_ptr() as usize % ALIGN;
    let start = ((ALIGN - misalignment) % ALIGN) / size;
    let mut data = padded.slice_axis_move(Axis(0), Slice::from(start..start + count));
    let slice = data
        .as_slice_mut()
        .ok_or("a contiguous slice is not contiguous")?;
    file.read_exact(bytemuck::cast_slice_mut(slice))
        .map_err(|e| e.to_string())?;
    let data = data
        .into_shape_with_order(IxDyn(&dims))
        .map_err(|e| e.to_string())?;
    Tensor::from_array(data)
        .map(Tensor::into_dyn)
        .map_err(|e| e.to_string())
}

fn io_error(path: &Path, e: &std::io::Error) -> InferenceError {
    InferenceError::Runtime(format!("cannot read {}: {e}", path.display()))
}

fn corrupt(path: &Path, e: &impl std::fmt::Display) -> InferenceError {
    InferenceError::Runtime(format!("{}: corrupt optimised graph: {e}", path.display()))
}
