//! Preprocessing parity with Pillow + torchvision: every fixture image through our pipeline
//! against `reference/<image>.crop224.png` (Pillow's crop before normalisation).

mod common;

use common::*;
use repvgg_serve::preprocess::PreprocessConfig;

const CONFIG: PreprocessConfig = PreprocessConfig {
    resize: 256,
    crop: 224,
    max_pixels: 50_000_000,
    jpeg_dct_scaling: false,
};

#[test]
fn every_fixture_image_matches_pillow() {
    for image in IMAGES {
        let bytes = std::fs::read(fixture(&format!("images/{image}"))).expect("fixture image");
        let ours = CONFIG
            .crop_rgb(&bytes)
            .unwrap_or_else(|e| panic!("{image}: {e}"));
        let reference = image::open(fixture(&format!("reference/{image}.crop224.png")))
            .expect("reference crop")
            .to_rgb8();
        assert_eq!(ours.len(), reference.as_raw().len(), "{image}: size");
        let (max_allowed, mean_allowed) = if is_jpeg(image) { (3, 0.5) } else { (1, 0.1) };
        for c in 0..3 {
            let diffs: Vec<u8> = ours
                .iter()
                .zip(reference.as_raw())
                .skip(c)
                .step_by(3)
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let max = *diffs.iter().max().expect("pixels");
            let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            eprintln!("{image} channel {c}: max {max}, mean {mean:.4}");
            assert!(
                max <= max_allowed,
                "{image} channel {c}: max diff {max} > {max_allowed}"
            );
            assert!(
                mean <= mean_allowed,
                "{image} channel {c}: mean diff {mean} > {mean_allowed}"
            );
        }
    }
}

/// DCT-scaled JPEG decoding (`--jpeg-dct-scaling`) trades exactness for speed on big photos:
/// fixture photos scaled up 8x (an 8x8 block per source pixel, like a 12 MP photo of the same
/// scene) and encoded at quality 90 give crops close to the exact pipeline's.
#[test]
fn dct_scaled_decoding_stays_close_to_the_exact_pipeline() {
    let dct = PreprocessConfig {
        jpeg_dct_scaling: true,
        ..CONFIG
    };
    for name in ["chelsea.png", "coffee.png", "astronaut.png", "horse.png"] {
        let source = image::open(fixture(&format!("images/{name}")))
            .expect("fixture")
            .to_rgb8();
        let (w, h) = (source.width() * 8, source.height() * 8);
        let big = image::imageops::resize(&source, w, h, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&big)
            .expect("encode");
        let exact = CONFIG.crop_rgb(&jpeg).expect("exact");
        let reduced = dct.crop_rgb(&jpeg).expect("dct-scaled");
        assert_eq!(exact.len(), reduced.len(), "{name}");
        let diffs: Vec<u8> = exact
            .iter()
            .zip(&reduced)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = *diffs.iter().max().expect("pixels");
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        eprintln!("{name} at {w}x{h}: DCT-scaled vs exact: max {max}, mean {mean:.3}");
        assert!(mean <= 1.0, "{name}: mean difference {mean}");
        assert!(max <= 24, "{name}: max difference {max}");
        assert_ne!(exact, reduced, "{name}: DCT scaling was not applied");
    }
}
