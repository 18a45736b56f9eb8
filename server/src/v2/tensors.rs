//! The one module that converts v2 wire tensors to [`Tensor`] and back: JSON `data`
//! (flat or nested), the binary tensor format (REST binary extension and gRPC
//! `raw_input_contents`/`raw_output_contents`: little-endian elements, `BYTES` elements each
//! preceded by a 4-byte little-endian length) and gRPC's typed `InferTensorContents`.
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

/// Checks a wire shape (no negative dimension) and returns it with its element count.
pub fn shape(name: &str, wire: &[i64]) -> Result<(Vec<usize>, usize), ServeError> {
    let mut dims = Vec::with_capacity(wire.len());
    let mut count: usize = 1;
    for &d in wire {
        let d = usize::try_from(d).map_err(|_| {
            invalid(format!(
                "input {name:?}: shape {wire:?} has a negative dimension"
            ))
        })?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| invalid(format!("input {name:?}: shape {wire:?} is too large")))?;
        dims.push(d);
    }
    Ok((dims, count))
}

fn build(
    name: &str,
    dims: Vec<usize>,
    count: usize,
    data: TensorData,
) -> Result<Tensor, ServeError> {
    if data.len() != count {
        return Err(invalid(format!(
            "input {name:?}: shape {dims:?} needs {count} elements but {} were given",
            data.len()
        )));
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
    let want = count.saturating_mul(size);
    if raw.len() != want {
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
/// strings as the datatype needs).
pub fn from_json(
    name: &str,
    dtype: DataType,
    wire_shape: &[i64],
    data: &Value,
) -> Result<Tensor, ServeError> {
    let (dims, count) = shape(name, wire_shape)?;
    let mut items = Vec::with_capacity(count);
    flatten(data, &mut items);
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
                .map(|(i, v)| v.as_f64().map(|x| x as f32).ok_or_else(|| bad(i, v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp64 => TensorData::Fp64(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or_else(|| bad(i, v)))
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

/// The wire shape of a tensor.
pub fn wire_shape(tensor: &Tensor) -> Vec<i64> {
    tensor.shape().iter().map(|&d| d as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
