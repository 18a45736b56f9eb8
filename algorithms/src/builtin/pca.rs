//! PCA (`pca`): the principal components of the (mean-centred, unless `subtract_mean` is
//! false) sample covariance matrix. `algorithm_mode=regular` decomposes the covariance by
//! cyclic Jacobi; `randomized` runs a randomized range finder (`num_components +
//! extra_components` Gaussian probes, six power iterations, Gram–Schmidt) on it and
//! decomposes the small projected matrix. Explained variances are covariance eigenvalues
//! (divisor n - 1, as scikit-learn's `explained_variance_`).
//!
//! Concurrency: the covariance is accumulated on rayon over fixed row chunks combined in
//! chunk order (thread-count independent), each chunk's Gram matrix with the widest SIMD
//! the CPU has (runtime dispatch by `pulp`, no `unsafe` here); the decomposition is
//! single-threaded.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::artifact;
use super::eigen::{orthonormalize_columns, symmetric_eigen};
use super::error::{Result, TrainError};
use super::hyper::{Hyper, in_range};
use super::rng::Rng;
use super::{
    Algorithm, BuiltinPredictor, Dataset, Predictions, Progress, check_finite, check_rows,
};

/// Artifact format name.
pub const FORMAT: &str = "pier-pca";
/// Artifact format version.
pub const FORMAT_VERSION: u32 = 1;

/// Power iterations of the randomized range finder (cheap: they multiply by the `d x d`
/// covariance, not by the data).
const POWER_ITERATIONS: usize = 6;

/// Widest input accepted (the covariance is dense `d x d`).
pub const MAX_FEATURES: usize = 4096;

/// How the components are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Full eigendecomposition of the covariance.
    Regular,
    /// Randomized range finder on the covariance.
    Randomized,
}

/// PCA hyperparameters (SageMaker names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `num_components` (required).
    pub num_components: usize,
    /// `feature_dim` (default the data's width).
    pub feature_dim: Option<usize>,
    /// `algorithm_mode` (default regular).
    pub algorithm_mode: Mode,
    /// `subtract_mean` (default true).
    pub subtract_mean: bool,
    /// `extra_components` (default -1: max(10, num_components)); randomized mode only.
    pub extra_components: usize,
    /// `mini_batch_size` (default 500): rows per accumulation chunk.
    pub mini_batch_size: usize,
    /// `seed` (default 0).
    pub seed: u64,
}

impl Params {
    /// Parses SageMaker string hyperparameters.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self> {
        let h = Hyper::new("pca", map);
        let num_components = in_range(
            "num_components",
            h.required::<usize>("num_components")?,
            1,
            MAX_FEATURES,
        )?;
        let extra: i64 = h.get("extra_components", -1)?;
        let p = Params {
            num_components,
            feature_dim: h.auto("feature_dim")?,
            algorithm_mode: match h.choice(
                "algorithm_mode",
                &["regular", "randomized"],
                "regular",
            )? {
                "regular" => Mode::Regular,
                _ => Mode::Randomized,
            },
            subtract_mean: h.flag("subtract_mean", true)?,
            extra_components: match extra {
                -1 => num_components.max(10),
                e if e >= 0 => e as usize,
                e => {
                    return Err(TrainError::bad(
                        "extra_components",
                        &e.to_string(),
                        "must be -1 or >= 0",
                    ));
                }
            },
            mini_batch_size: in_range(
                "mini_batch_size",
                h.get("mini_batch_size", 500)?,
                1,
                usize::MAX,
            )?,
            seed: h.get("seed", 0)?,
        };
        h.finish()?;
        Ok(p)
    }
}

/// A trained PCA: `projection = components · (x - mean)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaModel {
    /// Input width.
    pub n_features: usize,
    /// Number of components.
    pub num_components: usize,
    /// The subtracted mean (zeros when `subtract_mean` was false).
    pub mean: Vec<f32>,
    /// Row-major `num_components x n_features`, unit rows, by decreasing variance.
    pub components: Vec<f32>,
    /// The variance along each component (covariance eigenvalue, divisor n - 1).
    pub explained_variance: Vec<f64>,
    /// Fraction of the total variance along each component.
    pub explained_variance_ratio: Vec<f64>,
}

impl PcaModel {
    /// The artifact bytes.
    pub fn save(&self) -> Vec<u8> {
        artifact::save(FORMAT, FORMAT_VERSION, self)
    }

    /// Reads an artifact written by [`PcaModel::save`].
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let m: Self = artifact::load(FORMAT, FORMAT_VERSION, bytes)?;
        if m.n_features == 0 || m.num_components == 0 {
            return Err(TrainError::Artifact(
                "`n_features` and `num_components` must be positive".into(),
            ));
        }
        artifact::check_vec("mean", &m.mean, m.n_features)?;
        artifact::check_vec("components", &m.components, m.num_components * m.n_features)?;
        if m.explained_variance.len() != m.num_components
            || m.explained_variance_ratio.len() != m.num_components
        {
            return Err(TrainError::Artifact(
                "`explained_variance` needs one value per component".into(),
            ));
        }
        Ok(m)
    }
}

impl BuiltinPredictor for PcaModel {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Pca
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict(&self, rows: &[f32], n_rows: usize) -> Result<Predictions> {
        check_rows(rows, n_rows, self.n_features)?;
        check_finite(rows, self.n_features)?;
        let d = self.n_features;
        let mut projections = Vec::with_capacity(n_rows * self.num_components);
        let mut centred = vec![0f32; d];
        for x in rows.chunks_exact(d) {
            for ((c, v), m) in centred.iter_mut().zip(x).zip(&self.mean) {
                *c = v - m;
            }
            for comp in self.components.chunks_exact(d) {
                projections.push(
                    comp.iter()
                        .zip(&centred)
                        .map(|(a, b)| f64::from(a * b))
                        .sum::<f64>() as f32,
                );
            }
        }
        Ok(Predictions::Projections {
            dim: self.num_components,
            projections,
        })
    }
}

/// Mean and (n - 1)-normalised covariance (upper and lower filled), in `f64`.
fn covariance(data: &Dataset, subtract_mean: bool, chunk: usize) -> (Vec<f64>, Vec<f64>) {
    let d = data.n_cols();
    let n = data.n_rows();
    let x = data.features();
    // One pass over the data: rows are shifted by the first row `s` (close to the mean in
    // scale, so f32 products keep their precision), and both Σ(x−s) and Σ(x−s)(x−s)ᵀ are
    // accumulated; then mean = s + Σ(x−s)/n and the centred sum is
    // Σ(x−s)(x−s)ᵀ − n (mean−s)(mean−s)ᵀ. Each chunk of rows is copied into a column-major
    // f32 block (zero-padded to a multiple of 16 rows) whose Gram matrix is computed by f32
    // dot products and added to an f64 sum.
    let shift: Vec<f32> = if subtract_mean {
        x[..d].to_vec()
    } else {
        vec![0.0; d]
    };
    let block = chunk.div_ceil(16) * 16;
    let parts: Vec<(Vec<f64>, Vec<f64>)> = x
        .par_chunks(block * d)
        .map(|c| {
            let mut cols = vec![0f32; d * block];
            let mut sums = vec![0f64; d];
            let columns = cols
                .chunks_exact_mut(block)
                .zip(&shift)
                .zip(sums.iter_mut());
            for (j, ((dst, m), sum)) in columns.enumerate() {
                let mut t = 0f32;
                for (o, row) in dst.iter_mut().zip(c.chunks_exact(d)) {
                    *o = row[j] - m;
                    t += *o;
                }
                *sum = f64::from(t);
            }
            let mut acc = vec![0f64; d * d];
            pulp::Arch::new().dispatch(ChunkGram {
                cols: &cols,
                block,
                d,
                acc: &mut acc,
            });
            (sums, acc)
        })
        .collect();
    let mut cov = vec![0f64; d * d];
    let mut sum = vec![0f64; d];
    for (s_part, p) in parts {
        cov.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        sum.iter_mut().zip(&s_part).for_each(|(a, b)| *a += b);
    }
    let delta: Vec<f64> = sum.iter().map(|v| v / n as f64).collect();
    let mean: Vec<f64> = if subtract_mean {
        shift
            .iter()
            .zip(&delta)
            .map(|(s, dm)| f64::from(*s) + dm)
            .collect()
    } else {
        vec![0.0; d]
    };
    let denom = (n.max(2) - 1) as f64;
    for i in 0..d {
        for j in i..d {
            let centred = if subtract_mean {
                cov[i * d + j] - n as f64 * delta[i] * delta[j]
            } else {
                cov[i * d + j]
            };
            let v = centred / denom;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mean, cov)
}

/// Adds the upper triangle of the Gram matrix of a column-major f32 block (`d` columns of
/// `block` rows) to `acc`, four dot products at a time, with the widest SIMD the CPU offers
/// (chosen at run time by `pulp`).
struct ChunkGram<'a> {
    cols: &'a [f32],
    block: usize,
    d: usize,
    acc: &'a mut [f64],
}

impl pulp::WithSimd for ChunkGram<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        // No closures here: they would not inherit the SIMD target features.
        let ChunkGram {
            cols,
            block,
            d,
            acc,
        } = self;
        let mut vecs = Vec::with_capacity(d);
        let mut tails = Vec::with_capacity(d);
        for c in cols.chunks_exact(block) {
            let (v, t) = S::as_simd_f32s(c);
            vecs.push(v);
            tails.push(t);
        }
        for i in 0..d {
            let a = vecs[i];
            let mut j = i;
            while j < d {
                let m = (d - j).min(4);
                let b = [
                    vecs[j],
                    vecs[j + 1.min(m - 1)],
                    vecs[j + 2.min(m - 1)],
                    vecs[j + 3.min(m - 1)],
                ];
                let (mut s0, mut s1, mut s2, mut s3) = (
                    simd.splat_f32s(0.0),
                    simd.splat_f32s(0.0),
                    simd.splat_f32s(0.0),
                    simd.splat_f32s(0.0),
                );
                for (k, &x) in a.iter().enumerate() {
                    s0 = simd.mul_add_f32s(x, b[0][k], s0);
                    s1 = simd.mul_add_f32s(x, b[1][k], s1);
                    s2 = simd.mul_add_f32s(x, b[2][k], s2);
                    s3 = simd.mul_add_f32s(x, b[3][k], s3);
                }
                let sums = [
                    simd.reduce_sum_f32s(s0),
                    simd.reduce_sum_f32s(s1),
                    simd.reduce_sum_f32s(s2),
                    simd.reduce_sum_f32s(s3),
                ];
                for (t, v) in sums.iter().enumerate().take(m) {
                    let tail: f32 = tails[i].iter().zip(tails[j + t]).map(|(x, y)| x * y).sum();
                    acc[i * d + j + t] += f64::from(*v + tail);
                }
                j += m;
            }
        }
    }
}

/// Top `k` eigenpairs of `cov` by the randomized range finder with `l >= k` probes.
fn randomized_eigen(
    cov: &[f64],
    d: usize,
    k: usize,
    l: usize,
    rng: &mut Rng,
) -> (Vec<f64>, Vec<f64>) {
    let l = l.clamp(k, d);
    let matmul = |y: &[f64]| -> Vec<f64> {
        let mut out = vec![0f64; d * l];
        for i in 0..d {
            for (kk, c) in cov[i * d..(i + 1) * d].iter().enumerate() {
                for j in 0..l {
                    out[i * l + j] += c * y[kk * l + j];
                }
            }
        }
        out
    };
    let omega: Vec<f64> = (0..d * l).map(|_| rng.normal()).collect();
    let mut q = matmul(&omega);
    orthonormalize_columns(&mut q, d, l);
    for _ in 0..POWER_ITERATIONS {
        q = matmul(&q);
        orthonormalize_columns(&mut q, d, l);
    }
    // B = Qᵀ C Q.
    let cq = matmul(&q);
    let mut b = vec![0f64; l * l];
    for a in 0..l {
        for c in 0..l {
            b[a * l + c] = (0..d).map(|i| q[i * l + a] * cq[i * l + c]).sum();
        }
    }
    let (vals, vecs) = symmetric_eigen(&b, l);
    let mut out = vec![0f64; k * d];
    for r in 0..k {
        for i in 0..d {
            out[r * d + i] = (0..l).map(|a| q[i * l + a] * vecs[r * l + a]).sum();
        }
    }
    (vals[..k].to_vec(), out)
}

/// Trains PCA; returns the model and `train:explained_variance_ratio` (total kept).
pub fn fit(
    p: &Params,
    train: &Dataset,
    progress: &dyn Fn(Progress) -> Result<()>,
) -> Result<(PcaModel, BTreeMap<String, f64>)> {
    let d = train.n_cols();
    if let Some(fd) = p.feature_dim
        && fd != d
    {
        return Err(TrainError::bad(
            "feature_dim",
            &fd.to_string(),
            format!("the train channel has {d} features"),
        ));
    }
    if d > MAX_FEATURES {
        return Err(TrainError::data(
            "train",
            format!("{d} features; PCA accepts at most {MAX_FEATURES}"),
        ));
    }
    if p.num_components > d {
        return Err(TrainError::bad(
            "num_components",
            &p.num_components.to_string(),
            format!("exceeds the {d} features"),
        ));
    }
    if train.n_rows() < 2 {
        return Err(TrainError::data("train", "PCA needs at least 2 rows"));
    }
    train.require_finite("train")?;
    let (mean, cov) = covariance(train, p.subtract_mean, p.mini_batch_size.max(64));
    progress(Progress::new(1, 2))?;
    let k = p.num_components;
    let (vals, vecs) = match p.algorithm_mode {
        Mode::Regular => {
            let (v, e) = symmetric_eigen(&cov, d);
            (v[..k].to_vec(), e[..k * d].to_vec())
        }
        Mode::Randomized => {
            randomized_eigen(&cov, d, k, k + p.extra_components, &mut Rng::new(p.seed))
        }
    };
    let total: f64 = (0..d).map(|i| cov[i * d + i]).sum();
    let mut components: Vec<f32> = vecs.iter().map(|&v| v as f32).collect();
    for comp in components.chunks_exact_mut(d) {
        // Sign convention: the largest-magnitude entry is positive.
        let big = comp
            .iter()
            .copied()
            .fold(0f32, |a, b| if b.abs() > a.abs() { b } else { a });
        if big < 0.0 {
            comp.iter_mut().for_each(|v| *v = -*v);
        }
    }
    let explained_variance: Vec<f64> = vals.iter().map(|v| v.max(0.0)).collect();
    let ratio: Vec<f64> = explained_variance
        .iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect();
    let mut metrics = BTreeMap::new();
    metrics.insert(
        "train:explained_variance_ratio".to_string(),
        ratio.iter().sum(),
    );
    progress(Progress::new(2, 2))?;
    Ok((
        PcaModel {
            n_features: d,
            num_components: k,
            mean: mean.iter().map(|&v| v as f32).collect(),
            components,
            explained_variance,
            explained_variance_ratio: ratio,
        },
        metrics,
    ))
}
