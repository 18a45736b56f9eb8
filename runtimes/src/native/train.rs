//! Train a built-in algorithm from `text/csv` channel files and publish the artifact: the
//! library path behind `pier train`, shaped so a training-job worker can call it unchanged.
//!
//! Channels are read as SageMaker's built-in algorithms read `text/csv`: no header, the label
//! first for supervised algorithms, no label column for k-means and PCA. The published
//! version's manifest records runtime = the image name (`linear-learner`, `xgboost`, ...),
//! the signature and properties derived by loading the artifact back (so what is published is
//! known to load), and provenance: algorithm, hyperparameters, final metrics, channel paths
//! and `training_job`.
//!
//! Concurrency: runs on the caller's thread (training uses the global rayon pool). Publishing
//! goes through the store's atomic, process-safe publish, so this is safe while `pier serve`
//! uses the same store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pier_algorithms::builtin::{Algorithm, Dataset, Progress, TrainError, train};
use pier_model_store::{ArtifactFile, Manifest, ManifestDraft, ModelStore, validate_model_name};
use serde_json::json;

use super::inspect_bytes;
use crate::error::Result;

/// What to train and where to publish it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSpec {
    /// The algorithm (its image name becomes the runtime kind).
    pub algorithm: Algorithm,
    /// SageMaker-style string hyperparameters.
    pub hyperparameters: BTreeMap<String, String>,
    /// The `train` channel: one `text/csv` file.
    pub train: PathBuf,
    /// The optional `validation` channel: one `text/csv` file.
    pub validation: Option<PathBuf>,
    /// Store name to publish the next version of.
    pub model_name: String,
    /// The training job that ran this, if any (recorded in the provenance).
    pub training_job: Option<String>,
}

/// A finished training run.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    /// The published version's manifest (`pier://{name}/{version}`).
    pub manifest: Manifest,
    /// Final metrics under SageMaker's names (`validation:binary_classification_accuracy`, ...).
    pub metrics: BTreeMap<String, f64>,
}

/// Reads the channels, trains, and publishes the artifact as the next version of
/// `spec.model_name`. `progress` is called as training advances.
pub fn train_and_publish(
    store: &ModelStore,
    spec: &TrainSpec,
    progress: &dyn Fn(Progress),
) -> Result<TrainOutcome> {
    // Refuse a bad name before spending time training.
    validate_model_name(&spec.model_name)?;
    let supervised = spec.algorithm.supervised();
    let train_set = read_channel("train", &spec.train, supervised)?;
    let validation_set = spec
        .validation
        .as_deref()
        .map(|p| read_channel("validation", p, supervised))
        .transpose()?;
    let trained = train(
        spec.algorithm,
        &spec.hyperparameters,
        &train_set,
        validation_set.as_ref(),
        progress,
    )?;
    let runtime = spec.algorithm.image_name();
    let info = inspect_bytes(runtime, &trained.artifact, trained.file_name)?;
    let provenance = [
        ("algorithm", json!(runtime)),
        ("hyperparameters", json!(spec.hyperparameters)),
        ("metrics", json!(trained.metrics)),
        ("train", json!(spec.train.display().to_string())),
        (
            "validation",
            json!(spec.validation.as_ref().map(|p| p.display().to_string())),
        ),
        ("training_job", json!(spec.training_job)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let draft = ManifestDraft {
        runtime: runtime.to_owned(),
        signature: info.signature.to_manifest(),
        properties: info.properties,
        provenance,
    };
    let manifest = store.publish(
        &spec.model_name,
        vec![ArtifactFile::from_bytes(
            trained.file_name,
            trained.artifact,
        )],
        draft,
    )?;
    Ok(TrainOutcome {
        manifest,
        metrics: trained.metrics,
    })
}

/// Reads one `text/csv` channel file; errors name the channel and the file.
fn read_channel(channel: &'static str, path: &Path, has_label: bool) -> Result<Dataset> {
    let data_err = |reason: String| TrainError::Data { channel, reason };
    let bytes = std::fs::read(path)
        .map_err(|e| data_err(format!("cannot read {}: {e}", path.display())))?;
    Dataset::from_csv(&bytes, has_label)
        .map_err(|e| data_err(format!("{}: {e}", path.display())).into())
}
