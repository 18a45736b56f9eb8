//! Runtime kinds `xgboost` and `lightgbm`: users' tree ensembles served as SageMaker's XGBoost
//! container serves them.
//!
//! Signature: input `features` (`FP32 [-1, num_features]`, NaN = missing, which is what the
//! codecs make of an empty CSV field or a JSON `null`) and one output `score`: `[-1]` for
//! binary probabilities, regression values, margins and `multi:softmax` labels, `[-1, k]` for
//! per-class probabilities. With [`JsonLayout`] `always_objects` the JSON response is
//! `{"predictions": [{"score": ...}, ...]}`; CSV is one line per row.
//!
//! Concurrency: the [`TreeEnsemble`] is immutable and `Send + Sync`; `predict` runs on the
//! calling thread and allocates only its output.

use std::collections::BTreeMap;

use pier_algorithms::trees::{ModelFormat, OutputKind, TreeEnsemble, TreeError, load_model};
use serde_json::json;

use super::{features_input, features_of, per_row, rows_tensor};
use crate::error::{Result, RuntimeError};
use crate::model::{JsonLayout, Model};
use crate::signature::Signature;
use crate::tensor::{DataType, Tensor, TensorData};

/// Name of the output of a tree model (SageMaker XGBoost's response key).
pub const OUTPUT_NAME: &str = "score";

/// A loaded XGBoost or LightGBM model.
#[derive(Debug)]
pub struct TreeModel {
    ensemble: TreeEnsemble,
    signature: Signature,
}

impl TreeModel {
    /// Reads a model file for runtime `runtime` (`xgboost` or `lightgbm`); the format is
    /// detected from the content and must be the runtime's.
    pub fn from_bytes(runtime: &str, bytes: &[u8], label: &str) -> Result<Self> {
        let load_err = |message: String| RuntimeError::Load {
            model: label.to_owned(),
            message,
        };
        let ensemble = load_model(bytes).map_err(|e| {
            load_err(format!(
                "not a readable {runtime} model (XGBoost JSON/UBJSON or LightGBM text): {e}"
            ))
        })?;
        let actual = match ensemble.format() {
            ModelFormat::XGBoost => "xgboost",
            ModelFormat::LightGBM => "lightgbm",
        };
        if actual != runtime {
            return Err(load_err(format!(
                "the file is a {actual} model but the runtime is {runtime:?}; use Image {actual:?}"
            )));
        }
        Ok(Self::new(ensemble))
    }

    /// Wraps a loaded ensemble.
    pub fn new(ensemble: TreeEnsemble) -> Self {
        let signature = Signature {
            inputs: vec![features_input(ensemble.num_features())],
            outputs: vec![per_row(OUTPUT_NAME, DataType::Fp32, ensemble.num_outputs())],
        };
        Self {
            ensemble,
            signature,
        }
    }

    /// The ensemble.
    pub fn ensemble(&self) -> &TreeEnsemble {
        &self.ensemble
    }

    /// Manifest properties: `num_features`, `num_outputs` (values per row), `num_classes`
    /// (output groups), `objective`, `output` (what the score means), `num_trees`.
    pub fn properties(&self) -> BTreeMap<String, serde_json::Value> {
        let e = &self.ensemble;
        let output = match e.output_kind() {
            OutputKind::Probability => "probability",
            OutputKind::Probabilities => "probabilities",
            OutputKind::Regression => "regression",
            OutputKind::Label => "label",
            OutputKind::Margin => "margin",
        };
        [
            ("num_features", json!(e.num_features())),
            ("num_outputs", json!(e.num_outputs())),
            ("num_classes", json!(e.num_groups())),
            ("objective", json!(e.objective().name)),
            ("output", json!(output)),
            ("num_trees", json!(e.num_trees())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Model for TreeModel {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let n_features = self.ensemble.num_features();
        let (values, rows) = features_of(&inputs, n_features)?;
        let scores = self
            .ensemble
            .predict(values, rows, n_features)
            .map_err(|e| match e {
                TreeError::WrongFeatureCount { .. } | TreeError::WrongInputLength { .. } => {
                    RuntimeError::InvalidInput(e.to_string())
                }
                other => RuntimeError::Predict(other.to_string()),
            })?;
        let width = self.ensemble.num_outputs();
        Ok(vec![rows_tensor(rows, width, TensorData::Fp32(scores))?])
    }

    fn backend(&self) -> &'static str {
        "native"
    }

    fn accepts_missing(&self) -> bool {
        true
    }

    fn json_layout(&self) -> JsonLayout {
        JsonLayout {
            key: "predictions",
            always_objects: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/trees");
        std::fs::read(dir.join(name)).unwrap()
    }

    #[test]
    fn signature_follows_the_objective() {
        let m = TreeModel::from_bytes("xgboost", &fixture("xgb_multi_softprob.model.json"), "t")
            .unwrap();
        let k = m.ensemble().num_outputs() as i64;
        assert!(k > 1);
        assert_eq!(m.signature().outputs[0].shape, vec![-1, k]);
        assert_eq!(m.properties()["objective"], "multi:softprob");
        let m = TreeModel::from_bytes("lightgbm", &fixture("lgb_binary.txt"), "t").unwrap();
        assert_eq!(m.signature().outputs[0].shape, vec![-1]);
        assert_eq!(m.properties()["num_outputs"], 1);
    }

    #[test]
    fn runtime_must_match_the_file() {
        let err = TreeModel::from_bytes("xgboost", &fixture("lgb_binary.txt"), "t").unwrap_err();
        assert!(err.to_string().contains("lightgbm model"), "{err}");
        let err = TreeModel::from_bytes("lightgbm", b"{not a model", "t").unwrap_err();
        assert!(err.to_string().contains("not a readable lightgbm"), "{err}");
    }

    #[test]
    fn wrong_width_is_invalid_input() {
        let m = TreeModel::from_bytes("lightgbm", &fixture("lgb_binary.txt"), "t").unwrap();
        let n = m.ensemble().num_features();
        let x = Tensor::from_f32_rows(1, n + 1, vec![0.0; n + 1]).unwrap();
        let err = m.predict(vec![x]).unwrap_err();
        assert!(matches!(err, RuntimeError::InvalidInput(_)), "{err}");
        assert!(
            err.to_string().contains(&format!("takes {n} features")),
            "{err}"
        );
    }
}
