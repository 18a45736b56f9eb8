//! The tract backend: pure-Rust ONNX inference, always built.
//!
//! Load: parse, refuse unsupported operators by name, pin input facts (datatype, shape with a
//! symbolic batch dimension) from the manifest signature — scikit-learn exports leave the
//! batch dimension unnamed — then optimise into one immutable plan.
//!
//! Concurrency: the plan is shared (`Arc<SimplePlan>`); each thread that predicts keeps its
//! own `SimpleState` (its value slots and op states, allocated once and reused run after
//! run), so any number of threads can predict at once without locks. A plan with stateful
//! ops (state carried from one run to the next) gets a fresh state per run instead, and a
//! state whose run failed is dropped.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use thread_local::ThreadLocal;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::unimpl::UnimplementedOp;

use super::OnnxGraph;
use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::signature::Signature;
use crate::tensor::{DataType, Tensor as PierTensor, TensorData};

/// Operators tract-onnx parses but cannot run correctly (checked before tract sees the model,
/// so the error names them and comes at load).
const KNOWN_UNSUPPORTED: &[&str] = &["ZipMap", "TreeEnsembleRegressor"];

/// An ONNX model run by tract.
pub struct TractModel {
    plan: Arc<TypedSimplePlan>,
    /// Each predicting thread's reusable run state (`None` after a failed run; rebuilt on
    /// the next). Unused when `stateless` is false. Boxed: a `ThreadLocal` is large, and
    /// models are moved about by value.
    states: Box<ThreadLocal<RefCell<Option<TypedSimpleState>>>>,
    /// No op of the plan keeps state between runs, so a run state may be reused.
    stateless: bool,
    signature: Signature,
    /// Set for tree-ensemble classifiers: tract's two-class labels are wrong, so labels are
    /// re-derived from the probabilities (`label output index`, `probabilities index`, labels).
    label_fix: Option<(usize, usize, Vec<i64>)>,
    /// The graph takes missing values ([`OnnxGraph::takes_missing_values`]).
    accepts_missing: bool,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl TractModel {
    /// Loads `path`. `signature`, if it has inputs, overrides what the file declares.
    pub fn load(path: &Path, signature: Option<Signature>, model_name: &str) -> Result<Self> {
        Self::from_graph(OnnxGraph::read(path, model_name)?, signature, model_name)
    }

    /// Loads a parsed graph (the whole file's, or a part of it cut out by the hybrid
    /// backend). `signature`, if it has inputs, overrides what the graph declares.
    pub fn from_graph(
        mut graph: OnnxGraph,
        signature: Option<Signature>,
        model_name: &str,
    ) -> Result<Self> {
        let load_err = |e: String| RuntimeError::Load {
            model: model_name.to_owned(),
            message: e,
        };
        let unsupported: Vec<String> = graph
            .operators()
            .into_iter()
            .filter(|op| KNOWN_UNSUPPORTED.contains(&op.as_str()))
            .collect();
        if !unsupported.is_empty() {
            return Err(unsupported_err(model_name, unsupported));
        }
        let declared = graph.declared_signature()?;
        let accepts_missing = graph.takes_missing_values();
        let signature = match signature {
            Some(s) if !s.inputs.is_empty() => s,
            _ => declared,
        };
        pad_binary_tree_base_values(&mut graph.proto);
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&graph.proto)
            .map_err(|e| load_err(format!("tract cannot read the graph: {e:#}")))?;
        let unimplemented: Vec<String> = model
            .nodes()
            .iter()
            .filter(|n| n.op_as::<UnimplementedOp>().is_some())
            .map(|n| {
                n.op.name()
                    .trim_start_matches("Unimplemented(")
                    .trim_end_matches(')')
                    .to_string()
            })
            .collect();
        if !unimplemented.is_empty() {
            return Err(unsupported_err(model_name, unimplemented));
        }
        let batch = model.symbols.sym("batch");
        for (i, spec) in signature.inputs.iter().enumerate() {
            let dims: TVec<TDim> = spec
                .shape
                .iter()
                .enumerate()
                .map(|(axis, &d)| match (axis, d) {
                    (_, d) if d >= 0 => TDim::from(d as usize),
                    (0, _) => TDim::from(batch.clone()),
                    (a, _) => TDim::from(model.symbols.sym(&format!("{}_{a}", spec.name))),
                })
                .collect();
            let fact = InferenceFact::dt_shape(tract_dtype(spec.dtype, &spec.name)?, dims);
            model
                .set_input_fact(i, fact)
                .map_err(|e| load_err(format!("input {:?}: {e:#}", spec.name)))?;
        }
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_err(format!("tract cannot plan the model: {e:#}")))?;
        let stateless = TypedSimpleState::new(&plan)
            .map(|state| state.op_states.iter().all(Option::is_none))
            .map_err(|e| load_err(format!("tract cannot start the model: {e:#}")))?;
        let label_fix = graph.tree_classifier_labels().and_then(|labels| {
            let label = signature
                .outputs
                .iter()
                .position(|o| o.dtype == DataType::Int64 && o.shape.len() == 1)?;
            let probs = signature.outputs.iter().position(|o| {
                o.dtype == DataType::Fp32 && o.shape.len() == 2 && o.shape[1] == labels.len() as i64
            })?;
            Some((label, probs, labels))
        });
        Ok(Self {
            plan,
            states: Box::default(),
            stateless,
            signature,
            label_fix,
            accepts_missing,
        })
    }
}

/// tract 0.23 wants one `base_values` entry per class label on a `TreeEnsembleClassifier`,
/// but ONNX's binary layout — two class labels, every leaf weight on class 0, one base
/// value — is what skl2onnx writes for a binary `GradientBoostingClassifier`. tract's own
/// binary handling only reads score column 0 (the second column is all zeros and is
/// discarded), so padding `base_values` with a 0 for that column keeps the meaning and lets
/// tract load the model. Labels are re-derived from the probabilities (`label_fix`).
fn pad_binary_tree_base_values(proto: &mut tract_onnx::pb::ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    for node in graph
        .node
        .iter_mut()
        .filter(|n| n.op_type == "TreeEnsembleClassifier")
    {
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
        let labels = attr("classlabels_int64s")
            .map(|a| a.ints.len())
            .or_else(|| attr("classlabels_strings").map(|a| a.strings.len()));
        let binary_layout =
            labels == Some(2) && attr("class_ids").is_some_and(|a| a.ints.iter().all(|&c| c == 0));
        if !binary_layout {
            continue;
        }
        if let Some(base) = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "base_values" && a.floats.len() == 1)
        {
            base.floats.push(0.0);
        }
    }
}

fn unsupported_err(model: &str, operators: Vec<String>) -> RuntimeError {
    RuntimeError::UnsupportedOperator {
        model: model.to_owned(),
        backend: "tract",
        operators,
    }
}

fn tract_dtype(dtype: DataType, name: &str) -> Result<DatumType> {
    Ok(match dtype {
        DataType::Bool => bool::datum_type(),
        DataType::Uint8 => u8::datum_type(),
        DataType::Int8 => i8::datum_type(),
        DataType::Int16 => i16::datum_type(),
        DataType::Int32 => i32::datum_type(),
        DataType::Int64 => i64::datum_type(),
        DataType::Fp32 => f32::datum_type(),
        DataType::Fp64 => f64::datum_type(),
        DataType::Bytes => {
            return Err(RuntimeError::InvalidInput(format!(
                "input {name:?}: tract does not take BYTES inputs"
            )));
        }
    })
}

fn to_tract(t: PierTensor) -> TractResult<TValue> {
    let shape = t.shape().to_vec();
    fn arr<T: Datum>(shape: &[usize], v: Vec<T>) -> TractResult<Tensor> {
        Ok(tract_ndarray::ArrayD::from_shape_vec(shape, v)?.into_tensor())
    }
    let tensor = match t.into_data() {
        TensorData::Bool(v) => arr(&shape, v)?,
        TensorData::Uint8(v) => arr(&shape, v)?,
        TensorData::Int8(v) => arr(&shape, v)?,
        TensorData::Int16(v) => arr(&shape, v)?,
        TensorData::Int32(v) => arr(&shape, v)?,
        TensorData::Int64(v) => arr(&shape, v)?,
        TensorData::Fp32(v) => arr(&shape, v)?,
        TensorData::Fp64(v) => arr(&shape, v)?,
        TensorData::Bytes(_) => {
            return Err(TractError::msg("BYTES inputs are not supported by tract"));
        }
    };
    Ok(tensor.into_tvalue())
}

fn from_tract(t: &Tensor) -> TractResult<PierTensor> {
    fn v<T: Datum + Clone>(t: &Tensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().cloned().collect())
    }
    let data = match t.datum_type() {
        DatumType::Bool => TensorData::Bool(v(t)?),
        DatumType::U8 => TensorData::Uint8(v(t)?),
        DatumType::I8 => TensorData::Int8(v(t)?),
        DatumType::I16 => TensorData::Int16(v(t)?),
        DatumType::I32 => TensorData::Int32(v(t)?),
        DatumType::I64 => TensorData::Int64(v(t)?),
        DatumType::F32 => TensorData::Fp32(v(t)?),
        DatumType::F64 => TensorData::Fp64(v(t)?),
        // Shape arithmetic (e.g. a label computed from an ArgMax index) can surface as TDim.
        DatumType::TDim => TensorData::Int64(v(t.cast_to::<i64>()?.as_ref())?),
        DatumType::String => TensorData::Bytes(
            v::<String>(t)?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
        ),
        other => {
            return Err(TractError::msg(format!(
                "output datatype {other:?} is not supported"
            )));
        }
    };
    Ok(PierTensor::new(t.shape().to_vec(), data)?)
}

impl TractModel {
    /// The width (second dimension) of output `i` if tract's typed plan says it is a 2-D
    /// `FP32` tensor; `Some(None)` when that width is symbolic; `None` if it is not 2-D FP32.
    pub fn f32_matrix_output(&self, i: usize) -> Option<Option<usize>> {
        let fact = self.plan.model().output_fact(i).ok()?;
        if fact.datum_type != f32::datum_type() || fact.rank() != 2 {
            return None;
        }
        Some(tract_onnx::prelude::tract_data::internal::DimLike::as_usize(&fact.shape[1]))
    }
}

impl TractModel {
    /// Runs the plan on this thread's reusable state (see the module's concurrency note).
    fn run(&self, values: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if !self.stateless {
            return self.plan.run(values);
        }
        let cell = self.states.get_or(|| RefCell::new(None));
        // Never borrowed twice (a run does not call back into this model), but a fresh
        // state is always correct.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return self.plan.run(values);
        };
        let state = match slot.as_mut() {
            Some(state) => state,
            None => slot.insert(TypedSimpleState::new(&self.plan)?),
        };
        let outputs = state.run(values);
        if outputs.is_err() {
            // A failed run can leave values and resolved symbols behind.
            *slot = None;
        }
        outputs
    }
}

impl Model for TractModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<PierTensor>) -> Result<Vec<PierTensor>> {
        let values: TVec<TValue> = inputs
            .into_iter()
            .map(to_tract)
            .collect::<TractResult<_>>()
            .map_err(|e| RuntimeError::InvalidInput(format!("{e:#}")))?;
        let outputs = self
            .run(values)
            .map_err(|e| RuntimeError::Predict(format!("{e:#}")))?;
        let mut outputs: Vec<PierTensor> = outputs
            .iter()
            .map(|t| from_tract(t))
            .collect::<TractResult<_>>()
            .map_err(|e| RuntimeError::Predict(format!("{e:#}")))?;
        if let Some((label, probs, labels)) = &self.label_fix {
            fix_labels(&mut outputs, *label, *probs, labels)?;
        }
        Ok(outputs)
    }

    fn backend(&self) -> &'static str {
        "tract"
    }

    fn accepts_missing(&self) -> bool {
        self.accepts_missing
    }
}

/// Sets each row's label to the class with the highest probability (first on ties, as
/// onnxruntime does).
fn fix_labels(
    outputs: &mut [PierTensor],
    label: usize,
    probs: usize,
    labels: &[i64],
) -> Result<()> {
    let (Some(p), Some(l)) = (outputs.get(probs), outputs.get(label)) else {
        return Err(RuntimeError::Predict("classifier outputs missing".into()));
    };
    let (Some(p), k) = (p.as_f32(), labels.len()) else {
        return Err(RuntimeError::Predict(
            "classifier probabilities are not FP32".into(),
        ));
    };
    let rows = l.rows();
    if p.len() != rows * k {
        return Err(RuntimeError::Predict(
            "classifier outputs disagree on rows".into(),
        ));
    }
    let fixed: Vec<i64> = p
        .chunks_exact(k)
        .map(|row| labels[super::first_argmax(row)])
        .collect();
    outputs[label] = PierTensor::new(vec![rows], TensorData::Int64(fixed))?;
    Ok(())
}
