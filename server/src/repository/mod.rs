//! Serving a Triton model repository (`pier serve --model-repository DIR`): every
//! `<model>/config.pbtxt` with `<model>/<version>/model.onnx` becomes a v2 model of the same
//! name and versions, so tritonclient scripts and perf_analyzer run unchanged.
//!
//! At start, each model folder is read on a blocking thread: its config ([`config`], parsed
//! by the small text-format reader [`pbtxt`]), the versions its `version_policy` selects,
//! each version's ONNX file loaded on the default runtime and warmed, and the config's
//! inputs and outputs (names, datatypes, dims under `max_batch_size`) checked against what
//! the model declares. `dynamic_batching` becomes the version's batcher (Triton's
//! `max_queue_delay_microseconds` and `preferred_batch_size`, `max_batch_size` rows a
//! batch), and `instance_group` counts give batch slots per instance. A field Pier does not
//! honour is a warning naming it; a model Pier cannot serve (an unsupported platform, a
//! config that disagrees with its model, a file that does not load) is refused alone, with
//! the reason logged, and the rest serve.
//!
//! The models are published in the serving snapshot (`ServingSnapshot::repository`) and
//! routed by the invocation core like any v2 name; the repository is read once (no polling).

pub mod config;
pub mod pbtxt;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pier_runtimes::{Model, TensorSpec};

use self::config::{TensorConfig, TritonConfig};
use crate::metrics::ModelLabels;
use crate::records::ArtifactRef;
use crate::serving::LoadedModel;
use crate::serving::batcher::BatchSettings;
use crate::state::DataPlane;

/// One repository model in service.
#[derive(Debug)]
pub struct RepositoryModel {
    /// Its name (the folder's).
    pub name: String,
    /// What its config.pbtxt says.
    pub config: TritonConfig,
    /// Its loaded versions.
    pub versions: BTreeMap<u64, Arc<LoadedModel>>,
}

impl RepositoryModel {
    /// The version a request without one gets: the highest.
    pub fn default_version(&self) -> u64 {
        *self
            .versions
            .keys()
            .next_back()
            .expect("a model has a version")
    }
}

/// What reading a repository gave.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Models that serve.
    pub models: Vec<RepositoryModel>,
    /// Models refused, with the reason.
    pub refused: Vec<(String, String)>,
}

/// Reads and loads every model of `dir`. A model that fails is refused alone (logged).
pub async fn load(data: &DataPlane, dir: &Path) -> std::io::Result<Loaded> {
    let mut folders: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    folders.sort();
    let mut loaded = Loaded::default();
    for (name, folder) in folders {
        let (d, n) = (data.clone(), name.clone());
        let result = tokio::task::spawn_blocking(move || load_model(&d, &n, &folder))
            .await
            .unwrap_or_else(|e| Err(format!("the loader stopped: {e}")));
        match result {
            Ok((config, versions)) => {
                let versions = versions
                    .into_iter()
                    .map(|(v, model)| Ok((v, serve(data, &name, v, model, &config)?)))
                    .collect::<Result<BTreeMap<_, _>, String>>();
                match versions {
                    Ok(versions) => {
                        tracing::info!(model = %name, versions = ?versions.keys().collect::<Vec<_>>(), "repository model serving");
                        loaded.models.push(RepositoryModel {
                            name,
                            config,
                            versions,
                        });
                    }
                    Err(reason) => refuse(&mut loaded, name, reason),
                }
            }
            Err(reason) => refuse(&mut loaded, name, reason),
        }
    }
    Ok(loaded)
}

fn refuse(loaded: &mut Loaded, name: String, reason: String) {
    tracing::error!(model = %name, %reason, "repository model refused");
    loaded.refused.push((name, reason));
}

/// The served copy of one version: batched as `dynamic_batching` says, with its instances'
/// batch slots. Needs a tokio runtime (the batcher's actor).
fn serve(
    data: &DataPlane,
    name: &str,
    version: u64,
    model: Arc<dyn Model>,
    config: &TritonConfig,
) -> Result<Arc<LoadedModel>, String> {
    let labels = ModelLabels {
        model: name.to_owned(),
        version: version.to_string(),
        ..ModelLabels::default()
    };
    let artifact = ArtifactRef {
        name: name.to_owned(),
        version,
    };
    let mut base = LoadedModel::new(artifact, model, labels);
    if config.max_batch_size > 0 {
        base.max_rows = Some(config.max_batch_size);
    }
    let base = Arc::new(base);
    let batching = match &config.dynamic_batching {
        None => None,
        Some(b) => {
            let settings = BatchSettings {
                max_batch_size: config.max_batch_size,
                max_queue_delay: Duration::from_micros(b.max_queue_delay_microseconds),
                preferred_batch_sizes: b.preferred_batch_size.clone(),
                ..BatchSettings::default()
            };
            settings
                .validate()
                .map_err(|e| format!("dynamic_batching: {e}"))?;
            crate::control::options::check_batchable(base.model.signature())
                .map_err(|e| format!("dynamic_batching: {e}"))?;
            Some((settings, data.serving.pool.clone()))
        }
    };
    if batching.is_none() {
        return Ok(base);
    }
    Ok(base.serve_as("", "", name, batching, config.instance_count))
}

/// A model's selected versions, loaded, ascending.
type Versions = Vec<(u64, Arc<dyn Model>)>;

/// Reads one model folder: its config, the versions its policy selects, each loaded,
/// warmed and checked against the config. Blocking.
fn load_model(
    data: &DataPlane,
    name: &str,
    folder: &Path,
) -> Result<(TritonConfig, Versions), String> {
    let config_path = folder.join("config.pbtxt");
    let (config, warnings) = match std::fs::metadata(&config_path) {
        Ok(m) if m.len() > pbtxt::MAX_BYTES as u64 => {
            return Err(format!(
                "config.pbtxt is larger than {} bytes",
                pbtxt::MAX_BYTES
            ));
        }
        Ok(_) => {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| format!("config.pbtxt cannot be read: {e}"))?;
            config::read(&text)?
        }
        Err(_) => {
            tracing::warn!(model = %name, "no config.pbtxt: inputs, outputs and batching come from the model");
            config::read("")?
        }
    };
    for w in &warnings {
        tracing::warn!(model = %name, "config.pbtxt: {w}");
    }
    if let Some(n) = &config.name
        && n != name
    {
        return Err(format!(
            "config.pbtxt names the model {n:?} but its folder is {name:?}"
        ));
    }
    let mut present: Vec<u64> = std::fs::read_dir(folder)
        .map_err(|e| format!("cannot list the model folder: {e}"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    present.sort_unstable();
    let selected = config::select(&config.version_policy, &present);
    if selected.is_empty() {
        return Err(format!(
            "no version folder matches its version_policy (folders: {present:?})"
        ));
    }
    let file = config
        .default_model_filename
        .clone()
        .unwrap_or_else(|| "model.onnx".into());
    let max_bytes = data.config.import.max_model_bytes;
    let mut versions = Vec::with_capacity(selected.len());
    for v in selected {
        let path = folder.join(v.to_string()).join(&file);
        let meta =
            std::fs::metadata(&path).map_err(|_| format!("version {v}: {file} is missing"))?;
        if !meta.is_file() {
            return Err(format!("version {v}: {file} is not a file"));
        }
        if meta.len() > max_bytes {
            return Err(format!(
                "version {v}: {file} is larger than --max-model-bytes ({max_bytes})"
            ));
        }
        let label = format!("{name}/{v}");
        let model = pier_runtimes::onnx::load_default(&path, None, &label)
            .map_err(|e| format!("version {v}: {e}"))?;
        check_signature(&config, model.signature()).map_err(|e| format!("version {v}: {e}"))?;
        crate::serving::models::warm_up(model.as_ref())
            .map_err(|e| format!("version {v}: the warm-up request failed: {e}"))?;
        versions.push((v, model));
    }
    Ok((config, versions))
}

/// Checks the config's inputs and outputs against the model's: each named one exists with
/// the same datatype and agreeing dims (the batch dimension added when `max_batch_size >
/// 0`; -1 agrees with anything); every model input is in the config when the config lists
/// inputs; a batching config needs a batch dimension on every input.
pub fn check_signature(
    config: &TritonConfig,
    signature: &pier_runtimes::Signature,
) -> Result<(), String> {
    let check = |kind: &str, declared: &[TensorConfig], actual: &[TensorSpec]| {
        for t in declared {
            let spec = actual.iter().find(|s| s.name == t.name).ok_or_else(|| {
                format!(
                    "config.pbtxt {kind} {:?} is not in the model (its {kind}s: {})",
                    t.name,
                    actual
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if spec.dtype != t.dtype {
                return Err(format!(
                    "config.pbtxt {kind} {:?} is {} but the model's is {}",
                    t.name, t.dtype, spec.dtype
                ));
            }
            let mut expected = t.dims.clone();
            if config.max_batch_size > 0 {
                expected.insert(0, -1);
            }
            let agree = expected.len() == spec.shape.len()
                && expected
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&a, &b)| a < 0 || b < 0 || a == b);
            // A model output of one dimension with `dims: [1]` is Triton's usual way to
            // write a per-row scalar.
            let scalar_per_row =
                config.max_batch_size > 0 && spec.shape.len() == 1 && t.dims == [1];
            if !agree && !scalar_per_row {
                return Err(format!(
                    "config.pbtxt {kind} {:?} has dims {:?}{} but the model's shape is {:?}",
                    t.name,
                    t.dims,
                    if config.max_batch_size > 0 {
                        " (after the batch dimension)"
                    } else {
                        ""
                    },
                    spec.shape
                ));
            }
        }
        Ok(())
    };
    check("input", &config.inputs, &signature.inputs)?;
    check("output", &config.outputs, &signature.outputs)?;
    if !config.inputs.is_empty()
        && let Some(missing) = signature
            .inputs
            .iter()
            .find(|s| !config.inputs.iter().any(|t| t.name == s.name))
    {
        return Err(format!(
            "the model's input {:?} is not in config.pbtxt",
            missing.name
        ));
    }
    if config.max_batch_size > 0
        && let Some(t) = signature
            .inputs
            .iter()
            .find(|s| s.shape.first().is_none_or(|&d| d >= 0))
    {
        return Err(format!(
            "max_batch_size {} needs a batch dimension, but the model's input {:?} has shape {:?}",
            config.max_batch_size, t.name, t.shape
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use pier_runtimes::{DataType, Signature};

    use super::*;

    fn iris() -> Signature {
        Signature {
            inputs: vec![TensorSpec::new("x", DataType::Fp32, vec![-1, 4])],
            outputs: vec![
                TensorSpec::new("label", DataType::Int64, vec![-1]),
                TensorSpec::new("p", DataType::Fp32, vec![-1, 3]),
            ],
        }
    }

    fn config(text: &str) -> TritonConfig {
        config::read(text).unwrap().0
    }

    #[test]
    fn a_config_that_agrees_passes() {
        let c = config(
            r#"max_batch_size: 8
            input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]
            output [{ name: "label" data_type: TYPE_INT64 dims: [1] }, { name: "p" data_type: TYPE_FP32 dims: [-1] }]"#,
        );
        check_signature(&c, &iris()).unwrap();
        check_signature(&config(""), &iris()).unwrap();
        let c = config(r#"input [{ name: "x" data_type: TYPE_FP32 dims: [-1, 4] }]"#);
        check_signature(&c, &iris()).unwrap();
    }

    #[test]
    fn a_config_that_disagrees_is_refused_by_name() {
        for (text, needle) in [
            (
                r#"input [{ name: "y" data_type: TYPE_FP32 dims: [4] }]"#,
                "input \"y\" is not in the model",
            ),
            (
                r#"max_batch_size: 4 input [{ name: "x" data_type: TYPE_FP64 dims: [4] }]"#,
                "is FP64 but the model's is FP32",
            ),
            (
                r#"max_batch_size: 4 input [{ name: "x" data_type: TYPE_FP32 dims: [5] }]"#,
                "has dims [5] (after the batch dimension)",
            ),
            (
                r#"input [{ name: "x" data_type: TYPE_FP32 dims: [4] }]"#,
                "has dims [4] but the model's shape is [-1, 4]",
            ),
            (
                r#"output [{ name: "q" data_type: TYPE_FP32 dims: [3] }]"#,
                "output \"q\" is not in the model",
            ),
        ] {
            let e = check_signature(&config(text), &iris()).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let fixed = Signature {
            inputs: vec![TensorSpec::new("x", DataType::Fp32, vec![1, 4])],
            outputs: vec![],
        };
        let e = check_signature(&config("max_batch_size: 2"), &fixed).unwrap_err();
        assert!(e.contains("needs a batch dimension"), "{e}");
        let two = Signature {
            inputs: vec![
                TensorSpec::new("x", DataType::Fp32, vec![-1, 4]),
                TensorSpec::new("z", DataType::Fp32, vec![-1, 1]),
            ],
            outputs: vec![],
        };
        let c = config(r#"input [{ name: "x" data_type: TYPE_FP32 dims: [-1, 4] }]"#);
        let e = check_signature(&c, &two).unwrap_err();
        assert!(e.contains("input \"z\" is not in config.pbtxt"), "{e}");
    }
}
