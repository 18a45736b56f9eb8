//! Hyperparameter tuning jobs: SageMaker's automatic model tuning over the built-ins.
//!
//! - [`strategy`]: the pure, clock-free search strategies (Random, Grid, Bayesian, Hyperband's
//!   rungs and the median rule): history in, points out.
//! - [`record`]: the tuning job record in SageMaker's field names, and the search's state.
//! - [`check`] turns a record into a [`Plan`] (the checked search: spaces, objectives, limits),
//!   run by CreateHyperParameterTuningJob before the job is queued and by the runner when it
//!   claims it, so both agree on what the job means.
//! - `run`: the tuning job's task on the runner. Its children are ordinary training jobs
//!   (`<tuning job>-NNN-<hash>`, carrying `TuningJobArn`) in the same queue; the task plans
//!   each child in the tuning job's record before it inserts it, watches the children's rows
//!   and intermediate metric points, stops them (early stopping, Hyperband, StopHyper…,
//!   completion criteria) and ends the search. A restarted runner continues from the record:
//!   a planned child whose row is missing is inserted (insertion is idempotent by name), none
//!   is inserted twice.

pub mod record;
pub(crate) mod run;
pub mod strategy;

use std::collections::BTreeMap;

use pier_algorithms::builtin::Algorithm;

use crate::error::{JobsError, Result};
use crate::training::TrainingJob;
use crate::training::record::ModelArtifacts;
pub use record::TuningJob;
use record::{FinalObjective, ParameterRanges, TrainingJobDefinition, TrainingJobSummary, Trial};
use strategy::hyperband::Rungs;
use strategy::{Direction, Kind, Point, Range, Space};

/// Most characters in a tuning job's name (SageMaker's rule).
pub const MAX_NAME: usize = 32;
/// Most training jobs one search runs (SageMaker's limit).
pub const MAX_JOBS: i64 = 500;
/// Most training jobs one search runs at once.
pub const MAX_PARALLEL: i64 = 100;
/// The hyperparameter SageMaker's SDK adds to name the objective; not passed to the built-ins.
pub const OBJECTIVE_HYPERPARAMETER: &str = "_tuning_objective_metric";

/// One checked training job definition.
#[derive(Clone, Debug)]
pub struct DefinitionPlan {
    /// Its name (`None` with a single `TrainingJobDefinition`).
    pub name: Option<String>,
    /// The built-in.
    /// The built-in it trains; `None` for a script or container job.
    pub algorithm: Option<Algorithm>,
    /// The search space.
    pub space: Space,
    /// The objective metric.
    pub metric: String,
    /// `Maximize` or `Minimize` as given.
    pub objective_type: String,
    /// Its direction.
    pub direction: Direction,
}

/// A checked tuning job.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The strategy.
    pub kind: Kind,
    /// The definitions.
    pub definitions: Vec<DefinitionPlan>,
    /// Training jobs in all.
    pub max_jobs: usize,
    /// Training jobs at once.
    pub parallel: usize,
    /// The search's run-time limit.
    pub max_runtime: Option<f64>,
    /// The seed.
    pub seed: u64,
    /// `TrainingJobEarlyStoppingType=Auto`.
    pub median_rule: bool,
    /// Hyperband's rungs and the hyperparameter that is the resource.
    pub hyperband: Option<(Rungs, &'static str)>,
    /// `TargetObjectiveMetricValue`.
    pub target: Option<f64>,
    /// Completed jobs in a row without improvement that end the search.
    pub not_improving: Option<usize>,
}

fn invalid(m: impl Into<String>) -> JobsError {
    JobsError::Invalid(m.into())
}

/// Checks a tuning job name: 1–32 letters, digits and '-', starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "HyperParameterTuningJobName {name:?} must be 1 to {MAX_NAME} letters, digits or '-', \
             starting with a letter or digit"
        )))
    }
}

fn space_of(ranges: &ParameterRanges, field: &str) -> Result<Space> {
    if ranges.auto_parameters.is_some() {
        return Err(invalid(format!(
            "{field}.AutoParameters (Autotune) is not supported by Pier; give the ranges"
        )));
    }
    let mut out: Vec<Range> = Vec::new();
    let e = |e: strategy::StrategyError| invalid(format!("{field}: {e}"));
    for r in &ranges.integer_parameter_ranges {
        out.push(
            Range::integer(
                &r.name,
                &r.min_value,
                &r.max_value,
                r.scaling_type.as_deref(),
            )
            .map_err(e)?,
        );
    }
    for r in &ranges.continuous_parameter_ranges {
        out.push(
            Range::continuous(
                &r.name,
                &r.min_value,
                &r.max_value,
                r.scaling_type.as_deref(),
            )
            .map_err(e)?,
        );
    }
    for r in &ranges.categorical_parameter_ranges {
        out.push(Range::categorical(&r.name, &r.values).map_err(e)?);
    }
    Space::new(out).map_err(e)
}

/// The hyperparameter that is Hyperband's resource for a built-in.
fn resource_hyperparameter(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::XGBoost => Some("num_round"),
        Algorithm::LinearLearner | Algorithm::FactorizationMachines => Some("epochs"),
        _ => None,
    }
}

/// Checks a tuning job as CreateHyperParameterTuningJob must; errors name the field.
pub fn check(job: &TuningJob) -> Result<Plan> {
    check_name(&job.hyper_parameter_tuning_job_name)?;
    let config = &job.hyper_parameter_tuning_job_config;
    let kind = Kind::parse(&config.strategy).map_err(|e| invalid(e.0))?;
    if job.training_job_definition.is_some() && job.training_job_definitions.is_some() {
        return Err(invalid(
            "Give TrainingJobDefinition or TrainingJobDefinitions, not both",
        ));
    }
    let defs = job.definitions();
    if defs.is_empty() {
        return Err(invalid(
            "TrainingJobDefinition (or TrainingJobDefinitions) is required",
        ));
    }
    if defs.len() > 10 {
        return Err(invalid(format!(
            "TrainingJobDefinitions holds {} definitions; at most 10 are allowed",
            defs.len()
        )));
    }
    let several = job.training_job_definitions.is_some();
    let limits = &config.resource_limits;
    if !(1..=MAX_PARALLEL).contains(&limits.max_parallel_training_jobs) {
        return Err(invalid(format!(
            "ResourceLimits.MaxParallelTrainingJobs {} must be between 1 and {MAX_PARALLEL}",
            limits.max_parallel_training_jobs
        )));
    }
    if let Some(max) = limits.max_runtime_in_seconds
        && !(120..=15_768_000).contains(&max)
    {
        return Err(invalid(format!(
            "ResourceLimits.MaxRuntimeInSeconds {max} must be between 120 and 15768000"
        )));
    }
    let early = config
        .training_job_early_stopping_type
        .as_deref()
        .unwrap_or("Off");
    let median_rule = match early {
        "Off" => false,
        "Auto" => true,
        other => {
            return Err(invalid(format!(
                "TrainingJobEarlyStoppingType {other:?} must be Off or Auto"
            )));
        }
    };
    if median_rule && kind == Kind::Hyperband {
        return Err(invalid(
            "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy (Hyperband \
             stops jobs itself)",
        ));
    }
    if config.strategy_config.is_some() && kind != Kind::Hyperband {
        return Err(invalid("StrategyConfig is only for the Hyperband strategy"));
    }
    let mut definitions = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        let field = if several {
            format!("TrainingJobDefinitions[{i}]")
        } else {
            "TrainingJobDefinition".to_owned()
        };
        if several && def.definition_name.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(format!("{field}.DefinitionName is required")));
        }
        if let Some(n) = &def.definition_name
            && definitions
                .iter()
                .any(|d: &DefinitionPlan| d.name.as_ref() == Some(n))
        {
            return Err(invalid(format!(
                "{field}.DefinitionName {n:?} is used twice"
            )));
        }
        let (ranges, rfield) = match (&def.hyper_parameter_ranges, &config.parameter_ranges) {
            (Some(r), _) => (r, format!("{field}.HyperParameterRanges")),
            (None, Some(r)) if !several => {
                (r, "HyperParameterTuningJobConfig.ParameterRanges".into())
            }
            _ => {
                return Err(invalid(format!(
                    "{field} needs ParameterRanges (HyperParameterRanges)"
                )));
            }
        };
        let space = space_of(ranges, &rfield)?;
        let objective = def
            .tuning_objective
            .as_ref()
            .or(config.hyper_parameter_tuning_job_objective.as_ref())
            .ok_or_else(|| {
                invalid(format!(
                    "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective (or \
                     {field}.TuningObjective) is required"
                ))
            })?;
        let direction = match objective.kind.as_str() {
            "Maximize" => Direction::Maximize,
            "Minimize" => Direction::Minimize,
            other => {
                return Err(invalid(format!(
                    "HyperParameterTuningJobObjective.Type {other:?} must be Maximize or Minimize"
                )));
            }
        };
        if objective.metric_name.trim().is_empty() || objective.metric_name.len() > 255 {
            return Err(invalid(
                "HyperParameterTuningJobObjective.MetricName must be 1 to 255 characters",
            ));
        }
        for r in &space.ranges {
            if def.static_hyper_parameters.contains_key(&r.name) {
                return Err(invalid(format!(
                    "{field}: the hyperparameter {:?} is both static and tuned",
                    r.name
                )));
            }
        }
        if def.vpc_config.is_some() {
            return Err(invalid(format!(
                "{field}.VpcConfig is not supported by Pier; remove it"
            )));
        }
        if kind == Kind::Grid {
            strategy::grid::check(&space).map_err(|e| invalid(e.0))?;
        }
        // The first child must pass CreateTrainingJob's checks.
        let probe = strategy::random::sample(&space, &mut fastrand::Rng::with_seed(0));
        let child = child_job(job, def, i, "probe", &probe, None, 0.0);
        // Any kind of training job: a built-in, a script (script mode) or a container.
        crate::script::check_any(&child).map_err(|e| invalid(format!("{field}: {e}")))?;
        let algorithm = crate::training::check(&child).ok().map(|c| c.algorithm);
        definitions.push(DefinitionPlan {
            name: def.definition_name.clone(),
            algorithm,
            space,
            metric: objective.metric_name.clone(),
            objective_type: objective.kind.clone(),
            direction,
        });
    }
    let max_jobs = match (kind, limits.max_number_of_training_jobs) {
        (Kind::Grid, given) => {
            let size: u64 = definitions
                .iter()
                .map(|d| d.space.cardinality().unwrap_or(0))
                .sum();
            match given {
                Some(n) if n >= 1 => (n as u64).min(size) as usize,
                Some(n) => {
                    return Err(invalid(format!(
                        "ResourceLimits.MaxNumberOfTrainingJobs {n} must be at least 1"
                    )));
                }
                None => size as usize,
            }
        }
        (_, Some(n)) if (1..=MAX_JOBS).contains(&n) => n as usize,
        (_, Some(n)) => {
            return Err(invalid(format!(
                "ResourceLimits.MaxNumberOfTrainingJobs {n} must be between 1 and {MAX_JOBS}"
            )));
        }
        (_, None) => {
            return Err(invalid(
                "ResourceLimits.MaxNumberOfTrainingJobs is required (except with the Grid strategy)",
            ));
        }
    };
    let hyperband = if kind == Kind::Hyperband {
        let Some(resource) = definitions[0].algorithm.and_then(resource_hyperparameter) else {
            let what = definitions[0]
                .algorithm
                .map_or_else(|| "a script or container job".to_owned(), |a| a.to_string());
            return Err(invalid(format!(
                "The Hyperband strategy needs a built-in that reports its objective per epoch \
                 or round (xgboost, linear-learner, factorization-machines), not {what}; \
                 with scripts use TrainingJobEarlyStoppingType Auto, which stops on their \
                 MetricDefinitions points"
            )));
        };
        if definitions.len() > 1 {
            return Err(invalid(
                "The Hyperband strategy takes one training job definition",
            ));
        }
        if definitions[0]
            .space
            .ranges
            .iter()
            .any(|r| r.name == resource)
        {
            return Err(invalid(format!(
                "With Hyperband, {resource} is the resource (MaxResource); do not tune it"
            )));
        }
        let hb = config
            .strategy_config
            .as_ref()
            .and_then(|s| s.hyperband_strategy_config.clone())
            .unwrap_or_default();
        let static_resource = defs[0]
            .static_hyper_parameters
            .get(resource)
            .and_then(|v| v.trim().parse::<i64>().ok());
        let Some(max) = hb.max_resource.or(static_resource) else {
            return Err(invalid(format!(
                "HyperbandStrategyConfig.MaxResource is required (or a static {resource})"
            )));
        };
        let rungs = Rungs::new(hb.min_resource.unwrap_or(1), max).map_err(|e| invalid(e.0))?;
        Some((rungs, resource))
    } else {
        None
    };
    let criteria = config
        .tuning_job_completion_criteria
        .clone()
        .unwrap_or_default();
    if let Some(t) = criteria.target_objective_metric_value
        && !t.is_finite()
    {
        return Err(invalid(
            "TuningJobCompletionCriteria.TargetObjectiveMetricValue must be a number",
        ));
    }
    let mut not_improving = None;
    if let Some(b) = &criteria.best_objective_not_improving {
        match b.max_number_of_training_jobs_not_improving {
            Some(n) if n >= 3 => not_improving = Some(n as usize),
            other => {
                return Err(invalid(format!(
                    "TuningJobCompletionCriteria.BestObjectiveNotImproving.\
                     MaxNumberOfTrainingJobsNotImproving {other:?} must be at least 3"
                )));
            }
        }
    }
    if let Some(c) = &criteria.convergence_detected {
        match c.complete_on_convergence.as_deref() {
            None | Some("Disabled") => {}
            Some("Enabled") => {
                let n = (2 * limits.max_parallel_training_jobs as usize).max(10);
                not_improving = Some(not_improving.map_or(n, |m: usize| m.min(n)));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "ConvergenceDetected.CompleteOnConvergence {other:?} must be Disabled or \
                     Enabled"
                )));
            }
        }
    }
    let seed = match config.random_seed {
        Some(s) if s >= 0 => s as u64,
        Some(s) => {
            return Err(invalid(format!(
                "HyperParameterTuningJobConfig.RandomSeed {s} must be at least 0"
            )));
        }
        None => fnv(job.hyper_parameter_tuning_job_name.as_bytes()),
    };
    Ok(Plan {
        kind,
        definitions,
        max_jobs,
        parallel: limits.max_parallel_training_jobs as usize,
        max_runtime: limits.max_runtime_in_seconds.map(|s| s as f64),
        seed,
        median_rule,
        hyperband,
        target: criteria.target_objective_metric_value,
        not_improving,
    })
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A child's name: `<tuning job>-NNN-<8 hex of its hyperparameters>` (NNN from 001).
pub fn child_name(tuning: &str, index: usize, point: &Point) -> String {
    let text = format!(
        "{tuning}/{index}/{}",
        serde_json::to_string(point).unwrap_or_default()
    );
    format!(
        "{tuning}-{:03}-{:08x}",
        index + 1,
        fnv(text.as_bytes()) as u32
    )
}

/// The training job a child is: the definition, its static hyperparameters and `point`
/// (and Hyperband's resource), queued (`InProgress`, `Starting`).
pub fn child_job(
    tuning: &TuningJob,
    def: &TrainingJobDefinition,
    _definition: usize,
    name: &str,
    point: &Point,
    resource: Option<(&str, u64)>,
    at: f64,
) -> TrainingJob {
    let mut hp: BTreeMap<String, String> = def.static_hyper_parameters.clone();
    hp.remove(OBJECTIVE_HYPERPARAMETER);
    hp.extend(point.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some((k, v)) = resource {
        hp.insert(k.to_owned(), v.to_string());
    }
    let mut job = TrainingJob {
        training_job_name: name.to_owned(),
        training_job_arn: crate::arn("training-job", name),
        model_artifacts: ModelArtifacts {
            s3_model_artifacts: crate::training::model_location(
                &def.output_data_config.s3_output_path,
                name,
            ),
        },
        training_job_status: "InProgress".to_owned(),
        hyper_parameters: hp,
        algorithm_specification: def.algorithm_specification.clone(),
        role_arn: def.role_arn.clone(),
        input_data_config: def.input_data_config.clone(),
        output_data_config: def.output_data_config.clone(),
        resource_config: def.resource_config.clone().unwrap_or_default(),
        stopping_condition: def.stopping_condition.clone(),
        creation_time: at,
        last_modified_time: at,
        enable_network_isolation: def.enable_network_isolation,
        enable_inter_container_traffic_encryption: def.enable_inter_container_traffic_encryption,
        enable_managed_spot_training: def.enable_managed_spot_training,
        environment: def.environment.clone(),
        retry_strategy: def.retry_strategy.clone(),
        checkpoint_config: def.checkpoint_config.clone(),
        tuning_job_arn: Some(tuning.hyper_parameter_tuning_job_arn.clone()),
        ..Default::default()
    };
    // The SDK gives the instance in HyperParameterTuningResourceConfig (InstanceType, …, or
    // InstanceConfigs); the child's Describe carries it as SageMaker's does.
    if let Some(tuning_resources) = &def.hyper_parameter_tuning_resource_config {
        let first = tuning_resources
            .get("InstanceConfigs")
            .and_then(|c| c.get(0))
            .unwrap_or(tuning_resources);
        let rc = &mut job.resource_config;
        if rc.instance_type.is_none() {
            rc.instance_type = first
                .get("InstanceType")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
        }
        if rc.instance_count.is_none() {
            rc.instance_count = first.get("InstanceCount").and_then(|v| v.as_i64());
        }
        if rc.volume_size_in_g_b.is_none() {
            rc.volume_size_in_g_b = first.get("VolumeSizeInGB").and_then(|v| v.as_i64());
        }
    }
    job.resource_config.instance_count.get_or_insert(1);
    job.output_data_config
        .kms_key_id
        .get_or_insert_with(String::new);
    job.transition(
        "Starting",
        format!(
            "Launched by hyperparameter tuning job {}",
            tuning.hyper_parameter_tuning_job_name
        ),
        at,
    );
    job
}

/// A trial as `HyperParameterTrainingJobSummary`.
pub fn summary(tuning: &TuningJob, plan: &Plan, trial: &Trial) -> TrainingJobSummary {
    let def = plan.definitions.get(trial.definition);
    let objective_status = match (trial.status.as_str(), trial.objective) {
        (_, Some(_)) => "Succeeded",
        ("InProgress" | "Stopping", None) => "Pending",
        _ => "Failed",
    };
    TrainingJobSummary {
        training_job_definition_name: def.and_then(|d| d.name.clone()),
        training_job_name: trial.training_job_name.clone(),
        training_job_arn: crate::arn("training-job", &trial.training_job_name),
        tuning_job_name: Some(tuning.hyper_parameter_tuning_job_name.clone()),
        creation_time: trial.creation_time,
        training_start_time: trial.training_start_time,
        training_end_time: trial.training_end_time,
        training_job_status: trial.status.clone(),
        tuned_hyper_parameters: trial.tuned_hyper_parameters.clone(),
        failure_reason: trial.failure_reason.clone(),
        final_hyper_parameter_tuning_job_objective_metric: match (def, trial.objective) {
            (Some(d), Some(v)) => Some(FinalObjective {
                kind: d.objective_type.clone(),
                metric_name: d.metric.clone(),
                value: v,
            }),
            _ => None,
        },
        objective_status: Some(objective_status.to_owned()),
    }
}

/// The best trial (by its definition's direction), if any reported its objective.
pub fn best_trial<'a>(plan: &Plan, trials: &'a [Trial]) -> Option<&'a Trial> {
    trials
        .iter()
        .filter_map(|t| {
            let d = plan.definitions.get(t.definition)?;
            Some((t, d.direction.loss(t.objective?)))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, _)| t)
}

/// Asks every child of `tuning` that has not ended to stop (StopHyperParameterTuningJob):
/// a queued child ends Stopped at once, a running one at its next unit of work.
pub async fn stop_children(db: &pier_db::Db, tuning: &TuningJob) {
    for t in &tuning.pier_trials {
        if !matches!(t.status.as_str(), "Completed" | "Failed" | "Stopped") {
            run::stop_child(db, &t.training_job_name, "StopHyperParameterTuningJob").await;
        }
    }
}

#[cfg(test)]
mod tests;
