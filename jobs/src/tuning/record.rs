//! The tuning job record, in SageMaker's field names: what CreateHyperParameterTuningJob
//! accepts, what DescribeHyperParameterTuningJob returns, and (`PierTrials`, not shown by
//! Describe) the search's own state, which the tuning job's task writes before it acts so a
//! restarted runner continues the search where it was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::training::record::{
    AlgorithmSpecification, Channel, OutputDataConfig, ResourceConfig, RetryStrategy,
    StoppingCondition,
};

/// `HyperParameterTuningJobObjective`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Objective {
    /// `Maximize` or `Minimize`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The metric (`validation:auc`).
    pub metric_name: String,
}

/// `IntegerParameterRange` and `ContinuousParameterRange`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NumericRange {
    /// The hyperparameter.
    pub name: String,
    /// Smallest value (a number as a string).
    pub min_value: String,
    /// Largest value.
    pub max_value: String,
    /// `Auto`, `Linear`, `Logarithmic`, `ReverseLogarithmic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_type: Option<String>,
}

/// `CategoricalParameterRange`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CategoricalRange {
    /// The hyperparameter.
    pub name: String,
    /// Its values.
    pub values: Vec<String>,
}

/// `ParameterRanges`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ParameterRanges {
    /// Integer ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integer_parameter_ranges: Vec<NumericRange>,
    /// Continuous ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuous_parameter_ranges: Vec<NumericRange>,
    /// Categorical ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical_parameter_ranges: Vec<CategoricalRange>,
    /// Refused (Autotune).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_parameters: Option<serde_json::Value>,
}

/// `ResourceLimits`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ResourceLimits {
    /// Training jobs in all (not for Grid: the grid's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_number_of_training_jobs: Option<i64>,
    /// Training jobs at once.
    pub max_parallel_training_jobs: i64,
    /// The search ends after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime_in_seconds: Option<i64>,
}

/// `HyperbandStrategyConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct HyperbandStrategyConfig {
    /// The fewest epochs / rounds a job runs before it may be stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_resource: Option<i64>,
    /// The epochs / rounds every job is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_resource: Option<i64>,
}

/// `StrategyConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StrategyConfig {
    /// Hyperband's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperband_strategy_config: Option<HyperbandStrategyConfig>,
}

/// `BestObjectiveNotImproving`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BestObjectiveNotImproving {
    /// Completed jobs in a row without a better objective that end the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_number_of_training_jobs_not_improving: Option<i64>,
}

/// `ConvergenceDetected`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ConvergenceDetected {
    /// `Disabled` or `Enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_on_convergence: Option<String>,
}

/// `TuningJobCompletionCriteria`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CompletionCriteria {
    /// The search ends when a job's objective reaches this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_objective_metric_value: Option<f64>,
    /// The search ends when this many completed jobs in a row did not improve the best.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_objective_not_improving: Option<BestObjectiveNotImproving>,
    /// The search ends when it converged (Pier: 10 completed jobs, or twice
    /// MaxParallelTrainingJobs, in a row without improvement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence_detected: Option<ConvergenceDetected>,
}

/// `HyperParameterTuningJobConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TuningJobConfig {
    /// `Bayesian` (default), `Random`, `Hyperband`, `Grid`.
    #[serde(default = "bayesian")]
    pub strategy: String,
    /// Hyperband's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_config: Option<StrategyConfig>,
    /// The objective (or each definition's `TuningObjective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyper_parameter_tuning_job_objective: Option<Objective>,
    /// Limits.
    pub resource_limits: ResourceLimits,
    /// The ranges (or each definition's `HyperParameterRanges`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_ranges: Option<ParameterRanges>,
    /// `Off` (default) or `Auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_early_stopping_type: Option<String>,
    /// When the search ends early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning_job_completion_criteria: Option<CompletionCriteria>,
    /// The search's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_seed: Option<i64>,
}

fn bayesian() -> String {
    "Bayesian".to_owned()
}

/// `HyperParameterTrainingJobDefinition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TrainingJobDefinition {
    /// Its name (with `TrainingJobDefinitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_name: Option<String>,
    /// Its objective (with `TrainingJobDefinitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning_objective: Option<Objective>,
    /// Its ranges (with `TrainingJobDefinitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyper_parameter_ranges: Option<ParameterRanges>,
    /// Hyperparameters every job gets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub static_hyper_parameters: BTreeMap<String, String>,
    /// The algorithm.
    pub algorithm_specification: AlgorithmSpecification,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The channels.
    #[serde(default)]
    pub input_data_config: Vec<Channel>,
    /// Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<serde_json::Value>,
    /// Where models go.
    pub output_data_config: OutputDataConfig,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_config: Option<ResourceConfig>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyper_parameter_tuning_resource_config: Option<serde_json::Value>,
    /// Each job's stopping condition.
    #[serde(default)]
    pub stopping_condition: StoppingCondition,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_network_isolation: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_inter_container_traffic_encryption: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_managed_spot_training: Option<bool>,
    /// As given (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_config: Option<serde_json::Value>,
    /// Each job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<RetryStrategy>,
    /// Each job's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

/// One `ParentHyperParameterTuningJobs` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ParentJob {
    /// A finished tuning job.
    pub hyper_parameter_tuning_job_name: String,
}

/// `WarmStartConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct WarmStartConfig {
    /// Up to 5 parents.
    pub parent_hyper_parameter_tuning_jobs: Vec<ParentJob>,
    /// `IdenticalDataAndAlgorithm` or `TransferLearning`.
    pub warm_start_type: String,
}

/// `TrainingJobStatusCounters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatusCounters {
    /// Completed jobs.
    pub completed: i64,
    /// Running or queued jobs.
    pub in_progress: i64,
    /// Always 0 (Pier retries under RetryStrategy only).
    pub retryable_error: i64,
    /// Failed jobs.
    pub non_retryable_error: i64,
    /// Stopped jobs (early stopping included).
    pub stopped: i64,
}

/// `ObjectiveStatusCounters`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectiveCounters {
    /// Jobs whose objective was reported.
    pub succeeded: i64,
    /// Jobs still running.
    pub pending: i64,
    /// Jobs without an objective.
    pub failed: i64,
}

/// `FinalHyperParameterTuningJobObjectiveMetric`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FinalObjective {
    /// `Maximize` or `Minimize`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The metric.
    pub metric_name: String,
    /// Its value.
    pub value: f64,
}

/// `HyperParameterTrainingJobSummary`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrainingJobSummary {
    /// The definition it came from (with `TrainingJobDefinitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_definition_name: Option<String>,
    /// The child's name.
    pub training_job_name: String,
    /// Its ARN.
    pub training_job_arn: String,
    /// The tuning job's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning_job_name: Option<String>,
    /// When it was created.
    pub creation_time: f64,
    /// When it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_start_time: Option<f64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_end_time: Option<f64>,
    /// Its status.
    pub training_job_status: String,
    /// The hyperparameters the search chose.
    pub tuned_hyper_parameters: BTreeMap<String, String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Its objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_hyper_parameter_tuning_job_objective_metric: Option<FinalObjective>,
    /// `Pending`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective_status: Option<String>,
}

/// One child of the search, as the tuning job's task records it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Trial {
    /// The child training job.
    pub training_job_name: String,
    /// The definition (index into the definitions) it came from.
    pub definition: usize,
    /// The tuned hyperparameters.
    pub tuned_hyper_parameters: BTreeMap<String, String>,
    /// When it was planned.
    pub creation_time: f64,
    /// Hyperband's bracket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bracket: Option<usize>,
    /// Hyperband's rungs passed: (step, objective).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rungs: Vec<(u64, f64)>,
    /// Whether the search stopped it early (Hyperband or the median rule), and at which step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopped_at: Option<u64>,
    /// Its last known status (`InProgress` until it ends).
    pub status: String,
    /// Its objective, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// When it began and ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_start_time: Option<f64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_end_time: Option<f64>,
}

/// A warm-start point: a parent's child and its objective.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WarmPoint {
    /// Its tuned hyperparameters.
    pub hyper_parameters: BTreeMap<String, String>,
    /// Its objective.
    pub value: f64,
}

/// `TuningJobCompletionDetails`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompletionDetails {
    /// Completed jobs in a row that did not improve the best.
    pub number_of_training_jobs_objective_not_improving: i64,
    /// When convergence was detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence_detected_time: Option<f64>,
}

/// `ConsumedResources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumedResources {
    /// Seconds the search has run.
    pub runtime_in_seconds: i64,
}

/// A hyperparameter tuning job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TuningJob {
    /// The name (at most 32 characters).
    pub hyper_parameter_tuning_job_name: String,
    /// `arn:aws:sagemaker:local:000000000000:hyper-parameter-tuning-job/name`.
    pub hyper_parameter_tuning_job_arn: String,
    /// As given.
    pub hyper_parameter_tuning_job_config: TuningJobConfig,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_definition: Option<TrainingJobDefinition>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_job_definitions: Option<Vec<TrainingJobDefinition>>,
    /// `InProgress`, `Completed`, `Failed`, `Stopping`, `Stopped`.
    pub hyper_parameter_tuning_job_status: String,
    /// When it was created.
    pub creation_time: f64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyper_parameter_tuning_end_time: Option<f64>,
    /// Its last change.
    pub last_modified_time: f64,
    /// Children by status.
    pub training_job_status_counters: StatusCounters,
    /// Children by objective status.
    pub objective_status_counters: ObjectiveCounters,
    /// The best child so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_training_job: Option<TrainingJobSummary>,
    /// The best child of this search and its parents (with `WarmStartConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overall_best_training_job: Option<TrainingJobSummary>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start_config: Option<WarmStartConfig>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Completion details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning_job_completion_details: Option<CompletionDetails>,
    /// Time used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_resources: Option<ConsumedResources>,
    /// Pier's own: when the search began running (MaxRuntimeInSeconds counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_start_time: Option<f64>,
    /// Pier's own: the children, in the order they were planned (not shown by Describe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pier_trials: Vec<Trial>,
    /// Pier's own: the parents' results that seed the search (not shown by Describe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pier_warm_start: Vec<WarmPoint>,
    /// Pier's own: why the search stopped launching jobs (a completion criterion, the run
    /// time limit), once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_ending: Option<String>,
}

impl TuningJob {
    /// The training job definitions: `TrainingJobDefinitions`, or the one
    /// `TrainingJobDefinition`.
    pub fn definitions(&self) -> Vec<&TrainingJobDefinition> {
        match (
            &self.training_job_definitions,
            &self.training_job_definition,
        ) {
            (Some(defs), _) if !defs.is_empty() => defs.iter().collect(),
            (_, Some(def)) => vec![def],
            _ => Vec::new(),
        }
    }
}
