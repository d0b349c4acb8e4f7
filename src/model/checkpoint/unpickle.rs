//! A restricted pickle reader: just enough of the pickle machine for a `torch.save` state dict.
//!
//! A pickle is a program, and `torch.load` runs it: any global it names is imported and called.
//! This reader runs nothing. It knows the opcodes that protocols 2-5 use for dicts, tuples,
//! lists, numbers and strings, and it knows what the five allowed globals *mean*
//! (`OrderedDict`, the tensor and parameter rebuild functions, the storage types); a `GLOBAL`
//! naming anything else ends the read with [`PickleError::Forbidden`] before another byte is
//! looked at. Tensors come out as descriptions ([`TensorRef`]: storage key, dtype, offset, size,
//! stride); their bytes are read from the zip by the caller.
//!
//! Bounded by construction, since the input is hostile: every opcode pushes at most one value,
//! containers live in an arena and are shared by index (so `BINGET` copies nothing and memo
//! tricks cannot grow memory faster than the input), strings are length-checked against the
//! input before they are allocated, the memo is a map (a `LONG_BINPUT 4294967295` costs one
//! entry), and nothing is traversed recursively.

use std::collections::HashMap;
use std::rc::Rc;

/// Why a pickle was not read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum PickleError {
    /// The pickle names a global outside the allowlist, as `module.name`.
    #[error("the pickle references `{0}`")]
    Forbidden(String),
    #[error("at byte {offset}: {detail}")]
    Malformed { offset: usize, detail: String },
}

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

fn allowed_global(module: &str, name: &str) -> Result<Global, PickleError> {
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
    items: Vec<Value>,
    depth: usize,
}

/// Deepest tuple nesting accepted (a state dict needs 3: args -> size -> int).
const MAX_TUPLE_DEPTH: usize = 32;

impl Value {
    /// The value's kind, for messages.
    fn kind(&self) -> &'static str {
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
struct Arena {
    dicts: Vec<Vec<(Value, Value)>>,
    lists: Vec<Vec<Value>>,
}

/// The unpickled root with its containers.
#[derive(Debug)]
pub(crate) struct Unpickled {
    root: Value,
    arena: Arena,
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

/// Runs the pickle `data` (no imports, no calls) and returns its root object.
pub(crate) fn unpickle(data: &[u8]) -> Result<Unpickled, PickleError> {
    Machine {
        input: data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Arena::default(),
    }
    .run()
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Arena,
}

impl<'a> Machine<'a> {
    fn run(mut self) -> Result<Unpickled, PickleError> {
        loop {
            let at = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    // PROTO
                    let version = self.take(1)?[0];
                    if !(2..=5).contains(&version) {
                        return Err(self.error(at, format!("pickle protocol {version}")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    let root = self.pop(at)?;
                    return Ok(Unpickled {
                        root,
                        arena: self.arena,
                    });
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop(at)?;
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let top = self.top(at)?.clone();
                    self.stack.push(top);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.take(1)?[0];
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = usize::from(self.take(1)?[0]);
                    if n > 8 {
                        return Err(self.error(at, format!("integer of {n} bytes")));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        [0xff; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    self.push_str(at, n)?;
                }
                0x8c => {
                    let n = usize::from(self.take(1)?[0]);
                    self.push_str(at, n)?;
                }
                0x8d => {
                    let n = self.length8(at)?;
                    self.push_str(at, n)?;
                }
                b'U' | b'C' => {
                    let n = usize::from(self.take(1)?[0]);
                    let bytes = self.take(n)?;
                    self.stack.push(Value::Bytes(bytes.into()));
                }
                b'T' | b'B' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    let bytes = self.take(n)?;
                    self.stack.push(Value::Bytes(bytes.into()));
                }
                b')' => self.push_tuple(at, Vec::new())?,
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.push_tuple(at, items)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n + self.marks.last().copied().unwrap_or(0) {
                        return Err(self.error(at, "tuple of more items than the stack holds"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_tuple(at, items)?;
                }
                b']' => {
                    let list = self.new_list(Vec::new());
                    self.stack.push(list);
                }
                b'l' => {
                    let items = self.pop_mark(at)?;
                    let list = self.new_list(items);
                    self.stack.push(list);
                }
                b'a' => {
                    let item = self.pop(at)?;
                    self.list_mut(at)?.push(item);
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    self.list_mut(at)?.extend(items);
                }
                b'}' => {
                    let dict = self.new_dict(Vec::new());
                    self.stack.push(dict);
                }
                b'd' => {
                    let items = self.pop_mark(at)?;
                    let pairs = self.pairs(at, items)?;
                    let dict = self.new_dict(pairs);
                    self.stack.push(dict);
                }
                b's' => {
                    let value = self.pop(at)?;
                    let key = self.pop(at)?;
                    self.dict_mut(at)?.push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    let pairs = self.pairs(at, items)?;
                    self.dict_mut(at)?.extend(pairs);
                }
                b'c' => {
                    let module = self.line(at)?;
                    let name = self.line(at)?;
                    let global = allowed_global(&module, &name)?;
                    self.stack.push(Value::Global(global));
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.error(at, "STACK_GLOBAL without two strings"));
                    };
                    let global = allowed_global(&module, &name)?;
                    self.stack.push(Value::Global(global));
                }
                b'q' => {
                    let index = self.take(1)?[0].into();
                    self.memoize(at, index)?;
                }
                b'r' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.memoize(at, index)?;
                }
                0x94 => {
                    let index =
                        u32::try_from(self.memo.len()).map_err(|_| self.error(at, "memo full"))?;
                    self.memoize(at, index)?;
                }
                b'h' => {
                    let index = self.take(1)?[0].into();
                    self.recall(at, index)?;
                }
                b'j' => {
                    let index = u32::from_le_bytes(self.array()?);
                    self.recall(at, index)?;
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    let storage = persistent_storage(&pid)
                        .ok_or_else(|| self.error(at, "persistent id is not a tensor storage"))?;
                    self.stack.push(storage);
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let value = self.call(at, &callable, &args)?;
                    self.stack.push(value);
                }
                b'b' => {
                    // BUILD: state for an OrderedDict (`_metadata`) or a tensor (hooks); neither
                    // changes the weights, and nothing else may be built.
                    let _state = self.pop(at)?;
                    if !matches!(self.top(at)?, Value::Dict(_) | Value::Tensor(_)) {
                        return Err(
                            self.error(at, "BUILD on an object that is not a dict or tensor")
                        );
                    }
                }
                other => {
                    return Err(self.error(at, format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }

    fn push_tuple(&mut self, at: usize, items: Vec<Value>) -> Result<(), PickleError> {
        let depth = 1 + items
            .iter()
            .map(|item| match item {
                Value::Tuple(inner) => inner.depth,
                _ => 0,
            })
            .max()
            .unwrap_or(0);
        if depth > MAX_TUPLE_DEPTH {
            return Err(self.error(at, format!("tuples nested deeper than {MAX_TUPLE_DEPTH}")));
        }
        self.stack
            .push(Value::Tuple(Rc::new(Tuple { items, depth })));
        Ok(())
    }

    /// What a call to an allowed global returns; anything else is refused.
    fn call(&mut self, at: usize, callable: &Value, args: &Value) -> Result<Value, PickleError> {
        let Value::Tuple(args) = args else {
            return Err(self.error(at, "REDUCE arguments are not a tuple"));
        };
        match (callable, &args.items[..]) {
            (Value::Global(Global::OrderedDict), []) => Ok(self.new_dict(Vec::new())),
            (Value::Global(Global::RebuildTensor), [storage, offset, size, stride, ..]) => {
                let (Value::Storage { key, dtype }, Value::Int(offset)) = (storage, offset) else {
                    return Err(self.error(at, "_rebuild_tensor_v2 without a storage and offset"));
                };
                let tensor = TensorRef {
                    storage_key: key.clone(),
                    dtype: *dtype,
                    offset: usize::try_from(*offset)
                        .map_err(|_| self.error(at, "negative storage offset"))?,
                    size: dims(size)
                        .ok_or_else(|| self.error(at, "tensor size is not a tuple of sizes"))?,
                    stride: dims(stride)
                        .ok_or_else(|| self.error(at, "tensor stride is not a tuple of strides"))?,
                };
                if tensor.size.len() != tensor.stride.len() {
                    return Err(self.error(at, "tensor size and stride differ in rank"));
                }
                Ok(Value::Tensor(Rc::new(tensor)))
            }
            (
                Value::Global(Global::RebuildParameter | Global::Parameter),
                [tensor @ Value::Tensor(_), ..],
            ) => Ok(tensor.clone()),
            (Value::Global(Global::RebuildFromType), [func, _type, Value::Tuple(inner), ..]) => {
                self.call(at, func, &Value::Tuple(inner.clone()))
            }
            // Named by kind only: printing a value could print a shared structure exponentially.
            _ => Err(self.error(
                at,
                format!(
                    "unexpected call of {} with {} arguments",
                    callable.kind(),
                    args.items.len()
                ),
            )),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len());
        let Some(end) = end else {
            return Err(self.error(self.pos, format!("truncated: {n} more bytes expected")));
        };
        let input: &'a [u8] = self.input;
        let bytes = &input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn length8(&mut self, at: usize) -> Result<usize, PickleError> {
        usize::try_from(u64::from_le_bytes(self.array()?))
            .map_err(|_| self.error(at, "length does not fit in memory"))
    }

    fn push_str(&mut self, at: usize, n: usize) -> Result<(), PickleError> {
        let bytes = self.take(n)?;
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string());
        let text = text.map_err(|e| self.error(at, format!("string is not UTF-8: {e}")))?;
        self.stack.push(Value::Str(text.into()));
        Ok(())
    }

    /// A newline-terminated ASCII line (the text arguments of `GLOBAL`).
    fn line(&mut self, at: usize) -> Result<String, PickleError> {
        let rest = &self.input[self.pos..];
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.error(at, "GLOBAL name without a newline"));
        };
        let line = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.pos += len + 1;
        Ok(line)
    }

    fn pop(&mut self, at: usize) -> Result<Value, PickleError> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) && !self.stack.is_empty() {
            // Popping below a mark would break the mark's frame, as in CPython.
            return Err(self.error(at, "pop across a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.error(at, "stack underflow"))
    }

    fn top(&self, at: usize) -> Result<&Value, PickleError> {
        self.stack
            .last()
            .ok_or_else(|| self.error(at, "stack underflow"))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.error(at, "no MARK to pop to"))?;
        Ok(self.stack.split_off(mark))
    }

    fn pairs(&self, at: usize, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.error(at, "dict items of odd length"));
        }
        let mut items = items.into_iter();
        let mut pairs = Vec::with_capacity(items.len() / 2);
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    fn new_dict(&mut self, entries: Vec<(Value, Value)>) -> Value {
        self.arena.dicts.push(entries);
        Value::Dict(self.arena.dicts.len() - 1)
    }

    fn new_list(&mut self, items: Vec<Value>) -> Value {
        self.arena.lists.push(items);
        Value::List(self.arena.lists.len() - 1)
    }

    fn dict_mut(&mut self, at: usize) -> Result<&mut Vec<(Value, Value)>, PickleError> {
        match self.stack.last() {
            Some(Value::Dict(index)) => Ok(&mut self.arena.dicts[*index]),
            _ => Err(self.error(at, "SETITEM on something that is not a dict")),
        }
    }

    fn list_mut(&mut self, at: usize) -> Result<&mut Vec<Value>, PickleError> {
        match self.stack.last() {
            Some(Value::List(index)) => Ok(&mut self.arena.lists[*index]),
            _ => Err(self.error(at, "APPEND on something that is not a list")),
        }
    }

    fn memoize(&mut self, at: usize, index: u32) -> Result<(), PickleError> {
        let top = self.top(at)?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn recall(&mut self, at: usize, index: u32) -> Result<(), PickleError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.error(at, format!("memo entry {index} was never stored")))?;
        self.stack.push(value);
        Ok(())
    }

    fn error(&self, offset: usize, detail: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset,
            detail: detail.into(),
        }
    }
}

/// `('storage', <storage type>, key, location, numel)`, as torch.save's `persistent_id` writes it.
fn persistent_storage(pid: &Value) -> Option<Value> {
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
fn dims(value: &Value) -> Option<Vec<usize>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny state dict as torch.save writes it (protocol 2): {'w': tensor of 2 floats}.
    fn state_dict_pickle() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend(b"X\x01\x00\x00\x00w");
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
        p.extend(b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02tQ");
        p.extend(b"K\x00K\x02\x85K\x01\x85\x89}tR");
        p.extend(b"u.");
        p
    }

    #[test]
    fn reads_a_state_dict_entry_as_a_tensor_description() {
        let out = unpickle(&state_dict_pickle()).expect("valid pickle");
        let entries = out.dict(out.root()).expect("root is a dict");
        assert_eq!(entries.len(), 1);
        let (Value::Str(name), Value::Tensor(tensor)) = &entries[0] else {
            panic!("unexpected entry {:?}", entries[0]);
        };
        assert_eq!(&**name, "w");
        assert_eq!(
            **tensor,
            TensorRef {
                storage_key: "0".into(),
                dtype: StorageType::F32,
                offset: 0,
                size: vec![2],
                stride: vec![1],
            }
        );
    }

    #[test]
    fn refuses_a_global_outside_the_allowlist_at_once() {
        let p = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00lsK".to_vec();
        assert_eq!(
            unpickle(&p).expect_err("refused"),
            PickleError::Forbidden("posix.system".into())
        );
        let stacked = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.".to_vec();
        assert_eq!(
            unpickle(&stacked).expect_err("refused"),
            PickleError::Forbidden("builtins.eval".into())
        );
    }

    #[test]
    fn every_truncation_of_a_valid_pickle_is_an_error_not_a_panic() {
        let p = state_dict_pickle();
        for len in 0..p.len() {
            assert!(
                unpickle(&p[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }

    #[test]
    fn memo_sharing_does_not_copy_containers() {
        // 30 rounds of "t = (t, t)" through the memo would be 2^30 values if copied.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..30 {
            p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0, b'0']);
        }
        p.extend([b'h', 0, b'.']);
        assert!(matches!(
            unpickle(&p).expect("valid").root(),
            Value::Tuple(_)
        ));
    }

    #[test]
    fn deep_nesting_and_calls_on_shared_structures_fail_fast() {
        // 10,000 nested 1-tuples would overflow the stack when dropped.
        let mut deep = vec![0x80, 2, b')'];
        deep.extend([0x85; 10_000]);
        deep.push(b'.');
        let err = unpickle(&deep).expect_err("refused");
        assert!(err.to_string().contains("nested deeper"), "{err}");
        // A call on a 2^30-leaf shared tuple is refused without describing the tuple.
        let mut call = vec![0x80, 2, b')', b'q', 0, b'0'];
        for _ in 0..30 {
            call.extend([b'h', 0, b'h', 0, 0x86, b'q', 0, b'0']);
        }
        call.extend([b'h', 0, b')', b'R', b'.']);
        let err = unpickle(&call).expect_err("refused");
        assert!(
            err.to_string().contains("unexpected call of a tuple"),
            "{err}"
        );
    }

    #[test]
    fn huge_declared_lengths_and_memo_indices_are_refused_cheaply() {
        let long_string = b"\x80\x02X\xff\xff\xff\xffabc".to_vec();
        assert!(matches!(
            unpickle(&long_string),
            Err(PickleError::Malformed { .. })
        ));
        let memo = b"\x80\x02Nr\xff\xff\xff\xffj\xff\xff\xff\xff.".to_vec();
        assert_eq!(unpickle(&memo).expect("valid").root(), &Value::None);
        let unknown = b"\x80\x02i\n".to_vec(); // INST: unsupported
        assert!(unpickle(&unknown).is_err());
    }
}
