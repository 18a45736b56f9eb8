//! `application/x-recordio-protobuf`, as the SageMaker SDK writes it (`record_set()`,
//! `write_numpy_to_dense_tensor`, `write_spmatrix_to_sparse_tensor`): MXNet RecordIO frames —
//! the magic `0xced7230a`, a little-endian length whose top 3 bits are a continuation flag
//! (0 whole, 1 first, 2 middle, 3 last part; the magic between parts is restored), the payload,
//! zero padding to 4 bytes — around `aialgs.data.Record` protobufs. Each record is one row: the
//! feature tensor `values` (dense, or sparse `keys` densified by `shape`; `Float32Tensor`,
//! `Float64Tensor` or `Int32Tensor`) and the label tensor `values` (one value).
//!
//! [`RecordIoReader`] is incremental: bytes are fed as they arrive and frames parsed as soon as
//! they are whole; only a partial frame is kept between chunks. Every size in a frame or a
//! record is checked before anything is allocated from it.

use std::collections::HashMap;

use prost::Message;

/// The RecordIO magic number.
pub const MAGIC: u32 = 0xced7_230a;

/// Largest record accepted (the payload of one frame, or of all parts of a split record).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Widest row accepted (a sparse record's `shape`).
pub const MAX_WIDTH: u64 = 1 << 24;

/// `aialgs.data.Float32Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct Float32Tensor {
    /// Values (dense) or the values at `keys` (sparse).
    #[prost(float, repeated, packed = "true", tag = "1")]
    pub values: Vec<f32>,
    /// Positions of `values` in a sparse tensor.
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub keys: Vec<u64>,
    /// Shape; required for a sparse tensor.
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub shape: Vec<u64>,
}

/// `aialgs.data.Float64Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct Float64Tensor {
    /// Values.
    #[prost(double, repeated, packed = "true", tag = "1")]
    pub values: Vec<f64>,
    /// Sparse positions.
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub keys: Vec<u64>,
    /// Shape.
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub shape: Vec<u64>,
}

/// `aialgs.data.Int32Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct Int32Tensor {
    /// Values.
    #[prost(int32, repeated, packed = "true", tag = "1")]
    pub values: Vec<i32>,
    /// Sparse positions.
    #[prost(uint64, repeated, packed = "true", tag = "2")]
    pub keys: Vec<u64>,
    /// Shape.
    #[prost(uint64, repeated, packed = "true", tag = "3")]
    pub shape: Vec<u64>,
}

/// `aialgs.data.Bytes` (not a numeric value: refused).
#[derive(Clone, PartialEq, Message)]
pub struct BytesValue {
    /// Raw values.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
    /// Their content type.
    #[prost(string, optional, tag = "2")]
    pub content_type: Option<String>,
}

/// `aialgs.data.Value`.
#[derive(Clone, PartialEq, Message)]
pub struct Value {
    /// One of the tensors.
    #[prost(oneof = "ValueKind", tags = "2, 3, 7, 9")]
    pub value: Option<ValueKind>,
}

/// The `oneof value` of `aialgs.data.Value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ValueKind {
    /// float32.
    #[prost(message, tag = "2")]
    Float32Tensor(Float32Tensor),
    /// float64.
    #[prost(message, tag = "3")]
    Float64Tensor(Float64Tensor),
    /// int32.
    #[prost(message, tag = "7")]
    Int32Tensor(Int32Tensor),
    /// bytes.
    #[prost(message, tag = "9")]
    Bytes(BytesValue),
}

/// `aialgs.data.Record`.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    /// Features by name; the SDK writes one, `values`.
    #[prost(map = "string, message", tag = "1")]
    pub features: HashMap<String, Value>,
    /// Labels by name; the SDK writes one, `values`.
    #[prost(map = "string, message", tag = "2")]
    pub label: HashMap<String, Value>,
    /// Record id.
    #[prost(string, optional, tag = "3")]
    pub uid: Option<String>,
    /// Free metadata.
    #[prost(string, optional, tag = "4")]
    pub metadata: Option<String>,
    /// Per-record configuration.
    #[prost(string, optional, tag = "5")]
    pub configuration: Option<String>,
}

/// Wraps `payload` in one RecordIO frame (for tests and fixtures).
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - payload.len() % 4) % 4, 0);
}

/// A parse failure: the 1-based record (within its object) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// 1-based record index within the object.
    pub record: usize,
    /// What is wrong.
    pub reason: String,
}

/// An incremental RecordIO-protobuf reader; see the module docs.
#[derive(Debug)]
pub struct RecordIoReader {
    has_label: bool,
    buf: Vec<u8>,
    /// A split record's parts so far.
    parts: Option<Vec<u8>>,
    /// Records completed in the current object.
    records: usize,
    width: Option<usize>,
    features: Vec<f32>,
    labels: Vec<f32>,
}

impl RecordIoReader {
    /// A reader; with `has_label` every record must carry a label.
    pub fn new(has_label: bool) -> Self {
        Self {
            has_label,
            buf: Vec::new(),
            parts: None,
            records: 0,
            width: None,
            features: Vec::new(),
            labels: Vec::new(),
        }
    }

    fn err(&self, reason: impl Into<String>) -> RecordError {
        RecordError {
            record: self.records + 1,
            reason: reason.into(),
        }
    }

    /// Parses every whole frame in what was fed so far.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), RecordError> {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let result = loop {
            let rest = &self.buf[pos..];
            if rest.len() < 8 {
                break Ok(());
            }
            let magic = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
            if magic != MAGIC {
                break Err(self.err(format!(
                    "bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}); not RecordIO, or the previous record's length is wrong"
                )));
            }
            let lrec = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
            let (cflag, len) = (lrec >> 29, (lrec & ((1 << 29) - 1)) as usize);
            if len > MAX_RECORD_BYTES {
                break Err(self.err(format!(
                    "the record is {len} bytes, more than the limit of {MAX_RECORD_BYTES}"
                )));
            }
            let padded = len.div_ceil(4) * 4;
            if rest.len() < 8 + padded {
                break Ok(());
            }
            let payload_range = pos + 8..pos + 8 + len;
            pos += 8 + padded;
            let whole = match (cflag, self.parts.take()) {
                (0, None) => None,
                (1, None) => {
                    self.parts = Some(self.buf[payload_range].to_vec());
                    continue;
                }
                (2 | 3, Some(mut parts)) => {
                    if parts.len() + 4 + len > MAX_RECORD_BYTES {
                        break Err(self.err(format!(
                            "the split record is more than the limit of {MAX_RECORD_BYTES} bytes"
                        )));
                    }
                    parts.extend_from_slice(&MAGIC.to_le_bytes());
                    parts.extend_from_slice(&self.buf[payload_range.clone()]);
                    if cflag == 2 {
                        self.parts = Some(parts);
                        continue;
                    }
                    Some(parts)
                }
                (flag, parts) => {
                    break Err(self.err(format!(
                        "continuation flag {flag} {}",
                        if parts.is_some() {
                            "inside a split record"
                        } else {
                            "without a first part"
                        }
                    )));
                }
            };
            let outcome = match &whole {
                Some(bytes) => self.add_record(&bytes.clone()),
                None => {
                    let bytes = self.buf[payload_range].to_vec();
                    self.add_record(&bytes)
                }
            };
            if let Err(e) = outcome {
                break Err(e);
            }
        };
        self.buf.drain(..pos);
        result
    }

    /// Ends the current object: fails if a frame is cut short; numbers the next object's
    /// records from 1.
    pub fn end_object(&mut self) -> Result<(), RecordError> {
        if !self.buf.is_empty() {
            let reason = if self.buf.len() < 8 {
                format!(
                    "truncated record: {} bytes where an 8-byte header is expected",
                    self.buf.len()
                )
            } else {
                let lrec = u32::from_le_bytes(self.buf[4..8].try_into().expect("4 bytes"));
                let len = (lrec & ((1 << 29) - 1)) as usize;
                format!(
                    "truncated record: {} of {} bytes",
                    self.buf.len() - 8,
                    len.div_ceil(4) * 4
                )
            };
            return Err(self.err(reason));
        }
        if self.parts.is_some() {
            return Err(self.err("truncated record: the last part of a split record is missing"));
        }
        self.records = 0;
        Ok(())
    }

    /// Rows read so far.
    pub fn n_rows(&self) -> usize {
        self.width.map_or(0, |w| self.features.len() / w)
    }

    /// Width of the rows (the first record's), if any was read.
    pub fn width(&self) -> Option<usize> {
        self.width
    }

    /// The features and labels read: `(features row-major, width, labels if has_label)`.
    pub fn into_parts(self) -> (Vec<f32>, usize, Option<Vec<f32>>) {
        let labels = self.has_label.then_some(self.labels);
        (self.features, self.width.unwrap_or(0), labels)
    }

    fn add_record(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let record = Record::decode(bytes)
            .map_err(|e| self.err(format!("not an aialgs.data.Record protobuf: {e}")))?;
        let value = record.features.get("values").ok_or_else(|| {
            let mut names: Vec<_> = record.features.keys().cloned().collect();
            names.sort();
            self.err(if names.is_empty() {
                "the record has no features".to_owned()
            } else {
                format!("no feature tensor 'values' (it has {names:?})")
            })
        })?;
        let start = self.features.len();
        let width = match self.push_row(value) {
            Ok(w) => w,
            Err(reason) => {
                self.features.truncate(start);
                return Err(self.err(format!("features: {reason}")));
            }
        };
        let expected = *self.width.get_or_insert(width);
        if width != expected {
            self.features.truncate(start);
            return Err(self.err(format!(
                "{width} features where earlier records have {expected}"
            )));
        }
        if self.has_label {
            let label = record
                .label
                .get("values")
                .ok_or_else(|| "the record has no label 'values'".to_owned())
                .and_then(scalar);
            match label {
                Ok(v) => self.labels.push(v),
                Err(reason) => {
                    self.features.truncate(start);
                    return Err(self.err(format!("label: {reason}")));
                }
            }
        }
        self.records += 1;
        Ok(())
    }

    /// Appends the row of `value` to `features`; returns its width.
    fn push_row(&mut self, value: &Value) -> Result<usize, String> {
        match &value.value {
            Some(ValueKind::Float32Tensor(t)) => {
                densify(&mut self.features, &t.values, &t.keys, &t.shape, |v| v)
            }
            Some(ValueKind::Float64Tensor(t)) => {
                densify(&mut self.features, &t.values, &t.keys, &t.shape, |v| {
                    v as f32
                })
            }
            Some(ValueKind::Int32Tensor(t)) => {
                densify(&mut self.features, &t.values, &t.keys, &t.shape, |v| {
                    v as f32
                })
            }
            Some(ValueKind::Bytes(_)) => Err("a Bytes value is not numeric".into()),
            None => Err("the value holds no tensor".into()),
        }
    }
}

fn densify<T: Copy>(
    out: &mut Vec<f32>,
    values: &[T],
    keys: &[u64],
    shape: &[u64],
    to_f32: impl Fn(T) -> f32,
) -> Result<usize, String> {
    let size = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_WIDTH);
    if keys.is_empty() {
        if !shape.is_empty() && size != Some(values.len() as u64) {
            return Err(format!(
                "{} values do not fill the shape {shape:?}",
                values.len()
            ));
        }
        if values.is_empty() {
            return Err("no values".into());
        }
        out.extend(values.iter().map(|&v| to_f32(v)));
        return Ok(values.len());
    }
    if shape.is_empty() {
        return Err("a sparse tensor (with keys) needs a shape".into());
    }
    let width = size.ok_or_else(|| {
        format!("the shape {shape:?} is larger than the limit of {MAX_WIDTH} features")
    })? as usize;
    if keys.len() != values.len() {
        return Err(format!("{} keys for {} values", keys.len(), values.len()));
    }
    if width == 0 {
        return Err("the shape is empty".into());
    }
    let start = out.len();
    out.resize(start + width, 0.0);
    for (&k, &v) in keys.iter().zip(values) {
        if k >= width as u64 {
            return Err(format!("key {k} is outside the shape {shape:?}"));
        }
        out[start + k as usize] = to_f32(v);
    }
    Ok(width)
}

fn scalar(value: &Value) -> Result<f32, String> {
    let (n, first) = match &value.value {
        Some(ValueKind::Float32Tensor(t)) => (t.values.len(), t.values.first().copied()),
        Some(ValueKind::Float64Tensor(t)) => (t.values.len(), t.values.first().map(|&v| v as f32)),
        Some(ValueKind::Int32Tensor(t)) => (t.values.len(), t.values.first().map(|&v| v as f32)),
        Some(ValueKind::Bytes(_)) => return Err("a Bytes value is not numeric".into()),
        None => return Err("the value holds no tensor".into()),
    };
    match (n, first) {
        (1, Some(v)) if v.is_finite() => Ok(v),
        (1, Some(v)) => Err(format!("{v} is not finite")),
        (n, _) => Err(format!("{n} values where one is expected")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(features: &[f32], label: Option<f32>) -> Vec<u8> {
        let mut r = Record::default();
        r.features.insert(
            "values".into(),
            Value {
                value: Some(ValueKind::Float32Tensor(Float32Tensor {
                    values: features.to_vec(),
                    keys: vec![],
                    shape: vec![],
                })),
            },
        );
        if let Some(l) = label {
            r.label.insert(
                "values".into(),
                Value {
                    value: Some(ValueKind::Float64Tensor(Float64Tensor {
                        values: vec![l as f64],
                        keys: vec![],
                        shape: vec![],
                    })),
                },
            );
        }
        r.encode_to_vec()
    }

    #[test]
    fn reads_frames_fed_byte_by_byte() {
        let mut data = Vec::new();
        write_frame(&mut data, &dense(&[1.0, 2.0, 3.0], Some(1.0)));
        write_frame(&mut data, &dense(&[4.0, 5.0, 6.0], Some(0.0)));
        let mut r = RecordIoReader::new(true);
        for b in &data {
            r.feed(std::slice::from_ref(b)).unwrap();
        }
        r.end_object().unwrap();
        let (f, w, l) = r.into_parts();
        assert_eq!(
            (f, w, l),
            (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, Some(vec![1.0, 0.0]))
        );
    }

    #[test]
    fn joins_split_records() {
        // A writer splits a record where its payload holds the magic, dropping the magic;
        // the reader puts it back between the parts.
        let magic_value = f32::from_bits(MAGIC);
        let payload = dense(&[1.5, magic_value, 2.5], None);
        let at = payload
            .windows(4)
            .position(|w| w == MAGIC.to_le_bytes())
            .expect("the payload holds the magic");
        let mut data = Vec::new();
        for (flag, part) in [(1u32, &payload[..at]), (3u32, &payload[at + 4..])] {
            data.extend_from_slice(&MAGIC.to_le_bytes());
            data.extend_from_slice(&((flag << 29) | part.len() as u32).to_le_bytes());
            data.extend_from_slice(part);
            data.resize(data.len() + (4 - part.len() % 4) % 4, 0);
        }
        let mut r = RecordIoReader::new(false);
        r.feed(&data).unwrap();
        r.end_object().unwrap();
        let (f, w, _) = r.into_parts();
        assert_eq!(w, 3);
        assert_eq!(f[1].to_bits(), MAGIC);
        assert_eq!((f[0], f[2]), (1.5, 2.5));
    }

    #[test]
    fn names_truncated_and_bad_records() {
        let mut data = Vec::new();
        write_frame(&mut data, &dense(&[1.0, 2.0], None));
        write_frame(&mut data, &dense(&[3.0, 4.0], None));
        let mut r = RecordIoReader::new(false);
        r.feed(&data[..data.len() - 3]).unwrap();
        let e = r.end_object().unwrap_err();
        assert_eq!(e.record, 2);
        assert!(e.reason.starts_with("truncated record:"), "{}", e.reason);

        let mut r = RecordIoReader::new(false);
        let e = r.feed(b"not recordio at all").unwrap_err();
        assert_eq!(e.record, 1);
        assert!(e.reason.starts_with("bad magic 0x20746f6e"), "{}", e.reason);

        let mut data = Vec::new();
        write_frame(&mut data, &dense(&[1.0, 2.0], None));
        let mut r = RecordIoReader::new(true);
        let e = r.feed(&data).unwrap_err();
        assert_eq!(
            e,
            RecordError {
                record: 1,
                reason: "label: the record has no label 'values'".into()
            }
        );
    }

    #[test]
    fn densifies_sparse_keys() {
        let mut r = Record::default();
        r.features.insert(
            "values".into(),
            Value {
                value: Some(ValueKind::Float32Tensor(Float32Tensor {
                    values: vec![5.0, 6.0],
                    keys: vec![0, 3],
                    shape: vec![4],
                })),
            },
        );
        let mut data = Vec::new();
        write_frame(&mut data, &r.encode_to_vec());
        let mut reader = RecordIoReader::new(false);
        reader.feed(&data).unwrap();
        reader.end_object().unwrap();
        assert_eq!(reader.into_parts().0, vec![5.0, 0.0, 0.0, 6.0]);

        let bad = Float32Tensor {
            values: vec![1.0],
            keys: vec![9],
            shape: vec![4],
        };
        let mut out = Vec::new();
        assert_eq!(
            densify(&mut out, &bad.values, &bad.keys, &bad.shape, |v| v),
            Err("key 9 is outside the shape [4]".into())
        );
        assert_eq!(
            densify(&mut out, &[1.0f32], &[0], &[u64::MAX, 2], |v| v),
            Err(
                "the shape [18446744073709551615, 2] is larger than the limit of 16777216 features"
                    .into()
            )
        );
    }
}
