//! Request payloads, built once before the run and shared as [`Bytes`] (a clone per request is
//! a reference-count increment).
//!
//! A v2 payload is a list of [`InputTensor`]s, read from a v2 JSON infer request file or
//! generated from the model's metadata (`-1` dimensions become `rows`, values are random), and
//! encoded for each protocol: v2 JSON, the binary tensor extension, or a gRPC
//! `ModelInferRequest` with `raw_input_contents`. A SageMaker payload is a body as is.

use bytes::Bytes;
use pier_proto::inference::{ModelInferRequest, model_infer_request::InferInputTensor};
use prost::Message;
use serde_json::{Value, json};

use crate::error::{LoadtestError, Result};

/// A model input as the v2 metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Input name.
    pub name: String,
    /// v2 datatype (`FP32`, `INT64`, `BYTES`, ...).
    pub datatype: String,
    /// Shape; `-1` is a variable dimension.
    pub shape: Vec<i64>,
}

/// Element values of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Every numeric datatype and BOOL (0 or 1).
    Numbers(Vec<f64>),
    /// BYTES elements.
    Bytes(Vec<Vec<u8>>),
}

/// One input tensor of a v2 request.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    /// Input name.
    pub name: String,
    /// v2 datatype.
    pub datatype: String,
    /// Concrete shape.
    pub shape: Vec<u64>,
    /// Row-major values.
    pub values: Values,
}

/// Bytes per element of a fixed-size datatype; `None` for BYTES or an unknown name.
fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" | "FP16" | "BF16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

fn check_datatype(name: &str, datatype: &str) -> Result<()> {
    if datatype == "BYTES" || element_size(datatype).is_some() {
        Ok(())
    } else {
        Err(LoadtestError::Payload(format!(
            "input {name}: unknown datatype {datatype}"
        )))
    }
}

/// Random inputs for `specs`: each `-1` dimension becomes `rows`; floats uniform in [0, 1),
/// integers in [0, 10), BOOL 0 or 1, BYTES 8 random letters.
pub fn generate(specs: &[TensorSpec], rows: u64, seed: u64) -> Result<Vec<InputTensor>> {
    if specs.is_empty() {
        return Err(LoadtestError::Payload(
            "the model's metadata lists no inputs".into(),
        ));
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    specs
        .iter()
        .map(|spec| {
            check_datatype(&spec.name, &spec.datatype)?;
            let mut shape = Vec::with_capacity(spec.shape.len());
            for &d in &spec.shape {
                shape.push(match d {
                    -1 => rows,
                    d if d >= 0 => d as u64,
                    d => {
                        return Err(LoadtestError::Payload(format!(
                            "input {}: dimension {d} is neither -1 nor a size",
                            spec.name
                        )));
                    }
                });
            }
            let count = shape.iter().product::<u64>() as usize;
            let values = match spec.datatype.as_str() {
                "BYTES" => Values::Bytes(
                    (0..count)
                        .map(|_| (0..8).map(|_| rng.alphabetic() as u8).collect())
                        .collect(),
                ),
                "BOOL" => Values::Numbers((0..count).map(|_| f64::from(rng.u8(0..2))).collect()),
                "FP16" | "BF16" | "FP32" | "FP64" => {
                    // Values exactly representable in FP32, so JSON and binary carry the same.
                    Values::Numbers((0..count).map(|_| f64::from(rng.f32())).collect())
                }
                _ => Values::Numbers((0..count).map(|_| f64::from(rng.u8(0..10))).collect()),
            };
            Ok(InputTensor {
                name: spec.name.clone(),
                datatype: spec.datatype.clone(),
                shape,
                values,
            })
        })
        .collect()
}

/// Reads a v2 JSON infer request (`{"inputs": [{"name", "datatype", "shape", "data"}]}`; `data`
/// may be nested) as the inputs to send with every protocol.
pub fn parse_v2_json(text: &str) -> Result<Vec<InputTensor>> {
    let bad = |m: String| LoadtestError::Payload(m);
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let inputs = doc["inputs"]
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("a v2 request needs a non-empty \"inputs\" array".into()))?;
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let name = input["name"]
                .as_str()
                .ok_or_else(|| bad(format!("inputs[{i}] has no \"name\"")))?
                .to_owned();
            let datatype = input["datatype"]
                .as_str()
                .ok_or_else(|| bad(format!("input {name} has no \"datatype\"")))?
                .to_owned();
            check_datatype(&name, &datatype)?;
            let shape: Vec<u64> = input["shape"]
                .as_array()
                .ok_or_else(|| bad(format!("input {name} has no \"shape\"")))?
                .iter()
                .map(Value::as_u64)
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("input {name}: shape must be sizes")))?;
            let mut flat = Vec::new();
            flatten(&input["data"], &mut flat);
            let count = shape.iter().product::<u64>() as usize;
            if flat.len() != count {
                return Err(bad(format!(
                    "input {name}: shape {shape:?} holds {count} elements, data has {}",
                    flat.len()
                )));
            }
            let values = if datatype == "BYTES" {
                Values::Bytes(
                    flat.iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s.as_bytes().to_vec()),
                            _ => Err(bad(format!("input {name}: BYTES data must be strings"))),
                        })
                        .collect::<Result<_>>()?,
                )
            } else {
                Values::Numbers(
                    flat.iter()
                        .map(|v| match v {
                            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
                            Value::Number(n) => n
                                .as_f64()
                                .ok_or_else(|| bad(format!("input {name}: bad number {n}"))),
                            _ => Err(bad(format!("input {name}: data must be numbers"))),
                        })
                        .collect::<Result<_>>()?,
                )
            };
            Ok(InputTensor {
                name,
                datatype,
                shape,
                values,
            })
        })
        .collect()
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Null => {}
        other => out.push(other),
    }
}

/// Rows of a request: the first dimension of the first input (1 for a scalar).
pub fn rows_of(inputs: &[InputTensor]) -> u64 {
    inputs
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1)
}

fn json_data(t: &InputTensor) -> Value {
    match &t.values {
        Values::Bytes(items) => items
            .iter()
            .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
            .collect(),
        Values::Numbers(ns) => match t.datatype.as_str() {
            "BOOL" => ns.iter().map(|&n| Value::Bool(n != 0.0)).collect(),
            "FP16" | "BF16" | "FP32" => ns.iter().map(|&n| json!(n as f32)).collect(),
            "FP64" => ns.iter().map(|&n| json!(n)).collect(),
            "UINT8" | "UINT16" | "UINT32" | "UINT64" => {
                ns.iter().map(|&n| json!(n as u64)).collect()
            }
            _ => ns.iter().map(|&n| json!(n as i64)).collect(),
        },
    }
}

/// The v2 JSON body (`data` inline, outputs as JSON).
pub fn v2_json_body(inputs: &[InputTensor]) -> Bytes {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": json_data(t)}))
        .collect();
    Bytes::from(json!({ "inputs": inputs }).to_string())
}

/// The binary tensor extension body and its JSON header length (the
/// `Inference-Header-Content-Length` value). Outputs are asked for as binary too, as
/// perf_analyzer and tritonclient do by default.
pub fn v2_binary_body(inputs: &[InputTensor]) -> (Bytes, usize) {
    let raws: Vec<Vec<u8>> = inputs.iter().map(raw_bytes).collect();
    let header: Vec<Value> = inputs
        .iter()
        .zip(&raws)
        .map(|(t, raw)| {
            json!({"name": t.name, "datatype": t.datatype, "shape": t.shape,
                   "parameters": {"binary_data_size": raw.len()}})
        })
        .collect();
    let header = json!({"inputs": header, "parameters": {"binary_data_output": true}}).to_string();
    let mut body = header.clone().into_bytes();
    raws.iter().for_each(|r| body.extend_from_slice(r));
    (Bytes::from(body), header.len())
}

/// The encoded gRPC `ModelInferRequest` (inputs in `raw_input_contents`), ready to send as is.
pub fn grpc_request(inputs: &[InputTensor], model: &str, version: Option<&str>) -> Bytes {
    let request = ModelInferRequest {
        model_name: model.to_owned(),
        model_version: version.unwrap_or_default().to_owned(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name.clone(),
                datatype: t.datatype.clone(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(raw_bytes).collect(),
        ..Default::default()
    };
    Bytes::from(request.encode_to_vec())
}

/// Little-endian raw contents, BYTES elements each prefixed by a 4-byte length (the v2 rule).
pub fn raw_bytes(t: &InputTensor) -> Vec<u8> {
    let mut out = Vec::new();
    match &t.values {
        Values::Bytes(items) => {
            for b in items {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
        Values::Numbers(ns) => {
            for &n in ns {
                match t.datatype.as_str() {
                    "BOOL" | "UINT8" => out.push(n as u8),
                    "INT8" => out.push(n as i8 as u8),
                    "UINT16" => out.extend_from_slice(&(n as u16).to_le_bytes()),
                    "INT16" => out.extend_from_slice(&(n as i16).to_le_bytes()),
                    "UINT32" => out.extend_from_slice(&(n as u32).to_le_bytes()),
                    "INT32" => out.extend_from_slice(&(n as i32).to_le_bytes()),
                    "UINT64" => out.extend_from_slice(&(n as u64).to_le_bytes()),
                    "INT64" => out.extend_from_slice(&(n as i64).to_le_bytes()),
                    "FP16" => out.extend_from_slice(&f32_to_f16(n as f32).to_le_bytes()),
                    "BF16" => {
                        out.extend_from_slice(&(((n as f32).to_bits() >> 16) as u16).to_le_bytes())
                    }
                    "FP32" => out.extend_from_slice(&(n as f32).to_le_bytes()),
                    _ => out.extend_from_slice(&n.to_le_bytes()),
                }
            }
        }
    }
    out
}

/// IEEE half precision bits of `x` (round toward zero; overflow to infinity).
fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        sign | 0x7c00
    } else if e <= 0 {
        if e < -10 {
            sign
        } else {
            let m = mant | 0x80_0000;
            sign | (m >> (14 - e)) as u16
        }
    } else {
        sign | ((e as u16) << 10) | (mant >> 13) as u16
    }
}

/// A SageMaker `text/csv` body: `rows` lines of `features` random values in [0, 1).
pub fn csv_body(rows: u64, features: usize, seed: u64) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::new();
    for _ in 0..rows {
        let line: Vec<String> = (0..features).map(|_| format!("{:.4}", rng.f32())).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    Bytes::from(out)
}

/// Input specs from a v2 REST metadata document (`GET /v2/models/{m}`).
pub fn specs_from_metadata_json(doc: &Value) -> Result<Vec<TensorSpec>> {
    let inputs = doc["inputs"].as_array().ok_or_else(|| {
        LoadtestError::Payload("the model's metadata has no \"inputs\" array".into())
    })?;
    inputs
        .iter()
        .map(|i| {
            let shape = i["shape"]
                .as_array()
                .and_then(|s| s.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>());
            match (i["name"].as_str(), i["datatype"].as_str(), shape) {
                (Some(name), Some(datatype), Some(shape)) => Ok(TensorSpec {
                    name: name.to_owned(),
                    datatype: datatype.to_owned(),
                    shape,
                }),
                _ => Err(LoadtestError::Payload(format!(
                    "metadata input {i} lacks name, datatype or shape"
                ))),
            }
        })
        .collect()
}

/// Number of features per row of the first input (its elements past the first dimension),
/// for a generated SageMaker CSV body.
pub fn features_per_row(specs: &[TensorSpec]) -> Result<usize> {
    let first = specs
        .first()
        .ok_or_else(|| LoadtestError::Payload("the model's metadata lists no inputs".into()))?;
    let rest: i64 = first.shape.iter().skip(1).product();
    if rest <= 0 {
        return Err(LoadtestError::Payload(format!(
            "input {} has shape {:?}: give --features",
            first.name, first.shape
        )));
    }
    Ok(rest as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris() -> Vec<TensorSpec> {
        vec![TensorSpec {
            name: "X".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 4],
        }]
    }

    #[test]
    fn generation_follows_the_metadata_and_rows() {
        let inputs = generate(&iris(), 3, 7).unwrap();
        assert_eq!(inputs[0].shape, vec![3, 4]);
        let Values::Numbers(ns) = &inputs[0].values else {
            panic!()
        };
        assert_eq!(ns.len(), 12);
        assert!(ns.iter().all(|&n| (0.0..1.0).contains(&n)));
        assert_eq!(rows_of(&inputs), 3);
        assert_eq!(generate(&iris(), 3, 7).unwrap(), inputs, "seeded");
        let specs = vec![
            TensorSpec {
                name: "ids".into(),
                datatype: "INT64".into(),
                shape: vec![-1],
            },
            TensorSpec {
                name: "s".into(),
                datatype: "BYTES".into(),
                shape: vec![2],
            },
        ];
        let g = generate(&specs, 5, 1).unwrap();
        assert_eq!(raw_bytes(&g[0]).len(), 5 * 8);
        assert_eq!(raw_bytes(&g[1]).len(), 2 * (4 + 8));
        let bad = vec![TensorSpec {
            name: "x".into(),
            datatype: "FP8".into(),
            shape: vec![1],
        }];
        assert!(
            generate(&bad, 1, 1)
                .unwrap_err()
                .to_string()
                .contains("FP8")
        );
        assert!(generate(&[], 1, 1).is_err());
    }

    #[test]
    fn metadata_json_gives_specs_and_features() {
        let doc = json!({"name": "demo", "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]});
        let specs = specs_from_metadata_json(&doc).unwrap();
        assert_eq!(specs, iris());
        assert_eq!(features_per_row(&specs).unwrap(), 4);
        assert!(specs_from_metadata_json(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn a_json_file_encodes_the_same_values_for_every_protocol() {
        let text = r#"{"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 2], "data": [[1.5, 2], [3, 4]]}]}"#;
        let inputs = parse_v2_json(text).unwrap();
        assert_eq!(inputs[0].shape, vec![2, 2]);
        let json: Value = serde_json::from_slice(&v2_json_body(&inputs)).unwrap();
        assert_eq!(json["inputs"][0]["data"], json!([1.5, 2.0, 3.0, 4.0]));
        let (body, header_len) = v2_binary_body(&inputs);
        let header: Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 16);
        assert_eq!(&body[header_len..header_len + 4], &1.5f32.to_le_bytes());
        let grpc = ModelInferRequest::decode(grpc_request(&inputs, "m", Some("2"))).unwrap();
        assert_eq!(grpc.model_version, "2");
        assert_eq!(grpc.raw_input_contents[0].len(), 16);
        assert!(
            parse_v2_json(
                r#"{"inputs": [{"name": "X", "datatype": "FP32", "shape": [3], "data": [1]}]}"#
            )
            .unwrap_err()
            .to_string()
            .contains("holds 3 elements")
        );
        assert!(parse_v2_json("[]").is_err());
    }

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(0.5), 0x3800);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(1e9), 0x7c00);
        assert_eq!(f32_to_f16(0.0), 0);
    }

    #[test]
    fn csv_body_has_rows_of_features() {
        let body = csv_body(3, 4, 1);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().all(|l| l.split(',').count() == 4));
    }
}
