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
//! | `PIER_MAX_QUEUE_DELAY_US` | batching default: longest wait for a fuller batch, µs (0) |
//! | `PIER_PREFERRED_BATCH_SIZES` | batching default: comma-separated sizes |
//! | `PIER_MAX_QUEUE_SIZE` | batching default: most waiting requests (1024) |
//!
//! boto3 validates `ProductionVariants` against SageMaker's model and refuses `PierBatching`,
//! so the same settings can also come as endpoint-config tags,
//! `pier:batching:<VariantName>:<Field>` (Field: `MaxBatchSize`, `MaxQueueDelayMicroseconds`,
//! `PreferredBatchSizes` as comma-separated sizes, `MaxQueueSize`), read once at
//! CreateEndpointConfig by [`apply_batching_tags`].
//!
//! Pure functions; parsed at CreateModel (so mistakes are ValidationExceptions) and again
//! at deploy.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use pier_runtimes::{Backend, Device, LoadOptions, Signature};

use crate::records::{BatchingConfig, ContainerDefinition, ProductionVariant, Tag};
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

/// The tag-key prefix that carries a variant's batching settings.
pub const BATCHING_TAG_PREFIX: &str = "pier:batching:";

/// Folds `pier:batching:<VariantName>:<Field>` tags into the variants' `PierBatching`.
/// A field set both ways must agree; a tag naming no variant, an unknown field or a value
/// that is not a number is refused, naming the tag. Other tags are left alone.
pub fn apply_batching_tags(variants: &mut [ProductionVariant], tags: &[Tag]) -> Result<(), String> {
    for tag in tags {
        let Some(rest) = tag.key.strip_prefix(BATCHING_TAG_PREFIX) else {
            continue;
        };
        let key = &tag.key;
        let Some((variant_name, field)) = rest.rsplit_once(':') else {
            return Err(format!(
                "Tag {key:?} must be {BATCHING_TAG_PREFIX}<VariantName>:<Field>"
            ));
        };
        let Some(variant) = variants.iter_mut().find(|v| v.variant_name == variant_name) else {
            return Err(format!(
                "Tag {key:?} names variant {variant_name:?}, which is not in ProductionVariants"
            ));
        };
        let batching = variant.pier_batching.get_or_insert_with(Default::default);
        let value = tag.value.trim();
        let number = |v: &str| -> Result<u64, String> {
            v.trim().parse::<u64>().map_err(|_| {
                format!(
                    "Tag {key:?} has value {:?}, which is not a whole number",
                    tag.value
                )
            })
        };
        let clash = |field: &str| {
            format!(
                "Tag {key:?} sets {field} of variant {variant_name:?}, which PierBatching sets to another value"
            )
        };
        match field {
            "MaxBatchSize" => {
                let n = usize::try_from(number(value)?).map_err(|_| clash(field))?;
                if batching
                    .max_batch_size
                    .replace(n)
                    .is_some_and(|old| old != n)
                {
                    return Err(clash(field));
                }
            }
            "MaxQueueDelayMicroseconds" => {
                let n = number(value)?;
                if batching
                    .max_queue_delay_microseconds
                    .replace(n)
                    .is_some_and(|old| old != n)
                {
                    return Err(clash(field));
                }
            }
            "MaxQueueSize" => {
                let n = usize::try_from(number(value)?).map_err(|_| clash(field))?;
                if batching
                    .max_queue_size
                    .replace(n)
                    .is_some_and(|old| old != n)
                {
                    return Err(clash(field));
                }
            }
            "PreferredBatchSizes" => {
                let sizes = value
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| number(p).and_then(|n| usize::try_from(n).map_err(|_| clash(field))))
                    .collect::<Result<Vec<_>, _>>()?;
                if batching
                    .preferred_batch_sizes
                    .replace(sizes.clone())
                    .is_some_and(|old| old != sizes)
                {
                    return Err(clash(field));
                }
            }
            other => {
                return Err(format!(
                    "Tag {key:?} names field {other:?}; the batching fields are MaxBatchSize, MaxQueueDelayMicroseconds, PreferredBatchSizes and MaxQueueSize"
                ));
            }
        }
    }
    Ok(())
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

    fn variant(name: &str, batching: Option<BatchingConfig>) -> ProductionVariant {
        serde_json::from_value(serde_json::json!({
            "VariantName": name,
            "ModelName": "m",
            "PierBatching": batching,
        }))
        .unwrap()
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn batching_tags_fill_each_variants_settings() {
        let mut variants = vec![variant("A", None), variant("B", None)];
        let tags = [
            tag("pier:batching:A:MaxBatchSize", "32"),
            tag("pier:batching:A:MaxQueueDelayMicroseconds", "150"),
            tag("pier:batching:A:PreferredBatchSizes", "8, 16"),
            tag("pier:batching:B:MaxQueueSize", "99"),
            tag("team", "search"),
        ];
        apply_batching_tags(&mut variants, &tags).unwrap();
        let a = variants[0].pier_batching.as_ref().unwrap();
        assert_eq!(a.max_batch_size, Some(32));
        assert_eq!(a.max_queue_delay_microseconds, Some(150));
        assert_eq!(a.preferred_batch_sizes.as_deref(), Some(&[8, 16][..]));
        let b = variants[1].pier_batching.as_ref().unwrap();
        assert_eq!((b.max_batch_size, b.max_queue_size), (None, Some(99)));
        let s = resolve_batching(&container(&[]), Some(a)).unwrap().unwrap();
        assert_eq!(s.max_queue_delay, Duration::from_micros(150));
    }

    #[test]
    fn bad_batching_tags_name_the_tag() {
        let cases = [
            (
                "pier:batching:C:MaxBatchSize",
                "4",
                "not in ProductionVariants",
            ),
            ("pier:batching:A:MaxBatch", "4", "names field \"MaxBatch\""),
            ("pier:batching:A:MaxBatchSize", "-4", "not a whole number"),
            (
                "pier:batching:A:PreferredBatchSizes",
                "4,x",
                "not a whole number",
            ),
            (
                "pier:batching:MaxBatchSize",
                "4",
                "must be pier:batching:<VariantName>:<Field>",
            ),
            (
                "pier:batching:A:MaxQueueSize",
                "5",
                "PierBatching sets to another value",
            ),
        ];
        for (key, value, expected) in cases {
            let preset = BatchingConfig {
                max_queue_size: Some(7),
                ..Default::default()
            };
            let mut variants = vec![variant("A", Some(preset))];
            let err = apply_batching_tags(&mut variants, &[tag(key, value)]).unwrap_err();
            assert!(err.contains(key) && err.contains(expected), "{key}: {err}");
        }
        // The same value both ways is no clash.
        let preset = BatchingConfig {
            max_queue_size: Some(7),
            ..Default::default()
        };
        let mut variants = vec![variant("A", Some(preset))];
        apply_batching_tags(&mut variants, &[tag("pier:batching:A:MaxQueueSize", "7")]).unwrap();
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
