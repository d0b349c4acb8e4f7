//! `REDUCE`: what a call to one of the allowed globals means (an empty `OrderedDict`, a tensor
//! description, a parameter unwrapped to its tensor); every other call is refused.

use std::rc::Rc;

use super::objects::{dims, Global, TensorRef, Value};
use super::{Machine, PickleError};

impl Machine<'_> {
    /// What a call to an allowed global returns; anything else is refused.
    pub(super) fn call(
        &mut self,
        at: usize,
        callable: &Value,
        args: &Value,
    ) -> Result<Value, PickleError> {
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
}
