//! What one image gives the model, and the batch tensor built from several.
//!
//! An image reaches inference either as its 8-bit crop (the `/classify` and v2 `BYTES` path:
//! normalised here, on the inference thread, into its slot of the batch tensor) or as a tensor
//! a client already normalised (the v2 `repvgg-tensor` model: copied into its slot).

use crate::preprocess::normalize::{normalize_into, Normalization};

/// One image's input, as it waits in the batching queue.
#[derive(Debug)]
pub enum ModelInput {
    /// Interleaved RGB `size x size` pixels (150 kB at 224: a queued image costs a quarter of
    /// its normalised form).
    Crop(Vec<u8>),
    /// Planar, normalised `3 x size x size` floats.
    Tensor(Vec<f32>),
}

/// Side length of the (square) model input, floats per image, and the statistics crops are
/// normalised with.
#[derive(Clone, Copy, Debug)]
pub struct InputShape {
    pub size: usize,
    pub normalization: Normalization,
}

impl InputShape {
    pub fn slot_len(self) -> usize {
        3 * self.size * self.size
    }
}

/// The NCHW batch tensor of `inputs`, in order.
pub fn batch_tensor<'a>(
    inputs: impl ExactSizeIterator<Item = &'a ModelInput>,
    shape: InputShape,
) -> Vec<f32> {
    let slot = shape.slot_len();
    let mut tensor = vec![0f32; inputs.len() * slot];
    for (input, out) in inputs.zip(tensor.chunks_exact_mut(slot)) {
        match input {
            ModelInput::Crop(pixels) => normalize_into(pixels, out, &shape.normalization),
            ModelInput::Tensor(values) => out.copy_from_slice(values),
        }
    }
    tensor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_normalised_and_tensors_copied_in_order() {
        let shape = InputShape {
            size: 1,
            normalization: Normalization::IMAGENET,
        };
        let crop = ModelInput::Crop(vec![255, 0, 128]);
        let tensor = ModelInput::Tensor(vec![1.5, -2.0, 0.25]);
        let batch = batch_tensor([&tensor, &crop].into_iter(), shape);
        assert_eq!(&batch[..3], &[1.5, -2.0, 0.25]);
        let mut expected = [0f32; 3];
        normalize_into(&[255, 0, 128], &mut expected, &Normalization::IMAGENET);
        assert_eq!(&batch[3..], &expected);
    }
}
