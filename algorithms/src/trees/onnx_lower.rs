//! Lowering ONNX-ML tree attributes into the readers' intermediate form ([`RawTree`]),
//! every node mode mapped onto the kernel's `x < t` split in `f32` (see the table in the
//! `onnx` module). Validates the attribute arrays as onnxruntime does. Pure; runs at load.

use std::collections::{BTreeSet, HashMap};

use super::error::{Result, TreeError};
use super::onnx::{MAX_NODES, OnnxTreeAttributes};
use super::raw::{MAX_DEPTH, RawNode, RawTree, Split};

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
pub(crate) fn next_up(t: f32) -> f32 {
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
pub(crate) struct Nodes<'a> {
    a: &'a OnnxTreeAttributes,
    index: HashMap<(i64, i64), usize>,
    /// Per node: `(target, weight)` pairs of a leaf, in attribute order.
    leaf_weights: Vec<Vec<(usize, f32)>>,
    /// First node of each tree, in order.
    pub(crate) roots: Vec<usize>,
}

impl<'a> Nodes<'a> {
    pub(crate) fn new(a: &'a OnnxTreeAttributes, n_outputs: usize) -> Result<Self> {
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

    /// The classes or targets the leaves under `root` add to. Unless `mixed_ok` (sums,
    /// where a missing weight adds nothing), every leaf must add to the same ones, so that
    /// onnxruntime's `has_score` is the same for every row.
    pub(crate) fn targets(&self, root: usize, mixed_ok: bool) -> Result<Vec<usize>> {
        let mut set: Option<Vec<usize>> = None;
        let mut union: BTreeSet<usize> = BTreeSet::new();
        let mut stack = vec![(root, 0usize)];
        let mut steps = 0usize;
        while let Some((i, depth)) = stack.pop() {
            steps += 1;
            if depth > MAX_DEPTH || steps > MAX_NODES {
                return Err(TreeError::Unsupported(format!(
                    "tree {} is deeper than {MAX_DEPTH} or larger than {MAX_NODES} nodes once \
                     unshared (or cyclic)",
                    self.a.nodes_treeids[root]
                )));
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
                union.extend(&here);
                match &set {
                    None => set = Some(here),
                    Some(s) if *s == here || mixed_ok => {}
                    Some(_) => {
                        return Err(TreeError::Unsupported(format!(
                            "the leaves of tree {} add to different classes or targets",
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
        Ok(union.into_iter().collect())
    }

    /// The tree under `root` with each leaf's weight for `target`.
    pub(crate) fn lower(&self, root: usize, target: usize, budget: &mut usize) -> Result<RawTree> {
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
