//! The cheap operators scikit-learn and onnxmltools exports put around a model, run
//! natively: `Identity`, `Cast`, `Mul`/`Add`/`Sub`/`Div` by a one-value constant and
//! `ZipMap` (class probabilities as one JSON object a row, `BYTES`, as the ort backend
//! serves its sequence of maps) after it, and a `Scaler` before it.
//!
//! Each step reads one named value and writes one; all are pure functions of their input.

use std::collections::HashMap;

use tract_onnx::pb;

use super::trees::ClassLabels;
use crate::error::{Result, RuntimeError};
use crate::tensor::{DataType, Tensor, TensorData};

/// One native operator.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Passes its input through.
    Identity,
    /// Converts numbers to another numeric type (`BYTES` only to `BYTES`).
    Cast(DataType),
    /// Class probabilities `[N, K]` to one JSON object a row, keys ordered as
    /// onnxruntime's map orders them (ascending).
    ZipMap {
        /// `(key as JSON, column)` in key order.
        keys: Vec<(String, usize)>,
    },
    /// `Mul`, `Add`, `Sub` or `Div` of `FP32` values and a one-value `FP32` constant
    /// (onnxmltools multiplies LightGBM probabilities by 1).
    Arith {
        /// The operator.
        kind: Arith,
        /// The constant.
        constant: f32,
        /// The constant is the first operand.
        constant_first: bool,
    },
    /// `ai.onnx.ml.Scaler`: `(x - offset) * scale`, per column or broadcast.
    Scaler {
        /// Subtracted first.
        offset: Vec<f32>,
        /// Then multiplied.
        scale: Vec<f32>,
    },
}

/// The arithmetic [`Op::Arith`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    /// `a * b`.
    Mul,
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a / b`.
    Div,
}

impl Arith {
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Arith::Mul => a * b,
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Div => a / b,
        }
    }
}

/// The value of a one-element `FP32` initializer.
pub fn scalar_constant(t: &pb::TensorProto) -> Option<f32> {
    if t.data_type != 1 || t.dims.iter().product::<i64>() != 1 {
        return None;
    }
    if let Some(&v) = t.float_data.first() {
        return Some(v);
    }
    let bytes: [u8; 4] = t.raw_data.get(..4)?.try_into().ok()?;
    Some(f32::from_le_bytes(bytes))
}

/// A native operator with its input and output names.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The operator.
    pub op: Op,
    /// Value read.
    pub input: String,
    /// Value written.
    pub output: String,
}

impl Step {
    /// The step for `node`, if it is one this module runs (one input, one output;
    /// `constant` gives the value of a one-element `FP32` initializer by name).
    pub fn from_node(node: &pb::NodeProto, constant: &dyn Fn(&str) -> Option<f32>) -> Option<Step> {
        if node.output.len() != 1 || node.input.first().is_none_or(|i| i.is_empty()) {
            return None;
        }
        if node.input.len() == 2 && matches!(node.domain.as_str(), "" | "ai.onnx") {
            let kind = match node.op_type.as_str() {
                "Mul" => Arith::Mul,
                "Add" => Arith::Add,
                "Sub" => Arith::Sub,
                "Div" => Arith::Div,
                _ => return None,
            };
            let (input, constant, constant_first) =
                match (constant(&node.input[0]), constant(&node.input[1])) {
                    (None, Some(c)) => (&node.input[0], c, false),
                    (Some(c), None) => (&node.input[1], c, true),
                    _ => return None,
                };
            return Some(Step {
                op: Op::Arith {
                    kind,
                    constant,
                    constant_first,
                },
                input: input.clone(),
                output: node.output[0].clone(),
            });
        }
        if node.input.len() != 1 {
            return None;
        }
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
        let op = match (node.domain.as_str(), node.op_type.as_str()) {
            ("" | "ai.onnx", "Identity") => Op::Identity,
            ("" | "ai.onnx", "Cast") => Op::Cast(match attr("to")?.i {
                1 => DataType::Fp32,
                6 => DataType::Int32,
                7 => DataType::Int64,
                8 => DataType::Bytes,
                11 => DataType::Fp64,
                _ => return None,
            }),
            ("ai.onnx.ml", "ZipMap") => {
                let labels = match (attr("classlabels_int64s"), attr("classlabels_strings")) {
                    (Some(a), None) if !a.ints.is_empty() => ClassLabels::Int(a.ints.clone()),
                    (None, Some(a)) if !a.strings.is_empty() => ClassLabels::Strings(
                        a.strings
                            .iter()
                            .map(|s| String::from_utf8(s.clone()).ok())
                            .collect::<Option<_>>()?,
                    ),
                    _ => return None,
                };
                Op::ZipMap {
                    keys: zipmap_keys(&labels)?,
                }
            }
            ("ai.onnx.ml", "Scaler") => {
                let offset = attr("offset").map(|a| a.floats.clone()).unwrap_or_default();
                let scale = attr("scale").map(|a| a.floats.clone()).unwrap_or_default();
                if offset.is_empty() || scale.is_empty() {
                    return None;
                }
                Op::Scaler { offset, scale }
            }
            _ => return None,
        };
        Some(Step {
            op,
            input: node.input[0].clone(),
            output: node.output[0].clone(),
        })
    }

    /// True for the operators that may follow a model (not `Scaler`).
    pub fn is_tail(&self) -> bool {
        !matches!(self.op, Op::Scaler { .. })
    }

    /// Runs the step over `values`, adding its output.
    pub fn run(&self, values: &mut HashMap<String, Tensor>) -> Result<()> {
        let input = values.get(&self.input).ok_or_else(|| {
            RuntimeError::Predict(format!("value {:?} was not computed", self.input))
        })?;
        let out = match &self.op {
            Op::Identity => input.clone(),
            Op::Cast(to) => input
                .clone()
                .cast(*to)
                .map_err(|e| RuntimeError::Predict(format!("Cast of {:?}: {e}", self.input)))?,
            Op::ZipMap { keys } => zipmap(input, keys)?,
            Op::Scaler { offset, scale } => scaler(input, offset, scale)?,
            Op::Arith {
                kind,
                constant,
                constant_first,
            } => {
                let Some(x) = input.as_f32() else {
                    return Err(RuntimeError::Predict(format!(
                        "{kind:?} of {:?}: FP32 expected, got {}",
                        self.input,
                        input.dtype()
                    )));
                };
                let c = *constant;
                let y = x
                    .iter()
                    .map(|&v| {
                        if *constant_first {
                            kind.apply(c, v)
                        } else {
                            kind.apply(v, c)
                        }
                    })
                    .collect();
                Tensor::new(input.shape().to_vec(), TensorData::Fp32(y))?
            }
        };
        values.insert(self.output.clone(), out);
        Ok(())
    }
}

/// Keys as JSON strings with their columns, sorted as onnxruntime's `std::map` sorts them.
fn zipmap_keys(labels: &ClassLabels) -> Option<Vec<(String, usize)>> {
    let mut keys: Vec<(String, usize)> = match labels {
        ClassLabels::Int(v) => {
            let mut order: Vec<(i64, usize)> = v.iter().copied().zip(0..).collect();
            order.sort();
            order
                .into_iter()
                .map(|(k, i)| (serde_json::Value::String(k.to_string()).to_string(), i))
                .collect()
        }
        ClassLabels::Strings(v) => {
            let mut order: Vec<(&String, usize)> = v.iter().zip(0..).collect();
            order.sort();
            order
                .into_iter()
                .map(|(k, i)| (serde_json::Value::String(k.clone()).to_string(), i))
                .collect()
        }
    };
    let before = keys.len();
    keys.dedup_by(|a, b| a.0 == b.0);
    // Duplicate labels: which value a map keeps is onnxruntime's detail; not run natively.
    (keys.len() == before).then_some(keys)
}

fn zipmap(input: &Tensor, keys: &[(String, usize)]) -> Result<Tensor> {
    let Some(probs) = input.as_f32() else {
        return Err(RuntimeError::Predict(format!(
            "ZipMap takes FP32 probabilities, got {}",
            input.dtype()
        )));
    };
    let k = keys.len();
    let rows = if input.shape().len() == 1 {
        1
    } else {
        input.rows()
    };
    if probs.len() != rows * k {
        return Err(RuntimeError::Predict(format!(
            "ZipMap has {k} labels but its input has shape {:?}",
            input.shape()
        )));
    }
    let objects = probs
        .chunks_exact(k.max(1))
        .map(|row| {
            let mut s = String::with_capacity(2 + k * 24);
            s.push('{');
            for (j, (key, col)) in keys.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                s.push_str(key);
                s.push(':');
                // What the ort backend writes: the f32 widened to f64, shortest form.
                match serde_json::Number::from_f64(f64::from(row[*col])) {
                    Some(n) => s.push_str(&n.to_string()),
                    None => s.push_str("null"),
                }
            }
            s.push('}');
            s.into_bytes()
        })
        .collect();
    Tensor::new(vec![rows], TensorData::Bytes(objects))
}

fn scaler(input: &Tensor, offset: &[f32], scale: &[f32]) -> Result<Tensor> {
    let Some(x) = input.as_f32() else {
        return Err(RuntimeError::Predict(format!(
            "Scaler takes FP32 here, got {}",
            input.dtype()
        )));
    };
    let width = input.row_len().max(1);
    let fits = |v: &[f32]| v.len() == 1 || v.len() == width;
    if !fits(offset) || !fits(scale) {
        return Err(RuntimeError::InvalidInput(format!(
            "Scaler has {} offsets and {} scales for rows of {width} values",
            offset.len(),
            scale.len()
        )));
    }
    let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % width;
            (v - pick(offset, c)) * pick(scale, c)
        })
        .collect();
    Tensor::new(input.shape().to_vec(), TensorData::Fp32(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipmap_writes_sorted_keys_and_ort_number_format() {
        let keys = zipmap_keys(&ClassLabels::Int(vec![10, 2])).unwrap();
        assert_eq!(
            keys,
            vec![("\"2\"".to_string(), 1), ("\"10\"".to_string(), 0)]
        );
        let t = Tensor::from_f32_rows(2, 2, vec![0.25, 0.75, 0.1, f32::NAN]).unwrap();
        let out = zipmap(&t, &keys).unwrap();
        let TensorData::Bytes(rows) = out.data() else {
            panic!()
        };
        assert_eq!(rows[0], br#"{"2":0.75,"10":0.25}"#);
        assert_eq!(rows[1], br#"{"2":null,"10":0.10000000149011612}"#);
        assert!(zipmap_keys(&ClassLabels::Strings(vec!["a".into(), "a".into()])).is_none());
    }

    #[test]
    fn scaler_broadcasts_and_refuses_bad_widths() {
        let t = Tensor::from_f32_rows(1, 2, vec![3.0, 5.0]).unwrap();
        let out = scaler(&t, &[1.0], &[2.0, 0.5]).unwrap();
        assert_eq!(out.as_f32().unwrap(), [4.0, 2.0]);
        assert!(scaler(&t, &[1.0, 2.0, 3.0], &[1.0]).is_err());
    }
}
