//! Resize the shorter side and centre-crop, reproducing Pillow's `resize(BILINEAR)` +
//! torchvision's `Resize` / `CenterCrop` pixel for pixel.
//!
//! Pillow's resampling (`Resample.c`) is separable: a horizontal pass into an 8-bit image, then
//! a vertical pass, each with triangle-filter weights stretched by the downscale factor,
//! normalised, and rounded to 22-bit fixed point. No crate reproduces it exactly (SIMD resizers
//! differ by one here and there), so it is written out here. Only the pixels inside the crop
//! are computed: each output pixel depends on its own taps alone, so the result equals
//! resizing everything and cropping afterwards.

use std::ops::Range;

use super::rgb::{Rect, Window};

/// Fractional bits of Pillow's fixed-point weights (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// torchvision's output size for `Resize(shorter)`: the shorter side becomes `shorter`, the
/// longer one `int(shorter * long / short)` (truncated).
pub fn resized_size(width: usize, height: usize, shorter: usize) -> (usize, usize) {
    let long_of = |long: usize, short: usize| ((shorter * long) as f64 / short as f64) as usize;
    if width <= height {
        (shorter, long_of(height, width))
    } else {
        (long_of(width, height), shorter)
    }
}

/// torchvision's `CenterCrop` offset: `round((size - crop) / 2)` with Python's ties-to-even.
pub fn crop_offset(size: usize, crop: usize) -> usize {
    let d = size.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Fixed-point taps of one output sample: input indices `start..start + weights.len()`.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter, for output
/// samples `first..first + count` of a resize from `in_size` to `out_size`.
fn taps(in_size: usize, out_size: usize, first: usize, count: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // bilinear support 1.0, stretched when downscaling
    (first..first + count)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as isize).max(0) as usize;
            let xmax = ((center + support + 0.5) as isize).min(in_size as isize) as usize;
            let raw: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = (x as f64 - center + 0.5) / filter_scale;
                    (1.0 - t.abs()).max(0.0)
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    // Round half away from zero, as Pillow's `(int)(0.5 + w)` / `(int)(-0.5 + w)`.
                    (if fixed < 0.0 {
                        fixed - 0.5
                    } else {
                        fixed + 0.5
                    }) as i32
                })
                .collect();
            Taps {
                start: xmin,
                weights,
            }
        })
        .collect()
}

/// One fixed-point sample: `(2^21 + sum(pixel * weight)) >> 22`, clamped to 0..=255.
#[inline]
fn sample(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The input samples `taps` read; `first..first + count` on an axis whose size does not change
/// (no taps: the crop's own samples).
fn span(taps: Option<&[Taps]>, first: usize, count: usize) -> Range<usize> {
    let Some(taps) = taps else {
        return first..first + count;
    };
    let start = taps.iter().map(|t| t.start).min().unwrap_or(first);
    let end = taps
        .iter()
        .map(|t| t.start + t.weights.len())
        .max()
        .unwrap_or(start);
    start..end
}

/// A resize of a `w x h` image to shorter side `shorter`, then its centre `crop x crop` square:
/// where the crop lies in the resized image and the taps of its columns and rows (none on an
/// axis whose size does not change).
struct Plan {
    crop: Rect,
    columns: Option<Vec<Taps>>,
    rows: Option<Vec<Taps>>,
}

impl Plan {
    fn new(w: usize, h: usize, shorter: usize, crop: usize) -> Self {
        let (out_w, out_h) = resized_size(w, h, shorter);
        let (width, height) = (crop.min(out_w), crop.min(out_h));
        let crop = Rect {
            left: crop_offset(out_w, width),
            top: crop_offset(out_h, height),
            width,
            height,
        };
        Self {
            columns: (out_w != w).then(|| taps(w, out_w, crop.left, crop.width)),
            rows: (out_h != h).then(|| taps(h, out_h, crop.top, crop.height)),
            crop,
        }
    }

    /// The input pixels the taps read.
    fn needed(&self) -> Rect {
        let c = &self.crop;
        let columns = span(self.columns.as_deref(), c.left, c.width);
        let rows = span(self.rows.as_deref(), c.top, c.height);
        Rect {
            left: columns.start,
            top: rows.start,
            width: columns.len(),
            height: rows.len(),
        }
    }
}

/// The pixels of a `w x h` image that [`resize_and_crop`] reads: the taps of the crop's
/// columns and rows. A decoder that produces only these gives the same crop as a full decode.
pub(crate) fn needed_rect(w: usize, h: usize, shorter: usize, crop: usize) -> Rect {
    Plan::new(w, h, shorter, crop).needed()
}

/// Resizes the image `window` is part of so its shorter side is `shorter` and returns the
/// centre `crop x crop` square as interleaved RGB. The window must hold [`needed_rect`].
pub(crate) fn resize_and_crop(window: &Window, shorter: usize, crop: usize) -> Vec<u8> {
    let plan = Plan::new(window.full_width, window.full_height, shorter, crop);
    let (needed, exact) = (plan.needed(), window.exact);
    assert!(
        exact.contains(&needed) && window.rect.contains(&exact),
        "the decoded window's exact part {exact:?} lacks pixels the crop reads ({needed:?})"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return resample_avx2(window, &plan);
    }
    resample(window, &plan)
}

/// [`resample`] compiled for AVX2: the same integer arithmetic, eight 32-bit lanes at a time
/// (the x86-64 baseline, SSE2, has no 32-bit multiply of its own). Integer sums do not depend
/// on their order, so the pixels are the same; on a 12 MP photo the resize's share of the
/// preprocessing CPU fell from 26 to 18 % (`perf`, `benches/preprocess.rs`, 2-core EPYC Zen 5).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn resample_avx2(window: &Window, plan: &Plan) -> Vec<u8> {
    #[target_feature(enable = "avx2")]
    fn with_avx2(window: &Window, plan: &Plan) -> Vec<u8> {
        resample(window, plan)
    }
    // SAFETY: the only caller checked that this CPU has AVX2, the one requirement of a
    // `target_feature(enable = "avx2")` function.
    unsafe { with_avx2(window, plan) }
}

/// Lanes of the horizontal kernel: a multiple of 3 (a pixel's channels) and of 8 (AVX2's
/// 32-bit lanes), so each lane always holds the same channel.
const LANES: usize = 24;

/// One output column's taps spread over the interleaved bytes they read: byte `3k + c` of its
/// window gets tap `k`'s weight, zero-padded to whole [`LANES`].
struct ByteTaps {
    /// Offset of the window's first byte in a decoded row.
    first: usize,
    weights: Vec<[i32; LANES]>,
}

impl ByteTaps {
    fn new(taps: &Taps, window_left: usize) -> Self {
        let mut spread = vec![[0i32; LANES]; (taps.weights.len() * 3).div_ceil(LANES)];
        for (k, &w) in taps.weights.iter().enumerate() {
            for c in 0..3 {
                let byte = 3 * k + c;
                spread[byte / LANES][byte % LANES] = w;
            }
        }
        Self {
            first: (taps.start - window_left) * 3,
            weights: spread,
        }
    }

    fn bytes(&self) -> usize {
        self.weights.len() * LANES
    }
}

/// Byte-by-weight products of one output pixel's window summed lane by lane over whole
/// [`LANES`] (vectorised); the caller sums each channel's lanes.
#[inline(always)]
fn weighted_lanes(bytes: &[[u8; LANES]], weights: &[[i32; LANES]]) -> [i32; LANES] {
    let mut lanes = [0i32; LANES];
    for (bytes, weights) in bytes.iter().zip(weights) {
        for ((lane, &b), &w) in lanes.iter_mut().zip(bytes).zip(weights) {
            *lane += i32::from(b) * w;
        }
    }
    lanes
}

/// Pillow's `(2^21 + sum(byte * weight)) >> 22` for each channel of one output pixel, from
/// its [`weighted_lanes`].
#[inline(always)]
fn channels(lanes: &[i32; LANES]) -> [u8; 3] {
    let mut rgb = [HALF; 3];
    for (i, lane) in lanes.iter().enumerate() {
        rgb[i % 3] += lane;
    }
    rgb.map(sample)
}

/// Pillow's rounding offset: half of the fixed-point one.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// The two passes of the resize, inside the crop only. Inlined into each instruction-set
/// variant of [`resize_and_crop`].
#[inline(always)]
fn resample(window: &Window, plan: &Plan) -> Vec<u8> {
    let c = plan.crop;
    let (crop_w, crop_h) = (c.width, c.height);
    let (needed, have) = (plan.needed(), window.rect);
    // Pixels of the window, addressed by their position in the full image.
    let window_stride = have.width * 3;
    let row_of = |y: usize| &window.image.pixels[(y - have.top) * window_stride..][..window_stride];

    // The vertical taps decide which input rows the horizontal pass must produce.
    let (row_first, row_end) = (needed.top, needed.bottom());

    // Horizontal pass: rows row_first..row_end, crop columns only, into 8-bit (as Pillow does).
    let rows = row_end - row_first;
    let mut horizontal = vec![0u8; rows * crop_w * 3];
    if let Some(columns) = &plan.columns {
        let columns: Vec<ByteTaps> = columns
            .iter()
            .map(|t| ByteTaps::new(t, have.left))
            .collect();
        // Columns whose padded window runs past the end of a row read a zero-padded copy.
        let mut padded = Vec::new();
        // One row's lanes go through memory before their channels are summed: fused into one
        // loop, the compiler folds the lanes back into scalar per-channel sums.
        let mut lanes = vec![[0i32; LANES]; crop_w];
        for (r, out_row) in horizontal.chunks_exact_mut(crop_w * 3).enumerate() {
            let src = row_of(row_first + r);
            for (t, lanes) in columns.iter().zip(&mut lanes) {
                let end = t.first + t.bytes();
                let bytes = if end <= src.len() {
                    &src[t.first..end]
                } else {
                    padded.clear();
                    padded.extend_from_slice(&src[t.first..]);
                    padded.resize(t.bytes(), 0);
                    &padded[..]
                };
                *lanes = weighted_lanes(bytes.as_chunks().0, &t.weights);
            }
            for (lanes, out) in lanes.iter().zip(out_row.chunks_exact_mut(3)) {
                out.copy_from_slice(&channels(lanes));
            }
        }
    } else {
        for (r, out_row) in horizontal.chunks_exact_mut(crop_w * 3).enumerate() {
            let start = (c.left - have.left) * 3;
            out_row.copy_from_slice(&row_of(row_first + r)[start..start + crop_w * 3]);
        }
    }

    // Vertical pass over the horizontally resized rows.
    let Some(vertical) = &plan.rows else {
        return horizontal;
    };
    let stride = crop_w * 3;
    let mut out = vec![0u8; crop_h * stride];
    let mut acc = vec![0i32; stride];
    for (t, out_row) in vertical.iter().zip(out.chunks_exact_mut(stride)) {
        // Row by row: each tap adds a whole input row, contiguous, into the accumulators.
        acc.fill(HALF);
        let first = (t.start - row_first) * stride;
        let rows = horizontal[first..first + t.weights.len() * stride].chunks_exact(stride);
        for (row, &wt) in rows.zip(&t.weights) {
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * wt;
            }
        }
        for (value, &a) in out_row.iter_mut().zip(&acc) {
            *value = sample(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::rgb::RgbImage;

    #[test]
    fn output_size_truncates_the_longer_side() {
        assert_eq!(resized_size(451, 300, 256), (384, 256));
        assert_eq!(resized_size(1000, 872, 256), (293, 256));
        assert_eq!(resized_size(300, 451, 256), (256, 384));
        assert_eq!(resized_size(256, 256, 256), (256, 256));
    }

    #[test]
    fn crop_offset_rounds_half_to_even() {
        assert_eq!(crop_offset(293, 224), 34); // 34.5 -> 34
        assert_eq!(crop_offset(295, 224), 36); // 35.5 -> 36
        assert_eq!(crop_offset(384, 224), 80);
        assert_eq!(crop_offset(224, 224), 0);
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for t in taps(1000, 293, 0, 293) {
            let sum: i32 = t.weights.iter().sum();
            assert!(
                (sum - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i32,
                "{sum}"
            );
        }
    }

    /// Pillow's arithmetic written out tap by tap for each output pixel: what the vectorised
    /// passes must reproduce exactly.
    fn tap_by_tap(image: &RgbImage, shorter: usize, crop: usize) -> Vec<u8> {
        let plan = Plan::new(image.width, image.height, shorter, crop);
        let c = plan.crop;
        let pixel = |x: usize, y: usize, ch: usize| image.pixels[(y * image.width + x) * 3 + ch];
        let horizontal = |i: usize, y: usize, ch: usize| match &plan.columns {
            Some(columns) => {
                let t = &columns[i];
                let sum = (t.weights.iter().enumerate())
                    .map(|(k, &w)| i32::from(pixel(t.start + k, y, ch)) * w)
                    .sum::<i32>();
                sample(HALF + sum)
            }
            None => pixel(c.left + i, y, ch),
        };
        let mut out = Vec::with_capacity(c.width * c.height * 3);
        for j in 0..c.height {
            for i in 0..c.width {
                for ch in 0..3 {
                    out.push(match &plan.rows {
                        Some(rows) => {
                            let t = &rows[j];
                            let sum = (t.weights.iter().enumerate())
                                .map(|(k, &w)| i32::from(horizontal(i, t.start + k, ch)) * w)
                                .sum::<i32>();
                            sample(HALF + sum)
                        }
                        None => horizontal(i, c.top + j, ch),
                    });
                }
            }
        }
        out
    }

    /// A reproducible noise image (xorshift): every tap's weight shows in the result.
    fn noise(width: usize, height: usize, seed: u64) -> RgbImage {
        let mut state = seed;
        let pixels = (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        RgbImage {
            width,
            height,
            pixels,
        }
    }

    #[test]
    fn vectorised_passes_equal_pillows_arithmetic_tap_by_tap() {
        // A 12 MP phone photo both ways up (~24 taps per sample), a small photo (~3 taps), an
        // upscale, and sizes whose last columns' padded windows run past the row's end.
        for (width, height) in [
            (4032, 3024),
            (3024, 4032),
            (451, 300),
            (200, 150),
            (257, 1031),
        ] {
            let image = noise(width, height, (width * height) as u64);
            let expected = tap_by_tap(&image, 256, 224);
            let plan = Plan::new(width, height, 256, 224);
            let window = Window::whole(image);
            assert!(
                resample(&window, &plan) == expected,
                "{width}x{height}: the portable passes differ from Pillow's arithmetic"
            );
            assert!(
                resize_and_crop(&window, 256, 224) == expected,
                "{width}x{height}: the passes this CPU runs differ from Pillow's arithmetic"
            );
        }
        #[cfg(target_arch = "x86_64")]
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("WARNING: this CPU has no AVX2: the AVX2 resize was not tested here");
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let image = RgbImage {
            width: 640,
            height: 480,
            pixels: [10u8, 200, 77].repeat(640 * 480),
        };
        let out = resize_and_crop(&Window::whole(image), 256, 224);
        assert_eq!(out.len(), 224 * 224 * 3);
        assert!(out.chunks_exact(3).all(|p| p == [10, 200, 77]));
    }
}
