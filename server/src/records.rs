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
///
/// Fields SageMaker documents that Pier cannot honour yet are read only to be refused
/// ([`ContainerDefinition::unsupported`]); unknown fields are refused by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ContainerDefinition {
    /// Runtime kind: `onnx` (later `xgboost`, `lightgbm`, built-in algorithm names).
    pub image: String,
    /// Kept and described back (Pier runs no containers, so there is no host to name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_hostname: Option<String>,
    /// `SingleModel` (default) or `MultiModel` (`ModelDataUrl` is a prefix of archives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `pier://NAME[/VERSION]`, a local path, or a `file://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_data_url: Option<String>,
    /// Environment variables; Pier reads `PIER_*` options from here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Refused: private registries.
    #[serde(default, skip_serializing)]
    pub image_config: Option<serde_json::Value>,
    /// Refused until Pier reads S3 model sources.
    #[serde(default, skip_serializing)]
    pub model_data_source: Option<serde_json::Value>,
    /// Refused.
    #[serde(default, skip_serializing)]
    pub additional_model_data_sources: Option<serde_json::Value>,
    /// Refused: there is no model package registry.
    #[serde(default, skip_serializing)]
    pub model_package_name: Option<serde_json::Value>,
    /// Refused.
    #[serde(default, skip_serializing)]
    pub inference_specification_name: Option<serde_json::Value>,
    /// `{"ModelCacheSetting": "Enabled"}` with `Mode = MultiModel` (Pier always caches;
    /// `Disabled` is refused), described back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_model_config: Option<serde_json::Value>,
}

impl ContainerDefinition {
    /// True for `Mode = MultiModel`.
    pub fn is_multi_model(&self) -> bool {
        self.mode.as_deref() == Some("MultiModel")
    }

    /// Checks `MultiModelConfig`: only with `Mode = MultiModel`, only `ModelCacheSetting`
    /// `Enabled` (Pier always caches the models it loads).
    pub fn check_multi_model_config(&self) -> Result<(), String> {
        let Some(config) = &self.multi_model_config else {
            return Ok(());
        };
        if !self.is_multi_model() {
            return Err("PrimaryContainer.MultiModelConfig needs Mode MultiModel".into());
        }
        let Some(fields) = config.as_object() else {
            return Err("PrimaryContainer.MultiModelConfig must be an object".into());
        };
        for (key, value) in fields {
            match (key.as_str(), value.as_str()) {
                ("ModelCacheSetting", Some("Enabled")) => {}
                ("ModelCacheSetting", Some("Disabled")) => {
                    return Err("PrimaryContainer.MultiModelConfig.ModelCacheSetting Disabled is not supported by Pier: it always caches loaded models (evicting under --multi-model-memory)".into());
                }
                ("ModelCacheSetting", _) => {
                    return Err(format!(
                        "PrimaryContainer.MultiModelConfig.ModelCacheSetting {value} is not Enabled or Disabled"
                    ));
                }
                (other, _) => {
                    return Err(format!(
                        "PrimaryContainer.MultiModelConfig.{other} is not a field Pier knows"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first field given that Pier reads only to refuse.
    pub fn unsupported(&self) -> Option<&'static str> {
        first_present(&[
            ("ImageConfig", self.image_config.is_some()),
            ("ModelDataSource", self.model_data_source.is_some()),
            (
                "AdditionalModelDataSources",
                self.additional_model_data_sources.is_some(),
            ),
            ("ModelPackageName", self.model_package_name.is_some()),
            (
                "InferenceSpecificationName",
                self.inference_specification_name.is_some(),
            ),
        ])
    }
}

/// The name of the first field marked present.
pub fn first_present(fields: &[(&'static str, bool)]) -> Option<&'static str> {
    fields.iter().find(|(_, present)| *present).map(|(n, _)| *n)
}

/// A resource tag, as SageMaker writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tag {
    /// Key (1–128 characters, not starting with `aws:`).
    pub key: String,
    /// Value (0–256 characters).
    pub value: String,
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
    /// Kept and described back; Pier's runtimes make no network calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_network_isolation: Option<bool>,
    /// Creation time.
    pub creation_time: f64,
    /// The pinned artifact (a Pier extension field); none for a multi-model Model, whose
    /// archives load per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_artifact: Option<ArtifactRef>,
    /// A serial inference pipeline's containers as given (then `primary_container` is the
    /// first, kept for Pier's own use and not described).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerDefinition>,
    /// As given with `Containers` (`Mode`: `Serial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_execution_config: Option<InferenceExecutionConfig>,
    /// A pipeline's artifacts, one per container in order (a Pier extension field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pier_pipeline: Vec<ArtifactRef>,
}

impl ModelRecord {
    /// Whether this Model is a serial inference pipeline.
    pub fn is_pipeline(&self) -> bool {
        !self.pier_pipeline.is_empty()
    }
}

/// CreateModel's `InferenceExecutionConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InferenceExecutionConfig {
    /// `Serial` (the containers run one after the other) or `Direct` (refused).
    pub mode: String,
}

/// One production variant of an endpoint config.
///
/// Fields SageMaker documents that Pier cannot honour yet are read only to be refused
/// ([`ProductionVariant::unsupported`]); unknown fields are refused by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProductionVariant {
    /// Variant name, unique within the config.
    pub variant_name: String,
    /// The Model it serves.
    pub model_name: String,
    /// Relative traffic weight (1.0 when omitted, and described back as 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_variant_weight: Option<f64>,
    /// Instances of the variant (at least 1): copies of its execution resources per serving
    /// process, Triton's `instance_group` count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_instance_count: Option<u32>,
    /// Kept and described back; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Dynamic batching for this variant (a Pier extension field); unset fields take the
    /// model's `PIER_*` defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_batching: Option<BatchingConfig>,
    /// Refused: no accelerators are attached this way.
    #[serde(default, skip_serializing)]
    pub accelerator_type: Option<serde_json::Value>,
    /// Refused.
    #[serde(default, skip_serializing)]
    pub core_dump_config: Option<serde_json::Value>,
    /// Refused: serverless endpoints are not served.
    #[serde(default, skip_serializing)]
    pub serverless_config: Option<serde_json::Value>,
    /// Refused.
    #[serde(default, skip_serializing, rename = "VolumeSizeInGB")]
    pub volume_size_in_gb: Option<serde_json::Value>,
    /// Refused (not enforced yet).
    #[serde(default, skip_serializing)]
    pub model_data_download_timeout_in_seconds: Option<serde_json::Value>,
    /// Refused (not enforced yet).
    #[serde(default, skip_serializing)]
    pub container_startup_health_check_timeout_in_seconds: Option<serde_json::Value>,
    /// Refused.
    #[serde(default, skip_serializing, rename = "EnableSSMAccess")]
    pub enable_ssm_access: Option<serde_json::Value>,
    /// Refused: instance scaling is not served.
    #[serde(default, skip_serializing)]
    pub managed_instance_scaling: Option<serde_json::Value>,
    /// Refused: routing is by weight only.
    #[serde(default, skip_serializing)]
    pub routing_config: Option<serde_json::Value>,
    /// Refused.
    #[serde(default, skip_serializing)]
    pub inference_ami_version: Option<serde_json::Value>,
}

impl ProductionVariant {
    /// The first field given that Pier reads only to refuse.
    pub fn unsupported(&self) -> Option<&'static str> {
        first_present(&[
            ("AcceleratorType", self.accelerator_type.is_some()),
            ("CoreDumpConfig", self.core_dump_config.is_some()),
            ("ServerlessConfig", self.serverless_config.is_some()),
            ("VolumeSizeInGB", self.volume_size_in_gb.is_some()),
            (
                "ModelDataDownloadTimeoutInSeconds",
                self.model_data_download_timeout_in_seconds.is_some(),
            ),
            (
                "ContainerStartupHealthCheckTimeoutInSeconds",
                self.container_startup_health_check_timeout_in_seconds
                    .is_some(),
            ),
            ("EnableSSMAccess", self.enable_ssm_access.is_some()),
            (
                "ManagedInstanceScaling",
                self.managed_instance_scaling.is_some(),
            ),
            ("RoutingConfig", self.routing_config.is_some()),
            ("InferenceAmiVersion", self.inference_ami_version.is_some()),
        ])
    }
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
    /// Kept and described back; unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Kept and described back; Pier's runtimes make no network calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_network_isolation: Option<bool>,
    /// Data capture of the endpoints deployed from this config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_capture_config: Option<crate::capture::DataCaptureConfig>,
    /// Shadow variants: each gets a copy of a share of the requests; its answers are
    /// measured and captured, never returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow_production_variants: Vec<ProductionVariant>,
    /// Creation time.
    pub creation_time: f64,
}

impl EndpointConfigRecord {
    /// Production variants, then shadow variants: the order of a deployment's models.
    pub fn all_variants(&self) -> impl Iterator<Item = &ProductionVariant> {
        self.production_variants
            .iter()
            .chain(&self.shadow_production_variants)
    }
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

impl EndpointStatus {
    /// SageMaker's `EndpointStatus` enum, as `StatusEquals` takes it.
    pub const ALL: &'static [&'static str] = &[
        "OutOfService",
        "Creating",
        "Updating",
        "SystemUpdating",
        "RollingBack",
        "InService",
        "Deleting",
        "Failed",
        "UpdateRollbackFailed",
    ];

    /// The status as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::InService => "InService",
            Self::Updating => "Updating",
            Self::Failed => "Failed",
            Self::Deleting => "Deleting",
        }
    }
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
    /// Instances in service (per serving process); follows the desired count.
    pub current_instance_count: u32,
    /// As asked for.
    pub desired_instance_count: u32,
    /// Model served (a Pier extension field).
    pub pier_model_name: String,
    /// Artifact served (a Pier extension field).
    pub pier_artifact: String,
    /// The image (runtime) each variant runs, as SageMaker reports it.
    #[serde(default)]
    pub deployed_images: Vec<DeployedImage>,
    /// The variant's status.
    #[serde(default)]
    pub variant_status: Vec<VariantStatus>,
}

/// `DeployedImages` of a variant: the runtime asked for and the artifact it resolved to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeployedImage {
    /// The container's `Image` as given.
    pub specified_image: String,
    /// What serves it: `IMAGE@pier:NAME/VERSION`.
    pub resolved_image: String,
    /// When it was resolved.
    pub resolution_time: f64,
}

/// `VariantStatus` of a variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VariantStatus {
    /// `Creating`, `Updating`, `Deleting`, `ActivatingTraffic`, `Baking` (SageMaker's enum);
    /// Pier reports the variant's current step, or none once in service.
    pub status: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// When the step began.
    pub start_time: f64,
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
    /// Variants in service (none until the first config is in service; left out then, as
    /// SageMaker's list has at least one entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub production_variants: Vec<VariantState>,
    /// Shadow variants in service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow_production_variants: Vec<VariantState>,
    /// Data capture in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_capture_config: Option<crate::capture::DataCaptureSummary>,
    /// Creation time.
    pub creation_time: f64,
    /// Last change.
    pub last_modified_time: f64,
    /// What is deployed: a copy of the config and models taken at deploy time, so a restart
    /// restores the endpoint even after they were deleted (as SageMaker allows). Stored,
    /// never described.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pier_deployed: Option<Deployed>,
}

/// The config and models an endpoint was deployed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deployed {
    /// The config.
    pub config: EndpointConfigRecord,
    /// Its models, one per variant, in the config's order.
    pub models: Vec<ModelRecord>,
}
