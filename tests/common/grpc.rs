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

pub const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

/// What a call answered: its `grpc-status` (0 = OK), `grpc-message`, and the response
/// message's bytes.
#[derive(Debug)]
pub struct Answer {
    pub status: u32,
    pub message: String,
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

fn request(addr: &str, path: &str, grpc_timeout: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = grpc_timeout {
        request = request.header("grpc-timeout", timeout);
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
pub async fn call(addr: &str, path: &str, message: &[u8], grpc_timeout: Option<&str>) -> Answer {
    let client = connect(addr).await;
    call_on(client, addr, path, message, grpc_timeout).await
}

/// One unary call on `client`'s connection.
pub async fn call_on(
    client: h2::client::SendRequest<Bytes>,
    addr: &str,
    path: &str,
    message: &[u8],
    grpc_timeout: Option<&str>,
) -> Answer {
    try_call_on(client, addr, path, message, grpc_timeout)
        .await
        .expect("the call reached the server")
}

/// [`call_on`], with a connection the server closed as an error.
pub async fn try_call_on(
    client: h2::client::SendRequest<Bytes>,
    addr: &str,
    path: &str,
    message: &[u8],
    grpc_timeout: Option<&str>,
) -> Result<Answer, h2::Error> {
    let mut client = client.ready().await?;
    let (response, mut send) = client.send_request(request(addr, path, grpc_timeout), false)?;
    send.send_data(frame(message), true)?;
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
        message: header("grpc-message"),
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
        .send_request(request(addr, MODEL_INFER, None), false)
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
