//! Runtime options of a Model and its variants, read from SageMaker-shaped records:
//! `PIER_*` variables in `ContainerDefinition.Environment` (backend, device, threads and the
//! model's batching defaults) and a variant's `PierBatching`, which overrides those defaults
//! field by field.
//!
//! | variable | meaning |
//! |---|---|
//! | `PIER_BACKEND` | `tract` (default) or `ort` |
//! | `PIER_DEVICE` | `cpu` (default), `cuda` (ort; the load fails without CUDA), `auto` |
//! | `PIER_INTRA_OP_THREADS` | ort threads per session (default 1) |
//! | `PIER_SESSIONS` | ort sessions kept for concurrent predicts (default: cores) |
//! | `PIER_MAX_BATCH_SIZE` | batching default: most rows per batch (unset or 0: off) |
//! | `PIER_MAX_QUEUE_DELAY_US` | batching default: longest wait for a fuller batch, µs (500) |
//! | `PIER_PREFERRED_BATCH_SIZES` | batching default: comma-separated sizes |
//! | `PIER_MAX_QUEUE_SIZE` | batching default: most waiting requests (1024) |
//!
//! Pure functions; parsed at CreateModel (so mistakes are ValidationExceptions) and again
//! at deploy.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use pier_runtimes::{Backend, Device, LoadOptions, Signature};

use crate::records::{BatchingConfig, ContainerDefinition};
use crate::serving::batcher::BatchSettings;

fn var<T: FromStr>(env: &BTreeMap<String, String>, name: &str) -> Result<Option<T>, String> {
    env.get(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("Environment {name}={v:?} is not a valid value"))
        })
        .transpose()
}

/// The load options a Model's environment asks for.
pub fn load_options(container: &ContainerDefinition) -> Result<LoadOptions, String> {
    let env = &container.environment;
    let mut options = LoadOptions::default();
    if let Some(b) = env.get("PIER_BACKEND") {
        options.backend =
            Backend::parse(b).map_err(|e| format!("Environment PIER_BACKEND: {e}"))?;
    }
    if let Some(d) = env.get("PIER_DEVICE") {
        options.device = Device::parse(d).map_err(|e| format!("Environment PIER_DEVICE: {e}"))?;
    }
    if let Some(t) = var::<usize>(env, "PIER_INTRA_OP_THREADS")? {
        options.intra_op_threads = t.max(1);
    }
    if let Some(s) = var::<usize>(env, "PIER_SESSIONS")? {
        options.sessions = s.max(1);
    }
    if options.device != Device::Cpu && options.backend == Backend::Tract {
        return Err(format!(
            "Environment PIER_DEVICE={} needs PIER_BACKEND=ort (tract runs on the CPU)",
            options.device.as_str()
        ));
    }
    Ok(options)
}

/// Checks a Model's environment at CreateModel: every `PIER_*` value parses and the
/// backend asked for can run here.
pub fn validate_model(container: &ContainerDefinition) -> Result<(), String> {
    let options = load_options(container)?;
    options
        .backend
        .check_available()
        .map_err(|e| format!("Environment PIER_BACKEND={}: {e}", options.backend.as_str()))?;
    resolve_batching(container, None).map(|_| ())
}

/// The batching a variant runs with: its `PierBatching` over the model's defaults; `None`
/// when batching is off (no MaxBatchSize anywhere, or 0).
pub fn resolve_batching(
    container: &ContainerDefinition,
    variant: Option<&BatchingConfig>,
) -> Result<Option<BatchSettings>, String> {
    let env = &container.environment;
    let preferred_default = env
        .get("PIER_PREFERRED_BATCH_SIZES")
        .map(|v| {
            v.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.trim().parse::<usize>().map_err(|_| {
                        format!(
                            "Environment PIER_PREFERRED_BATCH_SIZES={v:?} is not a list of sizes"
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let v = variant.cloned().unwrap_or_default();
    let max = match v
        .max_batch_size
        .or(var::<usize>(env, "PIER_MAX_BATCH_SIZE")?)
    {
        None | Some(0) => return Ok(None),
        Some(m) => m,
    };
    let defaults = BatchSettings::default();
    let settings = BatchSettings {
        max_batch_size: max,
        max_queue_delay: v
            .max_queue_delay_microseconds
            .or(var::<u64>(env, "PIER_MAX_QUEUE_DELAY_US")?)
            .map_or(defaults.max_queue_delay, Duration::from_micros),
        preferred_batch_sizes: v
            .preferred_batch_sizes
            .or(preferred_default)
            .unwrap_or_default(),
        max_queue_size: v
            .max_queue_size
            .or(var::<usize>(env, "PIER_MAX_QUEUE_SIZE")?)
            .unwrap_or(defaults.max_queue_size),
    };
    settings
        .validate()
        .map_err(|e| format!("PierBatching: {e}"))?;
    Ok(Some(settings))
}

/// Checks that a model can be batched: every input's first dimension is the batch (-1).
pub fn check_batchable(signature: &Signature) -> Result<(), String> {
    match signature
        .inputs
        .iter()
        .find(|i| i.shape.first() != Some(&-1))
    {
        Some(i) => Err(format!(
            "input {:?} has no dynamic batch dimension (shape {:?}); set PierBatching.MaxBatchSize to 0",
            i.name, i.shape
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(env: &[(&str, &str)]) -> ContainerDefinition {
        ContainerDefinition {
            image: "onnx".into(),
            model_data_url: None,
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn batching_is_off_unless_a_max_batch_size_is_given() {
        assert_eq!(resolve_batching(&container(&[]), None).unwrap(), None);
        let variant = BatchingConfig {
            max_batch_size: Some(0),
            ..Default::default()
        };
        let c = container(&[("PIER_MAX_BATCH_SIZE", "32")]);
        assert_eq!(resolve_batching(&c, Some(&variant)).unwrap(), None);
    }

    #[test]
    fn variant_fields_override_model_defaults() {
        let c = container(&[
            ("PIER_MAX_BATCH_SIZE", "32"),
            ("PIER_MAX_QUEUE_DELAY_US", "100"),
            ("PIER_PREFERRED_BATCH_SIZES", "8, 16"),
        ]);
        let s = resolve_batching(&c, None).unwrap().unwrap();
        assert_eq!(s.max_batch_size, 32);
        assert_eq!(s.preferred_batch_sizes, [8, 16]);
        let variant = BatchingConfig {
            max_queue_delay_microseconds: Some(2000),
            max_queue_size: Some(7),
            ..Default::default()
        };
        let s = resolve_batching(&c, Some(&variant)).unwrap().unwrap();
        assert_eq!(s.max_queue_delay, Duration::from_micros(2000));
        assert_eq!((s.max_batch_size, s.max_queue_size), (32, 7));
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = load_options(&container(&[("PIER_BACKEND", "caffe")])).unwrap_err();
        assert!(err.contains("PIER_BACKEND"), "{err}");
        let err = load_options(&container(&[("PIER_DEVICE", "cuda")])).unwrap_err();
        assert!(err.contains("PIER_BACKEND=ort"), "{err}");
        let err = resolve_batching(&container(&[("PIER_MAX_BATCH_SIZE", "x")]), None).unwrap_err();
        assert!(err.contains("PIER_MAX_BATCH_SIZE"), "{err}");
        let variant = BatchingConfig {
            max_batch_size: Some(4),
            preferred_batch_sizes: Some(vec![8]),
            ..Default::default()
        };
        let err = resolve_batching(&container(&[]), Some(&variant)).unwrap_err();
        assert!(err.contains("PreferredBatchSizes"), "{err}");
    }
}
