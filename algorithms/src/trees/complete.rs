//! The fastest path: shallow plain trees padded to complete binary trees.
//!
//! A tree of depth `D` (at most [`MAX_COMPLETE_DEPTH`]) whose splits are all plain numeric
//! ones is stored as an implicit heap: `2^D` nodes (a threshold, and where to read the
//! feature in a [`Columns`] group, in two arrays; the last slot unused) and `2^D` leaf
//! values (as `f64` and rounded to `f32`). The
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
//! On CPUs with AVX2 the `simd` module walks the same heaps with the eight rows of a group in
//! the lanes of a register; the kernel here is the portable fallback. Both give the same
//! bits.
//!
//! Built once at load from the validated explicit layout; read-only afterwards.

use std::collections::HashMap;

use super::predict::{Accum, FEATURE_MASK, META_DEFAULT_LEFT, Node};

/// Deepest tree stored in complete form (1024 leaves, 16 KiB per tree).
pub(crate) const MAX_COMPLETE_DEPTH: u32 = 10;

/// Rows walked together.
pub(crate) const ROWS: usize = 8;

/// Fewest rows in a block for which the complete kernel beats the explicit one.
pub(crate) const MIN_ROWS: usize = ROWS / 2;

/// Levels walked lane-parallel at the top of a tree.
const TOP_LEVELS: u32 = 3;

/// All complete trees of a model, each `2^depth` slots from its offset. Node `i` goes
/// left iff `x < thresholds[i]`, where `x` is read at `columns[i]` in a [`Columns`] group
/// (`(2 * slot + copy) * ROWS`, copy 0 holding NaN as -inf and copy 1 as +inf). Thresholds
/// and columns sit in separate arrays so the SIMD kernel gathers each with one instruction.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CompleteTrees {
    pub thresholds: Vec<f32>,
    pub columns: Vec<u32>,
    pub leaves: Vec<f64>,
    /// `leaves` rounded to `f32` (what an `f32` accumulator adds).
    pub leaves_f32: Vec<f32>,
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
    let base = out.thresholds.len();
    out.thresholds.resize(base + n, 0.0);
    out.columns.resize(base + n, 0);
    out.leaves.resize(base + n, 0.0);
    out.leaves_f32.resize(base + n, 0.0);
    // (explicit node, heap position, level)
    let mut stack = vec![(root, 0usize, 0u32)];
    while let Some((e, pos, level)) = stack.pop() {
        let node = explicit[e as usize];
        if level == depth {
            out.leaves[base + pos - (n - 1)] = explicit_leaves[e as usize];
            out.leaves_f32[base + pos - (n - 1)] = explicit_leaves[e as usize] as f32;
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
            out.thresholds[base + pos] = node.threshold;
            out.columns[base + pos] = ((2 * slot + copy) * ROWS) as u32;
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
    /// Scratch of the SIMD regrouping: one group's rows, every feature, feature-major.
    scratch: Vec<f32>,
}

impl Columns {
    /// Regroups the used `features` of `block` (row-major, `nf` features per row, at
    /// least one row).
    pub(crate) fn fill(&mut self, block: &[f32], nf: usize, features: &[u32]) {
        let n_rows = block.len() / nf;
        let slots = features.len();
        self.n_rows = n_rows;
        self.slots = slots;
        // Every value is written below, so what a previous block left is not cleared.
        self.data
            .resize(n_rows.div_ceil(ROWS) * 2 * slots * ROWS, 0.0);
        if super::simd::fill(
            &mut self.data,
            &mut self.scratch,
            block,
            nf,
            n_rows,
            features,
        ) {
            return;
        }
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

/// One complete tree's arrays, each `N = 2^D` long.
#[derive(Clone, Copy)]
pub(crate) struct TreeArrays<'a, const N: usize> {
    pub thresholds: &'a [f32; N],
    pub columns: &'a [u32; N],
    pub leaves: &'a [f64; N],
    pub leaves_f32: &'a [f32; N],
}

/// Adds the leaf value of every row in `cols` to `acc[row * groups + g]` for the complete
/// tree at `offset`, with the AVX2 kernel where the CPU has it (see the `simd` module).
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
    let (thresholds, columns, leaves, leaves_f32) = (
        &trees.thresholds[range.clone()],
        &trees.columns[range.clone()],
        &trees.leaves[range.clone()],
        &trees.leaves_f32[range],
    );
    macro_rules! dispatch {
        ($($d:literal),*) => {
            match depth {
                $($d => {
                    let tree = TreeArrays::<{ 1 << $d }> {
                        thresholds: thresholds.try_into().expect("2^depth slots"),
                        columns: columns.try_into().expect("2^depth slots"),
                        leaves: leaves.try_into().expect("2^depth slots"),
                        leaves_f32: leaves_f32.try_into().expect("2^depth slots"),
                    };
                    if !super::simd::walk::<A, $d, { 1 << $d }>(tree, cols, acc, groups, g) {
                        walk_depth::<A, $d, { 1 << $d }>(tree, cols, acc, groups, g);
                    }
                })*
                _ => unreachable!("complete trees are 1..={MAX_COMPLETE_DEPTH} deep"),
            }
        };
    }
    dispatch!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
}

impl Columns {
    /// The groups of [`ROWS`] rows, each `2 * slots * ROWS` values.
    pub(crate) fn groups(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.group_len())
    }

    /// Values in one group.
    pub(crate) fn group_len(&self) -> usize {
        2 * ROWS * self.slots.max(1)
    }

    /// The regrouped values, group after group.
    pub(crate) fn values(&self) -> &[f32] {
        &self.data
    }

    /// Rows in the block (the last group may hold fewer than [`ROWS`]).
    pub(crate) fn n_rows(&self) -> usize {
        self.n_rows
    }
}

/// The portable kernel: see [`walk_group`].
fn walk_depth<A: Accum, const D: u32, const N: usize>(
    tree: TreeArrays<'_, N>,
    cols: &Columns,
    acc: &mut [A],
    groups: usize,
    g: usize,
) {
    for (gi, group) in cols.groups().enumerate() {
        let i = walk_group::<D, N>(tree.thresholds, tree.columns, group);
        let rows = (cols.n_rows - gi * ROWS).min(ROWS);
        for (a, &ik) in acc[gi * ROWS * groups..]
            .chunks_exact_mut(groups)
            .take(rows)
            .zip(&i)
        {
            // Bottom-level positions are N-1..2N-1; leaf k is at N-1+k.
            a[g] += A::from_f64(tree.leaves[(ik + 1) & (N - 1)]);
        }
    }
}

/// Walks the [`ROWS`] rows of one group down `D` levels; returns their final heap positions.
#[inline(always)]
fn walk_group<const D: u32, const N: usize>(
    thresholds: &[f32; N],
    columns: &[u32; N],
    group: &[f32],
) -> [usize; ROWS] {
    // Top levels: every row against every node of the level, keeping the outcome of the
    // node the row is at.
    let mut top = [0u32; ROWS];
    for level in 0..D.min(TOP_LEVELS) {
        let first = (1usize << level) - 1;
        let mut left = [0u32; ROWS];
        for j in first..2 * first + 1 {
            let threshold = thresholds[j & (N - 1)];
            let start = columns[j & (N - 1)] as usize;
            let Some(x) = group.get(start..start + ROWS) else {
                continue; // unreachable: columns are built from validated features
            };
            for k in 0..ROWS {
                left[k] |= u32::from(top[k] == j as u32) & u32::from(x[k] < threshold);
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
            let j = *ik & (N - 1);
            let x = group[columns[j] as usize + k];
            *ik = 2 * *ik + 2 - usize::from(x < thresholds[j]);
        }
    }
    i
}
