//! Tensor data of the Open Inference Protocol: the two datatypes the service's models use and
//! their raw (binary) form, shared by the REST binary extension and gRPC's raw contents.

use bytes::Bytes;

use super::V2Error;

/// `FP32` or `BYTES` data, flat, in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Fp32(Vec<f32>),
    /// One element per entry (for the image model: one encoded image each).
    Bytes(Vec<Bytes>),
}

pub const FP32: &str = "FP32";
pub const BYTES: &str = "BYTES";

impl TensorData {
    pub fn datatype(&self) -> &'static str {
        match self {
            Self::Fp32(_) => FP32,
            Self::Bytes(_) => BYTES,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Fp32(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    /// Decodes raw bytes: little-endian `f32`s, or for `BYTES` each element as a 4-byte
    /// little-endian length followed by that many bytes. `tensor` names it in errors.
    pub fn from_raw(tensor: &str, datatype: &str, raw: Bytes) -> Result<Self, V2Error> {
        match datatype {
            FP32 => {
                if !raw.len().is_multiple_of(4) {
                    return Err(V2Error::Invalid(format!(
                        "input '{tensor}': {} bytes of FP32 data is not a whole number of elements",
                        raw.len()
                    )));
                }
                Ok(Self::Fp32(
                    raw.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ))
            }
            BYTES => {
                let mut elements = Vec::new();
                let mut at = 0usize;
                while at < raw.len() {
                    let Some(prefix) = raw.get(at..at + 4) else {
                        return Err(V2Error::Invalid(format!(
                            "input '{tensor}': BYTES data ends inside an element's 4-byte length"
                        )));
                    };
                    let len =
                        u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
                    let start = at + 4;
                    let end = start.checked_add(len).filter(|&end| end <= raw.len());
                    let Some(end) = end else {
                        return Err(V2Error::Invalid(format!(
                            "input '{tensor}': a BYTES element of {len} bytes runs past the end \
                             of the data ({} bytes left)",
                            raw.len() - start
                        )));
                    };
                    elements.push(raw.slice(start..end));
                    at = end;
                }
                Ok(Self::Bytes(elements))
            }
            other => Err(V2Error::Invalid(format!(
                "input '{tensor}': datatype {other} cannot be read (the models take FP32 or BYTES)"
            ))),
        }
    }

    /// The raw form [`Self::from_raw`] reads.
    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            Self::Fp32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::Bytes(elements) => {
                let total = elements.iter().map(|e| 4 + e.len()).sum();
                let mut raw = Vec::with_capacity(total);
                for element in elements {
                    let len = u32::try_from(element.len()).expect("an element under 4 GiB");
                    raw.extend_from_slice(&len.to_le_bytes());
                    raw.extend_from_slice(element);
                }
                raw
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips() {
        for data in [
            TensorData::Fp32(vec![1.0, -2.5, f32::MAX]),
            TensorData::Bytes(vec![Bytes::from_static(b"abc"), Bytes::new()]),
        ] {
            let raw = Bytes::from(data.to_raw());
            assert_eq!(
                TensorData::from_raw("x", data.datatype(), raw).expect("ok"),
                data
            );
        }
    }

    #[test]
    fn truncated_raw_data_is_refused() {
        let bad_fp32 = TensorData::from_raw("x", FP32, Bytes::from_static(&[0; 7]));
        assert!(matches!(bad_fp32, Err(V2Error::Invalid(m)) if m.contains("whole number")));
        let mut raw = 10u32.to_le_bytes().to_vec();
        raw.extend_from_slice(b"short");
        let bad_bytes = TensorData::from_raw("x", BYTES, raw.into());
        assert!(matches!(bad_bytes, Err(V2Error::Invalid(m)) if m.contains("runs past")));
        let cut_prefix = TensorData::from_raw("x", BYTES, Bytes::from_static(&[1, 0]));
        assert!(matches!(cut_prefix, Err(V2Error::Invalid(m)) if m.contains("4-byte length")));
    }
}
