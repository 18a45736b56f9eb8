//! Reading an `ai.onnx.ml` tree-ensemble node's attributes from the protobuf and compiling
//! them onto the native kernel ([`pier_algorithms::trees::OnnxEnsemble`]).
//!
//! Only what the native kernel reproduces exactly is compiled: `TreeEnsembleClassifier` and
//! `TreeEnsembleRegressor` with `float` attributes (the `*_as_tensor` double forms are left
//! to another backend). Every refusal is an error saying why, which the caller logs before
//! running the graph another way. Pure functions; run once at load.

use pier_algorithms::trees::{OnnxEnsemble, OnnxTreeAttributes, OnnxTreeKind};
use tract_onnx::pb;

/// The operator types compiled natively.
pub const NATIVE_TREE_OPS: [&str; 2] = ["TreeEnsembleClassifier", "TreeEnsembleRegressor"];

/// True for a node this module compiles.
pub fn is_tree_ensemble(node: &pb::NodeProto) -> bool {
    node.domain == "ai.onnx.ml" && NATIVE_TREE_OPS.contains(&node.op_type.as_str())
}

/// Class labels of a compiled classifier as the graph names them.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassLabels {
    /// `classlabels_int64s`.
    Int(Vec<i64>),
    /// `classlabels_strings`.
    Strings(Vec<String>),
}

/// A compiled ensemble and its labels.
#[derive(Debug)]
pub struct CompiledTrees {
    /// The ensemble.
    pub ensemble: OnnxEnsemble,
    /// Class labels (classifiers only).
    pub labels: Option<ClassLabels>,
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &pb::NodeProto, name: &str) -> Vec<i64> {
    attr(node, name).map(|a| a.ints.clone()).unwrap_or_default()
}

fn floats(node: &pb::NodeProto, name: &str) -> Vec<f32> {
    attr(node, name)
        .map(|a| a.floats.clone())
        .unwrap_or_default()
}

fn strings(node: &pb::NodeProto, name: &str) -> Result<Vec<String>, String> {
    attr(node, name)
        .map(|a| {
            a.strings
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone())
                        .map_err(|_| format!("attribute {name} is not UTF-8"))
                })
                .collect()
        })
        .unwrap_or(Ok(Vec::new()))
}

fn string(node: &pb::NodeProto, name: &str) -> Result<Option<String>, String> {
    attr(node, name)
        .map(|a| {
            String::from_utf8(a.s.clone()).map_err(|_| format!("attribute {name} is not UTF-8"))
        })
        .transpose()
}

/// Compiles `node` for inputs of `n_features` columns (`None`: as many as the trees use).
pub fn compile(node: &pb::NodeProto, n_features: Option<usize>) -> Result<CompiledTrees, String> {
    if !is_tree_ensemble(node) {
        return Err(format!(
            "{} is not a tree ensemble Pier compiles",
            node.op_type
        ));
    }
    let doubles: Vec<&str> = node
        .attribute
        .iter()
        .filter(|a| a.name.ends_with("_as_tensor"))
        .map(|a| a.name.as_str())
        .collect();
    if !doubles.is_empty() {
        return Err(format!(
            "double-precision attributes ({}) are not compiled",
            doubles.join(", ")
        ));
    }
    let classifier = node.op_type == "TreeEnsembleClassifier";
    let prefix = if classifier { "class" } else { "target" };
    let (kind, labels) = if classifier {
        let int_labels = ints(node, "classlabels_int64s");
        let string_labels = strings(node, "classlabels_strings")?;
        match (int_labels.is_empty(), string_labels.is_empty()) {
            (false, true) => (
                OnnxTreeKind::Classifier {
                    labels: int_labels.clone(),
                },
                Some(ClassLabels::Int(int_labels)),
            ),
            (true, false) => (
                OnnxTreeKind::Classifier {
                    labels: (0..string_labels.len() as i64).collect(),
                },
                Some(ClassLabels::Strings(string_labels)),
            ),
            _ => {
                return Err(
                    "a classifier needs exactly one of classlabels_int64s and classlabels_strings"
                        .into(),
                );
            }
        }
    } else {
        let n_targets = attr(node, "n_targets").map_or(1, |a| a.i);
        let n_targets = usize::try_from(n_targets)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("n_targets {n_targets} must be positive"))?;
        (OnnxTreeKind::Regressor { n_targets }, None)
    };
    let attributes = OnnxTreeAttributes {
        nodes_treeids: ints(node, "nodes_treeids"),
        nodes_nodeids: ints(node, "nodes_nodeids"),
        nodes_featureids: ints(node, "nodes_featureids"),
        nodes_modes: strings(node, "nodes_modes")?,
        nodes_values: floats(node, "nodes_values"),
        nodes_truenodeids: ints(node, "nodes_truenodeids"),
        nodes_falsenodeids: ints(node, "nodes_falsenodeids"),
        nodes_missing_value_tracks_true: ints(node, "nodes_missing_value_tracks_true"),
        weight_ids: ints(node, &format!("{prefix}_ids")),
        weight_nodeids: ints(node, &format!("{prefix}_nodeids")),
        weight_treeids: ints(node, &format!("{prefix}_treeids")),
        weights: floats(node, &format!("{prefix}_weights")),
        base_values: floats(node, "base_values"),
        post_transform: string(node, "post_transform")?,
        aggregate_function: string(node, "aggregate_function")?,
        kind,
    };
    let ensemble = OnnxEnsemble::compile(&attributes, n_features).map_err(|e| e.to_string())?;
    Ok(CompiledTrees { ensemble, labels })
}
