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

//!
//! `objects` holds what the machine pushes (values, the allowed globals, tensor descriptions);
//! this module runs the opcodes.

mod calls;
mod objects;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::rc::Rc;

use objects::{allowed_global, persistent_storage, Arena, Tuple, MAX_TUPLE_DEPTH};
pub(crate) use objects::{StorageType, TensorRef, Unpickled, Value};

/// Why a pickle was not read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum PickleError {
    /// The pickle names a global outside the allowlist, as `module.name`.
    #[error("the pickle references `{0}`")]
    Forbidden(String),
    #[error("at byte {offset}: {detail}")]
    Malformed { offset: usize, detail: String },
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
        if !items.len().is_multiple_of(2) {
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
