//! Script mode: users' own training code (`SKLearn(entry_point=…)`, `XGBoost(entry_point=…)`,
//! PyTorch, TensorFlow, Hugging Face, or Pier's `pier-script`), run as a local process under
//! the sagemaker-training toolkit's contract.
//!
//! - [`script_kind`] decides whether a job is a script job: a `TrainingImage` naming a
//!   SageMaker framework image (any account, region and tag) or `pier-script`; the XGBoost
//!   framework image is a script job only with a `sagemaker_program` (else the built-in).
//! - [`check`] runs at CreateTrainingJob: the entry point, the submit directory, the channels
//!   (any content type), `MetricDefinitions`, `PIER_RUNTIME`.
//! - [`contract`]: the per-job folder mirroring `/opt/ml`, the `SM_*` environment and the
//!   hyperparameters as arguments. [`source`]: `sourcedir.tar.gz` fetched and unpacked safely,
//!   `requirements.txt` installed into a virtual environment cached by its hash.
//!   [`process`]: the managed process (own process group, logs streamed, SIGTERM then SIGKILL,
//!   no orphans). [`metrics`]: `MetricDefinitions` over the log. [`detect`]: the runtime of
//!   what the script left in `model/`. [`container`]: other images, run by a local container
//!   engine where one is present, else refused with the reason.
//! - `run` (crate-private) is the job's work between the runner's transitions.
//!
//! Concurrency: the job's task is async; the process is watched by plain threads (one per
//! output pipe, one waiting for the exit) that feed the task through bounded channels, so a
//! chatty script is slowed by the log writer rather than buffered without bound.

pub mod container;
pub mod contract;
pub mod detect;
pub mod metrics;
pub mod process;
mod publish;
pub(crate) mod run;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::channels::{Channel, validate_input_data_config};
use crate::error::{JobsError, Result};
use crate::training::TrainingJob;

pub use metrics::MetricDefinition;
pub use run::reap;

/// Pier's own image name for a script job that names no framework.
pub const PIER_SCRIPT_IMAGE: &str = "pier-script";

/// The SageMaker framework images whose jobs run as scripts (repository names).
pub const FRAMEWORK_REPOSITORIES: &[&str] = &[
    "sagemaker-scikit-learn",
    "sagemaker-xgboost",
    "pytorch-training",
    "tensorflow-training",
    "huggingface-pytorch-training",
];

/// The hyperparameters the SDK and SageMaker set for the toolkit itself (as the toolkit's
/// `params.SAGEMAKER_HYPERPARAMETERS`), never passed to the script. Other `sagemaker_*`
/// hyperparameters are the framework's (`SM_FRAMEWORK_PARAMS`), not the user's either.
pub const SAGEMAKER_HYPERPARAMETERS: &[&str] = &[
    "sagemaker_program",
    "sagemaker_submit_directory",
    "sagemaker_enable_cloudwatch_metrics",
    "sagemaker_region",
    "sagemaker_container_log_level",
    "sagemaker_job_name",
    "default_user_module_name",
    "_tuning_objective_metric",
    "sagemaker_s3_output",
];

/// The environment variable (in the job's `Environment`) naming the runtime of the model the
/// script writes, when detection from content is not wanted.
pub const RUNTIME_VARIABLE: &str = "PIER_RUNTIME";

/// How a runner runs script jobs.
#[derive(Clone, Debug)]
pub struct ScriptConfig {
    /// Whether this runner runs script jobs (users' code as the runner's user). `pier serve`
    /// sets it when the admin port is on loopback or `--allow-scripts` is given; `pier worker`
    /// with `--allow-scripts`.
    pub allowed: bool,
    /// The interpreter of `.py` entry points and of the virtual environments (`--python`).
    pub python: String,
    /// How long a stopped script has between SIGTERM and SIGKILL (SageMaker gives 120 s).
    pub grace: Duration,
    /// Where job folders (`<job>/` mirroring `/opt/ml`) and cached virtual environments
    /// (`.venvs/`) live: `<data dir>/jobs`.
    pub work_dir: PathBuf,
    /// Most bytes `sourcedir.tar.gz` may unpack to.
    pub max_source_bytes: u64,
    /// Most files it may hold.
    pub max_source_files: u64,
    /// The container engines tried, in order, for images that are neither built-ins nor
    /// framework images (`docker`, `podman`).
    pub container_engines: Vec<String>,
}

/// The default of [`ScriptConfig::grace`]: SageMaker's 120 s.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(120);

impl Default for ScriptConfig {
    fn default() -> Self {
        Self {
            allowed: true,
            python: "python3".to_owned(),
            grace: DEFAULT_GRACE,
            work_dir: PathBuf::from("./pier-data/jobs"),
            max_source_bytes: 1 << 30,
            max_source_files: 100_000,
            container_engines: vec!["docker".to_owned(), "podman".to_owned()],
        }
    }
}

/// The repository an image names, when it is a bare name (`pier-script`,
/// `sagemaker-scikit-learn:1.2-1`) or an Amazon ECR URI
/// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]/REPOSITORY:TAG`); tag and digest dropped.
fn ecr_repository(image: &str) -> Option<&str> {
    let image = image.trim();
    let path = match image.split_once('/') {
        None => image,
        Some((registry, path)) if registry.contains(".amazonaws.com") && !path.contains('/') => {
            path
        }
        Some(_) => return None,
    };
    let repository = path.split(['@', ':']).next().unwrap_or(path);
    (!repository.is_empty()).then_some(repository)
}

/// Which framework a script job's image names (`sagemaker-scikit-learn`, …, `pier-script`),
/// or `None` when the job is not a script job.
pub fn script_kind(job: &TrainingJob) -> Option<&str> {
    let image = job.algorithm_specification.training_image.as_deref()?;
    let repository = ecr_repository(image)?;
    if repository == PIER_SCRIPT_IMAGE {
        return Some(repository);
    }
    if repository == "sagemaker-xgboost" {
        // The built-in XGBoost shares the image: a script job names its program.
        return job
            .hyper_parameters
            .contains_key("sagemaker_program")
            .then_some(repository);
    }
    FRAMEWORK_REPOSITORIES
        .contains(&repository)
        .then_some(repository)
}

/// Whether an image (CreateModel's `PrimaryContainer.Image`) is a framework image: the model
/// behind it is served by the runtime its files show (see [`detect`]).
pub fn is_framework_image(image: &str) -> bool {
    ecr_repository(image)
        .is_some_and(|r| r == PIER_SCRIPT_IMAGE || FRAMEWORK_REPOSITORIES.contains(&r))
}

/// A script job, checked.
#[derive(Clone, Debug)]
pub struct ScriptJob {
    /// The framework's repository name, or `pier-script`.
    pub framework: String,
    /// `sagemaker_program`: the entry point, relative to the source folder.
    pub entry_point: String,
    /// `sagemaker_submit_directory`: `s3://…/sourcedir.tar.gz`, `file:///…` or a local path.
    pub submit_directory: String,
    /// `sagemaker_container_log_level` (Python's logging levels; 20 = INFO).
    pub log_level: i64,
    /// Every hyperparameter, JSON-decoded as the toolkit decodes them.
    pub hyperparameters: BTreeMap<String, serde_json::Value>,
    /// The channels (content types are the script's business).
    pub channels: Vec<Channel>,
    /// `MetricDefinitions`, compiled.
    pub metrics: Vec<MetricDefinition>,
    /// The runtime `PIER_RUNTIME` names, if any.
    pub runtime: Option<String>,
    /// For an image run in a container engine ([`is_container_job`]): the image.
    pub container: Option<String>,
}

impl ScriptJob {
    /// The user's hyperparameters: all but the toolkit's and the framework's (`sagemaker_*`).
    pub fn user_hyperparameters(&self) -> BTreeMap<String, serde_json::Value> {
        self.hyperparameters
            .iter()
            .filter(|(k, _)| {
                !SAGEMAKER_HYPERPARAMETERS.contains(&k.as_str()) && !k.starts_with("sagemaker_")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The framework's hyperparameters (`sagemaker_*` ones the toolkit does not use itself,
    /// such as `sagemaker_distributed_dataparallel_enabled`): `SM_FRAMEWORK_PARAMS`.
    pub fn framework_hyperparameters(&self) -> BTreeMap<String, serde_json::Value> {
        self.hyperparameters
            .iter()
            .filter(|(k, _)| {
                !SAGEMAKER_HYPERPARAMETERS.contains(&k.as_str()) && k.starts_with("sagemaker_")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The runtimes `PIER_RUNTIME` may name.
pub const RUNTIMES: &[&str] = &["onnx", "xgboost", "lightgbm"];

/// Checks a script job as CreateTrainingJob must; errors name the field at fault.
pub fn check(job: &TrainingJob) -> Result<ScriptJob> {
    let invalid = |m: String| JobsError::Invalid(m);
    let Some(framework) = script_kind(job) else {
        return Err(invalid(
            "AlgorithmSpecification.TrainingImage does not name a script-mode image".into(),
        ));
    };
    let spec = &job.algorithm_specification;
    match spec.training_input_mode.as_str() {
        "File" => {}
        other => {
            return Err(invalid(format!(
                "AlgorithmSpecification.TrainingInputMode {other:?} is not supported for script jobs; use File"
            )));
        }
    }
    if spec.container_entrypoint.is_some() || spec.container_arguments.is_some() {
        return Err(invalid(
            "AlgorithmSpecification.ContainerEntrypoint and ContainerArguments are not supported for script jobs \
             (the entry point is HyperParameters.sagemaker_program)"
                .into(),
        ));
    }
    let common = check_common(job)?;
    let hyperparameters = common.hyperparameters;
    let text = |key: &str| -> Option<String> {
        hyperparameters.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let Some(entry_point) = text("sagemaker_program") else {
        return Err(invalid(
            "HyperParameters.sagemaker_program is required for a script job: the entry point \
             (train.py) in the source folder"
                .into(),
        ));
    };
    source::check_entry_point(&entry_point).map_err(|reason| {
        invalid(format!(
            "HyperParameters.sagemaker_program {entry_point:?} {reason}"
        ))
    })?;
    let Some(submit_directory) = text("sagemaker_submit_directory") else {
        return Err(invalid(
            "HyperParameters.sagemaker_submit_directory is required for a script job: \
             s3://BUCKET/…/sourcedir.tar.gz or file:///…/sourcedir.tar.gz"
                .into(),
        ));
    };
    crate::channels::Location::parse(&submit_directory).map_err(|reason| {
        invalid(format!(
            "HyperParameters.sagemaker_submit_directory {submit_directory:?} {reason}"
        ))
    })?;
    let log_level = match hyperparameters.get("sagemaker_container_log_level") {
        None => 20,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(format!(
                "HyperParameters.sagemaker_container_log_level {v} is not an integer"
            ))
        })?,
    };
    Ok(ScriptJob {
        framework: framework.to_owned(),
        entry_point,
        submit_directory,
        log_level,
        hyperparameters,
        channels: common.channels,
        metrics: common.metrics,
        runtime: common.runtime,
        container: None,
    })
}

/// Checks any training job as CreateTrainingJob does, by its kind (a built-in, a script job or
/// a container job; whether an engine has a container's image is not asked here), and
/// returns its channels. For callers that create training jobs of every kind (tuning).
pub fn check_any(job: &TrainingJob) -> Result<Vec<Channel>> {
    if script_kind(job).is_some() {
        return Ok(check(job)?.channels);
    }
    if is_container_job(job) {
        return Ok(check_container(job)?.channels);
    }
    Ok(crate::training::check(job)?.channels)
}

/// Whether a job names an image that is neither a built-in nor a script-mode framework
/// image: SageMaker would run it as a container ([`container`]).
pub fn is_container_job(job: &TrainingJob) -> bool {
    let spec = &job.algorithm_specification;
    spec.algorithm_name.is_none()
        && spec
            .training_image
            .as_deref()
            .is_some_and(|i| !i.trim().is_empty())
        && script_kind(job).is_none()
        && spec
            .training_image
            .as_deref()
            .and_then(crate::training::builtin_for_image)
            .is_none()
}

/// Checks a container job ([`is_container_job`]) as CreateTrainingJob must (whether an engine
/// has the image is [`container::availability`]'s business).
pub fn check_container(job: &TrainingJob) -> Result<ScriptJob> {
    let invalid = |m: String| JobsError::Invalid(m);
    let spec = &job.algorithm_specification;
    let Some(image) = spec
        .training_image
        .clone()
        .filter(|_| is_container_job(job))
    else {
        return Err(invalid(
            "AlgorithmSpecification.TrainingImage does not name a container image".into(),
        ));
    };
    if spec.training_input_mode != "File" {
        return Err(invalid(format!(
            "AlgorithmSpecification.TrainingInputMode {:?} is not supported for container jobs; use File",
            spec.training_input_mode
        )));
    }
    if spec.container_entrypoint.is_some() || spec.container_arguments.is_some() {
        return Err(invalid(
            "AlgorithmSpecification.ContainerEntrypoint and ContainerArguments are not supported by Pier yet \
             (the image runs with `train` as its argument)"
                .into(),
        ));
    }
    let common = check_common(job)?;
    Ok(ScriptJob {
        framework: "container".to_owned(),
        entry_point: "train".to_owned(),
        submit_directory: String::new(),
        log_level: 20,
        hyperparameters: common.hyperparameters,
        channels: common.channels,
        metrics: common.metrics,
        runtime: common.runtime,
        container: Some(image),
    })
}

/// What script and container jobs check alike.
struct Common {
    hyperparameters: BTreeMap<String, serde_json::Value>,
    channels: Vec<Channel>,
    metrics: Vec<MetricDefinition>,
    runtime: Option<String>,
}

fn check_common(job: &TrainingJob) -> Result<Common> {
    let invalid = |m: String| JobsError::Invalid(m);
    let spec = &job.algorithm_specification;
    let hyperparameters: BTreeMap<String, serde_json::Value> = job
        .hyper_parameters
        .iter()
        .map(|(k, v)| (k.clone(), contract::decode_hyperparameter(v)))
        .collect();
    for name in hyperparameters.keys() {
        contract::check_hyperparameter_name(name)
            .map_err(|reason| invalid(format!("HyperParameters {name:?} {reason}")))?;
    }
    // The script reads its channels as it likes: any content type, compression left as is.
    let specs: Vec<_> = job
        .input_data_config
        .iter()
        .map(|c| {
            let mut spec = c.spec();
            spec.content_type = None;
            spec.record_wrapper_type = None;
            spec
        })
        .collect();
    let channels = validate_input_data_config(&specs)?;
    for channel in &job.input_data_config {
        if let Some(mode) = channel.input_mode.as_deref()
            && mode != "File"
        {
            return Err(invalid(format!(
                "InputDataConfig channel {:?}: InputMode {mode:?} is not supported for script jobs; use File",
                channel.channel_name
            )));
        }
    }
    let metrics = match &spec.metric_definitions {
        None => Vec::new(),
        Some(value) => metrics::parse_definitions(value).map_err(invalid)?,
    };
    let runtime = match job.environment.get(RUNTIME_VARIABLE) {
        None => None,
        Some(r) if RUNTIMES.contains(&r.as_str()) => Some(r.clone()),
        Some(r) => {
            return Err(invalid(format!(
                "Environment.{RUNTIME_VARIABLE} {r:?} is not one of {}",
                RUNTIMES.join(", ")
            )));
        }
    };
    if job.output_data_config.s3_output_path.trim().is_empty() {
        return Err(invalid("OutputDataConfig.S3OutputPath is empty".into()));
    }
    if let Some(max) = job.stopping_condition.max_runtime_in_seconds
        && max < 1
    {
        return Err(invalid(format!(
            "StoppingCondition.MaxRuntimeInSeconds {max} must be at least 1"
        )));
    }
    if let Some(retry) = &job.retry_strategy
        && !(1..=30).contains(&retry.maximum_retry_attempts)
    {
        return Err(invalid(format!(
            "RetryStrategy.MaximumRetryAttempts {} must be between 1 and 30",
            retry.maximum_retry_attempts
        )));
    }
    Ok(Common {
        hyperparameters,
        channels,
        metrics,
        runtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::record::{AlgorithmSpecification, OutputDataConfig};

    fn job(image: &str, hp: &[(&str, &str)]) -> TrainingJob {
        TrainingJob {
            training_job_name: "j".into(),
            algorithm_specification: AlgorithmSpecification {
                training_image: Some(image.into()),
                training_input_mode: "File".into(),
                ..Default::default()
            },
            hyper_parameters: hp
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            output_data_config: OutputDataConfig {
                s3_output_path: "/out".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn framework_images_of_any_account_region_and_tag_are_scripts() {
        let program = [("sagemaker_program", "\"train.py\"")];
        for (image, hp, want) in [
            (
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                &[][..],
                Some("sagemaker-scikit-learn"),
            ),
            (
                "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.1-cpu-py310",
                &[][..],
                Some("pytorch-training"),
            ),
            (
                "1.dkr.ecr.cn-north-1.amazonaws.com.cn/huggingface-pytorch-training@sha256:ab",
                &[][..],
                Some("huggingface-pytorch-training"),
            ),
            (
                "tensorflow-training:2.13",
                &[][..],
                Some("tensorflow-training"),
            ),
            ("pier-script", &[][..], Some("pier-script")),
            (
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                &program[..],
                Some("sagemaker-xgboost"),
            ),
            // The built-in XGBoost: no program.
            (
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                &[][..],
                None,
            ),
            ("linear-learner", &[][..], None),
            ("docker.io/me/pytorch-training:1", &[][..], None),
            ("myregistry:5000/pier-script", &[][..], None),
        ] {
            assert_eq!(script_kind(&job(image, hp)), want, "{image}");
        }
        assert!(is_framework_image(
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
        ));
        assert!(!is_framework_image("onnx"));
    }

    #[test]
    fn checks_name_what_is_wrong() {
        let ok = job(
            "pier-script",
            &[
                ("sagemaker_program", "\"train.py\""),
                (
                    "sagemaker_submit_directory",
                    "\"s3://bucket/k/sourcedir.tar.gz\"",
                ),
                ("sagemaker_container_log_level", "20"),
                ("epochs", "3"),
            ],
        );
        let checked = check(&ok).unwrap();
        assert_eq!(checked.entry_point, "train.py");
        assert_eq!(checked.submit_directory, "s3://bucket/k/sourcedir.tar.gz");
        assert_eq!(
            checked.user_hyperparameters(),
            [("epochs".to_string(), serde_json::json!(3))].into()
        );
        for (hp, needle) in [
            (
                vec![("sagemaker_submit_directory", "\"s3://b/k.tar.gz\"")],
                "sagemaker_program is required",
            ),
            (
                vec![("sagemaker_program", "\"train.py\"")],
                "sagemaker_submit_directory is required",
            ),
            (
                vec![
                    ("sagemaker_program", "\"../x.py\""),
                    ("sagemaker_submit_directory", "\"s3://bb/k.tar.gz\""),
                ],
                "sagemaker_program \"../x.py\"",
            ),
            (
                vec![
                    ("sagemaker_program", "\"train.py\""),
                    ("sagemaker_submit_directory", "\"ftp://x/y\""),
                ],
                "sagemaker_submit_directory \"ftp://x/y\"",
            ),
        ] {
            let err = check(&job("pier-script", &hp)).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(check_any(&ok).is_ok());
        let mut other = ok.clone();
        other.algorithm_specification.training_image = Some("local/trainer:1".into());
        assert!(check_any(&other).is_ok(), "a container job");
        other.algorithm_specification.container_arguments = Some(serde_json::json!(["x"]));
        assert!(
            check_any(&other)
                .unwrap_err()
                .to_string()
                .contains("ContainerArguments")
        );
        let mut bad_runtime = ok.clone();
        bad_runtime
            .environment
            .insert(RUNTIME_VARIABLE.into(), "pickle".into());
        assert!(
            check(&bad_runtime)
                .unwrap_err()
                .to_string()
                .contains("PIER_RUNTIME")
        );
        let mut bad_metric = ok;
        bad_metric.algorithm_specification.metric_definitions =
            Some(serde_json::json!([{"Name": "loss", "Regex": "loss=("}]));
        let err = check(&bad_metric).unwrap_err().to_string();
        assert!(err.contains("MetricDefinitions.0.Regex"), "{err}");
    }
}
