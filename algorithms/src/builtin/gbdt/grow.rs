//! Depth-wise growth of one regression tree from gradient/hessian pairs over the bin matrix:
//! per-node gradient/hessian histograms (built for the smaller child only, the larger child
//! by subtraction from its parent), XGBoost's exact gain
//! `T(G_L)²/(H_L+λ) + T(G_R)²/(H_R+λ) − T(G)²/(H+λ)` with `T` the L1 soft threshold (α), a
//! split kept when it gains more than both 1e-6 and `gamma` with `min_child_weight` on each
//! side, missing values sent to the better side, leaf weight `−T(G)/(H+λ)` times `eta`.
//!
//! Concurrency: a histogram is built on rayon by blocks of features (each task walks the
//! node's rows once, reading each row's gradient pair once and its bins contiguously) and
//! split search runs one task per feature. Every feature's histogram is summed in row order
//! by one task and ties between splits are broken by (feature, bin), so the tree does not
//! depend on the number of threads.

use rayon::prelude::*;

use super::hist::{BinMatrix, Cuts, MISSING};
use super::tree::{LEAF, Node, Tree};

/// Histogram slots per feature: value bins 0..=254 and the missing bin 255.
const STRIDE: usize = 256;

/// Tree-growth settings (a subset of [`super::Params`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrowParams {
    pub(crate) max_depth: usize,
    pub(crate) min_child_weight: f64,
    pub(crate) lambda: f64,
    pub(crate) alpha: f64,
    pub(crate) gamma: f64,
    pub(crate) eta: f64,
}

/// A node's histogram: `hist[f][bin] = [Σg, Σh]`, slot 255 for missing values (indexing a
/// 256-array by a `u8` bin needs no bounds check). Only the sampled features are filled.
type Hist = Vec<[[f64; 2]; STRIDE]>;

#[derive(Debug, Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    default_left: bool,
    gl: f64,
    hl: f64,
}

fn threshold_l1(g: f64, alpha: f64) -> f64 {
    if g > alpha {
        g - alpha
    } else if g < -alpha {
        g + alpha
    } else {
        0.0
    }
}

impl GrowParams {
    fn gain(&self, g: f64, h: f64) -> f64 {
        if h < self.min_child_weight || h <= 0.0 {
            return 0.0;
        }
        let t = threshold_l1(g, self.alpha);
        t * t / (h + self.lambda)
    }

    fn weight(&self, g: f64, h: f64) -> f64 {
        if h < self.min_child_weight || h <= 0.0 {
            return 0.0;
        }
        -threshold_l1(g, self.alpha) / (h + self.lambda)
    }
}

fn build_hist(bm: &BinMatrix, gh: &[[f32; 2]], rows: &[u32], features: &[bool]) -> Hist {
    let d = bm.n_cols;
    let mut hist: Hist = vec![[[0f64; 2]; STRIDE]; d];
    // Enough blocks to keep every thread busy, few enough that each row's gradient pair is
    // read only a few times. Blocking does not change any sum (each feature is one task's).
    let block = d.div_ceil(2 * rayon::current_num_threads()).max(4);
    hist.par_chunks_mut(block).enumerate().for_each(|(b, h)| {
        let f0 = b * block;
        let f1 = f0 + h.len();
        let mask = &features[f0..f1];
        if !mask.iter().any(|&m| m) {
            return;
        }
        let all = mask.iter().all(|&m| m);
        for &r in rows {
            let [g, hh] = gh[r as usize];
            let (g, hh) = (f64::from(g), f64::from(hh));
            let row = &bm.row(r as usize)[f0..f1];
            if all {
                for (hf, &bin) in h.iter_mut().zip(row) {
                    let s = &mut hf[bin as usize];
                    *s = [s[0] + g, s[1] + hh];
                }
            } else {
                for ((hf, &bin), &m) in h.iter_mut().zip(row).zip(mask) {
                    if m {
                        let s = &mut hf[bin as usize];
                        *s = [s[0] + g, s[1] + hh];
                    }
                }
            }
        }
    });
    hist
}

fn subtract(parent: &Hist, child: &Hist) -> Hist {
    let mut out = parent.clone();
    out.par_iter_mut().zip(child.par_iter()).for_each(|(o, c)| {
        for (a, b) in o.iter_mut().zip(c) {
            *a = [a[0] - b[0], a[1] - b[1]];
        }
    });
    out
}

fn best_split(
    hist: &Hist,
    cuts: &Cuts,
    features: &[bool],
    g: f64,
    h: f64,
    p: &GrowParams,
) -> Option<Split> {
    let parent_gain = p.gain(g, h);
    let per_feature: Vec<Option<Split>> = (0..features.len())
        .into_par_iter()
        .map(|f| {
            if !features[f] {
                return None;
            }
            let nb = cuts.n_bins(f);
            if nb < 2 {
                return None;
            }
            let hf = &hist[f];
            let [gm, hm] = hf[MISSING as usize];
            let mut best: Option<Split> = None;
            let (mut gl, mut hl) = (0f64, 0f64);
            for (j, hj) in hf.iter().enumerate().take(nb - 1) {
                if hj[1] == 0.0 && hj[0] == 0.0 {
                    // An empty bin: the split after it equals the one before it.
                    continue;
                }
                gl += hj[0];
                hl += hj[1];
                let mut consider = |gl: f64, hl: f64, default_left: bool| {
                    let (gr, hr) = (g - gl, h - hl);
                    if hl < p.min_child_weight || hr < p.min_child_weight || hl <= 0.0 || hr <= 0.0
                    {
                        return;
                    }
                    let gain = p.gain(gl, hl) + p.gain(gr, hr) - parent_gain;
                    if best.is_none_or(|b| gain > b.gain) {
                        best = Some(Split {
                            gain,
                            feature: f,
                            bin: j,
                            default_left,
                            gl,
                            hl,
                        });
                    }
                };
                consider(gl, hl, false);
                if hm > 0.0 {
                    consider(gl + gm, hl + hm, true);
                }
            }
            best
        })
        .collect();
    let mut best: Option<Split> = None;
    for s in per_feature.into_iter().flatten() {
        if best.is_none_or(|b| s.gain > b.gain || (s.gain == b.gain && s.feature < b.feature)) {
            best = Some(s);
        }
    }
    best.filter(|s| s.gain > 1e-6 && s.gain >= p.gamma)
}

/// Stable in-place partition of `rows` by the split; returns the number going left.
fn partition(rows: &mut [u32], scratch: &mut Vec<u32>, bm: &BinMatrix, s: &Split) -> usize {
    scratch.clear();
    let mut nl = 0;
    for i in 0..rows.len() {
        let r = rows[i];
        let b = bm.get(r as usize, s.feature);
        let left = if b == MISSING {
            s.default_left
        } else {
            (b as usize) <= s.bin
        };
        if left {
            rows[nl] = r;
            nl += 1;
        } else {
            scratch.push(r);
        }
    }
    rows[nl..].copy_from_slice(scratch);
    nl
}

struct Work {
    node: usize,
    start: usize,
    end: usize,
    g: f64,
    h: f64,
    hist: Hist,
}

fn leaf(p: &GrowParams, parent: u32, g: f64, h: f64) -> Node {
    let w = (p.weight(g, h) * p.eta) as f32;
    Node {
        feature: 0,
        bin: 0,
        threshold: w,
        default_left: false,
        left: LEAF,
        right: LEAF,
        parent,
        weight: w,
        loss_change: 0.0,
        sum_hessian: h as f32,
    }
}

/// A grown tree and, for each leaf, the range of `rows` (as partitioned) that reached it.
pub(crate) struct Grown {
    pub(crate) tree: Tree,
    pub(crate) leaf_ranges: Vec<(usize, usize, usize)>,
}

/// Grows one tree on `rows` (the round's sample, partitioned in place by leaf) using the
/// features flagged in `features`.
pub(crate) fn grow(
    bm: &BinMatrix,
    cuts: &Cuts,
    gh: &[[f32; 2]],
    rows: &mut [u32],
    features: &[bool],
    p: &GrowParams,
) -> Grown {
    let (g, h) = rows.iter().fold((0f64, 0f64), |(a, b), &r| {
        let [g, h] = gh[r as usize];
        (a + f64::from(g), b + f64::from(h))
    });
    let mut tree = Tree {
        nodes: vec![leaf(p, LEAF, g, h)],
    };
    let mut leaf_ranges = Vec::new();
    let mut frontier = vec![Work {
        node: 0,
        start: 0,
        end: rows.len(),
        g,
        h,
        hist: build_hist(bm, gh, rows, features),
    }];
    let mut scratch = Vec::new();
    for depth in 0..p.max_depth {
        let last = depth + 1 == p.max_depth;
        let mut next = Vec::new();
        for w in frontier {
            let Some(s) = best_split(&w.hist, cuts, features, w.g, w.h, p) else {
                leaf_ranges.push((w.node, w.start, w.end));
                continue;
            };
            let nl = partition(&mut rows[w.start..w.end], &mut scratch, bm, &s);
            let (gr, hr) = (w.g - s.gl, w.h - s.hl);
            let id = tree.nodes.len() as u32;
            tree.nodes.push(leaf(p, w.node as u32, s.gl, s.hl));
            tree.nodes.push(leaf(p, w.node as u32, gr, hr));
            let n = &mut tree.nodes[w.node];
            n.feature = s.feature as u32;
            n.bin = s.bin as u16;
            n.threshold = cuts.cuts[s.feature][s.bin];
            n.default_left = s.default_left;
            n.left = id;
            n.right = id + 1;
            n.loss_change = s.gain as f32;
            let mid = w.start + nl;
            let left_small = nl <= w.end - mid;
            // Children at the maximum depth are never split: they need no histograms.
            let (lh, rh) = if last {
                (Vec::new(), Vec::new())
            } else {
                let small = if left_small {
                    (w.start, mid)
                } else {
                    (mid, w.end)
                };
                let sh = build_hist(bm, gh, &rows[small.0..small.1], features);
                let lg = subtract(&w.hist, &sh);
                if left_small { (sh, lg) } else { (lg, sh) }
            };
            next.push(Work {
                node: id as usize,
                start: w.start,
                end: mid,
                g: s.gl,
                h: s.hl,
                hist: lh,
            });
            next.push(Work {
                node: id as usize + 1,
                start: mid,
                end: w.end,
                g: gr,
                h: hr,
                hist: rh,
            });
        }
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    leaf_ranges.extend(frontier.iter().map(|w| (w.node, w.start, w.end)));
    Grown { tree, leaf_ranges }
}
