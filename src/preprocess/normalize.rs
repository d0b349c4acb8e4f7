//! The last step: 8-bit RGB pixels -> normalised planar (CHW) fp32, written straight into the
//! caller's slot of the batch tensor. The statistics are ImageNet's unless the model was
//! trained with others (`--mean`, `--std`).

/// ImageNet channel means and standard deviations (RGB), as torchvision and timm use them.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Per-channel (RGB) statistics of the training data, on the 0..1 scale.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet's ([`MEAN`], [`STD`]).
    pub const IMAGENET: Self = Self {
        mean: MEAN,
        std: STD,
    };
}

impl Default for Normalization {
    fn default() -> Self {
        Self::IMAGENET
    }
}

/// Writes `(pixel / 255 - mean) / std` for interleaved RGB `pixels` into `out` as three planes.
///
/// `out.len()` must be `pixels.len()`; a lookup table per channel keeps this a copy.
pub fn normalize_into(pixels: &[u8], out: &mut [f32], stats: &Normalization) {
    assert_eq!(
        pixels.len(),
        out.len(),
        "normalize_into: slot size mismatch"
    );
    let plane = pixels.len() / 3;
    let Normalization { mean, std } = stats;
    let tables: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - mean[c]) / std[c]));
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        r[i] = tables[0][usize::from(px[0])];
        g[i] = tables[1][usize::from(px[1])];
        b[i] = tables[2][usize::from(px[2])];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_planes_in_rgb_order() {
        let pixels = [0u8, 128, 255, 255, 0, 128];
        let mut out = [0f32; 6];
        normalize_into(&pixels, &mut out, &Normalization::IMAGENET);
        let expect = |v: f32, c: usize| (v / 255.0 - MEAN[c]) / STD[c];
        let want = [
            expect(0.0, 0),
            expect(255.0, 0),
            expect(128.0, 1),
            expect(0.0, 1),
            expect(255.0, 2),
            expect(128.0, 2),
        ];
        for (a, b) in out.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn other_statistics_are_used_as_given() {
        let stats = Normalization {
            mean: [0.5, 0.0, 1.0],
            std: [0.5, 1.0, 0.25],
        };
        let mut out = [0f32; 3];
        normalize_into(&[255, 51, 0], &mut out, &stats);
        for (got, want) in out.iter().zip([1.0, 0.2, -4.0]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
