//! Small dense networks run natively: a graph that is a chain of fully connected layers
//! (`MatMul` + `Add`, or `Gemm`) with element-wise activations (`Relu`, `LeakyRelu`,
//! `Sigmoid`, `Tanh`) and an optional final `Softmax` — what PyTorch, Keras and scikit-learn's
//! `MLPClassifier` / `MLPRegressor` export for a multilayer perceptron — and, for
//! skl2onnx's classifiers, the label branch after it (`ArgMax` → `ArrayFeatureExtractor` of
//! integer classes → `Reshape` to one column → `Cast`).
//!
//! Why: tract's plan costs about 40,000 instructions a call however small the network (the
//! demo's 4 → 16 → 3 network does 112 multiply-adds a row), which is most of what a one-row
//! request costs the server, and several times the native cost a row for narrow networks.
//! Here a call is a few loops over the weights. tract's packed matrix kernels are faster
//! once a call holds enough work on wide layers, so a network wider than [`NARROW_MACS`]
//! keeps a tract plan loaded beside the native layers and calls above [`NATIVE_MAX_MACS`]
//! multiply-adds run on it.
//!
//! Outputs agree with tract and onnxruntime to float rounding (the sums run in a different
//! order): within 1e-5 on the fixtures. Labels are the class of the first largest
//! probability, as `ArgMax` picks.
//!
//! Concurrency: immutable after load; `predict` allocates its own buffers per call.

use std::collections::HashMap;

use tract_onnx::pb;

use super::tract::TractModel;
use super::trees::attr;
use super::{OnnxGraph, f32_data, first_argmax};
use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::signature::Signature;
use crate::tensor::{DataType, Tensor, TensorData};

/// Networks of at most this many multiply-adds a row run natively at every batch size:
/// tract's cost a row stays several times the native one for them (measured with
/// `cargo run --release -p pier-runtimes --example dense_crossover`: 1.7–18× at 1–4,096
/// rows for 112–1,184 multiply-adds a row, 0.9–6.2× at 3,392, but 0.7× from 64 rows at
/// 5,504).
pub const NARROW_MACS: usize = 4096;

/// Wider networks run natively for calls of at most this many multiply-adds (rows × a
/// row's), on tract above, whose packed kernels win once its fixed cost a call is paid
/// back (same example: native 2–5× at 1–4 rows of 5,504; 0.3–0.7× from 16 rows on).
pub const NATIVE_MAX_MACS: usize = 1 << 16;

/// ONNX's element type numbers for `FLOAT`, `INT32`, `INT64`.
const ONNX_FLOAT: i32 = 1;
const ONNX_INT32: i32 = 6;
const ONNX_INT64: i32 = 7;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Activation {
    Identity,
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
}

/// One fully connected layer: `act(x · weights + bias)`.
#[derive(Debug)]
struct Layer {
    inputs: usize,
    outputs: usize,
    /// `inputs × outputs`, row-major (ONNX `MatMul`'s right operand as stored).
    weights: Vec<f32>,
    /// `outputs` values, or none.
    bias: Option<Vec<f32>>,
    activation: Activation,
}

/// What each signature output is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Output {
    /// The network's last values (`FP32 [rows, width]`).
    Values,
    /// The class of the first largest value (`INT64 [rows]`).
    Label,
}

/// A multilayer perceptron run natively for small calls, on tract for large ones.
#[derive(Debug)]
pub struct DenseModel {
    signature: Signature,
    plan: Plan,
    macs_per_row: usize,
    /// Large calls of a wide network (see [`NATIVE_MAX_MACS`]); none for a narrow one.
    tract: Option<TractModel>,
}

/// Why a graph is not a dense chain (logged at debug level; tract then runs it).
type NotDense = String;

impl DenseModel {
    /// The native plan for `graph` when it is a dense chain this module runs (see the
    /// module doc), else `None`.
    pub fn plan(
        graph: &OnnxGraph,
        signature: &Signature,
        model_name: &str,
    ) -> Result<Option<Self>> {
        let plan = match Plan::of(graph, signature) {
            Ok(plan) => plan,
            Err(why) => {
                tracing::debug!(model = model_name, %why, "not a dense chain: runs on tract");
                return Ok(None);
            }
        };
        let macs_per_row: usize = plan.layers.iter().map(|l| l.inputs * l.outputs).sum();
        let tract = if macs_per_row > NARROW_MACS {
            Some(TractModel::from_graph(
                graph.clone(),
                Some(signature.clone()),
                model_name,
            )?)
        } else {
            None
        };
        Ok(Some(Self {
            signature: signature.clone(),
            plan,
            macs_per_row,
            tract,
        }))
    }

    /// The network on `rows` rows of `x`: the last layer's values (a plan has a layer).
    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (first, rest) = self.plan.layers.split_first().expect("a plan has a layer");
        let mut values = first.apply(x, rows);
        for layer in rest {
            values = layer.apply(&values, rows);
        }
        if self.plan.softmax {
            values.chunks_exact_mut(self.out_width()).for_each(softmax);
        }
        values
    }

    fn out_width(&self) -> usize {
        self.plan.layers.last().map_or(0, |l| l.outputs)
    }
}

impl Layer {
    fn apply(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; rows * self.outputs];
        for (row, acc) in x
            .chunks_exact(self.inputs)
            .zip(out.chunks_exact_mut(self.outputs))
        {
            // acc += x[k] · weights[k, ..]: contiguous rows of the weights, which the
            // compiler vectorises; the sum over k runs in order, as a plain dot product.
            for (&xk, w) in row.iter().zip(self.weights.chunks_exact(self.outputs)) {
                for (a, &wk) in acc.iter_mut().zip(w) {
                    *a += xk * wk;
                }
            }
            if let Some(bias) = &self.bias {
                for (a, &b) in acc.iter_mut().zip(bias) {
                    *a += b;
                }
            }
            match self.activation {
                Activation::Identity => {}
                // NaN stays NaN, as ONNX's Relu keeps it.
                Activation::Relu => acc
                    .iter_mut()
                    .for_each(|a| *a = if *a < 0.0 { 0.0 } else { *a }),
                Activation::LeakyRelu(alpha) => acc
                    .iter_mut()
                    .for_each(|a| *a = if *a < 0.0 { *a * alpha } else { *a }),
                Activation::Sigmoid => acc.iter_mut().for_each(|a| *a = 1.0 / (1.0 + (-*a).exp())),
                Activation::Tanh => acc.iter_mut().for_each(|a| *a = a.tanh()),
            }
        }
        out
    }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// `slot`'s vector, taken on its `last` use, else copied.
fn take_or_copy<T: Clone>(slot: &mut Option<Vec<T>>, last: bool) -> Vec<T> {
    if last { slot.take() } else { slot.clone() }.unwrap_or_default()
}

impl Model for DenseModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let width = self.plan.layers.first().map_or(0, |l| l.inputs);
        let rows = match inputs.as_slice() {
            [x] if x.dtype() == DataType::Fp32 && x.shape().len() == 2 && x.row_len() == width => {
                x.rows()
            }
            _ => {
                return Err(RuntimeError::InvalidInput(format!(
                    "expected one FP32 input of shape [rows, {width}]"
                )));
            }
        };
        if let Some(tract) = &self.tract
            && rows.saturating_mul(self.macs_per_row) > NATIVE_MAX_MACS
        {
            return tract.predict(inputs);
        }
        let x = inputs[0].as_f32().unwrap_or_default();
        let width = self.out_width();
        let values = self.forward(x, rows);
        let labels = self.plan.outputs.contains(&Output::Label).then(|| {
            values
                .chunks_exact(width)
                .map(|row| self.plan.classes[first_argmax(row)])
                .collect::<Vec<i64>>()
        });
        // Each result moves into its last output and is copied into any earlier one.
        let (mut values, mut labels) = (Some(values), labels);
        let last = |kind| self.plan.outputs.iter().rposition(|o| *o == kind);
        let (last_values, last_label) = (last(Output::Values), last(Output::Label));
        let mut answer = Vec::with_capacity(self.plan.outputs.len());
        for (i, output) in self.plan.outputs.iter().enumerate() {
            answer.push(match output {
                Output::Values => {
                    let v = take_or_copy(&mut values, Some(i) == last_values);
                    Tensor::from_f32_rows(rows, width, v)?
                }
                Output::Label => {
                    let l = take_or_copy(&mut labels, Some(i) == last_label);
                    Tensor::new(vec![rows], TensorData::Int64(l))?
                }
            });
        }
        Ok(answer)
    }

    fn backend(&self) -> &'static str {
        "native"
    }
}

/// The layers and outputs read from a graph.
#[derive(Debug)]
struct Plan {
    layers: Vec<Layer>,
    softmax: bool,
    classes: Vec<i64>,
    outputs: Vec<Output>,
}

/// What a value name of the graph holds, as the walk over its nodes sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    /// The graph input, or the network's values after this many layers (and maybe the
    /// softmax).
    Main,
    /// `ArgMax` of the last main value.
    ArgMax,
    /// The class of that index (`ArrayFeatureExtractor`), maybe reshaped and cast.
    Label,
}

fn attr_int(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_float(node: &pb::NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

/// An initializer's dimensions and `f32` values.
fn floats(t: &pb::TensorProto) -> std::result::Result<(Vec<i64>, Vec<f32>), NotDense> {
    if t.data_type != ONNX_FLOAT {
        return Err(format!("initializer {} is not float", t.name));
    }
    let wrong = || format!("initializer {} holds the wrong number of values", t.name);
    let values = f32_data(t).ok_or_else(wrong)?;
    if t.dims.iter().any(|&d| d <= 0) {
        // An empty or negative dimension: no layer to run (and no zero-width loops).
        return Err(format!("initializer {} has a dimension under 1", t.name));
    }
    let count = t.dims.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d));
    if count != i64::try_from(values.len()).ok() {
        return Err(wrong());
    }
    Ok((t.dims.clone(), values))
}

/// An integer initializer's values (`INT64`, or `INT32` as skl2onnx stores classes).
fn integers(t: &pb::TensorProto) -> std::result::Result<Vec<i64>, NotDense> {
    match t.data_type {
        ONNX_INT64 if !t.int64_data.is_empty() => Ok(t.int64_data.clone()),
        ONNX_INT64 => Ok(t
            .raw_data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect()),
        ONNX_INT32 if !t.int32_data.is_empty() => {
            Ok(t.int32_data.iter().map(|&v| i64::from(v)).collect())
        }
        ONNX_INT32 => Ok(t
            .raw_data
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes(b.try_into().unwrap_or_default())))
            .collect()),
        _ => Err(format!("initializer {} is not an integer tensor", t.name)),
    }
}

impl Plan {
    fn of(graph: &OnnxGraph, signature: &Signature) -> std::result::Result<Self, NotDense> {
        let g = graph.graph().ok_or("no graph")?;
        let constants: HashMap<&str, &pb::TensorProto> =
            g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let [input] = signature.inputs.as_slice() else {
            return Err("not one input".into());
        };
        let mut width = match input.shape.as_slice() {
            [_, w] if input.dtype == DataType::Fp32 && *w > 0 => *w as usize,
            _ => return Err("the input is not FP32 [rows, features]".into()),
        };
        let mut values: HashMap<&str, Value> = HashMap::from([(input.name.as_str(), Value::Main)]);
        // The name of the last main value: only it may be extended, and only until a softmax
        // or the label branch (whose labels are read from the final values).
        let mut last = input.name.as_str();
        let mut ended = false;
        let mut layers: Vec<Layer> = Vec::new();
        let mut softmax = false;
        let mut classes: Vec<i64> = Vec::new();
        let is = |values: &HashMap<&str, Value>, name: &str, v: Value| values.get(name) == Some(&v);
        for node in &g.node {
            if !node.domain.is_empty() && node.domain != "ai.onnx" && node.domain != "ai.onnx.ml" {
                return Err(format!("operator domain {}", node.domain));
            }
            let ins: Vec<&str> = node.input.iter().map(String::as_str).collect();
            let [out] = node.output.as_slice() else {
                return Err(format!(
                    "{} has {} outputs",
                    node.op_type,
                    node.output.len()
                ));
            };
            let extends_main = |name: &str| name == last && !softmax && !ended;
            let value = match (node.op_type.as_str(), ins.as_slice()) {
                ("Identity", [x]) if *x == last || !is(&values, x, Value::Main) => {
                    *values.get(x).ok_or("Identity of an unknown value")?
                }
                ("Cast", [x]) if is(&values, x, Value::Main) && *x == last => {
                    if attr_int(node, "to", 0) != i64::from(ONNX_FLOAT) {
                        return Err("a Cast of the values to another type".into());
                    }
                    Value::Main
                }
                ("Cast", [x]) if is(&values, x, Value::Label) => {
                    if attr_int(node, "to", 0) != i64::from(ONNX_INT64) {
                        return Err("labels cast to a type other than int64".into());
                    }
                    Value::Label
                }
                ("MatMul", [x, w]) if extends_main(x) => {
                    let (dims, weights) =
                        floats(constants.get(w).ok_or("MatMul by a non-constant")?)?;
                    let [k, m] = dims.as_slice() else {
                        return Err("MatMul weights are not a matrix".into());
                    };
                    if *k as usize != width {
                        return Err("MatMul weights do not fit the width".into());
                    }
                    width = *m as usize;
                    layers.push(Layer {
                        inputs: *k as usize,
                        outputs: width,
                        weights,
                        bias: None,
                        activation: Activation::Identity,
                    });
                    Value::Main
                }
                ("Gemm", [x, w, rest @ ..]) if extends_main(x) => {
                    let layer = gemm(node, width, &constants, w, rest.first().copied())?;
                    width = layer.outputs;
                    layers.push(layer);
                    Value::Main
                }
                ("Add", [a, b]) if extends_main(a) || extends_main(b) => {
                    let c = if extends_main(a) { b } else { a };
                    let (_, bias) = floats(constants.get(c).ok_or("Add of a non-constant")?)?;
                    let layer = layers.last_mut().ok_or("Add before any layer")?;
                    if layer.activation != Activation::Identity || bias.len() != width {
                        return Err("an Add that is not a layer's bias".into());
                    }
                    match &mut layer.bias {
                        Some(have) => have.iter_mut().zip(&bias).for_each(|(h, b)| *h += b),
                        None => layer.bias = Some(bias),
                    }
                    Value::Main
                }
                (op @ ("Relu" | "LeakyRelu" | "Sigmoid" | "Tanh"), [x]) if extends_main(x) => {
                    let layer = layers.last_mut().ok_or("an activation before any layer")?;
                    if layer.activation != Activation::Identity {
                        return Err("two activations in a row".into());
                    }
                    layer.activation = match op {
                        "Relu" => Activation::Relu,
                        "LeakyRelu" => Activation::LeakyRelu(attr_float(node, "alpha", 0.01)),
                        "Sigmoid" => Activation::Sigmoid,
                        _ => Activation::Tanh,
                    };
                    Value::Main
                }
                ("Softmax", [x]) if extends_main(x) && !layers.is_empty() => {
                    // Rank 2: axis 1 and -1 (every opset's default) are the last axis.
                    if !matches!(attr_int(node, "axis", -1), 1 | -1) {
                        return Err("a Softmax over another axis".into());
                    }
                    softmax = true;
                    Value::Main
                }
                ("ArgMax", [x]) if *x == last && is(&values, x, Value::Main) => {
                    if attr_int(node, "axis", 0) != 1 || attr_int(node, "select_last_index", 0) != 0
                    {
                        return Err("an ArgMax other than the first largest of a row".into());
                    }
                    ended = true;
                    Value::ArgMax
                }
                ("ArrayFeatureExtractor", [c, i]) if is(&values, i, Value::ArgMax) => {
                    classes = integers(constants.get(c).ok_or("classes that are not constant")?)?;
                    if classes.len() != width {
                        return Err("as many classes as values are needed".into());
                    }
                    Value::Label
                }
                ("Reshape", [x, shape]) if is(&values, x, Value::Label) => {
                    let shape = integers(
                        constants
                            .get(shape)
                            .ok_or("a Reshape to a computed shape")?,
                    )?;
                    if shape != [-1] {
                        return Err("labels reshaped to other than one column".into());
                    }
                    Value::Label
                }
                (op, _) => return Err(format!("operator {op} in this position")),
            };
            if value == Value::Main {
                last = out.as_str();
            }
            values.insert(out.as_str(), value);
        }
        if layers.is_empty() {
            return Err("no layer".into());
        }
        let outputs = signature
            .outputs
            .iter()
            .map(|spec| match values.get(spec.name.as_str()) {
                Some(Value::Main) if spec.name == last && spec.dtype == DataType::Fp32 => {
                    Ok(Output::Values)
                }
                Some(Value::Label) if spec.dtype == DataType::Int64 && spec.shape.len() == 1 => {
                    Ok(Output::Label)
                }
                _ => Err(format!(
                    "output {} is not the network's values or labels",
                    spec.name
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if outputs.is_empty() {
            return Err("no outputs".into());
        }
        Ok(Self {
            layers,
            softmax,
            classes,
            outputs,
        })
    }
}

/// A `Gemm` node as a layer: `alpha · x · B + beta · C` (B transposed when `transB`).
fn gemm(
    node: &pb::NodeProto,
    width: usize,
    constants: &HashMap<&str, &pb::TensorProto>,
    b: &str,
    c: Option<&str>,
) -> std::result::Result<Layer, NotDense> {
    if attr_int(node, "transA", 0) != 0 {
        return Err("Gemm with transA".into());
    }
    let alpha = attr_float(node, "alpha", 1.0);
    let beta = attr_float(node, "beta", 1.0);
    let (dims, stored) = floats(constants.get(b).ok_or("Gemm by a non-constant")?)?;
    let [rows, cols] = dims.as_slice() else {
        return Err("Gemm weights are not a matrix".into());
    };
    let (rows, cols) = (*rows as usize, *cols as usize);
    let trans_b = attr_int(node, "transB", 0) != 0;
    let (k, m) = if trans_b { (cols, rows) } else { (rows, cols) };
    if k != width {
        return Err("Gemm weights do not fit the width".into());
    }
    let mut weights = vec![0.0f32; k * m];
    for i in 0..k {
        for j in 0..m {
            let w = if trans_b {
                stored[j * cols + i]
            } else {
                stored[i * cols + j]
            };
            weights[i * m + j] = alpha * w;
        }
    }
    let bias = match c.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let (_, values) = floats(constants.get(c).ok_or("Gemm's C is not constant")?)?;
            let values = match values.len() {
                1 => vec![values[0]; m],
                n if n == m => values,
                _ => return Err("Gemm's C does not broadcast to one row".into()),
            };
            Some(values.into_iter().map(|v| beta * v).collect())
        }
    };
    Ok(Layer {
        inputs: k,
        outputs: m,
        weights,
        bias,
        activation: Activation::Identity,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../fixtures/onnx/{name}/model.onnx"))
    }

    fn dense(name: &str) -> (DenseModel, TractModel) {
        let path = fixture(name);
        let graph = OnnxGraph::read(&path, name).unwrap();
        let signature = graph.declared_signature().unwrap();
        let model = DenseModel::plan(&graph, &signature, name)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} is a dense chain"));
        (
            model,
            TractModel::load(&path, Some(signature), name).unwrap(),
        )
    }

    /// Deterministic inputs in [-4, 12), some negative so every Relu branch runs.
    fn rows(rows: usize, width: usize, seed: u32) -> Tensor {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let values = (0..rows * width)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 16_000) as f32 / 1000.0 - 4.0
            })
            .collect();
        Tensor::from_f32_rows(rows, width, values).unwrap()
    }

    fn assert_close(native: &[Tensor], tract: &[Tensor], what: &str) {
        assert_eq!(native.len(), tract.len(), "{what}");
        for (n, t) in native.iter().zip(tract) {
            assert_eq!(n.shape(), t.shape(), "{what}");
            match (n.data(), t.data()) {
                (TensorData::Fp32(a), TensorData::Fp32(b)) => {
                    for (x, y) in a.iter().zip(b) {
                        assert!((x - y).abs() <= 1e-6 + 1e-5 * y.abs(), "{what}: {x} vs {y}");
                    }
                }
                (a, b) => assert_eq!(a, b, "{what}"),
            }
        }
    }

    #[test]
    fn the_fixtures_mlps_run_natively_and_agree_with_tract() {
        for (name, width) in [("mlp", 4), ("iris-mlp", 4), ("mlp-wide", 20)] {
            let (model, tract) = dense(name);
            assert_eq!(model.backend(), "native");
            let per_row = model.macs_per_row;
            // A narrow network is native at every size; a wide one keeps tract for calls
            // above the cut-off (both sides tried: the same answers).
            assert_eq!(model.tract.is_some(), per_row > NARROW_MACS, "{name}");
            let cut = NATIVE_MAX_MACS / per_row;
            for n in [1, 2, 7, 64, 1000, cut, cut + 1] {
                let x = rows(n, width, n as u32);
                let native = model.predict(vec![x.clone()]).unwrap();
                let expected = tract.predict(vec![x]).unwrap();
                assert_close(&native, &expected, &format!("{name}, {n} rows"));
            }
        }
    }

    /// Each row of a fixture's case alone (the native path for every fixture) against
    /// onnxruntime's outputs recorded in `case.json`.
    #[test]
    fn one_row_calls_match_onnxruntime() {
        for name in ["mlp", "iris-mlp", "mlp-wide"] {
            let (model, _) = dense(name);
            let case: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixture(name).with_file_name("case.json")).unwrap(),
            )
            .unwrap();
            let input = &model.signature.inputs[0];
            let width = input.shape[1] as usize;
            let x: Vec<f32> = case["inputs"][&input.name]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            for (r, row) in x.chunks_exact(width).enumerate() {
                let out = model
                    .predict(vec![Tensor::from_f32_rows(1, width, row.to_vec()).unwrap()])
                    .unwrap();
                for (spec, got) in model.signature.outputs.iter().zip(&out) {
                    let expected = &case["outputs"][&spec.name];
                    let per_row = got.len();
                    let want = &expected["data"].as_array().unwrap()[r * per_row..][..per_row];
                    let got: Vec<f64> = match got.data() {
                        TensorData::Fp32(v) => v.iter().map(|&v| f64::from(v)).collect(),
                        TensorData::Int64(v) => v.iter().map(|&v| v as f64).collect(),
                        other => panic!("{other:?}"),
                    };
                    for (g, w) in got.iter().zip(want) {
                        let w = w.as_f64().unwrap();
                        assert!(
                            (g - w).abs() <= 1e-5,
                            "{name} row {r} {}: {g} vs {w}",
                            spec.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn labels_are_the_first_largest_class() {
        let (model, _) = dense("iris-mlp");
        assert_eq!(model.plan.outputs, [Output::Label, Output::Values]);
        let out = model.predict(vec![rows(50, 4, 3)]).unwrap();
        let (TensorData::Int64(labels), Some(probs)) = (out[0].data(), out[1].as_f32()) else {
            panic!("label and probabilities");
        };
        for (label, row) in labels.iter().zip(probs.chunks_exact(3)) {
            assert_eq!(*label, model.plan.classes[first_argmax(row)]);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert_eq!(first_argmax(&[0.2, 0.4, 0.4]), 1, "ties go to the first");
    }

    #[test]
    fn wrong_inputs_are_refused_not_run() {
        let (model, _) = dense("mlp");
        for bad in [
            vec![],
            vec![rows(2, 3, 1)],
            vec![rows(2, 4, 1), rows(2, 4, 2)],
            vec![Tensor::new(vec![1, 4], TensorData::Fp64(vec![1.0; 4])).unwrap()],
        ] {
            let err = model.predict(bad).unwrap_err();
            assert!(err.to_string().contains("[rows, 4]"), "{err}");
        }
    }

    #[test]
    fn graphs_that_are_not_dense_chains_stay_on_tract() {
        for name in ["iris-logreg", "iris-svm", "cancer-gbc100", "iris-zipmap"] {
            let graph = OnnxGraph::read(&fixture(name), name).unwrap();
            let signature = graph.declared_signature().unwrap();
            assert!(
                DenseModel::plan(&graph, &signature, name)
                    .unwrap()
                    .is_none(),
                "{name}"
            );
        }
    }

    /// A graph `input [rows, 4]` → `MatMul` by `w` (dims as given) → `Add` of `b` → output.
    fn hand_made(dims: &[i64], weights: Vec<f32>, bias: Vec<f32>) -> (OnnxGraph, Signature) {
        let tensor = |name: &str, dims: Vec<i64>, values: Vec<f32>| pb::TensorProto {
            name: name.into(),
            data_type: ONNX_FLOAT,
            dims,
            float_data: values,
            ..Default::default()
        };
        let node = |op: &str, ins: [&str; 2], out: &str| pb::NodeProto {
            op_type: op.into(),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            ..Default::default()
        };
        let bias_dims = vec![bias.len() as i64];
        let graph = pb::GraphProto {
            node: vec![
                node("MatMul", ["x", "w"], "m"),
                node("Add", ["m", "b"], "y"),
            ],
            initializer: vec![
                tensor("w", dims.to_vec(), weights),
                tensor("b", bias_dims, bias),
            ],
            ..Default::default()
        };
        let proto = pb::ModelProto {
            graph: Some(graph),
            ..Default::default()
        };
        let spec = |name: &str, width: i64| crate::signature::TensorSpec {
            name: name.into(),
            dtype: DataType::Fp32,
            shape: vec![-1, width],
        };
        let signature = Signature {
            inputs: vec![spec("x", 4)],
            outputs: vec![spec("y", dims.get(1).copied().unwrap_or(1))],
        };
        (OnnxGraph { proto }, signature)
    }

    #[test]
    fn malformed_weights_leave_the_graph_to_tract_without_panicking() {
        // The well-formed graph is a plan: the refusals below are about the weights.
        let (graph, signature) = hand_made(&[4, 2], vec![0.5; 8], vec![1.0; 2]);
        assert!(Plan::of(&graph, &signature).is_ok());
        for (dims, weights, bias, why) in [
            (vec![4, 0], vec![], vec![], "a dimension under 1"),
            (
                vec![-2, -2],
                vec![0.5; 4],
                vec![1.0; 2],
                "a dimension under 1",
            ),
            (
                vec![4, 2],
                vec![0.5; 7],
                vec![1.0; 2],
                "wrong number of values",
            ),
            (
                vec![3, 2],
                vec![0.5; 6],
                vec![1.0; 2],
                "do not fit the width",
            ),
            (vec![4, 2], vec![0.5; 8], vec![1.0; 3], "not a layer's bias"),
            (vec![8], vec![0.5; 8], vec![1.0; 2], "not a matrix"),
        ] {
            let (graph, signature) = hand_made(&dims, weights, bias);
            let err = Plan::of(&graph, &signature).err().unwrap_or_default();
            assert!(err.contains(why), "{dims:?}: {err:?}");
        }
    }

    #[test]
    fn no_layer_may_follow_the_label_branch() {
        // MatMul + Add, ArgMax of it, then another MatMul of the values: the labels would be
        // of the first layer's values, so the graph is not a chain this module runs.
        let (mut graph, signature) = hand_made(&[4, 4], vec![0.5; 16], vec![1.0; 4]);
        let g = graph.proto.graph.as_mut().unwrap();
        let node = |op: &str, ins: &[&str], out: &str| pb::NodeProto {
            op_type: op.into(),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            attribute: vec![pb::AttributeProto {
                name: "axis".into(),
                i: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        g.node.push(node("ArgMax", &["y"], "best"));
        g.node.push(node("MatMul", &["y", "w"], "z"));
        let err = Plan::of(&graph, &signature).err().unwrap_or_default();
        assert!(err.contains("operator MatMul in this position"), "{err:?}");
    }

    #[test]
    fn activations_and_softmax() {
        let layer = |activation| Layer {
            inputs: 2,
            outputs: 2,
            weights: vec![1.0, -1.0, 2.0, 0.5],
            bias: Some(vec![0.5, -3.0]),
            activation,
        };
        // x = [1, 2]: x·W = [5, 0], + bias = [5.5, -3].
        let x = [1.0, 2.0];
        assert_eq!(layer(Activation::Identity).apply(&x, 1), [5.5, -3.0]);
        assert_eq!(layer(Activation::Relu).apply(&x, 1), [5.5, 0.0]);
        assert_eq!(layer(Activation::LeakyRelu(0.1)).apply(&x, 1), [5.5, -0.3]);
        let s = layer(Activation::Sigmoid).apply(&x, 1);
        assert!((s[0] - 1.0 / (1.0 + (-5.5f32).exp())).abs() < 1e-7);
        let t = layer(Activation::Tanh).apply(&x, 1);
        assert!((t[1] - (-3.0f32).tanh()).abs() < 1e-7);
        let mut row = [1.0, 2.0, 3.0];
        softmax(&mut row);
        let e: Vec<f32> = [1.0f32, 2.0, 3.0].iter().map(|v| v.exp()).collect();
        let sum: f32 = e.iter().sum();
        for (p, v) in row.iter().zip(&e) {
            assert!((p - v / sum).abs() < 1e-6);
        }
        assert!(layer(Activation::Relu).apply(&[f32::NAN, 0.0], 1)[0].is_nan());
    }
}
