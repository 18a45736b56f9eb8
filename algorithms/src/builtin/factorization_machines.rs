//! Factorization machines (`factorization-machines`): `ŷ = w0 + Σ wᵢxᵢ + Σ_{i<j} ⟨vᵢ,vⱼ⟩xᵢxⱼ`
//! (computed in O(n·k) as `½Σ_f[(Σᵢ v_if xᵢ)² − Σᵢ v_if² xᵢ²]`), fitted by mini-batch Adam
//! with separate learning rates and L2 weight decays for the bias, linear and factor terms
//! (`bias_lr`/`bias_wd`, …) and SageMaker's initialisation hyperparameters. The loss is
//! logistic for `binary_classifier` and squared error for `regressor`.
//!
//! Training is sequential mini-batch optimisation on the caller's thread; the predictor is
//! immutable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::artifact;
use super::error::{Result, TrainError};
use super::hyper::{Hyper, in_range, non_negative, positive};
use super::metrics;
use super::rng::Rng;
use super::{
    Algorithm, BuiltinPredictor, Dataset, Predictions, Progress, check_finite, check_rows,
};

/// Artifact format name.
pub const FORMAT: &str = "pier-factorization-machines";
/// Artifact format version.
pub const FORMAT_VERSION: u32 = 1;

/// How a parameter group is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InitMethod {
    /// Normal(0, sigma).
    Normal(f64),
    /// Uniform(-scale, scale).
    Uniform(f64),
    /// A constant.
    Constant(f64),
}

/// Learning rate, weight decay and initialisation of one parameter group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    /// `<group>_lr`.
    pub lr: f64,
    /// `<group>_wd`.
    pub wd: f64,
    /// `<group>_init_method` with `_init_sigma`, `_init_scale` or `_init_val`.
    pub init: InitMethod,
}

/// Factorization machine hyperparameters (SageMaker names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `predictor_type` (required): binary_classifier or regressor.
    pub binary: bool,
    /// `num_factors` (required).
    pub num_factors: usize,
    /// `feature_dim` (default the data's width).
    pub feature_dim: Option<usize>,
    /// `epochs` (default 1).
    pub epochs: usize,
    /// `mini_batch_size` (default 1000).
    pub mini_batch_size: usize,
    /// `bias_lr` (default 0.1), `bias_wd` (default 0.01), `bias_init_*` [normal, sigma 0.01].
    pub bias: Group,
    /// `linear_lr` (default 0.001), `linear_wd` (default 0.001), `linear_init_*` [normal, sigma 0.01].
    pub linear: Group,
    /// `factors_lr` (default 0.0001), `factors_wd` (default 0.00001), `factors_init_*` [normal, sigma 0.001].
    pub factors: Group,
    /// `clip_gradient` (default none).
    pub clip_gradient: Option<f64>,
    /// `eps` (default 1e-8) of Adam.
    pub eps: f64,
    /// `rescale_grad` (default 1).
    pub rescale_grad: f64,
    /// `seed` (default 0).
    pub seed: u64,
}

fn group(h: &Hyper<'_>, names: [&'static str; 6], lr: f64, wd: f64, sigma: f64) -> Result<Group> {
    let [lr_n, wd_n, method_n, sigma_n, scale_n, val_n] = names;
    let init = match h.choice(method_n, &["normal", "uniform", "constant"], "normal")? {
        "normal" => InitMethod::Normal(non_negative(sigma_n, h.get(sigma_n, sigma)?)?),
        "uniform" => InitMethod::Uniform(non_negative(scale_n, h.get(scale_n, sigma)?)?),
        _ => InitMethod::Constant(h.get(val_n, 0.0)?),
    };
    // Read the others so they are not "unknown" when given for another method.
    h.raw(sigma_n);
    h.raw(scale_n);
    h.raw(val_n);
    Ok(Group {
        lr: non_negative(lr_n, h.get(lr_n, lr)?)?,
        wd: non_negative(wd_n, h.get(wd_n, wd)?)?,
        init,
    })
}

impl Params {
    /// Parses SageMaker string hyperparameters.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self> {
        let h = Hyper::new("factorization-machines", map);
        if h.raw("predictor_type").is_none() {
            return Err(TrainError::MissingHyperparameter {
                name: "predictor_type",
            });
        }
        let binary = h.choice(
            "predictor_type",
            &["binary_classifier", "regressor"],
            "regressor",
        )? == "binary_classifier";
        let p = Params {
            binary,
            num_factors: in_range("num_factors", h.required::<usize>("num_factors")?, 1, 1000)?,
            feature_dim: h.auto("feature_dim")?,
            epochs: in_range("epochs", h.get("epochs", 1)?, 1, usize::MAX)?,
            mini_batch_size: in_range(
                "mini_batch_size",
                h.get("mini_batch_size", 1000)?,
                1,
                usize::MAX,
            )?,
            bias: group(
                &h,
                [
                    "bias_lr",
                    "bias_wd",
                    "bias_init_method",
                    "bias_init_sigma",
                    "bias_init_scale",
                    "bias_init_val",
                ],
                0.1,
                0.01,
                0.01,
            )?,
            linear: group(
                &h,
                [
                    "linear_lr",
                    "linear_wd",
                    "linear_init_method",
                    "linear_init_sigma",
                    "linear_init_scale",
                    "linear_init_val",
                ],
                0.001,
                0.001,
                0.01,
            )?,
            factors: group(
                &h,
                [
                    "factors_lr",
                    "factors_wd",
                    "factors_init_method",
                    "factors_init_sigma",
                    "factors_init_scale",
                    "factors_init_val",
                ],
                0.0001,
                0.00001,
                0.001,
            )?,
            clip_gradient: h
                .auto::<f64>("clip_gradient")?
                .map(|v| positive("clip_gradient", v))
                .transpose()?,
            eps: positive("eps", h.get("eps", 1e-8)?)?,
            rescale_grad: positive("rescale_grad", h.get("rescale_grad", 1.0)?)?,
            seed: h.get("seed", 0)?,
        };
        h.finish()?;
        Ok(p)
    }
}

/// A trained factorization machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FmModel {
    /// Whether the score is a probability (binary classifier) or a regression value.
    pub binary: bool,
    /// Input width.
    pub n_features: usize,
    /// Factors per feature.
    pub num_factors: usize,
    /// Global bias w0.
    pub bias: f32,
    /// Linear weights, one per feature.
    pub linear: Vec<f32>,
    /// Row-major `n_features x num_factors`.
    pub factors: Vec<f32>,
}

impl FmModel {
    /// The artifact bytes.
    pub fn save(&self) -> Vec<u8> {
        artifact::save(FORMAT, FORMAT_VERSION, self)
    }

    /// Reads an artifact written by [`FmModel::save`].
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let m: Self = artifact::load(FORMAT, FORMAT_VERSION, bytes)?;
        if m.n_features == 0 || m.num_factors == 0 || !m.bias.is_finite() {
            return Err(TrainError::Artifact(
                "bad `n_features`, `num_factors` or `bias`".into(),
            ));
        }
        artifact::check_vec("linear", &m.linear, m.n_features)?;
        artifact::check_vec("factors", &m.factors, m.n_features * m.num_factors)?;
        Ok(m)
    }

    fn margin(&self, x: &[f32]) -> f64 {
        margin(
            f64::from(self.bias),
            &self.linear,
            &self.factors,
            self.num_factors,
            x,
            &mut vec![0.0; self.num_factors],
        )
    }
}

/// The FM margin; leaves `s_f = Σᵢ v_if xᵢ` in `s`.
fn margin<T: Copy + Into<f64>>(
    bias: f64,
    w: &[T],
    v: &[T],
    k: usize,
    x: &[f32],
    s: &mut [f64],
) -> f64 {
    s.iter_mut().for_each(|a| *a = 0.0);
    let mut lin = bias;
    let mut sq = 0.0;
    for (i, &xi) in x.iter().enumerate() {
        if xi == 0.0 {
            continue;
        }
        let xi = f64::from(xi);
        lin += w[i].into() * xi;
        for (f, sf) in s.iter_mut().enumerate() {
            let t = v[i * k + f].into() * xi;
            *sf += t;
            sq += t * t;
        }
    }
    lin + 0.5 * (s.iter().map(|a| a * a).sum::<f64>() - sq)
}

impl BuiltinPredictor for FmModel {
    fn algorithm(&self) -> Algorithm {
        Algorithm::FactorizationMachines
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict(&self, rows: &[f32], n_rows: usize) -> Result<Predictions> {
        check_rows(rows, n_rows, self.n_features)?;
        check_finite(rows, self.n_features)?;
        let scores: Vec<f32> = rows
            .chunks_exact(self.n_features)
            .map(|x| {
                let m = self.margin(x);
                (if self.binary {
                    1.0 / (1.0 + (-m).exp())
                } else {
                    m
                }) as f32
            })
            .collect();
        let predicted_label = self.binary.then(|| {
            scores
                .iter()
                .map(|&s| if s >= 0.5 { 1.0 } else { 0.0 })
                .collect()
        });
        Ok(Predictions::Scores {
            width: 1,
            scores,
            predicted_label,
        })
    }
}

fn draw(init: InitMethod, rng: &mut Rng) -> f64 {
    match init {
        InitMethod::Normal(s) => rng.normal() * s,
        InitMethod::Uniform(s) => (rng.uniform() * 2.0 - 1.0) * s,
        InitMethod::Constant(v) => v,
    }
}

fn evaluate(
    m: &FmModel,
    d: &Dataset,
    labels: &[f32],
    prefix: &str,
    out: &mut BTreeMap<String, f64>,
) {
    let Ok(Predictions::Scores {
        scores,
        predicted_label,
        ..
    }) = m.predict(d.features(), d.n_rows())
    else {
        return;
    };
    if let Some(pl) = predicted_label {
        out.insert(
            format!("{prefix}:binary_classification_accuracy"),
            metrics::accuracy(&pl, labels),
        );
        out.insert(
            format!("{prefix}:binary_classification_cross_entropy"),
            metrics::binary_log_loss(&scores, labels),
        );
        out.insert(
            format!("{prefix}:roc_auc_score"),
            metrics::roc_auc(&scores, labels),
        );
    } else {
        out.insert(format!("{prefix}:rmse"), metrics::rmse(&scores, labels));
        out.insert(format!("{prefix}:mse"), metrics::mse(&scores, labels));
    }
}

/// Trains a factorization machine; returns the model and `train:*`/`validation:*` metrics.
pub fn fit(
    p: &Params,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &dyn Fn(Progress) -> Result<()>,
) -> Result<(FmModel, BTreeMap<String, f64>)> {
    let d = train.n_cols();
    let k = p.num_factors;
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
    let y = train.require_labels("train")?;
    let check = |labels: &[f32], channel| -> Result<()> {
        match labels.iter().position(|&l| {
            if p.binary {
                l != 0.0 && l != 1.0
            } else {
                !l.is_finite()
            }
        }) {
            None => Ok(()),
            Some(i) => Err(TrainError::data(
                channel,
                format!("row {}: label {} is not valid", i + 1, labels[i]),
            )),
        }
    };
    check(y, "train")?;
    if let Some(v) = validation {
        v.require_finite("validation")?;
        check(v.require_labels("validation")?, "validation")?;
    }
    let mut rng = Rng::new(p.seed);
    // Flat parameters: [bias, linear (d), factors (d*k)].
    let n_par = 1 + d + d * k;
    let group_of = |i: usize| {
        if i == 0 {
            &p.bias
        } else if i <= d {
            &p.linear
        } else {
            &p.factors
        }
    };
    let mut theta: Vec<f64> = (0..n_par)
        .map(|i| draw(group_of(i).init, &mut rng))
        .collect();
    let (mut m1, mut m2, mut g) = (vec![0f64; n_par], vec![0f64; n_par], vec![0f64; n_par]);
    let mut s = vec![0f64; k];
    let mut order: Vec<usize> = (0..train.n_rows()).collect();
    let (b1, b2) = (0.9f64, 0.999f64);
    let mut t = 0i32;
    for epoch in 0..p.epochs {
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for batch in order.chunks(p.mini_batch_size) {
            g.iter_mut().for_each(|v| *v = 0.0);
            for &r in batch {
                let x = train.row(r);
                let (w, v) = theta[1..].split_at(d);
                let z = margin(theta[0], w, v, k, x, &mut s);
                let target = f64::from(y[r]);
                let dz = if p.binary {
                    let pr = 1.0 / (1.0 + (-z).exp());
                    loss_sum += -(if target == 1.0 { pr } else { 1.0 - pr }).max(1e-15).ln();
                    pr - target
                } else {
                    loss_sum += 0.5 * (z - target).powi(2);
                    z - target
                };
                g[0] += dz;
                for (i, &xi) in x.iter().enumerate() {
                    if xi == 0.0 {
                        continue;
                    }
                    let xi = f64::from(xi);
                    g[1 + i] += dz * xi;
                    let base = 1 + d + i * k;
                    for f in 0..k {
                        g[base + f] += dz * xi * (s[f] - theta[base + f] * xi);
                    }
                }
            }
            t += 1;
            let scale = p.rescale_grad / batch.len() as f64;
            for i in 0..n_par {
                let gr = group_of(i);
                let mut gi = g[i] * scale + gr.wd * theta[i];
                if let Some(c) = p.clip_gradient {
                    gi = gi.clamp(-c, c);
                }
                m1[i] = b1 * m1[i] + (1.0 - b1) * gi;
                m2[i] = b2 * m2[i] + (1.0 - b2) * gi * gi;
                let mh = m1[i] / (1.0 - b1.powi(t));
                let vh = m2[i] / (1.0 - b2.powi(t));
                theta[i] -= gr.lr * mh / (vh.sqrt() + p.eps);
            }
        }
        if theta.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::Diverged(format!(
                "non-finite parameters in epoch {}; lower the learning rates",
                epoch + 1
            )));
        }
        progress(
            Progress::new(epoch + 1, p.epochs)
                .with("train:objective_loss", loss_sum / train.n_rows() as f64),
        )?;
    }
    let model = FmModel {
        binary: p.binary,
        n_features: d,
        num_factors: k,
        bias: theta[0] as f32,
        linear: theta[1..=d].iter().map(|&v| v as f32).collect(),
        factors: theta[1 + d..].iter().map(|&v| v as f32).collect(),
    };
    let mut out = BTreeMap::new();
    evaluate(&model, train, y, "train", &mut out);
    if let Some(v) = validation
        && let Some(l) = v.labels()
    {
        evaluate(&model, v, l, "validation", &mut out);
    }
    Ok((model, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_pairwise_interaction() {
        // y = 2 x0 x1 + x2: only the factor terms can express x0 x1.
        let mut rng = Rng::new(5);
        let (mut f, mut l) = (Vec::new(), Vec::new());
        for _ in 0..2000 {
            let x: Vec<f32> = (0..3).map(|_| rng.normal() as f32).collect();
            l.push(2.0 * x[0] * x[1] + x[2]);
            f.extend(x);
        }
        let d = Dataset::new(f, 3, Some(l)).unwrap();
        let hp: BTreeMap<String, String> = [
            ("predictor_type", "regressor"),
            ("num_factors", "4"),
            ("epochs", "30"),
            ("mini_batch_size", "50"),
            ("linear_lr", "0.01"),
            ("factors_lr", "0.01"),
            ("factors_init_sigma", "0.1"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let (m, metrics) = fit(&Params::parse(&hp).unwrap(), &d, None, &|_| Ok(())).unwrap();
        assert!(metrics["train:rmse"] < 0.3, "{metrics:?}");
        assert_eq!(FmModel::load(&m.save()).unwrap(), m);
    }
}
