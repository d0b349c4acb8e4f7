//! A minimal gRPC client over HTTP/2 (the `h2` crate), for tests that must send what no
//! well-behaved client sends: hand-encoded messages, half messages, floods of connections.

use std::time::Duration;

use bytes::Bytes;

/// The protobuf encoding of one length-delimited field.
pub fn field(number: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(number << 3 | 2), &mut out);
    varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A `ModelInferRequest` for the image model with one encoded image in `raw_input_contents`.
pub fn infer_request(model: &str, image: &[u8]) -> Vec<u8> {
    let mut input = field(1, b"image");
    input.extend(field(2, b"BYTES"));
    input.extend(field(3, &[1])); // shape [1], packed
    let mut raw = (image.len() as u32).to_le_bytes().to_vec();
    raw.extend_from_slice(image);
    let mut message = field(1, model.as_bytes());
    message.extend(field(5, &input));
    message.extend(field(7, &raw));
    message
}

/// A `ModelInferRequest` for a tensor model: one FP32 `input` of `shape`, all zeros, in
/// `raw_input_contents`.
pub fn tensor_request(model: &str, shape: &[usize]) -> Vec<u8> {
    let mut dims = Vec::new();
    for &d in shape {
        varint(d as u64, &mut dims);
    }
    let mut input = field(1, b"input");
    input.extend(field(2, b"FP32"));
    input.extend(field(3, &dims));
    let floats: usize = shape.iter().product();
    let mut message = field(1, model.as_bytes());
    message.extend(field(5, &input));
    message.extend(field(7, &vec![0u8; floats * 4]));
    message
}

pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// What a call answered: its `grpc-status` (0 = OK), `grpc-message`, the `x-request-id` it
/// echoed, and the response message's bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: u32,
    pub message: String,
    pub request_id: String,
    pub body: Bytes,
}

/// An HTTP/2 connection to the gRPC port.
pub async fn connect(addr: &str) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Metadata sent with a call, as `(name, value)` pairs (`grpc-timeout`, `authorization`...).
pub type Metadata<'a> = &'a [(&'a str, &'a str)];

fn request(addr: &str, path: &str, metadata: Metadata<'_>) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in metadata {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

/// The gRPC frame of one message: uncompressed flag, length, bytes.
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

/// One unary call on a fresh connection.
pub async fn call(addr: &str, path: &str, message: &[u8], metadata: Metadata<'_>) -> Answer {
    let client = connect(addr).await;
    call_on(client, addr, path, message, metadata).await
}

/// One unary call on `client`'s connection.
pub async fn call_on(
    client: h2::client::SendRequest<Bytes>,
    addr: &str,
    path: &str,
    message: &[u8],
    metadata: Metadata<'_>,
) -> Answer {
    try_call_on(client, addr, path, message, metadata)
        .await
        .expect("the call reached the server")
}

/// [`call_on`], with a connection the server closed as an error.
pub async fn try_call_on(
    client: h2::client::SendRequest<Bytes>,
    addr: &str,
    path: &str,
    message: &[u8],
    metadata: Metadata<'_>,
) -> Result<Answer, h2::Error> {
    let mut client = client.ready().await?;
    let (response, mut send) = client.send_request(request(addr, path, metadata), false)?;
    // The server may answer before reading the message (a refused key): the send then fails
    // and the answer is still there to read.
    let _ = send.send_data(frame(message), true);
    let response = response.await?;
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.ok().flatten();
    let headers = trailers.as_ref().unwrap_or(&parts.headers);
    let header = |name: &str| {
        headers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Answer {
        status: header("grpc-status").parse().expect("grpc-status"),
        message: percent_decoded(&header("grpc-message")),
        request_id: header("x-request-id"),
        body: data
            .get(5..)
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
    })
}

/// Starts a call and sends only the first `sent` bytes of a message that claims `claimed`
/// bytes; returns the response (or the stream's end) once the server answers, if it does
/// within `wait`.
pub async fn half_message(
    addr: &str,
    claimed: usize,
    sent: usize,
    wait: Duration,
) -> Option<Result<u32, String>> {
    let client = connect(addr).await;
    let mut client = client.ready().await.expect("ready");
    let (response, mut send) = client
        .send_request(request(addr, MODEL_INFER, &[]), false)
        .expect("send request");
    let mut partial = vec![0u8];
    partial.extend_from_slice(&(claimed as u32).to_be_bytes());
    partial.extend(std::iter::repeat_n(0u8, sent));
    send.send_data(partial.into(), false).expect("send part");
    let answered = tokio::time::timeout(wait, response).await.ok()?;
    Some(match answered {
        Ok(response) => {
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            status.ok_or_else(|| format!("no grpc-status in {:?}", response.headers()))
        }
        Err(e) => Err(e.to_string()),
    })
}

/// `grpc-message` as written: the protocol percent-encodes it on the wire.
fn percent_decoded(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
