//! Triton's model configuration and statistics for a v2 name, built once as protobuf
//! messages (the gRPC answer) and rendered as Triton's JSON for REST, so both protocols
//! report the same thing. Dims follow Triton: with `max_batch_size > 0` they leave out the
//! batch dimension, and a tensor that is only a batch dimension has dims `[1]` with an empty
//! reshape.
//!
//! Pure functions; no shared state.

use pier_proto::inference as pb;
use pier_runtimes::{DataType, TensorSpec};
use serde_json::{Value, json};

use super::{Described, ModelStats, batched};

/// Triton's platform name for a manifest runtime kind.
pub fn platform(runtime: &str) -> String {
    match runtime {
        "onnx" => "onnxruntime_onnx".to_owned(),
        other => format!("pier_{other}"),
    }
}

fn type_of(dtype: DataType) -> pb::DataType {
    match dtype {
        DataType::Bool => pb::DataType::TypeBool,
        DataType::Uint8 => pb::DataType::TypeUint8,
        DataType::Int8 => pb::DataType::TypeInt8,
        DataType::Int16 => pb::DataType::TypeInt16,
        DataType::Int32 => pb::DataType::TypeInt32,
        DataType::Int64 => pb::DataType::TypeInt64,
        DataType::Fp32 => pb::DataType::TypeFp32,
        DataType::Fp64 => pb::DataType::TypeFp64,
        DataType::Bytes => pb::DataType::TypeString,
    }
}

/// Dims and reshape of a tensor under Triton's batching convention.
fn dims(spec: &TensorSpec, batching: bool) -> (Vec<i64>, Option<pb::ModelTensorReshape>) {
    if !batching {
        return (spec.shape.clone(), None);
    }
    match &spec.shape[1..] {
        [] => (vec![1], Some(pb::ModelTensorReshape { shape: vec![] })),
        rest => (rest.to_vec(), None),
    }
}

/// The ModelConfig of a described name.
pub fn model_config(name: &str, d: &Described) -> pb::ModelConfig {
    let batching = match &d.repository {
        Some(r) => r.config.max_batch_size > 0,
        None => batched(&d.signature),
    };
    let mut config = pb::ModelConfig {
        name: name.to_owned(),
        platform: platform(&d.runtime),
        backend: "pier".to_owned(),
        runtime: d.runtime.clone(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(pb::model_version_policy::PolicyChoice::Latest(
                pb::model_version_policy::Latest {
                    num_versions: d.versions.len() as u32,
                },
            )),
        }),
        max_batch_size: if batching {
            i32::try_from(d.max_batch_size).unwrap_or(i32::MAX)
        } else {
            0
        },
        input: d
            .signature
            .inputs
            .iter()
            .map(|s| {
                let (dims, reshape) = dims(s, batching);
                pb::ModelInput {
                    name: s.name.clone(),
                    data_type: type_of(s.dtype) as i32,
                    dims,
                    reshape,
                    ..Default::default()
                }
            })
            .collect(),
        output: d
            .signature
            .outputs
            .iter()
            .map(|s| {
                let (dims, reshape) = dims(s, batching);
                pb::ModelOutput {
                    name: s.name.clone(),
                    data_type: type_of(s.dtype) as i32,
                    dims,
                    reshape,
                    ..Default::default()
                }
            })
            .collect(),
        instance_group: vec![pb::ModelInstanceGroup {
            name: name.to_owned(),
            count: 1,
            kind: pb::model_instance_group::Kind::Cpu as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    if let Some(r) = &d.repository {
        // A Triton repository model reports what its config.pbtxt says Pier honours.
        use crate::repository::config::VersionPolicy;
        use pb::model_version_policy::{All, Latest, PolicyChoice, Specific};
        config.backend = "onnxruntime".to_owned();
        config.version_policy = Some(pb::ModelVersionPolicy {
            policy_choice: Some(match &r.config.version_policy {
                VersionPolicy::Latest(n) => PolicyChoice::Latest(Latest { num_versions: *n }),
                VersionPolicy::All => PolicyChoice::All(All {}),
                VersionPolicy::Specific(v) => PolicyChoice::Specific(Specific {
                    versions: v
                        .iter()
                        .map(|&v| i64::try_from(v).unwrap_or(i64::MAX))
                        .collect(),
                }),
            }),
        });
        config.instance_group[0].count = i32::try_from(r.config.instance_count).unwrap_or(i32::MAX);
        config.scheduling_choice = r.config.dynamic_batching.as_ref().map(|b| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: b
                    .preferred_batch_size
                    .iter()
                    .map(|&s| i32::try_from(s).unwrap_or(i32::MAX))
                    .collect(),
                max_queue_delay_microseconds: b.max_queue_delay_microseconds,
                ..Default::default()
            })
        });
        if let Some(file) = &r.config.default_model_filename {
            config.default_model_filename.clone_from(file);
        }
    }
    config
}

fn type_name(data_type: i32) -> &'static str {
    pb::DataType::try_from(data_type).map_or("TYPE_INVALID", |t| t.as_str_name())
}

fn reshape_json(r: Option<&pb::ModelTensorReshape>) -> Option<Value> {
    r.map(|r| json!({ "shape": r.shape }))
}

/// Triton's JSON form of a ModelConfig (proto field names, enum names).
pub fn model_config_json(c: &pb::ModelConfig) -> Value {
    let inputs: Vec<Value> = c
        .input
        .iter()
        .map(|i| {
            let mut v = json!({"name": i.name, "data_type": type_name(i.data_type), "format": "FORMAT_NONE", "dims": i.dims, "is_shape_tensor": false, "allow_ragged_batch": false, "optional": false});
            if let Some(r) = reshape_json(i.reshape.as_ref()) {
                v["reshape"] = r;
            }
            v
        })
        .collect();
    let outputs: Vec<Value> = c
        .output
        .iter()
        .map(|o| {
            let mut v = json!({"name": o.name, "data_type": type_name(o.data_type), "dims": o.dims, "label_filename": "", "is_shape_tensor": false});
            if let Some(r) = reshape_json(o.reshape.as_ref()) {
                v["reshape"] = r;
            }
            v
        })
        .collect();
    let mut out = json!({
        "name": c.name,
        "platform": c.platform,
        "backend": c.backend,
        "runtime": c.runtime,
        "version_policy": version_policy_json(c),
        "max_batch_size": c.max_batch_size,
        "input": inputs,
        "output": outputs,
        "instance_group": c.instance_group.iter().map(|g| json!({"name": g.name, "kind": "KIND_CPU", "count": g.count, "gpus": []})).collect::<Vec<_>>(),
        "default_model_filename": c.default_model_filename,
        "parameters": {},
    });
    if let Some(pb::model_config::SchedulingChoice::DynamicBatching(b)) = &c.scheduling_choice {
        out["dynamic_batching"] = json!({
            "preferred_batch_size": b.preferred_batch_size,
            "max_queue_delay_microseconds": b.max_queue_delay_microseconds,
            "preserve_ordering": false,
        });
    }
    out
}

fn version_policy_json(c: &pb::ModelConfig) -> Value {
    use pb::model_version_policy::PolicyChoice;
    match c
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref())
    {
        Some(PolicyChoice::Latest(l)) => json!({"latest": {"num_versions": l.num_versions}}),
        Some(PolicyChoice::Specific(s)) => json!({"specific": {"versions": s.versions}}),
        _ => json!({"all": {}}),
    }
}

fn duration(count: u64, ns: u64) -> pb::StatisticDuration {
    pb::StatisticDuration { count, ns }
}

/// The ModelStatistics message of some counters.
pub fn statistics(s: &ModelStats) -> pb::ModelStatistics {
    let zero = || Some(duration(0, 0));
    pb::ModelStatistics {
        name: s.name.clone(),
        version: s.version.clone(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: Some(duration(s.success.0, s.success.1)),
            fail: Some(duration(s.fail.0, s.fail.1)),
            queue: Some(duration(s.success.0, 0)),
            compute_input: Some(duration(s.success.0, 0)),
            compute_infer: Some(duration(s.success.0, s.success.1)),
            compute_output: Some(duration(s.success.0, 0)),
            cache_hit: zero(),
            cache_miss: zero(),
        }),
        batch_stats: vec![],
    }
}

/// Triton's JSON form of some statistics.
pub fn statistics_json(stats: &[ModelStats]) -> Value {
    let d = |c: u64, ns: u64| json!({"count": c, "ns": ns});
    let models: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "version": s.version,
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": d(s.success.0, s.success.1),
                    "fail": d(s.fail.0, s.fail.1),
                    "queue": d(s.success.0, 0),
                    "compute_input": d(s.success.0, 0),
                    "compute_infer": d(s.success.0, s.success.1),
                    "compute_output": d(s.success.0, 0),
                    "cache_hit": d(0, 0),
                    "cache_miss": d(0, 0),
                },
                "batch_stats": [],
            })
        })
        .collect();
    json!({ "model_stats": models })
}
