//! `Tensor`: a dense, contiguous, row-major array of one datatype, with Open Inference
//! Protocol datatype names. The only tensor type the rest of Pier sees.

use std::fmt;

use crate::error::{Result, RuntimeError};

/// Element type of a tensor, named as the Open Inference Protocol names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOL`
    Bool,
    /// `UINT8`
    Uint8,
    /// `INT8`
    Int8,
    /// `INT16`
    Int16,
    /// `INT32`
    Int32,
    /// `INT64`
    Int64,
    /// `FP32`
    Fp32,
    /// `FP64`
    Fp64,
    /// `BYTES`: each element a byte string.
    Bytes,
}

impl DataType {
    /// Every supported datatype.
    pub const ALL: [DataType; 9] = [
        Self::Bool,
        Self::Uint8,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp32,
        Self::Fp64,
        Self::Bytes,
    ];

    /// The protocol name, e.g. `FP32`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name (`FP32`, …).
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == name)
            .ok_or_else(|| RuntimeError::InvalidInput(format!("unknown datatype {name:?}")))
    }

    /// The range of an integer type as `f64` (`None` for the others).
    fn integer_range(self) -> Option<(f64, f64)> {
        Some(match self {
            Self::Uint8 => (0.0, f64::from(u8::MAX)),
            Self::Int8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
            Self::Int16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
            Self::Int32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Self::Int64 => (i64::MIN as f64, i64::MAX as f64),
            _ => return None,
        })
    }

    /// Size of one element in bytes; `None` for `BYTES`.
    pub fn size_of(self) -> Option<usize> {
        Some(match self {
            Self::Bool | Self::Uint8 | Self::Int8 => 1,
            Self::Int16 => 2,
            Self::Int32 | Self::Fp32 => 4,
            Self::Int64 | Self::Fp64 => 8,
            Self::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The elements of a tensor, one vector per datatype.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any `TensorData` variant.
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

/// Rebuilds the same variant as `$like` around `$body` (which uses `$v`, the inner vector).
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::Uint8($v) => TensorData::Uint8($body),
            TensorData::Int8($v) => TensorData::Int8($body),
            TensorData::Int16($v) => TensorData::Int16($body),
            TensorData::Int32($v) => TensorData::Int32($body),
            TensorData::Int64($v) => TensorData::Int64($body),
            TensorData::Fp32($v) => TensorData::Fp32($body),
            TensorData::Fp64($v) => TensorData::Fp64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The datatype of the elements.
    pub fn dtype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::Uint8(_) => DataType::Uint8,
            Self::Int8(_) => DataType::Int8,
            Self::Int16(_) => DataType::Int16,
            Self::Int32(_) => DataType::Int32,
            Self::Int64(_) => DataType::Int64,
            Self::Fp32(_) => DataType::Fp32,
            Self::Fp64(_) => DataType::Fp64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    /// Element `i` as `f64`, for numeric types (`BOOL` as 0/1); `None` for `BYTES`.
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        Some(match self {
            Self::Bool(v) => f64::from(u8::from(v[i])),
            Self::Uint8(v) => f64::from(v[i]),
            Self::Int8(v) => f64::from(v[i]),
            Self::Int16(v) => f64::from(v[i]),
            Self::Int32(v) => f64::from(v[i]),
            Self::Int64(v) => v[i] as f64,
            Self::Fp32(v) => f64::from(v[i]),
            Self::Fp64(v) => v[i],
            Self::Bytes(_) => return None,
        })
    }
}

/// A dense row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the shape matches the number of elements.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self> {
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(RuntimeError::InvalidInput(format!(
                "shape {shape:?} needs {} elements but {} were given",
                expected.map_or_else(|| "too many".to_string(), |e| e.to_string()),
                data.len()
            )));
        }
        Ok(Self { shape, data })
    }

    /// A 2-D `FP32` tensor of `rows` × `cols`.
    pub fn from_f32_rows(rows: usize, cols: usize, values: Vec<f32>) -> Result<Self> {
        Self::new(vec![rows, cols], TensorData::Fp32(values))
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Takes the elements out.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The datatype.
    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Size of the first dimension (1 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Elements per row: the product of all dimensions but the first.
    pub fn row_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The elements as `f32` if the tensor is `FP32`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::Fp32(v) => Some(v),
            _ => None,
        }
    }

    /// Converts the elements to another numeric datatype (a no-op if it already is one).
    /// `BYTES` converts to nothing and nothing converts to `BYTES`.
    pub fn cast(self, to: DataType) -> Result<Self> {
        if self.dtype() == to {
            return Ok(self);
        }
        let from = self.dtype();
        if from == DataType::Bytes || to == DataType::Bytes {
            return Err(RuntimeError::InvalidInput(format!(
                "cannot convert {from} to {to}"
            )));
        }
        let n = self.len();
        let f = |i| self.data.get_f64(i).unwrap_or(0.0);
        if let Some((lo, hi)) = to.integer_range() {
            // `as` saturates silently: a value the integer type cannot hold is refused
            // instead, naming its row and column (1-based).
            if let Some(i) = (0..n).find(|&i| !(lo..=hi).contains(&f(i))) {
                let row_len = self.row_len().max(1);
                return Err(RuntimeError::InvalidInput(format!(
                    "row {}, column {}: the value {} is out of the {to} range",
                    i / row_len + 1,
                    i % row_len + 1,
                    f(i)
                )));
            }
        }
        let data = match to {
            DataType::Bool => TensorData::Bool((0..n).map(|i| f(i) != 0.0).collect()),
            DataType::Uint8 => TensorData::Uint8((0..n).map(|i| f(i) as u8).collect()),
            DataType::Int8 => TensorData::Int8((0..n).map(|i| f(i) as i8).collect()),
            DataType::Int16 => TensorData::Int16((0..n).map(|i| f(i) as i16).collect()),
            DataType::Int32 => TensorData::Int32((0..n).map(|i| f(i) as i32).collect()),
            DataType::Int64 => match &self.data {
                TensorData::Int32(v) => {
                    TensorData::Int64(v.iter().map(|&x| i64::from(x)).collect())
                }
                _ => TensorData::Int64((0..n).map(|i| f(i) as i64).collect()),
            },
            DataType::Fp32 => TensorData::Fp32((0..n).map(|i| f(i) as f32).collect()),
            DataType::Fp64 => TensorData::Fp64((0..n).map(f).collect()),
            DataType::Bytes => unreachable!("checked above"),
        };
        Ok(Self {
            shape: self.shape,
            data,
        })
    }

    /// Stacks tensors of one datatype and equal row shape along the first dimension. Takes
    /// the parts owned or borrowed (`&[Tensor]` or `&[&Tensor]`); either way each value is
    /// copied once, into the result.
    pub fn concat_rows<T: std::borrow::Borrow<Tensor>>(parts: &[T]) -> Result<Self> {
        let parts: Vec<&Tensor> = parts.iter().map(std::borrow::Borrow::borrow).collect();
        let first = *parts
            .first()
            .ok_or_else(|| RuntimeError::InvalidInput("nothing to concatenate".into()))?;
        let tail = &first.shape[1.min(first.shape.len())..];
        let mut rows = 0;
        for p in &parts {
            if p.dtype() != first.dtype()
                || p.shape.len() != first.shape.len()
                || &p.shape[1..] != tail
            {
                return Err(RuntimeError::InvalidInput(format!(
                    "cannot stack {} {:?} onto {} {:?}",
                    p.dtype(),
                    p.shape,
                    first.dtype(),
                    first.shape
                )));
            }
            rows += p.rows();
        }
        // Reserve what the parts hold, not the first part's size times their number: parts
        // of very different sizes (one large request batched with small ones) must not
        // reserve many times the batch.
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut data = map_data!(&first.data, _v => Vec::with_capacity(total));
        for p in &parts {
            match (&mut data, &p.data) {
                (TensorData::Bool(d), TensorData::Bool(s)) => d.extend_from_slice(s),
                (TensorData::Uint8(d), TensorData::Uint8(s)) => d.extend_from_slice(s),
                (TensorData::Int8(d), TensorData::Int8(s)) => d.extend_from_slice(s),
                (TensorData::Int16(d), TensorData::Int16(s)) => d.extend_from_slice(s),
                (TensorData::Int32(d), TensorData::Int32(s)) => d.extend_from_slice(s),
                (TensorData::Int64(d), TensorData::Int64(s)) => d.extend_from_slice(s),
                (TensorData::Fp32(d), TensorData::Fp32(s)) => d.extend_from_slice(s),
                (TensorData::Fp64(d), TensorData::Fp64(s)) => d.extend_from_slice(s),
                (TensorData::Bytes(d), TensorData::Bytes(s)) => d.extend_from_slice(s),
                _ => unreachable!("datatypes checked above"),
            }
        }
        let mut shape = first.shape.clone();
        if let Some(d0) = shape.first_mut() {
            *d0 = rows;
        }
        Self::new(shape, data)
    }

    /// Splits along the first dimension into pieces of the given row counts (which must add
    /// up to [`Tensor::rows`]).
    pub fn split_rows(&self, counts: &[usize]) -> Result<Vec<Tensor>> {
        if self.shape.is_empty() || counts.iter().sum::<usize>() != self.rows() {
            return Err(RuntimeError::InvalidInput(format!(
                "cannot split {:?} into rows {counts:?}",
                self.shape
            )));
        }
        let row_len = self.row_len();
        let mut start = 0;
        counts
            .iter()
            .map(|&c| {
                let range = start * row_len..(start + c) * row_len;
                start += c;
                let data = map_data!(&self.data, v => v[range.clone()].to_vec());
                let mut shape = self.shape.clone();
                shape[0] = c;
                Self::new(shape, data)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_must_match_data() {
        assert!(Tensor::new(vec![2, 3], TensorData::Fp32(vec![0.0; 5])).is_err());
        let t = Tensor::new(vec![2, 3], TensorData::Fp32(vec![0.0; 6])).unwrap();
        assert_eq!((t.rows(), t.row_len()), (2, 3));
    }

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()).unwrap(), d);
        }
        assert!(DataType::parse("FP8").is_err());
    }

    #[test]
    fn concat_then_split_is_identity() {
        let a = Tensor::new(vec![1, 2], TensorData::Int64(vec![1, 2])).unwrap();
        let b = Tensor::new(vec![2, 2], TensorData::Int64(vec![3, 4, 5, 6])).unwrap();
        let both = Tensor::concat_rows(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(both.shape(), &[3, 2]);
        assert_eq!(both.split_rows(&[1, 2]).unwrap(), vec![a, b]);
        let c = Tensor::new(vec![1, 3], TensorData::Int64(vec![0; 3])).unwrap();
        assert!(Tensor::concat_rows(&[both, c]).is_err());
    }

    #[test]
    fn casts_between_numbers() {
        let t = Tensor::new(vec![3], TensorData::Fp64(vec![1.5, -2.0, 0.0])).unwrap();
        assert_eq!(
            t.clone().cast(DataType::Int64).unwrap().into_data(),
            TensorData::Int64(vec![1, -2, 0])
        );
        assert_eq!(
            t.clone().cast(DataType::Bool).unwrap().into_data(),
            TensorData::Bool(vec![true, true, false])
        );
        assert!(t.clone().cast(DataType::Bytes).is_err());
        // Out of range (or NaN) for the integer type: refused, not saturated.
        let big = Tensor::new(
            vec![2, 2],
            TensorData::Fp32(vec![1.0, 2.0, 300.0, f32::NAN]),
        )
        .unwrap();
        let err = big.clone().cast(DataType::Uint8).unwrap_err().to_string();
        assert!(
            err.contains("row 2, column 1") && err.contains("UINT8"),
            "{err}"
        );
        let err = big.cast(DataType::Int32).unwrap_err().to_string();
        assert!(err.contains("row 2, column 2"), "{err}");
    }
}
