//! Preprocessing parity with Pillow + torchvision: every fixture image through our pipeline
//! against `reference/<image>.crop224.png` (Pillow's crop before normalisation).

mod common;

use common::*;
use repvgg_serve::preprocess::PreprocessConfig;

const CONFIG: PreprocessConfig = PreprocessConfig {
    resize: 256,
    crop: 224,
    max_pixels: 50_000_000,
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
