//! Cross-checks of the three kernels (complete-tree, explicit block, per-row general)
//! against a direct interpretation of the readers' intermediate trees, on random trees and
//! inputs (with NaNs, values on thresholds, partial blocks and groups).

use super::predict::{Accum, CatRule, Layout};
use super::raw::{RawNode, RawTree, Split, bitset, categorical, lower};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A value on a coarse grid, so inputs often equal thresholds.
    fn grid(&mut self) -> f32 {
        (self.below(17) as f32 - 8.0) * 0.25
    }
}

#[derive(Clone, Copy)]
enum Kinds {
    Plain,
    Mixed,
}

fn random_tree(
    rng: &mut Rng,
    nf: u32,
    depth: u32,
    leaf_chance: u64,
    kinds: Kinds,
    group: u32,
) -> RawTree {
    let mut nodes = Vec::new();
    build(rng, nf, depth, leaf_chance, kinds, &mut nodes);
    RawTree { nodes, group }
}

/// Appends a subtree in depth-first order (the lowering renumbers it); returns its index.
fn build(
    rng: &mut Rng,
    nf: u32,
    depth: u32,
    leaf_chance: u64,
    kinds: Kinds,
    nodes: &mut Vec<RawNode>,
) -> u32 {
    let me = nodes.len() as u32;
    if depth == 0 || (me > 0 && rng.below(100) < leaf_chance) {
        nodes.push(RawNode::Leaf(
            rng.grid() as f64 + rng.below(1000) as f64 * 1e-4,
        ));
        return me;
    }
    let feature = rng.below(u64::from(nf)) as u32;
    let threshold = rng.grid();
    let default_left = rng.below(2) == 0;
    let split = match (kinds, rng.below(4)) {
        (Kinds::Mixed, 0) => Split::LessZeroMissing {
            threshold,
            default_left,
        },
        (Kinds::Mixed, 1) => {
            let cats: Vec<i64> = (0..6).filter(|_| rng.below(2) == 0).collect();
            let rule = if rng.below(2) == 0 {
                CatRule::XgboostInSetRight
            } else {
                CatRule::LightgbmInSetLeft
            };
            categorical(bitset(cats, 64, "test").unwrap(), rule, default_left)
        }
        _ => Split::Less {
            threshold,
            default_left,
        },
    };
    nodes.push(RawNode::Leaf(0.0)); // placeholder until the children exist
    let left = build(rng, nf, depth - 1, leaf_chance, kinds, nodes);
    let right = build(rng, nf, depth - 1, leaf_chance, kinds, nodes);
    nodes[me as usize] = RawNode::Split {
        feature,
        split,
        left,
        right,
    };
    me
}

fn interpret(tree: &RawTree, row: &[f32]) -> f64 {
    let mut i = 0usize;
    loop {
        match &tree.nodes[i] {
            RawNode::Leaf(v) => return *v,
            RawNode::Split {
                feature,
                split,
                left,
                right,
            } => {
                let x = row[*feature as usize];
                let go_left = match split {
                    Split::Less {
                        threshold,
                        default_left,
                    } => {
                        if x.is_nan() {
                            *default_left
                        } else {
                            x < *threshold
                        }
                    }
                    Split::LessZeroMissing {
                        threshold,
                        default_left,
                    } => {
                        if x.is_nan() || x.abs() <= 1e-35 {
                            *default_left
                        } else {
                            x < *threshold
                        }
                    }
                    Split::Categorical(c) => {
                        let member = |v: i64| {
                            v >= 0
                                && c.words
                                    .get((v / 32) as usize)
                                    .is_some_and(|w| (w >> (v % 32)) & 1 == 1)
                        };
                        match c.rule {
                            _ if x.is_nan() => c.nan_left,
                            CatRule::XgboostInSetRight => {
                                !(0.0..16_777_216.0).contains(&x) || !member(x as i64)
                            }
                            CatRule::LightgbmInSetLeft => member(x as i32 as i64),
                        }
                    }
                };
                i = if go_left { *left } else { *right } as usize;
            }
        }
    }
}

fn check(
    seed: u64,
    depth: u32,
    leaf_chance: u64,
    kinds: Kinds,
    nan_rate: u64,
    expect: fn(&Layout) -> bool,
) {
    let mut rng = Rng(seed);
    let (nf, groups, n_trees, n_rows) = (7u32, 3usize, 12, 203);
    let trees: Vec<RawTree> = (0..n_trees)
        .map(|t| random_tree(&mut rng, nf, depth, leaf_chance, kinds, (t % groups) as u32))
        .collect();
    let layout = lower(&trees, nf as usize, groups, &|t| format!("trees[{t}]")).unwrap();
    assert!(
        expect(&layout),
        "the trees did not take the kernel under test"
    );
    let mut rows = Vec::new();
    for _ in 0..n_rows * nf as usize {
        rows.push(match rng.below(100) {
            r if r < nan_rate => f32::NAN,
            r if r < nan_rate + 5 => -0.0,
            r if r < nan_rate + 10 => rng.below(8) as f32 + 0.5,
            r if r < nan_rate + 11 => f32::INFINITY,
            r if r < nan_rate + 12 => f32::NEG_INFINITY,
            _ => rng.grid(),
        });
    }
    let base = [0.5, -0.25, 0.0];
    let mut out = vec![0.0f32; n_rows * groups];
    layout.run::<f32>(&rows, nf as usize, &base, None, &mut out, 1.0);
    // Small calls take the explicit kernels even for complete trees.
    let mut small = vec![0.0f32; 3 * groups];
    layout.run::<f32>(
        &rows[..3 * nf as usize],
        nf as usize,
        &base,
        None,
        &mut small,
        1.0,
    );
    assert_eq!(small, out[..3 * groups]);
    for r in 0..n_rows {
        let row = &rows[r * nf as usize..(r + 1) * nf as usize];
        let mut want = base.map(|b| b as f32);
        for tree in &trees {
            want[tree.group as usize] += interpret(tree, row) as f32;
        }
        assert_eq!(
            out[r * groups..(r + 1) * groups],
            want,
            "seed {seed} row {r}: {row:?}"
        );
    }
}

#[test]
fn complete_kernel_matches_interpretation() {
    for seed in 1..6 {
        check(seed, 6, 20, Kinds::Plain, 10, |l| {
            l.trees.iter().all(|t| t.complete.is_some())
        });
        check(seed + 100, 3, 0, Kinds::Plain, 0, |l| {
            l.trees.iter().all(|t| t.complete.is_some())
        });
    }
}

#[test]
fn explicit_block_kernel_matches_interpretation() {
    for seed in 1..4 {
        // Deeper than the complete form allows; sparse so the trees stay small.
        check(seed, 14, 45, Kinds::Plain, 10, |l| {
            l.trees
                .iter()
                .any(|t| t.plain && t.complete.is_none() && t.depth > 10)
        });
    }
}

#[test]
fn general_kernel_matches_interpretation() {
    for seed in 1..4 {
        check(seed, 5, 15, Kinds::Mixed, 15, |l| {
            l.trees.iter().any(|t| !t.plain)
        });
    }
}

/// Sums, for every row, the per-row walk's leaf of every tree in tree order from the base,
/// in `A`'s precision: what every kernel must reproduce bit for bit.
fn per_row_walk<A: Accum>(layout: &Layout, rows: &[f32], nf: usize, base: &[f64]) -> Vec<f32> {
    let mut out = Vec::new();
    for row in rows.chunks_exact(nf) {
        let mut acc: Vec<A> = base.iter().map(|&b| A::from_f64(b)).collect();
        for tree in &layout.trees {
            let leaf = layout.walk_row(tree.root, row);
            acc[tree.group as usize] += A::from_f64(layout.leaf_values[leaf as usize]);
        }
        out.extend(acc.iter().map(|a| a.to_f32()));
    }
    out
}

fn random_rows(rng: &mut Rng, n: usize, nan_rate: u64) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.below(100) {
            r if r < nan_rate => f32::NAN,
            r if r < nan_rate + 3 => -0.0,
            r if r < nan_rate + 4 => f32::INFINITY,
            r if r < nan_rate + 5 => f32::NEG_INFINITY,
            r if r < nan_rate + 10 => f32::from_bits(rng.next() as u32), // any bits, NaNs too
            _ => rng.grid() + (rng.below(3) as f32 - 1.0) * 1e-7,
        })
        .collect()
}

/// Every kernel (SIMD and portable complete-tree, explicit block, per-row general), at
/// every batch size (a single row, a partial group, whole and partial blocks and chunks, many
/// blocks), equals the per-row walk bit for bit: random trees of depth 1 to 12, one or
/// three output groups, `f32` and `f64` sums, inputs with NaN, infinities and values on
/// thresholds, thresholds of +-inf now and then.
#[test]
fn every_kernel_matches_the_per_row_walk_bit_for_bit() {
    let mut rng = Rng(0x0dd_ba11);
    let mut complete_trees = 0;
    for case in 0..48u32 {
        let depth = 1 + case % 12;
        let groups = if case % 4 == 3 { 3 } else { 1 };
        let kinds = if case % 6 == 5 {
            Kinds::Mixed
        } else {
            Kinds::Plain
        };
        let nf = 1 + rng.below(60) as u32;
        let n_trees = 1 + rng.below(24) as usize;
        let leaf_chance = if depth > 8 { 35 } else { rng.below(25) };
        let mut trees: Vec<RawTree> = (0..n_trees)
            .map(|t| random_tree(&mut rng, nf, depth, leaf_chance, kinds, (t % groups) as u32))
            .collect();
        for node in trees.iter_mut().flat_map(|t| t.nodes.iter_mut()) {
            if let RawNode::Split {
                split: Split::Less { threshold, .. },
                ..
            } = node
            {
                match rng.below(200) {
                    0 => *threshold = f32::NEG_INFINITY,
                    1 => *threshold = f32::INFINITY,
                    _ => {}
                }
            }
        }
        let layout = lower(&trees, nf as usize, groups, &|t| format!("trees[{t}]")).unwrap();
        complete_trees += layout.trees.iter().filter(|t| t.complete.is_some()).count();
        let base = &[0.5, -0.25, 1e-3][..groups];
        for n_rows in [1, 7, 60, 64, 65, 203, 1000] {
            let rows = random_rows(&mut rng, n_rows * nf as usize, 10);
            for portable in [false, true] {
                super::simd::PORTABLE_ONLY.with(|p| p.set(portable));
                let mut out = vec![0.0f32; n_rows * groups];
                layout.run::<f32>(&rows, nf as usize, base, None, &mut out, 1.0);
                let want = per_row_walk::<f32>(&layout, &rows, nf as usize, base);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&out),
                    bits(&want),
                    "f32, case {case}, depth {depth}, {n_rows} rows, portable {portable}"
                );
                layout.run::<f64>(&rows, nf as usize, base, None, &mut out, 1.0);
                let want = per_row_walk::<f64>(&layout, &rows, nf as usize, base);
                assert_eq!(
                    bits(&out),
                    bits(&want),
                    "f64, case {case}, depth {depth}, {n_rows} rows, portable {portable}"
                );
            }
            super::simd::PORTABLE_ONLY.with(|p| p.set(false));
        }
    }
    assert!(
        complete_trees > 100,
        "too few trees took the complete kernels"
    );
}

/// The SIMD regrouping of a block (a transposition eight by eight) writes the same bits as
/// the portable loop: any row count (partial groups), feature counts around multiples of
/// eight, used features in any order, repeated or not, NaNs of any payload, infinities and
/// signed zeros.
#[test]
fn simd_regrouping_matches_the_portable_loop() {
    use super::complete::Columns;
    let mut rng = Rng(0x5eed_f111);
    for case in 0..200u32 {
        let nf = 1 + rng.below(70) as usize;
        let n_rows = 1 + rng.below(40) as usize;
        // Between a quarter of the features (the SIMD path's limit) and all of them.
        let used = (nf.div_ceil(4) + rng.below(nf as u64) as usize).min(nf);
        let mut features: Vec<u32> = (0..nf as u32).collect();
        for i in (1..nf).rev() {
            features.swap(i, rng.below(i as u64 + 1) as usize);
        }
        features.truncate(used);
        let block = random_rows(&mut rng, n_rows * nf, 10);
        let mut got = Columns::default();
        let mut want = Columns::default();
        super::simd::PORTABLE_ONLY.with(|p| p.set(true));
        want.fill(&block, nf, &features);
        super::simd::PORTABLE_ONLY.with(|p| p.set(false));
        got.fill(&block, nf, &features);
        got.fill(&block, nf, &features); // a reused scratch changes nothing
        let bits = |c: &Columns| c.values().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&want),
            "case {case}: {n_rows} rows, {nf} features, {used} used"
        );
        assert!(
            want.values().iter().all(|x| !x.is_nan()),
            "NaNs are replaced"
        );
    }
}
