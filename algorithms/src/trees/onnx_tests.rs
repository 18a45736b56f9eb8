//! Tests of the ONNX-ML tree compiler: every node mode against onnxruntime's comparisons on
//! edge values, aggregates, the classifier layouts and refusals.

use super::error::TreeError;
use super::onnx::*;
use super::onnx_lower::next_up;

/// One split on feature 0 at `t` with `mode`, true leaf 1.0, false leaf 2.0.
fn stump(mode: &str, t: f32, nan_true: bool) -> OnnxTreeAttributes {
    OnnxTreeAttributes {
        nodes_treeids: vec![0, 0, 0],
        nodes_nodeids: vec![0, 1, 2],
        nodes_featureids: vec![0, 0, 0],
        nodes_modes: vec![mode.into(), "LEAF".into(), "LEAF".into()],
        nodes_values: vec![t, 0.0, 0.0],
        nodes_truenodeids: vec![1, 0, 0],
        nodes_falsenodeids: vec![2, 0, 0],
        nodes_missing_value_tracks_true: vec![i64::from(nan_true), 0, 0],
        weight_ids: vec![0, 0],
        weight_nodeids: vec![1, 2],
        weight_treeids: vec![0, 0],
        weights: vec![1.0, 2.0],
        ..Default::default()
    }
}

fn goes_true(mode: &str, t: f32, nan_true: bool, x: f32) -> bool {
    let m = OnnxEnsemble::compile(&stump(mode, t, nan_true), None).unwrap();
    let out = m.predict(&[x], 1, 1).unwrap().scores[0];
    assert!(out == 1.0 || out == 2.0, "{out}");
    out == 1.0
}

/// What onnxruntime's `ProcessTreeNodeLeave` decides.
fn reference(mode: &str, t: f32, nan_true: bool, x: f32) -> bool {
    let cmp = match mode {
        "BRANCH_LEQ" => x <= t,
        "BRANCH_LT" => x < t,
        "BRANCH_GTE" => x >= t,
        "BRANCH_GT" => x > t,
        "BRANCH_EQ" => x == t,
        "BRANCH_NEQ" => x != t,
        _ => unreachable!(),
    };
    cmp || (nan_true && x.is_nan())
}

#[test]
fn every_mode_matches_onnxruntime_on_edge_values() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.5,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let modes = [
        "BRANCH_LEQ",
        "BRANCH_LT",
        "BRANCH_GTE",
        "BRANCH_GT",
        "BRANCH_EQ",
        "BRANCH_NEQ",
    ];
    for mode in modes {
        for &t in &specials {
            for &x in specials
                .iter()
                .chain(&[next_up(1.0), 1.0 - f32::EPSILON / 2.0])
            {
                for nan_true in [false, true] {
                    assert_eq!(
                        goes_true(mode, t, nan_true, x),
                        reference(mode, t, nan_true, x),
                        "{mode} t={t} x={x} nan_true={nan_true}"
                    );
                }
            }
        }
    }
}

#[test]
fn aggregates_and_base_values_follow_onnxruntime() {
    // Two stumps: tree 0 gives 1 or 2, tree 1 gives 10 or 20.
    let mut a = stump("BRANCH_LEQ", 0.5, false);
    a.nodes_treeids.extend([1, 1, 1]);
    a.nodes_nodeids.extend([0, 1, 2]);
    a.nodes_featureids.extend([0, 0, 0]);
    a.nodes_modes
        .extend(["BRANCH_LEQ".into(), "LEAF".into(), "LEAF".into()]);
    a.nodes_values.extend([0.5, 0.0, 0.0]);
    a.nodes_truenodeids.extend([1, 0, 0]);
    a.nodes_falsenodeids.extend([2, 0, 0]);
    a.weight_ids.extend([0, 0]);
    a.weight_nodeids.extend([1, 2]);
    a.weight_treeids.extend([1, 1]);
    a.weights.extend([10.0, 20.0]);
    a.base_values = vec![100.0];
    let run = |agg: &str| {
        let mut a = a.clone();
        a.aggregate_function = Some(agg.into());
        OnnxEnsemble::compile(&a, None)
            .unwrap()
            .predict(&[0.0, 1.0], 2, 1)
            .unwrap()
            .scores
    };
    assert_eq!(run("SUM"), vec![111.0, 122.0]);
    assert_eq!(run("AVERAGE"), vec![105.5, 111.0]);
    assert_eq!(run("MIN"), vec![101.0, 102.0]);
    assert_eq!(run("MAX"), vec![110.0, 120.0]);
}

#[test]
fn binary_classifier_with_one_column_gives_both_probabilities() {
    let mut a = stump("BRANCH_LEQ", 0.5, true);
    a.weights = vec![-2.0, 3.0];
    a.base_values = vec![0.5];
    a.post_transform = Some("LOGISTIC".into());
    a.kind = OnnxTreeKind::Classifier { labels: vec![7, 9] };
    let m = OnnxEnsemble::compile(&a, None).unwrap();
    let p = m.predict(&[0.0, 1.0, f32::NAN], 3, 1).unwrap();
    let l = |v: f32| 1.0 / (1.0 + (-v).exp());
    let want = [l(1.5), l(-1.5), l(-3.5), l(3.5), l(1.5), l(-1.5)];
    for (g, w) in p.scores.iter().zip(want) {
        assert!((g - w).abs() < 1e-7, "{:?}", p.scores);
    }
    assert_eq!(p.labels.unwrap(), vec![7, 9, 7]);
}

#[test]
fn forest_leaves_with_every_class_become_one_tree_per_class() {
    let mut a = stump("BRANCH_LT", 0.0, false);
    a.weight_ids = vec![0, 1, 2, 0, 1, 2];
    a.weight_nodeids = vec![1, 1, 1, 2, 2, 2];
    a.weight_treeids = vec![0; 6];
    a.weights = vec![0.2, 0.5, 0.3, 0.6, 0.1, 0.3];
    a.kind = OnnxTreeKind::Classifier {
        labels: vec![0, 1, 2],
    };
    let m = OnnxEnsemble::compile(&a, None).unwrap();
    let p = m.predict(&[-1.0, 1.0], 2, 1).unwrap();
    assert_eq!(p.scores, vec![0.2, 0.5, 0.3, 0.6, 0.1, 0.3]);
    assert_eq!(p.labels.unwrap(), vec![1, 0]);
}

#[test]
fn ambiguous_models_are_refused_as_unsupported() {
    let mut split_tree = stump("BRANCH_LEQ", 0.5, false);
    split_tree.nodes_treeids = vec![0, 1, 0];
    assert!(OnnxEnsemble::compile(&split_tree, None).is_err());
    let mut mixed = stump("BRANCH_LEQ", 0.5, false);
    mixed.kind = OnnxTreeKind::Regressor { n_targets: 2 };
    mixed.weight_ids = vec![0, 1];
    // Summed, a leaf without a weight for a target adds nothing to it.
    let sums = OnnxEnsemble::compile(&mixed, None).unwrap();
    assert_eq!(
        sums.predict(&[0.0, 1.0], 2, 1).unwrap().scores,
        vec![1.0, 0.0, 0.0, 2.0]
    );
    // MIN/MAX depend on which trees added to a target: refused.
    mixed.aggregate_function = Some("MIN".into());
    assert!(matches!(
        OnnxEnsemble::compile(&mixed, None),
        Err(TreeError::Unsupported(_))
    ));
    let mut bad_mode = stump("BRANCH_MEMBER", 0.5, false);
    bad_mode.post_transform = None;
    assert!(matches!(
        OnnxEnsemble::compile(&bad_mode, None),
        Err(TreeError::Unsupported(_))
    ));
    let no_weight = OnnxTreeAttributes {
        weight_ids: vec![0],
        weight_nodeids: vec![1],
        weight_treeids: vec![0],
        weights: vec![1.0],
        ..stump("BRANCH_LEQ", 0.5, false)
    };
    assert!(OnnxEnsemble::compile(&no_weight, None).is_err());
    assert!(matches!(
        OnnxEnsemble::compile(&stump("BRANCH_LEQ", 0.5, false), Some(0)),
        Err(TreeError::WrongFeatureCount { .. })
    ));
}
