//! Runtime kinds `linear-learner`, `kmeans`, `pca` and `factorization-machines`: the built-in
//! algorithms' artifacts served with SageMaker's response shapes.
//!
//! Each [`Predictions`] variant becomes named output tensors plus a [`JsonLayout`], so the
//! generic encoders write what SageMaker's containers write:
//!
//! | algorithm | outputs | JSON |
//! |---|---|---|
//! | linear learner, FM | `score` (`FP32 [-1]`, or `[-1, k]` per class), `predicted_label` (`FP32 [-1]`, classifiers only) | `{"predictions":[{"score":..,"predicted_label":..}]}` |
//! | k-means | `closest_cluster` (`INT64 [-1]`), `distance_to_cluster` (`FP32 [-1]`) | `{"predictions":[{"closest_cluster":..,"distance_to_cluster":..}]}` |
//! | PCA | `projection` (`FP32 [-1, d]`) | `{"projections":[{"projection":[..]}]}` |
//!
//! The output layout is learned at load by predicting one all-zero row, so it is whatever the
//! algorithm's predictor gives, never a second description of it.
//!
//! Concurrency: the predictor is immutable and `Send + Sync`; `predict` runs on the calling
//! thread.

use std::collections::BTreeMap;

use pier_algorithms::builtin::{
    Algorithm, BuiltinPredictor, Predictions, TrainError, load_predictor,
};
use serde_json::json;

use super::{features_input, features_of, per_row, rows_tensor};
use crate::error::{Result, RuntimeError};
use crate::model::{JsonLayout, Model};
use crate::signature::{Signature, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};

/// A loaded built-in algorithm artifact.
pub struct BuiltinModel {
    algorithm: Algorithm,
    predictor: Box<dyn BuiltinPredictor>,
    signature: Signature,
    layout: JsonLayout,
}

impl std::fmt::Debug for BuiltinModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinModel")
            .field("algorithm", &self.algorithm)
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl BuiltinModel {
    /// Reads an artifact written by `pier_algorithms::builtin::train` for `algorithm`.
    pub fn from_bytes(algorithm: Algorithm, bytes: &[u8], label: &str) -> Result<Self> {
        let load_err = |e: TrainError| RuntimeError::Load {
            model: label.to_owned(),
            message: format!("not a readable {algorithm} artifact: {e}"),
        };
        let predictor = load_predictor(algorithm, bytes).map_err(load_err)?;
        let n = predictor.n_features();
        let probe = predictor.predict(&vec![0.0; n], 1).map_err(load_err)?;
        let (outputs, key) = match &probe {
            Predictions::Scores {
                width,
                predicted_label,
                ..
            } => {
                let mut outputs = vec![per_row("score", DataType::Fp32, *width)];
                if predicted_label.is_some() {
                    outputs.push(per_row("predicted_label", DataType::Fp32, 1));
                }
                (outputs, "predictions")
            }
            Predictions::Clusters { .. } => (
                vec![
                    per_row("closest_cluster", DataType::Int64, 1),
                    per_row("distance_to_cluster", DataType::Fp32, 1),
                ],
                "predictions",
            ),
            Predictions::Projections { dim, .. } => (
                vec![TensorSpec::new(
                    "projection",
                    DataType::Fp32,
                    vec![-1, *dim as i64],
                )],
                "projections",
            ),
        };
        Ok(Self {
            algorithm,
            predictor,
            signature: Signature {
                inputs: vec![features_input(n)],
                outputs,
            },
            layout: JsonLayout {
                key,
                always_objects: true,
            },
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The predictor, for callers that want `Predictions` directly.
    pub fn predictor(&self) -> &dyn BuiltinPredictor {
        self.predictor.as_ref()
    }

    /// Manifest properties: `algorithm`, `num_features`, and `num_outputs` (scores per row or
    /// projection components) where the algorithm has them, `classifier` for scorers.
    pub fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let mut p = BTreeMap::new();
        p.insert("algorithm".into(), json!(self.algorithm.image_name()));
        p.insert("num_features".into(), json!(self.predictor.n_features()));
        for spec in &self.signature.outputs {
            match spec.name.as_str() {
                "score" | "projection" => {
                    let width = spec.shape.get(1).copied().unwrap_or(1);
                    p.insert("num_outputs".into(), json!(width));
                }
                "predicted_label" => {
                    p.insert("classifier".into(), json!(true));
                }
                _ => {}
            }
        }
        p
    }
}

impl Model for BuiltinModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let (values, rows) = features_of(&inputs, self.predictor.n_features())?;
        let predictions = self.predictor.predict(values, rows).map_err(|e| match e {
            TrainError::Input(_) => RuntimeError::InvalidInput(e.to_string()),
            other => RuntimeError::Predict(other.to_string()),
        })?;
        match predictions {
            Predictions::Scores {
                width,
                scores,
                predicted_label,
            } => {
                let mut out = vec![rows_tensor(rows, width, TensorData::Fp32(scores))?];
                if let Some(labels) = predicted_label {
                    out.push(rows_tensor(rows, 1, TensorData::Fp32(labels))?);
                }
                Ok(out)
            }
            Predictions::Clusters {
                closest_cluster,
                distance_to_cluster,
            } => Ok(vec![
                rows_tensor(
                    rows,
                    1,
                    TensorData::Int64(closest_cluster.into_iter().map(i64::from).collect()),
                )?,
                rows_tensor(rows, 1, TensorData::Fp32(distance_to_cluster))?,
            ]),
            Predictions::Projections { dim, projections } => Ok(vec![
                Tensor::new(vec![rows, dim], TensorData::Fp32(projections))
                    .map_err(|e| RuntimeError::Predict(e.to_string()))?,
            ]),
        }
    }

    fn backend(&self) -> &'static str {
        "native"
    }

    fn json_layout(&self) -> JsonLayout {
        self.layout.clone()
    }
}

#[cfg(test)]
mod tests {
    use pier_algorithms::builtin::kmeans::KMeansModel;
    use pier_algorithms::builtin::linear_learner::{LinearLearnerModel, PredictorType};

    use super::*;
    use crate::codec::{Format, encode_outputs};

    fn json(model: &BuiltinModel, rows: Vec<f32>) -> String {
        let n = model.predictor().n_features();
        let x = Tensor::from_f32_rows(rows.len() / n, n, rows).unwrap();
        let outputs = model.predict(vec![x]).unwrap();
        let named: Vec<(&str, &Tensor)> = model
            .signature()
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .zip(&outputs)
            .collect();
        String::from_utf8(encode_outputs(Format::Json, &named, &model.json_layout()).unwrap())
            .unwrap()
    }

    #[test]
    fn kmeans_rows_are_cluster_objects() {
        let artifact = KMeansModel {
            k: 2,
            n_features: 2,
            centers: vec![0.0, 0.0, 3.0, 4.0],
        }
        .save();
        let model = BuiltinModel::from_bytes(Algorithm::KMeans, &artifact, "k").unwrap();
        assert_eq!(model.signature().outputs[0].dtype, DataType::Int64);
        assert_eq!(
            json(&model, vec![3.0, 4.0, 0.0, 1.0]),
            r#"{"predictions":[{"closest_cluster":1,"distance_to_cluster":0},{"closest_cluster":0,"distance_to_cluster":1}]}"#
        );
        assert_eq!(model.properties()["num_features"], 2);
    }

    #[test]
    fn linear_regressors_have_a_score_only() {
        let artifact = LinearLearnerModel {
            predictor_type: PredictorType::Regressor,
            n_features: 2,
            n_out: 1,
            weights: vec![1.0, 2.0],
            bias: vec![0.5],
            threshold: 0.5,
        }
        .save();
        let model = BuiltinModel::from_bytes(Algorithm::LinearLearner, &artifact, "r").unwrap();
        assert_eq!(model.signature().outputs.len(), 1);
        assert_eq!(
            json(&model, vec![1.0, 1.0]),
            r#"{"predictions":[{"score":3.5}]}"#
        );
        let err = BuiltinModel::from_bytes(Algorithm::Pca, &artifact, "r").unwrap_err();
        assert!(
            err.to_string().contains("not a readable pca artifact"),
            "{err}"
        );
    }
}
