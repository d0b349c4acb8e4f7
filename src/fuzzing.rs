//! Entry points for the fuzz targets in `fuzz/` (`make fuzz`). Compiled only under
//! `cargo fuzz` (`--cfg fuzzing`): not part of the library's API.

use std::path::Path;

use crate::preprocess::{decode, PreprocessConfig};

/// The restricted unpickler alone.
pub fn unpickle(data: &[u8]) {
    let _ = crate::model::checkpoint::unpickle::unpickle(data);
}

/// A whole checkpoint file as the loader reads it.
pub fn checkpoint(data: &[u8]) {
    let _ = crate::model::Checkpoint::from_bytes(Path::new("fuzz-input"), data);
}

/// An uploaded image as a preprocessing worker handles it: cost from the header, then the
/// pipeline into a batch slot. A smaller pixel limit than the server's default keeps each run
/// short; the code paths are the same.
pub fn image(data: &[u8]) {
    const MAX_PIXELS: u64 = 4_000_000;
    if decode::decode_cost(data, MAX_PIXELS).is_err() {
        return;
    }
    let config = PreprocessConfig {
        resize: 64,
        crop: 56,
        max_pixels: MAX_PIXELS,
        jpeg_dct_scaling: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut out = vec![0.0; config.slot_len()];
    let _ = config.run_into(data, &mut out);
}
