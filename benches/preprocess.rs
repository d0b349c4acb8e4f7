//! Preprocessing (decode -> EXIF -> RGB -> Pillow-exact resize -> crop -> normalise) per fixture
//! image, and the same photo at several sizes up to a 12 MP phone photo.
//!
//! cargo bench --bench preprocess

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use image::codecs::jpeg::JpegEncoder;
use repvgg_serve::preprocess::PreprocessConfig;

const CONFIG: PreprocessConfig = PreprocessConfig {
    resize: 256,
    crop: 224,
    max_pixels: 50_000_000,
    jpeg_dct_scaling: false,
};

/// `--jpeg-dct-scaling`: big JPEGs decoded reduced by libjpeg's scaled IDCT.
const DCT: PreprocessConfig = PreprocessConfig {
    jpeg_dct_scaling: true,
    ..CONFIG
};

fn fixtures(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/images")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    let mut out = vec![0f32; CONFIG.slot_len()];
    for path in paths {
        let bytes = std::fs::read(&path).expect("fixture");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        group.bench_function(name, |b| {
            b.iter(|| CONFIG.run_into(&bytes, &mut out).expect("fixture decodes"))
        });
    }
    group.finish();
}

/// `coffee.png` scaled to several sizes and written as JPEG (quality 90), as phones and
/// cameras send them: decoding grows with the pixel count, the resize only with the crop.
/// Exact (every pixel decoded, as Pillow) and DCT-scaled (`--jpeg-dct-scaling`).
fn sizes(c: &mut Criterion) {
    let source =
        image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/coffee.png"))
            .expect("coffee.png")
            .to_rgb8();
    let mut group = c.benchmark_group("preprocess_jpeg_by_size");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    let mut out = vec![0f32; CONFIG.slot_len()];
    for (w, h) in [(600, 400), (1280, 960), (2016, 1512), (4032, 3024)] {
        let scaled = image::imageops::resize(&source, w, h, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&scaled)
            .expect("encode");
        for (mode, config) in [("exact", CONFIG), ("dct_scaled", DCT)] {
            group.bench_with_input(
                BenchmarkId::new(mode, format!("{w}x{h}")),
                &jpeg,
                |b, jpeg| b.iter(|| config.run_into(jpeg, &mut out).expect("decodes")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, fixtures, sizes);
criterion_main!(benches);
