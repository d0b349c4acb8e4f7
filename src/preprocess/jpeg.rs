//! JPEG through libjpeg-turbo (the `mozjpeg` crate builds its decoder from source), the decoder
//! Pillow uses: same IDCT, same fancy upsampling, so decoded pixels equal Pillow's exactly
//! (the pure-Rust decoders differ by a few values at edges).
//!
//! libjpeg reports a truncated stream only as a warning and fills the rest with grey, as
//! Pillow would refuse it ("image file is truncated"), a stream whose last scan is not
//! followed by an end-of-image marker is refused here too.

use image::metadata::Orientation;
use mozjpeg::{ColorSpace, Decompress, Marker};

use super::rgb::RgbImage;
use super::PreprocessError;

/// Decodes a JPEG to RGB, with its EXIF orientation (applied by the caller).
///
/// With `dct_shorter_side`, a large JPEG is decoded at 1/2, 1/4 or 1/8 of its size by libjpeg's
/// scaled IDCT (the most reduction that keeps the shorter side at least that long): an 8x8
/// block becomes 4x4, 2x2 or one pixel, skipping most of the decoding work. Pillow does the same
/// when asked (`Image.draft`), torchvision does not, so pixels then differ slightly from the
/// reference pipeline (see docs/benchmarks.md for how much).
pub fn decode(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
) -> Result<(RgbImage, Orientation), PreprocessError> {
    if !ends_after_last_scan(bytes) {
        return Err(PreprocessError::Undecodable(
            "JPEG is truncated (no end-of-image marker after the last scan)".into(),
        ));
    }
    // libjpeg's fatal errors unwind through the decoder; catch them here so a bad image is a
    // 400 for its request and nothing more.
    std::panic::catch_unwind(|| decode_unchecked(bytes, max_pixels, dct_shorter_side))
        .unwrap_or_else(|payload| {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "libjpeg error".into());
            Err(PreprocessError::Undecodable(message))
        })
}

fn decode_unchecked(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
) -> Result<(RgbImage, Orientation), PreprocessError> {
    let undecodable = |e: std::io::Error| PreprocessError::Undecodable(format!("JPEG: {e}"));
    let mut decompress = Decompress::with_markers(&[Marker::APP(1)])
        .from_mem(bytes)
        .map_err(undecodable)?;
    let (width, height) = decompress.size();
    super::decode::check_pixels(width as u32, height as u32, max_pixels)?;
    let orientation = decompress
        .markers()
        .find_map(|m| {
            m.data
                .strip_prefix(b"Exif\0\0")
                .and_then(Orientation::from_exif_chunk)
        })
        .unwrap_or(Orientation::NoTransforms);

    if let Some(numerator) = dct_shorter_side.and_then(|s| dct_numerator(width.min(height), s)) {
        decompress.scale(numerator);
    }

    let cmyk = matches!(
        decompress.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    let (pixels, width, height) = if cmyk {
        let mut started = decompress
            .to_colorspace(ColorSpace::JCS_CMYK)
            .map_err(undecodable)?;
        let (w, h) = (started.width(), started.height());
        let raw: Vec<[u8; 4]> = started.read_scanlines().map_err(undecodable)?;
        started.finish().map_err(undecodable)?;
        (
            raw.iter().flat_map(|&p| adobe_cmyk_to_rgb(p)).collect(),
            w,
            h,
        )
    } else {
        let mut started = decompress.rgb().map_err(undecodable)?;
        let (w, h) = (started.width(), started.height());
        let raw: Vec<u8> = started.read_scanlines().map_err(undecodable)?;
        started.finish().map_err(undecodable)?;
        (raw, w, h)
    };
    if pixels.len() != width * height * 3 {
        return Err(PreprocessError::Undecodable(
            "JPEG: short pixel data".into(),
        ));
    }
    Ok((
        RgbImage {
            width,
            height,
            pixels,
        },
        orientation,
    ))
}

/// The scale numerator (of 8) for DCT-scaled decoding: the smallest of 1, 2, 4 whose output
/// keeps the shorter side at least `target` (libjpeg rounds scaled sizes up); `None` when even
/// 1/2 would go below it.
fn dct_numerator(shorter: usize, target: usize) -> Option<u8> {
    [1u8, 2, 4]
        .into_iter()
        .find(|&n| (shorter * usize::from(n)).div_ceil(8) >= target)
}

/// Pillow's CMYK JPEG handling: Adobe polarity (stored inverted, rawmode `CMYK;I`), then
/// `convert('RGB')`: `nk = 255 - k; channel = nk - c * nk / 255` (rounded as `MULDIV255`).
fn adobe_cmyk_to_rgb(stored: [u8; 4]) -> [u8; 3] {
    let [c, m, y, k] = stored.map(|v| 255 - u32::from(v));
    let nk = 255 - k;
    let muldiv255 = |a: u32| {
        let t = a * nk + 128;
        ((t >> 8) + t) >> 8
    };
    [c, m, y].map(|v| (nk - muldiv255(v)) as u8)
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan (FF DA). Inside
/// entropy-coded data FF is always followed by 00 or a restart marker, so a match is a marker.
fn ends_after_last_scan(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_sos, last_eoi), (Some(sos), Some(eoi)) if eoi > sos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dct_scaling_keeps_the_shorter_side_long_enough() {
        // 4032x3024 phone photo, resize 256: 1/8 gives 378.
        assert_eq!(dct_numerator(3024, 256), Some(1));
        // 1536 / 8 = 192 < 256, 1536 / 4 = 384.
        assert_eq!(dct_numerator(1536, 256), Some(2));
        assert_eq!(dct_numerator(600, 256), Some(4));
        assert_eq!(dct_numerator(511, 256), Some(4)); // libjpeg rounds 255.5 up
        assert_eq!(dct_numerator(510, 256), None);
        assert_eq!(dct_numerator(300, 256), None);
    }

    #[test]
    fn cmyk_conversion_follows_pillow() {
        // Stored inverted: 255 = no ink.
        assert_eq!(adobe_cmyk_to_rgb([255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(adobe_cmyk_to_rgb([255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(adobe_cmyk_to_rgb([0, 255, 255, 255]), [0, 255, 255]);
    }

    #[test]
    fn truncation_is_detected_from_markers() {
        assert!(ends_after_last_scan(&[
            0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 0xFF, 0xD9
        ]));
        assert!(!ends_after_last_scan(&[0xFF, 0xD8, 0xFF, 0xDA, 1, 2, 3]));
        // An embedded thumbnail's EOI before the main scan does not count.
        assert!(!ends_after_last_scan(&[0xFF, 0xD9, 0xFF, 0xDA, 1, 2]));
    }
}
