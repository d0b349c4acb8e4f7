//! gRPC messages to and from [`crate::v2`]'s transport-neutral types: tensors travel in
//! `raw_input_contents` / `raw_output_contents` (as tritonclient sends and reads them), or for
//! inputs in the typed `contents` fields.

use crate::service::ServiceError;
use crate::v2::{
    InferRequest, InferResponse, InputTensor, ModelMetadata, RequestedOutput, TensorData,
    TensorMetadata, V2Error,
};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata as ProtoTensorMetadata;
use super::proto::repository_index_response::ModelIndex;
use super::proto::{
    InferParameter, ModelInferRequest, ModelInferResponse, ModelMetadataResponse,
    RepositoryIndexResponse,
};

/// An empty string is the protocol's "not given".
fn given(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub fn request(message: ModelInferRequest) -> Result<InferRequest, V2Error> {
    let ModelInferRequest {
        model_name,
        model_version,
        id,
        inputs,
        outputs,
        raw_input_contents,
        ..
    } = message;
    if !raw_input_contents.is_empty() && raw_input_contents.len() != inputs.len() {
        return Err(V2Error::Invalid(format!(
            "{} inputs but {} raw_input_contents: give every input raw contents, or none",
            inputs.len(),
            raw_input_contents.len()
        )));
    }
    let mut raw = raw_input_contents.into_iter();
    let inputs = inputs
        .into_iter()
        .map(|input| {
            let InferInputTensor {
                name,
                datatype,
                shape,
                contents,
                ..
            } = input;
            let data = match raw.next() {
                Some(bytes) => TensorData::from_raw(&name, &datatype, bytes)?,
                None => typed_contents(&name, &datatype, contents.unwrap_or_default())?,
            };
            Ok(InputTensor {
                name,
                datatype,
                shape,
                data,
            })
        })
        .collect::<Result<_, V2Error>>()?;
    let outputs = outputs
        .into_iter()
        .map(|InferRequestedOutputTensor { name, parameters }| {
            let classification = parameters
                .get("classification")
                .map(|p| class_count(&name, p))
                .transpose()?;
            Ok(RequestedOutput {
                name,
                classification,
            })
        })
        .collect::<Result<_, V2Error>>()?;
    Ok(InferRequest {
        model: model_name,
        version: given(model_version),
        id: given(id),
        inputs,
        outputs,
    })
}

fn typed_contents(
    name: &str,
    datatype: &str,
    contents: super::proto::InferTensorContents,
) -> Result<TensorData, V2Error> {
    match datatype {
        crate::v2::tensor::FP32 => Ok(TensorData::Fp32(contents.fp32_contents)),
        crate::v2::tensor::BYTES => Ok(TensorData::Bytes(contents.bytes_contents)),
        other => Err(V2Error::Invalid(format!(
            "input '{name}': datatype {other} cannot be read (the models take FP32 or BYTES)"
        ))),
    }
}

fn class_count(output: &str, parameter: &InferParameter) -> Result<u64, V2Error> {
    match parameter.parameter_choice {
        Some(ParameterChoice::Int64Param(k)) if k >= 0 => Ok(k as u64),
        Some(ParameterChoice::Uint64Param(k)) => Ok(k),
        _ => Err(V2Error::Invalid(format!(
            "output '{output}': classification must be a class count"
        ))),
    }
}

pub fn response(answer: InferResponse) -> ModelInferResponse {
    let mut raw_output_contents = Vec::with_capacity(answer.outputs.len());
    let outputs = answer
        .outputs
        .into_iter()
        .map(|output| {
            raw_output_contents.push(output.data.to_raw().into());
            InferOutputTensor {
                name: output.name.to_owned(),
                datatype: output.data.datatype().to_owned(),
                shape: output.shape,
                ..Default::default()
            }
        })
        .collect();
    ModelInferResponse {
        model_name: answer.model_name,
        model_version: answer.model_version,
        id: answer.id.unwrap_or_default(),
        outputs,
        raw_output_contents,
        ..Default::default()
    }
}

pub fn metadata(meta: ModelMetadata) -> ModelMetadataResponse {
    let tensors = |list: Vec<TensorMetadata>| {
        list.into_iter()
            .map(|t| ProtoTensorMetadata {
                name: t.name.to_owned(),
                datatype: t.datatype.to_owned(),
                shape: t.shape,
            })
            .collect()
    };
    ModelMetadataResponse {
        name: meta.name,
        versions: meta.versions,
        platform: meta.platform.to_owned(),
        inputs: tensors(meta.inputs),
        outputs: tensors(meta.outputs),
    }
}

/// The one mapping of the service's errors to gRPC status codes: the client-facing error is
/// classified once ([`ServiceError`]), and its HTTP status translated as gRPC's HTTP mapping does.
/// The repository index as the protocol's message.
pub fn index(entries: Vec<crate::models::IndexEntry>) -> RepositoryIndexResponse {
    RepositoryIndexResponse {
        models: entries
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version,
                state: e.state.into(),
                reason: e.reason,
            })
            .collect(),
    }
}

/// The gRPC status for a failure: the code from the kind of failure (not through an HTTP
/// status), the message as the HTTP door words it.
pub fn status(error: impl Into<ServiceError>) -> tonic::Status {
    use tonic::Code;
    use ServiceError as E;
    let error = error.into();
    let code = match &error {
        E::EmptyBody
        | E::BadRequest(_)
        | E::Undecodable(_)
        | E::UnsupportedMediaType(_)
        | E::UnsupportedImageFormat(_)
        | E::UnsupportedEncoding(_)
        | E::TooManyPixels(_)
        | E::TooManyScans(_)
        | E::OverDecodeBudget(_)
        | E::ModelControlOff(_)
        | E::LoadFailed(_) => Code::InvalidArgument,
        E::NotFound | E::UnknownModel(_) => Code::NotFound,
        E::PayloadTooLarge { .. } => Code::ResourceExhausted,
        E::QueueFull
        | E::BodyBudgetFull { .. }
        | E::NotReady
        | E::DecodeBudgetBusy(_)
        | E::TooManyConnections { .. } => Code::Unavailable,
        E::DeadlineExceeded | E::BodyTimeout { .. } => Code::DeadlineExceeded,
        E::Inference(_) => Code::Internal,
        E::Unauthorized => Code::Unauthenticated,
        E::Forbidden => Code::PermissionDenied,
    };
    tonic::Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::PipelineError;

    #[test]
    fn raw_contents_pair_with_inputs() {
        let image = TensorData::Bytes(vec![b"jpeg".to_vec().into()]);
        let message = ModelInferRequest {
            model_name: "repvgg".into(),
            inputs: vec![InferInputTensor {
                name: "image".into(),
                datatype: "BYTES".into(),
                shape: vec![1],
                ..Default::default()
            }],
            raw_input_contents: vec![image.to_raw().into()],
            ..Default::default()
        };
        let parsed = request(message).expect("ok");
        assert_eq!(parsed.inputs[0].data, image);
        assert_eq!(parsed.version, None);
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        assert_eq!(
            status(V2Error::UnknownModel {
                name: "x".into(),
                known: "'repvgg'".into()
            })
            .code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status(V2Error::Pipeline(PipelineError::QueueFull)).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            status(V2Error::Invalid("bad shape".into())).code(),
            tonic::Code::InvalidArgument
        );
    }
}
