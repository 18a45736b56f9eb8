//! ONNX-ML tree ensembles (`ai.onnx.ml` `TreeEnsembleClassifier` and
//! `TreeEnsembleRegressor`) compiled onto the native kernel, computing exactly what
//! onnxruntime computes.
//!
//! [`OnnxTreeAttributes`] holds the operator's attributes as the graph stores them;
//! [`OnnxEnsemble::compile`] turns every tree into the readers' intermediate form, using
//! only the kernel's `x < t` split (in `f32`, as onnxruntime compares a float input):
//!
//! | ONNX mode | go to the true child iff | lowered as |
//! |---|---|---|
//! | `BRANCH_LT` | `x < t` | `x < t` |
//! | `BRANCH_LEQ` | `x <= t` | `x < next_up(t)` |
//! | `BRANCH_GTE` | `x >= t` | `!(x < t)` (children swapped) |
//! | `BRANCH_GT` | `x > t` | `!(x < next_up(t))` (children swapped) |
//! | `BRANCH_EQ` | `x == t` | `!(x < t)`, then `x < next_up(t)` (false subtree copied) |
//! | `BRANCH_NEQ` | `x != t` | as `BRANCH_EQ` with the children swapped |
//!
//! A NaN input takes the true child when `nodes_missing_value_tracks_true` is set, and for
//! `BRANCH_NEQ` always (`NaN != t` holds); NaN and infinite thresholds become splits that
//! send every number one way. Leaves that add to several classes (random forests) become
//! one tree per class.
//!
//! Sums run in `f32` from zero in tree order and the base values are added afterwards, as
//! onnxruntime's `TreeAggregator*` do; its classifier rules (the binary layout with one
//! weight column, labels, `has_score`) and post transforms (`LOGISTIC`, `SOFTMAX`,
//! `SOFTMAX_ZERO`, `PROBIT`) are reproduced in `f32`. Anything onnxruntime leaves
//! ambiguous or undefined (a tree id split in two runs, two weights for one class on one
//! leaf, `PROBIT` on a one-column binary classifier, …) is refused as
//! [`TreeError::Unsupported`], so the caller can run the graph elsewhere.
//!
//! Concurrency: compiled once at load; an [`OnnxEnsemble`] is immutable and `Send + Sync`,
//! and every predict runs on the caller's thread alone.

use std::collections::BTreeSet;

use super::ensemble::{MAX_GROUPS, ModelFormat, Objective, OutputKind, TreeEnsemble};
use super::error::{Result, TreeError};
use super::onnx_lower::Nodes;
use super::onnx_post::{logistic, probit, write_scores};
use super::transform::Transform;

/// Most nodes a compiled ensemble may have after `BRANCH_EQ` copies and per-class trees
/// (bounds load-time memory; a larger model runs on tract).
pub(crate) const MAX_NODES: usize = 1 << 22;

/// The attributes of one `TreeEnsembleClassifier` or `TreeEnsembleRegressor` node, as
/// the graph stores them (`class_*` or `target_*` in the `weight_*` fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnnxTreeAttributes {
    /// `nodes_treeids`.
    pub nodes_treeids: Vec<i64>,
    /// `nodes_nodeids`.
    pub nodes_nodeids: Vec<i64>,
    /// `nodes_featureids`.
    pub nodes_featureids: Vec<i64>,
    /// `nodes_modes` (`BRANCH_LEQ`, `LEAF`, …).
    pub nodes_modes: Vec<String>,
    /// `nodes_values` (thresholds).
    pub nodes_values: Vec<f32>,
    /// `nodes_truenodeids`.
    pub nodes_truenodeids: Vec<i64>,
    /// `nodes_falsenodeids`.
    pub nodes_falsenodeids: Vec<i64>,
    /// `nodes_missing_value_tracks_true` (may be shorter than the node list, or empty).
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// `class_ids` / `target_ids`.
    pub weight_ids: Vec<i64>,
    /// `class_nodeids` / `target_nodeids`.
    pub weight_nodeids: Vec<i64>,
    /// `class_treeids` / `target_treeids`.
    pub weight_treeids: Vec<i64>,
    /// `class_weights` / `target_weights`.
    pub weights: Vec<f32>,
    /// `base_values`.
    pub base_values: Vec<f32>,
    /// `post_transform` (default `NONE`).
    pub post_transform: Option<String>,
    /// `aggregate_function` (regressor only; default `SUM`).
    pub aggregate_function: Option<String>,
    /// What the node is: a classifier (with its label count) or a regressor.
    pub kind: OnnxTreeKind,
}

/// Classifier or regressor.
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxTreeKind {
    /// `TreeEnsembleClassifier`.
    Classifier {
        /// `classlabels_int64s`, or `0..n` for `classlabels_strings` (onnxruntime computes
        /// string labels as indices).
        labels: Vec<i64>,
    },
    /// `TreeEnsembleRegressor` with `n_targets`.
    Regressor {
        /// `n_targets`.
        n_targets: usize,
    },
}

impl Default for OnnxTreeKind {
    fn default() -> Self {
        OnnxTreeKind::Regressor { n_targets: 1 }
    }
}

/// `post_transform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostTransform {
    /// Scores as summed.
    None,
    /// `1 / (1 + exp(-x))`, computed as onnxruntime's `ComputeLogistic`.
    Logistic,
    /// Softmax over the row.
    Softmax,
    /// Softmax that leaves (near-)zero scores at zero.
    SoftmaxZero,
    /// `sqrt(2) * erfinv(2x - 1)` with onnxruntime's approximation.
    Probit,
}

impl PostTransform {
    fn parse(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("NONE") {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => {
                return Err(TreeError::Unsupported(format!("post_transform {other:?}")));
            }
        })
    }
}

/// `aggregate_function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Sum of the trees' values.
    Sum,
    /// Sum divided by the number of trees.
    Average,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
}

impl Aggregate {
    fn parse(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("SUM") {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => {
                return Err(TreeError::Unsupported(format!(
                    "aggregate_function {other:?}"
                )));
            }
        })
    }
}

/// What [`OnnxEnsemble::predict`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxPrediction {
    /// Row-major `[n_rows, num_outputs()]`: class probabilities or scores, or targets.
    pub scores: Vec<f32>,
    /// Per row, the label onnxruntime computes (classifiers only): a value of
    /// `classlabels_int64s`, or an index into `classlabels_strings`.
    pub labels: Option<Vec<i64>>,
}

/// A compiled ONNX tree ensemble.
#[derive(Debug, Clone)]
pub struct OnnxEnsemble {
    inner: TreeEnsemble,
    /// Output group -> target or class.
    group_target: Vec<usize>,
    /// Per target: does any tree add to it (onnxruntime's `has_score`)?
    has: Vec<bool>,
    n_outputs: usize,
    n_trees: usize,
    base_values: Vec<f32>,
    post: PostTransform,
    aggregate: Aggregate,
    classifier: Option<Classifier>,
}

#[derive(Debug, Clone)]
struct Classifier {
    labels: Vec<i64>,
    /// Two labels and one class id in the weights.
    binary_case: bool,
    weights_all_positive: bool,
}

impl OnnxEnsemble {
    /// Compiles the attributes for inputs of `n_features` columns (at least the largest
    /// feature id plus one; `None` takes exactly that).
    pub fn compile(a: &OnnxTreeAttributes, n_features: Option<usize>) -> Result<Self> {
        let post = PostTransform::parse(a.post_transform.as_deref())?;
        let (n_outputs, classifier, aggregate) = match &a.kind {
            OnnxTreeKind::Classifier { labels } => {
                if labels.len() < 2 {
                    return Err(TreeError::Unsupported(format!(
                        "a classifier with {} class label(s)",
                        labels.len()
                    )));
                }
                let classes: BTreeSet<i64> = a.weight_ids.iter().copied().collect();
                let classifier = Classifier {
                    labels: labels.clone(),
                    binary_case: labels.len() == 2 && classes.len() == 1,
                    weights_all_positive: a.weights.iter().all(|&w| w >= 0.0),
                };
                if labels.len() == 2 && a.base_values.len() <= 1 && post == PostTransform::Probit {
                    return Err(TreeError::Unsupported(
                        "PROBIT on a two-class classifier with one score column (onnxruntime \
                         leaves the second column unwritten)"
                            .into(),
                    ));
                }
                if a.base_values.len() > labels.len() {
                    return Err(TreeError::invalid(
                        "base_values",
                        format!(
                            "{} values for {} classes",
                            a.base_values.len(),
                            labels.len()
                        ),
                    ));
                }
                // The classifier always sums, whatever `aggregate_function` says.
                (labels.len(), Some(classifier), Aggregate::Sum)
            }
            OnnxTreeKind::Regressor { n_targets } => {
                if *n_targets == 0 {
                    return Err(TreeError::invalid("n_targets", "must be at least 1"));
                }
                (
                    *n_targets,
                    None,
                    Aggregate::parse(a.aggregate_function.as_deref())?,
                )
            }
        };
        if n_outputs > MAX_GROUPS {
            return Err(TreeError::Unsupported(format!("{n_outputs} outputs")));
        }
        let nodes = Nodes::new(a, n_outputs)?;
        let max_feature = a.nodes_featureids.iter().copied().max().unwrap_or(0);
        if max_feature < 0 {
            return Err(TreeError::invalid(
                "nodes_featureids",
                "negative feature id",
            ));
        }
        let needed = max_feature as usize + 1;
        let n_features = match n_features {
            Some(n) if n < needed => {
                return Err(TreeError::WrongFeatureCount {
                    expected: needed,
                    got: n,
                });
            }
            Some(n) => n,
            None => needed,
        };
        let per_tree_groups = matches!(aggregate, Aggregate::Min | Aggregate::Max);
        let mut trees = Vec::new();
        let mut group_target = Vec::new();
        let mut has = vec![false; n_outputs];
        let mut budget = MAX_NODES;
        for &root in &nodes.roots {
            // A leaf without a weight for a target adds 0 to a sum (exactly what adding
            // nothing does); MIN, MAX and the classifier rules depend on which were added.
            let mixed_ok = classifier.is_none() && !per_tree_groups;
            let targets = nodes.targets(root, mixed_ok)?;
            for target in targets {
                has[target] = true;
                let mut tree = nodes.lower(root, target, &mut budget)?;
                tree.group = if per_tree_groups {
                    group_target.push(target);
                    (group_target.len() - 1) as u32
                } else {
                    target as u32
                };
                trees.push(tree);
            }
        }
        if !per_tree_groups {
            group_target = (0..n_outputs).collect();
        }
        if group_target.len() > MAX_GROUPS {
            return Err(TreeError::Unsupported(format!(
                "MIN/MAX over {} trees and targets",
                group_target.len()
            )));
        }
        let objective = Objective {
            name: "onnx".into(),
            transform: Transform::Identity,
            output_kind: OutputKind::Margin,
        };
        // XGBoost's arithmetic: `f32` sums in tree order, here from zero.
        let inner = TreeEnsemble::build(
            ModelFormat::XGBoost,
            objective,
            n_features,
            vec![0.0; group_target.len().max(1)],
            &trees,
            &|t| format!("compiled tree {t}"),
        )?;
        Ok(OnnxEnsemble {
            inner,
            group_target,
            has,
            n_outputs,
            n_trees: nodes.roots.len(),
            base_values: a.base_values.clone(),
            post,
            aggregate,
            classifier,
        })
    }

    /// Columns per input row.
    pub fn num_features(&self) -> usize {
        self.inner.num_features()
    }

    /// Scores per row: the class count, or `n_targets`.
    pub fn num_outputs(&self) -> usize {
        self.n_outputs
    }

    /// Trees in the ONNX graph.
    pub fn num_trees(&self) -> usize {
        self.n_trees
    }

    /// True for a `TreeEnsembleClassifier`.
    pub fn is_classifier(&self) -> bool {
        self.classifier.is_some()
    }

    /// Scores (and labels, for a classifier) of `n_rows` rows of
    /// [`num_features`](Self::num_features) values each, row-major, NaN = missing.
    pub fn predict(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
    ) -> Result<OnnxPrediction> {
        let margins = self.inner.predict_margin(features, n_rows, n_features)?;
        let groups = self.group_target.len().max(1);
        let k = self.n_outputs;
        let mut scores = vec![0.0f32; n_rows * k];
        let mut labels = self.classifier.as_ref().map(|_| vec![0i64; n_rows]);
        let mut sum = vec![0.0f32; k];
        let mut has = vec![false; k];
        for (r, (m, out)) in margins
            .chunks_exact(groups)
            .zip(scores.chunks_exact_mut(k))
            .enumerate()
        {
            match self.aggregate {
                Aggregate::Sum | Aggregate::Average => sum.copy_from_slice(m),
                Aggregate::Min | Aggregate::Max => {
                    has.fill(false);
                    for (&v, &t) in m.iter().zip(&self.group_target) {
                        let better = match self.aggregate {
                            Aggregate::Min => v < sum[t],
                            _ => v > sum[t],
                        };
                        if !has[t] || better {
                            sum[t] = v;
                        }
                        has[t] = true;
                    }
                }
            }
            match &self.classifier {
                Some(c) => {
                    let label = self.finish_classifier(c, &mut sum, out);
                    if let Some(l) = labels.as_mut() {
                        l[r] = label;
                    }
                }
                None => self.finish_regressor(&mut sum, out),
            }
        }
        Ok(OnnxPrediction { scores, labels })
    }

    fn finish_regressor(&self, s: &mut [f32], out: &mut [f32]) {
        let n = self.n_trees as f32;
        let base = &self.base_values;
        if self.n_outputs == 1 {
            let origin = if base.len() == 1 { base[0] } else { 0.0 };
            let mut score = s[0];
            if self.aggregate == Aggregate::Average {
                score /= n;
            }
            score += origin;
            out[0] = if self.post == PostTransform::Probit {
                probit(score)
            } else {
                score
            };
            return;
        }
        let use_base = base.len() == self.n_outputs;
        for (t, v) in s.iter_mut().enumerate() {
            let b = if use_base { base[t] } else { 0.0 };
            *v = match self.aggregate {
                Aggregate::Sum => *v + b,
                Aggregate::Average => *v / n + b,
                Aggregate::Min | Aggregate::Max => b + if self.has[t] { *v } else { 0.0 },
            };
        }
        write_scores(self.post, s, out);
    }

    /// onnxruntime's `TreeAggregatorClassifier::FinalizeScores`; returns the label.
    fn finish_classifier(&self, c: &Classifier, s: &mut [f32], out: &mut [f32]) -> i64 {
        let base = &self.base_values;
        let mut has = self.has.clone();
        let k = self.n_outputs;
        if k > 2 {
            for (j, &b) in base.iter().enumerate() {
                if has[j] {
                    s[j] += b;
                } else {
                    has[j] = true;
                    s[j] = b;
                }
            }
            let mut best: Option<usize> = None;
            for j in 0..k {
                if has[j] && best.is_none_or(|b| s[j] > s[b]) {
                    best = Some(j);
                }
            }
            for j in 0..k {
                if !has[j] {
                    s[j] = 0.0;
                }
            }
            write_scores(self.post, s, out);
            // Every class without a tree and a base value scores nothing; onnxruntime would
            // index label -1, which compile() rules out by requiring weights.
            return c.labels[best.unwrap_or(0)];
        }
        // Two classes.
        let mut write_additional = -1;
        let mut two = true;
        match base.len() {
            2 => {
                if has[1] {
                    s[1] = base[1] + s[0];
                    s[0] = -s[1];
                } else {
                    s[1] += base[1];
                    s[0] += base[0];
                }
            }
            1 => {
                s[0] += base[0];
                two = has[1];
            }
            0 => {
                write_additional = 3;
                two = has[1];
            }
            _ => {}
        }
        let (s0, h0) = (s[0], has[0]);
        let (s1, h1) = if two && has[1] {
            (s[1], true)
        } else {
            (0.0, false)
        };
        let pos = if h1 {
            s1
        } else if h0 {
            s0
        } else {
            0.0
        };
        let label = if c.binary_case {
            if c.weights_all_positive {
                if pos > 0.5 {
                    write_additional = 0;
                    c.labels[1]
                } else {
                    write_additional = 1;
                    c.labels[0]
                }
            } else if pos > 0.0 {
                write_additional = 2;
                c.labels[1]
            } else {
                write_additional = 3;
                c.labels[0]
            }
        } else if pos > 0.0 {
            1
        } else {
            0
        };
        if two {
            let mut v = [if h0 { s0 } else { 0.0 }, if has[1] { s[1] } else { 0.0 }];
            write_scores(self.post, &mut v, out);
        } else {
            let v = if h0 { s0 } else { 0.0 };
            match write_additional {
                0 | 1 => {
                    out[0] = 1.0 - v;
                    out[1] = v;
                }
                2 | 3 if self.post == PostTransform::Logistic => {
                    out[0] = logistic(-v);
                    out[1] = logistic(v);
                }
                2 | 3 => {
                    out[0] = -v;
                    out[1] = v;
                }
                // Unreachable for a validated model: one column without the binary layout.
                _ => {
                    out[0] = v;
                    out[1] = 0.0;
                }
            }
        }
        label
    }
}
