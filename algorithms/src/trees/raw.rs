//! The readers' common intermediate form (one [`RawTree`] per tree, nodes as the file
//! numbers them) and its lowering into the predictor's flat layout.
//!
//! Lowering checks everything the hot loop relies on, so the predictor never has to:
//! child indices in range, every node reached exactly once from the root (no cycles, no
//! sharing), features below the model's feature count, bounded depth. Nodes are renumbered
//! breadth-first so a tree's top levels sit together in memory; leaves become nodes whose
//! two children are themselves, so a traversal can run a fixed number of steps without
//! branching on "is this a leaf". Single-threaded; runs once at load.

use super::complete;
use super::error::{Result, TreeError};
use super::predict::{
    CatRule, CatSplit, FEATURE_MASK, Layout, META_CATEGORICAL, META_DEFAULT_LEFT,
    META_ZERO_MISSING, Node, TreeSpan,
};

/// The deepest tree accepted; deeper trees are refused as invalid (XGBoost and LightGBM
/// trees are far shallower in practice, and the limit bounds traversal cost).
pub(crate) const MAX_DEPTH: usize = 256;

/// One split's go-left rule, in the reader's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Split {
    /// Left iff `x < threshold`; NaN goes to the default side.
    Less {
        /// Threshold compared in `f32`.
        threshold: f32,
        /// Where NaN goes.
        default_left: bool,
    },
    /// LightGBM "zero as missing": NaN and `|x| <= 1e-35` go to the default side,
    /// otherwise left iff `x < threshold`.
    LessZeroMissing {
        /// Threshold compared in `f32`.
        threshold: f32,
        /// Where missing values go.
        default_left: bool,
    },
    /// A category-set split.
    Categorical(CatSplit),
}

/// One node of a tree as read from the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawNode {
    /// A leaf and its value (already scaled by any tree weight).
    Leaf(f64),
    /// An internal node.
    Split {
        /// Input feature index.
        feature: u32,
        /// The go-left rule.
        split: Split,
        /// Index of the left child in the same tree.
        left: u32,
        /// Index of the right child in the same tree.
        right: u32,
    },
}

/// One tree: nodes as the file numbers them, root at index 0, and its output group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawTree {
    /// The nodes; index 0 is the root.
    pub nodes: Vec<RawNode>,
    /// Output group (class) the tree adds to.
    pub group: u32,
}

/// Lowers trees into the flat predictor layout, validating them. `what` names the tree
/// for error messages, e.g. `trees[3]`.
pub(crate) fn lower(
    trees: &[RawTree],
    num_features: usize,
    num_groups: usize,
    what: &dyn Fn(usize) -> String,
) -> Result<Layout> {
    let mut layout = Layout::default();
    for (t, tree) in trees.iter().enumerate() {
        lower_tree(&mut layout, tree, num_features, num_groups, &what(t))?;
    }
    Ok(layout)
}

fn lower_tree(
    layout: &mut Layout,
    tree: &RawTree,
    num_features: usize,
    num_groups: usize,
    what: &str,
) -> Result<()> {
    if tree.nodes.is_empty() {
        return Err(TreeError::invalid(what, "tree has no nodes"));
    }
    if tree.group as usize >= num_groups {
        return Err(TreeError::invalid(
            what,
            format!(
                "tree belongs to output group {} but the model has {num_groups}",
                tree.group
            ),
        ));
    }
    if layout.nodes.len() + tree.nodes.len() > (u32::MAX / 2) as usize {
        return Err(TreeError::Unsupported(
            "more than 2^31 tree nodes in one model".into(),
        ));
    }
    let base = layout.nodes.len() as u32;
    // Breadth-first order: position in `order` is the new index (offset by `base`).
    let mut new_index = vec![u32::MAX; tree.nodes.len()];
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(tree.nodes.len()); // (old index, depth)
    new_index[0] = 0;
    order.push((0, 0));
    let mut head = 0;
    let mut depth = 0;
    let mut plain = true;
    while head < order.len() {
        let (old, d) = order[head];
        head += 1;
        depth = depth.max(d);
        if d > MAX_DEPTH {
            return Err(TreeError::invalid(
                what,
                format!("tree is deeper than {MAX_DEPTH}"),
            ));
        }
        if let RawNode::Split {
            feature,
            split,
            left,
            right,
        } = &tree.nodes[old]
        {
            if *feature as usize >= num_features {
                return Err(TreeError::invalid(
                    format!("{what}.node[{old}]"),
                    format!("split on feature {feature} but the model has {num_features} features"),
                ));
            }
            if !matches!(split, Split::Less { .. }) {
                plain = false;
            }
            for child in [*left, *right] {
                let c = child as usize;
                if c >= tree.nodes.len() {
                    return Err(TreeError::invalid(
                        format!("{what}.node[{old}]"),
                        format!(
                            "child {child} out of range (tree has {} nodes)",
                            tree.nodes.len()
                        ),
                    ));
                }
                if new_index[c] != u32::MAX {
                    return Err(TreeError::invalid(
                        format!("{what}.node[{old}]"),
                        format!(
                            "node {child} is reached twice (the tree has a cycle or shared node)"
                        ),
                    ));
                }
                new_index[c] = order.len() as u32;
                order.push((c, d + 1));
            }
        }
    }
    for &(old, _) in &order {
        let me = base + new_index[old];
        let (node, leaf) = match &tree.nodes[old] {
            RawNode::Leaf(value) => (
                Node {
                    threshold: 0.0,
                    meta: 0,
                    children: [me, me],
                },
                *value,
            ),
            RawNode::Split {
                feature,
                split,
                left,
                right,
            } => {
                let children = [
                    base + new_index[*left as usize],
                    base + new_index[*right as usize],
                ];
                let (threshold, flags) = match split {
                    Split::Less {
                        threshold,
                        default_left,
                    } => (
                        *threshold,
                        if *default_left { META_DEFAULT_LEFT } else { 0 },
                    ),
                    Split::LessZeroMissing {
                        threshold,
                        default_left,
                    } => (
                        *threshold,
                        META_ZERO_MISSING | if *default_left { META_DEFAULT_LEFT } else { 0 },
                    ),
                    Split::Categorical(cat) => {
                        let id = layout.cats.len() as u32;
                        layout.cats.push(cat.clone());
                        (f32::from_bits(id), META_CATEGORICAL)
                    }
                };
                debug_assert!(*feature <= FEATURE_MASK);
                (
                    Node {
                        threshold,
                        meta: feature | flags,
                        children,
                    },
                    0.0,
                )
            }
        };
        layout.nodes.push(node);
        layout.leaf_values.push(leaf);
    }
    let depth = depth as u32;
    let complete =
        complete::eligible(&layout.nodes, base, depth, plain, &layout.complete).then(|| {
            complete::build(
                &layout.nodes,
                &layout.leaf_values,
                base,
                depth,
                &mut layout.complete,
            )
        });
    layout.trees.push(TreeSpan {
        root: base,
        depth,
        group: tree.group,
        plain,
        complete,
    });
    Ok(())
}

/// Builds the bitset (32 categories per word) holding `categories`. Refuses categories
/// at or above `limit`.
pub(crate) fn bitset(
    categories: impl IntoIterator<Item = i64>,
    limit: i64,
    what: &str,
) -> Result<Vec<u32>> {
    let mut words = Vec::new();
    for c in categories {
        if !(0..limit).contains(&c) {
            return Err(TreeError::invalid(
                what,
                format!("category {c} is outside 0..{limit}"),
            ));
        }
        let word = (c / 32) as usize;
        if words.len() <= word {
            words.resize(word + 1, 0u32);
        }
        words[word] |= 1 << (c % 32);
    }
    Ok(words)
}

/// A categorical split from its rule and bitset; `nan_left` is where NaN goes.
pub(crate) fn categorical(words: Vec<u32>, rule: CatRule, nan_left: bool) -> Split {
    Split::Categorical(CatSplit {
        words,
        rule,
        nan_left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(feature: u32, threshold: f32, left: u32, right: u32) -> RawNode {
        RawNode::Split {
            feature,
            split: Split::Less {
                threshold,
                default_left: true,
            },
            left,
            right,
        }
    }

    #[test]
    fn lowers_breadth_first_with_self_looping_leaves() {
        let tree = RawTree {
            nodes: vec![
                split(0, 0.5, 2, 1),
                RawNode::Leaf(1.0),
                split(1, 0.0, 3, 4),
                RawNode::Leaf(2.0),
                RawNode::Leaf(3.0),
            ],
            group: 0,
        };
        let layout = lower(&[tree], 2, 1, &|t| format!("trees[{t}]")).unwrap();
        assert_eq!(layout.trees[0].depth, 2);
        assert!(layout.trees[0].plain);
        // Root's children: old 2 -> new 1, old 1 -> new 2.
        assert_eq!(layout.nodes[0].children, [1, 2]);
        assert_eq!(layout.nodes[2].children, [2, 2]);
        assert_eq!(layout.leaf_values[2], 1.0);
    }

    #[test]
    fn refuses_cycles_bad_children_and_features() {
        let cyclic = RawTree {
            nodes: vec![split(0, 0.5, 1, 0), RawNode::Leaf(1.0)],
            group: 0,
        };
        assert!(matches!(
            lower(&[cyclic], 1, 1, &|_| "t".into()),
            Err(TreeError::Invalid { .. })
        ));
        let out_of_range = RawTree {
            nodes: vec![split(0, 0.5, 1, 7), RawNode::Leaf(1.0)],
            group: 0,
        };
        assert!(matches!(
            lower(&[out_of_range], 1, 1, &|_| "t".into()),
            Err(TreeError::Invalid { .. })
        ));
        let bad_feature = RawTree {
            nodes: vec![split(3, 0.5, 1, 2), RawNode::Leaf(1.0), RawNode::Leaf(2.0)],
            group: 0,
        };
        assert!(matches!(
            lower(&[bad_feature], 2, 1, &|_| "t".into()),
            Err(TreeError::Invalid { .. })
        ));
        let bad_group = RawTree {
            nodes: vec![RawNode::Leaf(1.0)],
            group: 2,
        };
        assert!(matches!(
            lower(&[bad_group], 2, 2, &|_| "t".into()),
            Err(TreeError::Invalid { .. })
        ));
    }

    #[test]
    fn bitset_sets_bits_and_refuses_out_of_range() {
        assert_eq!(bitset([0, 33], 1 << 24, "n").unwrap(), vec![1, 2]);
        assert!(bitset([-1], 1 << 24, "n").is_err());
    }
}
