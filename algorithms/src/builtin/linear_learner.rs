//! Linear learner (`linear-learner`): logistic regression (`binary_classifier`), softmax
//! regression (`multiclass_classifier`) or least squares (`regressor`) fitted by mini-batch
//! SGD or Adam with L1 (proximal) and L2 (`wd`) penalties, optional feature and label
//! standardisation, and early stopping on the validation loss.
//!
//! Training is sequential mini-batch optimisation on the caller's thread (the batches are
//! small and dependent); the standardisation is folded into the saved weights, so the
//! predictor is a plain affine map followed by a link function.

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
pub const FORMAT: &str = "pier-linear-learner";
/// Artifact format version.
pub const FORMAT_VERSION: u32 = 1;

/// What is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictorType {
    /// Labels 0/1; the score is P(label = 1).
    BinaryClassifier,
    /// Labels 0..num_classes-1; the score is the softmax vector.
    MulticlassClassifier,
    /// Real-valued label; the score is the prediction.
    Regressor,
}

/// The optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    /// Plain mini-batch SGD.
    Sgd,
    /// Adam (also what `auto` selects).
    Adam,
}

/// Linear learner hyperparameters (SageMaker names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `predictor_type` (required).
    pub predictor_type: PredictorType,
    /// `num_classes` (required for multiclass, >= 3; 2 otherwise).
    pub num_classes: usize,
    /// `feature_dim` (default auto: the data's width).
    pub feature_dim: Option<usize>,
    /// `mini_batch_size` (default 1000).
    pub mini_batch_size: usize,
    /// `epochs` (default 15).
    pub epochs: usize,
    /// `learning_rate` (default auto: 0.01 for Adam, 0.1 for SGD).
    pub learning_rate: f64,
    /// `l1` (default auto: 0).
    pub l1: f64,
    /// `wd` (L2) [auto: 0].
    pub wd: f64,
    /// `optimizer` (default auto = adam).
    pub optimizer: Optimizer,
    /// `beta_1` (default 0.9), `beta_2` (default 0.999) for Adam.
    pub beta_1: f64,
    /// See `beta_1`.
    pub beta_2: f64,
    /// `momentum` for SGD (default 0).
    pub momentum: f64,
    /// `use_bias` (default true).
    pub use_bias: bool,
    /// `normalize_data` (default true).
    pub normalize_data: bool,
    /// `normalize_label` (default auto: true for regressor).
    pub normalize_label: bool,
    /// `early_stopping_patience` (default 3) epochs without relative improvement.
    pub early_stopping_patience: usize,
    /// `early_stopping_tolerance` (default 0.001) relative improvement of the validation loss.
    pub early_stopping_tolerance: f64,
    /// `binary_classifier_model_selection_criteria` (default accuracy): `accuracy` picks the
    /// score threshold that maximises accuracy on the validation channel (the train channel
    /// when there is none); `loss_function` keeps 0.5.
    pub tune_threshold: bool,
    /// `seed` (default 0). (`loss` may be auto or the predictor type's own loss; `num_models` auto
    /// or 1: Pier trains one model.)
    pub seed: u64,
}

impl Params {
    /// Parses SageMaker string hyperparameters.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self> {
        let h = Hyper::new("linear-learner", map);
        let pt = match h.raw("predictor_type") {
            None => {
                return Err(TrainError::MissingHyperparameter {
                    name: "predictor_type",
                });
            }
            Some(v) => h
                .choice(
                    "predictor_type",
                    &["binary_classifier", "multiclass_classifier", "regressor"],
                    "regressor",
                )
                .map_err(|_| {
                    TrainError::bad(
                        "predictor_type",
                        v,
                        "expected binary_classifier, multiclass_classifier or regressor",
                    )
                })?,
        };
        let predictor_type = match pt {
            "binary_classifier" => PredictorType::BinaryClassifier,
            "multiclass_classifier" => PredictorType::MulticlassClassifier,
            _ => PredictorType::Regressor,
        };
        let num_classes = match predictor_type {
            PredictorType::MulticlassClassifier => in_range(
                "num_classes",
                h.required::<usize>("num_classes")?,
                3,
                1_000_000,
            )?,
            _ => {
                let n = h.get::<usize>("num_classes", 2)?;
                in_range("num_classes", n, 2, 2)?
            }
        };
        let optimizer = match h.choice("optimizer", &["auto", "sgd", "adam"], "auto")? {
            "sgd" => Optimizer::Sgd,
            _ => Optimizer::Adam,
        };
        let learning_rate = match h.auto::<f64>("learning_rate")? {
            Some(v) => positive("learning_rate", v)?,
            None if optimizer == Optimizer::Sgd => 0.1,
            None => 0.01,
        };
        let p = Params {
            predictor_type,
            num_classes,
            feature_dim: h.auto::<usize>("feature_dim")?,
            mini_batch_size: in_range(
                "mini_batch_size",
                h.get("mini_batch_size", 1000)?,
                1,
                usize::MAX,
            )?,
            epochs: in_range("epochs", h.get("epochs", 15)?, 1, usize::MAX)?,
            learning_rate,
            l1: non_negative("l1", h.auto::<f64>("l1")?.unwrap_or(0.0))?,
            wd: non_negative("wd", h.auto::<f64>("wd")?.unwrap_or(0.0))?,
            optimizer,
            beta_1: in_range(
                "beta_1",
                h.auto::<f64>("beta_1")?.unwrap_or(0.9),
                0.0,
                0.999_999,
            )?,
            beta_2: in_range(
                "beta_2",
                h.auto::<f64>("beta_2")?.unwrap_or(0.999),
                0.0,
                0.999_999_9,
            )?,
            momentum: in_range(
                "momentum",
                h.auto::<f64>("momentum")?.unwrap_or(0.0),
                0.0,
                0.999,
            )?,
            use_bias: h.flag("use_bias", true)?,
            normalize_data: h.flag("normalize_data", true)?,
            normalize_label: match h.auto::<String>("normalize_label")? {
                None => predictor_type == PredictorType::Regressor,
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(TrainError::bad(
                            "normalize_label",
                            &v,
                            "expected true, false or auto",
                        ));
                    }
                },
            },
            early_stopping_patience: h.get("early_stopping_patience", 3)?,
            early_stopping_tolerance: non_negative(
                "early_stopping_tolerance",
                h.get("early_stopping_tolerance", 0.001)?,
            )?,
            tune_threshold: h.choice(
                "binary_classifier_model_selection_criteria",
                &["accuracy", "loss_function"],
                "accuracy",
            )? == "accuracy",
            seed: h.get("seed", 0)?,
        };
        let expected_loss = match predictor_type {
            PredictorType::BinaryClassifier => "logistic",
            PredictorType::MulticlassClassifier => "softmax_loss",
            PredictorType::Regressor => "squared_loss",
        };
        match h.raw("loss") {
            None | Some("auto") => {}
            Some(v) if v == expected_loss => {}
            Some(v) => {
                return Err(TrainError::bad(
                    "loss",
                    v,
                    format!("Pier supports auto or {expected_loss} for {pt}"),
                ));
            }
        }
        match h.raw("num_models") {
            None | Some("auto") | Some("1") => {}
            Some(v) => {
                return Err(TrainError::bad(
                    "num_models",
                    v,
                    "Pier trains one model: auto or 1",
                ));
            }
        }
        h.finish()?;
        Ok(p)
    }

    fn n_out(&self) -> usize {
        match self.predictor_type {
            PredictorType::MulticlassClassifier => self.num_classes,
            _ => 1,
        }
    }
}

/// A trained linear learner: `score = link(bias + weights · x)`, weights row-major
/// `n_out x n_features` on raw (unstandardised) features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearLearnerModel {
    /// What is predicted.
    pub predictor_type: PredictorType,
    /// Input width.
    pub n_features: usize,
    /// Outputs: 1, or the number of classes.
    pub n_out: usize,
    /// Row-major `n_out x n_features`.
    pub weights: Vec<f32>,
    /// One per output.
    pub bias: Vec<f32>,
    /// Binary classifiers: `predicted_label` is 1 when the score is at least this.
    #[serde(default = "half")]
    pub threshold: f32,
}

fn half() -> f32 {
    0.5
}

impl LinearLearnerModel {
    /// The artifact bytes.
    pub fn save(&self) -> Vec<u8> {
        artifact::save(FORMAT, FORMAT_VERSION, self)
    }

    /// Reads an artifact written by [`LinearLearnerModel::save`].
    pub fn load(bytes: &[u8]) -> Result<Self> {
        let m: Self = artifact::load(FORMAT, FORMAT_VERSION, bytes)?;
        let want = match m.predictor_type {
            PredictorType::MulticlassClassifier => m.n_out.max(3),
            _ => 1,
        };
        if m.n_out != want || m.n_features == 0 {
            return Err(TrainError::Artifact(
                "inconsistent `n_out` or `n_features`".into(),
            ));
        }
        artifact::check_vec("weights", &m.weights, m.n_out * m.n_features)?;
        artifact::check_vec("bias", &m.bias, m.n_out)?;
        artifact::check_vec("threshold", &[m.threshold], 1)?;
        Ok(m)
    }

    /// Scores (after the link) of one row into `out` (`n_out` values).
    fn score_row(&self, x: &[f32], out: &mut [f32]) {
        let mut z = vec![0f64; self.n_out];
        linear(&self.weights, &self.bias, x, &mut z);
        link(self.predictor_type, &z, out);
    }
}

impl BuiltinPredictor for LinearLearnerModel {
    fn algorithm(&self) -> Algorithm {
        Algorithm::LinearLearner
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict(&self, rows: &[f32], n_rows: usize) -> Result<Predictions> {
        check_rows(rows, n_rows, self.n_features)?;
        check_finite(rows, self.n_features)?;
        let mut scores = vec![0f32; n_rows * self.n_out];
        for (x, out) in rows
            .chunks_exact(self.n_features)
            .zip(scores.chunks_exact_mut(self.n_out))
        {
            self.score_row(x, out);
        }
        let predicted_label = match self.predictor_type {
            PredictorType::Regressor => None,
            PredictorType::BinaryClassifier => Some(
                scores
                    .iter()
                    .map(|&p| if p >= self.threshold { 1.0 } else { 0.0 })
                    .collect(),
            ),
            PredictorType::MulticlassClassifier => Some(
                scores
                    .chunks_exact(self.n_out)
                    .map(|s| metrics::argmax(s) as f32)
                    .collect(),
            ),
        };
        Ok(Predictions::Scores {
            width: self.n_out,
            scores,
            predicted_label,
        })
    }
}

fn linear(w: &[f32], b: &[f32], x: &[f32], z: &mut [f64]) {
    let d = x.len();
    for (k, zk) in z.iter_mut().enumerate() {
        let row = &w[k * d..(k + 1) * d];
        let mut s = 0f32;
        for (a, b) in row.iter().zip(x) {
            s += a * b;
        }
        *zk = f64::from(b[k]) + f64::from(s);
    }
}

fn link(pt: PredictorType, z: &[f64], out: &mut [f32]) {
    match pt {
        PredictorType::Regressor => out[0] = z[0] as f32,
        PredictorType::BinaryClassifier => out[0] = (1.0 / (1.0 + (-z[0]).exp())) as f32,
        PredictorType::MulticlassClassifier => {
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
            for (o, v) in out.iter_mut().zip(z) {
                *o = ((v - m).exp() / s) as f32;
            }
        }
    }
}

fn check_labels(p: &Params, labels: &[f32], channel: &'static str) -> Result<()> {
    for (i, &l) in labels.iter().enumerate() {
        let ok = match p.predictor_type {
            PredictorType::Regressor => l.is_finite(),
            PredictorType::BinaryClassifier => l == 0.0 || l == 1.0,
            PredictorType::MulticlassClassifier => {
                l >= 0.0 && l.fract() == 0.0 && (l as usize) < p.num_classes
            }
        };
        if !ok {
            return Err(TrainError::data(
                channel,
                format!(
                    "row {}: label {l} is not valid for {:?} with num_classes {}",
                    i + 1,
                    p.predictor_type,
                    p.num_classes
                ),
            ));
        }
    }
    Ok(())
}

/// Evaluation of a model on labelled data: (objective loss, SageMaker metrics without prefix).
fn evaluate(
    m: &LinearLearnerModel,
    d: &Dataset,
    labels: &[f32],
) -> (f64, Vec<(&'static str, f64)>) {
    let Ok(Predictions::Scores {
        scores,
        predicted_label,
        ..
    }) = m.predict(d.features(), d.n_rows())
    else {
        return (f64::NAN, Vec::new());
    };
    match m.predictor_type {
        PredictorType::Regressor => {
            let mse = metrics::mse(&scores, labels);
            (
                mse,
                vec![("objective_loss", mse), ("mse", mse), ("rmse", mse.sqrt())],
            )
        }
        PredictorType::BinaryClassifier => {
            let loss = metrics::binary_log_loss(&scores, labels);
            let acc = metrics::accuracy(predicted_label.as_deref().unwrap_or(&[]), labels);
            let auc = metrics::roc_auc(&scores, labels);
            (
                loss,
                vec![
                    ("objective_loss", loss),
                    ("binary_classification_accuracy", acc),
                    ("roc_auc_score", auc),
                ],
            )
        }
        PredictorType::MulticlassClassifier => {
            let loss = metrics::multiclass_log_loss(&scores, m.n_out, labels);
            let acc = metrics::accuracy(predicted_label.as_deref().unwrap_or(&[]), labels);
            (
                loss,
                vec![("objective_loss", loss), ("multiclass_accuracy", acc)],
            )
        }
    }
}

/// Trains a linear learner; returns the model and its final metrics.
pub fn fit(
    p: &Params,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &dyn Fn(Progress) -> Result<()>,
) -> Result<(LinearLearnerModel, BTreeMap<String, f64>)> {
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
    train.require_finite("train")?;
    let y = train.require_labels("train")?;
    check_labels(p, y, "train")?;
    let val = match validation {
        Some(v) => {
            v.require_finite("validation")?;
            let l = v.require_labels("validation")?;
            check_labels(p, l, "validation")?;
            Some((v, l))
        }
        None => None,
    };
    let n = train.n_rows();
    let k = p.n_out();

    // Standardisation statistics.
    let (mean, std) = if p.normalize_data {
        column_stats(train)
    } else {
        (vec![0.0; d], vec![1.0; d])
    };
    let x: Vec<f32> = train
        .features()
        .chunks_exact(d)
        .flat_map(|r| {
            r.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((v, m), s)| ((f64::from(*v) - m) / s) as f32)
        })
        .collect();
    let (y_mean, y_std) = if p.normalize_label && p.predictor_type == PredictorType::Regressor {
        let m = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let s = (y.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n as f64).sqrt();
        (m, if s > 0.0 { s } else { 1.0 })
    } else {
        (0.0, 1.0)
    };

    let mut w = vec![0f64; k * d];
    let mut b = vec![0f64; k];
    let mut opt = OptState::new(k * d + k);
    let mut rng = Rng::new(p.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut best: Option<(f64, LinearLearnerModel)> = None;
    let mut since_best = 0;
    let mut metrics_out = BTreeMap::new();
    let (mut gw, mut gb) = (vec![0f64; k * d], vec![0f64; k]);
    let mut z = vec![0f64; k];
    let mut step = 0u64;
    for epoch in 0..p.epochs {
        rng.shuffle(&mut order);
        let mut train_loss = 0.0;
        for batch in order.chunks(p.mini_batch_size) {
            gw.iter_mut().for_each(|g| *g = 0.0);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for &i in batch {
                let xi = &x[i * d..(i + 1) * d];
                for (c, zc) in z.iter_mut().enumerate() {
                    *zc = b[c]
                        + w[c * d..(c + 1) * d]
                            .iter()
                            .zip(xi)
                            .map(|(a, v)| a * f64::from(*v))
                            .sum::<f64>();
                }
                train_loss +=
                    residuals(p.predictor_type, &mut z, (f64::from(y[i]) - y_mean) / y_std);
                for (c, &r) in z.iter().enumerate() {
                    gb[c] += r;
                    for (g, v) in gw[c * d..(c + 1) * d].iter_mut().zip(xi) {
                        *g += r * f64::from(*v);
                    }
                }
            }
            let inv = 1.0 / batch.len() as f64;
            for (g, wv) in gw.iter_mut().zip(&w) {
                *g = *g * inv + p.wd * wv;
            }
            for g in gb.iter_mut() {
                *g = if p.use_bias { *g * inv } else { 0.0 };
            }
            step += 1;
            opt.step(p, step, &mut w, &gw, &mut b, &gb);
        }
        if w.iter().chain(&b).any(|v| !v.is_finite()) {
            return Err(TrainError::Diverged(format!(
                "non-finite weights in epoch {}; lower learning_rate",
                epoch + 1
            )));
        }
        let model = fold(p, &w, &b, &mean, &std, y_mean, y_std, d);
        let mut prog =
            Progress::new(epoch + 1, p.epochs).with("train:objective_loss", train_loss / n as f64);
        if let Some((vd, vl)) = val {
            let (loss, ms) = evaluate(&model, vd, vl);
            for (name, v) in &ms {
                prog = prog.with(&format!("validation:{name}"), *v);
            }
            let improved = match &best {
                None => true,
                Some((bl, _)) => loss < bl - p.early_stopping_tolerance * bl.abs(),
            };
            if improved {
                best = Some((loss, model));
                since_best = 0;
            } else {
                since_best += 1;
            }
            progress(prog)?;
            if since_best >= p.early_stopping_patience.max(1) && p.early_stopping_patience > 0 {
                break;
            }
        } else {
            best = Some((0.0, model));
            progress(prog)?;
        }
    }
    let Some((_, mut model)) = best else {
        return Err(TrainError::Diverged("no epoch completed".into()));
    };
    if p.predictor_type == PredictorType::BinaryClassifier && p.tune_threshold {
        let (d, l) = val.unwrap_or((train, y));
        if let Ok(Predictions::Scores { scores, .. }) = model.predict(d.features(), d.n_rows()) {
            model.threshold = accuracy_threshold(&scores, l);
        }
    }
    for (name, v) in evaluate(&model, train, y).1 {
        metrics_out.insert(format!("train:{name}"), v);
    }
    if let Some((vd, vl)) = val {
        for (name, v) in evaluate(&model, vd, vl).1 {
            metrics_out.insert(format!("validation:{name}"), v);
        }
    }
    Ok((model, metrics_out))
}

/// Replaces margins `z` by d(loss)/d(z) for target `t`; returns the loss.
fn residuals(pt: PredictorType, z: &mut [f64], t: f64) -> f64 {
    match pt {
        PredictorType::Regressor => {
            let r = z[0] - t;
            z[0] = r;
            0.5 * r * r
        }
        PredictorType::BinaryClassifier => {
            let p = 1.0 / (1.0 + (-z[0]).exp());
            let loss = if t == 1.0 {
                -p.max(1e-15).ln()
            } else {
                -(1.0 - p).max(1e-15).ln()
            };
            z[0] = p - t;
            loss
        }
        PredictorType::MulticlassClassifier => {
            let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
            let c = t as usize;
            let loss = -((z[c] - m).exp() / s).max(1e-15).ln();
            for (j, v) in z.iter_mut().enumerate() {
                *v = (*v - m).exp() / s - if j == c { 1.0 } else { 0.0 };
            }
            loss
        }
    }
}

/// Per-column mean and standard deviation (1 where the deviation is 0).
pub(crate) fn column_stats(data: &Dataset) -> (Vec<f64>, Vec<f64>) {
    let d = data.n_cols();
    let n = data.n_rows() as f64;
    let mut mean = vec![0f64; d];
    for r in data.features().chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; d];
    for r in data.features().chunks_exact(d) {
        for ((s, v), m) in var.iter_mut().zip(r).zip(&mean) {
            *s += (f64::from(*v) - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|s| (s / n).sqrt())
        .map(|s| if s > 1e-12 { s } else { 1.0 })
        .collect();
    (mean, std)
}

/// Folds standardisation into raw-feature weights.
#[allow(clippy::too_many_arguments)]
fn fold(
    p: &Params,
    w: &[f64],
    b: &[f64],
    mean: &[f64],
    std: &[f64],
    y_mean: f64,
    y_std: f64,
    d: usize,
) -> LinearLearnerModel {
    let k = b.len();
    let mut weights = vec![0f32; k * d];
    let mut bias = vec![0f32; k];
    for c in 0..k {
        let mut bc = b[c];
        for j in 0..d {
            let wj = w[c * d + j] / std[j];
            bc -= wj * mean[j];
            weights[c * d + j] = (wj * y_std) as f32;
        }
        bias[c] = (bc * y_std + y_mean) as f32;
    }
    LinearLearnerModel {
        predictor_type: p.predictor_type,
        n_features: d,
        n_out: k,
        weights,
        bias,
        threshold: 0.5,
    }
}

/// The threshold (a midpoint between consecutive distinct scores) that maximises accuracy of
/// `score >= threshold` against 0/1 labels; among equals, the one closest to 0.5.
fn accuracy_threshold(scores: &[f32], labels: &[f32]) -> f32 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let total_pos = labels.iter().filter(|&&l| l == 1.0).count();
    let (mut neg_below, mut pos_below) = (0usize, 0usize);
    let mut best = (0usize, 0.5f32);
    for i in 0..=idx.len() {
        let boundary = i == 0 || i == idx.len() || scores[idx[i]] != scores[idx[i - 1]];
        if boundary {
            let t = if i == 0 {
                0.0
            } else if i == idx.len() {
                1.0 + f32::EPSILON
            } else {
                (scores[idx[i - 1]] + scores[idx[i]]) / 2.0
            };
            let correct = neg_below + (total_pos - pos_below);
            if correct > best.0 || (correct == best.0 && (t - 0.5).abs() < (best.1 - 0.5).abs()) {
                best = (correct, t);
            }
        }
        if let Some(&j) = idx.get(i) {
            if labels[j] == 1.0 {
                pos_below += 1;
            } else {
                neg_below += 1;
            }
        }
    }
    best.1
}

/// Optimiser state over the flattened (weights, bias) parameters.
struct OptState {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl OptState {
    fn new(n: usize) -> Self {
        OptState {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, p: &Params, t: u64, w: &mut [f64], gw: &[f64], b: &mut [f64], gb: &[f64]) {
        let lr = p.learning_rate;
        let nw = w.len();
        let params = w.iter_mut().chain(b.iter_mut());
        let grads = gw.iter().chain(gb);
        for (i, (x, g)) in params.zip(grads).enumerate() {
            match p.optimizer {
                Optimizer::Sgd => {
                    self.m[i] = p.momentum * self.m[i] + g;
                    *x -= lr * self.m[i];
                }
                Optimizer::Adam => {
                    self.m[i] = p.beta_1 * self.m[i] + (1.0 - p.beta_1) * g;
                    self.v[i] = p.beta_2 * self.v[i] + (1.0 - p.beta_2) * g * g;
                    let mh = self.m[i] / (1.0 - p.beta_1.powi(t as i32));
                    let vh = self.v[i] / (1.0 - p.beta_2.powi(t as i32));
                    *x -= lr * mh / (vh.sqrt() + 1e-8);
                }
            }
            if i < nw && p.l1 > 0.0 {
                let shrink = lr * p.l1;
                *x = x.signum() * (x.abs() - shrink).max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fits_a_separable_problem_and_round_trips() {
        let mut f = Vec::new();
        let mut l = Vec::new();
        let mut rng = Rng::new(1);
        for _ in 0..400 {
            let (a, b) = (rng.normal() as f32, rng.normal() as f32);
            f.extend([a * 10.0 + 3.0, b]);
            l.push(if a + 0.5 * b > 0.0 { 1.0 } else { 0.0 });
        }
        let d = Dataset::new(f, 2, Some(l)).unwrap();
        let p = Params::parse(&hp(&[
            ("predictor_type", "binary_classifier"),
            ("mini_batch_size", "32"),
            ("epochs", "20"),
        ]))
        .unwrap();
        let (m, metrics) = fit(&p, &d, Some(&d), &|_| Ok(())).unwrap();
        assert!(
            metrics["train:binary_classification_accuracy"] > 0.97,
            "{metrics:?}"
        );
        let back = LinearLearnerModel::load(&m.save()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn threshold_maximises_accuracy() {
        assert_eq!(
            accuracy_threshold(&[0.1, 0.2, 0.3, 0.4], &[0.0, 0.0, 1.0, 1.0]),
            0.25
        );
        assert_eq!(accuracy_threshold(&[0.6, 0.7], &[0.0, 1.0]), 0.65);
        // Every threshold between the classes ties: the one nearest 0.5 wins.
        assert_eq!(accuracy_threshold(&[0.1, 0.9], &[0.0, 1.0]), 0.5);
        assert_eq!(accuracy_threshold(&[0.3, 0.3], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn multiclass_needs_num_classes() {
        let e = Params::parse(&hp(&[("predictor_type", "multiclass_classifier")])).unwrap_err();
        assert_eq!(
            e,
            TrainError::MissingHyperparameter {
                name: "num_classes"
            }
        );
    }
}
