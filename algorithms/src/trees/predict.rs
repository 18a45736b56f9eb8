//! The prediction kernels over the flat layout, and the per-call driver.
//!
//! Layout: every node of every tree in one array of 16-byte [`Node`]s (threshold, feature
//! with flag bits, two child indices), renumbered breadth-first per tree; a leaf is a node
//! whose children are itself and its value sits in a parallel `leaf_values` array, so a
//! traversal can take a fixed number of steps (the tree's depth) with no leaf test.
//!
//! Rows are processed in blocks of [`BLOCK`], and within a block tree by tree, so a tree
//! stays in cache while it meets many rows. Each tree takes the fastest kernel it allows:
//! - shallow plain trees: the complete-tree kernel (see the `complete` module), unless the
//!   block has only a handful of rows;
//! - other plain trees: all rows of the block advance one level at a time, branch-free
//!   (`children[go_right as usize]`); the steps of different rows are independent, so the
//!   CPU overlaps their loads;
//! - trees with categorical or zero-as-missing splits: a per-row walk that handles every
//!   node kind.
//!
//! Sums run in the reference library's precision (`f32` for XGBoost, `f64` for LightGBM),
//! in tree order, starting from the base margin.
//!
//! Concurrency: the layout is immutable after load; a call allocates one block-sized
//! accumulator and scratch and works on the caller's thread only (parallelism comes from
//! serving many requests at once).

use super::complete::{self, Columns, CompleteTrees};
use super::transform::Transform;

/// Rows advanced together through one tree.
pub(crate) const BLOCK: usize = 64;

/// Bits of [`Node::meta`] holding the feature index.
pub(crate) const FEATURE_MASK: u32 = (1 << 28) - 1;
/// Missing values go left.
pub(crate) const META_DEFAULT_LEFT: u32 = 1 << 31;
/// Categorical split; `threshold`'s bits index the category table.
pub(crate) const META_CATEGORICAL: u32 = 1 << 30;
/// LightGBM zero-as-missing split.
pub(crate) const META_ZERO_MISSING: u32 = 1 << 29;

/// LightGBM's `kZeroThreshold`: values this close to zero count as zero.
const ZERO_THRESHOLD: f32 = 1e-35;
/// XGBoost refuses category codes at or above 2^24 (the largest exact float integer).
const XGB_MAX_CAT: f32 = 16_777_216.0;

/// One tree node, 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Node {
    /// Go left iff `x < threshold` (numeric splits); category-table index bits otherwise.
    pub threshold: f32,
    /// Feature index (low 28 bits) and `META_*` flags.
    pub meta: u32,
    /// Left and right child; both equal the node's own index for a leaf.
    pub children: [u32; 2],
}

/// Where one tree starts and how to walk it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TreeSpan {
    /// Index of the root in the node array.
    pub root: u32,
    /// Levels below the root (0 for a single leaf).
    pub depth: u32,
    /// Output group the tree adds to.
    pub group: u32,
    /// Only plain numeric splits: the block kernel applies.
    pub plain: bool,
    /// Offset of the tree's complete form in `Layout::complete`, if it
    /// has one (plain and shallow; see the `complete` module).
    pub complete: Option<u32>,
}

/// Which library's category semantics a categorical split follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatRule {
    /// XGBoost: categories in the set go right; negative or >= 2^24 go left.
    XgboostInSetRight,
    /// LightGBM: categories in the set go left; negative codes go right.
    LightgbmInSetLeft,
}

/// A categorical split's set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatSplit {
    /// Bitset, 32 categories per word.
    pub words: Vec<u32>,
    /// Semantics.
    pub rule: CatRule,
    /// Where NaN goes.
    pub nan_left: bool,
}

impl CatSplit {
    fn contains(&self, category: u32) -> bool {
        self.words
            .get((category / 32) as usize)
            .is_some_and(|w| (w >> (category % 32)) & 1 == 1)
    }

    fn goes_left(&self, x: f32) -> bool {
        if x.is_nan() {
            return self.nan_left;
        }
        match self.rule {
            CatRule::XgboostInSetRight => {
                if !(0.0..XGB_MAX_CAT).contains(&x) {
                    return true;
                }
                !self.contains(x as u32)
            }
            CatRule::LightgbmInSetLeft => {
                // C++ `static_cast<int>` truncates toward zero: -0.5 is category 0.
                let c = x as i32;
                c >= 0 && self.contains(c as u32)
            }
        }
    }
}

/// All trees of a model in the flat layout.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layout {
    pub nodes: Vec<Node>,
    pub leaf_values: Vec<f64>,
    pub trees: Vec<TreeSpan>,
    pub cats: Vec<CatSplit>,
    pub complete: CompleteTrees,
}

/// The accumulator precision of a library.
/// Accumulator arithmetic of one library.
pub(crate) trait Accum: Copy + Default + std::ops::AddAssign + 'static {
    fn from_f64(v: f64) -> Self;
    /// The accumulators as `f32`, when that is their type (lets the SIMD kernel add eight
    /// rows' leaves with one instruction).
    fn as_f32(acc: &mut [Self]) -> Option<&mut [f32]>;
    fn to_f32(self) -> f32;
    fn div(self, by: f64) -> Self;
    fn finish(transform: Transform, margin: &[Self], out: &mut [f32]);
}

impl Accum for f32 {
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn as_f32(acc: &mut [Self]) -> Option<&mut [f32]> {
        Some(acc)
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn div(self, by: f64) -> Self {
        (f64::from(self) / by) as f32
    }
    fn finish(transform: Transform, margin: &[Self], out: &mut [f32]) {
        transform.apply_f32(margin, out);
    }
}

impl Accum for f64 {
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    fn as_f32(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn div(self, by: f64) -> Self {
        self / by
    }
    fn finish(transform: Transform, margin: &[Self], out: &mut [f32]) {
        transform.apply_f64(margin, out);
    }
}

impl Layout {
    /// Computes margins for `rows` (row-major, `nf` features each) into `out`
    /// (`groups` per row). With a `transform`, divides the sums by `average_over` first
    /// (LightGBM's `average_output`, which its raw scores do not apply) and transforms.
    pub(crate) fn run<A: Accum>(
        &self,
        rows: &[f32],
        nf: usize,
        base: &[f64],
        transform: Option<Transform>,
        out: &mut [f32],
        average_over: f64,
    ) {
        let groups = base.len();
        let width = transform.map_or(groups, |t| t.output_width(groups));
        let base: Vec<A> = base.iter().map(|&b| A::from_f64(b)).collect();
        let mut acc = vec![A::default(); BLOCK * groups];
        let mut idx = [0u32; BLOCK];
        let mut cols = Columns::default();
        let any_complete = self.trees.iter().any(|t| t.complete.is_some());
        debug_assert!(nf > 0, "models have at least one feature");
        for (block, out_block) in rows.chunks(BLOCK * nf).zip(out.chunks_mut(BLOCK * width)) {
            let n = block.len() / nf;
            let acc = &mut acc[..n * groups];
            // A handful of rows would mostly walk padding in the complete kernel's groups.
            let use_complete = any_complete && n >= complete::MIN_ROWS;
            if use_complete {
                cols.fill(block, nf, &self.complete.features);
            }
            for row_acc in acc.chunks_exact_mut(groups) {
                row_acc.copy_from_slice(&base);
            }
            if n == 1 {
                // One row (a request's, unbatched): a straight walk per tree. The block walk's
                // per-level loop over its slots overlaps rows from two rows on (measured:
                // 1.5x faster at one row, even at two, slower at three).
                self.walk_one(block, acc);
            } else {
                for tree in &self.trees {
                    let g = tree.group as usize;
                    if let Some(offset) = tree.complete.filter(|_| use_complete) {
                        complete::walk(&self.complete, offset, tree.depth, &cols, acc, groups, g);
                    } else if tree.plain {
                        let idx = &mut idx[..n];
                        self.walk_block(tree, block, nf, idx);
                        for (row_acc, &i) in acc.chunks_exact_mut(groups).zip(idx.iter()) {
                            row_acc[g] += A::from_f64(self.leaf_values[i as usize]);
                        }
                    } else {
                        for (r, row_acc) in acc.chunks_exact_mut(groups).enumerate() {
                            let leaf = self.walk_row(tree.root, &block[r * nf..(r + 1) * nf]);
                            row_acc[g] += A::from_f64(self.leaf_values[leaf as usize]);
                        }
                    }
                }
            }
            if average_over != 1.0 && transform.is_some() {
                for a in acc.iter_mut() {
                    *a = a.div(average_over);
                }
            }
            match transform {
                None => {
                    for (o, a) in out_block.iter_mut().zip(acc.iter()) {
                        *o = a.to_f32();
                    }
                }
                Some(t) => {
                    for (o, a) in out_block
                        .chunks_exact_mut(width)
                        .zip(acc.chunks_exact(groups))
                    {
                        A::finish(t, a, o);
                    }
                }
            }
        }
    }

    /// One row through every tree in turn, adding its leaves to the row's accumulators: the
    /// additions of the per-tree loop in the same order, so the same bits.
    fn walk_one<A: Accum>(&self, row: &[f32], acc: &mut [A]) {
        for tree in &self.trees {
            let leaf = if tree.plain {
                self.walk_plain(tree, row)
            } else {
                self.walk_row(tree.root, row)
            };
            acc[tree.group as usize] += A::from_f64(self.leaf_values[leaf as usize]);
        }
    }

    /// Advances every row of a block through a plain tree, `depth` levels, branch-free.
    #[inline(always)]
    fn walk_block(&self, tree: &TreeSpan, block: &[f32], nf: usize, idx: &mut [u32]) {
        idx.fill(tree.root);
        for _ in 0..tree.depth {
            for (slot, row) in idx.iter_mut().zip(block.chunks_exact(nf)) {
                *slot = self.step(*slot, row);
            }
        }
    }

    /// One row through a plain tree, `depth` levels, branch-free: [`Self::walk_block`] for
    /// a single row, without the per-level loop over the block's slots.
    #[inline(always)]
    fn walk_plain(&self, tree: &TreeSpan, row: &[f32]) -> u32 {
        let mut i = tree.root;
        for _ in 0..tree.depth {
            i = self.step(i, row);
        }
        i
    }

    /// The child of plain node `i` that `row` goes to (a leaf leads to itself).
    #[inline(always)]
    fn step(&self, i: u32, row: &[f32]) -> u32 {
        let node = self.nodes[i as usize];
        let x = row[(node.meta & FEATURE_MASK) as usize];
        let default_left = node.meta & META_DEFAULT_LEFT != 0;
        let go_left = (x < node.threshold) | (x.is_nan() & default_left);
        node.children[usize::from(!go_left)]
    }

    /// Walks one row through any tree to its leaf.
    pub(crate) fn walk_row(&self, root: u32, row: &[f32]) -> u32 {
        let mut i = root;
        loop {
            let node = self.nodes[i as usize];
            if node.children[0] == i {
                return i;
            }
            let x = row[(node.meta & FEATURE_MASK) as usize];
            let left = if node.meta & META_CATEGORICAL != 0 {
                self.cats[node.threshold.to_bits() as usize].goes_left(x)
            } else {
                let missing =
                    x.is_nan() || (node.meta & META_ZERO_MISSING != 0 && x.abs() <= ZERO_THRESHOLD);
                if missing {
                    node.meta & META_DEFAULT_LEFT != 0
                } else {
                    x < node.threshold
                }
            };
            i = node.children[usize::from(!left)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 16);
    }

    #[test]
    fn category_rules_follow_each_library() {
        let xgb = CatSplit {
            words: vec![0b101],
            rule: CatRule::XgboostInSetRight,
            nan_left: false,
        };
        assert!(!xgb.goes_left(0.0));
        assert!(xgb.goes_left(1.0));
        assert!(!xgb.goes_left(2.7)); // truncates to 2
        assert!(xgb.goes_left(-0.5)); // negative: invalid, left
        assert!(xgb.goes_left(1000.0)); // beyond the bitset: not in the set
        assert!(!xgb.goes_left(f32::NAN));
        let lgb = CatSplit {
            words: vec![0b101],
            rule: CatRule::LightgbmInSetLeft,
            nan_left: false,
        };
        assert!(lgb.goes_left(0.0));
        assert!(lgb.goes_left(-0.5)); // truncates to 0
        assert!(!lgb.goes_left(-1.0));
        assert!(!lgb.goes_left(1.0));
        assert!(!lgb.goes_left(f32::NAN));
        assert!(!lgb.goes_left(1e12));
    }
}
