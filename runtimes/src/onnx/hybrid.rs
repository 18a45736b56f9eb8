//! The default ONNX backend's plan for graphs tract alone runs slowly or not at all: an
//! `ai.onnx.ml` tree ensemble compiled onto the native kernel, and the operators around it.
//!
//! At load the graph is cut in three:
//! - a **tail**: the `Identity`, `Cast`, `ZipMap` and arithmetic-with-a-constant nodes
//!   between the model and the graph's outputs, run natively ([`super::tail`]);
//! - a **core**: a `TreeEnsembleClassifier` / `TreeEnsembleRegressor` / `TreeEnsemble`
//!   compiled natively ([`super::trees`]), or — for graphs without one that still need a native tail (a
//!   `ZipMap` after a linear model) — the rest of the graph on tract;
//! - a **head** computing the ensemble's input when it is not a graph input: a `Scaler`
//!   natively, anything else cut out as a tract sub-graph.
//!
//! A graph this plan does not fit (two ensembles, an ensemble the kernel cannot reproduce
//! exactly, nodes after the ensemble other than the tail's) is left to tract as before, with
//! a log line saying why.
//!
//! Concurrency: everything is immutable after load; `predict` keeps its intermediate values
//! in a per-call map and runs on the caller's thread (tract parts spawn their own state).

use std::collections::{BTreeSet, HashMap};

use tract_onnx::pb;

use super::OnnxGraph;
use super::tail::{Op, Step};
use super::tract::TractModel;
use super::trees::{self, ClassLabels, CompiledTrees};
use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::signature::{Signature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// A graph run as head → core → tail.
#[derive(Debug)]
pub struct HybridModel {
    signature: Signature,
    core: Core,
    tail: Vec<Step>,
    accepts_missing: bool,
}

#[derive(Debug)]
enum Head {
    /// The core reads graph input `i`.
    Input(usize),
    /// Native steps (a `Scaler`) from the graph inputs (named as in the graph).
    Native(Vec<String>, Vec<Step>),
    /// A tract sub-graph from the graph inputs to the core's input.
    Tract(TractModel),
}

#[derive(Debug)]
enum Core {
    Trees {
        /// How the ensemble's input is computed.
        head: Head,
        input: String,
        compiled: Box<CompiledTrees>,
        /// The node's outputs: `[label, probabilities]` or `[Y]`; empty names are unused.
        outputs: Vec<String>,
    },
    Tract {
        model: TractModel,
        outputs: Vec<String>,
    },
}

/// Graph facts the plan is built from.
struct Parts<'a> {
    nodes: &'a [pb::NodeProto],
    /// One-element FP32 initializers by name.
    constants: HashMap<&'a str, f32>,
    producer: HashMap<&'a str, usize>,
    /// The graph's inputs (not initializers), in order: what the signature's inputs are,
    /// position by position.
    inputs: Vec<String>,
}

impl<'a> Parts<'a> {
    fn new(graph: &'a pb::GraphProto) -> Self {
        let mut producer = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                producer.insert(out.as_str(), i);
            }
        }
        let constants = graph
            .initializer
            .iter()
            .filter_map(|t| Some((t.name.as_str(), super::tail::scalar_constant(t)?)))
            .collect();
        Parts {
            nodes: &graph.node,
            constants,
            producer,
            inputs: graph
                .input
                .iter()
                .filter(|i| !graph.initializer.iter().any(|t| t.name == i.name))
                .map(|i| i.name.clone())
                .collect(),
        }
    }

    /// The signature's spec of graph input `name` (matched by position, as tract matches them).
    fn input<'s>(&self, name: &str, signature: &'s Signature) -> Option<(usize, &'s TensorSpec)> {
        let i = self.inputs.iter().position(|n| n == name)?;
        Some((i, signature.inputs.get(i)?))
    }

    /// The native step for node `i`, if there is one.
    fn step(&self, i: usize) -> Option<Step> {
        Step::from_node(&self.nodes[i], &|name| self.constants.get(name).copied())
    }

    /// Nodes needed to compute `values`, in graph order.
    fn closure(&self, values: &[&str]) -> Vec<usize> {
        let mut needed = BTreeSet::new();
        let mut stack: Vec<&str> = values.to_vec();
        while let Some(v) = stack.pop() {
            if let Some(&i) = self.producer.get(v)
                && needed.insert(i)
            {
                stack.extend(self.nodes[i].input.iter().map(String::as_str));
            }
        }
        needed.into_iter().collect()
    }
}

/// A copy of `graph` computing only `outputs` (names), with every node they need.
fn cut(graph: &OnnxGraph, parts: &Parts<'_>, outputs: &[&str]) -> OnnxGraph {
    let mut proto = graph.proto.clone();
    if let Some(g) = proto.graph.as_mut() {
        let keep = parts.closure(outputs);
        g.node = keep.iter().map(|&i| parts.nodes[i].clone()).collect();
        g.output = outputs
            .iter()
            .map(|name| pb::ValueInfoProto {
                name: (*name).to_string(),
                ..Default::default()
            })
            .collect();
    }
    OnnxGraph { proto }
}

/// Why the plan does not fit (logged; the graph then runs on tract alone).
type Reason = String;

impl HybridModel {
    /// Plans `graph`; `Ok(None)` when plain tract should run it.
    pub fn plan(
        graph: &OnnxGraph,
        signature: &Signature,
        model_name: &str,
    ) -> Result<Option<Self>> {
        let Some(g) = graph.proto.graph.as_ref() else {
            return Ok(None);
        };
        let has_trees = g.node.iter().any(trees::is_tree_ensemble);
        let has_zipmap = g.node.iter().any(|n| n.op_type == "ZipMap");
        if !has_trees && !has_zipmap {
            return Ok(None);
        }
        let parts = Parts::new(g);
        let (tail, sources) = match tail_of(g, &parts) {
            Ok(t) => t,
            Err(why) => {
                tracing::info!(model = model_name, %why, "ONNX graph runs on tract alone");
                return Ok(None);
            }
        };
        let accepts_missing = graph.takes_missing_values();
        if has_trees {
            match trees_core(graph, &parts, signature, &sources, model_name) {
                Ok(core) => {
                    tracing::info!(
                        model = model_name,
                        "tree ensemble compiled to the native kernel"
                    );
                    return Ok(Some(Self {
                        signature: signature.clone(),
                        core,
                        tail,
                        accepts_missing,
                    }));
                }
                Err(why) => {
                    tracing::warn!(model = model_name, %why, "tree ensemble not compiled natively; running it on tract");
                }
            }
        }
        if !tail.iter().any(|s| matches!(s.op, Op::ZipMap { .. })) {
            return Ok(None);
        }
        if let Some(s) = sources.iter().find(|s| parts.inputs.contains(s)) {
            tracing::info!(model = model_name, source = %s, "ZipMap of a graph input; tract runs the graph");
            return Ok(None);
        }
        // The core on tract, the tail natively.
        let names: Vec<&str> = sources.iter().map(String::as_str).collect();
        let core_graph = cut(graph, &parts, &names);
        let outputs = sources
            .iter()
            .map(|s| source_spec(s, &tail, signature))
            .collect();
        let core_signature = Signature {
            inputs: signature.inputs.clone(),
            outputs,
        };
        let model = TractModel::from_graph(core_graph, Some(core_signature), model_name)?;
        Ok(Some(Self {
            signature: signature.clone(),
            core: Core::Tract {
                model,
                outputs: sources,
            },
            tail,
            accepts_missing,
        }))
    }
}

/// The native tail and the values it starts from (the core's outputs), in graph order.
fn tail_of(
    g: &pb::GraphProto,
    parts: &Parts<'_>,
) -> std::result::Result<(Vec<Step>, Vec<String>), Reason> {
    let mut steps: BTreeSet<usize> = BTreeSet::new();
    let mut sources: Vec<String> = Vec::new();
    for out in &g.output {
        let mut v = out.name.as_str();
        loop {
            let step = parts
                .producer
                .get(v)
                .and_then(|&i| Some((i, parts.step(i).filter(Step::is_tail)?)));
            match step {
                Some((i, step)) => {
                    steps.insert(i);
                    v = parts.nodes[i]
                        .input
                        .iter()
                        .find(|name| **name == step.input)
                        .map_or(v, String::as_str);
                }
                _ => {
                    if !sources.iter().any(|s| s == v) {
                        sources.push(v.to_string());
                    }
                    break;
                }
            }
        }
    }
    let steps = steps.into_iter().filter_map(|i| parts.step(i)).collect();
    Ok((steps, sources))
}

/// What tract is told a core output is (only its name matters to tract; the types let
/// the tract backend recognise a tree classifier's label and probabilities).
fn source_spec(name: &str, tail: &[Step], signature: &Signature) -> TensorSpec {
    if let Some(i) = signature.output_index(name) {
        return signature.outputs[i].clone();
    }
    for step in tail.iter().filter(|s| s.input == name) {
        match &step.op {
            Op::ZipMap { keys } => {
                return TensorSpec::new(name, DataType::Fp32, vec![-1, keys.len() as i64]);
            }
            Op::Cast(DataType::Int64) => return TensorSpec::new(name, DataType::Int64, vec![-1]),
            _ => {}
        }
    }
    TensorSpec::new(name, DataType::Fp32, vec![-1])
}

/// The native core (and its head) for a graph whose outputs all come from one tree ensemble.
fn trees_core(
    graph: &OnnxGraph,
    parts: &Parts<'_>,
    signature: &Signature,
    sources: &[String],
    model_name: &str,
) -> std::result::Result<Core, Reason> {
    let ensembles: Vec<&pb::NodeProto> = parts
        .nodes
        .iter()
        .filter(|n| trees::is_tree_ensemble(n))
        .collect();
    let [node] = ensembles.as_slice() else {
        return Err(format!("{} tree ensembles in one graph", ensembles.len()));
    };
    if let Some(s) = sources.iter().find(|s| !node.output.contains(s)) {
        return Err(format!(
            "graph output value {s:?} does not come from the tree ensemble through Identity, Cast or ZipMap"
        ));
    }
    let input = node
        .input
        .first()
        .filter(|s| !s.is_empty())
        .ok_or("the tree ensemble has no input")?
        .clone();
    let (head, width) = if let Some((i, spec)) = parts.input(&input, signature) {
        if spec.dtype != DataType::Fp32 || spec.shape.len() != 2 {
            return Err(format!(
                "the ensemble's input {input:?} is {} {:?}, not FP32 [rows, features]",
                spec.dtype, spec.shape
            ));
        }
        (Head::Input(i), usize::try_from(spec.shape[1]).ok())
    } else if let Some((step, spec)) = native_head(parts, &input, signature) {
        let width = usize::try_from(spec.shape[1]).ok();
        let names = parts.inputs.clone();
        (Head::Native(names, vec![step]), width)
    } else {
        let head_graph = cut(graph, parts, &[input.as_str()]);
        let head_signature = Signature {
            inputs: signature.inputs.clone(),
            outputs: vec![TensorSpec::new(input.clone(), DataType::Fp32, vec![-1, -1])],
        };
        let head = TractModel::from_graph(head_graph, Some(head_signature), model_name)
            .map_err(|e| format!("the nodes before the ensemble do not load on tract: {e}"))?;
        let Some(width) = head.f32_matrix_output(0) else {
            return Err(format!(
                "the nodes before the ensemble do not make a 2-D FP32 {input:?}"
            ));
        };
        (Head::Tract(head), width)
    };
    let compiled = trees::compile(node, width)?;
    // The served signature must be what the compiled node gives.
    for spec in &signature.outputs {
        if let Some(k) = node.output.iter().position(|o| *o == spec.name) {
            let want = native_dtype(&compiled, k);
            if spec.dtype != want {
                return Err(format!(
                    "output {:?} is declared {} but the ensemble gives {want}",
                    spec.name, spec.dtype
                ));
            }
        }
    }
    Ok(Core::Trees {
        head,
        input,
        compiled: Box::new(compiled),
        outputs: node.output.clone(),
    })
}

/// A `Scaler` reading a 2-D FP32 graph input straight into `value`, and that input's spec.
fn native_head<'s>(
    parts: &Parts<'_>,
    value: &str,
    signature: &'s Signature,
) -> Option<(Step, &'s TensorSpec)> {
    let step = parts
        .step(*parts.producer.get(value)?)
        .filter(|s| !s.is_tail())?;
    let (_, spec) = parts.input(&step.input, signature)?;
    (spec.dtype == DataType::Fp32 && spec.shape.len() == 2).then_some((step, spec))
}

/// Datatype of the compiled node's output `k`.
fn native_dtype(compiled: &CompiledTrees, k: usize) -> DataType {
    match (&compiled.labels, k) {
        (Some(ClassLabels::Int(_)), 0) => DataType::Int64,
        (Some(ClassLabels::Strings(_)), 0) => DataType::Bytes,
        _ => DataType::Fp32,
    }
}

impl HybridModel {
    fn run_trees(
        &self,
        compiled: &CompiledTrees,
        x: &Tensor,
        outputs: &[String],
        values: &mut HashMap<String, Tensor>,
    ) -> Result<()> {
        let e = &compiled.ensemble;
        let Some(data) = x.as_f32() else {
            return Err(RuntimeError::InvalidInput(format!(
                "the tree ensemble takes FP32, got {}",
                x.dtype()
            )));
        };
        if x.shape().len() != 2 {
            return Err(RuntimeError::InvalidInput(format!(
                "the tree ensemble takes [rows, features], got shape {:?}",
                x.shape()
            )));
        }
        let (rows, width) = (x.shape()[0], x.shape()[1]);
        let nf = e.num_features();
        let narrowed;
        let data = if width == nf {
            data
        } else if width > nf {
            // Columns past the last one the trees read (onnxruntime accepts them).
            narrowed = data
                .chunks_exact(width)
                .flat_map(|row| &row[..nf])
                .copied()
                .collect::<Vec<f32>>();
            &narrowed
        } else {
            return Err(RuntimeError::InvalidInput(format!(
                "the model reads {nf} features per row, got {width}"
            )));
        };
        let prediction = e
            .predict(data, rows, nf)
            .map_err(|err| RuntimeError::Predict(err.to_string()))?;
        let scores = Tensor::new(
            vec![rows, e.num_outputs()],
            TensorData::Fp32(prediction.scores),
        )?;
        match (&compiled.labels, prediction.labels) {
            (Some(names), Some(codes)) => {
                let labels = match names {
                    ClassLabels::Int(_) => TensorData::Int64(codes),
                    ClassLabels::Strings(s) => TensorData::Bytes(
                        codes
                            .iter()
                            .map(|&c| {
                                s.get(c as usize)
                                    .map(|l| l.clone().into_bytes())
                                    .ok_or_else(|| {
                                        RuntimeError::Predict(format!("label index {c}"))
                                    })
                            })
                            .collect::<Result<_>>()?,
                    ),
                };
                if let Some(name) = outputs.first().filter(|n| !n.is_empty()) {
                    values.insert(name.clone(), Tensor::new(vec![rows], labels)?);
                }
                if let Some(name) = outputs.get(1).filter(|n| !n.is_empty()) {
                    values.insert(name.clone(), scores);
                }
            }
            _ => {
                if let Some(name) = outputs.first().filter(|n| !n.is_empty()) {
                    values.insert(name.clone(), scores);
                }
            }
        }
        Ok(())
    }
}

impl Model for HybridModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let mut values: HashMap<String, Tensor> = HashMap::new();
        match &self.core {
            Core::Trees {
                head,
                input,
                compiled,
                outputs,
            } => {
                let x = match head {
                    Head::Input(i) => inputs.into_iter().nth(*i).ok_or_else(|| {
                        RuntimeError::InvalidInput(format!("input {input:?} is missing"))
                    })?,
                    Head::Native(names, steps) => {
                        for (name, t) in names.iter().zip(inputs) {
                            values.insert(name.clone(), t);
                        }
                        for step in steps {
                            step.run(&mut values)?;
                        }
                        values.remove(input).ok_or_else(|| {
                            RuntimeError::Predict(format!("value {input:?} was not computed"))
                        })?
                    }
                    Head::Tract(head) => head.predict(inputs)?.remove(0),
                };
                self.run_trees(compiled, &x, outputs, &mut values)?;
            }
            Core::Tract { model, outputs } => {
                for (name, t) in outputs.iter().zip(model.predict(inputs)?) {
                    values.insert(name.clone(), t);
                }
            }
        }
        for step in &self.tail {
            step.run(&mut values)?;
        }
        let outputs = &self.signature.outputs;
        outputs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                // Moved out unless a later output has the same name.
                let again = outputs[i + 1..].iter().any(|o| o.name == spec.name);
                let value = if again {
                    values.get(&spec.name).cloned()
                } else {
                    values.remove(&spec.name)
                };
                value.ok_or_else(|| {
                    RuntimeError::Predict(format!("the graph gave no output {:?}", spec.name))
                })
            })
            .collect()
    }

    fn backend(&self) -> &'static str {
        match self.core {
            Core::Trees { .. } => "native",
            Core::Tract { .. } => "tract",
        }
    }

    fn accepts_missing(&self) -> bool {
        self.accepts_missing
    }
}
