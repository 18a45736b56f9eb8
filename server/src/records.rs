//! Control-plane records: Model, EndpointConfig, Endpoint, in SageMaker's field names.
//!
//! The same types are the API's request/response bodies and the rows persisted by
//! [`crate::db`], so what `Describe*` returns after a restart is exactly what was stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Region and account used in ARNs (Pier is not AWS; these only keep ARNs well-formed).
pub const REGION: &str = "local";
/// See [`REGION`].
pub const ACCOUNT: &str = "000000000000";

/// `arn:aws:sagemaker:local:000000000000:<kind>/<name>` (SageMaker lower-cases the name).
pub fn arn(kind: &str, name: &str) -> String {
    format!(
        "arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{}",
        name.to_ascii_lowercase()
    )
}

/// Seconds since the Unix epoch, as the AWS JSON protocol writes timestamps.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `PrimaryContainer` of CreateModel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerDefinition {
    /// Runtime kind: `onnx` (later `xgboost`, `lightgbm`, built-in algorithm names).
    pub image: String,
    /// `pier://NAME[/VERSION]`, a local path, or a `file://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_data_url: Option<String>,
    /// Environment variables; Pier reads `PIER_*` options from here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
}

/// Where a Model's artifact lives in the store, pinned at CreateModel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArtifactRef {
    /// Store name.
    pub name: String,
    /// Store version.
    pub version: u64,
}

impl std::fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// A Model: a name bound to an artifact version and runtime options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelRecord {
    /// Name.
    pub model_name: String,
    /// ARN.
    pub model_arn: String,
    /// The container (runtime) definition as given.
    pub primary_container: ContainerDefinition,
    /// Accepted for compatibility; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Creation time.
    pub creation_time: f64,
    /// The pinned artifact (a Pier extension field).
    pub pier_artifact: ArtifactRef,
}

/// One production variant of an endpoint config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProductionVariant {
    /// Variant name, unique within the config.
    pub variant_name: String,
    /// The Model it serves.
    pub model_name: String,
    /// Relative traffic weight (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_variant_weight: Option<f64>,
    /// Accepted for compatibility; Pier runs one copy per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_instance_count: Option<u32>,
    /// Accepted for compatibility; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Dynamic batching for this variant (a Pier extension field); unset fields take the
    /// model's `PIER_*` defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_batching: Option<BatchingConfig>,
}

/// `PierBatching` of a production variant: Triton's dynamic batcher settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most rows per batch; 0 turns batching off for this variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
    /// Longest the oldest request waits for a fuller batch, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_delay_microseconds: Option<u64>,
    /// Batch sizes that go at once when reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_batch_sizes: Option<Vec<usize>>,
    /// Most requests waiting; more are answered 429 at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_size: Option<usize>,
}

impl ProductionVariant {
    /// The weight, defaulting to 1.0 as SageMaker does.
    pub fn weight(&self) -> f64 {
        self.initial_variant_weight.unwrap_or(1.0)
    }
}

/// An EndpointConfig.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointConfigRecord {
    /// Name.
    pub endpoint_config_name: String,
    /// ARN.
    pub endpoint_config_arn: String,
    /// The variants.
    pub production_variants: Vec<ProductionVariant>,
    /// Creation time.
    pub creation_time: f64,
}

/// Lifecycle of an endpoint, as SageMaker names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointStatus {
    /// Loading its first config.
    Creating,
    /// Serving.
    InService,
    /// Serving the old config while a new one loads.
    Updating,
    /// Could not load its first config.
    Failed,
    /// Being deleted.
    Deleting,
}

/// Current state of one variant of a live endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VariantState {
    /// Variant name.
    pub variant_name: String,
    /// Weight now in effect.
    pub current_weight: f64,
    /// Weight last asked for.
    pub desired_weight: f64,
    /// Always 1 (one copy per Pier process).
    pub current_instance_count: u32,
    /// As asked for.
    pub desired_instance_count: u32,
    /// Model served (a Pier extension field).
    pub pier_model_name: String,
    /// Artifact served (a Pier extension field).
    pub pier_artifact: String,
}

/// An Endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointRecord {
    /// Name.
    pub endpoint_name: String,
    /// ARN.
    pub endpoint_arn: String,
    /// The config in service (or being created).
    pub endpoint_config_name: String,
    /// Status.
    pub endpoint_status: EndpointStatus,
    /// Why the last create or update failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Variants in service (empty until the first config is in service).
    #[serde(default)]
    pub production_variants: Vec<VariantState>,
    /// Creation time.
    pub creation_time: f64,
    /// Last change.
    pub last_modified_time: f64,
}
