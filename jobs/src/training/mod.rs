//! Training jobs: the record ([`record`]), the checks CreateTrainingJob runs before a job is
//! queued ([`check`]: the channels through [`crate::channels::validate_input_data_config`] and
//! the algorithm's content types), built-in algorithms named by image ([`builtin_for_image`]),
//! and running a claimed job (`run`: channels read with [`crate::channels::read_channel`], the
//! model written with [`crate::output::write_model_tarball`]).
//!
//! [`check`] and the runner agree on what a job means: a job that passes [`check`] names a
//! built-in, its hyperparameters parse, and its channels are ones the algorithm reads.

pub mod record;
pub(crate) mod run;
pub mod test_channel;

use pier_algorithms::builtin::{Algorithm, check_hyperparameters};

use crate::channels::{Channel, ChannelSpec, ContentKind, ReadOptions, validate_input_data_config};

use crate::error::{JobsError, Result};
pub use record::TrainingJob;

/// SageMaker's log group of training jobs.
pub const LOG_GROUP: &str = "/aws/sagemaker/TrainingJobs";

/// The log stream of a job, as SageMaker names it: `<job>/algo-1-<creation epoch seconds>`.
pub fn log_stream(job: &TrainingJob) -> String {
    format!(
        "{}/algo-1-{}",
        job.training_job_name,
        job.creation_time.max(0.0) as u64
    )
}

/// The built-in algorithm an image names: Pier's name (`linear-learner`, `kmeans`, `pca`,
/// `factorization-machines`, `xgboost`) or a SageMaker image URI
/// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG`, any account and region) whose
/// repository is one of those or `sagemaker-xgboost`.
pub fn builtin_for_image(image: &str) -> Option<Algorithm> {
    let image = image.trim();
    let repository = match image.rsplit_once('/') {
        Some((registry, path)) if registry.contains('.') => {
            // Drop `:tag` or `@sha256:…`.
            path.split(['@', ':']).next().unwrap_or(path)
        }
        Some(_) => return None,
        None => image,
    };
    let name = match repository {
        "sagemaker-xgboost" => "xgboost",
        other => other,
    };
    Algorithm::ALL.into_iter().find(|a| a.image_name() == name)
}

/// `<S3OutputPath>/<job>/output/model.tar.gz`: where the runner writes the model
/// ([`crate::output::write_model_tarball`] returns the same URI).
pub fn model_location(output_path: &str, job: &str) -> String {
    format!(
        "{}/{job}/output/{}",
        output_path.trim_end_matches('/'),
        crate::output::MODEL_TARBALL
    )
}

/// The file name SageMaker's built-ins give the model inside `model.tar.gz`.
pub fn sagemaker_file_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::XGBoost => "xgboost-model",
        _ => "model_algo-1",
    }
}

/// Channels the built-ins read: `train`; `validation` for metrics and early stopping;
/// `test` for final metrics (all but XGBoost).
fn channels_read(algorithm: Algorithm) -> &'static [&'static str] {
    if test_channel::reads_test(algorithm) {
        &["train", "validation", "test"]
    } else {
        &["train", "validation"]
    }
}

/// The content types a built-in reads, its default first, as SageMaker's: the first-party
/// algorithms default to RecordIO-protobuf (what the SDK's `record_set()` uploads, with no
/// `ContentType`), XGBoost to CSV (Pier reads no libsvm).
pub fn content_kinds(algorithm: Algorithm) -> &'static [ContentKind] {
    match algorithm {
        Algorithm::XGBoost => &[ContentKind::Csv, ContentKind::RecordIo],
        _ => &[ContentKind::RecordIo, ContentKind::Csv],
    }
}

/// How `algorithm` reads its channels: its content types, whether records carry a label, S3
/// from the environment, local paths anywhere, no limit (the runner narrows these).
pub fn read_options(algorithm: Algorithm) -> ReadOptions {
    ReadOptions::new(algorithm.supervised(), content_kinds(algorithm))
}

/// A job that passed [`check`]: what the runner needs beyond the record.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The built-in it trains.
    pub algorithm: Algorithm,
    /// Its channels, checked and ready to read.
    pub channels: Vec<Channel>,
}

/// Checks a new job as CreateTrainingJob must, before it is queued. Errors name the field
/// (and the hyperparameter, channel or value) at fault.
pub fn check(job: &TrainingJob) -> Result<Checked> {
    let invalid = |m: String| JobsError::Invalid(m);
    let spec = &job.algorithm_specification;
    if spec.algorithm_name.is_some() {
        return Err(invalid(
            "AlgorithmSpecification.AlgorithmName is not supported by Pier; give TrainingImage"
                .into(),
        ));
    }
    let Some(image) = spec.training_image.as_deref() else {
        return Err(invalid(
            "AlgorithmSpecification.TrainingImage is required".into(),
        ));
    };
    let Some(algorithm) = builtin_for_image(image) else {
        return Err(invalid(format!(
            "AlgorithmSpecification.TrainingImage {image:?} is not a Pier built-in: use one of {} \
             or its SageMaker image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/linear-learner:1, \
             …/sagemaker-xgboost:1.7-1)",
            Algorithm::ALL.map(|a| a.image_name()).join(", ")
        )));
    };
    input_mode(
        "AlgorithmSpecification.TrainingInputMode",
        &spec.training_input_mode,
    )?;
    check_hyperparameters(algorithm, &job.hyper_parameters)
        .map_err(|e| invalid(format!("HyperParameters: {e}")))?;
    let specs: Vec<ChannelSpec> = job.input_data_config.iter().map(|c| c.spec()).collect();
    let channels = validate_input_data_config(&specs)?;
    let options = read_options(algorithm);
    for channel in &channels {
        let name = channel.name.as_str();
        if !channels_read(algorithm).contains(&name) {
            return Err(invalid(format!(
                "InputDataConfig channel {name:?}: {algorithm} reads the channels {}",
                channels_read(algorithm).join(", ")
            )));
        }
        options
            .content_type(channel)
            .map_err(|e| invalid(e.to_string()))?;
    }
    for channel in &job.input_data_config {
        if let Some(mode) = &channel.input_mode {
            input_mode(
                &format!(
                    "InputDataConfig channel {:?}: InputMode",
                    channel.channel_name
                ),
                mode,
            )?;
        }
    }
    if !channels.iter().any(|c| c.name == "train") {
        return Err(invalid(format!(
            "InputDataConfig: {algorithm} needs a \"train\" channel"
        )));
    }
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
    Ok(Checked {
        algorithm,
        channels,
    })
}

fn input_mode(field: &str, mode: &str) -> Result<()> {
    match mode {
        // Pipe streams the channel into the container; Pier reads the whole channel, which
        // gives the algorithm the same records.
        "File" | "Pipe" => Ok(()),
        other => Err(JobsError::Invalid(format!(
            "{field} {other:?} is not supported; use File (Pipe is read as File)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use record::{Channel, DataSource, S3DataSource};

    #[test]
    fn images_by_name_or_any_ecr_uri() {
        for (image, want) in [
            ("linear-learner", Some(Algorithm::LinearLearner)),
            (
                "382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1",
                Some(Algorithm::LinearLearner),
            ),
            (
                "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                Some(Algorithm::XGBoost),
            ),
            (
                "174872318107.dkr.ecr.us-west-2.amazonaws.com/kmeans:1",
                Some(Algorithm::KMeans),
            ),
            (
                "x.dkr.ecr.cn-north-1.amazonaws.com.cn/pca@sha256:ab",
                Some(Algorithm::Pca),
            ),
            (
                "factorization-machines",
                Some(Algorithm::FactorizationMachines),
            ),
            ("xgboost", Some(Algorithm::XGBoost)),
            (
                "a.dkr.ecr.r.amazonaws.com/sagemaker-scikit-learn:1.2-1",
                None,
            ),
            ("library/xgboost", None),
            ("onnx", None),
        ] {
            assert_eq!(builtin_for_image(image), want, "{image}");
        }
    }

    fn job() -> TrainingJob {
        TrainingJob {
            training_job_name: "j".into(),
            algorithm_specification: record::AlgorithmSpecification {
                training_image: Some("xgboost".into()),
                training_input_mode: "File".into(),
                ..Default::default()
            },
            hyper_parameters: [("num_round".to_string(), "3".to_string())].into(),
            input_data_config: vec![Channel {
                channel_name: "train".into(),
                data_source: DataSource {
                    s3_data_source: Some(S3DataSource {
                        s3_data_type: "S3Prefix".into(),
                        s3_uri: "/data/train.csv".into(),
                        ..Default::default()
                    }),
                    file_system_data_source: None,
                },
                content_type: Some("text/csv".into()),
                ..Default::default()
            }],
            output_data_config: record::OutputDataConfig {
                s3_output_path: "/out".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn checks_name_the_field_at_fault() {
        assert_eq!(check(&job()).unwrap().algorithm, Algorithm::XGBoost);
        type Change = Box<dyn Fn(&mut TrainingJob)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|j| {
                    j.hyper_parameters.insert("bogus".into(), "1".into());
                }),
                "bogus",
            ),
            (
                Box::new(|j| {
                    j.hyper_parameters.insert("eta".into(), "fast".into());
                }),
                "eta",
            ),
            (
                Box::new(|j| j.algorithm_specification.training_image = Some("tensorflow".into())),
                "TrainingImage",
            ),
            (
                Box::new(|j| j.input_data_config[0].channel_name = "training".into()),
                "\"training\"",
            ),
            (
                Box::new(|j| j.input_data_config[0].content_type = Some("application/json".into())),
                "ContentType",
            ),
            (
                Box::new(|j| j.input_data_config[0].compression_type = Some("Zip".into())),
                "CompressionType",
            ),
            (
                Box::new(|j| j.input_data_config.clear()),
                "\"train\" channel",
            ),
            (
                Box::new(|j| {
                    let c = j.input_data_config[0].clone();
                    j.input_data_config.push(c);
                }),
                "twice",
            ),
            (
                Box::new(|j| j.stopping_condition.max_runtime_in_seconds = Some(0)),
                "MaxRuntimeInSeconds",
            ),
            (
                Box::new(|j| j.algorithm_specification.training_input_mode = "FastFile".into()),
                "TrainingInputMode",
            ),
        ];
        for (change, needle) in cases {
            let mut j = job();
            change(&mut j);
            let err = check(&j).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
