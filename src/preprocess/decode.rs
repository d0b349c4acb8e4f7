//! Decoding: bytes -> upright 8-bit RGB, the way Pillow's `exif_transpose` + `convert('RGB')`
//! see it. The header is read first and images over the pixel limit are refused before a
//! single pixel is decoded.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::rgb::{Rect, RgbImage, Window};
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
    let whole = |width, height| Rect::whole(width, height);
    decode_window_until(bytes, max_pixels, dct_shorter_side, &whole, &|| false).map(|w| w.image)
}

/// Decodes the part of the upright image that `needed` asks for, given the upright width and
/// height: a JPEG decodes only those pixels (and a margin, see [`super::jpeg::decode`]), other
/// formats decode everything and keep the part. A JPEG decode is abandoned between bands of
/// rows once `stop` says so (the other formats decode in one call to their decoder; the pixel
/// limit and the decode budget bound them).
pub(crate) fn decode_window_until(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
    needed: &dyn Fn(usize, usize) -> Rect,
    stop: &dyn Fn() -> bool,
) -> Result<Window, PreprocessError> {
    let (reader, format) = sniff(bytes)?;
    if format == ImageFormat::Jpeg {
        let stored_rect = |width, height, orientation| {
            let (upright_width, upright_height) = upright_size(orientation, width, height);
            let upright = needed(upright_width, upright_height);
            stored_rect(orientation, width, height, upright)
        };
        let (stored, orientation) =
            super::jpeg::decode(bytes, max_pixels, dct_shorter_side, &stored_rect, stop)?;
        let (width, height) = (stored.full_width, stored.full_height);
        let (full_width, full_height) = upright_size(orientation, width, height);
        return Ok(Window {
            image: orient(stored.image, orientation),
            rect: upright_rect(orientation, width, height, stored.rect),
            exact: needed(full_width, full_height),
            full_width,
            full_height,
        });
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    super::budget::check_pixels(width, height, max_pixels)?;
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
    Ok(Window::whole(to_rgb(image)))
}

/// Whether an orientation swaps width and height (the four that rotate by a quarter turn).
fn turns(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The upright size of a stored `width x height` image.
fn upright_size(orientation: Orientation, width: usize, height: usize) -> (usize, usize) {
    if turns(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// The stored pixels that become the upright rectangle `upright` once `orientation` is
/// applied to a stored `width x height` image (so decoding `stored_rect` and orienting it gives
/// exactly the upright rectangle). Stored `(x, y)` of upright `(u, v)`, as
/// `image`'s `apply_orientation` moves pixels (EXIF 1-8).
fn stored_rect(orientation: Orientation, width: usize, height: usize, upright: Rect) -> Rect {
    let stored = |u: usize, v: usize| match orientation {
        Orientation::NoTransforms => (u, v),
        Orientation::FlipHorizontal => (width - 1 - u, v),
        Orientation::Rotate180 => (width - 1 - u, height - 1 - v),
        Orientation::FlipVertical => (u, height - 1 - v),
        Orientation::Rotate90 => (v, height - 1 - u),
        Orientation::Rotate270 => (width - 1 - v, u),
        Orientation::Rotate90FlipH => (v, u),
        Orientation::Rotate270FlipH => (width - 1 - v, height - 1 - u),
    };
    let (x0, y0) = stored(upright.left, upright.top);
    let (x1, y1) = stored(upright.right() - 1, upright.bottom() - 1);
    Rect {
        left: x0.min(x1),
        top: y0.min(y1),
        width: x0.abs_diff(x1) + 1,
        height: y0.abs_diff(y1) + 1,
    }
}

/// The upright rectangle that the stored rectangle `stored` of a stored `width x height` image
/// becomes once `orientation` is applied: [`stored_rect`] of the inverse orientation, whose
/// "stored" image is the upright one.
fn upright_rect(orientation: Orientation, width: usize, height: usize, stored: Rect) -> Rect {
    let inverse = match orientation {
        Orientation::Rotate90 => Orientation::Rotate270,
        Orientation::Rotate270 => Orientation::Rotate90,
        other => other, // flips, a half turn and the two transposes undo themselves
    };
    let (upright_width, upright_height) = upright_size(orientation, width, height);
    stored_rect(inverse, upright_width, upright_height, stored)
}

/// Peak memory of decoding `bytes` (see [`super::budget::decode_cost`]), from the header alone;
/// images over the pixel limit are refused here already.
pub fn decode_cost(bytes: &[u8], max_pixels: u64) -> Result<u64, PreprocessError> {
    let decoder = sniff(bytes)?
        .0
        .into_decoder()
        .map_err(|e| PreprocessError::Undecodable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    super::budget::check_pixels(width, height, max_pixels)?;
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
    /// Every fixture JPEG (baseline, progressive, CMYK, EXIF 6, tiny fuzz seeds), one written
    /// here at an odd size with 4:2:2 chroma, and the EXIF fixture rewritten with each of the
    /// eight orientations.
    fn every_fixture_jpeg() -> Vec<(String, Vec<u8>)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut jpegs = Vec::new();
        for dir in ["tests/fixtures/images", "fuzz/corpus/image"] {
            for entry in std::fs::read_dir(root.join(dir)).expect("fixture directory") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "jpg") {
                    let bytes = std::fs::read(&path).expect("fixture");
                    jpegs.push((path.display().to_string(), bytes));
                }
            }
        }
        let source = image::open(root.join("tests/fixtures/images/coffee.png"))
            .expect("coffee.png")
            .crop_imm(3, 5, 451, 299)
            .to_rgb8();
        let mut odd = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut odd, 85)
            .encode_image(&source)
            .expect("encode");
        jpegs.push(("451x299, 4:2:2".into(), odd));
        let exif = std::fs::read(root.join("tests/fixtures/images/coffee_exif6.jpg"))
            .expect("EXIF fixture");
        for value in 1..=8u8 {
            jpegs.push((
                format!("EXIF orientation {value}"),
                with_orientation(&exif, value),
            ));
        }
        assert!(jpegs.len() >= 17, "{} JPEGs", jpegs.len());
        jpegs
    }

    /// `jpeg` with its EXIF orientation entry (tag 0x0112, SHORT, count 1) set to `value`.
    fn with_orientation(jpeg: &[u8], value: u8) -> Vec<u8> {
        let big = [0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01];
        let little = [0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00];
        let mut out = jpeg.to_vec();
        let (at, high_first) = match out.windows(8).position(|w| w == big) {
            Some(at) => (at, true),
            None => (
                out.windows(8)
                    .position(|w| w == little)
                    .expect("an orientation entry"),
                false,
            ),
        };
        let field = if high_first { [0, value] } else { [value, 0] };
        out[at + 8..at + 10].copy_from_slice(&field);
        out
    }

    /// Regions of a `width x height` image: the crops the service uses, and rectangles that
    /// touch each edge, sit at odd offsets, or are a single pixel.
    fn regions(width: usize, height: usize) -> Vec<Rect> {
        let mut rects: Vec<Rect> = [(256, 224), (320, 320), (64, 56), (1000, 900)]
            .into_iter()
            .map(|(shorter, crop)| super::super::resize::needed_rect(width, height, shorter, crop))
            .collect();
        let (w3, h3) = (width.div_ceil(3), height.div_ceil(3));
        let (left, top) = (7.min(width - 1), 5.min(height - 1));
        rects.extend([
            Rect {
                left: width - w3,
                top: 0,
                width: w3,
                height: h3,
            },
            Rect {
                left: 0,
                top: height - h3,
                width: w3,
                height: h3,
            },
            Rect {
                left: width / 2 + 1,
                top: height / 3 + 3,
                width: 1,
                height: 1,
            },
            Rect {
                left,
                top,
                width: (width - left).min(8),
                height: (height - top).min(h3),
            },
        ]);
        rects.retain(|r| r.right() <= width && r.bottom() <= height);
        rects
    }

    /// Region decoding (rows skipped, columns cropped by libjpeg) gives exactly the full
    /// decode's pixels inside the region, for every orientation, and with DCT scaling too.
    #[test]
    fn a_jpeg_region_decodes_to_the_same_pixels_as_the_full_decode() {
        let mut compared = 0;
        for (name, jpeg) in every_fixture_jpeg() {
            for dct in [None, Some(64)] {
                let full = decode_rgb(&jpeg, u64::MAX, dct).expect(&name);
                for rect in regions(full.width, full.height) {
                    let window = decode_window_until(&jpeg, u64::MAX, dct, &|_, _| rect, &|| false)
                        .unwrap_or_else(|e| panic!("{name} {rect:?}: {e}"));
                    assert_eq!(window.exact, rect, "{name}");
                    let have = window.rect;
                    assert!(
                        have.contains(&rect),
                        "{name}: the window {have:?} does not hold {rect:?}"
                    );
                    assert_eq!(
                        (window.full_width, window.full_height),
                        (full.width, full.height)
                    );
                    assert_eq!(
                        (window.image.width, window.image.height),
                        (have.width, have.height)
                    );
                    let part = |image: &RgbImage, at: Rect| -> Vec<u8> {
                        image
                            .pixels
                            .chunks_exact(image.width * 3)
                            .skip(rect.top - at.top)
                            .take(rect.height)
                            .flat_map(|row| &row[(rect.left - at.left) * 3..][..rect.width * 3])
                            .copied()
                            .collect()
                    };
                    let expected = part(&full, Rect::whole(full.width, full.height));
                    let got = part(&window.image, have);
                    let differing = expected.iter().zip(&got).filter(|(a, b)| a != b).count();
                    assert_eq!(got.len(), expected.len(), "{name} {rect:?}");
                    assert_eq!(differing, 0, "{name} {rect:?} dct {dct:?}: samples differ");
                    compared += 1;
                }
            }
        }
        assert!(compared > 100, "{compared} regions compared");
    }

    /// The pipeline's crop from a region decode equals the crop of the full decode, resized.
    #[test]
    fn the_crop_from_a_region_decode_equals_the_crop_from_the_full_decode() {
        for (name, jpeg) in every_fixture_jpeg() {
            for (resize, crop, jpeg_dct_scaling) in [
                (256, 224, false),
                (320, 320, false),
                (256, 224, true),
                (40, 32, false),
            ] {
                let config = super::super::PreprocessConfig {
                    resize,
                    crop,
                    max_pixels: u64::MAX,
                    jpeg_dct_scaling,
                };
                let from_region = config.crop_rgb(&jpeg).expect(&name);
                let dct = jpeg_dct_scaling.then_some(resize as usize);
                let full = decode_rgb(&jpeg, u64::MAX, dct).expect(&name);
                let from_full = super::super::resize::resize_and_crop(
                    &Window::whole(full),
                    resize as usize,
                    crop as usize,
                );
                assert!(
                    from_region == from_full,
                    "{name} {resize}/{crop} dct {jpeg_dct_scaling}"
                );
            }
        }
    }

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
