//! Deserializers that bound what a v2 JSON request can make the server allocate, checked while
//! the JSON is read, not after: lists with a maximum length, parameters that are scalars (never
//! nested JSON), and tensor `data` read straight into `Vec<f32>` or a list of strings.
//!
//! Why: a `serde_json::Value` costs 32 bytes or more per element, so `[0,0,0,...]` (2 bytes an
//! element on the wire) would take 16 times the body in memory, and a list of 20,000 requested
//! outputs would multiply the answer. With these, a JSON body costs at most about twice its
//! size (an FP32 element `0,` is 2 bytes on the wire, 4 in memory).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A list of at most `N` entries; one more is an error naming the limit.
#[derive(Debug)]
pub struct AtMost<T, const N: usize>(pub Vec<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for AtMost<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for List<T, N> {
            type Value = AtMost<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {N} entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element()? {
                    if entries.len() == N {
                        return Err(de::Error::custom(format_args!(
                            "more than {N} entries in a list that takes at most {N}"
                        )));
                    }
                    entries.push(entry);
                }
                Ok(AtMost(entries))
            }
        }
        deserializer.deserialize_seq(List(PhantomData))
    }
}

/// Parameters a request, an input or an output may carry.
pub const MAX_PARAMETERS: usize = 32;

/// A parameter value: the protocol's parameters are booleans, numbers and strings.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
}

impl Param {
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::UInt(n) => Some(*n),
            Self::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = Param;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean, number or string parameter value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Param, E> {
                Ok(Param::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Param, E> {
                Ok(Param::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Param, E> {
                Ok(Param::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Param, E> {
                Ok(Param::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Param, E> {
                Ok(Param::Str(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// At most [`MAX_PARAMETERS`] scalar parameters, by name.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, Param)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Params;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an object of at most {MAX_PARAMETERS} parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Param>()? {
                    if entries.len() == MAX_PARAMETERS {
                        return Err(de::Error::custom(format_args!(
                            "more than {MAX_PARAMETERS} parameters"
                        )));
                    }
                    entries.push((name, value));
                }
                Ok(Params(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// Strings one `data` list may hold: a BYTES input carries one image per element, and a request
/// at most `crate::v2::MAX_BATCH` images.
const MAX_STRINGS: usize = crate::v2::MAX_BATCH;

/// Tensor `data` in JSON, nested lists flattened in row-major order as they are read: numbers
/// straight into `f32`s (for FP32), or strings (base64, for BYTES). Which one the datatype
/// needs is checked by the caller (the datatype may come after the data in the object).
#[derive(Debug, PartialEq)]
pub enum Flat {
    Numbers(Vec<f32>),
    Strings(Vec<String>),
}

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut flat = Flat::Numbers(Vec::new());
        deserializer.deserialize_any(Element(&mut flat))?;
        Ok(flat)
    }
}

/// Reads one element (or a nested list of them) into the flat list.
struct Element<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Element<'_> {
    fn number<E: de::Error>(self, value: f64) -> Result<(), E> {
        match self.0 {
            Flat::Numbers(numbers) => {
                numbers.push(value as f32);
                Ok(())
            }
            Flat::Strings(_) => Err(E::custom("data mixes numbers and strings")),
        }
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers (FP32) or base64 strings (BYTES), in nested lists")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Element(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if let Flat::Numbers(numbers) = self.0 {
            if !numbers.is_empty() {
                return Err(E::custom("data mixes numbers and strings"));
            }
            *self.0 = Flat::Strings(Vec::new());
        }
        let Flat::Strings(strings) = self.0 else {
            unreachable!("strings were just set up")
        };
        if strings.len() == MAX_STRINGS {
            return Err(E::custom(format_args!(
                "more than {MAX_STRINGS} strings in data (a request carries at most \
                 {MAX_STRINGS} images)"
            )));
        }
        strings.push(v.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_over_their_limit_are_refused_while_reading() {
        let two: AtMost<u8, 2> = serde_json::from_str("[1, 2]").expect("ok");
        assert_eq!(two.0, [1, 2]);
        let three = serde_json::from_str::<AtMost<u8, 2>>("[1, 2, 3]");
        assert!(three.is_err_and(|e| e.to_string().contains("more than 2")));
    }

    #[test]
    fn parameters_are_scalars_and_few() {
        let params: Params =
            serde_json::from_str(r#"{"a": true, "b": 3, "c": "x", "d": -1.5}"#).expect("ok");
        assert_eq!(params.get("a").and_then(Param::as_bool), Some(true));
        assert_eq!(params.get("b").and_then(Param::as_u64), Some(3));
        assert!(serde_json::from_str::<Params>(r#"{"a": [1, 2]}"#).is_err());
        assert!(serde_json::from_str::<Params>(r#"{"a": {"b": 1}}"#).is_err());
        let many: String = (0..=MAX_PARAMETERS)
            .map(|i| format!("\"p{i}\": 1"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(serde_json::from_str::<Params>(&format!("{{{many}}}")).is_err());
    }

    #[test]
    fn data_is_flattened_into_floats_or_strings() {
        let numbers: Flat = serde_json::from_str("[[1, 2.5], [-3, 4e2]]").expect("ok");
        assert_eq!(numbers, Flat::Numbers(vec![1.0, 2.5, -3.0, 400.0]));
        let strings: Flat = serde_json::from_str(r#"[["aGk="], ["eA=="]]"#).expect("ok");
        assert_eq!(strings, Flat::Strings(vec!["aGk=".into(), "eA==".into()]));
        assert!(serde_json::from_str::<Flat>(r#"[1, "x"]"#).is_err());
        assert!(serde_json::from_str::<Flat>(r#"["x", 1]"#).is_err());
        assert!(serde_json::from_str::<Flat>(r#"[{"a": 1}]"#).is_err());
        let too_many = format!("[{}]", vec!["\"\""; MAX_STRINGS + 1].join(","));
        assert!(serde_json::from_str::<Flat>(&too_many).is_err());
    }
}
