//! The training job record, in SageMaker's field names: what CreateTrainingJob accepts, what
//! the runner writes as the job advances and what DescribeTrainingJob returns (one type, so
//! what Describe answers after a restart is exactly what was stored).
//!
//! Sub-structures refuse fields they do not know (`deny_unknown_fields`), so a request field
//! Pier cannot honour is refused by name rather than dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `AlgorithmSpecification`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AlgorithmSpecification {
    /// A built-in by Pier's name (`xgboost`) or its SageMaker image URI
    /// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/linear-learner:1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_image: Option<String>,
    /// `File` or `Pipe` (read as `File`); `FastFile` is refused.
    #[serde(default = "file_mode")]
    pub training_input_mode: String,
    /// Refused: algorithms from the marketplace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm_name: Option<String>,
    /// Accepted and echoed (the built-ins report their own metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_definitions: Option<serde_json::Value>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_sage_maker_metrics_time_series: Option<bool>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_entrypoint: Option<serde_json::Value>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_arguments: Option<serde_json::Value>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_image_config: Option<serde_json::Value>,
}

fn file_mode() -> String {
    "File".to_owned()
}

/// One `InputDataConfig` channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Channel {
    /// `train`, `validation` or `test`.
    pub channel_name: String,
    /// Where the data is.
    pub data_source: DataSource,
    /// `text/csv` (with `;label_size=N`, `;header=present`) or
    /// `application/x-recordio-protobuf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `None` or `Gzip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<String>,
    /// Accepted and echoed (`None`, `RecordIO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_wrapper_type: Option<String>,
    /// `File` or `Pipe`, overriding the algorithm's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mode: Option<String>,
    /// Accepted and echoed; Pier reads objects in key order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_config: Option<serde_json::Value>,
}

impl Channel {
    /// The entry as the channel reader takes it, to be checked with
    /// [`crate::channels::validate_input_data_config`].
    pub fn spec(&self) -> crate::channels::ChannelSpec {
        use crate::channels::{ChannelSpec, DataSourceSpec, S3DataSourceSpec};
        let s3 = self
            .data_source
            .s3_data_source
            .as_ref()
            .map(|s| S3DataSourceSpec {
                s3_data_type: Some(s.s3_data_type.clone()),
                s3_uri: Some(s.s3_uri.clone()),
                s3_data_distribution_type: s.s3_data_distribution_type.clone(),
                attribute_names: s.attribute_names.clone(),
                instance_group_names: s.instance_group_names.clone(),
            });
        ChannelSpec {
            channel_name: Some(self.channel_name.clone()),
            data_source: Some(DataSourceSpec {
                s3_data_source: s3,
                file_system_data_source: self.data_source.file_system_data_source.clone(),
            }),
            content_type: self.content_type.clone(),
            compression_type: self.compression_type.clone(),
            record_wrapper_type: self.record_wrapper_type.clone(),
            input_mode: self.input_mode.clone(),
            shuffle_config: self.shuffle_config.clone(),
        }
    }
}

/// A channel's `DataSource`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DataSource {
    /// The S3 (or local) location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_data_source: Option<S3DataSource>,
    /// Refused: EFS and FSx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system_data_source: Option<serde_json::Value>,
}

/// `S3DataSource`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct S3DataSource {
    /// `S3Prefix` or `ManifestFile`.
    pub s3_data_type: String,
    /// `s3://bucket/prefix`, `file:///abs/path` or a local path.
    pub s3_uri: String,
    /// `FullyReplicated` (one instance reads all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_data_distribution_type: Option<String>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_names: Option<Vec<String>>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_group_names: Option<Vec<String>>,
}

/// `OutputDataConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct OutputDataConfig {
    /// Where `<job>/output/model.tar.gz` goes: `s3://…`, `file:///…` or a local folder.
    pub s3_output_path: String,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// `GZIP` (the default) or `NONE`; accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<String>,
}

/// `ResourceConfig`: accepted and echoed (Pier runs one local process per job).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceConfig {
    /// `ml.m5.xlarge`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Instances (Pier: one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<i64>,
    /// Volume size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size_in_g_b: Option<i64>,
    /// Everything else SageMaker's ResourceConfig holds, echoed.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `StoppingCondition`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StoppingCondition {
    /// The job is stopped (`MaxRuntimeExceeded`) after this many seconds of running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime_in_seconds: Option<i64>,
    /// Accepted and echoed (spot training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_time_in_seconds: Option<i64>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_time_in_seconds: Option<i64>,
}

/// `RetryStrategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RetryStrategy {
    /// Extra attempts after the first when the runner running the job dies (1–30).
    pub maximum_retry_attempts: i64,
}

/// `ModelArtifacts`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelArtifacts {
    /// `<S3OutputPath>/<job>/output/model.tar.gz`.
    #[serde(rename = "S3ModelArtifacts")]
    pub s3_model_artifacts: String,
}

/// One `SecondaryStatusTransitions` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecondaryStatusTransition {
    /// `Starting`, `Downloading`, `Training`, `Uploading`, `Completed`, `Stopped`,
    /// `MaxRuntimeExceeded`, `Failed`, …
    pub status: String,
    /// When it began.
    pub start_time: f64,
    /// When it ended (the next began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    /// What happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

/// One `FinalMetricDataList` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricData {
    /// SageMaker's name (`validation:rmse`).
    pub metric_name: String,
    /// The value.
    pub value: f64,
    /// When it was measured.
    pub timestamp: f64,
}

/// A training job: the request's fields, its state and its results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TrainingJob {
    /// The name.
    pub training_job_name: String,
    /// `arn:aws:sagemaker:local:000000000000:training-job/NAME`.
    pub training_job_arn: String,
    /// Where the model is (known from the request before it is written).
    pub model_artifacts: ModelArtifacts,
    /// `InProgress`, `Completed`, `Failed`, `Stopping`, `Stopped`.
    pub training_job_status: String,
    /// The current secondary status.
    pub secondary_status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The hyperparameters as given.
    #[serde(default)]
    pub hyper_parameters: BTreeMap<String, String>,
    /// As given.
    pub algorithm_specification: AlgorithmSpecification,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// As given.
    #[serde(default)]
    pub input_data_config: Vec<Channel>,
    /// As given.
    pub output_data_config: OutputDataConfig,
    /// As given.
    #[serde(default)]
    pub resource_config: ResourceConfig,
    /// As given.
    #[serde(default)]
    pub stopping_condition: StoppingCondition,
    /// When it was created.
    pub creation_time: f64,
    /// When a runner began it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_start_time: Option<f64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_end_time: Option<f64>,
    /// Its last change.
    pub last_modified_time: f64,
    /// Every secondary status so far.
    #[serde(default)]
    pub secondary_status_transitions: Vec<SecondaryStatusTransition>,
    /// The algorithm's final metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_metric_data_list: Vec<MetricData>,
    /// Seconds from start to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_time_in_seconds: Option<i64>,
    /// Same as `TrainingTimeInSeconds` (there is no bill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billable_time_in_seconds: Option<i64>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_network_isolation: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_inter_container_traffic_encryption: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_managed_spot_training: Option<bool>,
    /// As given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<RetryStrategy>,
    /// As given (ignored: SageMaker Debugger does not run here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug_hook_config: Option<serde_json::Value>,
    /// As given (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiler_config: Option<serde_json::Value>,
    /// As given (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_config: Option<serde_json::Value>,
    /// As given (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_config: Option<serde_json::Value>,
    /// As given (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor_board_output_config: Option<serde_json::Value>,
    /// The tuning job that launched it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning_job_arn: Option<String>,
    /// Pier's own: the published artifact, `pier://NAME/VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_artifact: Option<String>,
}

impl TrainingJob {
    /// Starts a new secondary status at `at`, ending the current one.
    pub fn transition(&mut self, status: &str, message: impl Into<String>, at: f64) {
        if let Some(last) = self.secondary_status_transitions.last_mut()
            && last.end_time.is_none()
        {
            last.end_time = Some(at);
        }
        let ends = matches!(
            status,
            "Completed" | "Failed" | "Stopped" | "MaxRuntimeExceeded"
        );
        self.secondary_status_transitions
            .push(SecondaryStatusTransition {
                status: status.to_owned(),
                start_time: at,
                end_time: ends.then_some(at),
                status_message: Some(message.into()),
            });
        self.secondary_status = status.to_owned();
        self.last_modified_time = at;
    }

    /// Ends the job: status, end time and run time.
    pub fn end(&mut self, status: pier_db::JobStatus, at: f64) {
        self.training_job_status = status.as_str().to_owned();
        self.training_end_time = Some(at);
        if let Some(start) = self.training_start_time {
            let secs = (at - start).max(0.0).ceil() as i64;
            self.training_time_in_seconds = Some(secs);
            self.billable_time_in_seconds = Some(secs);
        }
        self.last_modified_time = at;
    }

    /// The retries allowed after a runner died (`RetryStrategy`), 0 without one.
    pub fn max_retries(&self) -> u32 {
        self.retry_strategy
            .as_ref()
            .map_or(0, |r| u32::try_from(r.maximum_retry_attempts).unwrap_or(0))
    }
}
