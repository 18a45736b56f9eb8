//! Gradient-boosted trees (SageMaker image `xgboost`) with XGBoost's hyperparameters,
//! trained natively: quantile bins (`max_bin`), gradient/hessian histograms with histogram
//! subtraction, depth-wise growth with XGBoost's exact gain and leaf formulas (see
//! `grow.rs`), row (`subsample`) and column (`colsample_bytree`) sampling, objectives
//! `reg:squarederror`, `binary:logistic` and `multi:softprob`. The artifact is an XGBoost JSON
//! model file ([`GbdtModel::to_xgboost_json`]) that the `xgboost` library loads.
//!
//! Concurrency: binning, histograms and split search run on rayon per feature; gradients
//! and margin updates are element-wise parallel. Results do not depend on the thread count.

mod grow;
mod hist;
mod tree;
mod xgb_json;

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::error::{Result, TrainError};
use super::hyper::{Hyper, in_range, non_negative};
use super::metrics;
use super::rng::Rng;
use super::{Algorithm, BuiltinPredictor, Dataset, Predictions, Progress, check_rows};
use grow::GrowParams;
use hist::{BinMatrix, Cuts, MAX_VALUE_BINS};
use tree::Tree;

/// The learning objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// `reg:squarederror`.
    SquaredError,
    /// `binary:logistic`: labels 0/1, the score is P(1).
    Logistic,
    /// `multi:softprob`: labels 0..num_class-1, the score is the probability vector.
    Softprob,
}

impl Objective {
    /// XGBoost's name.
    pub fn name(self) -> &'static str {
        match self {
            Objective::SquaredError => "reg:squarederror",
            Objective::Logistic => "binary:logistic",
            Objective::Softprob => "multi:softprob",
        }
    }
}

/// GBDT hyperparameters (XGBoost names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `num_round` (required).
    pub num_round: usize,
    /// `eta` (default 0.3).
    pub eta: f64,
    /// `max_depth` (default 6).
    pub max_depth: usize,
    /// `min_child_weight` (default 1).
    pub min_child_weight: f64,
    /// `subsample` (default 1).
    pub subsample: f64,
    /// `colsample_bytree` (default 1).
    pub colsample_bytree: f64,
    /// `lambda` (default 1).
    pub lambda: f64,
    /// `alpha` (default 0).
    pub alpha: f64,
    /// `gamma` (default 0).
    pub gamma: f64,
    /// `objective` (default reg:squarederror).
    pub objective: Objective,
    /// `num_class` (required for multi:softprob).
    pub num_class: usize,
    /// `max_bin` (default 256); at most 255 value bins are used (one id is kept for missing values).
    pub max_bin: usize,
    /// `base_score` (default auto: the label mean; 0.5 for multi:softprob).
    pub base_score: Option<f64>,
    /// `early_stopping_rounds` (default none): stop when the validation metric has not improved.
    pub early_stopping_rounds: Option<usize>,
    /// `scale_pos_weight` (default 1): weight of positive rows (binary:logistic).
    pub scale_pos_weight: f64,
    /// `seed` (default 0).
    pub seed: u64,
}

impl Params {
    /// Parses XGBoost-style string hyperparameters.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self> {
        let h = Hyper::new("xgboost", map);
        let objective = match h.choice(
            "objective",
            &[
                "reg:squarederror",
                "reg:linear",
                "binary:logistic",
                "multi:softprob",
            ],
            "reg:squarederror",
        )? {
            "binary:logistic" => Objective::Logistic,
            "multi:softprob" => Objective::Softprob,
            _ => Objective::SquaredError,
        };
        let num_class = match objective {
            Objective::Softprob => {
                in_range("num_class", h.required::<usize>("num_class")?, 2, 100_000)?
            }
            _ => h
                .get::<usize>("num_class", 1)
                .and_then(|v| in_range("num_class", v, 0, 1))?,
        };
        let unit = |name: &'static str, v: f64| -> Result<f64> {
            if v > 0.0 && v <= 1.0 {
                Ok(v)
            } else {
                Err(TrainError::bad(name, &v.to_string(), "must be in (0, 1]"))
            }
        };
        let p = Params {
            num_round: in_range("num_round", h.required::<usize>("num_round")?, 1, 1_000_000)?,
            eta: unit("eta", h.get("eta", 0.3)?)?,
            max_depth: in_range("max_depth", h.get("max_depth", 6)?, 1, 31)?,
            min_child_weight: non_negative("min_child_weight", h.get("min_child_weight", 1.0)?)?,
            subsample: unit("subsample", h.get("subsample", 1.0)?)?,
            colsample_bytree: unit("colsample_bytree", h.get("colsample_bytree", 1.0)?)?,
            lambda: non_negative("lambda", h.get("lambda", 1.0)?)?,
            alpha: non_negative("alpha", h.get("alpha", 0.0)?)?,
            gamma: non_negative("gamma", h.get("gamma", 0.0)?)?,
            objective,
            num_class,
            max_bin: in_range("max_bin", h.get("max_bin", 256)?, 2, 256)?,
            base_score: h.auto::<f64>("base_score")?,
            early_stopping_rounds: h.auto("early_stopping_rounds")?,
            scale_pos_weight: h.get("scale_pos_weight", 1.0)?,
            seed: h.get("seed", 0)?,
        };
        match h.raw("tree_method") {
            None => {}
            Some(v) if v == "hist" || v == "auto" => {}
            Some(v) => {
                return Err(TrainError::bad(
                    "tree_method",
                    v,
                    "only hist (or auto) is supported",
                ));
            }
        }
        if let Some(v) = p.base_score {
            let ok = match objective {
                Objective::Logistic => v > 0.0 && v < 1.0,
                _ => v.is_finite(),
            };
            if !ok {
                return Err(TrainError::bad(
                    "base_score",
                    &v.to_string(),
                    "must be in (0, 1) for binary:logistic",
                ));
            }
        }
        if !(p.scale_pos_weight > 0.0 && p.scale_pos_weight.is_finite()) {
            return Err(TrainError::bad(
                "scale_pos_weight",
                &p.scale_pos_weight.to_string(),
                "must be a positive number",
            ));
        }
        match h.raw("booster") {
            None | Some("gbtree") => {}
            Some(v) => return Err(TrainError::bad("booster", v, "only gbtree is supported")),
        }
        // Accepted for compatibility; they do not change the model.
        for name in ["eval_metric", "verbosity", "silent", "nthread"] {
            h.raw(name);
        }
        h.finish()?;
        Ok(p)
    }

    fn n_groups(&self) -> usize {
        if self.objective == Objective::Softprob {
            self.num_class
        } else {
            1
        }
    }
}

/// A boosted tree ensemble.
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtModel {
    objective: Objective,
    /// Weight of positive rows in training (kept for the XGBoost JSON `reg_loss_param`).
    scale_pos_weight: f32,
    n_features: usize,
    /// Output groups (classes for softprob, else 1).
    n_groups: usize,
    /// `base_score` as XGBoost stores it (probability space for logistic).
    base_score: f32,
    /// Per group initial margin.
    base_margin: Vec<f32>,
    trees: Vec<Tree>,
    /// The group of each tree.
    tree_group: Vec<usize>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl GbdtModel {
    /// The objective.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Raw margins of one row into `out` (`n_groups` values).
    fn margins(&self, x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(&self.base_margin);
        for (t, &g) in self.trees.iter().zip(&self.tree_group) {
            out[g] += t.predict(x);
        }
    }

    /// Applies the objective's transform to row margins in place.
    fn transform(&self, m: &mut [f32]) {
        match self.objective {
            Objective::SquaredError => {}
            Objective::Logistic => m[0] = sigmoid(m[0]),
            Objective::Softprob => softmax(m),
        }
    }
}

fn softmax(m: &mut [f32]) {
    let mx = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in m.iter_mut() {
        *v = (*v - mx).exp();
        s += *v;
    }
    m.iter_mut().for_each(|v| *v /= s);
}

impl BuiltinPredictor for GbdtModel {
    fn algorithm(&self) -> Algorithm {
        Algorithm::XGBoost
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict(&self, rows: &[f32], n_rows: usize) -> Result<Predictions> {
        check_rows(rows, n_rows, self.n_features)?;
        let k = self.n_groups;
        let mut scores = vec![0f32; n_rows * k];
        scores
            .par_chunks_mut(k * 256)
            .zip(rows.par_chunks(self.n_features * 256))
            .for_each(|(out, x)| {
                for (o, r) in out.chunks_exact_mut(k).zip(x.chunks_exact(self.n_features)) {
                    self.margins(r, o);
                    self.transform(o);
                }
            });
        let predicted_label = match self.objective {
            Objective::SquaredError => None,
            Objective::Logistic => Some(
                scores
                    .iter()
                    .map(|&p| if p >= 0.5 { 1.0 } else { 0.0 })
                    .collect(),
            ),
            Objective::Softprob => Some(
                scores
                    .chunks_exact(k)
                    .map(|s| metrics::argmax(s) as f32)
                    .collect(),
            ),
        };
        Ok(Predictions::Scores {
            width: k,
            scores,
            predicted_label,
        })
    }
}

fn check_labels(p: &Params, labels: &[f32], channel: &'static str) -> Result<()> {
    let bad = labels.iter().position(|&l| match p.objective {
        Objective::SquaredError => !l.is_finite(),
        Objective::Logistic => !(0.0..=1.0).contains(&l),
        Objective::Softprob => !(l >= 0.0 && l.fract() == 0.0 && (l as usize) < p.num_class),
    });
    match bad {
        None => Ok(()),
        Some(i) => Err(TrainError::data(
            channel,
            format!(
                "row {}: label {} is not valid for {}",
                i + 1,
                labels[i],
                p.objective.name()
            ),
        )),
    }
}

/// Metrics of transformed predictions `pred` (row-major, `k` per row) against labels.
fn eval(
    obj: Objective,
    k: usize,
    pred: &[f32],
    labels: &[f32],
    prefix: &str,
    out: &mut BTreeMap<String, f64>,
) -> f64 {
    match obj {
        Objective::SquaredError => {
            let r = metrics::rmse(pred, labels);
            out.insert(format!("{prefix}:rmse"), r);
            out.insert(format!("{prefix}:mse"), r * r);
            r
        }
        Objective::Logistic => {
            let auc = metrics::roc_auc(pred, labels);
            let hard: Vec<f32> = pred
                .iter()
                .map(|&p| if p > 0.5 { 1.0 } else { 0.0 })
                .collect();
            out.insert(format!("{prefix}:auc"), auc);
            out.insert(
                format!("{prefix}:logloss"),
                metrics::binary_log_loss(pred, labels),
            );
            out.insert(
                format!("{prefix}:error"),
                1.0 - metrics::accuracy(&hard, labels),
            );
            -auc
        }
        Objective::Softprob => {
            let ll = metrics::multiclass_log_loss(pred, k, labels);
            let hard: Vec<f32> = pred
                .chunks_exact(k)
                .map(|s| metrics::argmax(s) as f32)
                .collect();
            out.insert(format!("{prefix}:mlogloss"), ll);
            out.insert(
                format!("{prefix}:merror"),
                1.0 - metrics::accuracy(&hard, labels),
            );
            ll
        }
    }
}

fn transformed(obj: Objective, k: usize, margins: &[f32]) -> Vec<f32> {
    let mut p = margins.to_vec();
    match obj {
        Objective::SquaredError => {}
        Objective::Logistic => p.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Objective::Softprob => p.chunks_exact_mut(k).for_each(softmax),
    }
    p
}

/// Trains boosted trees; returns the model and `train:*`/`validation:*` metrics.
pub fn fit(
    p: &Params,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &dyn Fn(Progress) -> Result<()>,
) -> Result<(GbdtModel, BTreeMap<String, f64>)> {
    let y = train.require_labels("train")?;
    check_labels(p, y, "train")?;
    let val = match validation {
        Some(v) => {
            let l = v.require_labels("validation")?;
            check_labels(p, l, "validation")?;
            Some((v, l))
        }
        None => None,
    };
    let n = train.n_rows();
    let d = train.n_cols();
    let k = p.n_groups();
    let cuts = Cuts::build(train, p.max_bin.min(MAX_VALUE_BINS));
    let bm = BinMatrix::new(train, &cuts);

    let mean_y = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let base_score = match (p.base_score, p.objective) {
        (Some(b), _) => b,
        (None, Objective::Softprob) => 0.5,
        (None, Objective::Logistic) => mean_y.clamp(1e-6, 1.0 - 1e-6),
        (None, Objective::SquaredError) => mean_y,
    } as f32;
    let base_margin = match p.objective {
        Objective::Logistic => (f64::from(base_score) / (1.0 - f64::from(base_score))).ln() as f32,
        _ => base_score,
    };
    let gp = GrowParams {
        max_depth: p.max_depth,
        min_child_weight: p.min_child_weight,
        lambda: p.lambda,
        alpha: p.alpha,
        gamma: p.gamma,
        eta: p.eta,
    };
    let mut model = GbdtModel {
        objective: p.objective,
        scale_pos_weight: p.scale_pos_weight as f32,
        n_features: d,
        n_groups: k,
        base_score,
        base_margin: vec![base_margin; k],
        trees: Vec::new(),
        tree_group: Vec::new(),
    };
    let mut margins = vec![base_margin; n * k];
    let mut val_margins = val.map(|(v, _)| vec![base_margin; v.n_rows() * k]);
    let mut rng = Rng::new(p.seed);
    let mut gh = vec![[0f32; 2]; n * k];
    let mut gh_group = vec![[0f32; 2]; n];
    let mut best: Option<(f64, usize)> = None;
    let mut tree_rows: Vec<u32> = Vec::with_capacity(n);
    for round in 0..p.num_round {
        gradients(
            p.objective,
            k,
            p.scale_pos_weight as f32,
            &margins,
            y,
            &mut gh,
        );
        let mut rows: Vec<u32> = if p.subsample < 1.0 {
            (0..n as u32)
                .filter(|_| rng.uniform() < p.subsample)
                .collect()
        } else {
            (0..n as u32).collect()
        };
        if rows.is_empty() {
            rows.push(rng.below(n) as u32);
        }
        for g in 0..k {
            gh_group
                .par_iter_mut()
                .enumerate()
                .for_each(|(i, o)| *o = gh[i * k + g]);
            let mut features = vec![p.colsample_bytree >= 1.0; d];
            if p.colsample_bytree < 1.0 {
                let m = ((d as f64 * p.colsample_bytree).round() as usize).max(1);
                let mut idx: Vec<usize> = (0..d).collect();
                rng.shuffle(&mut idx);
                idx[..m].iter().for_each(|&f| features[f] = true);
            }
            tree_rows.clone_from(&rows);
            let grown = grow::grow(&bm, &cuts, &gh_group, &mut tree_rows, &features, &gp);
            let t = grown.tree;
            if tree_rows.len() == n {
                // Every row is in the partition: add each leaf's value to its rows.
                for &(leaf, start, end) in &grown.leaf_ranges {
                    let v = t.nodes[leaf].threshold;
                    for &r in &tree_rows[start..end] {
                        margins[r as usize * k + g] += v;
                    }
                }
            } else {
                margins
                    .par_chunks_mut(k)
                    .enumerate()
                    .for_each(|(i, m)| m[g] += t.predict_binned(&bm, i));
            }
            if let (Some(vm), Some((v, _))) = (val_margins.as_mut(), val) {
                vm.par_chunks_mut(k)
                    .enumerate()
                    .for_each(|(i, m)| m[g] += t.predict(v.row(i)));
            }
            model.trees.push(t);
            model.tree_group.push(g);
        }
        let mut prog = Progress::new(round + 1, p.num_round);
        if let (Some(vm), Some((_, vl))) = (val_margins.as_ref(), val) {
            let score = eval(
                p.objective,
                k,
                &transformed(p.objective, k, vm),
                vl,
                "validation",
                &mut prog.metrics,
            );
            if best.is_none_or(|(b, _)| score < b) {
                best = Some((score, round));
            }
            progress(prog)?;
            if let (Some(es), Some((_, br))) = (p.early_stopping_rounds, best)
                && round - br >= es
            {
                model.trees.truncate((br + 1) * k);
                model.tree_group.truncate((br + 1) * k);
                break;
            }
        } else {
            progress(prog)?;
        }
        if margins.iter().any(|m| !m.is_finite()) {
            return Err(TrainError::Diverged(format!(
                "non-finite margins in round {}",
                round + 1
            )));
        }
    }
    let mut out = BTreeMap::new();
    // The running margins hold the final model's predictions unless early stopping dropped
    // trees; then predict again.
    let complete = model.trees.len() == p.num_round * k;
    let scores = |margins: &[f32], data: &Dataset| {
        if complete {
            transformed(p.objective, k, margins)
        } else {
            match model.predict(data.features(), data.n_rows()) {
                Ok(Predictions::Scores { scores, .. }) => scores,
                _ => Vec::new(),
            }
        }
    };
    eval(
        p.objective,
        k,
        &scores(&margins, train),
        y,
        "train",
        &mut out,
    );
    if let (Some((v, l)), Some(vm)) = (val, val_margins.as_ref()) {
        eval(p.objective, k, &scores(vm, v), l, "validation", &mut out);
    }
    Ok((model, out))
}

/// Gradient/hessian pairs of the objective at `margins` (row-major, `k` per row).
fn gradients(
    obj: Objective,
    k: usize,
    pos_weight: f32,
    margins: &[f32],
    y: &[f32],
    gh: &mut [[f32; 2]],
) {
    gh.par_chunks_mut(k)
        .zip(margins.par_chunks(k))
        .zip(y.par_iter())
        .for_each(|((out, m), &label)| match obj {
            Objective::SquaredError => out[0] = [m[0] - label, 1.0],
            Objective::Logistic => {
                let p = sigmoid(m[0]);
                let w = if label == 1.0 { pos_weight } else { 1.0 };
                out[0] = [(p - label) * w, (p * (1.0 - p)).max(1e-16) * w];
            }
            Objective::Softprob => {
                let mut p = m.to_vec();
                softmax(&mut p);
                for (c, (o, &pc)) in out.iter_mut().zip(&p).enumerate() {
                    let t = if c == label as usize { 1.0 } else { 0.0 };
                    *o = [pc - t, (2.0 * pc * (1.0 - pc)).max(1e-16)];
                }
            }
        });
}
