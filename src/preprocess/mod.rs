//! Preprocessing: image bytes -> normalised CHW fp32 in a batch slot.
pub mod normalize;
