//! Native runtimes: models Pier predicts itself, with no Python and no C++ library.
//!
//! - [`trees`]: users' XGBoost (JSON, UBJSON, SageMaker's extension-less `xgboost-model`) and
//!   LightGBM (text) models, runtime kinds `xgboost` and `lightgbm`, over
//!   [`pier_algorithms::trees::TreeEnsemble`].
//! - [`builtin`]: the built-in algorithms Pier trains, runtime kinds named by SageMaker's image
//!   (`linear-learner`, `kmeans`, `pca`, `factorization-machines`), over
//!   [`pier_algorithms::builtin::load_predictor`]. The built-in `xgboost` artifact is an
//!   XGBoost JSON model, so the `xgboost` tree runtime serves it.
//!
//! Training and publishing is `pier-jobs`' (`pier_jobs::train`); this crate loads and predicts.
//!
//! A native model's signature is always derived from the model file: one input `features`
//! (`FP32`, `[-1, num_features]`) and outputs named as SageMaker's responses name them, so the
//! generic codecs write SageMaker's shapes. A manifest signature, when present, must agree.
//!
//! Concurrency: loaded models are immutable and `Send + Sync`; each `predict` runs on the
//! caller's (compute) thread alone, with no locks.

pub mod builtin;
pub mod trees;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use pier_algorithms::builtin::Algorithm;

use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::signature::{Signature, TensorSpec};
use crate::tensor::{DataType, Tensor};

/// Runtime kinds served by [`trees::TreeModel`].
pub const TREE_RUNTIMES: &[&str] = &["xgboost", "lightgbm"];

/// Runtime kinds served by [`builtin::BuiltinModel`] (SageMaker image names).
pub const BUILTIN_RUNTIMES: &[&str] =
    &["linear-learner", "kmeans", "pca", "factorization-machines"];

/// Name of the single input of every native model.
pub const INPUT_NAME: &str = "features";

/// What Pier learns about a native model file before publishing it: the signature to record
/// in the manifest and the facts for its `properties` (feature count, output count, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct NativeInfo {
    /// Inputs and outputs, derived from the model.
    pub signature: Signature,
    /// Manifest properties, e.g. `{"num_features": 50, "num_outputs": 1, "objective": ...}`.
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// True when `runtime` is one of the native runtime kinds.
pub fn serves(runtime: &str) -> bool {
    TREE_RUNTIMES.contains(&runtime) || BUILTIN_RUNTIMES.contains(&runtime)
}

/// Loads a native model file for `runtime`. `declared` is the manifest's signature: empty
/// (derive it from the file) or equal to what the file gives.
pub fn load(
    runtime: &str,
    path: &Path,
    declared: &Signature,
    label: &str,
) -> Result<Arc<dyn Model>> {
    let bytes = read(path, label)?;
    let model: Arc<dyn Model> = if TREE_RUNTIMES.contains(&runtime) {
        Arc::new(trees::TreeModel::from_bytes(runtime, &bytes, label)?)
    } else {
        Arc::new(builtin::BuiltinModel::from_bytes(
            algorithm(runtime)?,
            &bytes,
            label,
        )?)
    };
    check_declared(label, declared, model.signature())?;
    Ok(model)
}

/// Reads a model file for `runtime` and reports its signature and properties (used when a
/// file is imported into the store).
pub fn inspect(runtime: &str, path: &Path) -> Result<NativeInfo> {
    let label = path.display().to_string();
    inspect_bytes(runtime, &read(path, &label)?, &label)
}

/// Like [`inspect`], from the file's bytes.
pub fn inspect_bytes(runtime: &str, bytes: &[u8], label: &str) -> Result<NativeInfo> {
    if TREE_RUNTIMES.contains(&runtime) {
        let model = trees::TreeModel::from_bytes(runtime, bytes, label)?;
        Ok(NativeInfo {
            signature: model.signature().clone(),
            properties: model.properties(),
        })
    } else {
        let model = builtin::BuiltinModel::from_bytes(algorithm(runtime)?, bytes, label)?;
        Ok(NativeInfo {
            signature: model.signature().clone(),
            properties: model.properties(),
        })
    }
}

/// The built-in algorithm a runtime kind names.
fn algorithm(runtime: &str) -> Result<Algorithm> {
    match runtime.parse::<Algorithm>() {
        Ok(a) if BUILTIN_RUNTIMES.contains(&runtime) => Ok(a),
        _ => Err(RuntimeError::UnsupportedRuntime(runtime.to_owned())),
    }
}

fn read(path: &Path, label: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| RuntimeError::Load {
        model: label.to_owned(),
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// Refuses a manifest signature that disagrees with the model file.
fn check_declared(label: &str, declared: &Signature, derived: &Signature) -> Result<()> {
    if (declared.inputs.is_empty() && declared.outputs.is_empty()) || declared == derived {
        return Ok(());
    }
    Err(RuntimeError::Load {
        model: label.to_owned(),
        message: format!(
            "the manifest signature {declared:?} does not match the model file's {derived:?}"
        ),
    })
}

/// The `features` input: `FP32 [-1, n]`.
fn features_input(n: usize) -> TensorSpec {
    TensorSpec::new(INPUT_NAME, DataType::Fp32, vec![-1, n as i64])
}

/// An output spec of `width` values per row: `[-1]` when 1, else `[-1, width]`.
fn per_row(name: &str, dtype: DataType, width: usize) -> TensorSpec {
    let shape = if width == 1 {
        vec![-1]
    } else {
        vec![-1, width as i64]
    };
    TensorSpec::new(name, dtype, shape)
}

/// A tensor of `rows` rows of `width` values, shaped as [`per_row`] declares it.
fn rows_tensor(rows: usize, width: usize, data: crate::tensor::TensorData) -> Result<Tensor> {
    let shape = if width == 1 {
        vec![rows]
    } else {
        vec![rows, width]
    };
    Tensor::new(shape, data).map_err(|e| RuntimeError::Predict(e.to_string()))
}

/// The single `FP32 [rows, features]` input of a native model, as a slice.
fn features_of(inputs: &[Tensor], n_features: usize) -> Result<(&[f32], usize)> {
    let [x] = inputs else {
        return Err(RuntimeError::InvalidInput(format!(
            "the model takes one input ({INPUT_NAME:?}) but {} were given",
            inputs.len()
        )));
    };
    let values = x.as_f32().ok_or_else(|| {
        RuntimeError::InvalidInput(format!(
            "input {INPUT_NAME:?} must be FP32 but is {}",
            x.dtype()
        ))
    })?;
    if x.shape().len() != 2 || x.row_len() != n_features {
        return Err(RuntimeError::InvalidInput(format!(
            "input {INPUT_NAME:?} must have shape [-1, {n_features}] (the model takes {n_features} features) but has {:?}",
            x.shape()
        )));
    }
    Ok((values, x.rows()))
}
