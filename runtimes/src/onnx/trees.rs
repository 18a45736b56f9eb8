//! Reading an `ai.onnx.ml` tree-ensemble node's attributes from the protobuf and compiling
//! them onto the native kernel ([`pier_algorithms::trees::OnnxEnsemble`]).
//!
//! Only what the native kernel reproduces exactly is compiled: `TreeEnsembleClassifier` and
//! `TreeEnsembleRegressor` with `float` attributes (the `*_as_tensor` double forms are left
//! to another backend), and opset 5's `TreeEnsemble` with `float` splits and weights,
//! rewritten into the older form as onnxruntime does (`convert_to_v3`: trees renumbered
//! depth-first, true subtree first; `BRANCH_MEMBER` unrolled into a chain of `BRANCH_EQ`). Every refusal is an error saying why, which the caller logs before
//! running the graph another way. Pure functions; run once at load.

use pier_algorithms::trees::{OnnxEnsemble, OnnxTreeAttributes, OnnxTreeKind};
use tract_onnx::pb;

/// The operator types compiled natively.
pub const NATIVE_TREE_OPS: [&str; 3] = [
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "TreeEnsemble",
];

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

/// The attribute `name` of `node`.
pub(super) fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
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
    if node.op_type == "TreeEnsemble" {
        let attributes = v5::to_v3(node)?;
        let ensemble = OnnxEnsemble::compile(&attributes, n_features).map_err(|e| e.to_string())?;
        return Ok(CompiledTrees {
            ensemble,
            labels: None,
        });
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

/// Opset 5's `TreeEnsemble`, rewritten into the `TreeEnsembleRegressor` form.
mod v5 {
    use super::{OnnxTreeAttributes, OnnxTreeKind, attr, ints, pb};

    /// Most nodes the rewrite may produce (shared subtrees and member lists are copied).
    const MAX_NODES: usize = 1 << 22;
    const MAX_DEPTH: usize = 512;

    fn tensor_f32(node: &pb::NodeProto, name: &str) -> Result<Vec<f32>, String> {
        let Some(t) = attr(node, name).and_then(|a| a.t.as_ref()) else {
            return Ok(Vec::new());
        };
        if t.data_type != 1 {
            return Err(format!(
                "{name} has element type {} (only float is compiled)",
                t.data_type
            ));
        }
        crate::onnx::f32_data(t).ok_or_else(|| format!("{name} has {} raw bytes", t.raw_data.len()))
    }

    fn tensor_u8(node: &pb::NodeProto, name: &str) -> Result<Vec<u8>, String> {
        let Some(t) = attr(node, name).and_then(|a| a.t.as_ref()) else {
            return Ok(Vec::new());
        };
        if t.data_type != 2 {
            return Err(format!(
                "{name} has element type {}, not uint8",
                t.data_type
            ));
        }
        if !t.raw_data.is_empty() {
            return Ok(t.raw_data.clone());
        }
        t.int32_data
            .iter()
            .map(|&v| u8::try_from(v).map_err(|_| format!("{name} holds {v}")))
            .collect()
    }

    struct V5 {
        modes: Vec<u8>,
        splits: Vec<f32>,
        features: Vec<i64>,
        true_ids: Vec<i64>,
        true_leaf: Vec<i64>,
        false_ids: Vec<i64>,
        false_leaf: Vec<i64>,
        tracks: Vec<i64>,
        leaf_targets: Vec<i64>,
        leaf_weights: Vec<f32>,
        members: Vec<Vec<f32>>,
    }

    const MODES: [&str; 6] = [
        "BRANCH_LEQ",
        "BRANCH_LT",
        "BRANCH_GTE",
        "BRANCH_GT",
        "BRANCH_EQ",
        "BRANCH_NEQ",
    ];
    const MEMBER: u8 = 6;

    pub(super) fn to_v3(node: &pb::NodeProto) -> Result<OnnxTreeAttributes, String> {
        let modes = tensor_u8(node, "nodes_modes")?;
        let membership = tensor_f32(node, "membership_values")?;
        // Member lists, one per BRANCH_MEMBER node, separated by NaN.
        let mut members = vec![Vec::new(); modes.len()];
        let mut at = 0;
        for (i, &m) in modes.iter().enumerate() {
            if m == MEMBER {
                while at < membership.len() && !membership[at].is_nan() {
                    members[i].push(membership[at]);
                    at += 1;
                }
                at += 1;
            }
        }
        let v = V5 {
            splits: tensor_f32(node, "nodes_splits")?,
            features: ints(node, "nodes_featureids"),
            true_ids: ints(node, "nodes_truenodeids"),
            true_leaf: ints(node, "nodes_trueleafs"),
            false_ids: ints(node, "nodes_falsenodeids"),
            false_leaf: ints(node, "nodes_falseleafs"),
            tracks: ints(node, "nodes_missing_value_tracks_true"),
            leaf_targets: ints(node, "leaf_targetids"),
            leaf_weights: tensor_f32(node, "leaf_weights")?,
            members,
            modes,
        };
        let n = v.modes.len();
        for (name, len) in [
            ("nodes_splits", v.splits.len()),
            ("nodes_featureids", v.features.len()),
            ("nodes_truenodeids", v.true_ids.len()),
            ("nodes_trueleafs", v.true_leaf.len()),
            ("nodes_falsenodeids", v.false_ids.len()),
            ("nodes_falseleafs", v.false_leaf.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries for {n} nodes"));
            }
        }
        if !v.tracks.is_empty() && v.tracks.len() != n {
            return Err(format!(
                "nodes_missing_value_tracks_true has {} entries for {n} nodes",
                v.tracks.len()
            ));
        }
        if v.leaf_targets.len() != v.leaf_weights.len() {
            return Err("leaf_targetids and leaf_weights differ in length".into());
        }
        let n_targets = attr(node, "n_targets").map_or(0, |a| a.i);
        let n_targets = usize::try_from(n_targets)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| format!("n_targets {n_targets} must be positive"))?;
        // onnxruntime reads these integers through its own enums (`ml_common.h`).
        let aggregate = match attr(node, "aggregate_function").map_or(1, |a| a.i) {
            0 => "AVERAGE",
            1 => "SUM",
            2 => "MIN",
            3 => "MAX",
            other => return Err(format!("aggregate_function {other}")),
        };
        let post = match attr(node, "post_transform").map_or(0, |a| a.i) {
            0 => "NONE",
            1 => "LOGISTIC",
            2 => "SOFTMAX",
            3 => "SOFTMAX_ZERO",
            4 => "PROBIT",
            other => return Err(format!("post_transform {other}")),
        };
        let mut out = OnnxTreeAttributes {
            post_transform: Some(post.into()),
            aggregate_function: Some(aggregate.into()),
            kind: OnnxTreeKind::Regressor { n_targets },
            ..Default::default()
        };
        for (tree, &root) in ints(node, "tree_roots").iter().enumerate() {
            let r = usize::try_from(root)
                .ok()
                .filter(|&r| r < n)
                .ok_or_else(|| format!("tree_roots[{tree}] = {root} is not a node"))?;
            let leaf = v.false_ids[r] == v.true_ids[r];
            emit(&v, &mut out, r, tree as i64, 0, 0, leaf, 0)?;
        }
        Ok(out)
    }

    /// onnxruntime's `transformInputOneTree`: appends the subtree at `id` numbered from
    /// `node_id`; returns the last id used.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        v: &V5,
        out: &mut OnnxTreeAttributes,
        id: usize,
        tree: i64,
        node_id: i64,
        member: usize,
        leaf: bool,
        depth: usize,
    ) -> Result<i64, String> {
        if depth > MAX_DEPTH || out.nodes_nodeids.len() >= MAX_NODES {
            return Err("the trees are too deep or too large once unrolled".into());
        }
        out.nodes_nodeids.push(node_id);
        out.nodes_treeids.push(tree);
        if leaf {
            let target = *v
                .leaf_targets
                .get(id)
                .ok_or_else(|| format!("leaf {id} out of range"))?;
            out.nodes_modes.push("LEAF".into());
            out.weight_ids.push(target);
            out.weight_nodeids.push(node_id);
            out.weight_treeids.push(tree);
            out.weights.push(v.leaf_weights[id]);
            out.nodes_featureids.push(0);
            out.nodes_truenodeids.push(0);
            out.nodes_falsenodeids.push(0);
            out.nodes_values.push(0.0);
            out.nodes_missing_value_tracks_true.push(0);
            return Ok(node_id);
        }
        if id >= v.modes.len() {
            return Err(format!("node {id} out of range"));
        }
        out.nodes_featureids.push(v.features[id]);
        out.nodes_missing_value_tracks_true
            .push(v.tracks.get(id).copied().unwrap_or(0));
        let mode = v.modes[id];
        if mode == MEMBER {
            let value = *v.members[id]
                .get(member)
                .ok_or_else(|| format!("node {id}: BRANCH_MEMBER without values"))?;
            out.nodes_modes.push("BRANCH_EQ".into());
            out.nodes_values.push(value);
        } else {
            let name = MODES
                .get(usize::from(mode))
                .ok_or_else(|| format!("node {id}: mode {mode}"))?;
            out.nodes_modes.push((*name).into());
            out.nodes_values.push(v.splits[id]);
        }
        let false_slot = out.nodes_falsenodeids.len();
        out.nodes_falsenodeids.push(0);
        out.nodes_truenodeids.push(node_id + 1);
        let child = |ids: &[i64], k: usize| {
            usize::try_from(ids[k]).map_err(|_| format!("node {k}: child {}", ids[k]))
        };
        let last_true = emit(
            v,
            out,
            child(&v.true_ids, id)?,
            tree,
            node_id + 1,
            0,
            v.true_leaf[id] != 0,
            depth + 1,
        )?;
        let false_id = last_true + 1;
        out.nodes_falsenodeids[false_slot] = false_id;
        if mode == MEMBER && member + 1 < v.members[id].len() {
            emit(v, out, id, tree, false_id, member + 1, false, depth + 1)
        } else {
            emit(
                v,
                out,
                child(&v.false_ids, id)?,
                tree,
                false_id,
                0,
                v.false_leaf[id] != 0,
                depth + 1,
            )
        }
    }
}
