//! The one module that converts v2 wire tensors to [`Tensor`] and back: JSON `data`
//! (flat or nested), the binary tensor format (REST binary extension and gRPC
//! `raw_input_contents`/`raw_output_contents`: little-endian elements, `BYTES` elements each
//! preceded by a 4-byte little-endian length) and gRPC's typed `InferTensorContents`.
//!
//! Declared shapes are untrusted: element counts are overflow-checked, capped at
//! [`MAX_ELEMENTS`] and compared with the data actually sent before anything is reserved
//! for them.
//!
//! Pure functions with no shared state; every failure is a [`ServeError::Validation`] that
//! names the tensor and the problem.

use pier_proto::inference::InferTensorContents;
use pier_runtimes::{DataType, Tensor, TensorData};
use serde_json::Value;

use crate::error::ServeError;

fn invalid(message: String) -> ServeError {
    ServeError::Validation(message)
}

/// Parses a wire datatype name (`FP32`, …) for tensor `name`.
pub fn datatype(name: &str, wire: &str) -> Result<DataType, ServeError> {
    DataType::parse(wire).map_err(|_| {
        invalid(format!(
            "input {name:?}: unsupported datatype {wire:?}; Pier serves BOOL, UINT8, INT8, INT16, INT32, INT64, FP32, FP64, BYTES"
        ))
    })
}

/// Most elements one tensor may declare, whatever data it carries (2^28: 1 GiB of `FP32`).
/// Dimensions of size 0 count as 1 here, so an empty tensor cannot declare absurd rows.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Checks a wire shape (no negative dimension, at most [`MAX_ELEMENTS`] elements, products
/// overflow-checked) and returns it with its element count. Nothing is allocated for the
/// elements: callers compare the count with the data actually sent before decoding it.
pub fn shape(name: &str, wire: &[i64]) -> Result<(Vec<usize>, usize), ServeError> {
    let too_large = || {
        invalid(format!(
            "input {name:?}: shape {wire:?} declares more than {MAX_ELEMENTS} elements, the most one tensor may hold"
        ))
    };
    let mut dims = Vec::with_capacity(wire.len());
    let mut count: usize = 1;
    let mut nominal: usize = 1;
    for &d in wire {
        let d = usize::try_from(d).map_err(|_| {
            invalid(format!(
                "input {name:?}: shape {wire:?} has a negative dimension"
            ))
        })?;
        count = count.checked_mul(d).ok_or_else(too_large)?;
        nominal = nominal.checked_mul(d.max(1)).ok_or_else(too_large)?;
        if nominal > MAX_ELEMENTS {
            return Err(too_large());
        }
        dims.push(d);
    }
    Ok((dims, count))
}

/// The error for `count` declared elements when the data holds `given`.
fn count_mismatch(name: &str, dims: &[usize], count: usize, given: usize) -> ServeError {
    invalid(format!(
        "input {name:?}: shape {dims:?} needs {count} elements but {given} were given"
    ))
}

fn build(
    name: &str,
    dims: Vec<usize>,
    count: usize,
    data: TensorData,
) -> Result<Tensor, ServeError> {
    if data.len() != count {
        return Err(count_mismatch(name, &dims, count, data.len()));
    }
    Tensor::new(dims, data).map_err(|e| invalid(format!("input {name:?}: {e}")))
}

/// Decodes the binary tensor format.
pub fn from_raw(
    name: &str,
    dtype: DataType,
    wire_shape: &[i64],
    raw: &[u8],
) -> Result<Tensor, ServeError> {
    let (dims, count) = shape(name, wire_shape)?;
    let Some(size) = dtype.size_of() else {
        // Each element takes at least its 4-byte length prefix: a count the data cannot
        // hold is refused before anything is reserved for it.
        if count > raw.len() / 4 {
            return Err(invalid(format!(
                "input {name:?}: BYTES shape {wire_shape:?} needs {count} elements but {} bytes of data hold at most {}",
                raw.len(),
                raw.len() / 4
            )));
        }
        let mut items = Vec::with_capacity(count);
        let mut rest = raw;
        while !rest.is_empty() {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| {
                invalid(format!(
                    "input {name:?}: BYTES data ends inside a length prefix"
                ))
            })?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(invalid(format!(
                    "input {name:?}: BYTES element of {len} bytes runs past the data"
                )));
            }
            items.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        return build(name, dims, count, TensorData::Bytes(items));
    };
    let want = count.checked_mul(size);
    if want != Some(raw.len()) {
        let want = want.map_or_else(|| "more".to_owned(), |w| w.to_string());
        return Err(invalid(format!(
            "input {name:?}: {dtype} shape {wire_shape:?} needs {want} bytes of raw data but {} were given",
            raw.len()
        )));
    }
    macro_rules! le {
        ($t:ty, $n:literal) => {
            raw.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunk")))
                .collect()
        };
    }
    let data = match dtype {
        DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
        DataType::Int8 => TensorData::Int8(raw.iter().map(|&b| b as i8).collect()),
        DataType::Int16 => TensorData::Int16(le!(i16, 2)),
        DataType::Int32 => TensorData::Int32(le!(i32, 4)),
        DataType::Int64 => TensorData::Int64(le!(i64, 8)),
        DataType::Fp32 => TensorData::Fp32(le!(f32, 4)),
        DataType::Fp64 => TensorData::Fp64(le!(f64, 8)),
        DataType::Bytes => unreachable!("BYTES handled above"),
    };
    build(name, dims, count, data)
}

/// Encodes a tensor in the binary tensor format.
pub fn to_raw(tensor: &Tensor) -> Vec<u8> {
    macro_rules! le {
        ($v:expr) => {
            $v.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
    }
    match tensor.data() {
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::Uint8(v) => v.clone(),
        TensorData::Int8(v) => v.iter().map(|&x| x as u8).collect(),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
            for b in v {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            out
        }
    }
}

fn flatten<'v>(value: &'v Value, out: &mut Vec<&'v Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// Decodes JSON `data` (a flat row-major array, or nested arrays, of numbers, booleans or
/// strings as the datatype needs). For `FP32` and `FP64`, `null` is a missing value (NaN),
/// which [`pier_runtimes::values`] accepts only for models that take missing values.
pub fn from_json(
    name: &str,
    dtype: DataType,
    wire_shape: &[i64],
    data: &Value,
) -> Result<Tensor, ServeError> {
    let (dims, count) = shape(name, wire_shape)?;
    let mut items = Vec::new();
    flatten(data, &mut items);
    if items.len() != count {
        return Err(count_mismatch(name, &dims, count, items.len()));
    }
    let bad = |i: usize, v: &Value| {
        invalid(format!(
            "input {name:?}: element {i} ({v}) is not a valid {dtype} value"
        ))
    };
    macro_rules! ints {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_i64()
                            .and_then(|x| <$t>::try_from(x).ok())
                            .ok_or_else(|| bad(i, v))
                    })
                    .collect::<Result<_, _>>()?,
            )
        };
    }
    let data = match dtype {
        DataType::Bool => TensorData::Bool(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => ints!(u8, Uint8),
        DataType::Int8 => ints!(i8, Int8),
        DataType::Int16 => ints!(i16, Int16),
        DataType::Int32 => ints!(i32, Int32),
        DataType::Int64 => ints!(i64, Int64),
        DataType::Fp32 => TensorData::Fp32(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Null => Ok(f32::NAN),
                    _ => v.as_f64().map(|x| x as f32).ok_or_else(|| bad(i, v)),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp64 => TensorData::Fp64(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Null => Ok(f64::NAN),
                    _ => v.as_f64().ok_or_else(|| bad(i, v)),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Bytes => TensorData::Bytes(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| bad(i, v))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    build(name, dims, count, data)
}

/// A tensor's elements as a flat JSON array (BYTES as UTF-8 strings, lossily).
pub fn to_json(tensor: &Tensor) -> Value {
    match tensor.data() {
        TensorData::Bool(v) => Value::from(v.clone()),
        TensorData::Uint8(v) => Value::from(v.clone()),
        TensorData::Int8(v) => Value::from(v.clone()),
        TensorData::Int16(v) => Value::from(v.clone()),
        TensorData::Int32(v) => Value::from(v.clone()),
        TensorData::Int64(v) => Value::from(v.clone()),
        TensorData::Fp32(v) => Value::Array(v.iter().map(|&x| json_f64(f64::from(x))).collect()),
        TensorData::Fp64(v) => Value::Array(v.iter().map(|&x| json_f64(x)).collect()),
        TensorData::Bytes(v) => Value::Array(
            v.iter()
                .map(|b| Value::from(String::from_utf8_lossy(b).into_owned()))
                .collect(),
        ),
    }
}

/// A tensor's JSON `data`, serialized straight into the answer: the same text as
/// [`to_json`] (floats through `f64`, non-finite as `null`, `BYTES` as lossy UTF-8 strings)
/// without building a [`Value`] per element.
pub struct JsonData<'a>(pub &'a Tensor);

impl serde::Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        fn seq<S: serde::Serializer, T: serde::Serialize>(
            serializer: S,
            items: impl ExactSizeIterator<Item = T>,
        ) -> Result<S::Ok, S::Error> {
            let mut seq = serializer.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(&item)?;
            }
            seq.end()
        }
        // serde_json writes a non-finite f64 as `null`, as `json_f64` makes it.
        match self.0.data() {
            TensorData::Bool(v) => seq(serializer, v.iter()),
            TensorData::Uint8(v) => seq(serializer, v.iter()),
            TensorData::Int8(v) => seq(serializer, v.iter()),
            TensorData::Int16(v) => seq(serializer, v.iter()),
            TensorData::Int32(v) => seq(serializer, v.iter()),
            TensorData::Int64(v) => seq(serializer, v.iter()),
            TensorData::Fp32(v) => seq(serializer, v.iter().map(|&x| f64::from(x))),
            TensorData::Fp64(v) => seq(serializer, v.iter()),
            TensorData::Bytes(v) => seq(serializer, v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

/// Appends [`to_raw`]'s bytes of `tensor` to `out` (no intermediate buffer).
pub fn append_raw(tensor: &Tensor, out: &mut Vec<u8>) {
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match tensor.data() {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Int8(v) => out.extend(v.iter().map(|&x| x as u8)),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            for b in v {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

/// The byte length [`append_raw`] writes for `tensor`.
pub fn raw_len(tensor: &Tensor) -> usize {
    match tensor.data() {
        TensorData::Bytes(v) => v.iter().map(|b| b.len() + 4).sum(),
        _ => tensor.len() * tensor.dtype().size_of().unwrap_or(1),
    }
}

fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Decodes gRPC typed contents; the field read follows the datatype.
pub fn from_contents(
    name: &str,
    dtype: DataType,
    wire_shape: &[i64],
    c: &InferTensorContents,
) -> Result<Tensor, ServeError> {
    let (dims, count) = shape(name, wire_shape)?;
    check_contents_field(name, dtype, count, c)?;
    let narrow = |what: &str| {
        invalid(format!(
            "input {name:?}: a value in int_contents does not fit {what}"
        ))
    };
    let data = match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::Uint8 => TensorData::Uint8(
            c.uint_contents
                .iter()
                .map(|&x| u8::try_from(x).map_err(|_| narrow("UINT8")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int8 => TensorData::Int8(
            c.int_contents
                .iter()
                .map(|&x| i8::try_from(x).map_err(|_| narrow("INT8")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int16 => TensorData::Int16(
            c.int_contents
                .iter()
                .map(|&x| i16::try_from(x).map_err(|_| narrow("INT16")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int32 => TensorData::Int32(c.int_contents.clone()),
        DataType::Int64 => TensorData::Int64(c.int64_contents.clone()),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents.clone()),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents.clone()),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.clone()),
    };
    build(name, dims, count, data)
}

/// The typed field of `InferTensorContents` that carries `dtype`'s values.
fn contents_field(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "bool_contents",
        DataType::Uint8 => "uint_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
    }
}

/// Names the mistake when the values sit in another typed field than the datatype's (say
/// FP32 values sent as `fp64_contents`), instead of a bare count mismatch.
fn check_contents_field(
    name: &str,
    dtype: DataType,
    count: usize,
    c: &InferTensorContents,
) -> Result<(), ServeError> {
    let fields = [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ];
    let expected = contents_field(dtype);
    let given = fields
        .iter()
        .find(|(f, _)| *f == expected)
        .map_or(0, |(_, n)| *n);
    if given == count {
        return Ok(());
    }
    match fields.iter().find(|(f, n)| *f != expected && *n > 0) {
        Some((other, n)) => Err(invalid(format!(
            "input {name:?}: datatype {dtype} takes its values in {expected}, but {n} values were given in {other}"
        ))),
        None => Ok(()), // the count check names the mismatch
    }
}

/// The wire shape of a tensor.
pub fn wire_shape(tensor: &Tensor) -> Vec<i64> {
    tensor.shape().iter().map(|&d| d as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_data_and_raw_match_the_value_and_vec_encoders() {
        let tensors = [
            Tensor::new(
                vec![2, 2],
                TensorData::Fp32(vec![0.1, f32::NAN, -3.0, 1e-7]),
            )
            .unwrap(),
            Tensor::new(vec![3], TensorData::Fp64(vec![0.1, f64::INFINITY, 2.5])).unwrap(),
            Tensor::new(vec![2], TensorData::Int64(vec![-5, 7])).unwrap(),
            Tensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap(),
            Tensor::new(
                vec![2],
                TensorData::Bytes(vec![b"a\"b".to_vec(), vec![0xff, b'x']]),
            )
            .unwrap(),
        ];
        for t in &tensors {
            let direct = serde_json::to_string(&JsonData(t)).unwrap();
            assert_eq!(direct, to_json(t).to_string(), "{t:?}");
            let mut raw = vec![9];
            append_raw(t, &mut raw);
            assert_eq!(raw[1..], to_raw(t)[..], "{t:?}");
            assert_eq!(raw_len(t), to_raw(t).len(), "{t:?}");
        }
    }

    #[test]
    fn values_in_the_wrong_typed_field_are_named() {
        let c = InferTensorContents {
            fp64_contents: vec![1.0, 2.0],
            ..Default::default()
        };
        let err = from_contents("x", DataType::Fp32, &[1, 2], &c)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fp32_contents") && err.contains("fp64_contents"),
            "{err}"
        );
        let ok = InferTensorContents {
            fp32_contents: vec![1.0, 2.0],
            ..Default::default()
        };
        assert!(from_contents("x", DataType::Fp32, &[1, 2], &ok).is_ok());
    }

    #[test]
    fn raw_round_trip_and_size_check() {
        let t = Tensor::new(vec![2, 2], TensorData::Fp32(vec![1.0, -2.5, 3.0, 4.0])).unwrap();
        let raw = to_raw(&t);
        assert_eq!(from_raw("x", DataType::Fp32, &[2, 2], &raw).unwrap(), t);
        let err = from_raw("x", DataType::Fp32, &[2, 2], &raw[..12])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs 16 bytes") && err.contains("12"),
            "{err}"
        );
        let b = Tensor::new(vec![2], TensorData::Bytes(vec![b"ab".to_vec(), vec![]])).unwrap();
        assert_eq!(
            from_raw("s", DataType::Bytes, &[2], &to_raw(&b)).unwrap(),
            b
        );
    }

    #[test]
    fn json_nested_and_count_check() {
        let v = serde_json::json!([[1, 2], [3, 4]]);
        let t = from_json("x", DataType::Int64, &[2, 2], &v).unwrap();
        assert_eq!(t.data(), &TensorData::Int64(vec![1, 2, 3, 4]));
        let err = from_json("x", DataType::Int64, &[3, 2], &v)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs 6 elements"), "{err}");
        assert!(from_json("x", DataType::Int32, &[1], &serde_json::json!(["a"])).is_err());
        assert!(shape("x", &[-1, 2]).is_err());
    }

    /// Declared sizes far beyond the data sent are refused before anything is reserved
    /// (these once aborted the process on a failed allocation).
    #[test]
    fn declared_sizes_are_checked_before_allocating() {
        let huge = 1_000_000_000_000_i64;
        let err = from_json(
            "x",
            DataType::Fp32,
            &[huge, 4],
            &serde_json::json!([1, 2, 3, 4]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("[1000000000000, 4]"), "{err}");
        let err = from_raw("x", DataType::Bytes, &[huge], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("shape [1000000000000]"), "{err}");
        let err = from_raw("x", DataType::Bytes, &[1 << 20], &[0; 4])
            .unwrap_err()
            .to_string();
        assert!(err.contains("BYTES shape [1048576] needs 1048576"), "{err}");
        let err = from_raw("x", DataType::Bytes, &[3], &[0; 8])
            .unwrap_err()
            .to_string();
        assert!(err.contains("hold at most 2"), "{err}");
        let err = from_raw("x", DataType::Fp32, &[huge, 4], &[0; 16])
            .unwrap_err()
            .to_string();
        assert!(err.contains("[1000000000000, 4]"), "{err}");
        let contents = InferTensorContents {
            bytes_contents: vec![b"a".to_vec()],
            ..Default::default()
        };
        assert!(from_contents("x", DataType::Bytes, &[huge], &contents).is_err());
        // Overflowing products, and empty tensors with absurd dimensions.
        assert!(shape("x", &[i64::MAX, i64::MAX, 2]).is_err());
        assert!(shape("x", &[1_000_000_000, 0]).is_err());
        assert_eq!(shape("x", &[0, 4]).unwrap(), (vec![0, 4], 0));
        let max = MAX_ELEMENTS as i64;
        assert!(shape("x", &[max]).is_ok());
        assert!(shape("x", &[max + 1]).is_err());
    }

    #[test]
    fn json_null_is_a_missing_float() {
        let v = serde_json::json!([1.5, null]);
        let t = from_json("x", DataType::Fp32, &[2], &v).unwrap();
        assert!(t.as_f32().unwrap()[1].is_nan());
        let t = from_json("x", DataType::Fp64, &[2], &v).unwrap();
        assert!(matches!(t.data(), TensorData::Fp64(d) if d[1].is_nan()));
        assert!(from_json("x", DataType::Int64, &[2], &v).is_err());
    }
}
