//! The Open Inference Protocol (KServe v2) as the service speaks it, independent of transport:
//! the two models it shows for each served model, their metadata, and inference on them through
//! the [`crate::pipeline`] (which version a name means is [`crate::models`]' business). `crate::http::v2` (REST, JSON and binary tensors) and `crate::grpc`
//! (tonic) only translate their wire formats to and from the types here.
//!
//! - `{name}` (default `repvgg`, or the repository's directory name): input `image`, `BYTES`, shape `[-1]`, each element one
//!   encoded image; the service decodes, resizes and crops it.
//! - `{name}-tensor`: input `input`, `FP32`, shape `[-1, 3, S, S]`, already normalised.
//!
//! Both answer `logits` (`FP32`, `[-1, C]`), or with the classification extension
//! (`classification: K` on the requested output) a `BYTES` tensor `[-1, K]` of
//! `"<logit>:<index>:<label>"` strings, best first.

pub mod tensor;

use std::time::Instant;

use crate::pipeline::{top_classes, Input, Pipeline, PipelineError};
pub use tensor::TensorData;
use tensor::{BYTES, FP32};

/// Images one inference request may carry.
pub const MAX_BATCH: usize = 64;
/// Inputs one request may name: every model takes exactly one.
pub const MAX_INPUTS: usize = 1;
/// Dimensions of an input's shape (the tensor model's has 4).
pub const MAX_DIMS: usize = 8;
/// What the tensor twin of a model adds to its name.
pub const TENSOR_SUFFIX: &str = "-tensor";
/// The only output of both models.
pub const OUTPUT: &str = "logits";
/// Protocol extensions spoken.
pub const EXTENSIONS: &[&str] = &["classification", "binary_tensor_data"];

/// Why a v2 call failed; each protocol maps it to its status in one place.
#[derive(Clone, Debug, thiserror::Error)]
pub enum V2Error {
    #[error("unknown model '{name}' (this server has {known})")]
    UnknownModel { name: String, known: String },
    #[error("model '{model}' has no version '{version}' (versions: {available})")]
    UnknownVersion {
        model: String,
        version: String,
        available: String,
    },
    /// A request that does not fit the model or the protocol (400 / INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// Which of the two models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Encoded images in, preprocessed by the service.
    Image,
    /// Normalised NCHW tensors in.
    Tensor,
}

/// A tensor's name, datatype and shape (-1: any size).
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct TensorMetadata {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// What `GET /v2/models/{m}` and gRPC `ModelMetadata` answer.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
    /// The normalisation the image model applies and the tensor model expects (REST only: the
    /// gRPC message has no field for it).
    pub parameters: crate::preprocess::normalize::Normalization,
}

/// One served model version as the protocol shows it: `{name}` and `{name}-tensor`.
#[derive(Clone, Debug)]
pub struct Catalog {
    name: String,
    tensor_name: String,
    /// Crop size S.
    size: i64,
    normalization: crate::preprocess::normalize::Normalization,
    labels: std::sync::Arc<Vec<String>>,
}

impl Catalog {
    pub fn new(
        name: &str,
        shape: crate::inference::InputShape,
        labels: std::sync::Arc<Vec<String>>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            tensor_name: format!("{name}{TENSOR_SUFFIX}"),
            size: shape.size as i64,
            normalization: shape.normalization,
            labels,
        }
    }

    fn input(&self, kind: ModelKind) -> TensorMetadata {
        match kind {
            ModelKind::Image => TensorMetadata {
                name: "image",
                datatype: BYTES,
                shape: vec![-1],
            },
            ModelKind::Tensor => TensorMetadata {
                name: "input",
                datatype: FP32,
                shape: vec![-1, 3, self.size, self.size],
            },
        }
    }

    /// The metadata of the image or tensor model; `versions`: every served version.
    pub fn metadata(&self, kind: ModelKind, versions: &[u64]) -> ModelMetadata {
        ModelMetadata {
            name: match kind {
                ModelKind::Image => self.name.clone(),
                ModelKind::Tensor => self.tensor_name.clone(),
            },
            versions: versions.iter().map(u64::to_string).collect(),
            platform: "repvgg-serve",
            inputs: vec![self.input(kind)],
            outputs: vec![TensorMetadata {
                name: OUTPUT,
                datatype: FP32,
                shape: vec![-1, self.labels.len() as i64],
            }],
            parameters: self.normalization,
        }
    }
}

/// An inference request, parsed from either transport.
#[derive(Debug)]
pub struct InferRequest {
    pub model: String,
    pub version: Option<String>,
    pub id: Option<String>,
    pub inputs: Vec<InputTensor>,
    /// Empty: `logits`.
    pub outputs: Vec<RequestedOutput>,
}

#[derive(Debug)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

#[derive(Clone, Debug)]
pub struct RequestedOutput {
    pub name: String,
    /// The classification extension: the K best classes instead of the logits.
    pub classification: Option<u64>,
}

#[derive(Debug)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

#[derive(Debug)]
pub struct OutputTensor {
    pub name: &'static str,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// Which served version a request runs on, found by [`crate::models::Models::find`].
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub catalog: &'a Catalog,
    pub pipeline: &'a Pipeline,
    pub kind: ModelKind,
    pub version: u64,
}

/// Runs a request on its target: the input checked, every image through the pipeline
/// (admitted together: one request, one answer), the requested outputs built.
pub async fn infer(
    target: Target<'_>,
    request: InferRequest,
    arrived: Instant,
    deadline: Instant,
) -> Result<InferResponse, V2Error> {
    let Target {
        catalog,
        pipeline,
        kind,
        version,
    } = target;
    let expected = catalog.input(kind);
    let [input]: [InputTensor; 1] = request.inputs.try_into().map_err(|inputs: Vec<_>| {
        V2Error::Invalid(format!(
            "model '{}' takes exactly one input, '{}'; the request has {}",
            request.model,
            expected.name,
            inputs.len()
        ))
    })?;
    let outputs = check_outputs(&request.outputs, catalog.labels.len())?;
    let inputs = model_inputs(&expected, input, pipeline.tensor_len())?;
    let batch = inputs.len();
    let answers = pipeline.classify_all(inputs, arrived, deadline).await?;
    let classes = catalog.labels.len();
    let outputs = outputs
        .into_iter()
        .map(|classification| match classification {
            None => OutputTensor {
                name: OUTPUT,
                shape: vec![batch as i64, classes as i64],
                data: TensorData::Fp32(answers.iter().flat_map(|a| a.logits.clone()).collect()),
            },
            Some(k) => OutputTensor {
                name: OUTPUT,
                shape: vec![batch as i64, k as i64],
                data: TensorData::Bytes(
                    answers
                        .iter()
                        .flat_map(|a| {
                            top_classes(&a.logits, k).into_iter().map(|class| {
                                let label = &catalog.labels[class];
                                format!("{:.6}:{class}:{label}", a.logits[class])
                                    .into_bytes()
                                    .into()
                            })
                        })
                        .collect(),
                ),
            },
        })
        .collect();
    Ok(InferResponse {
        model_name: request.model,
        model_version: version.to_string(),
        id: request.id,
        outputs,
    })
}

/// Outputs one request may ask for: the raw logits once and the classification once (each
/// output copies every image's logits, so repeats would multiply the answer's size).
pub const MAX_OUTPUTS: usize = 2;

/// The outputs to build: `None` for logits, `Some(k)` for the k best classes. Each at most once.
fn check_outputs(
    requested: &[RequestedOutput],
    classes: usize,
) -> Result<Vec<Option<usize>>, V2Error> {
    if requested.is_empty() {
        return Ok(vec![None]);
    }
    if requested.len() > MAX_OUTPUTS {
        return Err(V2Error::Invalid(format!(
            "the request asks for {} outputs; at most {MAX_OUTPUTS}: '{OUTPUT}' once as logits \
             and once with the classification parameter",
            requested.len()
        )));
    }
    if let Some(unknown) = requested.iter().find(|o| o.name != OUTPUT) {
        return Err(V2Error::Invalid(format!(
            "unknown output '{}' (the model's output is '{OUTPUT}')",
            unknown.name
        )));
    }
    let raw = requested
        .iter()
        .filter(|o| o.classification.is_none())
        .count();
    if raw > 1 || requested.len() - raw > 1 {
        let how = if raw > 1 {
            "as logits"
        } else {
            "with the classification parameter"
        };
        return Err(V2Error::Invalid(format!(
            "output '{OUTPUT}' is asked for twice {how}; ask for it at most once as logits and \
             once with the classification parameter"
        )));
    }
    requested
        .iter()
        .map(|output| match output.classification {
            None => Ok(None),
            Some(0) => Err(V2Error::Invalid(
                "classification must ask for at least one class".into(),
            )),
            Some(k) => Ok(Some((k as usize).min(classes))),
        })
        .collect()
}

/// Checks the input against the model's and splits it into one pipeline input per image.
fn model_inputs(
    expected: &TensorMetadata,
    input: InputTensor,
    tensor_len: usize,
) -> Result<Vec<Input>, V2Error> {
    let name = &input.name;
    if name != expected.name {
        return Err(V2Error::Invalid(format!(
            "unknown input '{name}' (the model's input is '{}')",
            expected.name
        )));
    }
    if input.datatype != expected.datatype {
        return Err(V2Error::Invalid(format!(
            "input '{name}' has datatype {}; the model takes {}",
            input.datatype, expected.datatype
        )));
    }
    let shape_matches = input.shape.len() == expected.shape.len()
        && input
            .shape
            .iter()
            .zip(&expected.shape)
            .all(|(&got, &want)| got >= 0 && (want == -1 || got == want));
    if !shape_matches {
        return Err(V2Error::Invalid(format!(
            "input '{name}' has shape {:?}; the model takes {:?} (-1: any batch size)",
            input.shape, expected.shape
        )));
    }
    let batch = input.shape[0] as usize;
    if batch == 0 || batch > MAX_BATCH {
        return Err(V2Error::Invalid(format!(
            "input '{name}' holds {batch} images; a request carries 1 to {MAX_BATCH}"
        )));
    }
    let elements: usize = input.shape.iter().map(|&d| d as usize).product();
    if input.data.len() != elements {
        return Err(V2Error::Invalid(format!(
            "input '{name}' has shape {:?} ({elements} elements) but {} elements of data",
            input.shape,
            input.data.len()
        )));
    }
    Ok(match input.data {
        TensorData::Bytes(images) => images.into_iter().map(Input::Encoded).collect(),
        TensorData::Fp32(values) => values
            .chunks_exact(tensor_len)
            .map(|image| Input::Tensor(image.to_vec()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let labels = (0..10).map(|i| format!("c{i}")).collect();
        let shape = crate::inference::InputShape {
            size: 4,
            normalization: crate::preprocess::normalize::Normalization::IMAGENET,
        };
        Catalog::new("repvgg", shape, std::sync::Arc::new(labels))
    }

    #[test]
    fn metadata_shows_both_inputs_and_every_version() {
        let c = catalog();
        let meta = c.metadata(ModelKind::Tensor, &[1, 3]);
        assert_eq!(meta.name, "repvgg-tensor");
        assert_eq!(meta.versions, ["1", "3"]);
        assert_eq!(meta.inputs[0].shape, [-1, 3, 4, 4]);
        assert_eq!(meta.outputs[0].shape, [-1, 10]);
        assert_eq!(c.metadata(ModelKind::Image, &[1]).inputs[0].name, "image");
    }

    fn tensor(shape: Vec<i64>, values: usize) -> InputTensor {
        InputTensor {
            name: "input".into(),
            datatype: FP32.into(),
            shape,
            data: TensorData::Fp32(vec![0.5; values]),
        }
    }

    #[test]
    fn inputs_are_checked_and_split_per_image() {
        let expected = catalog().input(ModelKind::Tensor);
        let images = model_inputs(&expected, tensor(vec![2, 3, 4, 4], 96), 48).expect("ok");
        assert_eq!(images.len(), 2);
        let wrong_shape = model_inputs(&expected, tensor(vec![2, 3, 5, 4], 120), 48);
        assert!(matches!(wrong_shape, Err(V2Error::Invalid(m)) if m.contains("shape")));
        let short = model_inputs(&expected, tensor(vec![2, 3, 4, 4], 95), 48);
        assert!(matches!(short, Err(V2Error::Invalid(m)) if m.contains("95 elements")));
        let too_many = model_inputs(&expected, tensor(vec![65, 3, 4, 4], 65 * 48), 48);
        assert!(matches!(too_many, Err(V2Error::Invalid(m)) if m.contains("1 to 64")));
        let mut bytes = tensor(vec![1, 3, 4, 4], 48);
        bytes.datatype = BYTES.into();
        let wrong_type = model_inputs(&expected, bytes, 48);
        assert!(matches!(wrong_type, Err(V2Error::Invalid(m)) if m.contains("datatype")));
    }

    #[test]
    fn outputs_default_to_logits_and_cap_classification() {
        assert_eq!(check_outputs(&[], 10).expect("ok"), [None]);
        let top = RequestedOutput {
            name: OUTPUT.into(),
            classification: Some(50),
        };
        assert_eq!(check_outputs(&[top], 10).expect("ok"), [Some(10)]);
        let unknown = RequestedOutput {
            name: "probs".into(),
            classification: None,
        };
        assert!(check_outputs(&[unknown], 10).is_err());
        let logits = RequestedOutput {
            name: OUTPUT.into(),
            classification: None,
        };
        let top3 = RequestedOutput {
            name: OUTPUT.into(),
            classification: Some(3),
        };
        assert_eq!(
            check_outputs(&[logits.clone(), top3.clone()], 10).expect("ok"),
            [None, Some(3)]
        );
        for repeated in [
            vec![logits.clone(), logits.clone()],
            vec![top3.clone(), top3.clone()],
            vec![logits.clone(), top3.clone(), logits],
        ] {
            let refused = check_outputs(&repeated, 10);
            assert!(matches!(refused, Err(V2Error::Invalid(_))), "{repeated:?}");
        }
    }
}
