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

use std::collections::{BTreeSet, HashMap};

use super::ensemble::{MAX_GROUPS, ModelFormat, Objective, OutputKind, TreeEnsemble};
use super::error::{Result, TreeError};
use super::raw::{MAX_DEPTH, RawNode, RawTree, Split};
use super::transform::Transform;

/// Most nodes a compiled ensemble may have after `BRANCH_EQ` copies and per-class trees.
const MAX_NODES: usize = 1 << 26;

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

/// One split's outcome for non-NaN inputs.
#[derive(Clone, Copy)]
enum Rule {
    /// True iff `x < a`.
    Lt(f32),
    /// True iff `!(x < a)`.
    Ge(f32),
    /// Always true or always false.
    Const(bool),
    /// `x == t`, as `Ge(t)` then `Lt(next_up(t))`.
    Eq(f32),
    /// `x != t`.
    Neq(f32),
}

/// The smallest `f32` above `t` (`t` not NaN; `+inf` stays).
fn next_up(t: f32) -> f32 {
    if t == f32::INFINITY {
        return t;
    }
    if t == 0.0 {
        return f32::from_bits(1);
    }
    let bits = t.to_bits();
    f32::from_bits(if t > 0.0 { bits + 1 } else { bits - 1 })
}

fn rule(mode: &str, t: f32) -> Result<Rule> {
    let nan = t.is_nan();
    Ok(match mode {
        "BRANCH_LT" if nan => Rule::Const(false),
        "BRANCH_LT" => Rule::Lt(t),
        "BRANCH_LEQ" if nan => Rule::Const(false),
        "BRANCH_LEQ" if t == f32::INFINITY => Rule::Const(true),
        "BRANCH_LEQ" => Rule::Lt(next_up(t)),
        "BRANCH_GTE" if nan => Rule::Const(false),
        "BRANCH_GTE" => Rule::Ge(t),
        "BRANCH_GT" if nan || t == f32::INFINITY => Rule::Const(false),
        "BRANCH_GT" => Rule::Ge(next_up(t)),
        "BRANCH_EQ" if nan => Rule::Const(false),
        "BRANCH_EQ" => Rule::Eq(t),
        "BRANCH_NEQ" if nan => Rule::Const(true),
        "BRANCH_NEQ" => Rule::Neq(t),
        other => return Err(TreeError::Unsupported(format!("node mode {other:?}"))),
    })
}

/// The attribute arrays indexed by `(tree, node)`, validated as onnxruntime validates them.
struct Nodes<'a> {
    a: &'a OnnxTreeAttributes,
    index: HashMap<(i64, i64), usize>,
    /// Per node: `(target, weight)` pairs of a leaf, in attribute order.
    leaf_weights: Vec<Vec<(usize, f32)>>,
    /// First node of each tree, in order.
    roots: Vec<usize>,
}

impl<'a> Nodes<'a> {
    fn new(a: &'a OnnxTreeAttributes, n_outputs: usize) -> Result<Self> {
        let n = a.nodes_treeids.len();
        let same = |len: usize, name: &str| {
            if len == n {
                Ok(())
            } else {
                Err(TreeError::invalid(
                    name,
                    format!("has {len} entries but nodes_treeids has {n}"),
                ))
            }
        };
        same(a.nodes_nodeids.len(), "nodes_nodeids")?;
        same(a.nodes_featureids.len(), "nodes_featureids")?;
        same(a.nodes_modes.len(), "nodes_modes")?;
        same(a.nodes_values.len(), "nodes_values")?;
        same(a.nodes_truenodeids.len(), "nodes_truenodeids")?;
        same(a.nodes_falsenodeids.len(), "nodes_falsenodeids")?;
        if n == 0 {
            return Err(TreeError::invalid(
                "nodes_treeids",
                "the ensemble has no nodes",
            ));
        }
        let w = a.weight_ids.len();
        if a.weight_nodeids.len() != w || a.weight_treeids.len() != w || a.weights.len() != w {
            return Err(TreeError::invalid(
                "class_*/target_*",
                "ids, nodeids, treeids and weights differ in length",
            ));
        }
        let mut index = HashMap::with_capacity(n);
        let mut roots = Vec::new();
        let mut seen_trees = BTreeSet::new();
        for i in 0..n {
            let key = (a.nodes_treeids[i], a.nodes_nodeids[i]);
            if index.insert(key, i).is_some() {
                return Err(TreeError::invalid(
                    format!("tree {} node {}", key.0, key.1),
                    "node listed twice",
                ));
            }
            if i == 0 || a.nodes_treeids[i - 1] != key.0 {
                if !seen_trees.insert(key.0) {
                    return Err(TreeError::Unsupported(format!(
                        "the nodes of tree {} are not listed together",
                        key.0
                    )));
                }
                roots.push(i);
            }
        }
        let mut leaf_weights = vec![Vec::new(); n];
        for j in 0..w {
            let key = (a.weight_treeids[j], a.weight_nodeids[j]);
            let Some(&i) = index.get(&key) else {
                return Err(TreeError::invalid(
                    format!("weights[{j}]"),
                    format!("no node {} in tree {}", key.1, key.0),
                ));
            };
            if a.nodes_modes[i] != "LEAF" {
                continue; // onnxruntime ignores weights on branch nodes
            }
            let target = a.weight_ids[j];
            if !(0..n_outputs as i64).contains(&target) {
                return Err(TreeError::invalid(
                    format!("weights[{j}]"),
                    format!("class or target {target} outside 0..{n_outputs}"),
                ));
            }
            let target = target as usize;
            if leaf_weights[i].iter().any(|&(t, _)| t == target) {
                return Err(TreeError::Unsupported(format!(
                    "leaf {} of tree {} has two weights for output {target}",
                    key.1, key.0
                )));
            }
            leaf_weights[i].push((target, a.weights[j]));
        }
        Ok(Nodes {
            a,
            index,
            leaf_weights,
            roots,
        })
    }

    fn child(&self, i: usize, id: i64, which: &str) -> Result<usize> {
        let tree = self.a.nodes_treeids[i];
        self.index.get(&(tree, id)).copied().ok_or_else(|| {
            TreeError::invalid(
                format!("tree {tree} node {}", self.a.nodes_nodeids[i]),
                format!("{which} node {id} does not exist"),
            )
        })
    }

    /// The classes or targets the leaves under `root` add to; every leaf must add to the
    /// same ones (onnxruntime's `has_score` is then the same for every row).
    fn targets(&self, root: usize) -> Result<Vec<usize>> {
        let mut set: Option<Vec<usize>> = None;
        let mut stack = vec![(root, 0usize)];
        while let Some((i, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return Err(TreeError::invalid(
                    format!("tree {}", self.a.nodes_treeids[root]),
                    format!("deeper than {MAX_DEPTH} (or cyclic)"),
                ));
            }
            if self.a.nodes_modes[i] == "LEAF" {
                let mut here: Vec<usize> = self.leaf_weights[i].iter().map(|&(t, _)| t).collect();
                if here.is_empty() {
                    return Err(TreeError::invalid(
                        format!(
                            "tree {} node {}",
                            self.a.nodes_treeids[i], self.a.nodes_nodeids[i]
                        ),
                        "leaf without a weight",
                    ));
                }
                here.sort_unstable();
                match &set {
                    None => set = Some(here),
                    Some(s) if *s == here => {}
                    Some(_) => {
                        return Err(TreeError::Unsupported(format!(
                            "the leaves of tree {} add to different classes",
                            self.a.nodes_treeids[root]
                        )));
                    }
                }
            } else {
                stack.push((
                    self.child(i, self.a.nodes_truenodeids[i], "true")?,
                    depth + 1,
                ));
                stack.push((
                    self.child(i, self.a.nodes_falsenodeids[i], "false")?,
                    depth + 1,
                ));
            }
        }
        Ok(set.unwrap_or_default())
    }

    /// The tree under `root` with each leaf's weight for `target`.
    fn lower(&self, root: usize, target: usize, budget: &mut usize) -> Result<RawTree> {
        let mut nodes = Vec::new();
        self.emit(root, target, &mut nodes, 0, budget)?;
        Ok(RawTree { nodes, group: 0 })
    }

    /// Appends the subtree at `i` to `out`; returns its index there.
    fn emit(
        &self,
        i: usize,
        target: usize,
        out: &mut Vec<RawNode>,
        depth: usize,
        budget: &mut usize,
    ) -> Result<u32> {
        let a = self.a;
        let what = || format!("tree {} node {}", a.nodes_treeids[i], a.nodes_nodeids[i]);
        if depth > MAX_DEPTH {
            return Err(TreeError::invalid(
                what(),
                format!("deeper than {MAX_DEPTH}"),
            ));
        }
        if *budget == 0 {
            return Err(TreeError::Unsupported(format!(
                "more than {MAX_NODES} nodes once compiled"
            )));
        }
        *budget -= 1;
        let me = out.len() as u32;
        if a.nodes_modes[i] == "LEAF" {
            let value = self.leaf_weights[i]
                .iter()
                .find(|&&(t, _)| t == target)
                .map_or(0.0, |&(_, w)| w);
            out.push(RawNode::Leaf(f64::from(value)));
            return Ok(me);
        }
        let feature = u32::try_from(a.nodes_featureids[i])
            .map_err(|_| TreeError::invalid(what(), "negative feature id"))?;
        // `NaN != t` holds, so NaN takes a `BRANCH_NEQ` node's true child.
        let nan_true = a.nodes_missing_value_tracks_true.get(i) == Some(&1)
            || a.nodes_modes[i] == "BRANCH_NEQ";
        let t = a.nodes_values[i];
        let yes = self.child(i, a.nodes_truenodeids[i], "true")?;
        let no = self.child(i, a.nodes_falsenodeids[i], "false")?;
        // A placeholder, filled once the children's indices are known.
        out.push(RawNode::Leaf(0.0));
        let node = match rule(&a.nodes_modes[i], t)? {
            Rule::Lt(threshold) => {
                let left = self.emit(yes, target, out, depth + 1, budget)?;
                let right = self.emit(no, target, out, depth + 1, budget)?;
                split(feature, threshold, nan_true, left, right)
            }
            Rule::Ge(threshold) => {
                let left = self.emit(no, target, out, depth + 1, budget)?;
                let right = self.emit(yes, target, out, depth + 1, budget)?;
                split(feature, threshold, !nan_true, left, right)
            }
            Rule::Const(c) => {
                // `x < -inf` never holds: numbers go right, NaN goes left iff it goes
                // elsewhere than numbers.
                let (num, other) = if c { (yes, no) } else { (no, yes) };
                let left = self.emit(other, target, out, depth + 1, budget)?;
                let right = self.emit(num, target, out, depth + 1, budget)?;
                split(feature, f32::NEG_INFINITY, nan_true != c, left, right)
            }
            Rule::Eq(t) => {
                self.equal(feature, t, (yes, no), nan_true, target, out, depth, budget)?
            }
            // NaN != t holds, so NaN takes the true (not-equal) child.
            Rule::Neq(t) => self.equal(feature, t, (no, yes), false, target, out, depth, budget)?,
        };
        out[me as usize] = node;
        Ok(me)
    }

    /// `x == t` goes to `eq`, other numbers to `ne`, NaN to `eq` iff `nan_eq`.
    #[allow(clippy::too_many_arguments)]
    fn equal(
        &self,
        feature: u32,
        t: f32,
        (eq, ne): (usize, usize),
        nan_eq: bool,
        target: usize,
        out: &mut Vec<RawNode>,
        depth: usize,
        budget: &mut usize,
    ) -> Result<RawNode> {
        if t == f32::INFINITY {
            // Only +inf equals +inf: `!(x < inf)`.
            let left = self.emit(ne, target, out, depth + 1, budget)?;
            let right = self.emit(eq, target, out, depth + 1, budget)?;
            return Ok(split(feature, t, !nan_eq, left, right));
        }
        if t == f32::NEG_INFINITY {
            let left = self.emit(eq, target, out, depth + 1, budget)?;
            let right = self.emit(ne, target, out, depth + 1, budget)?;
            return Ok(split(feature, next_up(t), nan_eq, left, right));
        }
        // `!(x < t)` -> second split `x < next_up(t)`; `x < t` -> not equal.
        let left = self.emit(ne, target, out, depth + 1, budget)?;
        if *budget == 0 {
            return Err(TreeError::Unsupported(format!(
                "more than {MAX_NODES} nodes once compiled"
            )));
        }
        *budget -= 1;
        let second = out.len() as u32;
        out.push(RawNode::Leaf(0.0));
        let eq_index = self.emit(eq, target, out, depth + 2, budget)?;
        let ne_copy = self.emit(ne, target, out, depth + 2, budget)?;
        out[second as usize] = split(feature, next_up(t), nan_eq, eq_index, ne_copy);
        Ok(split(feature, t, !nan_eq, left, second))
    }
}

fn split(feature: u32, threshold: f32, default_left: bool, left: u32, right: u32) -> RawNode {
    RawNode::Split {
        feature,
        split: Split::Less {
            threshold,
            default_left,
        },
        left,
        right,
    }
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
            let targets = nodes.targets(root)?;
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

/// onnxruntime's `ComputeLogistic`.
fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 { 1.0 - e } else { e }
}

/// onnxruntime's `ErfInv` approximation.
fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// onnxruntime's `ComputeProbit`.
fn probit(v: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

/// onnxruntime's `write_scores` for two or more scores.
fn write_scores(post: PostTransform, s: &mut [f32], out: &mut [f32]) {
    match post {
        PostTransform::None => out.copy_from_slice(s),
        PostTransform::Logistic => {
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = logistic(v);
            }
        }
        PostTransform::Probit => {
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = probit(v);
            }
        }
        PostTransform::Softmax => {
            let max = s
                .iter()
                .copied()
                .fold(-f32::MAX, |m, v| if v > m { v } else { m });
            let mut total = 0.0f32;
            for v in s.iter_mut() {
                *v = (*v - max).exp();
                total += *v;
            }
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = v / total;
            }
        }
        PostTransform::SoftmaxZero => {
            let max = s
                .iter()
                .copied()
                .fold(-f32::MAX, |m, v| if v > m { v } else { m });
            let exp_neg_max = (-max).exp();
            let mut total = 0.0f32;
            for v in s.iter_mut() {
                if *v > 0.000_000_1 || *v < -0.000_000_1 {
                    *v = (*v - max).exp();
                    total += *v;
                } else {
                    *v *= exp_neg_max;
                }
            }
            for (o, &v) in out.iter_mut().zip(s.iter()) {
                *o = v / total;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
