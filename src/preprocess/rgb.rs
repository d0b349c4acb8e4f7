//! The decoded image every decoder produces and resizing reads.

/// Interleaved 8-bit RGB pixels, row by row.
#[derive(Debug)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}
