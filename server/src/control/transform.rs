//! CreateTransformJob, DescribeTransformJob, ListTransformJobs, StopTransformJob: the API face
//! of batch transform (`pier_jobs::transform`). This module parses, checks
//! ([`pier_jobs::transform::check`], the Model's existence, local paths against the import
//! roots) and reads or writes job rows; the runner does the work. A missing job is
//! `ValidationException` "Requested resource not found." (boto3's waiter matches on it), a
//! taken name `ResourceInUse`, as for training jobs.
//!
//! [`ControlPlaneModels`] is the runner's [`ModelSource`]: a transform loads its Model exactly
//! as an endpoint would (the record's pinned artifact, its `PIER_*` load options), through the
//! server's model cache when it runs inside `pier serve`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use pier_db::{Db, JobKind, JobRow, JobStatus, StopOutcome, Table};
use pier_jobs::transform::record::{
    DataProcessing, TransformInput, TransformOutput, TransformResources,
};
use pier_jobs::transform::{ModelSource, TransformJob};
use pier_model_store::ModelStore;
use pier_runtimes::Model;
use serde::{Deserialize, Serialize};

use super::list::{JOBS, ListKey, ListRequest, page};
use super::{tags, validate_name};
use crate::error::ApiError;
use crate::records::{ModelRecord, Tag, arn, now};
use crate::serving::models::ModelCache;
use crate::state::{AppState, DataPlane};

/// SageMaker's answer for a job that does not exist.
fn not_found() -> ApiError {
    ApiError::validation("Requested resource not found.")
}

/// CreateTransformJob's request.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateTransformJob {
    transform_job_name: String,
    model_name: String,
    #[serde(default)]
    max_concurrent_transforms: Option<i64>,
    #[serde(default)]
    model_client_config: Option<serde_json::Value>,
    #[serde(rename = "MaxPayloadInMB", default)]
    max_payload_in_mb: Option<i64>,
    #[serde(default)]
    batch_strategy: Option<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    transform_input: TransformInput,
    transform_output: TransformOutput,
    #[serde(default)]
    data_capture_config: Option<serde_json::Value>,
    transform_resources: TransformResources,
    #[serde(default)]
    data_processing: Option<DataProcessing>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    experiment_config: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TransformJobArn {
    transform_job_arn: String,
}

/// Refuses a local path outside the import roots, naming the field.
fn check_local(
    policy: &pier_model_store::ImportPolicy,
    field: &str,
    location: &pier_jobs::channels::Location,
    uri: &str,
) -> Result<(), ApiError> {
    let pier_jobs::channels::Location::Local(path) = location else {
        return Ok(());
    };
    // An output folder may not exist yet: its nearest existing folder is checked.
    let existing = path.ancestors().find(|a| a.exists()).unwrap_or(path);
    match policy.check(existing) {
        Err(pier_model_store::StoreError::ImportRefused { reason, .. }) => Err(
            ApiError::validation(format!("{field} {uri} may not be used: {reason}")),
        ),
        _ => Ok(()),
    }
}

pub(super) async fn create(
    app: &AppState,
    req: CreateTransformJob,
) -> Result<TransformJobArn, ApiError> {
    validate_name("transform job", &req.transform_job_name)?;
    tags::validate(&req.tags)?;
    let name = req.transform_job_name;
    let job_arn = arn("transform-job", &name);
    let created = now();
    let job = TransformJob {
        transform_job_name: name.clone(),
        transform_job_arn: job_arn.clone(),
        transform_job_status: JobStatus::InProgress.as_str().to_owned(),
        model_name: req.model_name,
        max_concurrent_transforms: req.max_concurrent_transforms,
        model_client_config: req.model_client_config,
        max_payload_in_mb: req.max_payload_in_mb,
        batch_strategy: req.batch_strategy,
        environment: req.environment,
        transform_input: req.transform_input,
        transform_output: req.transform_output,
        data_capture_config: req.data_capture_config,
        transform_resources: req.transform_resources,
        creation_time: created,
        last_modified_time: created,
        data_processing: req.data_processing,
        experiment_config: req.experiment_config,
        ..Default::default()
    };
    let plan =
        pier_jobs::transform::check(&job).map_err(|e| ApiError::validation(e.to_string()))?;
    if app
        .db
        .get::<ModelRecord>(Table::Models, &job.model_name)
        .await?
        .is_none()
    {
        return Err(ApiError::validation(format!(
            "Could not find model \"{}\".",
            arn("model", &job.model_name)
        )));
    }
    let policy = app
        .config
        .import
        .policy(app.config.admin_addr)
        .map_err(|e| ApiError::from_store("TransformInput", e))?;
    check_local(
        &policy,
        "TransformInput.DataSource.S3DataSource.S3Uri",
        &plan.input,
        &plan.input_uri,
    )?;
    check_local(
        &policy,
        "TransformOutput.S3OutputPath",
        &plan.output,
        &plan.output_uri,
    )?;
    if !app
        .db
        .insert_job(JobKind::Transform, &name, created, &job)
        .await?
    {
        return Err(ApiError::in_use(format!(
            "Job name must be unique within an AWS account and region, and a transform job \
             with this name already exists ({job_arn})"
        )));
    }
    tags::set_initial(app, &job_arn, &req.tags).await?;
    if let Some(runner) = app.runner.get() {
        runner.wake();
    }
    tracing::info!(job = %name, "transform job queued");
    Ok(TransformJobArn {
        transform_job_arn: job_arn,
    })
}

/// A job as Describe answers: the status column is the truth.
fn described(row: JobRow<TransformJob>) -> TransformJob {
    let mut job = row.body;
    job.transform_job_status = row.status.as_str().to_owned();
    job
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ByName {
    transform_job_name: String,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<TransformJob, ApiError> {
    let row = app
        .db
        .get_job::<TransformJob>(JobKind::Transform, &req.transform_job_name)
        .await?
        .ok_or_else(not_found)?;
    Ok(described(row))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TransformJobSummary {
    transform_job_name: String,
    transform_job_arn: String,
    creation_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    transform_end_time: Option<f64>,
    last_modified_time: f64,
    transform_job_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListTransformJobsResponse {
    transform_job_summaries: Vec<TransformJobSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list(
    app: &AppState,
    req: ListRequest,
) -> Result<ListTransformJobsResponse, ApiError> {
    let all: Vec<TransformJob> = app
        .db
        .list_jobs::<TransformJob>(JobKind::Transform)
        .await?
        .into_iter()
        .map(described)
        .collect();
    let (items, next_token) = page(all, &req, &JOBS, |j| ListKey {
        name: &j.transform_job_name,
        creation_time: j.creation_time,
        last_modified_time: j.last_modified_time,
        status: &j.transform_job_status,
    })?;
    Ok(ListTransformJobsResponse {
        transform_job_summaries: items
            .into_iter()
            .map(|j| TransformJobSummary {
                transform_job_name: j.transform_job_name,
                transform_job_arn: j.transform_job_arn,
                creation_time: j.creation_time,
                transform_end_time: j.transform_end_time,
                last_modified_time: j.last_modified_time,
                transform_job_status: j.transform_job_status,
                failure_reason: j.failure_reason,
            })
            .collect(),
        next_token,
    })
}

pub(super) async fn stop(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let name = req.transform_job_name;
    let outcome = app
        .db
        .stop_job::<TransformJob>(JobKind::Transform, &name, |mut job| {
            job.end(JobStatus::Stopped, now());
            job
        })
        .await?;
    match outcome {
        StopOutcome::Stopping | StopOutcome::Stopped => {
            tracing::info!(job = %name, ?outcome, "transform job stop requested");
            Ok(serde_json::json!({}))
        }
        StopOutcome::NotInProgress => {
            let row = app
                .db
                .get_job::<TransformJob>(JobKind::Transform, &name)
                .await?
                .ok_or_else(not_found)?;
            if row.status == JobStatus::Stopping {
                return Ok(serde_json::json!({}));
            }
            Err(ApiError::validation(format!(
                "The transform job {name} is {} and cannot be stopped",
                row.status.as_str()
            )))
        }
    }
}

/// Where the models come from: the server's cache inside `pier serve`, or a cache of its own.
#[derive(Debug)]
enum Cache {
    Server(DataPlane),
    Own(ModelCache),
}

/// The runner's [`ModelSource`]: control-plane Models, loaded as endpoints load them.
#[derive(Debug)]
pub struct ControlPlaneModels {
    db: Db,
    store: ModelStore,
    cache: Cache,
}

impl ControlPlaneModels {
    /// Models of a running server (its database, store and model cache).
    pub fn for_server(app: &AppState) -> Arc<Self> {
        Arc::new(Self {
            db: app.db.clone(),
            store: app.store.clone(),
            cache: Cache::Server(app.data()),
        })
    }

    /// Models of a data folder with no server (`pier worker`, `pier transform`).
    pub fn standalone(db: Db, store: ModelStore) -> Arc<Self> {
        Arc::new(Self {
            db,
            store,
            cache: Cache::Own(ModelCache::default()),
        })
    }

    /// Loads the Model named `name`.
    pub async fn load_model(self: &Arc<Self>, name: &str) -> Result<Arc<dyn Model>, String> {
        let record: ModelRecord = self
            .db
            .get(Table::Models, name)
            .await
            .map_err(|e| format!("cannot read model {name:?}: {e}"))?
            .ok_or_else(|| format!("model {name:?} does not exist (CreateModel)"))?;
        let options = super::options::load_options(&record.primary_container)
            .map_err(|e| format!("model {name:?}: {e}"))?;
        if record.is_pipeline() {
            return Err(format!(
                "model {name:?} is a serial inference pipeline; batch transform runs single-container Models only (not built yet for pipelines)"
            ));
        }
        let Some(artifact) = record.pier_artifact.clone() else {
            return Err(format!(
                "model {name:?} is a multi-model Model; batch transform needs one model (create a Model of the archive to score with)"
            ));
        };
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let (cache, store) = match &this.cache {
                Cache::Server(data) => (&data.serving.cache, &data.store),
                Cache::Own(cache) => (cache, &this.store),
            };
            cache.get_or_load_with(store, &artifact, &options)
        })
        .await
        .map_err(|e| format!("model {name:?}: the loader stopped: {e}"))?
        .map_err(|e| format!("model {name:?}: {e}"))?;
        Ok(loaded.model.clone())
    }
}

/// A shared handle on [`ControlPlaneModels`], as the runner takes it.
#[derive(Debug)]
pub struct Models(pub Arc<ControlPlaneModels>);

impl ModelSource for Models {
    fn load(&self, name: &str) -> BoxFuture<'_, Result<Arc<dyn Model>, String>> {
        let name = name.to_owned();
        Box::pin(async move { self.0.load_model(&name).await })
    }
}
