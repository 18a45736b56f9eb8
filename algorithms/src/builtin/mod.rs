//! SageMaker's built-in algorithms, trained and served natively: linear learner, k-means,
//! PCA, factorization machines and gradient-boosted trees (image name `xgboost`, whose
//! artifact is an XGBoost JSON model file).
//!
//! Each algorithm lives in one module with its hyperparameters (SageMaker's names and
//! defaults, given as strings and parsed into a typed `Params`), its fit, its artifact
//! (`save`/`load`, a versioned JSON envelope documented in this folder's README.md) and its
//! predictor side by side. This module is the common face: [`Algorithm`] names them by image
//! name, [`train`] fits one from a [`Dataset`] and [`load_predictor`] turns artifact bytes
//! back into a [`BuiltinPredictor`].
//!
//! Concurrency: training runs on the caller's thread and uses the current rayon pool (the
//! global one, or the pool it is `install`ed in: the job runner's training pool) for its
//! data-parallel stages (k-means assignment, PCA covariance, GBDT histograms); results do not
//! depend on the number of threads. Predictors are immutable and `Send + Sync`.

mod artifact;
mod data;
mod eigen;
mod error;
pub mod factorization_machines;
pub mod gbdt;
mod hyper;
pub mod kmeans;
pub mod linear_learner;
pub mod metrics;
pub mod pca;
mod response;
mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

pub use data::{CsvReader, Dataset};
pub use error::{Result, TrainError};

/// A built-in algorithm, named as SageMaker's training image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `linear-learner`: logistic, softmax or least-squares regression by mini-batch SGD/Adam.
    LinearLearner,
    /// `kmeans`: web-scale mini-batch k-means refined by Lloyd iterations.
    KMeans,
    /// `pca`: principal components of the covariance matrix.
    Pca,
    /// `factorization-machines`: second-order factorization machines.
    FactorizationMachines,
    /// `xgboost`: histogram-based gradient-boosted trees saved as an XGBoost JSON model.
    XGBoost,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::LinearLearner,
        Algorithm::KMeans,
        Algorithm::Pca,
        Algorithm::FactorizationMachines,
        Algorithm::XGBoost,
    ];

    /// SageMaker's image name.
    pub fn image_name(self) -> &'static str {
        match self {
            Algorithm::LinearLearner => "linear-learner",
            Algorithm::KMeans => "kmeans",
            Algorithm::Pca => "pca",
            Algorithm::FactorizationMachines => "factorization-machines",
            Algorithm::XGBoost => "xgboost",
        }
    }

    /// Whether training data carries a label (first CSV column).
    pub fn supervised(self) -> bool {
        !matches!(self, Algorithm::KMeans | Algorithm::Pca)
    }

    /// The artifact's file name.
    pub fn artifact_file_name(self) -> &'static str {
        match self {
            Algorithm::LinearLearner => "linear-learner.json",
            Algorithm::KMeans => "kmeans.json",
            Algorithm::Pca => "pca.json",
            Algorithm::FactorizationMachines => "factorization-machines.json",
            Algorithm::XGBoost => "xgboost-model.json",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.image_name())
    }
}

impl FromStr for Algorithm {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.image_name() == s)
            .ok_or_else(|| TrainError::UnknownAlgorithm(s.to_string()))
    }
}

/// A progress report while training.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Units of work done (epochs, rounds, iterations).
    pub done: usize,
    /// Units of work planned (an upper bound where early stopping may cut it short).
    pub total: usize,
    /// Metrics so far, SageMaker names (`train:progress` in percent, losses, …).
    pub metrics: BTreeMap<String, f64>,
}

impl Progress {
    pub(crate) fn new(done: usize, total: usize) -> Self {
        let mut metrics = BTreeMap::new();
        metrics.insert(
            "train:progress".to_string(),
            100.0 * done as f64 / total.max(1) as f64,
        );
        Progress {
            done,
            total,
            metrics,
        }
    }

    pub(crate) fn with(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_string(), value);
        self
    }
}

/// The result of training: the artifact and the final metrics.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// Which algorithm made it.
    pub algorithm: Algorithm,
    /// The artifact's bytes (see [`Algorithm::artifact_file_name`]).
    pub artifact: Vec<u8>,
    /// The file name the artifact should be stored under.
    pub file_name: &'static str,
    /// Final metrics under SageMaker's names (`validation:rmse`, `test:msd`, …).
    pub metrics: BTreeMap<String, f64>,
}

/// What a predictor returns for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Linear learner, factorization machines, xgboost: `width` scores per row (1 for a
    /// probability or a regression value, the number of classes for per-class scores) and,
    /// for classifiers, the predicted label per row.
    Scores {
        /// Scores per row.
        width: usize,
        /// Row-major scores.
        scores: Vec<f32>,
        /// The predicted label per row (classifiers only).
        predicted_label: Option<Vec<f32>>,
    },
    /// K-means: the closest center and the Euclidean distance to it.
    Clusters {
        /// Index of the closest cluster per row.
        closest_cluster: Vec<u32>,
        /// Euclidean distance to that cluster's center.
        distance_to_cluster: Vec<f32>,
    },
    /// PCA: the projection of each row on the components.
    Projections {
        /// Components per row.
        dim: usize,
        /// Row-major projections.
        projections: Vec<f32>,
    },
}

/// A loaded built-in model that predicts dense rows.
pub trait BuiltinPredictor: Send + Sync {
    /// The algorithm.
    fn algorithm(&self) -> Algorithm;
    /// The number of features a row must have.
    fn n_features(&self) -> usize;
    /// Predicts `n_rows` row-major rows (NaN is a missing value where the algorithm allows it).
    fn predict(&self, rows: &[f32], n_rows: usize) -> Result<Predictions>;
}

/// Trains `algorithm` with SageMaker-style string `hyperparameters`.
pub fn train(
    algorithm: Algorithm,
    hyperparameters: &BTreeMap<String, String>,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &dyn Fn(Progress),
) -> Result<TrainedModel> {
    let never = AtomicBool::new(false);
    train_cancellable(
        algorithm,
        hyperparameters,
        train,
        validation,
        progress,
        &never,
    )
}

/// Checks `hyperparameters` for `algorithm` as [`train`] would, without training: an unknown
/// name or a bad value is the error [`train`] would return.
pub fn check_hyperparameters(
    algorithm: Algorithm,
    hyperparameters: &BTreeMap<String, String>,
) -> Result<()> {
    match algorithm {
        Algorithm::LinearLearner => linear_learner::Params::parse(hyperparameters).map(drop),
        Algorithm::KMeans => kmeans::Params::parse(hyperparameters).map(drop),
        Algorithm::Pca => pca::Params::parse(hyperparameters).map(drop),
        Algorithm::FactorizationMachines => {
            factorization_machines::Params::parse(hyperparameters).map(drop)
        }
        Algorithm::XGBoost => gbdt::Params::parse(hyperparameters).map(drop),
    }
}

/// Like [`train`], stopping with [`TrainError::Cancelled`] at the first unit of work (epoch,
/// round, iteration) that ends after `cancel` is set.
pub fn train_cancellable(
    algorithm: Algorithm,
    hyperparameters: &BTreeMap<String, String>,
    train: &Dataset,
    validation: Option<&Dataset>,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<TrainedModel> {
    if cancel.load(Ordering::Relaxed) {
        return Err(TrainError::Cancelled);
    }
    let progress = &|p: Progress| {
        progress(p);
        if cancel.load(Ordering::Relaxed) {
            Err(TrainError::Cancelled)
        } else {
            Ok(())
        }
    };
    if train.n_rows() == 0 {
        return Err(TrainError::data("train", "no rows"));
    }
    if let Some(v) = validation
        && v.n_cols() != train.n_cols()
    {
        return Err(TrainError::data(
            "validation",
            format!("{} features where train has {}", v.n_cols(), train.n_cols()),
        ));
    }
    let (artifact, metrics) = match algorithm {
        Algorithm::LinearLearner => {
            let p = linear_learner::Params::parse(hyperparameters)?;
            let (m, metrics) = linear_learner::fit(&p, train, validation, progress)?;
            (m.save(), metrics)
        }
        Algorithm::KMeans => {
            let p = kmeans::Params::parse(hyperparameters)?;
            let (m, metrics) = kmeans::fit(&p, train, validation, progress)?;
            (m.save(), metrics)
        }
        Algorithm::Pca => {
            let p = pca::Params::parse(hyperparameters)?;
            let (m, metrics) = pca::fit(&p, train, progress)?;
            (m.save(), metrics)
        }
        Algorithm::FactorizationMachines => {
            let p = factorization_machines::Params::parse(hyperparameters)?;
            let (m, metrics) = factorization_machines::fit(&p, train, validation, progress)?;
            (m.save(), metrics)
        }
        Algorithm::XGBoost => {
            let p = gbdt::Params::parse(hyperparameters)?;
            let (m, metrics) = gbdt::fit(&p, train, validation, progress)?;
            (m.to_xgboost_json(), metrics)
        }
    };
    Ok(TrainedModel {
        algorithm,
        artifact,
        file_name: algorithm.artifact_file_name(),
        metrics,
    })
}

/// Loads an artifact written by [`train`] into a predictor.
pub fn load_predictor(algorithm: Algorithm, bytes: &[u8]) -> Result<Box<dyn BuiltinPredictor>> {
    Ok(match algorithm {
        Algorithm::LinearLearner => Box::new(linear_learner::LinearLearnerModel::load(bytes)?),
        Algorithm::KMeans => Box::new(kmeans::KMeansModel::load(bytes)?),
        Algorithm::Pca => Box::new(pca::PcaModel::load(bytes)?),
        Algorithm::FactorizationMachines => Box::new(factorization_machines::FmModel::load(bytes)?),
        Algorithm::XGBoost => Box::new(gbdt::GbdtModel::from_xgboost_json(bytes)?),
    })
}

/// Fails unless `rows` holds `n_rows` rows of `n_features`.
pub(crate) fn check_rows(rows: &[f32], n_rows: usize, n_features: usize) -> Result<()> {
    if rows.len() != n_rows * n_features {
        return Err(TrainError::Input(format!(
            "{} values for {n_rows} rows of {n_features} features",
            rows.len()
        )));
    }
    Ok(())
}

/// Fails on the first missing or non-finite value (for algorithms that need dense rows),
/// naming its 1-based row and feature.
pub(crate) fn check_finite(rows: &[f32], n_features: usize) -> Result<()> {
    match rows.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(p) => Err(TrainError::Input(format!(
            "row {}, feature {}: missing or non-finite value; this model needs dense rows",
            p / n_features.max(1) + 1,
            p % n_features.max(1) + 1
        ))),
    }
}

#[cfg(test)]
mod cancel_tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn every_algorithm_stops_at_the_first_unit_after_cancel() {
        let rows = 200;
        let features: Vec<f32> = (0..rows * 3)
            .map(|i| ((i * 37) % 101) as f32 / 101.0)
            .collect();
        let labels: Vec<f32> = (0..rows).map(|i| (i % 2) as f32).collect();
        let data = Dataset::new(features, 3, Some(labels)).unwrap();
        for (algorithm, hp) in [
            (
                Algorithm::LinearLearner,
                vec![("predictor_type", "binary_classifier"), ("epochs", "50")],
            ),
            (Algorithm::KMeans, vec![("k", "2"), ("epochs", "50")]),
            (Algorithm::Pca, vec![("num_components", "2")]),
            (
                Algorithm::FactorizationMachines,
                vec![
                    ("predictor_type", "binary_classifier"),
                    ("num_factors", "2"),
                    ("epochs", "50"),
                ],
            ),
            (
                Algorithm::XGBoost,
                vec![("objective", "binary:logistic"), ("num_round", "500")],
            ),
        ] {
            let hp: BTreeMap<String, String> = hp
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            check_hyperparameters(algorithm, &hp).unwrap();
            let cancel = AtomicBool::new(false);
            let reports = Cell::new(0);
            let result = train_cancellable(
                algorithm,
                &hp,
                &data,
                None,
                &|_| {
                    reports.set(reports.get() + 1);
                    cancel.store(true, Ordering::Relaxed);
                },
                &cancel,
            );
            assert!(matches!(result, Err(TrainError::Cancelled)), "{algorithm}");
            assert_eq!(reports.get(), 1, "{algorithm} stopped after its first unit");
        }
        let mut bad = BTreeMap::new();
        bad.insert("num_components".to_owned(), "2".to_owned());
        bad.insert("nope".to_owned(), "1".to_owned());
        let err = check_hyperparameters(Algorithm::Pca, &bad).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
