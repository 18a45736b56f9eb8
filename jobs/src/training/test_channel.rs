//! The `test` channel of the built-ins that read one (linear learner, k-means, PCA,
//! factorization machines): after training, the trained artifact predicts the test set and
//! its metrics join the final ones under SageMaker's `test:` names. Classifiers report
//! `test:binary_classification_accuracy` (two classes) or `test:multiclass_accuracy`,
//! regressors `test:mse` and `test:rmse`, k-means `test:msd` and `test:ssd` (squared distance
//! to the closest center, mean and sum); PCA reports none.
//!
//! Blocking; runs on the training pool.

use std::collections::BTreeMap;

use pier_algorithms::builtin::{Algorithm, Dataset, Predictions, load_predictor, metrics};

use crate::error::{JobsError, Result};

/// Whether `algorithm` reads a `test` channel.
pub fn reads_test(algorithm: Algorithm) -> bool {
    !matches!(algorithm, Algorithm::XGBoost)
}

/// The `test:` metrics of `artifact` on `test`.
pub fn test_metrics(
    algorithm: Algorithm,
    artifact: &[u8],
    test: &Dataset,
) -> Result<BTreeMap<String, f64>> {
    let err = |reason: String| JobsError::Channel {
        channel: "test".into(),
        reason,
    };
    let predictor = load_predictor(algorithm, artifact)?;
    if test.n_cols() != predictor.n_features() {
        return Err(err(format!(
            "{} features where the model has {}",
            test.n_cols(),
            predictor.n_features()
        )));
    }
    let predictions = predictor.predict(test.features(), test.n_rows())?;
    let mut out = BTreeMap::new();
    match predictions {
        Predictions::Scores {
            width,
            scores,
            predicted_label,
        } => {
            let Some(labels) = test.labels() else {
                return Err(err("no label column".into()));
            };
            match predicted_label {
                Some(predicted) => {
                    let name = if width <= 1 {
                        "test:binary_classification_accuracy"
                    } else {
                        "test:multiclass_accuracy"
                    };
                    out.insert(name.into(), metrics::accuracy(&predicted, labels));
                }
                None => {
                    out.insert("test:mse".into(), metrics::mse(&scores, labels));
                    out.insert("test:rmse".into(), metrics::rmse(&scores, labels));
                }
            }
        }
        Predictions::Clusters {
            distance_to_cluster,
            ..
        } => {
            let ssd: f64 = distance_to_cluster
                .iter()
                .map(|d| f64::from(*d) * f64::from(*d))
                .sum();
            out.insert("test:ssd".into(), ssd);
            out.insert(
                "test:msd".into(),
                ssd / distance_to_cluster.len().max(1) as f64,
            );
        }
        Predictions::Projections { .. } => {}
    }
    Ok(out)
}
