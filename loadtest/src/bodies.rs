//! Request bodies: images from a folder, cycled, sent to `/classify` raw, as multipart or as
//! base64 JSON, or to a v2 `infer` route as the binary tensor extension sends them
//! (tritonclient's default: a JSON header, then the image as one `BYTES` element).

use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Raw,
    Multipart,
    Json,
    /// Open Inference Protocol, binary: for `--url .../v2/models/repvgg/infer`.
    #[value(name = "v2-binary")]
    #[serde(rename = "v2-binary")]
    V2Binary,
}

/// The images to send, in a fixed order.
#[derive(Clone, Debug)]
pub struct Bodies {
    images: Vec<(String, Vec<u8>)>,
}

impl Bodies {
    /// Every regular file in `dir` (sorted by name), or the single file `dir` names.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut images = Vec::new();
        if path.is_file() {
            images.push((
                name(path),
                std::fs::read(path).with_context(|| path.display().to_string())?,
            ));
        } else {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot list", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for p in entries {
                images.push((
                    name(&p),
                    std::fs::read(&p).with_context(|| p.display().to_string())?,
                ));
            }
        }
        if images.is_empty() {
            bail!("{}: no images", path.display());
        }
        Ok(Self { images })
    }

    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Self {
        Self {
            images: vec![(name.to_owned(), bytes)],
        }
    }

    /// The `i`-th request of a run (images cycle).
    pub fn request(
        &self,
        client: &reqwest::Client,
        url: &str,
        encoding: Encoding,
        i: u64,
    ) -> reqwest::RequestBuilder {
        let (name, bytes) = &self.images[(i % self.images.len() as u64) as usize];
        match encoding {
            Encoding::Raw => client
                .post(url)
                .header("content-type", media_type(bytes))
                .body(bytes.clone()),
            Encoding::Multipart => {
                client
                    .post(url)
                    .multipart(reqwest::multipart::Form::new().part(
                        "image",
                        reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.clone()),
                    ))
            }
            Encoding::Json => client
                .post(url)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"image\":\"{}\"}}",
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                )),
            Encoding::V2Binary => {
                let header = format!(
                    "{{\"inputs\":[{{\"name\":\"image\",\"shape\":[1],\"datatype\":\"BYTES\",\
                     \"parameters\":{{\"binary_data_size\":{}}}}}],\
                     \"parameters\":{{\"binary_data_output\":true}}}}",
                    bytes.len() + 4
                );
                let mut body = header.clone().into_bytes();
                body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                body.extend_from_slice(bytes);
                client
                    .post(url)
                    .header("content-type", "application/octet-stream")
                    .header("inference-header-content-length", header.len())
                    .body(body)
            }
        }
    }
}

/// The image's media type from its first bytes (what a browser or `curl --data-binary` with
/// a type would send; TorchServe needs it to pass a raw body on as an image), else
/// `application/octet-stream`.
fn media_type(bytes: &[u8]) -> &'static str {
    const SIGNATURES: [(&[u8], &str); 5] = [
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"\x89PNG\r\n\x1A\n", "image/png"),
        (b"GIF8", "image/gif"),
        (b"BM", "image/bmp"),
        (b"RIFF", "image/webp"),
    ];
    SIGNATURES
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map_or("application/octet-stream", |(_, media)| media)
}

fn name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::media_type;

    #[test]
    fn a_raw_body_is_sent_with_its_images_media_type() {
        assert_eq!(media_type(b"\xFF\xD8\xFF\xE0rest"), "image/jpeg");
        assert_eq!(media_type(b"\x89PNG\r\n\x1A\nrest"), "image/png");
        assert_eq!(media_type(b"RIFF\0\0\0\0WEBP"), "image/webp");
        assert_eq!(media_type(b"not an image"), "application/octet-stream");
    }
}
