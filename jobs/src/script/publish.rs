//! What a finished script leaves: `model/` packed whole as `model.tar.gz` (and `output/data/`
//! as `output.tar.gz`) to the job's output path, and `model/`'s top-level files published to
//! the store under the job's name with the runtime [`super::detect`] finds (or stored as
//! `unservable`, with the reason CreateModel gives). The store's publish is atomic, and a
//! version whose archives could not be written is removed again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pier_model_store::{Budget, ManifestDraft};
use serde_json::json;

use super::ScriptJob;
use super::contract::JobFolder;
use super::detect::{self, Detected};
use crate::error::JobsError;
use crate::output::{OUTPUT_TARBALL, write_model_tarball, write_tarball};
use crate::runner::Runner;
use crate::training::TrainingJob;
use crate::training::run::{Failure, Log};

/// Regular files under `dir`, as (relative name with '/', path), in name order.
pub(super) fn walk(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel, d)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let key = format!("{rel}{name}");
            if kind.is_dir() {
                stack.push((format!("{key}/"), entry.path()));
            } else if kind.is_file() {
                out.push((key, entry.path()));
            }
        }
    }
    out.sort();
    out
}

/// Packs `model/` to the output path and publishes it to the store; returns the tarball's
/// URI and `pier://NAME/VERSION`.
pub(super) async fn publish(
    runner: &Runner,
    log: &Log,
    body: &TrainingJob,
    script: &ScriptJob,
    folder: &JobFolder,
) -> Result<(String, String), Failure> {
    let inner = &runner.0;
    let name = body.training_job_name.clone();
    let files = walk(&folder.model());
    if files.is_empty() {
        return Err(super::run::script_error(
            "the script ended successfully but wrote nothing to SM_MODEL_DIR (/opt/ml/model): \
             save the model there (ONNX, XGBoost JSON or LightGBM text for Pier to serve it)",
        ));
    }
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let detected = {
        let paths: BTreeMap<String, PathBuf> = files.iter().cloned().collect();
        detect::detect(&names, script.runtime.as_deref(), &|n| {
            paths.get(n).map(|p| detect::head(p)).unwrap_or_default()
        })
    };
    // The store holds flat files: the model's top-level files (model.tar.gz holds them all).
    let top: Vec<(String, PathBuf)> = files
        .iter()
        .filter(|(n, _)| !n.contains('/') && !n.starts_with('.') && n != "manifest.json")
        .cloned()
        .collect();
    let nested = files.len() - top.len();
    let provenance: BTreeMap<String, serde_json::Value> = [
        ("training_job".to_string(), json!(name)),
        ("framework".to_string(), json!(script.framework)),
        ("entry_point".to_string(), json!(script.entry_point)),
        ("hyperparameters".to_string(), json!(body.hyper_parameters)),
        (
            "channels".to_string(),
            json!(
                script
                    .channels
                    .iter()
                    .map(|c| (c.name.clone(), c.uri.clone()))
                    .collect::<BTreeMap<_, _>>()
            ),
        ),
    ]
    .into();
    let (store, model_dir) = (inner.store.clone(), folder.model());
    let (job_name, detected_for_store) = (name.clone(), detected.clone());
    let manifest = tokio::task::spawn_blocking(move || {
        let (runtime, primary, signature, properties) = match &detected_for_store {
            Detected::Servable { runtime, primary } => {
                let (signature, properties) =
                    detect::inspect(runtime, &model_dir.join(primary), primary)
                        .map_err(JobsError::Script)?;
                let primary_top = Path::new(primary)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (
                    runtime.clone(),
                    Some((primary.clone(), primary_top)),
                    signature,
                    properties,
                )
            }
            Detected::Unservable { reason } => (
                "unservable".to_owned(),
                None,
                Default::default(),
                [("unservable".to_string(), json!(reason))].into(),
            ),
        };
        let mut staging = store.stage()?;
        let mut budget = Budget::unlimited();
        let mut added: Vec<String> = Vec::new();
        for (n, p) in &top {
            staging.add_path(n, p, &mut budget)?;
            added.push(n.clone());
        }
        if let Some((primary, primary_top)) = &primary {
            if !added.contains(primary_top) {
                staging.add_path(primary_top, &model_dir.join(primary), &mut budget)?;
            }
            staging.make_primary(primary_top);
        }
        let draft = ManifestDraft {
            runtime,
            signature,
            properties,
            provenance,
        };
        Ok::<_, JobsError>(staging.publish(&job_name, draft)?)
    })
    .await
    .map_err(|e| super::run::script_error(format!("publishing panicked: {e}")))??;
    // What the script left in output/data goes beside the model, as SageMaker's output.tar.gz.
    let data = walk(&folder.output_data());
    if !data.is_empty() {
        match write_tarball(
            &body.output_data_config.s3_output_path,
            &name,
            OUTPUT_TARBALL,
            &data,
            &inner.config.s3,
        )
        .await
        {
            Ok(uri) => {
                log.line(format!("Wrote output/data ({} files) as {uri}", data.len()))
                    .await
            }
            Err(e) => {
                if let Err(d) = inner.store.delete_version(&manifest.name, manifest.version) {
                    tracing::warn!(error = %d, "cannot remove the version of a failed upload");
                }
                return Err(JobsError::from(e).into());
            }
        }
    }
    let written = write_model_tarball(
        &body.output_data_config.s3_output_path,
        &name,
        &files,
        &inner.config.s3,
    )
    .await;
    let location = match written {
        Ok(location) => location,
        Err(e) => {
            if let Err(d) = inner.store.delete_version(&manifest.name, manifest.version) {
                tracing::warn!(error = %d, "cannot remove the version of a failed upload");
            }
            return Err(JobsError::from(e).into());
        }
    };
    let artifact = format!("pier://{}/{}", manifest.name, manifest.version);
    match &detected {
        Detected::Servable { runtime, primary } => {
            log.line(format!(
                "Published {artifact} ({runtime}, model/{primary}) and {location}"
            ))
            .await
        }
        Detected::Unservable { reason } => {
            log.line(format!(
                "Published {artifact} and {location}, but Pier cannot serve it: {reason}"
            ))
            .await
        }
    }
    if nested > 0 {
        log.line(format!(
            "{nested} files in sub-folders of model/ are in model.tar.gz only (the store keeps model/'s top-level files)"
        ))
        .await;
    }
    Ok((location, artifact))
}
