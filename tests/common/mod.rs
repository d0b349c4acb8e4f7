//! Shared test helpers: fixture paths, the reference logits, and the loud handling of
//! `../shared` fixtures that are too big to copy into the repository.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// The tiny official training checkpoint's path, as a server argument.
pub fn tiny() -> String {
    fixture("checkpoints/tiny_official_train.pth")
        .to_str()
        .expect("utf-8")
        .to_owned()
}

/// A file from `../shared/fixtures`. When it is missing: a failure under CI (`CI=true`), a loud
/// message otherwise, so a skipped check never goes unnoticed.
pub fn shared_fixture(relative: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(relative);
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "SHARED FIXTURE MISSING: {} (the check that needs it did NOT run)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    loud(&message);
    None
}

/// Says `message` on the terminal even while libtest captures the test's output (it captures
/// the `print!` macros, not writes to the stderr handle), so a check that did not run shows in
/// `make test`'s output.
pub fn loud(message: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("\n!!!!!!!! {message} !!!!!!!!\n\n").as_bytes());
}

/// The fixture images, each with whether it is a JPEG (looser tolerances).
pub const IMAGES: [&str; 11] = [
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "camera.png",
    "horse.png",
    "hubble_deep_field.jpg",
    "chelsea_q90.jpg",
    "camera_progressive.jpg",
    "astronaut_cmyk.jpg",
    "coffee_exif6.jpg",
    "astronaut_16bit.png",
];

pub fn is_jpeg(image: &str) -> bool {
    image.ends_with(".jpg")
}

/// `reference/logits.json`.
pub struct Reference(serde_json::Value);

impl Reference {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(fixture("reference/logits.json")).expect("logits.json");
        Self(serde_json::from_str(&text).expect("logits.json is JSON"))
    }

    pub fn logits(&self, model: &str, image: &str) -> Vec<f32> {
        self.0["models"][model]["logits"][image]
            .as_array()
            .unwrap_or_else(|| panic!("no reference logits for {model}/{image}"))
            .iter()
            .map(|v| v.as_f64().expect("a number") as f32)
            .collect()
    }

    pub fn top5(&self, model: &str, image: &str) -> Vec<usize> {
        self.0["models"][model]["top5"][image]
            .as_array()
            .unwrap_or_else(|| panic!("no reference top5 for {model}/{image}"))
            .iter()
            .map(|v| v.as_u64().expect("an index") as usize)
            .collect()
    }
}

/// Indices of the `k` largest values, best first.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx.truncate(k);
    idx
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The `logits` array of a `/classify` answer.
pub fn logits(answer: &serde_json::Value) -> Vec<f32> {
    answer["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// The Pillow reference crop of `image`, normalised into CHW.
pub fn reference_crop_tensor(image: &str) -> Vec<f32> {
    let crop = image::open(fixture(&format!("reference/{image}.crop224.png")))
        .expect("reference crop")
        .to_rgb8();
    let mut out = vec![0f32; crop.as_raw().len()];
    repvgg_serve::preprocess::normalize::normalize_into(
        crop.as_raw(),
        &mut out,
        &repvgg_serve::preprocess::normalize::Normalization::IMAGENET,
    );
    out
}

/// The JSON body of the answer to `request`.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = request.send().await.expect("request");
    response.json().await.expect("a JSON body")
}

/// The text body of the answer to `request`.
pub async fn text_of(request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.expect("request");
    response.text().await.expect("a text body")
}

/// `serve` flags every test server starts with: loopback, a free port, no cache (unless the
/// test's own flags give one).
/// A port free a moment ago on 127.0.0.1 (for flags where 0 means "off").
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub const LOCAL_SERVE: [&str; 5] = ["--host", "127.0.0.1", "--port", "0", "--no-cache"];

pub mod cli;
pub mod grpc;
pub mod process;
pub mod repository;
pub mod server;
pub mod tls;

/// A decompression bomb within the default limits: a 7000 x 7000 RGBA PNG at 16 bits (49 MP;
/// ~0.4 MB on the wire, 392 MB decoded, seconds of CPU).
#[allow(dead_code)]
pub fn bomb() -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let (w, h) = (7000u32, 7000u32);
    let pixels = vec![0u8; (w * h * 8) as usize];
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::NoFilter)
        .write_image(&pixels, w, h, image::ExtendedColorType::Rgba16)
        .expect("encode the bomb");
    png
}
