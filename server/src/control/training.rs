//! CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob: the API face
//! of the job runner (`pier-jobs`). Jobs are rows of `pier-db`'s job queue; this module only
//! parses, checks ([`pier_jobs::training::check`]) and reads or writes rows, and wakes the
//! in-process runner when a job is queued. A missing job is SageMaker's `ValidationException`
//! "Requested resource not found." (boto3's job waiters match on it), a taken name
//! `ResourceInUse`.

use std::collections::BTreeMap;

use pier_db::{JobKind, JobRow, JobStatus, StopOutcome};
use pier_jobs::training::TrainingJob;
use pier_jobs::training::record::{
    AlgorithmSpecification, Channel, ModelArtifacts, OutputDataConfig, ResourceConfig,
    RetryStrategy, StoppingCondition,
};
use serde::{Deserialize, Serialize};

use super::list::{JOBS, ListKey, ListRequest, page};
use super::models::{unsupported, validate_role_arn};
use super::{tags, validate_name};
use crate::error::ApiError;
use crate::records::{Tag, arn, now};
use crate::state::AppState;

/// SageMaker's answer for a job that does not exist.
fn not_found() -> ApiError {
    ApiError::validation("Requested resource not found.")
}

/// CreateTrainingJob's request.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateTrainingJob {
    training_job_name: String,
    #[serde(default)]
    hyper_parameters: BTreeMap<String, String>,
    algorithm_specification: AlgorithmSpecification,
    #[serde(default)]
    role_arn: Option<String>,
    #[serde(default)]
    input_data_config: Vec<Channel>,
    output_data_config: Option<OutputDataConfig>,
    #[serde(default)]
    resource_config: ResourceConfig,
    #[serde(default)]
    stopping_condition: StoppingCondition,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    enable_network_isolation: Option<bool>,
    #[serde(default)]
    enable_inter_container_traffic_encryption: Option<bool>,
    #[serde(default)]
    enable_managed_spot_training: Option<bool>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    retry_strategy: Option<RetryStrategy>,
    #[serde(default)]
    debug_hook_config: Option<serde_json::Value>,
    #[serde(default)]
    debug_rule_configurations: Option<serde_json::Value>,
    #[serde(default)]
    profiler_config: Option<serde_json::Value>,
    #[serde(default)]
    profiler_rule_configurations: Option<serde_json::Value>,
    #[serde(default)]
    experiment_config: Option<serde_json::Value>,
    #[serde(default)]
    checkpoint_config: Option<serde_json::Value>,
    #[serde(default)]
    tensor_board_output_config: Option<serde_json::Value>,
    /// Refused: Pier runs no VPC.
    #[serde(default)]
    vpc_config: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TrainingJobArn {
    training_job_arn: String,
}

pub(super) async fn create(
    app: &AppState,
    req: CreateTrainingJob,
) -> Result<TrainingJobArn, ApiError> {
    validate_name("training job", &req.training_job_name)?;
    if req.vpc_config.is_some() {
        return Err(unsupported("VpcConfig"));
    }
    if let Some(role) = &req.role_arn {
        validate_role_arn(role)?;
    }
    tags::validate(&req.tags)?;
    let Some(output) = req.output_data_config else {
        return Err(ApiError::validation("OutputDataConfig is required"));
    };
    let name = req.training_job_name;
    let job_arn = arn("training-job", &name);
    let created = now();
    let location = pier_jobs::training::model_location(&output.s3_output_path, &name);
    let mut job = TrainingJob {
        training_job_name: name.clone(),
        training_job_arn: job_arn.clone(),
        model_artifacts: ModelArtifacts {
            s3_model_artifacts: location,
        },
        training_job_status: JobStatus::InProgress.as_str().to_owned(),
        hyper_parameters: req.hyper_parameters,
        algorithm_specification: req.algorithm_specification,
        role_arn: req.role_arn,
        input_data_config: req.input_data_config,
        output_data_config: output,
        resource_config: req.resource_config,
        stopping_condition: req.stopping_condition,
        creation_time: created,
        last_modified_time: created,
        enable_network_isolation: req.enable_network_isolation,
        enable_inter_container_traffic_encryption: req.enable_inter_container_traffic_encryption,
        enable_managed_spot_training: req.enable_managed_spot_training,
        environment: req.environment,
        retry_strategy: req.retry_strategy,
        debug_hook_config: req.debug_hook_config,
        profiler_config: req.profiler_config,
        experiment_config: req.experiment_config,
        checkpoint_config: req.checkpoint_config,
        tensor_board_output_config: req.tensor_board_output_config,
        ..Default::default()
    };
    // The SDK's log reader counts streams by instances.
    job.resource_config.instance_count.get_or_insert(1);
    // Accepted for the SDK's sake and ignored (no Debugger or Profiler runs here).
    let _ = (
        req.debug_rule_configurations,
        req.profiler_rule_configurations,
    );
    let (channels, submit_directory) = super::scripts::check_job(app, &job).await?;
    // Local channels are confined to the import roots, as CreateModel's local imports are
    // (the runner checks again, link by link, when it reads them).
    let policy = app
        .config
        .import
        .policy(app.config.admin_addr)
        .map_err(|e| ApiError::from_store("InputDataConfig", e))?;
    super::scripts::check_submit_directory(&policy, submit_directory.as_deref())?;
    for channel in &channels {
        if let pier_jobs::channels::Location::Local(path) = &channel.location
            && let Err(pier_model_store::StoreError::ImportRefused { reason, .. }) =
                policy.check(path)
        {
            return Err(ApiError::validation(format!(
                "InputDataConfig channel '{}': {} may not be read: {reason}",
                channel.name, channel.uri
            )));
        }
    }
    job.transition("Starting", "Launching requested ML instances", created);
    if !app
        .db
        .insert_job(JobKind::Training, &name, created, &job)
        .await?
    {
        return Err(ApiError::in_use(format!(
            "Training job names must be unique within an AWS account and region, and a \
             training job with this name already exists ({job_arn})"
        )));
    }
    tags::set_initial(app, &job_arn, &req.tags).await?;
    if let Some(runner) = app.runner.get() {
        runner.wake();
    }
    tracing::info!(job = %name, "training job queued");
    Ok(TrainingJobArn {
        training_job_arn: job_arn,
    })
}

/// A job as Describe answers: the status column is the truth (a stop request lands there
/// before the runner rewrites the body).
fn described(row: JobRow<TrainingJob>) -> TrainingJob {
    let mut job = row.body;
    job.training_job_status = row.status.as_str().to_owned();
    if row.status == JobStatus::Stopping {
        job.secondary_status = "Stopping".to_owned();
    }
    job
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ByName {
    training_job_name: String,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<TrainingJob, ApiError> {
    let row = app
        .db
        .get_job::<TrainingJob>(JobKind::Training, &req.training_job_name)
        .await?
        .ok_or_else(not_found)?;
    Ok(described(row))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TrainingJobSummary {
    training_job_name: String,
    training_job_arn: String,
    creation_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    training_end_time: Option<f64>,
    last_modified_time: f64,
    training_job_status: String,
    secondary_status: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListTrainingJobsResponse {
    training_job_summaries: Vec<TrainingJobSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list(
    app: &AppState,
    req: ListRequest,
) -> Result<ListTrainingJobsResponse, ApiError> {
    let all: Vec<TrainingJob> = app
        .db
        .list_jobs::<TrainingJob>(JobKind::Training)
        .await?
        .into_iter()
        .map(described)
        .collect();
    let (items, next_token) = page(all, &req, &JOBS, |j| ListKey {
        name: &j.training_job_name,
        creation_time: j.creation_time,
        last_modified_time: j.last_modified_time,
        status: &j.training_job_status,
    })?;
    let training_job_summaries = items
        .into_iter()
        .map(|j| TrainingJobSummary {
            training_job_name: j.training_job_name,
            training_job_arn: j.training_job_arn,
            creation_time: j.creation_time,
            training_end_time: j.training_end_time,
            last_modified_time: j.last_modified_time,
            training_job_status: j.training_job_status,
            secondary_status: j.secondary_status,
        })
        .collect();
    Ok(ListTrainingJobsResponse {
        training_job_summaries,
        next_token,
    })
}

pub(super) async fn stop(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let name = req.training_job_name;
    let outcome = app
        .db
        .stop_job::<TrainingJob>(JobKind::Training, &name, |mut job| {
            let at = now();
            job.transition("Stopped", "Training job stopped by StopTrainingJob", at);
            job.end(JobStatus::Stopped, at);
            job
        })
        .await?;
    match outcome {
        StopOutcome::Stopping | StopOutcome::Stopped => {
            tracing::info!(job = %name, ?outcome, "training job stop requested");
            Ok(serde_json::json!({}))
        }
        StopOutcome::NotInProgress => {
            let row = app
                .db
                .get_job::<TrainingJob>(JobKind::Training, &name)
                .await?
                .ok_or_else(not_found)?;
            if row.status == JobStatus::Stopping {
                return Ok(serde_json::json!({}));
            }
            Err(ApiError::validation(format!(
                "The training job {name} is {} and cannot be stopped",
                row.status.as_str()
            )))
        }
    }
}
