//! Train a built-in algorithm from `text/csv` channel files and publish the artifact: the
//! library path behind `pier train` ([`train_and_publish`]) and the publishing step of
//! training jobs ([`publish_trained`]).
//!
//! Channels are read as SageMaker's built-in algorithms read `text/csv`: no header, the label
//! first for supervised algorithms, no label column for k-means and PCA. The published
//! version's manifest records runtime = the image name (`linear-learner`, `xgboost`, ...),
//! the signature and properties derived by loading the artifact back (so what is published is
//! known to load), and provenance: algorithm, hyperparameters, final metrics, channel paths
//! and `training_job`.
//!
//! Concurrency: runs on the caller's thread (training uses the current rayon pool: the global
//! one for `pier train`, the runner's training pool for jobs). Publishing
//! goes through the store's atomic, process-safe publish, so this is safe while `pier serve`
//! uses the same store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pier_algorithms::builtin::{Algorithm, Dataset, Progress, TrainError, TrainedModel, train};
use pier_model_store::{ArtifactFile, Manifest, ManifestDraft, ModelStore, validate_model_name};
use pier_runtimes::native::inspect_bytes;
use serde_json::json;

use crate::error::{JobsError, Result};

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
    let train_set = read_csv_file("train", &spec.train, supervised)?;
    let validation_set = spec
        .validation
        .as_deref()
        .map(|p| read_csv_file("validation", p, supervised))
        .transpose()?;
    let trained = train(
        spec.algorithm,
        &spec.hyperparameters,
        &train_set,
        validation_set.as_ref(),
        progress,
    )?;
    let channels = [
        ("train", json!(spec.train.display().to_string())),
        (
            "validation",
            json!(spec.validation.as_ref().map(|p| p.display().to_string())),
        ),
    ];
    publish_trained(
        store,
        &spec.model_name,
        &spec.hyperparameters,
        trained,
        &channels,
        spec.training_job.as_deref(),
    )
}

/// Reads one local `text/csv` file (no header, the label first when `has_label`); errors name
/// the channel, the file and the line. Training jobs read their channels through
/// [`crate::channels`] instead (S3, folders, manifests, gzip, RecordIO).
fn read_csv_file(channel: &str, path: &Path, has_label: bool) -> Result<Dataset> {
    let err = |reason: String| JobsError::Channel {
        channel: channel.to_owned(),
        reason: format!("object {}: {reason}", path.display()),
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    Dataset::from_csv(&bytes[..], has_label).map_err(|e| {
        err(match e {
            TrainError::Csv {
                line,
                column,
                reason,
            } => format!("CSV line {line}, column {column}: {reason}"),
            other => other.to_string(),
        })
    })
}

/// Publishes a trained model as the next version of `model_name`: the manifest's signature
/// and properties come from loading the artifact back (so what is published is known to
/// load); provenance records the algorithm, hyperparameters, metrics, `channels` and the
/// training job.
pub fn publish_trained(
    store: &ModelStore,
    model_name: &str,
    hyperparameters: &BTreeMap<String, String>,
    trained: TrainedModel,
    channels: &[(&str, serde_json::Value)],
    training_job: Option<&str>,
) -> Result<TrainOutcome> {
    let runtime = trained.algorithm.image_name();
    let info = inspect_bytes(runtime, &trained.artifact, trained.file_name)?;
    let mut provenance: BTreeMap<String, serde_json::Value> = [
        ("algorithm", json!(runtime)),
        ("hyperparameters", json!(hyperparameters)),
        ("metrics", json!(trained.metrics)),
        ("training_job", json!(training_job)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, value) in channels {
        provenance.insert((*name).to_owned(), value.clone());
    }
    let draft = ManifestDraft {
        runtime: runtime.to_owned(),
        signature: info.signature.to_manifest(),
        properties: info.properties,
        provenance: provenance.into_iter().collect(),
    };
    let manifest = store.publish(
        model_name,
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
