//! The fastest path: shallow plain trees padded to complete binary trees.
//!
//! A tree of depth `D` (at most [`MAX_COMPLETE_DEPTH`]) whose splits are all plain numeric
//! ones is stored as an implicit heap: `2^D` 8-byte nodes (threshold, and the feature as an
//! offset into a [`Columns`] group; the last slot unused) and `2^D` leaf values. The
//! children of node `i` are `2i + 1` and `2i + 2`, so no child indices are loaded; a leaf
//! above depth `D` is padded with dummy splits whose subtrees all end in copies of its
//! value. Every row takes exactly `D` steps, `D` and `2^D` are compile-time constants (one
//! copy of the kernel per depth), and indices are masked with `2^D - 1`, so the compiler
//! drops those bounds checks.
//!
//! Rows are regrouped ([`Columns`]) into groups of [`ROWS`], stored feature-major, so the
//! rows of a group walk the tree together from one base pointer with their positions in
//! registers; their steps are independent, so the CPU overlaps them. Groups without NaN
//! (the common case) take a kernel with no missing-value test at all.
//!
//! Built once at load from the validated explicit layout; read-only afterwards.

use super::predict::{Accum, FEATURE_MASK, META_DEFAULT_LEFT, Node};

/// Deepest tree stored in complete form (1024 leaves, 16 KiB per tree).
pub(crate) const MAX_COMPLETE_DEPTH: u32 = 10;

/// Rows walked together.
const ROWS: usize = 8;

/// A node of a complete tree: go left iff `x < threshold`. `column` is the feature index
/// times [`ROWS`], the offset of that feature's values in a [`Columns`] group.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct CompleteNode {
    pub threshold: f32,
    pub column: u32,
}

/// All complete trees of a model, each `2^depth` slots from its offset. Where NaN goes is
/// kept apart from the nodes and read only for groups that hold NaN.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CompleteTrees {
    pub nodes: Vec<CompleteNode>,
    pub default_left: Vec<bool>,
    pub leaves: Vec<f64>,
}

/// Appends the complete form of the explicit tree rooted at `root` (depth `depth`);
/// returns its offset.
pub(crate) fn build(
    explicit: &[Node],
    explicit_leaves: &[f64],
    root: u32,
    depth: u32,
    out: &mut CompleteTrees,
) -> u32 {
    let n = 1usize << depth;
    let base = out.nodes.len();
    out.nodes.resize(base + n, CompleteNode::default());
    out.default_left.resize(base + n, false);
    out.leaves.resize(base + n, 0.0);
    // (explicit node, heap position, level)
    let mut stack = vec![(root, 0usize, 0u32)];
    while let Some((e, pos, level)) = stack.pop() {
        let node = explicit[e as usize];
        if level == depth {
            out.leaves[base + pos - (n - 1)] = explicit_leaves[e as usize];
            continue;
        }
        // A leaf above the bottom level stays a dummy split (feature 0) over copies of itself.
        if node.children[0] != e {
            out.nodes[base + pos] = CompleteNode {
                threshold: node.threshold,
                column: (node.meta & FEATURE_MASK) * ROWS as u32,
            };
            out.default_left[base + pos] = node.meta & META_DEFAULT_LEFT != 0;
        }
        stack.push((node.children[0], 2 * pos + 1, level + 1));
        stack.push((node.children[1], 2 * pos + 2, level + 1));
    }
    base as u32
}

/// A block of rows regrouped for the complete-tree kernel: groups of [`ROWS`] rows, each
/// stored feature-major (`[feature][row]`). A short last group is padded with copies of
/// its last row.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    data: Vec<f32>,
    has_nan: Vec<bool>,
    n_rows: usize,
    nf: usize,
}

impl Columns {
    /// Regroups `block` (row-major, `nf` features per row, at least one row).
    pub(crate) fn fill(&mut self, block: &[f32], nf: usize) {
        let n_rows = block.len() / nf;
        self.n_rows = n_rows;
        self.nf = nf;
        self.data.clear();
        self.data.resize(n_rows.div_ceil(ROWS) * ROWS * nf, 0.0);
        self.has_nan.clear();
        for (gi, dst) in self.data.chunks_exact_mut(ROWS * nf).enumerate() {
            let mut nan = false;
            for k in 0..ROWS {
                let r = (gi * ROWS + k).min(n_rows - 1);
                for (f, &x) in block[r * nf..(r + 1) * nf].iter().enumerate() {
                    dst[f * ROWS + k] = x;
                    nan |= x.is_nan();
                }
            }
            self.has_nan.push(nan);
        }
    }
}

/// Adds the leaf value of every row in `cols` to `acc[row * groups + g]` for the complete
/// tree at `offset`.
pub(crate) fn walk<A: Accum>(
    trees: &CompleteTrees,
    offset: u32,
    depth: u32,
    cols: &Columns,
    acc: &mut [A],
    groups: usize,
    g: usize,
) {
    let range = offset as usize..offset as usize + (1 << depth);
    let tree = Tree {
        nodes: &trees.nodes[range.clone()],
        default_left: &trees.default_left[range.clone()],
        leaves: &trees.leaves[range],
    };
    macro_rules! dispatch {
        ($($d:literal),*) => {
            match depth {
                $($d => walk_depth::<A, $d, { 1 << $d }>(tree, cols, acc, groups, g),)*
                _ => unreachable!("complete trees are 1..={MAX_COMPLETE_DEPTH} deep"),
            }
        };
    }
    dispatch!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
}

#[derive(Clone, Copy)]
struct Tree<'a> {
    nodes: &'a [CompleteNode],
    default_left: &'a [bool],
    leaves: &'a [f64],
}

fn walk_depth<A: Accum, const D: u32, const N: usize>(
    tree: Tree<'_>,
    cols: &Columns,
    acc: &mut [A],
    groups: usize,
    g: usize,
) {
    let nodes: &[CompleteNode; N] = tree
        .nodes
        .try_into()
        .expect("a complete tree has 2^depth slots");
    let default_left: &[bool; N] = tree
        .default_left
        .try_into()
        .expect("a complete tree has 2^depth slots");
    let leaves: &[f64; N] = tree
        .leaves
        .try_into()
        .expect("a complete tree has 2^depth slots");
    for (gi, (group, &nan)) in cols
        .data
        .chunks_exact(ROWS * cols.nf)
        .zip(&cols.has_nan)
        .enumerate()
    {
        let i = if nan {
            walk_group::<D, N, true>(nodes, default_left, group)
        } else {
            walk_group::<D, N, false>(nodes, default_left, group)
        };
        let rows = (cols.n_rows - gi * ROWS).min(ROWS);
        for (a, &ik) in acc[gi * ROWS * groups..]
            .chunks_exact_mut(groups)
            .take(rows)
            .zip(&i)
        {
            // Bottom-level positions are N-1..2N-1; leaf k is at N-1+k.
            a[g] += A::from_f64(leaves[(ik + 1) & (N - 1)]);
        }
    }
}

/// Levels walked lane-parallel at the top of a tree (see [`walk_group`]).
const TOP_LEVELS: u32 = 3;

/// Walks the [`ROWS`] rows of one group (`[feature][row]`) down `D` levels; returns their
/// final heap positions. `NAN`: the group holds NaNs, which then follow `default_left`.
///
/// The top levels hold few nodes, so there every row is tested against every node of the
/// level at once (one contiguous load of that feature's [`ROWS`] values and a compare per
/// node; the compiler turns these lane loops into SIMD), and each row keeps the outcome of
/// the node it is at. Below that, each row loads only its own node.
#[inline(always)]
fn walk_group<const D: u32, const N: usize, const NAN: bool>(
    nodes: &[CompleteNode; N],
    default_left: &[bool; N],
    group: &[f32],
) -> [usize; ROWS] {
    let goes_left = |x: f32, at: usize, node: CompleteNode| {
        if NAN {
            (x < node.threshold) | (x.is_nan() & default_left[at])
        } else {
            x < node.threshold
        }
    };
    let mut top = [0u32; ROWS];
    for level in 0..D.min(TOP_LEVELS) {
        let first = (1usize << level) - 1;
        let mut left = [0u32; ROWS];
        for j in first..2 * first + 1 {
            let at = j & (N - 1);
            let node = nodes[at];
            let start = node.column as usize;
            let Some(x) = group.get(start..start + ROWS) else {
                continue; // unreachable: columns are validated against the feature count
            };
            for k in 0..ROWS {
                left[k] |= u32::from(top[k] == j as u32) & u32::from(goes_left(x[k], at, node));
            }
        }
        for k in 0..ROWS {
            top[k] = 2 * top[k] + 2 - left[k];
        }
    }
    let mut i = top.map(|t| t as usize);
    for _ in D.min(TOP_LEVELS)..D {
        for (k, ik) in i.iter_mut().enumerate() {
            let at = *ik & (N - 1);
            let node = nodes[at];
            let x = group[node.column as usize + k];
            *ik = 2 * *ik + 2 - usize::from(goes_left(x, at, node));
        }
    }
    i
}
