//! The gRPC codec: prost, after a look at the message's wire bytes that refuses what would cost
//! far more memory decoded than it does on the wire.
//!
//! prost decodes every entry of a repeated field before any check can run, and an entry costs
//! much more decoded than encoded: an empty `inputs` entry is 2 bytes on the wire and about 300
//! in memory, an empty `bytes_contents` element 2 and 32, a varint in `int64_contents` 1 and 8.
//! So a 4 MB `ModelInferRequest` of empty inputs took 570 MB. [`WireLimits::check`] counts the
//! entries of every repeated field of `ModelInferRequest` (and of its inputs, outputs and
//! contents) on the wire first, in one pass without allocating, and answers INVALID_ARGUMENT
//! naming the field past its limit. What is left can cost at most about twice the message.

use std::marker::PhantomData;

use prost::encoding::{decode_varint, WireType};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

use super::proto;
use crate::v2::{MAX_BATCH, MAX_DIMS, MAX_INPUTS, MAX_OUTPUTS};

/// Parameters (map entries) a request, an input or an output may carry.
const MAX_PARAMETERS: usize = 32;

/// The codec the generated service uses (build.rs names it).
#[derive(Debug)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + WireLimits + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(PhantomData)
    }
}

/// Checks the wire bytes ([`WireLimits`]), then decodes with prost.
#[derive(Debug)]
pub struct BoundedDecoder<U>(PhantomData<U>);

impl<U: Message + Default + WireLimits> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        // tonic hands over the whole message in one contiguous buffer.
        if buf.chunk().len() == buf.remaining() {
            U::check(buf.chunk()).map_err(Status::invalid_argument)?;
        } else {
            let copy = buf.copy_to_bytes(buf.remaining());
            U::check(&copy).map_err(Status::invalid_argument)?;
            return decode(copy).map(Some);
        }
        decode(buf).map(Some)
    }
}

fn decode<U: Message + Default>(buf: impl bytes::Buf) -> Result<U, Status> {
    U::decode(buf).map_err(|e| Status::invalid_argument(format!("malformed message: {e}")))
}

/// What a request message may hold, checked on its wire bytes before decoding. Messages without
/// repeated fields need no check.
pub trait WireLimits {
    fn check(_wire: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

impl WireLimits for proto::ServerLiveRequest {}
impl WireLimits for proto::ServerReadyRequest {}
impl WireLimits for proto::ModelReadyRequest {}
impl WireLimits for proto::ServerMetadataRequest {}
impl WireLimits for proto::ModelMetadataRequest {}
impl WireLimits for proto::RepositoryIndexRequest {}
impl WireLimits for proto::RepositoryModelLoadRequest {}
impl WireLimits for proto::RepositoryModelUnloadRequest {}

impl WireLimits for proto::ModelInferRequest {
    /// `parameters` (4), `inputs` (5), `outputs` (6), `raw_input_contents` (7).
    fn check(wire: &[u8]) -> Result<(), String> {
        let mut counts = Counts::default();
        for field in Fields(wire) {
            let (number, value) = field?;
            match number {
                4 => counts.add("parameters", MAX_PARAMETERS)?,
                5 => {
                    counts.add("inputs", MAX_INPUTS)?;
                    check_input(value.bytes("inputs")?)?;
                }
                6 => {
                    counts.add("outputs", MAX_OUTPUTS)?;
                    check_output(value.bytes("outputs")?)?;
                }
                7 => counts.add("raw_input_contents", MAX_INPUTS)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// `InferInputTensor`: `shape` (3), `parameters` (4), `contents` (5).
fn check_input(wire: &[u8]) -> Result<(), String> {
    let mut counts = Counts::default();
    for field in Fields(wire) {
        let (number, value) = field?;
        match number {
            3 => counts.add_n("shape", value.varints(), MAX_DIMS)?,
            4 => counts.add("input parameters", MAX_PARAMETERS)?,
            5 => check_contents(value.bytes("contents")?)?,
            _ => {}
        }
    }
    Ok(())
}

/// `InferRequestedOutputTensor`: `parameters` (2).
fn check_output(wire: &[u8]) -> Result<(), String> {
    let mut counts = Counts::default();
    for field in Fields(wire) {
        if field?.0 == 2 {
            counts.add("output parameters", MAX_PARAMETERS)?;
        }
    }
    Ok(())
}

/// `InferTensorContents`: the models read `fp32_contents` (6, at most 4 bytes in memory per 4
/// on the wire) and `bytes_contents` (8, one image each); the other types would be decoded and
/// thrown away, several times larger than on the wire, so they are refused.
fn check_contents(wire: &[u8]) -> Result<(), String> {
    let mut counts = Counts::default();
    for field in Fields(wire) {
        match field?.0 {
            6 => {}
            8 => counts.add("bytes_contents", MAX_BATCH)?,
            other => {
                return Err(format!(
                    "InferTensorContents field {other} is not read: the models take \
                     fp32_contents or bytes_contents (or raw_input_contents)"
                ))
            }
        }
    }
    Ok(())
}

/// Entries seen per repeated field.
#[derive(Default)]
struct Counts(Vec<(&'static str, usize)>);

impl Counts {
    fn add(&mut self, field: &'static str, limit: usize) -> Result<(), String> {
        self.add_n(field, 1, limit)
    }

    fn add_n(&mut self, field: &'static str, n: usize, limit: usize) -> Result<(), String> {
        let count = match self.0.iter_mut().find(|(name, _)| *name == field) {
            Some((_, count)) => count,
            None => {
                self.0.push((field, 0));
                &mut self.0.last_mut().expect("just pushed").1
            }
        };
        *count += n;
        if *count > limit {
            return Err(format!(
                "ModelInferRequest has more than {limit} entries in {field} (at most {limit})"
            ));
        }
        Ok(())
    }
}

/// A field's value on the wire.
enum Value<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    fn bytes(&self, field: &str) -> Result<&'a [u8], String> {
        match self {
            Self::Bytes(bytes) => Ok(bytes),
            _ => Err(format!("field {field} has the wrong wire type")),
        }
    }

    /// Entries of a repeated varint field in this one record: many when packed, else one.
    fn varints(&self) -> usize {
        match self {
            Self::Bytes(packed) => packed.iter().filter(|&&b| b & 0x80 == 0).count(),
            _ => 1,
        }
    }
}

/// The top-level fields of a message, in order: `(number, value)`, or an error for bytes that
/// are not protobuf.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[]; // stop after the first error
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let malformed = |e: prost::DecodeError| format!("malformed message: {e}");
        let key = decode_varint(&mut self.0).map_err(malformed)?;
        let number = u32::try_from(key >> 3).map_err(|_| "malformed message: field number")?;
        let wire_type = WireType::try_from(key & 0x7).map_err(malformed)?;
        let value = match wire_type {
            WireType::Varint => {
                decode_varint(&mut self.0).map_err(malformed)?;
                Value::Varint
            }
            WireType::SixtyFourBit => self.skip(8).map(|_| Value::Fixed)?,
            WireType::ThirtyTwoBit => self.skip(4).map(|_| Value::Fixed)?,
            WireType::LengthDelimited => {
                let len = decode_varint(&mut self.0).map_err(malformed)?;
                let len = usize::try_from(len).map_err(|_| "malformed message: length")?;
                Value::Bytes(self.skip(len)?)
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err("malformed message: groups are not used by this protocol".into())
            }
        };
        Ok((number, value))
    }

    fn skip(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.0.len() {
            return Err("malformed message: a field runs past the end".into());
        }
        let (value, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};

    fn wire(message: &proto::ModelInferRequest) -> Vec<u8> {
        message.encode_to_vec()
    }

    fn image_input() -> InferInputTensor {
        InferInputTensor {
            name: "image".into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            ..Default::default()
        }
    }

    #[test]
    fn a_normal_request_passes() {
        let message = proto::ModelInferRequest {
            model_name: "repvgg".into(),
            inputs: vec![image_input()],
            outputs: vec![InferRequestedOutputTensor {
                name: "logits".into(),
                ..Default::default()
            }],
            raw_input_contents: vec![vec![1, 2, 3].into()],
            ..Default::default()
        };
        assert_eq!(proto::ModelInferRequest::check(&wire(&message)), Ok(()));
    }

    #[test]
    fn millions_of_empty_inputs_are_refused_on_the_wire() {
        let message = proto::ModelInferRequest {
            inputs: vec![InferInputTensor::default(); 100_000],
            ..Default::default()
        };
        let err = proto::ModelInferRequest::check(&wire(&message)).expect_err("refused");
        assert!(err.contains("inputs"), "{err}");
    }

    #[test]
    fn repeated_fields_inside_inputs_are_bounded() {
        let mut input = image_input();
        input.shape = vec![1; MAX_DIMS + 1];
        let message = proto::ModelInferRequest {
            inputs: vec![input],
            ..Default::default()
        };
        let err = proto::ModelInferRequest::check(&wire(&message)).expect_err("refused");
        assert!(err.contains("shape"), "{err}");

        let mut input = image_input();
        input.contents = Some(proto::InferTensorContents {
            bytes_contents: vec![Default::default(); MAX_BATCH + 1],
            ..Default::default()
        });
        let message = proto::ModelInferRequest {
            inputs: vec![input],
            ..Default::default()
        };
        let err = proto::ModelInferRequest::check(&wire(&message)).expect_err("refused");
        assert!(err.contains("bytes_contents"), "{err}");

        let mut input = image_input();
        input.contents = Some(proto::InferTensorContents {
            int64_contents: vec![0; 10],
            ..Default::default()
        });
        let message = proto::ModelInferRequest {
            inputs: vec![input],
            ..Default::default()
        };
        let err = proto::ModelInferRequest::check(&wire(&message)).expect_err("refused");
        assert!(err.contains("field 3"), "{err}");
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [&[0xFF_u8; 11][..], &[0x2A, 0x80], &[0x2A, 0x05, 1]] {
            let err = proto::ModelInferRequest::check(bytes).expect_err("malformed");
            assert!(err.contains("malformed"), "{err}");
        }
    }
}
