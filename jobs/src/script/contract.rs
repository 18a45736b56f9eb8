//! The sagemaker-training toolkit's contract: what a script sees.
//!
//! - [`JobFolder`]: the per-job folder mirroring `/opt/ml` (`input/config/*.json`,
//!   `input/data/<channel>/`, `model/`, `output/data/`, `output/failure`, `code/`), under the
//!   runner's work folder.
//! - [`decode_hyperparameter`]: each value JSON-decoded (the SDK JSON-encodes them), kept as
//!   the string when it is not JSON, as the toolkit does.
//! - [`user_args`]: the user's hyperparameters as `--name value` arguments (sorted by name,
//!   `-n` for a one-letter name, values as Python's `str()` prints them).
//! - [`environment`]: the `SM_*` variables (`SM_MODEL_DIR`, `SM_CHANNELS`, `SM_CHANNEL_<NAME>`,
//!   `SM_HPS`, `SM_HP_<NAME>`, `SM_USER_ARGS`, `SM_TRAINING_ENV`, …): strings as they are,
//!   anything else as compact JSON with sorted keys, as the toolkit writes them.
//!
//! Pure functions over the job and the folder's paths; only [`JobFolder::create`] and
//! [`write_config`] touch the disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::ScriptJob;
use crate::training::TrainingJob;

/// The one host a Pier script job runs on, as SageMaker names the first instance.
pub const HOST: &str = "algo-1";

/// A job's folder, mirroring `/opt/ml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFolder {
    /// `<work dir>/<job>`.
    pub root: PathBuf,
}

impl JobFolder {
    /// The folder of job `name` under `work_dir`.
    pub fn new(work_dir: &Path, name: &str) -> Self {
        Self {
            root: work_dir.join(name),
        }
    }
    /// `code/`: the unpacked `sourcedir.tar.gz`, the process's working folder.
    pub fn code(&self) -> PathBuf {
        self.root.join("code")
    }
    /// `model/` (`SM_MODEL_DIR`).
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
    /// `input/` (`SM_INPUT_DIR`).
    pub fn input(&self) -> PathBuf {
        self.root.join("input")
    }
    /// `input/config/` (`SM_INPUT_CONFIG_DIR`).
    pub fn input_config(&self) -> PathBuf {
        self.root.join("input/config")
    }
    /// `input/data/<channel>/` (`SM_CHANNEL_<NAME>`).
    pub fn channel(&self, name: &str) -> PathBuf {
        self.root.join("input/data").join(name)
    }
    /// `output/` (`SM_OUTPUT_DIR`).
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }
    /// `output/data/` (`SM_OUTPUT_DATA_DIR`).
    pub fn output_data(&self) -> PathBuf {
        self.root.join("output/data")
    }
    /// `output/intermediate/` (`SM_OUTPUT_INTERMEDIATE_DIR`).
    pub fn output_intermediate(&self) -> PathBuf {
        self.root.join("output/intermediate")
    }
    /// `output/failure`: what a failing script writes as its reason.
    pub fn failure(&self) -> PathBuf {
        self.root.join("output/failure")
    }

    /// Empties the folder (an earlier attempt's files) and creates its layout.
    pub fn create(&self, channels: &[String]) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        for dir in [
            self.code(),
            self.model(),
            self.input_config(),
            self.output_data(),
            self.output_intermediate(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        for channel in channels {
            std::fs::create_dir_all(self.channel(channel))?;
        }
        Ok(())
    }
}

/// A hyperparameter's value as the toolkit reads it: JSON if it parses, else the string.
pub fn decode_hyperparameter(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// Refuses names that cannot become `--name` arguments and `SM_HP_<NAME>` variables.
pub fn check_hyperparameter_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 256 {
        return Err("must have 1 to 256 characters".into());
    }
    if name.contains(['=', '\0']) || name.chars().any(char::is_control) {
        return Err("must not contain '=', NUL or control characters".into());
    }
    Ok(())
}

/// How Python's `str()` prints a JSON-decoded value (what the toolkit passes as an argument).
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The user's hyperparameters as the toolkit passes them: sorted by name, `--name value`
/// (`-n value` for a one-letter name), a mapping as `k=v,k2=v2`, `None` as an empty string.
pub fn user_args(hyperparameters: &BTreeMap<String, Value>) -> Vec<String> {
    let mut args = Vec::with_capacity(hyperparameters.len() * 2);
    for (name, value) in hyperparameters {
        args.push(if name.chars().count() > 1 {
            format!("--{name}")
        } else {
            format!("-{name}")
        });
        args.push(match value {
            Value::Null => String::new(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k}={}", python_str(v)))
                .collect::<Vec<_>>()
                .join(","),
            other => python_str(other),
        });
    }
    args
}

/// An environment variable's value as the toolkit writes it: a string as it is, anything
/// else as compact JSON with sorted keys.
fn env_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => sorted_json(other),
    }
}

fn sorted_json(value: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::to_value(sorted).unwrap_or(Value::Null)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sort(value)).unwrap_or_default()
}

/// GPUs this host shows (`/dev/nvidia0`, `/dev/nvidia1`, …).
pub fn count_gpus() -> usize {
    std::fs::read_dir("/dev").map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("nvidia")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count()
    })
}

/// `inputdataconfig.json`: per channel, what SageMaker writes.
pub fn input_data_config(job: &TrainingJob) -> Value {
    let mut map = serde_json::Map::new();
    for c in &job.input_data_config {
        let mut entry = serde_json::Map::new();
        if let Some(ct) = &c.content_type {
            entry.insert("ContentType".into(), json!(ct));
        }
        entry.insert("TrainingInputMode".into(), json!("File"));
        let distribution = c
            .data_source
            .s3_data_source
            .as_ref()
            .and_then(|s| s.s3_data_distribution_type.clone())
            .unwrap_or_else(|| "FullyReplicated".into());
        entry.insert("S3DistributionType".into(), json!(distribution));
        entry.insert(
            "RecordWrapperType".into(),
            json!(c.record_wrapper_type.as_deref().unwrap_or("None")),
        );
        if let Some(compression) = &c.compression_type {
            entry.insert("CompressionType".into(), json!(compression));
        }
        map.insert(c.channel_name.clone(), Value::Object(map_sorted(entry)));
    }
    Value::Object(map)
}

fn map_sorted(m: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    let sorted: BTreeMap<String, Value> = m.into_iter().collect();
    sorted.into_iter().collect()
}

fn instance_type(job: &TrainingJob) -> String {
    job.resource_config
        .instance_type
        .clone()
        .unwrap_or_else(|| "local".into())
}

/// `resourceconfig.json`: one host, `algo-1`, in one homogeneous instance group.
pub fn resource_config(job: &TrainingJob) -> Value {
    json!({
        "current_host": HOST,
        "current_instance_type": instance_type(job),
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [{
            "instance_group_name": "homogeneousCluster",
            "instance_type": instance_type(job),
            "hosts": [HOST],
        }],
        "network_interface_name": "eth0",
    })
}

/// Writes `input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`.
pub fn write_config(folder: &JobFolder, job: &TrainingJob) -> std::io::Result<()> {
    let dir = folder.input_config();
    let write = |name: &str, value: Value| {
        std::fs::write(
            dir.join(name),
            serde_json::to_vec_pretty(&value).unwrap_or_default(),
        )
    };
    write("hyperparameters.json", json!(job.hyper_parameters))?;
    write("inputdataconfig.json", input_data_config(job))?;
    write("resourceconfig.json", resource_config(job))
}

/// The module name of an entry point (`train.py` → `train`).
pub fn module_name(entry_point: &str) -> &str {
    entry_point.strip_suffix(".py").unwrap_or(entry_point)
}

/// Every variable the toolkit sets for a script (`SM_*`, plus `SAGEMAKER_BASE_DIR`,
/// `TRAINING_JOB_NAME`, `TRAINING_JOB_ARN` and `PYTHONUNBUFFERED`, so the log streams as the
/// script prints).
pub fn environment(
    job: &TrainingJob,
    script: &ScriptJob,
    folder: &JobFolder,
    num_cpus: usize,
) -> Vec<(String, String)> {
    let path = |p: PathBuf| p.display().to_string();
    let user = script.user_hyperparameters();
    let args = user_args(&user);
    let mut channels: Vec<String> = script.channels.iter().map(|c| c.name.clone()).collect();
    channels.sort();
    let channel_dirs: BTreeMap<String, String> = channels
        .iter()
        .map(|c| (c.clone(), path(folder.channel(c))))
        .collect();
    let module = module_name(&script.entry_point).to_owned();
    let num_gpus = count_gpus();
    let resource = resource_config(job);
    let input_config = input_data_config(job);
    let training_env = json!({
        "additional_framework_parameters": script.framework_hyperparameters(),
        "channel_input_dirs": channel_dirs,
        "current_host": HOST,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": [HOST],
        "current_instance_type": instance_type(job),
        "distribution_hosts": [],
        "distribution_instance_groups": [],
        "framework_module": Value::Null,
        "hosts": [HOST],
        "hyperparameters": user,
        "input_config_dir": path(folder.input_config()),
        "input_data_config": input_config,
        "input_dir": path(folder.input()),
        "instance_groups": ["homogeneousCluster"],
        "is_hetero": false,
        "is_master": true,
        "job_name": job.training_job_name,
        "log_level": script.log_level,
        "master_hostname": HOST,
        "model_dir": path(folder.model()),
        "module_dir": script.submit_directory,
        "module_name": module,
        "network_interface_name": "eth0",
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "num_neurons": 0,
        "output_data_dir": path(folder.output_data()),
        "output_dir": path(folder.output()),
        "output_intermediate_dir": path(folder.output_intermediate()),
        "resource_config": resource,
        "user_entry_point": script.entry_point,
    });
    let mut env: Vec<(String, Value)> = vec![
        ("SM_HOSTS".into(), json!([HOST])),
        ("SM_NETWORK_INTERFACE_NAME".into(), json!("eth0")),
        ("SM_HPS".into(), json!(user)),
        ("SM_USER_ENTRY_POINT".into(), json!(script.entry_point)),
        (
            "SM_FRAMEWORK_PARAMS".into(),
            json!(script.framework_hyperparameters()),
        ),
        ("SM_RESOURCE_CONFIG".into(), resource_config(job)),
        ("SM_INPUT_DATA_CONFIG".into(), input_data_config(job)),
        (
            "SM_OUTPUT_DATA_DIR".into(),
            json!(path(folder.output_data())),
        ),
        ("SM_CHANNELS".into(), json!(channels)),
        ("SM_CURRENT_HOST".into(), json!(HOST)),
        ("SM_CURRENT_INSTANCE_TYPE".into(), json!(instance_type(job))),
        (
            "SM_MODULE_NAME".into(),
            json!(module_name(&script.entry_point)),
        ),
        ("SM_LOG_LEVEL".into(), json!(script.log_level)),
        ("SM_FRAMEWORK_MODULE".into(), json!("")),
        ("SM_INPUT_DIR".into(), json!(path(folder.input()))),
        (
            "SM_INPUT_CONFIG_DIR".into(),
            json!(path(folder.input_config())),
        ),
        ("SM_OUTPUT_DIR".into(), json!(path(folder.output()))),
        ("SM_NUM_CPUS".into(), json!(num_cpus)),
        ("SM_NUM_GPUS".into(), json!(num_gpus)),
        ("SM_NUM_NEURONS".into(), json!(0)),
        ("SM_MODEL_DIR".into(), json!(path(folder.model()))),
        ("SM_MODULE_DIR".into(), json!(script.submit_directory)),
        ("SM_TRAINING_ENV".into(), training_env),
        ("SM_USER_ARGS".into(), json!(args)),
        (
            "SM_OUTPUT_INTERMEDIATE_DIR".into(),
            json!(path(folder.output_intermediate())),
        ),
        (
            "SAGEMAKER_BASE_DIR".into(),
            json!(path(folder.root.clone())),
        ),
        ("TRAINING_JOB_NAME".into(), json!(job.training_job_name)),
        ("TRAINING_JOB_ARN".into(), json!(job.training_job_arn)),
        ("PYTHONUNBUFFERED".into(), json!("1")),
    ];
    for (name, dir) in &channel_dirs {
        env.push((format!("SM_CHANNEL_{}", name.to_uppercase()), json!(dir)));
    }
    for (name, value) in &user {
        env.push((format!("SM_HP_{}", name.to_uppercase()), value.clone()));
    }
    env.into_iter().map(|(k, v)| (k, env_value(&v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameters_decode_and_become_arguments_as_the_toolkit_makes_them() {
        let hp: BTreeMap<String, Value> = [
            ("n_estimators", "10"),
            ("lr", "0.05"),
            ("name", "\"forest\""),
            ("raw", "not json"),
            ("flag", "true"),
            ("k", "3"),
            ("layers", "[64, 32]"),
            ("opts", "{\"b\": 2, \"a\": \"x\"}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), decode_hyperparameter(v)))
        .collect();
        assert_eq!(hp["name"], json!("forest"));
        assert_eq!(hp["raw"], json!("not json"));
        assert_eq!(
            user_args(&hp),
            [
                "--flag",
                "True",
                "-k",
                "3",
                "--layers",
                "[64, 32]",
                "--lr",
                "0.05",
                "--n_estimators",
                "10",
                "--name",
                "forest",
                "--opts",
                "a=x,b=2",
                "--raw",
                "not json",
            ]
        );
    }

    #[test]
    fn the_environment_follows_the_toolkit() {
        let mut job = TrainingJob {
            training_job_name: "job".into(),
            ..Default::default()
        };
        job.input_data_config = vec![crate::training::record::Channel {
            channel_name: "train".into(),
            content_type: Some("text/csv".into()),
            ..Default::default()
        }];
        let script = ScriptJob {
            framework: "pier-script".into(),
            entry_point: "train.py".into(),
            submit_directory: "s3://bucket/sourcedir.tar.gz".into(),
            log_level: 20,
            hyperparameters: [
                ("epochs".to_string(), json!(3)),
                ("sagemaker_program".to_string(), json!("train.py")),
                ("optimizer".to_string(), json!("adam")),
                (
                    "_tuning_objective_metric".to_string(),
                    json!("validation:loss"),
                ),
                (
                    "sagemaker_distributed_dataparallel_enabled".to_string(),
                    json!(false),
                ),
            ]
            .into(),
            channels: vec![crate::channels::Channel {
                name: "train".into(),
                uri: "s3://bucket/train".into(),
                location: crate::channels::Location::parse("s3://bucket/train").unwrap(),
                data_type: crate::channels::DataType::S3Prefix,
                content_type: None,
                compression: crate::channels::Compression::None,
            }],
            metrics: Vec::new(),
            runtime: None,
            container: None,
        };
        let folder = JobFolder::new(Path::new("/w"), "job");
        let env: BTreeMap<String, String> =
            environment(&job, &script, &folder, 4).into_iter().collect();
        assert_eq!(env["SM_MODEL_DIR"], "/w/job/model");
        assert_eq!(env["SM_CHANNELS"], r#"["train"]"#);
        assert_eq!(env["SM_CHANNEL_TRAIN"], "/w/job/input/data/train");
        assert_eq!(env["SM_HPS"], r#"{"epochs":3,"optimizer":"adam"}"#);
        assert_eq!(env["SM_HP_EPOCHS"], "3");
        assert_eq!(env["SM_HP_OPTIMIZER"], "adam");
        assert!(!env.contains_key("SM_HP_SAGEMAKER_PROGRAM"));
        assert_eq!(
            env["SM_USER_ARGS"],
            r#"["--epochs","3","--optimizer","adam"]"#
        );
        assert_eq!(
            env["SM_FRAMEWORK_PARAMS"],
            r#"{"sagemaker_distributed_dataparallel_enabled":false}"#
        );
        assert_eq!(env["SM_NUM_CPUS"], "4");
        assert_eq!(env["SM_HOSTS"], r#"["algo-1"]"#);
        assert_eq!(env["SM_CURRENT_HOST"], "algo-1");
        assert_eq!(env["SM_MODULE_DIR"], "s3://bucket/sourcedir.tar.gz");
        assert_eq!(env["SM_MODULE_NAME"], "train");
        assert_eq!(env["SM_LOG_LEVEL"], "20");
        assert_eq!(env["SM_OUTPUT_DATA_DIR"], "/w/job/output/data");
        let training: Value = serde_json::from_str(&env["SM_TRAINING_ENV"]).unwrap();
        assert_eq!(
            training["channel_input_dirs"]["train"],
            "/w/job/input/data/train"
        );
        assert_eq!(training["hyperparameters"]["epochs"], 3);
        assert_eq!(
            training["input_data_config"]["train"]["ContentType"],
            "text/csv"
        );
    }
}
