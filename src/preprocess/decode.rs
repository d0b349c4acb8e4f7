//! Decoding: bytes -> upright 8-bit RGB, the way Pillow's `exif_transpose` + `convert('RGB')`
//! see it. The header is read first and images over the pixel limit are refused before a
//! single pixel is decoded.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::rgb::RgbImage;
use super::PreprocessError;

/// Formats the service accepts (the `image` crate can decode more; these are the ones offered).
pub const ACCEPTED: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
];

/// Decodes `bytes` (format sniffed from the content) into upright RGB. `dct_shorter_side`:
/// large JPEGs may be decoded reduced, keeping the shorter side at least this long
/// (see [`super::jpeg::decode`]); `None` decodes every pixel, as Pillow does by default.
pub fn decode_rgb(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
) -> Result<RgbImage, PreprocessError> {
    decode_rgb_until(bytes, max_pixels, dct_shorter_side, &|| false)
}

/// [`decode_rgb`] that a JPEG decode abandons between bands of rows once `stop` says so (the
/// other formats decode in one call to their decoder; the pixel limit and the decode budget
/// bound them).
pub(crate) fn decode_rgb_until(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
    stop: &dyn Fn() -> bool,
) -> Result<RgbImage, PreprocessError> {
    let (reader, format) = sniff(bytes)?;
    if format == ImageFormat::Jpeg {
        let (rgb, orientation) = super::jpeg::decode(bytes, max_pixels, dct_shorter_side, stop)?;
        return Ok(orient(rgb, orientation));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    // Second line behind the decode budget: the decoder itself may allocate no more than the
    // cost that was charged for this image (a header that lies about the size, or a format
    // that inflates more than its header says, fails here instead of growing without bound).
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(super::budget::decode_cost(
        width,
        height,
        decoder.total_bytes(),
    ));
    decoder
        .set_limits(limits)
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    // A broken EXIF block is not worth refusing the image for: it is shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    image.apply_orientation(orientation);
    Ok(to_rgb(image))
}

/// Peak memory of decoding `bytes` (see [`super::budget::decode_cost`]), from the header alone;
/// images over the pixel limit are refused here already.
pub fn decode_cost(bytes: &[u8], max_pixels: u64) -> Result<u64, PreprocessError> {
    let decoder = sniff(bytes)?
        .0
        .into_decoder()
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, max_pixels)?;
    Ok(super::budget::decode_cost(
        width,
        height,
        decoder.total_bytes(),
    ))
}

/// An image reader over bytes in memory.
type Reader<'a> = ImageReader<Cursor<&'a [u8]>>;

/// A reader over `bytes` with its format sniffed from the content, refusing empty bodies,
/// unknown content, formats the service does not offer, and PNG palettes the decoder would
/// panic on (`super::png`).
fn sniff(bytes: &[u8]) -> Result<(Reader<'_>, ImageFormat), PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Undecodable("empty image".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    let format = reader.format().ok_or_else(|| {
        PreprocessError::Undecodable(
            "not a recognised image (expected JPEG, PNG, WebP, GIF, BMP or TIFF)".into(),
        )
    })?;
    if !ACCEPTED.contains(&format) {
        return Err(PreprocessError::UnsupportedFormat(format!("{format:?}")));
    }
    if format == ImageFormat::Png {
        super::png::check_palette(bytes)?;
    }
    Ok((reader, format))
}

/// Refuses empty images and images over the pixel limit (from the header, before decoding).
pub(super) fn check_pixels(
    width: u32,
    height: u32,
    max_pixels: u64,
) -> Result<(), PreprocessError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(PreprocessError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    if pixels == 0 {
        return Err(PreprocessError::Undecodable("image has no pixels".into()));
    }
    Ok(())
}

/// Applies an EXIF orientation to decoded RGB (a no-op for the usual upright image).
fn orient(rgb: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return rgb;
    }
    let buffer = image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.pixels)
        .expect("decoder output matches its size");
    let mut image = DynamicImage::ImageRgb8(buffer);
    image.apply_orientation(orientation);
    to_rgb(image)
}

/// Pillow's `convert('RGB')`: grey replicated, alpha dropped (not composited), 16-bit samples
/// reduced to their high byte (as Pillow unpacks 48-bit PNGs).
fn to_rgb(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixels = match image {
        DynamicImage::ImageRgb8(buf) => buf.into_raw(),
        DynamicImage::ImageRgb16(buf) => buf.into_raw().iter().map(|v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(buf) => buf
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            .collect(),
        DynamicImage::ImageLuma16(buf) => buf
            .into_raw()
            .iter()
            .flat_map(|v| [(v >> 8) as u8; 3])
            .collect(),
        DynamicImage::ImageLumaA16(buf) => buf
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [(p[0] >> 8) as u8; 3])
            .collect(),
        other => other.to_rgb8().into_raw(),
    };
    RgbImage {
        width,
        height,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoder allocation limits leave every accepted format decodable: the fuzz seeds
    /// cover JPEG (baseline, progressive, CMYK, EXIF 6), PNG (RGB, RGBA, 16-bit gray, palette),
    /// GIF, BMP, WebP and TIFF.
    #[test]
    fn every_format_decodes_within_its_own_allocation_limit() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/image");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("image corpus") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("seed");
            let image = decode_rgb(&bytes, 1_000_000, None)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let expected = match name {
                "tiny.png" => (8, 8),
                "exif6.jpg" => (16, 24),
                _ => (24, 16),
            };
            assert_eq!((image.width, image.height), expected, "{name}");
            seen += 1;
        }
        assert_eq!(seen, 13);
    }
}
