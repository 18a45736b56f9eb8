//! K-means (`kmeans`) in SageMaker's three stages: a streaming mini-batch pass over the data
//! (`epochs` x `mini_batch_size`, web-scale k-means with per-center learning rates) that keeps
//! `k * extra_center_factor` weighted centers; a local Lloyd stage that reduces those to `k`
//! (`local_lloyd_num_trials` k-means++ or random starts, best weighted loss kept); and, Pier's
//! addition, full-data Lloyd refinement (at most `local_lloyd_max_iter` iterations, until the
//! relative change of the loss is below `local_lloyd_tol`).
//!
//! Concurrency: full-data assignment runs on rayon over fixed-size row chunks whose partial
//! sums are combined in chunk order, so the result is the same for any number of threads.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::artifact;
use super::error::{Result, TrainError};
use super::hyper::{Hyper, in_range, non_negative};
use super::rng::Rng;
use super::{
    Algorithm, BuiltinPredictor, Dataset, Predictions, Progress, check_finite, check_rows,
};

/// Artifact format name.
pub const FORMAT: &str = "pier-kmeans";
/// Artifact format version.
pub const FORMAT_VERSION: u32 = 1;

const CHUNK: usize = 2048;

/// How initial centers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Uniformly random distinct rows.
    Random,
    /// Greedy k-means++ (D² sampling, best of `2 + ln k` candidates).
    KMeansPlusPlus,
}

/// K-means hyperparameters (SageMaker names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `k` (required).
    pub k: usize,
    /// `feature_dim` (default the data's width).
    pub feature_dim: Option<usize>,
    /// `init_method` (default random) for the streaming stage.
    pub init_method: Init,
    /// `local_lloyd_init_method` (default kmeans++).
    pub local_lloyd_init_method: Init,
    /// `local_lloyd_max_iter` (default 300).
    pub local_lloyd_max_iter: usize,
    /// `local_lloyd_tol` (default 0.0001).
    pub local_lloyd_tol: f64,
    /// `local_lloyd_num_trials` (default auto: 10).
    pub local_lloyd_num_trials: usize,
    /// `mini_batch_size` (default 5000).
    pub mini_batch_size: usize,
    /// `epochs` (default 1).
    pub epochs: usize,
    /// `extra_center_factor` (default auto: 4).
    pub extra_center_factor: usize,
    /// `seed` (default 0).
    pub seed: u64,
}

fn init(h: &Hyper<'_>, name: &'static str, default: &'static str) -> Result<Init> {
    Ok(match h.choice(name, &["random", "kmeans++"], default)? {
        "random" => Init::Random,
        _ => Init::KMeansPlusPlus,
    })
}

impl Params {
    /// Parses SageMaker string hyperparameters.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self> {
        let h = Hyper::new("kmeans", map);
        if let Some(v) = h.raw("eval_metrics") {
            let ok = serde_json::from_str::<Vec<String>>(&v.replace('\'', "\""))
                .map(|l| l.iter().all(|m| m == "msd" || m == "ssd"))
                .unwrap_or(false);
            if !ok {
                return Err(TrainError::bad(
                    "eval_metrics",
                    v,
                    "expected a list of \"msd\" and \"ssd\"",
                ));
            }
        }
        let p = Params {
            k: in_range("k", h.required::<usize>("k")?, 1, 1_000_000)?,
            feature_dim: h.auto("feature_dim")?,
            init_method: init(&h, "init_method", "random")?,
            local_lloyd_init_method: init(&h, "local_lloyd_init_method", "kmeans++")?,
            local_lloyd_max_iter: h.get("local_lloyd_max_iter", 300)?,
            local_lloyd_tol: non_negative("local_lloyd_tol", h.get("local_lloyd_tol", 0.0001)?)?,
            local_lloyd_num_trials: in_range(
                "local_lloyd_num_trials",
                h.auto("local_lloyd_num_trials")?.unwrap_or(10),
                1,
                1000,
            )?,
            mini_batch_size: in_range(
                "mini_batch_size",
                h.get("mini_batch_size", 5000)?,
                1,
                usize::MAX,
            )?,
            epochs: in_range("epochs", h.get("epochs", 1)?, 1, usize::MAX)?,
            extra_center_factor: in_range(
                "extra_center_factor",
                h.auto("extra_center_factor")?.unwrap_or(4),
                1,
                1000,
            )?,
            seed: h.get("seed", 0)?,
        };
        h.raw("half_life_time_size");
        h.finish()?;
        Ok(p)
    }
}

/// A trained k-means model: `k` centers of `n_features`, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansModel {
    /// Number of clusters.
    pub k: usize,
    /// Input width.
    pub n_features: usize,
    /// Row-major `k x n_features`.
    pub centers: Vec<f32>,
}

impl KMeansModel {
    /// The artifact bytes.
    pub fn save(&self) -> Vec<u8> {
        artifact::save(FORMAT, FORMAT_VERSION, self)
    }

    /// Reads an artifact written by [`KMeansModel::save`].
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let m: Self = artifact::load(FORMAT, FORMAT_VERSION, bytes)?;
        if m.k == 0 || m.n_features == 0 {
            return Err(TrainError::Artifact(
                "`k` and `n_features` must be positive".into(),
            ));
        }
        artifact::check_vec("centers", &m.centers, m.k * m.n_features)?;
        Ok(m)
    }
}

impl BuiltinPredictor for KMeansModel {
    fn algorithm(&self) -> Algorithm {
        Algorithm::KMeans
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict(&self, rows: &[f32], n_rows: usize) -> Result<Predictions> {
        check_rows(rows, n_rows, self.n_features)?;
        check_finite(rows, self.n_features)?;
        let d = self.n_features;
        let mut closest_cluster = Vec::with_capacity(n_rows);
        let mut distance_to_cluster = Vec::with_capacity(n_rows);
        for x in rows.chunks_exact(d) {
            let (c, d2) = nearest_exact(x, &self.centers, d);
            closest_cluster.push(c as u32);
            distance_to_cluster.push(d2.sqrt() as f32);
        }
        Ok(Predictions::Clusters {
            closest_cluster,
            distance_to_cluster,
        })
    }
}

/// Nearest center by direct squared differences (f64 accumulation).
fn nearest_exact(x: &[f32], centers: &[f32], d: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, cen) in centers.chunks_exact(d).enumerate() {
        let s: f64 = x
            .iter()
            .zip(cen)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum();
        if s < best.1 {
            best = (c, s);
        }
    }
    best
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Nearest center via `|x|² - 2 x·c + |c|²` (fast path for training).
fn nearest_fast(
    x: &[f32],
    x_norm: f32,
    centers: &[f32],
    c_norms: &[f32],
    d: usize,
) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, cen) in centers.chunks_exact(d).enumerate() {
        let s = c_norms[c] - 2.0 * dot(x, cen);
        if s < best.1 {
            best = (c, s);
        }
    }
    (best.0, (best.1 + x_norm).max(0.0))
}

fn norms(m: &[f32], d: usize) -> Vec<f32> {
    m.chunks_exact(d).map(|r| dot(r, r)).collect()
}

/// Chooses `k` initial centers among weighted `points`.
fn seed_centers(
    points: &[f32],
    weights: &[f64],
    d: usize,
    k: usize,
    how: Init,
    rng: &mut Rng,
) -> Vec<f32> {
    let n = weights.len();
    let mut centers = Vec::with_capacity(k * d);
    match how {
        Init::Random => {
            let mut idx: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut idx);
            for i in (0..k).map(|j| idx[j % n]) {
                centers.extend_from_slice(&points[i * d..(i + 1) * d]);
            }
        }
        Init::KMeansPlusPlus => {
            let pick = |rng: &mut Rng, w: &[f64]| {
                let total: f64 = w.iter().sum();
                let mut r = rng.uniform() * total;
                for (i, v) in w.iter().enumerate() {
                    r -= v;
                    if r < 0.0 {
                        return i;
                    }
                }
                w.iter().rposition(|&v| v > 0.0).unwrap_or(0)
            };
            let first = pick(rng, weights);
            centers.extend_from_slice(&points[first * d..(first + 1) * d]);
            let dist = |i: usize, c: &[f32]| -> f64 {
                points[i * d..(i + 1) * d]
                    .iter()
                    .zip(c)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum()
            };
            let mut closest: Vec<f64> = (0..n).map(|i| dist(i, &centers[..d])).collect();
            let trials = 2 + (k as f64).ln() as usize;
            while centers.len() < k * d {
                let pot: Vec<f64> = closest.iter().zip(weights).map(|(c, w)| c * w).collect();
                let mut best: Option<(f64, usize, Vec<f64>)> = None;
                for _ in 0..trials {
                    let cand = pick(rng, &pot);
                    let c = &points[cand * d..(cand + 1) * d];
                    let upd: Vec<f64> = (0..n).map(|i| closest[i].min(dist(i, c))).collect();
                    let p: f64 = upd.iter().zip(weights).map(|(a, w)| a * w).sum();
                    if best.as_ref().is_none_or(|b| p < b.0) {
                        best = Some((p, cand, upd));
                    }
                }
                if let Some((_, cand, upd)) = best {
                    centers.extend_from_slice(&points[cand * d..(cand + 1) * d]);
                    closest = upd;
                }
            }
        }
    }
    centers
}

/// Weighted Lloyd on a small point set; returns the weighted loss.
fn local_lloyd(points: &[f32], weights: &[f64], d: usize, centers: &mut [f32], p: &Params) -> f64 {
    let k = centers.len() / d;
    let mut last = f64::INFINITY;
    for _ in 0..p.local_lloyd_max_iter.max(1) {
        let mut sums = vec![0f64; k * d];
        let mut cnt = vec![0f64; k];
        let mut loss = 0.0;
        for (x, &w) in points.chunks_exact(d).zip(weights) {
            let (c, d2) = nearest_exact(x, centers, d);
            loss += w * d2;
            cnt[c] += w;
            for (s, v) in sums[c * d..(c + 1) * d].iter_mut().zip(x) {
                *s += w * f64::from(*v);
            }
        }
        for c in 0..k {
            if cnt[c] > 0.0 {
                for j in 0..d {
                    centers[c * d + j] = (sums[c * d + j] / cnt[c]) as f32;
                }
            }
        }
        if last - loss <= p.local_lloyd_tol * loss {
            return loss;
        }
        last = loss;
    }
    last
}

/// Per-chunk partial sums: (center sums, counts, ssd, (largest distance, its row)).
type Partial = (Vec<f64>, Vec<f64>, f64, (f32, usize));

/// One full-data assignment: (sums, counts, ssd, farthest row) combined in chunk order.
fn assign_all(
    x: &[f32],
    x_norms: &[f32],
    d: usize,
    centers: &[f32],
) -> (Vec<f64>, Vec<f64>, f64, usize) {
    let k = centers.len() / d;
    let cn = norms(centers, d);
    let parts: Vec<Partial> = x
        .par_chunks(CHUNK * d)
        .enumerate()
        .map(|(ci, chunk)| {
            let mut sums = vec![0f64; k * d];
            let mut cnt = vec![0f64; k];
            let mut ssd = 0f64;
            let mut far = (f32::NEG_INFINITY, 0);
            for (r, row) in chunk.chunks_exact(d).enumerate() {
                let i = ci * CHUNK + r;
                let (c, d2) = nearest_fast(row, x_norms[i], centers, &cn, d);
                ssd += f64::from(d2);
                if d2 > far.0 {
                    far = (d2, i);
                }
                cnt[c] += 1.0;
                for (s, v) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                    *s += f64::from(*v);
                }
            }
            (sums, cnt, ssd, far)
        })
        .collect();
    let mut sums = vec![0f64; k * d];
    let mut cnt = vec![0f64; k];
    let mut ssd = 0.0;
    let mut far = (f32::NEG_INFINITY, 0);
    for (s, c, l, f) in parts {
        sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        cnt.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
        ssd += l;
        if f.0 > far.0 {
            far = f;
        }
    }
    (sums, cnt, ssd, far.1)
}

/// Sum of squared distances of `data` to the model's nearest centers.
pub fn ssd(model: &KMeansModel, data: &Dataset) -> f64 {
    let d = model.n_features;
    data.features()
        .par_chunks(CHUNK * d)
        .map(|c| {
            c.chunks_exact(d)
                .map(|x| nearest_exact(x, &model.centers, d).1)
                .sum::<f64>()
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// Trains k-means; returns the model and `train:msd`, `train:ssd` (and `test:*` on validation).
pub fn fit(
    p: &Params,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &dyn Fn(Progress) -> Result<()>,
) -> Result<(KMeansModel, BTreeMap<String, f64>)> {
    let d = train.n_cols();
    let n = train.n_rows();
    if let Some(fd) = p.feature_dim
        && fd != d
    {
        return Err(TrainError::bad(
            "feature_dim",
            &fd.to_string(),
            format!("the train channel has {d} features"),
        ));
    }
    train.require_finite("train")?;
    if n < p.k {
        return Err(TrainError::data(
            "train",
            format!("{n} rows cannot make k = {} clusters", p.k),
        ));
    }
    let x = train.features();
    let mut rng = Rng::new(p.seed);
    let total = p.epochs + 1 + p.local_lloyd_max_iter;

    // Stage 1: streaming mini-batch k-means with k * extra_center_factor centers.
    let kk = (p.k * p.extra_center_factor).min(n);
    let first = p.mini_batch_size.min(n);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let batch0: Vec<f32> = order[..first]
        .iter()
        .flat_map(|&i| train.row(i).iter().copied())
        .collect();
    let mut centers = seed_centers(
        &batch0,
        &vec![1.0; first],
        d,
        kk.min(first),
        p.init_method,
        &mut rng,
    );
    let kk = centers.len() / d;
    let mut counts = vec![0f64; kk];
    for epoch in 0..p.epochs {
        for batch in order.chunks(p.mini_batch_size) {
            let cn = norms(&centers, d);
            let assigned: Vec<usize> = batch
                .iter()
                .map(|&i| {
                    let r = train.row(i);
                    nearest_fast(r, dot(r, r), &centers, &cn, d).0
                })
                .collect();
            for (&i, &c) in batch.iter().zip(&assigned) {
                counts[c] += 1.0;
                let eta = (1.0 / counts[c]) as f32;
                for (cv, xv) in centers[c * d..(c + 1) * d].iter_mut().zip(train.row(i)) {
                    *cv += eta * (xv - *cv);
                }
            }
        }
        progress(Progress::new(epoch + 1, total))?;
        if epoch + 1 < p.epochs {
            rng.shuffle(&mut order);
        }
    }

    // Stage 2: reduce the weighted centers to k.
    let weights: Vec<f64> = counts.iter().map(|&c| c.max(1e-9)).collect();
    let mut best: Option<(f64, Vec<f32>)> = None;
    for t in 0..p.local_lloyd_num_trials {
        let mut trng = rng.fork(t as u64);
        let mut c = seed_centers(
            &centers,
            &weights,
            d,
            p.k,
            p.local_lloyd_init_method,
            &mut trng,
        );
        let loss = local_lloyd(&centers, &weights, d, &mut c, p);
        if best.as_ref().is_none_or(|b| loss < b.0) {
            best = Some((loss, c));
        }
    }
    let Some((_, mut centers)) = best else {
        return Err(TrainError::Diverged("no local Lloyd trial ran".into()));
    };
    progress(Progress::new(p.epochs + 1, total))?;

    // Stage 3: full-data Lloyd refinement.
    let x_norms = norms(x, d);
    let mut last = f64::INFINITY;
    for it in 0..p.local_lloyd_max_iter {
        let (sums, cnt, loss, far) = assign_all(x, &x_norms, d, &centers);
        for c in 0..p.k {
            if cnt[c] > 0.0 {
                for j in 0..d {
                    centers[c * d + j] = (sums[c * d + j] / cnt[c]) as f32;
                }
            } else {
                centers[c * d..(c + 1) * d].copy_from_slice(train.row(far));
            }
        }
        progress(Progress::new(p.epochs + 2 + it, total).with("train:msd", loss / n as f64))?;
        if last - loss <= p.local_lloyd_tol * loss {
            break;
        }
        last = loss;
    }
    if centers.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::Diverged("non-finite centers".into()));
    }
    let model = KMeansModel {
        k: p.k,
        n_features: d,
        centers,
    };
    let mut metrics = BTreeMap::new();
    let s = ssd(&model, train);
    metrics.insert("train:ssd".to_string(), s);
    metrics.insert("train:msd".to_string(), s / n as f64);
    if let Some(v) = validation {
        v.require_finite("validation")?;
        let s = ssd(&model, v);
        metrics.insert("test:ssd".to_string(), s);
        metrics.insert("test:msd".to_string(), s / v.n_rows().max(1) as f64);
    }
    Ok((model, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_three_blobs() {
        let mut rng = Rng::new(3);
        let mut f = Vec::new();
        for i in 0..300 {
            let c = (i % 3) as f32 * 10.0;
            f.extend([
                c + rng.normal() as f32 * 0.1,
                -c + rng.normal() as f32 * 0.1,
            ]);
        }
        let d = Dataset::new(f, 2, None).unwrap();
        let hp = [("k".to_string(), "3".to_string())].into_iter().collect();
        let (m, metrics) = fit(&Params::parse(&hp).unwrap(), &d, None, &|_| Ok(())).unwrap();
        assert!(metrics["train:msd"] < 0.05, "{metrics:?}");
        let Predictions::Clusters {
            closest_cluster, ..
        } = m.predict(d.features(), 300).unwrap()
        else {
            unreachable!()
        };
        assert_ne!(closest_cluster[0], closest_cluster[1]);
        assert_eq!(closest_cluster[0], closest_cluster[3]);
    }
}
