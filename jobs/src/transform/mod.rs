//! Batch transform jobs (SageMaker's CreateTransformJob): score every record of a folder or
//! bucket with a control-plane Model, in process, with the same codecs and `Model` code as the
//! server's invocations, and write one `<input key>.out` per input object.
//!
//! - [`record`]: the job record in SageMaker's field names.
//! - [`check`]: CreateTransformJob's checks, turning a record into a [`Plan`] (what the engine
//!   and the runner take); every refusal names the field.
//! - [`engine`]: one object through the bounded pipeline read → split → decode → predict →
//!   encode → write ([`engine::transform_object`]), pure of I/O beyond the reader and writer it
//!   is given.
//! - [`filter`]: `DataProcessing`'s JSONPath subset and `JoinSource`.
//! - [`run`]: a job's input listed and sharded, each object through the engine into an output
//!   written whole ([`run_local`] with no database); `job`: a claimed job on the runner
//!   (statuses, heartbeat, progress, logs, reconciliation).
//!
//! Models come from a [`ModelSource`] the runner is given (the server's control-plane Models:
//! `pier-jobs` does not depend on `pier-server`), so a transform predicts with exactly the
//! `Arc<dyn Model>` an endpoint would load.

pub mod engine;
pub mod filter;
pub(crate) mod job;
pub mod record;
pub mod recordio;
pub mod run;

use std::sync::Arc;

use futures::future::BoxFuture;
use pier_runtimes::Model;
use pier_runtimes::codec::Format;

use crate::channels::{DataType, Location};
use crate::error::{JobsError, Result};
use filter::JsonPath;
pub use record::TransformJob;
pub use run::{LocalOptions, ShardSpec, Summary, run_local};

/// SageMaker's log group of transform jobs.
pub const LOG_GROUP: &str = "/aws/sagemaker/TransformJobs";

/// The default `MaxPayloadInMB` (SageMaker's).
pub const DEFAULT_MAX_PAYLOAD_MB: i64 = 6;

/// The largest `MaxPayloadInMB` (SageMaker's).
pub const MAX_PAYLOAD_MB: i64 = 100;

/// The most `MaxConcurrentTransforms` Pier runs (threads per object).
pub const MAX_CONCURRENT_TRANSFORMS: i64 = 64;

/// The most `InstanceCount` (objects transformed at once).
pub const MAX_INSTANCES: i64 = 64;

/// The log stream of a job, as SageMaker names them: `<job>/<instance>-<creation epoch>`.
pub fn log_stream(job: &TransformJob) -> String {
    format!(
        "{}/pier-1-{}",
        job.transform_job_name,
        job.creation_time.max(0.0) as u64
    )
}

/// Where the runner gets a control-plane Model's loaded `Arc<dyn Model>`: the server's Models
/// (the same load options and cache as its endpoints).
pub trait ModelSource: Send + Sync + std::fmt::Debug {
    /// Loads (or finds loaded) the Model named `name`; the error says why not, naming it.
    fn load(&self, name: &str) -> BoxFuture<'_, std::result::Result<Arc<dyn Model>, String>>;
}

/// `SplitType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Each object is one request.
    None,
    /// Each line is a record.
    Line,
    /// Each RecordIO frame (or run of continued frames) is a record.
    RecordIo,
}

/// `BatchStrategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One record per request.
    SingleRecord,
    /// As many records as fit `MaxPayloadInMB` per request.
    MultiRecord,
}

/// A checked job: everything the engine and the runner need, parsed.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The input location.
    pub input: Location,
    /// The `S3Uri` as given.
    pub input_uri: String,
    /// `S3Prefix` or `ManifestFile`.
    pub data_type: DataType,
    /// How the objects' records are decoded (JSON split by line is read as JSON Lines).
    pub format: Format,
    /// Each object is gzip.
    pub gzip: bool,
    /// `SplitType`.
    pub split: Split,
    /// `BatchStrategy`.
    pub strategy: Strategy,
    /// `MaxPayloadInMB` in bytes.
    pub max_payload: usize,
    /// `MaxConcurrentTransforms`: requests predicted at once per object.
    pub workers: usize,
    /// `Accept`.
    pub accept: Format,
    /// `AssembleWith Line`.
    pub assemble_line: bool,
    /// Where the outputs go.
    pub output: Location,
    /// `S3OutputPath` as given.
    pub output_uri: String,
    /// `InputFilter` (not `$`).
    pub input_filter: Option<JsonPath>,
    /// `OutputFilter` (not `$`).
    pub output_filter: Option<JsonPath>,
    /// `JoinSource Input`.
    pub join: bool,
    /// `PIER_SKIP_BAD_RECORDS=true`.
    pub skip_bad: bool,
    /// `InstanceCount`: objects transformed at once.
    pub instances: usize,
    /// `ContentType application/x-recordio-protobuf`: records are protobuf `Record`s
    /// ([`recordio`]), not `format`'s text.
    pub protobuf: bool,
}

impl Plan {
    /// Whether outputs are written a record per line (filters or a join apply per record).
    pub fn per_record(&self) -> bool {
        self.join || self.output_filter.is_some()
    }

    /// What a failure's position counts: lines, or RecordIO records.
    pub fn unit(&self) -> &'static str {
        if self.split == Split::RecordIo {
            "record"
        } else {
            "line"
        }
    }
}

fn parse_format(field: &str, value: &str) -> Result<Format> {
    Format::from_content_type(value).map_err(|_| {
        JobsError::Invalid(format!(
            "{field} {value:?} is not supported; use text/csv, application/json or application/jsonlines"
        ))
    })
}

/// Checks a job as CreateTransformJob must, before it is queued. Errors name the field.
pub fn check(job: &TransformJob) -> Result<Plan> {
    let invalid = |m: String| JobsError::Invalid(m);
    let input = &job.transform_input;
    let source = &input.data_source.s3_data_source;
    let data_type = match source.s3_data_type.as_str() {
        "S3Prefix" => DataType::S3Prefix,
        "ManifestFile" => DataType::ManifestFile,
        other => {
            return Err(invalid(format!(
                "TransformInput.DataSource.S3DataSource.S3DataType {other:?} is not supported; use S3Prefix or ManifestFile"
            )));
        }
    };
    let location = Location::parse(&source.s3_uri).map_err(|r| {
        invalid(format!(
            "TransformInput.DataSource.S3DataSource.S3Uri {:?} {r}",
            source.s3_uri
        ))
    })?;
    let content = input.content_type.as_deref().unwrap_or("text/csv");
    let protobuf = content.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-recordio-protobuf")
    });
    // recordio-protobuf records are decoded by `recordio`; `format` is then only the default
    // Accept (JSON, as SageMaker's built-ins answer).
    let mut format = if protobuf {
        Format::Json
    } else {
        parse_format("TransformInput.ContentType", content)?
    };
    let gzip = match input.compression_type.as_deref().unwrap_or("None") {
        "None" => false,
        "Gzip" => true,
        other => {
            return Err(invalid(format!(
                "TransformInput.CompressionType {other:?} is not supported; use None or Gzip"
            )));
        }
    };
    let split = match input.split_type.as_deref().unwrap_or("None") {
        "None" => Split::None,
        "Line" => Split::Line,
        "RecordIO" => Split::RecordIo,
        "TFRecord" => {
            return Err(invalid(
                "TransformInput.SplitType \"TFRecord\" is not supported by Pier yet; use None, Line or RecordIO".into(),
            ));
        }
        other => {
            return Err(invalid(format!(
                "TransformInput.SplitType {other:?} is not supported; use None, Line or RecordIO"
            )));
        }
    };
    let split = match (protobuf, split) {
        (true, Split::Line) => {
            return Err(invalid(
                "TransformInput.ContentType application/x-recordio-protobuf is split by RecordIO, not Line".into(),
            ));
        }
        // The object is RecordIO frames either way; its records are batched by MaxPayloadInMB.
        (true, _) => Split::RecordIo,
        (false, split) => split,
    };
    if split == Split::Line && format == Format::Json {
        // A line of a JSON object is a JSON Lines record.
        format = Format::JsonLines;
    }
    let strategy = match job.batch_strategy.as_deref().unwrap_or("MultiRecord") {
        "MultiRecord" => Strategy::MultiRecord,
        "SingleRecord" => Strategy::SingleRecord,
        other => {
            return Err(invalid(format!(
                "BatchStrategy {other:?} is not supported; use MultiRecord or SingleRecord"
            )));
        }
    };
    let mb = job.max_payload_in_mb.unwrap_or(DEFAULT_MAX_PAYLOAD_MB);
    if !(1..=MAX_PAYLOAD_MB).contains(&mb) {
        return Err(invalid(format!(
            "MaxPayloadInMB {mb} must be between 1 and {MAX_PAYLOAD_MB}"
        )));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let workers = job.max_concurrent_transforms.unwrap_or(0);
    let workers = match workers {
        0 => cores.min(8),
        w if (1..=MAX_CONCURRENT_TRANSFORMS).contains(&w) => w,
        w => {
            return Err(invalid(format!(
                "MaxConcurrentTransforms {w} must be between 0 and {MAX_CONCURRENT_TRANSFORMS}"
            )));
        }
    };
    let output = &job.transform_output;
    if output.s3_output_path.trim().is_empty() {
        return Err(invalid("TransformOutput.S3OutputPath is empty".into()));
    }
    let out_location = Location::parse(&output.s3_output_path).map_err(|r| {
        invalid(format!(
            "TransformOutput.S3OutputPath {:?} {r}",
            output.s3_output_path
        ))
    })?;
    let accept = match output.accept.as_deref() {
        None | Some("") => format,
        Some(a) => parse_format("TransformOutput.Accept", a)?,
    };
    let assemble_line = match output.assemble_with.as_deref().unwrap_or("None") {
        "None" => false,
        "Line" => true,
        other => {
            return Err(invalid(format!(
                "TransformOutput.AssembleWith {other:?} is not supported; use None or Line"
            )));
        }
    };
    let resources = &job.transform_resources;
    if !(1..=MAX_INSTANCES).contains(&resources.instance_count) {
        return Err(invalid(format!(
            "TransformResources.InstanceCount {} must be between 1 and {MAX_INSTANCES}",
            resources.instance_count
        )));
    }
    let dp = job.data_processing.clone().unwrap_or_default();
    let path = |field: &str, p: &Option<String>| -> Result<Option<JsonPath>> {
        match p.as_deref() {
            None => Ok(None),
            Some(text) => {
                let parsed = JsonPath::parse(text)
                    .map_err(|e| invalid(format!("DataProcessing.{field}: {e}")))?;
                Ok((!parsed.is_root()).then_some(parsed))
            }
        }
    };
    let input_filter = path("InputFilter", &dp.input_filter)?;
    let output_filter = path("OutputFilter", &dp.output_filter)?;
    let join = match dp.join_source.as_deref().unwrap_or("None") {
        "None" => false,
        "Input" => true,
        other => {
            return Err(invalid(format!(
                "DataProcessing.JoinSource {other:?} is not supported; use None or Input"
            )));
        }
    };
    if (join || input_filter.is_some() || output_filter.is_some()) && split != Split::Line {
        return Err(invalid(
            "DataProcessing (InputFilter, OutputFilter, JoinSource) needs TransformInput.SplitType Line in Pier".into(),
        ));
    }
    if let Some(f) = &input_filter
        && format == Format::Csv
        && !f.fits_csv()
    {
        return Err(invalid(format!(
            "DataProcessing.InputFilter {f}: text/csv records take index paths only ($[1:], $[0,2:4])"
        )));
    }
    let out_csv = accept == Format::Csv;
    if join && (format == Format::Csv) != out_csv {
        return Err(invalid(
            "DataProcessing.JoinSource Input joins CSV to CSV or JSON to JSON: set TransformOutput.Accept to the input's kind".into(),
        ));
    }
    if let Some(f) = &output_filter
        && out_csv
        && !f.fits_csv()
    {
        return Err(invalid(format!(
            "DataProcessing.OutputFilter {f}: text/csv output takes index paths only ($[0,-1])"
        )));
    }
    Ok(Plan {
        input: location,
        input_uri: source.s3_uri.clone(),
        data_type,
        format,
        gzip,
        split,
        strategy,
        max_payload: (mb as usize) << 20,
        workers: workers as usize,
        accept,
        assemble_line,
        output: out_location,
        output_uri: output.s3_output_path.clone(),
        input_filter,
        output_filter,
        join,
        skip_bad: job.skip_bad_records(),
        instances: resources.instance_count as usize,
        protobuf,
    })
}
