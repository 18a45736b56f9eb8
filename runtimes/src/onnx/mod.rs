//! ONNX models: reading the graph (operators, declared inputs and outputs, classifier
//! labels) independently of the backend that runs it; the default backend ([`load_default`]:
//! tract, with small dense networks run natively by [`dense`] and `ai.onnx.ml` tree
//! ensembles and the operators around them by [`hybrid`]) and (feature `ort`) the ONNX
//! Runtime backend.

pub mod dense;
pub mod hybrid;
#[cfg(feature = "ort")]
pub mod onnxruntime;
pub mod tail;
pub mod tract;
pub mod trees;

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::signature::{Signature, TensorSpec};
use crate::tensor::DataType;

/// Loads `path` on the default backend: a small dense network ([`dense::DenseModel`]) runs
/// natively; a graph with a tree ensemble (or a `ZipMap`) the [`hybrid::HybridModel`] plan
/// fits runs natively around tract; anything else on tract.
/// `signature`, if it has inputs, overrides what the file declares.
pub fn load_default(
    path: &Path,
    signature: Option<Signature>,
    model_name: &str,
) -> Result<Arc<dyn Model>> {
    let graph = OnnxGraph::read(path, model_name)?;
    let declared = graph.declared_signature()?;
    let signature = match signature {
        Some(mut s) if !s.inputs.is_empty() => {
            if s.outputs.is_empty() {
                s.outputs = declared.outputs;
            }
            s
        }
        _ => declared,
    };
    if let Some(model) = dense::DenseModel::plan(&graph, &signature, model_name)? {
        return Ok(Arc::new(model));
    }
    if let Some(model) = hybrid::HybridModel::plan(&graph, &signature, model_name)? {
        return Ok(Arc::new(model));
    }
    Ok(Arc::new(tract::TractModel::from_graph(
        graph,
        Some(signature),
        model_name,
    )?))
}

/// The values of a `FLOAT` tensor proto, from `float_data` or little-endian `raw_data`;
/// `None` when `raw_data` is not a whole number of floats. The caller checks `data_type`.
pub(crate) fn f32_data(t: &pb::TensorProto) -> Option<Vec<f32>> {
    if !t.float_data.is_empty() {
        return Some(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return None;
    }
    Some(
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// The index of a row's first largest value, as ONNX's `ArgMax` (and onnxruntime's
/// classifiers) pick a label.
pub(crate) fn first_argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// What Pier reads from an ONNX file before handing it to a backend.
#[derive(Clone, Debug)]
pub struct OnnxGraph {
    /// The parsed protobuf.
    pub proto: pb::ModelProto,
}

impl OnnxGraph {
    /// Reads and parses an ONNX file.
    pub fn read(path: &Path, model: &str) -> Result<Self> {
        let proto =
            tract_onnx::onnx()
                .proto_model_for_path(path)
                .map_err(|e| RuntimeError::Load {
                    model: model.to_owned(),
                    message: format!("{} is not a readable ONNX model: {e}", path.display()),
                })?;
        Ok(Self { proto })
    }

    fn graph(&self) -> Option<&pb::GraphProto> {
        self.proto.graph.as_ref()
    }

    /// Operator types used by the top-level graph, in order of first use.
    pub fn operators(&self) -> Vec<String> {
        let mut ops: Vec<String> = Vec::new();
        for node in self.graph().map(|g| g.node.as_slice()).unwrap_or_default() {
            if !ops.contains(&node.op_type) {
                ops.push(node.op_type.clone());
            }
        }
        ops
    }

    /// True when the graph takes missing values (NaN) in its inputs: it contains an
    /// `ai.onnx.ml` tree ensemble (`TreeEnsembleClassifier`, `TreeEnsembleRegressor`,
    /// `TreeEnsemble`), whose nodes send NaN down their missing-value branch, or an
    /// `Imputer`, which replaces it.
    pub fn takes_missing_values(&self) -> bool {
        const TAKES_MISSING: [&str; 4] = [
            "TreeEnsembleClassifier",
            "TreeEnsembleRegressor",
            "TreeEnsemble",
            "Imputer",
        ];
        self.graph().is_some_and(|g| {
            g.node
                .iter()
                .any(|n| n.domain == "ai.onnx.ml" && TAKES_MISSING.contains(&n.op_type.as_str()))
        })
    }

    /// Integer class labels of the first `TreeEnsembleClassifier`, if any.
    pub fn tree_classifier_labels(&self) -> Option<Vec<i64>> {
        let node = self
            .graph()?
            .node
            .iter()
            .find(|n| n.op_type == "TreeEnsembleClassifier")?;
        let attr = node
            .attribute
            .iter()
            .find(|a| a.name == "classlabels_int64s")?;
        Some(attr.ints.clone())
    }

    /// The signature the file declares. Unnamed or unknown dimensions become `-1`; outputs
    /// that are not tensors (ZipMap's sequence of maps) are `BYTES`, one JSON object a row.
    pub fn declared_signature(&self) -> Result<Signature> {
        let Some(graph) = self.graph() else {
            return Ok(Signature::default());
        };
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|i| i.name.as_str()).collect();
        let spec = |vi: &pb::ValueInfoProto| -> Result<TensorSpec> {
            use pb::type_proto::Value;
            match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(Value::TensorType(t)) => {
                    let shape = t
                        .shape
                        .as_ref()
                        .map(|s| {
                            s.dim
                                .iter()
                                .map(|d| match d.value {
                                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                                        v
                                    }
                                    _ => -1,
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(TensorSpec::new(
                        vi.name.clone(),
                        onnx_dtype(t.elem_type, &vi.name)?,
                        shape,
                    ))
                }
                _ => Ok(TensorSpec::new(vi.name.clone(), DataType::Bytes, vec![-1])),
            }
        };
        Ok(Signature {
            inputs: graph
                .input
                .iter()
                .filter(|i| !initializers.contains(i.name.as_str()))
                .map(spec)
                .collect::<Result<_>>()?,
            outputs: graph.output.iter().map(spec).collect::<Result<_>>()?,
        })
    }
}

/// ONNX `TensorProto.DataType` codes to Pier datatypes.
fn onnx_dtype(code: i32, name: &str) -> Result<DataType> {
    Ok(match code {
        1 => DataType::Fp32,
        2 => DataType::Uint8,
        3 => DataType::Int8,
        5 => DataType::Int16,
        6 => DataType::Int32,
        7 => DataType::Int64,
        8 => DataType::Bytes,
        9 => DataType::Bool,
        11 => DataType::Fp64,
        other => {
            return Err(RuntimeError::InvalidInput(format!(
                "tensor {name:?} has ONNX element type {other}, which Pier does not serve"
            )));
        }
    })
}

/// Reads an ONNX file's declared signature (used when importing a model without one).
pub fn inspect_signature(path: &Path) -> Result<Signature> {
    OnnxGraph::read(path, &path.display().to_string())?.declared_signature()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_ensembles_take_missing_values() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx");
        for (name, want) in [
            ("cancer-forest", true),
            ("cancer-gbc100", true),
            ("diabetes-gbr", true),
            ("iris-logreg", false),
            ("iris-mlp", false),
        ] {
            let graph = OnnxGraph::read(&dir.join(name).join("model.onnx"), name).unwrap();
            assert_eq!(graph.takes_missing_values(), want, "{name}");
        }
    }
}
