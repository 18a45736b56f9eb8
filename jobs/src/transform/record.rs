//! The transform job record, in SageMaker's field names: what CreateTransformJob accepts, what
//! the runner writes as the job advances, and what DescribeTransformJob returns (one type, so
//! Describe after a restart answers exactly what was stored).
//!
//! Sub-structures refuse fields they do not know (`deny_unknown_fields`), so a request field
//! Pier cannot honour is refused by name rather than dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `TransformInput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TransformInput {
    /// Where the records are.
    pub data_source: TransformDataSource,
    /// `text/csv`, `application/json`, `application/jsonlines` (default `text/csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `None` (default) or `Gzip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_type: Option<String>,
    /// `None` (default: each object is one record) or `Line`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_type: Option<String>,
}

/// `TransformDataSource`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TransformDataSource {
    /// The S3 (or local) location.
    #[serde(rename = "S3DataSource")]
    pub s3_data_source: TransformS3DataSource,
}

/// `TransformS3DataSource`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformS3DataSource {
    /// `S3Prefix` or `ManifestFile`.
    #[serde(rename = "S3DataType")]
    pub s3_data_type: String,
    /// `s3://bucket/prefix`, `file:///abs/path` or a local path.
    #[serde(rename = "S3Uri")]
    pub s3_uri: String,
}

/// `TransformOutput`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TransformOutput {
    /// Where `<input key>.out` objects go: `s3://…`, `file:///…` or a local folder.
    pub s3_output_path: String,
    /// The output's content type (default: the input's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    /// `None` (default: responses concatenated) or `Line` (each response ends a line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assemble_with: Option<String>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// `TransformResources`: `InstanceCount` objects are transformed at once; the rest is echoed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TransformResources {
    /// `ml.m5.large`, … (echoed).
    pub instance_type: String,
    /// Input objects transformed at once (each a worker of the runner).
    pub instance_count: i64,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_kms_key_id: Option<String>,
    /// Accepted and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_ami_version: Option<String>,
}

/// `DataProcessing`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DataProcessing {
    /// JSONPath selecting what of each input record the model sees (`$[1:]`, `$.features`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_filter: Option<String>,
    /// JSONPath selecting what of each (joined) output record is written (`$[0,-1]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_filter: Option<String>,
    /// `None` (default) or `Input`: each output record joined to its input record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_source: Option<String>,
}

/// Pier's progress of a job (an extension field of DescribeTransformJob).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PierProgress {
    /// Input objects finished (their `.out` written).
    pub objects_done: u64,
    /// Input objects to transform (this shard's).
    pub objects_total: u64,
    /// Records transformed.
    pub records_done: u64,
    /// Input bytes read (as stored, before decompression).
    pub bytes_done: u64,
    /// Input bytes in all (0 where unknown: a manifest's objects).
    pub bytes_total: u64,
    /// Records skipped into `.errors` (`PIER_SKIP_BAD_RECORDS`).
    pub records_failed: u64,
    /// Records per second since the job started.
    pub records_per_second: f64,
}

/// A transform job: the request's fields, its state and its progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransformJob {
    /// The name.
    pub transform_job_name: String,
    /// `arn:aws:sagemaker:REGION:ACCOUNT:transform-job/NAME`.
    pub transform_job_arn: String,
    /// `InProgress`, `Completed`, `Failed`, `Stopping`, `Stopped`.
    pub transform_job_status: String,
    /// Why it failed: names the object and the line or record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The control-plane Model that predicts.
    pub model_name: String,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_transforms: Option<i64>,
    /// As given (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_client_config: Option<serde_json::Value>,
    /// As given.
    #[serde(
        rename = "MaxPayloadInMB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_payload_in_mb: Option<i64>,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_strategy: Option<String>,
    /// As given; `PIER_SKIP_BAD_RECORDS=true` writes bad records to `<key>.errors`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// As given.
    pub transform_input: TransformInput,
    /// As given.
    pub transform_output: TransformOutput,
    /// As given (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_capture_config: Option<serde_json::Value>,
    /// As given.
    pub transform_resources: TransformResources,
    /// When it was created.
    pub creation_time: f64,
    /// When a runner began it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_start_time: Option<f64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_end_time: Option<f64>,
    /// Its last change.
    pub last_modified_time: f64,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_processing: Option<DataProcessing>,
    /// As given (echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_config: Option<serde_json::Value>,
    /// Pier's own: progress, updated while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_progress: Option<PierProgress>,
}

impl TransformJob {
    /// Ends the job: status and end time.
    pub fn end(&mut self, status: pier_db::JobStatus, at: f64) {
        self.transform_job_status = status.as_str().to_owned();
        self.transform_end_time = Some(at);
        self.last_modified_time = at;
    }

    /// Whether `Environment` asks for bad records to be skipped into `<key>.errors`.
    pub fn skip_bad_records(&self) -> bool {
        self.environment
            .get("PIER_SKIP_BAD_RECORDS")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
    }
}
