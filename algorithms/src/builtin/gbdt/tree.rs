//! The internal regression tree of the GBDT: nodes in XGBoost's numbering (root 0, children
//! allocated in pairs), each split holding both its bin (for fast training-time traversal of
//! the bin matrix) and its float condition `x < threshold` (for prediction and the XGBoost
//! JSON artifact). Immutable once grown; traversal is allocation-free.

use super::hist::{BinMatrix, MISSING};

/// Marks "no child" (a leaf).
pub(crate) const LEAF: u32 = u32::MAX;

/// One node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Split feature (0 for leaves).
    pub(crate) feature: u32,
    /// Split bin: left when bin <= `bin` (training only).
    pub(crate) bin: u16,
    /// Split condition: left when `x < threshold`; the leaf value for leaves.
    pub(crate) threshold: f32,
    /// Where a missing value goes.
    pub(crate) default_left: bool,
    /// Left child, or [`LEAF`].
    pub(crate) left: u32,
    /// Right child, or [`LEAF`].
    pub(crate) right: u32,
    /// Parent ([`LEAF`] for the root).
    pub(crate) parent: u32,
    /// Learning-rate-scaled weight of the node (the leaf value for leaves).
    pub(crate) weight: f32,
    /// Loss reduction of the split (0 for leaves).
    pub(crate) loss_change: f32,
    /// Sum of hessians of the node's rows.
    pub(crate) sum_hessian: f32,
}

impl Node {
    /// Whether the node is a leaf.
    pub(crate) fn is_leaf(&self) -> bool {
        self.left == LEAF
    }
}

/// A regression tree.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Tree {
    pub(crate) nodes: Vec<Node>,
}

impl Tree {
    /// The leaf value for a raw feature row (NaN = missing).
    pub(crate) fn predict(&self, x: &[f32]) -> f32 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.is_leaf() {
                return n.threshold;
            }
            let v = x[n.feature as usize];
            let left = if v.is_nan() {
                n.default_left
            } else {
                v < n.threshold
            };
            i = if left { n.left } else { n.right } as usize;
        }
    }

    /// The leaf value for row `r` of a bin matrix.
    pub(crate) fn predict_binned(&self, bm: &BinMatrix, r: usize) -> f32 {
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            if n.is_leaf() {
                return n.threshold;
            }
            let b = bm.get(r, n.feature as usize);
            let left = if b == MISSING {
                n.default_left
            } else {
                u16::from(b) <= n.bin
            };
            i = if left { n.left } else { n.right } as usize;
        }
    }

    /// Checks child/parent links and feature indices; returns a description of the first fault.
    pub(crate) fn validate(&self, n_features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("a tree has no nodes".into());
        }
        let n = self.nodes.len() as u32;
        let mut seen = vec![false; self.nodes.len()];
        let mut stack = vec![0u32];
        while let Some(i) = stack.pop() {
            if seen[i as usize] {
                return Err(format!("node {i} is reachable twice"));
            }
            seen[i as usize] = true;
            let node = &self.nodes[i as usize];
            if node.is_leaf() {
                if !node.threshold.is_finite() {
                    return Err(format!("leaf {i} has a non-finite value"));
                }
                continue;
            }
            if node.left >= n || node.right >= n || node.left == 0 || node.right == 0 {
                return Err(format!("node {i} has a child out of range"));
            }
            if node.feature as usize >= n_features {
                return Err(format!(
                    "node {i} splits on feature {} of {n_features}",
                    node.feature
                ));
            }
            if node.threshold.is_nan() {
                return Err(format!("node {i} has a NaN split condition"));
            }
            stack.push(node.left);
            stack.push(node.right);
        }
        Ok(())
    }
}
