//! Request bodies -> the images they carry: a raw image, `multipart/form-data` parts, or JSON
//! with base64 (`{"image": ...}` / `{"images": [...]}`).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, HeaderMap};
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::body_budget::BodyError;
use crate::service::ServiceError;

/// One image of a request, with the name the client gave it (multipart part name or file
/// name), if any.
#[derive(Debug)]
pub struct ImageInput {
    pub name: Option<String>,
    pub bytes: Bytes,
}

/// Content types accepted as a raw image body (the format itself is sniffed from the bytes).
const RAW_TYPES: &[&str] = &[
    "image/jpeg",
    "image/jpg",
    "image/pjpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/x-ms-bmp",
    "image/tiff",
    "application/octet-stream",
];

/// JSON body: one base64 image or several (the OpenAPI schema; read by [`ImagesSeed`], which
/// counts the images while it reads them).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // a schema: never built, only described
pub struct JsonImages {
    /// One image, base64 (standard alphabet; a `data:` URL prefix is accepted).
    pub image: Option<String>,
    /// Several images, base64, answered in order.
    pub images: Option<Vec<String>>,
}

/// Reads the whole body: at most `limit` bytes (413 past it), all of it by `deadline` (408).
/// A `Content-Encoding` other than identity is refused (415): decompressing would bypass the
/// size limit.
pub async fn read_body(
    request: Request,
    limit: usize,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Result<(axum::http::request::Parts, Bytes), ServiceError> {
    let (parts, body) = request.into_parts();
    if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("(not text)").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(ServiceError::UnsupportedEncoding(encoding.to_owned()));
        }
    }
    let bytes = tokio::time::timeout_at(deadline, collect_limited(body, limit))
        .await
        .map_err(|_| ServiceError::BodyTimeout {
            ms: timeout.as_millis(),
        })??;
    Ok((parts, bytes))
}

/// What one request may carry.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Bytes (413 above).
    pub max_bytes: usize,
    /// Images (400 above): checked while the parts or the JSON list are read.
    pub max_images: usize,
}

/// Reads the body (as [`read_body`]) and splits it into images.
pub async fn read_images(
    request: Request,
    limits: BodyLimits,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
) -> Result<Vec<ImageInput>, ServiceError> {
    let (parts, bytes) = read_body(request, limits.max_bytes, deadline, timeout).await?;
    let content_type = media_type(&parts.headers);
    let images = match content_type.as_deref() {
        Some("multipart/form-data") => {
            let request = Request::from_parts(parts, Body::from(bytes));
            multipart(request, limits.max_images).await?
        }
        Some("application/json") => json(&bytes, limits.max_images)?,
        None => vec![raw(bytes)?],
        Some(t) if RAW_TYPES.contains(&t) => vec![raw(bytes)?],
        Some(other) => return Err(ServiceError::UnsupportedMediaType(other.to_owned())),
    };
    if images.is_empty() {
        return Err(ServiceError::BadRequest(
            "the request holds no images".into(),
        ));
    }
    Ok(images)
}

/// How much of an oversized body is read and thrown away so the client gets a clean 413
/// instead of a reset connection, as a multiple of the limit.
const DRAIN_FACTOR: usize = 4;
/// How long at most a body the server will not use is read and thrown away.
pub(crate) const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and throws away what is left of a body the server will not use (a "lingering
/// close"): at most `max_bytes` more, for at most [`DRAIN_TIME`]. Nothing is kept. Without it,
/// a server that answers early and closes leaves unread bytes in its socket, the kernel
/// answers them with a reset, and a client still uploading may lose the answer with the
/// connection.
pub(crate) async fn discard(body: &mut Body, max_bytes: usize) {
    use http_body_util::BodyExt;
    let until = tokio::time::Instant::now() + DRAIN_TIME;
    let mut seen = 0usize;
    while seen <= max_bytes {
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    seen = seen.saturating_add(data.len());
                }
            }
            // The end, a broken body or the time spent: nothing more to wait for.
            Ok(None | Some(Err(_))) | Err(_) => break,
        }
    }
}

/// Reads at most `limit` bytes of body. Past the limit the rest is drained ([`discard`], up to
/// [`DRAIN_FACTOR`] times the limit) and the answer is 413.
async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, ServiceError> {
    use http_body_util::BodyExt;
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match BodyError::find(&e) {
            Some(BodyError::BudgetFull { limit }) => ServiceError::BodyBudgetFull { limit: *limit },
            _ => ServiceError::BadRequest(format!("cannot read the request body: {e}")),
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len().saturating_add(data.len()) > limit {
                discard(&mut body, limit.saturating_mul(DRAIN_FACTOR - 1)).await;
                return Err(ServiceError::PayloadTooLarge { limit });
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.into())
}

/// The media type without parameters, lower-cased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

fn raw(bytes: Bytes) -> Result<ImageInput, ServiceError> {
    if bytes.is_empty() {
        return Err(ServiceError::EmptyBody);
    }
    Ok(ImageInput { name: None, bytes })
}

fn too_many_images(max: usize) -> ServiceError {
    ServiceError::BadRequest(format!(
        "the request holds more than {max} images (--max-images-per-request); send at most \
         {max} per request"
    ))
}

async fn multipart(request: Request, max_images: usize) -> Result<Vec<ImageInput>, ServiceError> {
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ServiceError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    };
    let mut form = Multipart::from_request(request, &()).await.map_err(|e| {
        ServiceError::BadRequest(format!("malformed multipart request: {}", e.body_text()))
    })?;
    let mut images = Vec::new();
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        if images.len() == max_images {
            return Err(too_many_images(max_images));
        }
        let name = field
            .name()
            .map(str::to_owned)
            .or_else(|| field.file_name().map(str::to_owned));
        let bytes = field.bytes().await.map_err(malformed)?;
        if bytes.is_empty() {
            return Err(ServiceError::BadRequest(format!(
                "multipart part {} is empty",
                name.as_deref().unwrap_or("(unnamed)")
            )));
        }
        images.push(ImageInput { name, bytes });
    }
    Ok(images)
}

fn json(bytes: &[u8], max_images: usize) -> Result<Vec<ImageInput>, ServiceError> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let encoded = ImagesSeed { max_images }
        .deserialize(&mut reader)
        .and_then(|images| reader.end().map(|()| images))
        .map_err(|e| {
            if e.to_string().contains(TOO_MANY) {
                too_many_images(max_images)
            } else {
                ServiceError::BadRequest(format!("invalid JSON body: {e}"))
            }
        })?;
    encoded
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let data = text
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,").map(|(_, d)| d))
                .unwrap_or(text);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| ServiceError::BadRequest(format!("image {i}: invalid base64: {e}")))?;
            if bytes.is_empty() {
                return Err(ServiceError::BadRequest(format!("image {i} is empty")));
            }
            Ok(ImageInput {
                name: None,
                bytes: bytes.into(),
            })
        })
        .collect()
}

/// Marks the JSON error of a list over the image limit.
const TOO_MANY: &str = "more images than the request limit";

/// Reads `{"image": "..."}` or `{"images": ["...", ...]}` (nothing else), refusing the list as
/// soon as it holds more than `max_images` entries, before the rest is read.
struct ImagesSeed {
    max_images: usize,
}

impl<'de> DeserializeSeed<'de> for ImagesSeed {
    type Value = Vec<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ImagesSeed {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"{"image": "<base64>"} or {"images": ["<base64>", ...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut images = None;
        while let Some(key) = map.next_key::<String>()? {
            if images.is_some() {
                return Err(de::Error::custom(
                    "JSON body needs exactly one of \"image\" or \"images\"",
                ));
            }
            images = Some(match key.as_str() {
                "image" => vec![map.next_value::<String>()?],
                "images" => map.next_value_seed(ImageList(self.max_images))?,
                other => return Err(de::Error::unknown_field(other, &["image", "images"])),
            });
        }
        images.ok_or_else(|| {
            de::Error::custom("JSON body needs exactly one of \"image\" or \"images\"")
        })
    }
}

/// The `images` list, at most `.0` entries.
struct ImageList(usize);

impl<'de> DeserializeSeed<'de> for ImageList {
    type Value = Vec<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ImageList {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of base64 images")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut images = Vec::new();
        while let Some(image) = seq.next_element::<String>()? {
            if images.len() == self.0 {
                return Err(de::Error::custom(TOO_MANY));
            }
            images.push(image);
        }
        Ok(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_images_are_counted_while_read() {
        let one = json(br#"{"image": "aGk="}"#, 2).expect("one");
        assert_eq!(one.len(), 1);
        let two = json(br#"{"images": ["aGk=", "aGk="]}"#, 2).expect("two");
        assert_eq!(two.len(), 2);
        let three = json(br#"{"images": ["aGk=", "aGk=", "aGk="]}"#, 2).expect_err("over");
        assert!(three.to_string().contains("more than 2 images"), "{three}");
        for bad in [
            &br#"{"image": "aGk=", "images": ["aGk="]}"#[..],
            br#"{"picture": "aGk="}"#,
            br#"{}"#,
            br#"{"image": "aGk="} trailing"#,
        ] {
            let refused = json(bad, 2).expect_err("refused");
            assert!(matches!(refused, ServiceError::BadRequest(_)), "{refused}");
        }
    }
}
