//! Preprocessing, a pure function: image bytes -> normalised CHW fp32 written into the
//! caller's slot of the batch tensor. The ImageNet evaluation protocol, matching Pillow +
//! torchvision: decode -> EXIF orientation -> RGB -> resize shorter side (bilinear, antialiased)
//! -> centre crop -> normalise.
//!
//! [`pool`] runs it on a bounded set of worker threads, off the async runtime.

pub mod budget;
pub mod decode;
mod jpeg;
pub mod normalize;
mod png;
pub mod pool;
pub mod resize;
mod rgb;

pub use decode::decode_rgb;
pub use rgb::RgbImage;

/// Why an image could not be used. Each maps to one HTTP status in the HTTP layer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("cannot decode image: {0}")]
    Undecodable(String),
    #[error("unsupported image format {0} (accepted: JPEG, PNG, WebP, GIF, BMP, TIFF)")]
    UnsupportedFormat(String),
    #[error("image is {width}x{height} pixels, over the limit of {limit} pixels")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error(
        "decoding this image needs {needed} bytes, more than the whole decode budget of {budget} \
         bytes (--max-decode-bytes)"
    )]
    OverDecodeBudget { needed: u64, budget: u64 },
    #[error(
        "decoding this image needs {needed} bytes and {in_use} of the {budget}-byte decode \
         budget are taken by images being decoded; retry shortly"
    )]
    DecodeBudgetBusy {
        needed: u64,
        in_use: u64,
        budget: u64,
    },
    #[error(
        "the JPEG has more than {limit} scans (encoders write at most a few dozen); refused so \
         that a crafted progressive file cannot hold a decoder for seconds"
    )]
    TooManyScans { limit: usize },
    /// The decode was stopped because nobody waits for it any more (deadline passed or client
    /// gone); never shown to a client.
    #[error("decoding stopped: the request's deadline passed or its client left")]
    Stopped,
}

/// Sizes and limits of the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct PreprocessConfig {
    /// Shorter side after resize (256; 320 for D2se).
    pub resize: u32,
    /// Centre crop (224; 320 for D2se): the model's input is `crop x crop`.
    pub crop: u32,
    /// Largest `width * height` decoded; checked from the header first.
    pub max_pixels: u64,
    /// Decode large JPEGs reduced by libjpeg's scaled IDCT (1/2, 1/4, 1/8) as long as the
    /// shorter side stays at least `resize`: several times faster on phone photos, but no longer
    /// pixel-identical to Pillow's full decode + resize. Off by default.
    pub jpeg_dct_scaling: bool,
}

impl PreprocessConfig {
    /// Floats one image occupies in the batch tensor.
    pub fn slot_len(&self) -> usize {
        3 * (self.crop as usize).pow(2)
    }

    /// The 8-bit RGB crop (before normalisation): what Pillow's reference crops show.
    pub fn crop_rgb(&self, bytes: &[u8]) -> Result<Vec<u8>, PreprocessError> {
        self.crop_rgb_until(bytes, &|| false)
    }

    /// [`Self::crop_rgb`], giving up with [`PreprocessError::Stopped`] as soon as `stop` says
    /// so (checked between bands of JPEG rows).
    pub fn crop_rgb_until(
        &self,
        bytes: &[u8],
        stop: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, PreprocessError> {
        let dct_shorter_side = self.jpeg_dct_scaling.then_some(self.resize as usize);
        let (shorter, crop) = (self.resize as usize, self.crop as usize);
        // Only the pixels the crop's taps read are decoded (for JPEG; see `jpeg::decode`).
        let needed = |width, height| resize::needed_rect(width, height, shorter, crop);
        let window =
            decode::decode_window_until(bytes, self.max_pixels, dct_shorter_side, &needed, stop)?;
        let crop = resize::resize_and_crop(&window, shorter, crop);
        // The decoded pixels' buffer serves this thread's next JPEG.
        jpeg::recycle(window.image.pixels);
        Ok(crop)
    }

    /// The whole pipeline into `out` (`slot_len()` floats, planar RGB), ImageNet statistics.
    pub fn run_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), PreprocessError> {
        let crop = self.crop_rgb(bytes)?;
        normalize::normalize_into(&crop, out, &normalize::Normalization::IMAGENET);
        Ok(())
    }
}
