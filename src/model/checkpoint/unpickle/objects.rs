//! What the restricted pickle machine pushes: plain values, containers shared through an
//! arena, the allowed globals and what torch's persistent ids and rebuild calls describe.

use std::rc::Rc;

use super::PickleError;

/// The element types storages are declared with (`torch.FloatStorage`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StorageType {
    F32,
    F16,
    BF16,
    F64,
    /// Integer or boolean storage (`LongStorage`, ...): named for messages, never read as floats.
    Other(&'static str),
}

impl StorageType {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "DoubleStorage" => Self::F64,
            "LongStorage" => Self::Other("int64"),
            "IntStorage" => Self::Other("int32"),
            "ShortStorage" => Self::Other("int16"),
            "CharStorage" => Self::Other("int8"),
            "ByteStorage" => Self::Other("uint8"),
            "BoolStorage" => Self::Other("bool"),
            _ => return None,
        })
    }

    pub(crate) fn element_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::F64 => 8,
            Self::Other(_) => 1,
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage entry of the zip.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TensorRef {
    /// The storage's key: its bytes are the zip entry `<archive>/data/<key>`.
    pub storage_key: Rc<str>,
    pub dtype: StorageType,
    /// Offset into the storage, in elements.
    pub offset: usize,
    pub size: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
}

/// The allowed globals, by what they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    RebuildFromType,
    Parameter,
    Storage(StorageType),
}

pub(super) fn allowed_global(module: &str, name: &str) -> Result<Global, PickleError> {
    Ok(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromType,
        ("torch.nn.parameter", "Parameter") => Global::Parameter,
        ("torch", storage) => match StorageType::from_class(storage) {
            Some(dtype) => Global::Storage(dtype),
            None => return Err(PickleError::Forbidden(format!("{module}.{name}"))),
        },
        _ => return Err(PickleError::Forbidden(format!("{module}.{name}"))),
    })
}

/// A value on the pickle machine's stack. Dicts and lists are indices into the arena, so a
/// value is cheap to copy and the memo shares containers the way Python does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Tuple>),
    List(usize),
    Dict(usize),
    Global(Global),
    Storage { key: Rc<str>, dtype: StorageType },
    Tensor(Rc<TensorRef>),
}

/// Tuples own their items (lists and dicts are arena indices), so tuples are the one way values
/// nest by ownership; their depth is capped, which keeps `Drop` and every match shallow.
#[derive(Debug, PartialEq)]
pub(crate) struct Tuple {
    pub(super) items: Vec<Value>,
    pub(super) depth: usize,
}

/// Deepest tuple nesting accepted (a state dict needs 3: args -> size -> int).
pub(super) const MAX_TUPLE_DEPTH: usize = 32;

impl Value {
    /// The value's kind, for messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Bool(_) => "a bool",
            Self::Int(_) => "an int",
            Self::Float(_) => "a float",
            Self::Str(_) => "a string",
            Self::Bytes(_) => "bytes",
            Self::Tuple(_) => "a tuple",
            Self::List(_) => "a list",
            Self::Dict(_) => "a dict",
            Self::Global(_) => "an allowed global in the wrong place",
            Self::Storage { .. } => "a storage",
            Self::Tensor(_) => "a tensor",
        }
    }
}

/// Containers, owned by the arena and mutated in place (`SETITEMS` after `BINPUT`).
#[derive(Debug, Default)]
pub(super) struct Arena {
    pub(super) dicts: Vec<Vec<(Value, Value)>>,
    pub(super) lists: Vec<Vec<Value>>,
}

/// The unpickled root with its containers.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub(super) root: Value,
    pub(super) arena: Arena,
}

impl Unpickled {
    pub(crate) fn root(&self) -> &Value {
        &self.root
    }

    /// The entries of a dict value; `None` for anything else.
    pub(crate) fn dict(&self, value: &Value) -> Option<&[(Value, Value)]> {
        match value {
            Value::Dict(index) => self.arena.dicts.get(*index).map(Vec::as_slice),
            _ => None,
        }
    }
}

/// `('storage', <storage type>, key, location, numel)`, as torch.save's `persistent_id` writes it.
pub(super) fn persistent_storage(pid: &Value) -> Option<Value> {
    let Value::Tuple(tuple) = pid else {
        return None;
    };
    match &tuple.items[..] {
        [Value::Str(kind), Value::Global(Global::Storage(dtype)), Value::Str(key), ..]
            if &**kind == "storage" =>
        {
            Some(Value::Storage {
                key: key.clone(),
                dtype: *dtype,
            })
        }
        _ => None,
    }
}

/// A tuple of non-negative integers (a tensor's size or stride).
pub(super) fn dims(value: &Value) -> Option<Vec<usize>> {
    let Value::Tuple(tuple) = value else {
        return None;
    };
    tuple
        .items
        .iter()
        .map(|item| match item {
            Value::Int(v) => usize::try_from(*v).ok(),
            _ => None,
        })
        .collect()
}
