//! Entry points for the fuzz targets in `fuzz/` (`make fuzz`). Compiled only under
//! `cargo fuzz` (`--cfg fuzzing`): not part of the library's API.

use std::path::Path;

use crate::preprocess::{decode, PreprocessConfig};

/// The restricted unpickler alone.
pub fn unpickle(data: &[u8]) {
    let _ = crate::model::checkpoint::unpickle::unpickle(data);
}

/// A whole checkpoint file as the loader reads it.
pub fn checkpoint(data: &[u8]) {
    let _ = crate::model::Checkpoint::from_bytes(Path::new("fuzz-input"), data);
}

/// An uploaded image as a preprocessing worker handles it: cost from the header, then the
/// pipeline into a batch slot. A smaller pixel limit than the server's default keeps each run
/// short; the code paths are the same. Inputs of odd length use a crop much smaller than the
/// image, so that a JPEG decodes only a region (rows skipped, columns cropped) as a large photo
/// does in the service; even lengths upscale the small seeds and decode them whole.
pub fn image(data: &[u8]) {
    const MAX_PIXELS: u64 = 4_000_000;
    if decode::decode_cost(data, MAX_PIXELS).is_err() {
        return;
    }
    let (resize, crop) = if data.len() % 2 == 1 {
        (12, 4)
    } else {
        (64, 56)
    };
    let config = PreprocessConfig {
        resize,
        crop,
        max_pixels: MAX_PIXELS,
        jpeg_dct_scaling: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut out = vec![0.0; config.slot_len()];
    let _ = config.run_into(data, &mut out);
}

/// A v2 REST inference body: the first byte picks plain JSON or the binary extension (JSON
/// header of the length the next two bytes give, then raw tensor bytes).
pub fn v2_rest(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (header_length, body) = if mode & 1 == 1 && rest.len() >= 2 {
        let length = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        (Some(length), &rest[2..])
    } else {
        (None, rest)
    };
    let body = bytes::Bytes::copy_from_slice(body);
    let _ = crate::http::v2::wire::parse(body, header_length, "repvgg".into(), None);
}

/// A gRPC `ModelInferRequest` message as the codec and the converter see it: the wire check,
/// prost's decoding, then the conversion to the protocol's request.
pub fn grpc_infer(data: &[u8]) {
    use crate::grpc::codec::WireLimits;
    use crate::grpc::proto::ModelInferRequest;
    use prost::Message;
    if ModelInferRequest::check(data).is_err() {
        return;
    }
    if let Ok(message) = ModelInferRequest::decode(data) {
        let _ = crate::grpc::convert::request(message);
    }
}

/// A `/classify` body: the first byte picks JSON (base64 images) or multipart/form-data
/// (boundary `XyZ`), read with the request limits' image cap.
pub fn classify_body(data: &[u8]) {
    use axum::body::Body;
    use axum::extract::Request;
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let content_type = if mode & 1 == 0 {
        "application/json"
    } else {
        "multipart/form-data; boundary=XyZ"
    };
    let request = Request::builder()
        .header("content-type", content_type)
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    let limits = crate::http::body::BodyLimits {
        max_bytes: 1 << 20,
        max_images: 64,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let _ = runtime.block_on(crate::http::body::read_images(
        request,
        limits,
        deadline,
        std::time::Duration::from_secs(5),
    ));
}
