//! The fastest path: shallow plain trees padded to complete binary trees.
//!
//! A tree of depth `D` (at most [`MAX_COMPLETE_DEPTH`]) whose splits are all plain numeric
//! ones is stored as an implicit heap: `2^D` 8-byte nodes (threshold, and where to read the
//! feature in a [`Columns`] group; the last slot unused) and `2^D` leaf values. The
//! children of node `i` are `2i + 1` and `2i + 2`, so no child indices are loaded; a leaf
//! above depth `D` is padded with dummy splits whose subtrees all end in copies of its
//! value. Every row takes exactly `D` steps, `D` and `2^D` are compile-time constants (one
//! copy of the kernel per depth), and indices are masked with `2^D - 1`, so the compiler
//! drops those bounds checks.
//!
//! Rows are regrouped ([`Columns`]) into groups of [`ROWS`], stored feature-major, so the
//! rows of a group walk a tree together; their steps are independent, so the CPU overlaps
//! them. The top [`TOP_LEVELS`] levels hold few nodes: there every row is compared against
//! every node of the level with contiguous loads, which the compiler turns into SIMD.
//!
//! Only the features the complete trees split on are regrouped (each gets a slot), so wide
//! inputs with few used features cost little to regroup.
//!
//! Missing values cost nothing in the loop: a group stores each feature twice, once with
//! NaN replaced by -inf and once by +inf. A node whose missing values go left reads the
//! -inf copy (`-inf < t` holds for every threshold above -inf), one whose missing values go
//! right reads the +inf copy (`+inf < t` never holds), so `x < t` alone decides. Trees with
//! a -inf threshold are therefore not stored in this form.
//!
//! Built once at load from the validated explicit layout; read-only afterwards.

use std::collections::HashMap;

use super::predict::{Accum, FEATURE_MASK, META_DEFAULT_LEFT, Node};

/// Deepest tree stored in complete form (1024 leaves, 16 KiB per tree).
pub(crate) const MAX_COMPLETE_DEPTH: u32 = 10;

/// Rows walked together.
const ROWS: usize = 8;

/// Fewest rows in a block for which the complete kernel beats the explicit one.
pub(crate) const MIN_ROWS: usize = ROWS / 2;

/// Levels walked lane-parallel at the top of a tree.
const TOP_LEVELS: u32 = 3;

/// A node of a complete tree: go left iff `x < threshold`, where `x` is read at `column`
/// in a [`Columns`] group (`(2 * slot + copy) * ROWS`, copy 0 holding NaN as -inf and
/// copy 1 as +inf).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct CompleteNode {
    pub threshold: f32,
    pub column: u32,
}

/// All complete trees of a model, each `2^depth` slots from its offset.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CompleteTrees {
    pub nodes: Vec<CompleteNode>,
    pub leaves: Vec<f64>,
    /// The input feature held in each slot of a [`Columns`] group.
    pub features: Vec<u32>,
    /// Slot of each input feature used by a complete tree.
    slot_of: HashMap<u32, u32>,
}

/// Whether the explicit tree at `root` may be stored in complete form.
pub(crate) fn eligible(
    explicit: &[Node],
    root: u32,
    depth: u32,
    plain: bool,
    trees: &CompleteTrees,
) -> bool {
    // Slots must keep `(2 * slot + 1) * ROWS` within `u32`.
    let room = trees.features.len() + (1 << depth) < (u32::MAX as usize) / (2 * ROWS) - 1;
    if !plain || !(1..=MAX_COMPLETE_DEPTH).contains(&depth) || !room {
        return false;
    }
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        let node = explicit[e as usize];
        if node.children[0] != e {
            if node.threshold == f32::NEG_INFINITY || node.threshold.is_nan() {
                return false;
            }
            stack.extend(node.children);
        }
    }
    true
}

/// Appends the complete form of the explicit tree rooted at `root` (depth `depth`);
/// returns its offset. Padding nodes read slot 0, which exists once any
/// tree (all have a real split at the root) is built.
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
            let feature = node.meta & FEATURE_MASK;
            let next = out.features.len() as u32;
            let slot = *out.slot_of.entry(feature).or_insert(next) as usize;
            if slot == next as usize {
                out.features.push(feature);
            }
            let copy = if node.meta & META_DEFAULT_LEFT != 0 {
                0
            } else {
                1
            };
            out.nodes[base + pos] = CompleteNode {
                threshold: node.threshold,
                column: ((2 * slot + copy) * ROWS) as u32,
            };
        }
        stack.push((node.children[0], 2 * pos + 1, level + 1));
        stack.push((node.children[1], 2 * pos + 2, level + 1));
    }
    base as u32
}

/// A block of rows regrouped for the complete-tree kernel: groups of [`ROWS`] rows, each
/// `[slot][copy][row]` (see the module docs). A short last group is padded with copies of
/// its last row.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    data: Vec<f32>,
    n_rows: usize,
    slots: usize,
}

impl Columns {
    /// Regroups the used `features` of `block` (row-major, `nf` features per row, at
    /// least one row).
    pub(crate) fn fill(&mut self, block: &[f32], nf: usize, features: &[u32]) {
        let n_rows = block.len() / nf;
        let slots = features.len();
        self.n_rows = n_rows;
        self.slots = slots;
        self.data.clear();
        self.data
            .resize(n_rows.div_ceil(ROWS) * 2 * slots * ROWS, 0.0);
        for (gi, dst) in self.data.chunks_exact_mut(2 * slots * ROWS).enumerate() {
            for k in 0..ROWS {
                let r = (gi * ROWS + k).min(n_rows - 1);
                let row = &block[r * nf..(r + 1) * nf];
                for (pair, &f) in dst.chunks_exact_mut(2 * ROWS).zip(features) {
                    let x = row[f as usize];
                    let nan = x.is_nan();
                    pair[k] = if nan { f32::NEG_INFINITY } else { x };
                    pair[ROWS + k] = if nan { f32::INFINITY } else { x };
                }
            }
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
    let (nodes, leaves) = (&trees.nodes[range.clone()], &trees.leaves[range]);
    macro_rules! dispatch {
        ($($d:literal),*) => {
            match depth {
                $($d => walk_depth::<A, $d, { 1 << $d }>(nodes, leaves, cols, acc, groups, g),)*
                _ => unreachable!("complete trees are 1..={MAX_COMPLETE_DEPTH} deep"),
            }
        };
    }
    dispatch!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
}

fn walk_depth<A: Accum, const D: u32, const N: usize>(
    nodes: &[CompleteNode],
    leaves: &[f64],
    cols: &Columns,
    acc: &mut [A],
    groups: usize,
    g: usize,
) {
    let nodes: &[CompleteNode; N] = nodes.try_into().expect("a complete tree has 2^depth slots");
    let leaves: &[f64; N] = leaves
        .try_into()
        .expect("a complete tree has 2^depth slots");
    for (gi, group) in cols.data.chunks_exact(2 * ROWS * cols.slots).enumerate() {
        let i = walk_group::<D, N>(nodes, group);
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

/// Walks the [`ROWS`] rows of one group down `D` levels; returns their final heap positions.
#[inline(always)]
fn walk_group<const D: u32, const N: usize>(
    nodes: &[CompleteNode; N],
    group: &[f32],
) -> [usize; ROWS] {
    // Top levels: every row against every node of the level, keeping the outcome of the
    // node the row is at.
    let mut top = [0u32; ROWS];
    for level in 0..D.min(TOP_LEVELS) {
        let first = (1usize << level) - 1;
        let mut left = [0u32; ROWS];
        for j in first..2 * first + 1 {
            let node = nodes[j & (N - 1)];
            let start = node.column as usize;
            let Some(x) = group.get(start..start + ROWS) else {
                continue; // unreachable: columns are built from validated features
            };
            for k in 0..ROWS {
                left[k] |= u32::from(top[k] == j as u32) & u32::from(x[k] < node.threshold);
            }
        }
        for k in 0..ROWS {
            top[k] = 2 * top[k] + 2 - left[k];
        }
    }
    // Lower levels: each row loads its own node.
    let mut i = top.map(|t| t as usize);
    for _ in D.min(TOP_LEVELS)..D {
        for (k, ik) in i.iter_mut().enumerate() {
            let node = nodes[*ik & (N - 1)];
            let x = group[node.column as usize + k];
            *ik = 2 * *ik + 2 - usize::from(x < node.threshold);
        }
    }
    i
}
