//! Feature quantisation for histogram-based boosting: per-feature quantile cut points and a
//! row-major `u8` bin matrix (bin 255 is "missing"), so that building a histogram reads each
//! row's gradient pair once and its bins contiguously.
//!
//! A value `x` falls in bin `j` = the number of cuts `<= x`, so "bin <= j" is exactly
//! "x < cuts[j]" and a split on bin `j` is saved with XGBoost's condition `x < cuts[j]`.
//!
//! Concurrency: cuts are computed on rayon one task per feature, bins one task per row chunk.

use rayon::prelude::*;

use crate::builtin::Dataset;

/// The bin id of a missing value.
pub(crate) const MISSING: u8 = 255;
/// The most value bins a feature may have (bin ids 0..=254).
pub(crate) const MAX_VALUE_BINS: usize = 255;

/// Rows sampled for the quantile cuts of large data sets.
const SKETCH_ROWS: usize = 100_000;

/// Cut points of every feature.
#[derive(Debug, Clone)]
pub(crate) struct Cuts {
    /// Strictly increasing cut values per feature; `cuts[f].len() + 1` value bins.
    pub(crate) cuts: Vec<Vec<f32>>,
}

impl Cuts {
    /// Quantile cuts with at most `max_bins` value bins per feature.
    pub(crate) fn build(data: &Dataset, max_bins: usize) -> Cuts {
        let d = data.n_cols();
        let n = data.n_rows();
        let x = data.features();
        let cuts = (0..d)
            .into_par_iter()
            .map(|f| {
                // Quantiles of an evenly strided sample of at most SKETCH_ROWS rows.
                let step = n.div_ceil(SKETCH_ROWS).max(1);
                let mut v: Vec<f32> = (0..n)
                    .step_by(step)
                    .map(|i| x[i * d + f])
                    .filter(|v| !v.is_nan())
                    .collect();
                v.sort_unstable_by(f32::total_cmp);
                let mut uniq = v.clone();
                uniq.dedup();
                if uniq.len() <= max_bins {
                    return uniq.get(1..).map(<[f32]>::to_vec).unwrap_or_default();
                }
                let mut cuts: Vec<f32> = Vec::with_capacity(max_bins);
                for q in 1..max_bins {
                    let c = v[q * v.len() / max_bins];
                    if c > v[0] && cuts.last().is_none_or(|&l| c > l) {
                        cuts.push(c);
                    }
                }
                cuts
            })
            .collect();
        Cuts { cuts }
    }

    /// The bin of `x` for feature `f`.
    pub(crate) fn bin(&self, f: usize, x: f32) -> u8 {
        if x.is_nan() {
            MISSING
        } else {
            self.cuts[f].partition_point(|&c| c <= x) as u8
        }
    }

    /// Number of value bins of feature `f`.
    pub(crate) fn n_bins(&self, f: usize) -> usize {
        self.cuts[f].len() + 1
    }
}

/// Row-major bin ids: feature `f` of row `r` at `bins[r * n_cols + f]`.
#[derive(Debug, Clone)]
pub(crate) struct BinMatrix {
    pub(crate) n_cols: usize,
    pub(crate) bins: Vec<u8>,
}

impl BinMatrix {
    /// Quantises `data` with `cuts`.
    pub(crate) fn new(data: &Dataset, cuts: &Cuts) -> BinMatrix {
        let d = data.n_cols();
        let mut bins = vec![0u8; data.n_rows() * d];
        bins.par_chunks_mut(4096 * d)
            .zip(data.features().par_chunks(4096 * d))
            .for_each(|(out, x)| {
                for (i, (b, v)) in out.iter_mut().zip(x).enumerate() {
                    *b = cuts.bin(i % d, *v);
                }
            });
        BinMatrix { n_cols: d, bins }
    }

    /// Row `r`'s bins.
    pub(crate) fn row(&self, r: usize) -> &[u8] {
        &self.bins[r * self.n_cols..(r + 1) * self.n_cols]
    }

    /// Feature `f`'s bin in row `r`.
    pub(crate) fn get(&self, r: usize, f: usize) -> u8 {
        self.bins[r * self.n_cols + f]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_agree_with_cut_conditions() {
        let vals: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.5).collect();
        let d = Dataset::new(vals.clone(), 1, None).unwrap();
        let c = Cuts::build(&d, 16);
        assert!(c.n_bins(0) <= 16 && c.n_bins(0) > 8);
        for &x in &vals {
            let b = c.bin(0, x) as usize;
            for (j, &cut) in c.cuts[0].iter().enumerate() {
                assert_eq!(b <= j, x < cut);
            }
        }
        assert_eq!(c.bin(0, f32::NAN), MISSING);
    }
}
