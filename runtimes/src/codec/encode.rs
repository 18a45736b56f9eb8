//! Model outputs to response bodies. JSON is written by hand: `f32` values print in their
//! shortest round-trip form (`0.3`, not `0.30000001192092896`) and NaN/infinity as `null`.

use std::fmt::Write as _;

use super::Format;
use crate::error::{Result, RuntimeError};
use crate::model::JsonLayout;
use crate::tensor::{Tensor, TensorData};

/// Encodes named outputs, one entry per row.
///
/// - JSON: `{"<layout.key>": [row, ...]}`, where a row is the bare value of a single output
///   or an object keyed by output name (always an object if `layout.always_objects`).
/// - JSON Lines: one row per line, as above.
/// - CSV: one line per row; the values of all outputs, flattened, comma-separated.
pub fn encode_outputs(
    format: Format,
    outputs: &[(&str, &Tensor)],
    layout: &JsonLayout,
) -> Result<Vec<u8>> {
    let rows = outputs.first().map_or(0, |(_, t)| t.rows());
    if let Some((name, t)) = outputs
        .iter()
        .find(|(_, t)| t.rows() != rows || t.shape().is_empty())
    {
        return Err(RuntimeError::Predict(format!(
            "output {name:?} has shape {:?}, not {rows} rows like the others",
            t.shape()
        )));
    }
    let mut out = String::with_capacity(rows * 16 * outputs.len().max(1) + 32);
    match format {
        Format::Json => {
            out.push_str("{\"");
            out.push_str(layout.key);
            out.push_str("\":[");
            for r in 0..rows {
                if r > 0 {
                    out.push(',');
                }
                json_row(&mut out, outputs, r, layout);
            }
            out.push_str("]}");
        }
        Format::JsonLines => {
            for r in 0..rows {
                json_row(&mut out, outputs, r, layout);
                out.push('\n');
            }
        }
        Format::Csv => {
            for r in 0..rows {
                let mut first = true;
                for (_, t) in outputs {
                    let n = t.row_len();
                    for i in r * n..(r + 1) * n {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        csv_value(&mut out, t.data(), i);
                    }
                }
                out.push('\n');
            }
        }
    }
    Ok(out.into_bytes())
}

fn json_row(out: &mut String, outputs: &[(&str, &Tensor)], r: usize, layout: &JsonLayout) {
    if outputs.len() == 1 && !layout.always_objects {
        json_tensor_row(out, outputs[0].1, r);
        return;
    }
    out.push('{');
    for (k, (name, t)) in outputs.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        json_string(out, name.as_bytes());
        out.push(':');
        json_tensor_row(out, t, r);
    }
    out.push('}');
}

/// Row `r` of a tensor: a scalar for rank 1, nested arrays for higher ranks.
fn json_tensor_row(out: &mut String, t: &Tensor, r: usize) {
    let dims = &t.shape()[1..];
    let n = t.row_len();
    json_nested(out, t.data(), r * n, dims);
}

fn json_nested(out: &mut String, data: &TensorData, start: usize, dims: &[usize]) {
    let Some((&d, rest)) = dims.split_first() else {
        json_value(out, data, start);
        return;
    };
    let stride: usize = rest.iter().product();
    out.push('[');
    for i in 0..d {
        if i > 0 {
            out.push(',');
        }
        json_nested(out, data, start + i * stride, rest);
    }
    out.push(']');
}

fn json_value(out: &mut String, data: &TensorData, i: usize) {
    match data {
        TensorData::Bool(v) => out.push_str(if v[i] { "true" } else { "false" }),
        TensorData::Fp32(v) => float(out, v[i].is_finite(), v[i]),
        TensorData::Fp64(v) => float(out, v[i].is_finite(), v[i]),
        TensorData::Bytes(v) => json_string(out, &v[i]),
        other => {
            let _ = write!(out, "{}", other.get_f64(i).unwrap_or(0.0) as i64);
        }
    }
}

fn float(out: &mut String, finite: bool, v: impl std::fmt::Display) {
    if finite {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

fn json_string(out: &mut String, bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    out.push_str(&serde_json::to_string(&*s).expect("strings serialize"));
}

fn csv_value(out: &mut String, data: &TensorData, i: usize) {
    match data {
        TensorData::Bool(v) => out.push_str(if v[i] { "1" } else { "0" }),
        TensorData::Fp32(v) => float_csv(out, v[i].is_finite(), v[i]),
        TensorData::Fp64(v) => float_csv(out, v[i].is_finite(), v[i]),
        TensorData::Bytes(v) => {
            let s = String::from_utf8_lossy(&v[i]);
            if s.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(&s);
            }
        }
        other => {
            let _ = write!(out, "{}", other.get_f64(i).unwrap_or(0.0) as i64);
        }
    }
}

fn float_csv(out: &mut String, finite: bool, v: impl std::fmt::Display) {
    if finite {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("nan");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::new(shape, data).unwrap()
    }

    #[test]
    fn single_output_rows_are_bare() {
        let p = t(vec![2, 2], TensorData::Fp32(vec![0.1, 0.9, 0.3, f32::NAN]));
        let json = encode_outputs(Format::Json, &[("p", &p)], &JsonLayout::default()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"predictions":[[0.1,0.9],[0.3,null]]}"#
        );
        let csv = encode_outputs(Format::Csv, &[("p", &p)], &JsonLayout::default()).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "0.1,0.9\n0.3,nan\n");
    }

    #[test]
    fn several_outputs_make_objects() {
        let label = t(vec![2], TensorData::Int64(vec![1, 0]));
        let score = t(vec![2], TensorData::Fp32(vec![0.75, 0.25]));
        let outs = [("predicted_label", &label), ("score", &score)];
        let json = encode_outputs(Format::Json, &outs, &JsonLayout::default()).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"predictions":[{"predicted_label":1,"score":0.75},{"predicted_label":0,"score":0.25}]}"#
        );
        let lines = encode_outputs(Format::JsonLines, &outs, &JsonLayout::default()).unwrap();
        assert_eq!(String::from_utf8(lines).unwrap().lines().count(), 2);
        let csv = encode_outputs(Format::Csv, &outs, &JsonLayout::default()).unwrap();
        assert_eq!(String::from_utf8(csv).unwrap(), "1,0.75\n0,0.25\n");
    }

    #[test]
    fn layout_key_and_forced_objects() {
        let p = t(vec![1, 2], TensorData::Fp64(vec![1.5, -2.0]));
        let layout = JsonLayout {
            key: "projections",
            always_objects: true,
        };
        let json = encode_outputs(Format::Json, &[("projection", &p)], &layout).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"projections":[{"projection":[1.5,-2]}]}"#
        );
    }

    #[test]
    fn mismatched_rows_are_an_error() {
        let a = t(vec![2], TensorData::Int64(vec![1, 0]));
        let b = t(vec![1], TensorData::Int64(vec![1]));
        assert!(
            encode_outputs(
                Format::Json,
                &[("a", &a), ("b", &b)],
                &JsonLayout::default()
            )
            .is_err()
        );
    }
}
