//! JPEG through libjpeg-turbo (`mozjpeg-sys` builds it from source; [`libjpeg`] wraps the
//! calls used), the decoder Pillow uses: same IDCT, same fancy upsampling, so decoded pixels
//! equal Pillow's exactly (the pure-Rust decoders differ by a few values at edges).
//!
//! libjpeg reports a truncated stream only as a warning and fills the rest with grey, as
//! Pillow would refuse it ("image file is truncated"), a stream whose last scan is not
//! followed by an end-of-image marker is refused here too.
//!
//! Two bounds on the CPU one file can take: a JPEG with more than [`MAX_SCANS`] scans is
//! refused before decoding (a progressive decoder re-reads the whole coefficient buffer for
//! every scan, so a small crafted file with thousands of scans holds a core for seconds;
//! libjpeg-turbo's own tools cap scans for this reason), and rows are read in bands with the
//! caller's `stop` checked between them, so a decode nobody waits for ends early.

mod libjpeg;

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use image::metadata::Orientation;

use super::rgb::{Rect, RgbImage, Window};
use super::PreprocessError;
use libjpeg::Decompressor;

/// Decodes a JPEG to RGB, with its EXIF orientation (applied by the caller).
///
/// `wanted` is asked, once the header is read, which pixels are needed, given the stored width
/// and height (after DCT scaling) and the orientation; only those are produced. libjpeg skips
/// the rows above the region without their inverse DCT, upsampling and colour conversion, and
/// stops below it; `jpeg_crop_scanline` leaves out the columns beside it (the entropy-coded data
/// is still read in full: that is the part no JPEG decoder can skip). A margin of
/// [`EDGE_MARGIN`] pixels is decoded around the region and kept in the window (its `exact` part
/// is the region), so that the pixels inside the region do not depend on how the upsampler
/// treats the edge of a crop: they equal the full decode's (tested on every fixture JPEG).
///
/// With `dct_shorter_side`, a large JPEG is decoded at 1/2, 1/4 or 1/8 of its size by libjpeg's
/// scaled IDCT (the most reduction that keeps the shorter side at least that long): an 8x8
/// block becomes 4x4, 2x2 or one pixel, skipping most of the decoding work. Pillow does the same
/// when asked (`Image.draft`), torchvision does not, so pixels then differ slightly from the
/// reference pipeline (see docs/benchmarks.md for how much).
pub(super) fn decode(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
    wanted: &dyn Fn(usize, usize, Orientation) -> Rect,
    stop: &dyn Fn() -> bool,
) -> Result<(Window, Orientation), PreprocessError> {
    if scans_over(bytes, MAX_SCANS) {
        return Err(PreprocessError::TooManyScans { limit: MAX_SCANS });
    }
    if !ends_after_last_scan(bytes) {
        return Err(PreprocessError::Undecodable(
            "JPEG is truncated (no end-of-image marker after the last scan)".into(),
        ));
    }
    // libjpeg's fatal errors unwind through the decoder; catch them here so a bad image is a
    // 400 for its request and nothing more.
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        decode_unchecked(bytes, max_pixels, dct_shorter_side, wanted, stop)
    }))
    .unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "libjpeg error".into());
        Err(PreprocessError::Undecodable(message))
    })
}

/// Pixels decoded beyond each edge of the wanted region and then dropped. Without a margin
/// the region's edge pixels differ from a full decode's (the fancy upsampler replicates the
/// crop's edge instead of reading the chroma beyond it: `decode.rs`'s region test fails at
/// 0); 2 is enough on every fixture (one chroma sample of 4:2:x); 16, a whole iMCU, leaves room
/// for any sampling and costs a few rows and columns.
const EDGE_MARGIN: usize = 16;

fn decode_unchecked(
    bytes: &[u8],
    max_pixels: u64,
    dct_shorter_side: Option<usize>,
    wanted: &dyn Fn(usize, usize, Orientation) -> Rect,
    stop: &dyn Fn() -> bool,
) -> Result<(Window, Orientation), PreprocessError> {
    let mut jpeg = Decompressor::new(bytes);
    let (width, height) = jpeg.size();
    super::budget::check_pixels(width as u32, height as u32, max_pixels)?;
    let orientation = jpeg
        .exif()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    if let Some(numerator) = dct_shorter_side.and_then(|s| dct_numerator(width.min(height), s)) {
        jpeg.scale(numerator);
    }
    let (full_width, full_height) = jpeg.output_size();
    let want = wanted(full_width, full_height, orientation);
    if want.width == 0
        || want.height == 0
        || want.right() > full_width
        || want.bottom() > full_height
    {
        return Err(PreprocessError::Undecodable(format!(
            "JPEG: region {want:?} is not inside the {full_width}x{full_height} image"
        )));
    }

    let cmyk = jpeg.is_cmyk();
    jpeg.start(cmyk);
    // The decoded band: the region and its margins, clamped to the image; libjpeg may widen
    // the columns further to whole iMCUs and says where they start.
    let left = want.left.saturating_sub(EDGE_MARGIN);
    let right = (want.right() + EDGE_MARGIN).min(full_width);
    let first_column = if right - left < full_width {
        jpeg.crop_columns(left, right - left).0
    } else {
        0
    };
    let top = want.top.saturating_sub(EDGE_MARGIN);
    let bottom = (want.bottom() + EDGE_MARGIN).min(full_height);
    if top > 0 {
        jpeg.skip_rows(top);
    }
    if jpeg.rows_done() != top {
        return Err(PreprocessError::Undecodable(format!(
            "JPEG: skipping to row {top} stopped at row {}",
            jpeg.rows_done()
        )));
    }
    let (row_len, _) = jpeg.row_len_and_height();
    let mut raw = spare_buffer(row_len * (bottom - top));
    read_rows(&mut jpeg, &mut raw, row_len, stop)?;
    if bottom == full_height {
        jpeg.finish();
    }

    // The decoded band is the window as it is (it holds the wanted rectangle): a 12 MP photo's
    // band is ~24 MB, and a copy of it costs fresh pages as much as the decode's own.
    let channels = if cmyk { 4 } else { 3 };
    let band_width = row_len / channels;
    let pixels = if cmyk {
        let rgb = raw
            .chunks_exact(4)
            .flat_map(|p| adobe_cmyk_to_rgb([p[0], p[1], p[2], p[3]]))
            .collect();
        recycle(raw);
        rgb
    } else {
        raw
    };
    let image = RgbImage {
        width: band_width,
        height: bottom - top,
        pixels,
    };
    let rect = Rect {
        left: first_column,
        top,
        width: band_width,
        height: bottom - top,
    };
    Ok((
        Window {
            image,
            rect,
            exact: want,
            full_width,
            full_height,
        },
        orientation,
    ))
}

/// Largest buffer a thread keeps for its next decode (a 12 MP photo's band is ~24 MB).
const MAX_SPARE_BYTES: usize = 48 << 20;

thread_local! {
    /// This thread's buffer from its last image, for the next JPEG's band (see [`recycle`]).
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A zeroed buffer of `len` bytes, made from this thread's spare when it has one. Buffers this
/// large are mappings of their own (`memory::fix_mmap_threshold`): a fresh one costs a page
/// fault per 4 KiB written and an unmap when freed, a third of the CPU time of serving phone
/// photos (measured with `perf`, docs/benchmarks.md).
fn spare_buffer(len: usize) -> Vec<u8> {
    let mut buffer = SPARE.take();
    buffer.clear();
    buffer.resize(len, 0);
    buffer
}

/// Keeps `pixels` as this thread's spare buffer for its next JPEG when it is at most
/// [`MAX_SPARE_BYTES`] (so each preprocessing thread holds at most that much between images).
pub(crate) fn recycle(pixels: Vec<u8>) {
    if pixels.capacity() <= MAX_SPARE_BYTES {
        SPARE.set(pixels);
    }
}

/// Scans a JPEG may have. Encoders write 1 (baseline), 3 (non-interleaved), about 10
/// (libjpeg's and mozjpeg's progressive scripts) and rarely a few dozen; 100 leaves room for
/// any of them and refuses the thousands a crafted file uses.
pub const MAX_SCANS: usize = 100;

/// Rows decoded between two looks at `stop`.
const ROWS_PER_BAND: usize = 32;

/// Reads the next `out.len() / row_len` rows into `out`, a band at a time, giving up with
/// [`PreprocessError::Stopped`] when `stop` says so.
fn read_rows(
    jpeg: &mut Decompressor<'_>,
    out: &mut [u8],
    row_len: usize,
    stop: &dyn Fn() -> bool,
) -> Result<(), PreprocessError> {
    if row_len == 0 {
        return Err(PreprocessError::Undecodable("JPEG: empty rows".into()));
    }
    for band in out.chunks_mut(row_len * ROWS_PER_BAND) {
        if stop() {
            return Err(PreprocessError::Stopped);
        }
        jpeg.read_rows(band, row_len)
            .map_err(PreprocessError::Undecodable)?;
    }
    Ok(())
}

/// Whether the JPEG has more than `limit` start-of-scan segments, found by walking its marker
/// segments (entropy-coded data is skipped: in it, FF is followed by 00 or a restart marker,
/// so markers cannot be faked there; APP segments are skipped by their length, so bytes in
/// an EXIF thumbnail or ICC profile are not mistaken for markers).
fn scans_over(bytes: &[u8], limit: usize) -> bool {
    let mut scans = 0;
    let mut at = 2; // after SOI
    while at + 1 < bytes.len() {
        if bytes[at] != 0xFF {
            at += 1; // garbage between segments: libjpeg skips it too
            continue;
        }
        let marker = bytes[at + 1];
        match marker {
            0xFF => {
                at += 1; // fill byte
                continue;
            }
            0x00 | 0x01 | 0xD0..=0xD8 => {
                at += 2; // stand-alone markers
                continue;
            }
            0xD9 => return false, // end of image
            _ => {}
        }
        let Some(length) = bytes.get(at + 2..at + 4) else {
            return false;
        };
        let next = at + 2 + usize::from(u16::from_be_bytes([length[0], length[1]]));
        if marker != 0xDA {
            at = next;
            continue;
        }
        scans += 1;
        if scans > limit {
            return true;
        }
        // Entropy-coded data runs to the next marker that is not a stuffed 00 or a restart.
        // memchr finds the FF bytes (about one in 256 there) with SIMD: a byte-by-byte walk
        // was 3 % of the CPU serving 12 MP photos.
        at = next;
        loop {
            let Some(ff) = bytes.get(at..).and_then(|rest| memchr::memchr(0xFF, rest)) else {
                return false;
            };
            at += ff;
            match bytes.get(at + 1) {
                None => return false,
                Some(0x00 | 0xD0..=0xD7) => at += 1,
                Some(_) => break,
            }
        }
    }
    false
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
    // The last FF followed by `marker`, searched backwards FF by FF (memrchr, SIMD).
    let last = |marker: u8| {
        memchr::memrchr_iter(0xFF, bytes).find(|&at| bytes.get(at + 1) == Some(&marker))
    };
    matches!((last(0xDA), last(0xD9)), (Some(sos), Some(eoi)) if eoi > sos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_serves_the_next_band_and_an_oversized_one_is_let_go() {
        let first = spare_buffer(1 << 20);
        let at = first.as_ptr();
        recycle(first);
        let second = spare_buffer(1 << 19);
        assert_eq!(second.as_ptr(), at, "the spare allocation was not reused");
        assert!(second.iter().all(|&b| b == 0) && second.len() == 1 << 19);
        recycle(vec![1u8; MAX_SPARE_BYTES + 1]);
        assert_eq!(
            spare_buffer(16).capacity(),
            16,
            "an oversized buffer was kept"
        );
    }

    /// Every pixel.
    fn whole(width: usize, height: usize, _: Orientation) -> Rect {
        Rect::whole(width, height)
    }

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

    /// A progressive fixture with one of its scans repeated until it has `scans` in all.
    fn with_scans(scans: usize) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images/camera_progressive.jpg");
        let jpeg = std::fs::read(path).expect("fixture");
        let last_sos = jpeg
            .windows(2)
            .rposition(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        let eoi = jpeg.len() - 2;
        let mut crafted = jpeg[..eoi].to_vec();
        let own = count(&jpeg);
        for _ in own..scans {
            crafted.extend_from_slice(&jpeg[last_sos..eoi]);
        }
        crafted.extend_from_slice(&[0xFF, 0xD9]);
        crafted
    }

    fn count(jpeg: &[u8]) -> usize {
        (0..1000)
            .find(|&n| !scans_over(jpeg, n))
            .expect("under 1000")
    }

    #[test]
    fn scans_are_counted_by_walking_segments() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images/camera_progressive.jpg");
        let progressive = std::fs::read(path).expect("fixture");
        let own = count(&progressive);
        assert!(
            (2..=20).contains(&own),
            "a progressive file has {own} scans"
        );
        assert_eq!(count(&with_scans(250)), 250);
        // A marker-like FF DA inside an APP segment is not a scan.
        let mut app = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x06, 0xFF, 0xDA, 0xFF, 0xDA];
        app.extend_from_slice(&progressive[2..]);
        assert_eq!(count(&app), own);
    }

    #[test]
    fn a_jpeg_with_thousands_of_scans_is_refused_before_decoding() {
        let crafted = with_scans(3000);
        let refused = decode(&crafted, u64::MAX, None, &whole, &|| false);
        assert!(
            matches!(
                refused,
                Err(PreprocessError::TooManyScans { limit: MAX_SCANS })
            ),
            "{refused:?}"
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images/camera_progressive.jpg");
        let fine = std::fs::read(path).expect("fixture");
        assert!(decode(&fine, u64::MAX, None, &whole, &|| false).is_ok());
    }

    #[test]
    fn a_decode_stops_between_bands_when_told() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images/hubble_deep_field.jpg");
        let jpeg = std::fs::read(path).expect("fixture");
        let looks = std::cell::Cell::new(0);
        let stop_after_one_band = || {
            looks.set(looks.get() + 1);
            looks.get() > 1
        };
        let stopped = decode(&jpeg, u64::MAX, None, &whole, &stop_after_one_band);
        assert!(
            matches!(stopped, Err(PreprocessError::Stopped)),
            "{stopped:?}"
        );
        assert_eq!(looks.get(), 2, "stopped at the second band");
        assert!(decode(&jpeg, u64::MAX, None, &whole, &|| false).is_ok());
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
