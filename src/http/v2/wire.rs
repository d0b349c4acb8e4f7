//! The v2 REST body: a JSON inference header, optionally followed by raw tensor bytes (the
//! binary tensor data extension, `Inference-Header-Content-Length` giving the JSON's length),
//! to and from [`crate::v2`]'s transport-neutral request and response.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bounded::{AtMost, Flat, Param, Params};
use crate::v2::tensor::{BYTES, FP32};
use crate::v2::{
    InferRequest, InferResponse, InputTensor, RequestedOutput, TensorData, V2Error, MAX_DIMS,
    MAX_INPUTS, MAX_OUTPUTS,
};

/// The header naming the JSON part's length in a binary body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The JSON inference request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct JsonInferRequest {
    /// Echoed in the response.
    pub id: Option<String>,
    /// `binary_data_output: true` asks for every output in binary. At most 32 parameters,
    /// each a boolean, number or string.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Params>,
    /// Exactly one.
    #[schema(value_type = Vec<JsonInput>)]
    pub inputs: AtMost<JsonInput, MAX_INPUTS>,
    /// Absent: `logits`, as JSON unless `binary_data_output`. At most two: `logits` once as
    /// logits and once with `classification`.
    #[schema(value_type = Option<Vec<JsonRequestedOutput>>)]
    pub outputs: Option<AtMost<JsonRequestedOutput, MAX_OUTPUTS>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct JsonInput {
    pub name: String,
    #[schema(value_type = Vec<i64>)]
    pub shape: AtMost<i64, MAX_DIMS>,
    pub datatype: String,
    /// `binary_data_size`: the input's bytes follow the JSON instead of `data`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Params>,
    /// Row-major elements (nesting allowed): numbers for FP32, base64 strings for BYTES (at
    /// most 64).
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Flat>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct JsonRequestedOutput {
    pub name: String,
    /// `binary_data: bool`, `classification: K`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Params>,
}

/// The JSON inference response (the header, when outputs are binary).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JsonInferResponse {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<JsonOutput>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JsonOutput {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    /// `binary_data_size` when the data follows the JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub data: Option<Value>,
}

/// A parsed request and which of its outputs go back in binary (in order; for no requested
/// output, the one default `logits`).
#[derive(Debug)]
pub struct Parsed {
    pub request: InferRequest,
    pub binary_outputs: Vec<bool>,
}

/// Parses a body whose first `header_length` bytes (all of it when `None`) are the JSON.
pub fn parse(
    body: Bytes,
    header_length: Option<usize>,
    model: String,
    version: Option<String>,
) -> Result<Parsed, V2Error> {
    let header_length = header_length.unwrap_or(body.len());
    if header_length > body.len() {
        return Err(V2Error::Invalid(format!(
            "Inference-Header-Content-Length is {header_length} but the body has {} bytes",
            body.len()
        )));
    }
    let json: JsonInferRequest = serde_json::from_slice(&body[..header_length])
        .map_err(|e| V2Error::Invalid(format!("invalid inference request JSON: {e}")))?;
    let mut binary = body.slice(header_length..);
    let mut inputs = Vec::with_capacity(json.inputs.0.len());
    for input in json.inputs.0 {
        let size = count_param(&input.parameters, "binary_data_size", "input", &input.name)?;
        let data = match (size, input.data) {
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(V2Error::Invalid(format!(
                        "input '{}': binary_data_size is {size} bytes but only {} bytes of \
                         binary data are left in the body",
                        input.name,
                        binary.len()
                    )));
                }
                TensorData::from_raw(&input.name, &input.datatype, binary.split_to(size))?
            }
            (None, Some(data)) => json_data(&input.name, &input.datatype, data)?,
            (Some(_), Some(_)) => {
                return Err(V2Error::Invalid(format!(
                    "input '{}' has both data and binary_data_size",
                    input.name
                )))
            }
            (None, None) => {
                return Err(V2Error::Invalid(format!(
                    "input '{}' has neither data nor binary_data_size",
                    input.name
                )))
            }
        };
        inputs.push(InputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape.0,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(V2Error::Invalid(format!(
            "{} bytes of binary data follow the inputs' binary_data_size",
            binary.len()
        )));
    }
    let all_binary = param(&json.parameters, "binary_data_output")
        .and_then(Param::as_bool)
        .unwrap_or(false);
    let requested = json.outputs.map(|o| o.0).unwrap_or_default();
    let binary_outputs = if requested.is_empty() {
        vec![all_binary]
    } else {
        requested
            .iter()
            .map(|o| {
                param(&o.parameters, "binary_data")
                    .and_then(Param::as_bool)
                    .unwrap_or(all_binary)
            })
            .collect()
    };
    let outputs = requested
        .into_iter()
        .map(|o| {
            let classification = count_param(&o.parameters, "classification", "output", &o.name)?;
            Ok(RequestedOutput {
                name: o.name,
                classification,
            })
        })
        .collect::<Result<_, V2Error>>()?;
    Ok(Parsed {
        request: InferRequest {
            model,
            version,
            id: json.id,
            inputs,
            outputs,
        },
        binary_outputs,
    })
}

/// A parameter that must be a non-negative integer, when present.
fn count_param(
    parameters: &Option<Params>,
    name: &str,
    kind: &str,
    tensor: &str,
) -> Result<Option<u64>, V2Error> {
    param(parameters, name)
        .map(|v| {
            v.as_u64().ok_or_else(|| {
                V2Error::Invalid(format!(
                    "{kind} '{tensor}': {name} must be a non-negative integer"
                ))
            })
        })
        .transpose()
}

fn param<'a>(parameters: &'a Option<Params>, name: &str) -> Option<&'a Param> {
    parameters.as_ref()?.get(name)
}

/// JSON `data`: numbers for FP32, base64 text for BYTES (BYTES elements are strings in JSON;
/// images are not text, so they travel base64-encoded), nested arrays flattened while read.
fn json_data(tensor: &str, datatype: &str, data: Flat) -> Result<TensorData, V2Error> {
    let not = |what: &str| {
        V2Error::Invalid(format!(
            "input '{tensor}': datatype {datatype} takes {what} as data"
        ))
    };
    match (datatype, data) {
        (FP32, Flat::Numbers(values)) => Ok(TensorData::Fp32(values)),
        (FP32, Flat::Strings(_)) => Err(not("numbers")),
        (BYTES, Flat::Numbers(values)) if values.is_empty() => Ok(TensorData::Bytes(Vec::new())),
        (BYTES, Flat::Numbers(_)) => Err(not("base64 strings")),
        (BYTES, Flat::Strings(texts)) => texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map(Bytes::from)
                    .map_err(|e| {
                        V2Error::Invalid(format!(
                            "input '{tensor}': element {i} is not base64 ({e}); in JSON, BYTES \
                             elements carry the image base64-encoded"
                        ))
                    })
            })
            .collect::<Result<_, _>>()
            .map(TensorData::Bytes),
        (other, _) => Err(V2Error::Invalid(format!(
            "input '{tensor}': datatype {other} cannot be read (the models take FP32 or BYTES)"
        ))),
    }
}

/// The response: plain JSON, or the JSON header followed by the binary outputs.
pub fn render(response: InferResponse, binary_outputs: &[bool]) -> Response {
    let mut raw = Vec::new();
    let outputs = response
        .outputs
        .into_iter()
        .zip(binary_outputs)
        .map(|(output, &binary)| {
            let datatype = output.data.datatype();
            let (parameters, data) = if binary {
                let bytes = output.data.to_raw();
                let size = bytes.len();
                raw.extend_from_slice(&bytes);
                (Some(serde_json::json!({ "binary_data_size": size })), None)
            } else {
                (None, Some(json_value(output.data)))
            };
            JsonOutput {
                name: output.name,
                datatype,
                shape: output.shape,
                parameters,
                data,
            }
        })
        .collect();
    let header = JsonInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id,
        outputs,
    };
    let mut body = serde_json::to_vec(&header).expect("a response serialises");
    if raw.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let length = HeaderValue::from(body.len());
    body.extend_from_slice(&raw);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::HeaderName::from_static(HEADER_LENGTH), length),
        ],
        body,
    )
        .into_response()
}

fn json_value(data: TensorData) -> Value {
    match data {
        TensorData::Fp32(values) => values.into_iter().map(Value::from).collect(),
        TensorData::Bytes(elements) => elements
            .iter()
            .map(|e| Value::from(String::from_utf8_lossy(e).into_owned()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_body(json: &Value, raw: &[u8]) -> (Bytes, usize) {
        let mut body = serde_json::to_vec(json).expect("ok");
        let length = body.len();
        body.extend_from_slice(raw);
        (body.into(), length)
    }

    #[test]
    fn binary_inputs_are_cut_in_order() {
        let image = TensorData::Bytes(vec![
            Bytes::from_static(b"jpeg"),
            Bytes::from_static(b"png"),
        ]);
        let raw = image.to_raw();
        let json = serde_json::json!({
            "id": "7",
            "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                        "parameters": {"binary_data_size": raw.len()}}],
            "parameters": {"binary_data_output": true}
        });
        let (body, length) = binary_body(&json, &raw);
        let parsed = parse(body, Some(length), "repvgg".into(), None).expect("ok");
        assert_eq!(parsed.request.inputs[0].data, image);
        assert_eq!(parsed.request.id.as_deref(), Some("7"));
        assert_eq!(parsed.binary_outputs, [true]);
    }

    #[test]
    fn binary_size_past_the_body_is_refused() {
        let json = serde_json::json!({
            "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "parameters": {"binary_data_size": 100}}]
        });
        let (body, length) = binary_body(&json, &[0; 10]);
        let err = parse(body, Some(length), "repvgg".into(), None).expect_err("an error");
        assert!(
            err.to_string().contains("binary_data_size is 100 bytes"),
            "{err}"
        );
    }

    #[test]
    fn json_data_is_flattened_and_base64_decoded() {
        let flat = |json: &str| serde_json::from_str::<Flat>(json).expect("data");
        assert_eq!(
            json_data("x", FP32, flat("[[1.0, 2.0], [3.5, -1.0]]")).expect("ok"),
            TensorData::Fp32(vec![1.0, 2.0, 3.5, -1.0])
        );
        assert_eq!(
            json_data("x", BYTES, flat(r#"["aGk="]"#)).expect("ok"),
            TensorData::Bytes(vec![Bytes::from_static(b"hi")])
        );
        assert!(json_data("x", BYTES, flat(r#"["not base64!"]"#)).is_err());
        assert!(json_data("x", FP32, flat(r#"["aGk="]"#)).is_err());
        assert!(json_data("x", BYTES, flat("[1.0]")).is_err());
    }

    #[test]
    fn repeated_outputs_are_refused_while_parsing() {
        let outputs: Vec<_> = (0..20_000)
            .map(|_| serde_json::json!({"name": "logits"}))
            .collect();
        let json = serde_json::json!({
            "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}],
            "outputs": outputs,
        });
        let body = serde_json::to_vec(&json).expect("ok");
        let err = parse(body.into(), None, "m".into(), None).expect_err("refused");
        assert!(err.to_string().contains("at most 2"), "{err}");
    }

    #[test]
    fn per_output_binary_overrides_the_request_default() {
        let json = serde_json::json!({
            "inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.0]}],
            "parameters": {"binary_data_output": true},
            "outputs": [{"name": "logits", "parameters": {"binary_data": false, "classification": 3}},
                        {"name": "logits"}]
        });
        let parsed = parse(
            serde_json::to_vec(&json).expect("ok").into(),
            None,
            "m".into(),
            None,
        )
        .expect("ok");
        assert_eq!(parsed.binary_outputs, [false, true]);
        assert_eq!(parsed.request.outputs[0].classification, Some(3));
    }
}
