//! CreateHyperParameterTuningJob, DescribeHyperParameterTuningJob,
//! ListHyperParameterTuningJobs, ListTrainingJobsForHyperParameterTuningJob and
//! StopHyperParameterTuningJob: the API face of `pier-jobs`' tuning jobs. This module parses,
//! checks ([`pier_jobs::tuning::check`]), reads and writes rows; the search itself runs on the
//! job runner. A missing job is `ValidationException` "Requested resource not found.", a
//! taken name `ResourceInUse`, as for training jobs.

use pier_db::{JobKind, JobRow, JobStatus, StopOutcome};
use pier_jobs::training::TrainingJob;
use pier_jobs::tuning::record::{
    ObjectiveCounters, ResourceLimits, StatusCounters, TrainingJobDefinition, TrainingJobSummary,
    TuningJobConfig, WarmPoint, WarmStartConfig,
};
use pier_jobs::tuning::{Plan, TuningJob};
use serde::{Deserialize, Serialize};

use super::list::{ListKey, ListRequest, ListSpec, decode_token, encode_token, page};
use super::models::{unsupported, validate_role_arn};
use super::tags;
use crate::error::ApiError;
use crate::records::{Tag, arn, now};
use crate::state::AppState;

fn not_found() -> ApiError {
    ApiError::validation("Requested resource not found.")
}

/// CreateHyperParameterTuningJob's request.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateTuningJob {
    hyper_parameter_tuning_job_name: String,
    hyper_parameter_tuning_job_config: TuningJobConfig,
    #[serde(default)]
    training_job_definition: Option<TrainingJobDefinition>,
    #[serde(default)]
    training_job_definitions: Option<Vec<TrainingJobDefinition>>,
    #[serde(default)]
    warm_start_config: Option<WarmStartConfig>,
    #[serde(default)]
    tags: Vec<Tag>,
    /// Refused (Autotune).
    #[serde(default)]
    autotune: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TuningJobArn {
    hyper_parameter_tuning_job_arn: String,
}

pub(super) async fn create(app: &AppState, req: CreateTuningJob) -> Result<TuningJobArn, ApiError> {
    if req.autotune.is_some() {
        return Err(unsupported("Autotune"));
    }
    tags::validate(&req.tags)?;
    let name = req.hyper_parameter_tuning_job_name;
    let job_arn = arn("hyper-parameter-tuning-job", &name);
    let created = now();
    let mut job = TuningJob {
        hyper_parameter_tuning_job_name: name.clone(),
        hyper_parameter_tuning_job_arn: job_arn.clone(),
        hyper_parameter_tuning_job_config: req.hyper_parameter_tuning_job_config,
        training_job_definition: req.training_job_definition,
        training_job_definitions: req.training_job_definitions,
        hyper_parameter_tuning_job_status: JobStatus::InProgress.as_str().to_owned(),
        creation_time: created,
        last_modified_time: created,
        warm_start_config: req.warm_start_config,
        ..Default::default()
    };
    let plan = pier_jobs::tuning::check(&job).map_err(|e| ApiError::validation(e.to_string()))?;
    let policy = app
        .config
        .import
        .policy(app.config.admin_addr)
        .map_err(|e| ApiError::from_store("InputDataConfig", e))?;
    for (i, def) in job.definitions().into_iter().enumerate() {
        if let Some(role) = &def.role_arn {
            validate_role_arn(role)?;
        }
        // A script or container child is checked as CreateTrainingJob checks one: scripts
        // allowed here, an engine that has the image.
        let probe =
            pier_jobs::tuning::child_job(&job, def, i, "probe", &Default::default(), None, created);
        if pier_jobs::script::script_kind(&probe).is_some()
            || pier_jobs::script::is_container_job(&probe)
        {
            super::scripts::check_job(app, &probe).await.map_err(|e| {
                ApiError::validation(format!("TrainingJobDefinition: {}", e.message))
            })?;
        }
        let specs: Vec<_> = def.input_data_config.iter().map(|c| c.spec()).collect();
        let channels = pier_jobs::channels::validate_input_data_config(&specs)
            .map_err(|e| ApiError::validation(e.to_string()))?;
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
    }
    if let Some(warm) = job.warm_start_config.clone() {
        job.pier_warm_start = warm_start(app, &warm, &plan).await?;
    }
    if !app
        .db
        .insert_job(JobKind::Tuning, &name, created, &job)
        .await?
    {
        return Err(ApiError::in_use(format!(
            "Hyperparameter tuning job names must be unique within an AWS account and region, \
             and a tuning job with this name already exists ({job_arn})"
        )));
    }
    tags::set_initial(app, &job_arn, &req.tags).await?;
    if let Some(runner) = app.runner.get() {
        runner.wake();
    }
    tracing::info!(job = %name, strategy = ?plan.kind, "tuning job queued");
    Ok(TuningJobArn {
        hyper_parameter_tuning_job_arn: job_arn,
    })
}

/// The parents' children with an objective, as points that seed the search.
async fn warm_start(
    app: &AppState,
    warm: &WarmStartConfig,
    plan: &Plan,
) -> Result<Vec<WarmPoint>, ApiError> {
    if !matches!(
        warm.warm_start_type.as_str(),
        "IdenticalDataAndAlgorithm" | "TransferLearning"
    ) {
        return Err(ApiError::validation(format!(
            "WarmStartConfig.WarmStartType {:?} must be IdenticalDataAndAlgorithm or \
             TransferLearning",
            warm.warm_start_type
        )));
    }
    let parents = &warm.parent_hyper_parameter_tuning_jobs;
    if parents.is_empty() || parents.len() > 5 {
        return Err(ApiError::validation(format!(
            "WarmStartConfig.ParentHyperParameterTuningJobs must name 1 to 5 tuning jobs, not {}",
            parents.len()
        )));
    }
    let mine = &plan.definitions[0];
    let mut points = Vec::new();
    for parent in parents {
        let pname = &parent.hyper_parameter_tuning_job_name;
        let row = app
            .db
            .get_job::<TuningJob>(JobKind::Tuning, pname)
            .await?
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "WarmStartConfig: the parent tuning job {pname} does not exist"
                ))
            })?;
        if !row.status.is_terminal() {
            return Err(ApiError::validation(format!(
                "WarmStartConfig: the parent tuning job {pname} is {}; it must have ended",
                row.status.as_str()
            )));
        }
        let pplan = pier_jobs::tuning::check(&row.body).map_err(|e| {
            ApiError::validation(format!("WarmStartConfig: the parent {pname}: {e}"))
        })?;
        for t in &row.body.pier_trials {
            let (Some(v), Some(d)) = (t.objective, pplan.definitions.get(t.definition)) else {
                continue;
            };
            if d.metric != mine.metric || d.direction != mine.direction {
                return Err(ApiError::validation(format!(
                    "WarmStartConfig: the parent {pname} tunes {} {}, this job {} {}; they must \
                     share the objective",
                    d.objective_type, d.metric, mine.objective_type, mine.metric
                )));
            }
            points.push(WarmPoint {
                hyper_parameters: t.tuned_hyper_parameters.clone(),
                value: v,
            });
        }
    }
    Ok(points)
}

/// A job as Describe answers: the status column is the truth; the search's state is not shown.
fn described(row: JobRow<TuningJob>) -> TuningJob {
    let mut job = row.body;
    job.hyper_parameter_tuning_job_status = row.status.as_str().to_owned();
    job.pier_trials.clear();
    job.pier_warm_start.clear();
    job.pier_start_time = None;
    job.pier_ending = None;
    job
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ByName {
    hyper_parameter_tuning_job_name: String,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<TuningJob, ApiError> {
    let row = app
        .db
        .get_job::<TuningJob>(JobKind::Tuning, &req.hyper_parameter_tuning_job_name)
        .await?
        .ok_or_else(not_found)?;
    Ok(described(row))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TuningJobSummary {
    hyper_parameter_tuning_job_name: String,
    hyper_parameter_tuning_job_arn: String,
    hyper_parameter_tuning_job_status: String,
    strategy: String,
    creation_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hyper_parameter_tuning_end_time: Option<f64>,
    last_modified_time: f64,
    training_job_status_counters: StatusCounters,
    objective_status_counters: ObjectiveCounters,
    resource_limits: ResourceLimits,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListTuningJobsResponse {
    hyper_parameter_tuning_job_summaries: Vec<TuningJobSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

const STATUSES: &[&str] = &["Completed", "InProgress", "Failed", "Stopped", "Stopping"];

pub(super) async fn list(
    app: &AppState,
    req: ListRequest,
) -> Result<ListTuningJobsResponse, ApiError> {
    let all: Vec<TuningJob> = app
        .db
        .list_jobs::<TuningJob>(JobKind::Tuning)
        .await?
        .into_iter()
        .map(described)
        .collect();
    let spec = ListSpec {
        sort_keys: &["Name", "Status", "CreationTime"],
        last_modified: true,
        statuses: Some(STATUSES),
    };
    let (items, next_token) = page(all, &req, &spec, |j| ListKey {
        name: &j.hyper_parameter_tuning_job_name,
        creation_time: j.creation_time,
        last_modified_time: j.last_modified_time,
        status: &j.hyper_parameter_tuning_job_status,
    })?;
    let hyper_parameter_tuning_job_summaries = items
        .into_iter()
        .map(|j| TuningJobSummary {
            strategy: j.hyper_parameter_tuning_job_config.strategy.clone(),
            resource_limits: j.hyper_parameter_tuning_job_config.resource_limits.clone(),
            hyper_parameter_tuning_job_name: j.hyper_parameter_tuning_job_name,
            hyper_parameter_tuning_job_arn: j.hyper_parameter_tuning_job_arn,
            hyper_parameter_tuning_job_status: j.hyper_parameter_tuning_job_status,
            creation_time: j.creation_time,
            hyper_parameter_tuning_end_time: j.hyper_parameter_tuning_end_time,
            last_modified_time: j.last_modified_time,
            training_job_status_counters: j.training_job_status_counters,
            objective_status_counters: j.objective_status_counters,
        })
        .collect();
    Ok(ListTuningJobsResponse {
        hyper_parameter_tuning_job_summaries,
        next_token,
    })
}

/// ListTrainingJobsForHyperParameterTuningJob's request.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ListChildren {
    hyper_parameter_tuning_job_name: String,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    status_equals: Option<String>,
    #[serde(default)]
    sort_by: Option<String>,
    #[serde(default)]
    sort_order: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListChildrenResponse {
    training_job_summaries: Vec<TrainingJobSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

/// The children as summaries, each brought up to date from its training job's row.
pub(super) async fn children(
    app: &AppState,
    job: &TuningJob,
) -> Result<Vec<TrainingJobSummary>, ApiError> {
    let plan = pier_jobs::tuning::check(job).map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(job.pier_trials.len());
    for trial in &job.pier_trials {
        let mut trial = trial.clone();
        if let Some(row) = app
            .db
            .get_job::<TrainingJob>(JobKind::Training, &trial.training_job_name)
            .await?
            && trial.status != row.status.as_str()
            && !matches!(trial.status.as_str(), "Completed" | "Failed" | "Stopped")
        {
            // The search records the objective on its next pass; a completed child already
            // carries its final metric.
            trial.status = row.status.as_str().to_owned();
            trial.training_start_time = row.body.training_start_time;
            trial.training_end_time = row.body.training_end_time;
            trial.failure_reason = row.body.failure_reason.clone();
            if row.status == JobStatus::Completed
                && let Some(d) = plan.definitions.get(trial.definition)
            {
                trial.objective = row
                    .body
                    .final_metric_data_list
                    .iter()
                    .find(|m| m.metric_name == d.metric)
                    .map(|m| m.value);
            }
        }
        out.push(pier_jobs::tuning::summary(job, &plan, &trial));
    }
    Ok(out)
}

pub(super) async fn list_children(
    app: &AppState,
    req: ListChildren,
) -> Result<ListChildrenResponse, ApiError> {
    let row = app
        .db
        .get_job::<TuningJob>(JobKind::Tuning, &req.hyper_parameter_tuning_job_name)
        .await?
        .ok_or_else(not_found)?;
    let mut items = children(app, &row.body).await?;
    if let Some(status) = &req.status_equals {
        const CHILD: &[&str] = &["InProgress", "Completed", "Failed", "Stopping", "Stopped"];
        if !CHILD.contains(&status.as_str()) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{status}' at 'statusEquals' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                CHILD.join(", ")
            )));
        }
        items.retain(|s| &s.training_job_status == status);
    }
    let sort_by = req.sort_by.as_deref().unwrap_or("Name");
    let descending = match req.sort_order.as_deref() {
        None | Some("Ascending") => false,
        Some("Descending") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: [Ascending, Descending]"
            )));
        }
    };
    let by_name = |a: &TrainingJobSummary, b: &TrainingJobSummary| {
        a.training_job_name.cmp(&b.training_job_name)
    };
    match sort_by {
        "Name" => items.sort_by(by_name),
        "CreationTime" => items.sort_by(|a, b| {
            a.creation_time
                .total_cmp(&b.creation_time)
                .then(by_name(a, b))
        }),
        "Status" => items.sort_by(|a, b| {
            a.training_job_status
                .cmp(&b.training_job_status)
                .then(by_name(a, b))
        }),
        "FinalObjectiveMetricValue" => {}
        other => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [Name, CreationTime, Status, FinalObjectiveMetricValue]"
            )));
        }
    }
    if sort_by == "FinalObjectiveMetricValue" {
        // By value in the order asked; jobs without one last.
        let value = |s: &TrainingJobSummary| {
            s.final_hyper_parameter_tuning_job_objective_metric
                .as_ref()
                .map(|m| m.value)
        };
        items.sort_by(|a, b| match (value(a), value(b)) {
            (Some(x), Some(y)) => {
                let o = x.total_cmp(&y);
                if descending { o.reverse() } else { o }.then(by_name(a, b))
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => by_name(a, b),
        });
    } else if descending {
        items.reverse();
    }
    let size = req.max_results.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return Err(ApiError::validation("MaxResults must be between 1 and 100"));
    }
    let size = size as usize;
    let start = match &req.next_token {
        Some(t) => decode_token(t)?,
        None => 0,
    };
    let total = items.len();
    let training_job_summaries: Vec<TrainingJobSummary> =
        items.into_iter().skip(start).take(size).collect();
    let next_token = (start + size < total).then(|| encode_token(start + size));
    Ok(ListChildrenResponse {
        training_job_summaries,
        next_token,
    })
}

pub(super) async fn stop(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let name = req.hyper_parameter_tuning_job_name;
    let outcome = app
        .db
        .stop_job::<TuningJob>(JobKind::Tuning, &name, |mut job| {
            let at = now();
            job.hyper_parameter_tuning_job_status = "Stopped".into();
            job.hyper_parameter_tuning_end_time = Some(at);
            job.last_modified_time = at;
            job
        })
        .await?;
    let row = app
        .db
        .get_job::<TuningJob>(JobKind::Tuning, &name)
        .await?
        .ok_or_else(not_found)?;
    match outcome {
        StopOutcome::Stopping | StopOutcome::Stopped => {
            // The children stop now, whether or not a runner holds the search.
            pier_jobs::tuning::stop_children(&app.db, &row.body).await;
            tracing::info!(job = %name, ?outcome, "tuning job stop requested");
            Ok(serde_json::json!({}))
        }
        StopOutcome::NotInProgress if row.status == JobStatus::Stopping => {
            Ok(serde_json::json!({}))
        }
        StopOutcome::NotInProgress => Err(ApiError::validation(format!(
            "The hyperparameter tuning job {name} is {} and cannot be stopped",
            row.status.as_str()
        ))),
    }
}
