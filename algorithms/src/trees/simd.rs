//! The AVX2 form of the complete-tree kernel: eight rows (one [`Columns`] group) walk a
//! tree together, one row per SIMD lane, every level branch-free.
//!
//! A level is: each lane's node (threshold and column), the lane's input at that column,
//! one `x < t` compare, and `pos = 2 * pos + 2 + mask` (the mask is -1 where the row goes
//! left), so heap positions stay in registers from the root to the leaves. How a level
//! finds its nodes and inputs depends on its width:
//! - levels 0 to 3 (1 to 8 nodes): every node is compared with all eight rows by
//!   contiguous loads of its column, and each lane keeps its own node's outcome through a
//!   tree of blends on the bits of its position in the level (no gather);
//! - levels 4 and 5 (16 and 32 nodes): thresholds and columns are looked up in registers
//!   (permutes within eight-node chunks, blends across them), the inputs gathered;
//! - deeper levels gather nodes and inputs.
//!
//! The eight groups of a 64-row block advance level by level together, so their gathers
//! overlap instead of each waiting on the one before; a whole chunk of eight groups is
//! walked by a fixed-size copy of the loop that the compiler unrolls (no per-group loop
//! or slice bookkeeping), a short rest one group at a time. With one output group and `f32`
//! sums (XGBoost binary and regression models) the eight rows' leaves are gathered from an
//! `f32` copy of the leaf values and added with one instruction.
//!
//! [`fill`] regroups a block for these kernels (see [`Columns`]): per group, the rows are
//! transposed eight features at a time (contiguous loads and shuffles, no gathers), then
//! each used feature is written twice with NaN replaced by -inf and +inf (a compare and two
//! blends). Same bits as the portable loop, at about a sixth of its instructions.
//!
//! Results are bit-identical to the portable kernel and the per-row walk: the same
//! comparison (`x < t` on `f32`, false for NaN; NaN never reaches it, see the `complete`
//! module), and each row's leaves added in tree order in the library's precision (an
//! `f32` add of the leaf rounded to `f32` is what `A::from_f64` and `+=` do).
//!
//! Runtime dispatch: [`walk`] checks for AVX2 (std caches the answer) and returns false
//! without it; the caller then runs the portable kernel.
//!
//! This module is the crate's only `unsafe` code: calling the `avx2` functions once the
//! CPU is known to have AVX2; unaligned loads and stores of fixed-size arrays (all of
//! [`fill`]'s reads and writes are through those); loads and
//! gathers of a group's inputs, after `walk` has checked once per call that every column
//! of the tree plus eight lies inside a group; and node and leaf gathers whose indices are
//! clamped into their slices first ([`gather_ps`]). No input, however malformed, reads out
//! of bounds.

#![allow(unsafe_code)]

use super::complete::{Columns, ROWS, TreeArrays};
use super::predict::Accum;

#[cfg(test)]
thread_local! {
    /// Tests set this to run the portable kernel on a CPU that has AVX2.
    pub(crate) static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Adds tree `tree`'s leaf for every row of `cols` to `acc[row * groups + g]`; false if
/// the CPU lacks AVX2 (nothing is added then).
#[inline]
pub(crate) fn walk<A: Accum, const D: u32, const N: usize>(
    tree: TreeArrays<'_, N>,
    cols: &Columns,
    acc: &mut [A],
    groups: usize,
    g: usize,
) -> bool {
    #[cfg(test)]
    if PORTABLE_ONLY.with(std::cell::Cell::get) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the only requirement of `avx2::walk`.
            unsafe { avx2::walk::<A, D, N>(tree, cols, acc, groups, g) };
            return true;
        }
    }
    let _ = (tree, cols, acc, groups, g);
    false
}

/// Regroups `block` (`n_rows` rows of `nf` features) into `data` as [`Columns::fill`]
/// does, the same bits; false (nothing written) without AVX2 or where the used
/// `features` are a small part of the row (the portable loop then reads only those).
#[inline]
pub(crate) fn fill(
    data: &mut [f32],
    scratch: &mut Vec<f32>,
    block: &[f32],
    nf: usize,
    n_rows: usize,
    features: &[u32],
) -> bool {
    #[cfg(test)]
    if PORTABLE_ONLY.with(std::cell::Cell::get) {
        return false;
    }
    // The transposition reads every feature of a row; worth it while most are used.
    if features.is_empty() || nf > 4 * features.len() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the only requirement of `avx2::fill`.
            unsafe { avx2::fill(data, scratch, block, nf, n_rows, features) };
            return true;
        }
    }
    let _ = (data, scratch, block, nf, n_rows);
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Accum, Columns, ROWS, TreeArrays};

    /// Groups of eight rows walked together, level by level, so that their gathers
    /// overlap instead of each waiting on the one before.
    const GROUPS: usize = 8;

    /// Eight `f32` from a fixed-size array.
    #[inline(always)]
    fn load(x: &[f32; 8]) -> __m256 {
        // SAFETY: reads exactly the 32 bytes of `x`; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }

    /// The eight values at `column..column + 8` of `group`.
    ///
    /// # Safety
    /// `column + 8 <= group.len()` (`walk` checks it for every column of the tree).
    #[inline(always)]
    unsafe fn load_at(group: &[f32], column: u32) -> __m256 {
        debug_assert!(column as usize + ROWS <= group.len());
        // SAFETY: the 32 bytes from `column` lie inside `group` (the caller's contract).
        unsafe { _mm256_loadu_ps(group.as_ptr().add(column as usize)) }
    }

    /// The eight lanes' inputs, at `column[k] + k` of `group`.
    ///
    /// # Safety
    /// As for [`load_at`], for every lane's column.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn gather_at(group: &[f32], column: __m256i) -> __m256 {
        let idx = _mm256_add_epi32(column, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        // SAFETY: lane k reads `column[k] + k < column[k] + 8 <= group.len()`.
        unsafe { _mm256_i32gather_ps::<4>(group.as_ptr(), idx) }
    }

    /// `slice[idx[k]]` for the eight lanes, each index first clamped to `slice.len() - 1`
    /// (the caller's indices are always in range; the clamp makes that not a safety
    /// question). `slice` must be non-empty and shorter than 2^31.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gather_ps(slice: &[f32], idx: __m256i) -> __m256 {
        assert!(!slice.is_empty() && slice.len() <= i32::MAX as usize);
        let idx = _mm256_min_epu32(idx, _mm256_set1_epi32(slice.len() as i32 - 1));
        // SAFETY: every lane of `idx` is at most `slice.len() - 1` (unsigned minimum), so
        // each 4-byte read lies inside `slice`.
        unsafe { _mm256_i32gather_ps::<4>(slice.as_ptr(), idx) }
    }

    /// Like [`gather_ps`] for `u32` values.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gather_u32(slice: &[u32], idx: __m256i) -> __m256i {
        assert!(!slice.is_empty() && slice.len() <= i32::MAX as usize);
        let idx = _mm256_min_epu32(idx, _mm256_set1_epi32(slice.len() as i32 - 1));
        // SAFETY: as in `gather_ps`.
        unsafe { _mm256_i32gather_epi32::<4>(slice.as_ptr().cast::<i32>(), idx) }
    }

    /// Next heap position: `2 * pos + 1` where the row goes left (`left` all ones),
    /// `2 * pos + 2` otherwise.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn step(pos: __m256i, left: __m256) -> __m256i {
        let twice = _mm256_add_epi32(pos, pos);
        _mm256_add_epi32(
            _mm256_add_epi32(twice, _mm256_set1_epi32(2)),
            _mm256_castps_si256(left),
        )
    }

    /// `x < t` per lane, all ones where it holds (false for NaN, like the scalar `<`).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn less(x: __m256, t: __m256) -> __m256 {
        _mm256_cmp_ps::<_CMP_LT_OQ>(x, t)
    }

    /// Deepest level whose nodes are all compared with every row (contiguous loads, no
    /// gather), each lane then keeping its own node's outcome.
    const LAST_COMPARE_ALL_LEVEL: u32 = 3;

    /// Every row of `group` against each of the `COUNT` nodes from heap position `first`;
    /// returns, per lane, the outcome at node `first + j` (`j` below `COUNT`, a power of
    /// two): a tree of blends on the bits of `j`.
    ///
    /// # Safety
    /// As for [`load_at`], for the columns of those nodes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn compare_all<const COUNT: usize>(
        group: &[f32],
        thresholds: &[f32],
        columns: &[u32],
        first: usize,
        j: __m256i,
    ) -> __m256 {
        let mut m: [__m256; COUNT] = std::array::from_fn(|n| {
            less(
                // SAFETY: the caller's contract.
                unsafe { load_at(group, columns[first + n]) },
                _mm256_set1_ps(thresholds[first + n]),
            )
        });
        let (mut width, mut bit) = (COUNT, 0);
        while width > 1 {
            let sel = _mm256_castsi256_ps(_mm256_sllv_epi32(j, _mm256_set1_epi32(31 - bit)));
            for i in 0..width / 2 {
                m[i] = _mm256_blendv_ps(m[2 * i], m[2 * i + 1], sel);
            }
            width /= 2;
            bit += 1;
        }
        m[0]
    }

    /// Deepest level whose nodes are looked up in registers (levels 4 and 5: 16 and 32
    /// nodes, two and four registers); deeper levels gather them.
    const LAST_TABLE_LEVEL: u32 = 5;
    /// Registers of the level tables: heap positions 15..31 (level 4) and 31..63 (level 5).
    const TABLE_STARTS: [usize; 6] = [15, 23, 31, 39, 47, 55];

    /// The level tables' registers, read straight from the heap arrays (zeros for levels
    /// the tree does not have).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn level_tables<const N: usize>(thresholds: &[f32; N], columns: &[u32; N]) -> [[__m256; 6]; 2] {
        let t = TABLE_STARTS.map(|at| match thresholds.get(at..at + 8) {
            Some(v) => load(v.try_into().expect("eight values")),
            None => _mm256_setzero_ps(),
        });
        let c = TABLE_STARTS.map(|at| match columns.get(at..at + 8) {
            Some(v) => _mm256_castsi256_ps(load_u32(v.try_into().expect("eight values"))),
            None => _mm256_setzero_ps(),
        });
        [t, c]
    }

    /// Stores eight `f32` into a fixed-size array.
    #[inline(always)]
    fn store(x: &mut [f32; 8], v: __m256) {
        // SAFETY: writes exactly the 32 bytes of `x`; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_ps(x.as_mut_ptr(), v) }
    }

    /// Transposes eight registers of eight: lane `k` of output `i` is lane `i` of input `k`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose(r: [__m256; 8]) -> [__m256; 8] {
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        // Lanes i and i + 4 of rows 0-3 (first four) and of rows 4-7 (last four).
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        [
            _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
            _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
        ]
    }

    /// See [`super::fill`]: per group of eight rows, every feature transposed eight by
    /// eight into `scratch` (`[feature][row]`), then each used feature copied twice with
    /// NaN replaced by -inf and +inf (a compare and two blends per eight values).
    ///
    /// # Safety
    /// The CPU must support AVX2. (Every read and write is through bounds-checked slices.)
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn fill(
        data: &mut [f32],
        scratch: &mut Vec<f32>,
        block: &[f32],
        nf: usize,
        n_rows: usize,
        features: &[u32],
    ) {
        let slots = features.len();
        // Every value is written for each group before it is read.
        scratch.resize(nf * ROWS, 0.0);
        let whole = nf - nf % ROWS;
        let (neg, pos) = (
            _mm256_set1_ps(f32::NEG_INFINITY),
            _mm256_set1_ps(f32::INFINITY),
        );
        for (gi, dst) in data.chunks_exact_mut(2 * slots * ROWS).enumerate() {
            // A short last group repeats its last row, as the portable loop does.
            let mut rows: [&[f32]; ROWS] = [&[]; ROWS];
            for (k, row) in rows.iter_mut().enumerate() {
                let r = (gi * ROWS + k).min(n_rows - 1);
                *row = &block[r * nf..(r + 1) * nf];
            }
            for c in (0..whole).step_by(ROWS) {
                let mut v = [_mm256_setzero_ps(); ROWS];
                for (v, row) in v.iter_mut().zip(&rows) {
                    *v = load(row[c..c + ROWS].try_into().expect("eight values"));
                }
                for (i, t) in transpose(v).into_iter().enumerate() {
                    let at = (c + i) * ROWS;
                    store(
                        (&mut scratch[at..at + ROWS])
                            .try_into()
                            .expect("eight values"),
                        t,
                    );
                }
            }
            for f in whole..nf {
                for (k, row) in rows.iter().enumerate() {
                    scratch[f * ROWS + k] = row[f];
                }
            }
            for (pair, &f) in dst.chunks_exact_mut(2 * ROWS).zip(features) {
                let at = f as usize * ROWS;
                let x = load((&scratch[at..at + ROWS]).try_into().expect("eight values"));
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
                let (lo, hi) = pair.split_at_mut(ROWS);
                store(
                    lo.try_into().expect("eight values"),
                    _mm256_blendv_ps(x, neg, nan),
                );
                store(
                    hi.try_into().expect("eight values"),
                    _mm256_blendv_ps(x, pos, nan),
                );
            }
        }
    }

    /// Eight `u32` from a fixed-size array.
    #[inline(always)]
    fn load_u32(x: &[u32; 8]) -> __m256i {
        // SAFETY: reads exactly the 32 bytes of `x`; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
    }

    /// `table[j]` per lane, for a table of 1, 2 or 4 chunks of eight (`j` below 32; more
    /// chunks than four are not looked up): permutes within chunks, blends across them.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lookup(table: &[__m256], j: __m256i) -> __m256 {
        let pick = |c: usize| _mm256_permutevar8x32_ps(table[c], j);
        match table.len() {
            1 => pick(0),
            2 => _mm256_blendv_ps(
                pick(0),
                pick(1),
                _mm256_castsi256_ps(_mm256_slli_epi32::<28>(j)),
            ),
            _ => {
                let bit3 = _mm256_castsi256_ps(_mm256_slli_epi32::<28>(j));
                let bit4 = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(j));
                let low = _mm256_blendv_ps(pick(0), pick(1), bit3);
                let high = _mm256_blendv_ps(pick(2), pick(3), bit3);
                _mm256_blendv_ps(low, high, bit4)
            }
        }
    }

    /// See [`super::walk`].
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn walk<A: Accum, const D: u32, const N: usize>(
        tree: TreeArrays<'_, N>,
        cols: &Columns,
        acc: &mut [A],
        groups: usize,
        g: usize,
    ) {
        let TreeArrays {
            thresholds,
            columns,
            leaves,
            leaves_f32,
        } = tree;
        let group_len = cols.group_len();
        // Every read of a group below is at a tree column plus at most seven.
        let max_column = columns.iter().fold(0, |m, &c| m.max(c));
        assert!(
            max_column as usize + ROWS <= group_len,
            "complete-tree columns are built for the block's layout"
        );
        let [t_tab, c_tab] = level_tables(thresholds, columns);
        let values = cols.values();
        let n_groups = values.len() / group_len;
        let n_rows = cols.n_rows();
        let mut pos = [_mm256_setzero_si256(); GROUPS];
        let mut first = 0;
        while first < n_groups {
            let ng = (n_groups - first).min(GROUPS);
            if ng == GROUPS {
                // A whole chunk (fixed-size, so the compiler unrolls it).
                let mut all: [&[f32]; GROUPS] = [&[]; GROUPS];
                for (k, group) in all.iter_mut().enumerate() {
                    *group = &values[(first + k) * group_len..(first + k + 1) * group_len];
                }
                // SAFETY: every group is `group_len` long and every column of the tree
                // was checked above.
                pos =
                    unsafe { positions::<D, N, GROUPS>(thresholds, columns, &t_tab, &c_tab, &all) };
            } else {
                // The rest one group at a time.
                for (k, p) in pos[..ng].iter_mut().enumerate() {
                    let group = &values[(first + k) * group_len..(first + k + 1) * group_len];
                    // SAFETY: as above.
                    [*p] = unsafe {
                        positions::<D, N, 1>(thresholds, columns, &t_tab, &c_tab, &[group])
                    };
                }
            }
            // Whole groups with one output group and `f32` sums (XGBoost binary and
            // regression): the eight rows' accumulators are contiguous, add their leaves
            // at once.
            let whole = if groups == 1 {
                (n_rows / ROWS).saturating_sub(first).min(ng)
            } else {
                0
            };
            let mut done = 0;
            if whole > 0
                && let Some(sums) = A::as_f32(&mut acc[first * ROWS..(first + whole) * ROWS])
            {
                for (p, sums) in pos.iter().zip(sums.chunks_exact_mut(ROWS)) {
                    let leaf = _mm256_sub_epi32(*p, _mm256_set1_epi32(N as i32 - 1));
                    let sums: &mut [f32; ROWS] = sums.try_into().expect("eight rows");
                    store(sums, _mm256_add_ps(load(sums), gather_ps(leaves_f32, leaf)));
                }
                done = whole;
            }
            for (k, p) in pos[..ng].iter().enumerate().skip(done) {
                let gi = first + k;
                let leaf = _mm256_sub_epi32(*p, _mm256_set1_epi32(N as i32 - 1));
                let rows = (n_rows - gi * ROWS).min(ROWS);
                let mut leaf_at = [0u32; ROWS];
                // SAFETY: writes exactly the 32 bytes of `leaf_at`.
                unsafe { _mm256_storeu_si256(leaf_at.as_mut_ptr().cast(), leaf) };
                for (a, &l) in acc[gi * ROWS * groups..]
                    .chunks_exact_mut(groups)
                    .take(rows)
                    .zip(&leaf_at)
                {
                    a[g] += A::from_f64(leaves[l as usize & (N - 1)]);
                }
            }
            first += ng;
        }
    }

    /// The final heap positions of the rows of `K` groups walked together, level by
    /// level.
    ///
    /// # Safety
    /// As for [`load_at`], for every group and every column of the tree.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn positions<const D: u32, const N: usize, const K: usize>(
        thresholds: &[f32; N],
        columns: &[u32; N],
        t_tab: &[__m256; 6],
        c_tab: &[__m256; 6],
        all: &[&[f32]; K],
    ) -> [__m256i; K] {
        let mut pos = [_mm256_setzero_si256(); K];
        // Level 0: every lane at the root.
        let t = _mm256_set1_ps(thresholds[0]);
        for (p, group) in pos.iter_mut().zip(all) {
            // SAFETY (each `load_at`, `compare_all` and `gather_at` here): the
            // caller's contract.
            let x = unsafe { load_at(group, columns[0]) };
            *p = step(_mm256_setzero_si256(), less(x, t));
        }
        if D >= 2 {
            // Level 1: both children with contiguous loads, each lane keeps its own.
            let (tl, tr) = (
                _mm256_set1_ps(thresholds[1]),
                _mm256_set1_ps(thresholds[2 % N]),
            );
            for (p, group) in pos.iter_mut().zip(all) {
                let l = less(unsafe { load_at(group, columns[1]) }, tl);
                let r = less(unsafe { load_at(group, columns[2 % N]) }, tr);
                let at_left = _mm256_castsi256_ps(_mm256_cmpeq_epi32(*p, _mm256_set1_epi32(1)));
                *p = step(*p, _mm256_blendv_ps(r, l, at_left));
            }
        }
        for level in 2..D {
            if level <= LAST_COMPARE_ALL_LEVEL {
                let first = (1usize << level) - 1;
                for (p, group) in pos.iter_mut().zip(all) {
                    let j = _mm256_sub_epi32(*p, _mm256_set1_epi32(first as i32));
                    let left = match level {
                        2 => unsafe { compare_all::<4>(group, thresholds, columns, first, j) },
                        _ => unsafe { compare_all::<8>(group, thresholds, columns, first, j) },
                    };
                    *p = step(*p, left);
                }
                continue;
            }
            for (p, group) in pos.iter_mut().zip(all) {
                let (t, c) = if level <= LAST_TABLE_LEVEL {
                    let j = _mm256_sub_epi32(*p, _mm256_set1_epi32((1 << level) - 1));
                    let tables = if level == 4 { 0..2 } else { 2..6 };
                    (
                        lookup(&t_tab[tables.clone()], j),
                        _mm256_castps_si256(lookup(&c_tab[tables], j)),
                    )
                } else {
                    (gather_ps(thresholds, *p), gather_u32(columns, *p))
                };
                let x = unsafe { gather_at(group, c) };
                *p = step(*p, less(x, t));
            }
        }
        pos
    }
}
