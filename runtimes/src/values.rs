//! The one missing / non-finite value policy, applied to every decoded request before it is
//! queued for prediction, whatever the codec (CSV, JSON, JSON Lines, v2 JSON, v2 binary,
//! gRPC typed or raw contents):
//!
//! - a missing value (an empty CSV field, a JSON `null`, a NaN) is accepted only where the
//!   model takes missing values ([`Model::accepts_missing`]: native tree ensembles, ONNX
//!   graphs with tree-ensemble operators), and refused elsewhere;
//! - `±inf`, which is also what an out-of-range number such as `1e400` becomes as `FP32`, is
//!   always refused.
//!
//! Refusals are [`RuntimeError::InvalidInput`] naming the input, the 1-based row (first
//! dimension) and the 1-based column (position within the row), so a client can find the
//! value. Only `FP32` and `FP64` tensors can hold such values; others pass untouched.
//!
//! Cost: one branch-free pass over each float input in blocks (vectorisable), and a second,
//! scalar pass only to locate the first bad value of a request that is refused anyway.
//! Pure functions, no shared state.

use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::tensor::{Tensor, TensorData};

/// Elements checked per block: a block is scanned without early exit, so the compiler can
/// vectorise it; blocks stop at the first one with a bad value.
const BLOCK: usize = 256;

/// What is wrong with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    Missing,
    Infinite,
}

/// A float element type the policy applies to.
trait Float: Copy {
    fn is_nan(self) -> bool;
    fn is_infinite(self) -> bool;
    fn is_finite(self) -> bool;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn is_infinite(self) -> bool {
                <$t>::is_infinite(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
        }
    };
}
float!(f32);
float!(f64);

/// The first value the policy refuses, with its index.
fn first_bad<T: Float>(values: &[T], missing_ok: bool) -> Option<(usize, Bad)> {
    for (b, block) in values.chunks(BLOCK).enumerate() {
        let any_bad = if missing_ok {
            block.iter().fold(false, |acc, &x| acc | x.is_infinite())
        } else {
            block.iter().fold(false, |acc, &x| acc | !x.is_finite())
        };
        if any_bad {
            return block.iter().enumerate().find_map(|(i, &x)| {
                let kind = if x.is_infinite() {
                    Bad::Infinite
                } else if x.is_nan() && !missing_ok {
                    Bad::Missing
                } else {
                    return None;
                };
                Some((b * BLOCK + i, kind))
            });
        }
    }
    None
}

/// Refuses the values of `tensor` (input `name`) that the policy refuses; `missing_ok` says
/// whether the model takes missing values.
pub fn check_values(name: &str, tensor: &Tensor, missing_ok: bool) -> Result<()> {
    let (found, dtype) = match tensor.data() {
        TensorData::Fp32(v) => (first_bad(v, missing_ok), "FP32"),
        TensorData::Fp64(v) => (first_bad(v, missing_ok), "FP64"),
        _ => return Ok(()),
    };
    let Some((index, bad)) = found else {
        return Ok(());
    };
    let row_len = tensor.row_len().max(1);
    let (row, column) = (index / row_len + 1, index % row_len + 1);
    let what = match bad {
        Bad::Missing => "is missing (an empty field, null or NaN), and this model does not take missing values (only tree ensembles do)".to_owned(),
        Bad::Infinite => format!("is not a finite number (inf, or out of the {dtype} range)"),
    };
    Err(RuntimeError::InvalidInput(format!(
        "input {name:?}, row {row}, column {column}: the value {what}"
    )))
}

/// Applies [`check_values`] to a model's inputs, given in signature order.
pub fn check_inputs(model: &dyn Model, inputs: &[Tensor]) -> Result<()> {
    let missing_ok = model.accepts_missing();
    for (spec, tensor) in model.signature().inputs.iter().zip(inputs) {
        check_values(&spec.name, tensor, missing_ok)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp32(rows: usize, cols: usize, v: Vec<f32>) -> Tensor {
        Tensor::from_f32_rows(rows, cols, v).unwrap()
    }

    #[test]
    fn finite_values_pass_either_way() {
        let t = fp32(2, 2, vec![1.0, -2.0, 0.0, f32::MAX]);
        assert!(check_values("x", &t, false).is_ok());
        assert!(check_values("x", &t, true).is_ok());
        let ints = Tensor::new(vec![2], TensorData::Int64(vec![1, 2])).unwrap();
        assert!(check_values("x", &ints, false).is_ok());
    }

    #[test]
    fn missing_values_depend_on_the_model() {
        let t = fp32(2, 3, vec![1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0]);
        assert!(check_values("x", &t, true).is_ok());
        let err = check_values("x", &t, false).unwrap_err().to_string();
        assert!(
            err.starts_with("input \"x\", row 2, column 2: the value is missing"),
            "{err}"
        );
    }

    #[test]
    fn infinities_are_always_refused_and_located() {
        // Past the first block, to check the index arithmetic.
        let mut v = vec![0.0f64; 3 * 200];
        v[2 * 200 + 7] = f64::NEG_INFINITY;
        v[10] = f64::NAN;
        let t = Tensor::new(vec![3, 200], TensorData::Fp64(v)).unwrap();
        let err = check_values("x", &t, true).unwrap_err().to_string();
        assert!(
            err.contains("row 3, column 8") && err.contains("not a finite number"),
            "{err}"
        );
        // Without missing values, the NaN comes first.
        let err = check_values("x", &t, false).unwrap_err().to_string();
        assert!(
            err.contains("row 1, column 11: the value is missing"),
            "{err}"
        );
        let one = Tensor::new(vec![3], TensorData::Fp32(vec![0.0, 1.0, f32::INFINITY])).unwrap();
        let err = check_values("y", &one, false).unwrap_err().to_string();
        assert!(
            err.contains("row 3, column 1") && err.contains("FP32"),
            "{err}"
        );
    }

    /// Every SageMaker codec's way of writing a missing and a non-finite value meets the
    /// same policy, with the same row and column.
    #[test]
    fn every_codec_meets_the_policy() {
        use crate::codec::{Format, decode_features};
        let check = |format, body: &str, missing_ok| {
            let t = decode_features(format, body.as_bytes(), Some(3)).unwrap();
            check_values("features", &t, missing_ok).map_err(|e| e.to_string())
        };
        let missing = [
            (Format::Csv, "1,2,3\n4,,6\n"),
            (Format::Csv, "1,2,3\n4,NaN,6\n"),
            (Format::Json, r#"{"instances": [[1, 2, 3], [4, null, 6]]}"#),
            (
                Format::JsonLines,
                "[1, 2, 3]\n{\"features\": [4, null, 6]}\n",
            ),
        ];
        for (format, body) in missing {
            assert!(check(format, body, true).is_ok(), "{format} {body:?}");
            let err = check(format, body, false).unwrap_err();
            assert!(
                err.contains("row 2, column 2: the value is missing"),
                "{err}"
            );
        }
        let err = check(Format::Csv, ",,\n", false).unwrap_err();
        assert!(err.contains("row 1, column 1"), "{err}");
        let infinite = [
            (Format::Csv, "1,2,3\n4,inf,6\n"),
            (Format::Csv, "1,2,3\n4,-Infinity,6\n"),
            (Format::Csv, "1,2,3\n4,1e400,6\n"),
            (Format::Json, "[[1, 2, 3], [4, 1e39, 6]]"),
            (Format::JsonLines, "[1, 2, 3]\n[4, -1e39, 6]\n"),
        ];
        for (format, body) in infinite {
            for missing_ok in [false, true] {
                let err = check(format, body, missing_ok).unwrap_err();
                assert!(
                    err.contains("row 2, column 2: the value is not a finite number"),
                    "{format} {body:?}: {err}"
                );
            }
        }
    }
}
