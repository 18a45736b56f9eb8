//! Readers and a fast predictor for users' XGBoost and LightGBM tree ensembles.
//!
//! - [`load_xgboost`] reads what XGBoost's `Booster.save_model` writes (JSON or UBJSON,
//!   detected from the content, so SageMaker's extension-less `xgboost-model` works too).
//! - [`load_lightgbm`] reads LightGBM's text model (`Booster.save_model("m.txt")`).
//! - [`load_model`] tells the two apart by content and calls the right one.
//! - [`OnnxEnsemble`] compiles an ONNX-ML `TreeEnsembleClassifier` / `TreeEnsembleRegressor`
//!   (its attributes, read by the caller) onto the same kernel, matching onnxruntime.
//!
//! Both produce a [`TreeEnsemble`]: every tree flattened into one array of 16-byte nodes,
//! shallow ones also into complete heaps walked eight rows at a time with the top levels
//! in SIMD (see the `predict` and `complete` modules), reproducing each
//! library's comparisons (`x < t` in `f32` for XGBoost, `x <= t` in `f64` for LightGBM),
//! missing-value rules (NaN is missing), categorical splits, accumulation precision and
//! output transform, so outputs match the libraries' own `predict` to about 1e-6.
//!
//! Concurrency: loading is single-threaded and done once; a loaded ensemble is immutable,
//! `Send + Sync`, and every predict call runs on the caller's thread alone. Serve
//! concurrent requests by sharing one ensemble (e.g. in an `Arc`).
//!
//! ```no_run
//! use pier_algorithms::trees::{load_xgboost, OutputKind};
//! let model = load_xgboost(&std::fs::read("model.json")?)?;
//! let rows = vec![0.5f32, f32::NAN, 1.0]; // one row, three features, one missing
//! let probs = model.predict(&rows, 1, model.num_features())?;
//! assert_eq!(model.output_kind(), OutputKind::Probability);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod complete;
mod ensemble;
mod error;
mod lightgbm;
mod onnx;
mod onnx_lower;
mod onnx_post;
mod predict;
mod raw;
mod simd;
mod transform;
pub mod ubjson;
mod value;
mod xgboost;

pub use ensemble::{ModelFormat, Objective, OutputKind, TreeEnsemble};
pub use error::{Result, TreeError};
pub use lightgbm::load_lightgbm;
pub use onnx::{
    Aggregate, OnnxEnsemble, OnnxPrediction, OnnxTreeAttributes, OnnxTreeKind, PostTransform,
};
pub use transform::Transform;
pub use xgboost::load_xgboost;

/// Loads a model of either library from its file's bytes: LightGBM's text format (which
/// starts with a `tree` line) or XGBoost JSON / UBJSON.
pub fn load_model(bytes: &[u8]) -> Result<TreeEnsemble> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    if bytes[start..].starts_with(b"tree\n") || bytes[start..].starts_with(b"tree\r\n") {
        let text = std::str::from_utf8(bytes).map_err(|e| TreeError::Invalid {
            location: format!("byte {}", e.valid_up_to()),
            reason: "LightGBM model is not UTF-8".into(),
        })?;
        load_lightgbm(text)
    } else {
        load_xgboost(bytes)
    }
}

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod onnx_tests;
