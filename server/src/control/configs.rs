//! CreateEndpointConfig, DescribeEndpointConfig, ListEndpointConfigs, DeleteEndpointConfig.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::list::{ListKey, ListRequest, ListSpec, page};
use super::models::{unsupported, validate_role_arn};
use super::{tags, validate_name};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{
    EndpointConfigRecord, ModelRecord, ProductionVariant, Tag, arn, first_present, now,
};
use crate::serving::WeightedChoice;
use crate::state::AppState;

/// CreateEndpointConfig's request. Fields Pier cannot honour yet are read only to be refused
/// by name; unknown fields are refused.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateEndpointConfig {
    endpoint_config_name: String,
    production_variants: Vec<ProductionVariant>,
    #[serde(default)]
    execution_role_arn: Option<String>,
    #[serde(default)]
    enable_network_isolation: Option<bool>,
    #[serde(default)]
    tags: Vec<Tag>,
    /// Data capture.
    #[serde(default)]
    data_capture_config: Option<crate::capture::DataCaptureConfig>,
    /// Refused: Pier does not encrypt with KMS keys.
    #[serde(default)]
    kms_key_id: Option<serde_json::Value>,
    /// Refused until asynchronous inference is served.
    #[serde(default)]
    async_inference_config: Option<serde_json::Value>,
    /// Refused.
    #[serde(default)]
    explainer_config: Option<serde_json::Value>,
    /// Shadow variants.
    #[serde(default)]
    shadow_production_variants: Vec<ProductionVariant>,
    /// Refused: Pier runs no VPC.
    #[serde(default)]
    vpc_config: Option<serde_json::Value>,
}

impl CreateEndpointConfig {
    pub(super) fn new(name: &str, production_variants: Vec<ProductionVariant>) -> Self {
        Self {
            endpoint_config_name: name.into(),
            production_variants,
            ..Self::default()
        }
    }

    fn unsupported(&self) -> Option<&'static str> {
        first_present(&[
            ("KmsKeyId", self.kms_key_id.is_some()),
            (
                "AsyncInferenceConfig",
                self.async_inference_config.is_some(),
            ),
            ("ExplainerConfig", self.explainer_config.is_some()),
            ("VpcConfig", self.vpc_config.is_some()),
        ])
    }
}

/// SageMaker's answer for a missing endpoint config.
pub(super) fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format_args!("endpoint configuration \"{name}\""))
}

/// The config as described: an omitted `InitialVariantWeight` reads back as 1.0.
fn described(mut config: EndpointConfigRecord) -> EndpointConfigRecord {
    for v in config
        .production_variants
        .iter_mut()
        .chain(&mut config.shadow_production_variants)
    {
        v.initial_variant_weight = Some(v.weight());
    }
    config
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct EndpointConfigArn {
    endpoint_config_arn: String,
}

pub(super) async fn create(
    app: &AppState,
    mut req: CreateEndpointConfig,
) -> Result<EndpointConfigArn, ApiError> {
    validate_name("endpoint config", &req.endpoint_config_name)?;
    if let Some(field) = req.unsupported() {
        return Err(unsupported(field));
    }
    if let Some(role) = &req.execution_role_arn {
        validate_role_arn(role)?;
    }
    tags::validate(&req.tags)?;
    super::options::apply_batching_tags(&mut req.production_variants, &req.tags)
        .map_err(ApiError::validation)?;
    if req.production_variants.is_empty() {
        return Err(ApiError::validation(
            "ProductionVariants must have at least one variant",
        ));
    }
    if req.production_variants.len() > 10 {
        return Err(ApiError::validation(
            "ProductionVariants may have at most 10 variants",
        ));
    }
    if req.shadow_production_variants.len() > 10 {
        return Err(ApiError::validation(
            "ShadowProductionVariants may have at most 10 variants",
        ));
    }
    if let Some(capture) = &req.data_capture_config {
        capture.validate().map_err(ApiError::validation)?;
        crate::capture::check_destination(capture, &app.config.jobs.import_policy)
            .map_err(ApiError::validation)?;
    }
    let mut names = HashSet::new();
    for v in req
        .production_variants
        .iter()
        .chain(&req.shadow_production_variants)
    {
        validate_name("variant", &v.variant_name)?;
        if let Some(field) = v.unsupported() {
            return Err(unsupported(&format!("ProductionVariants.{field}")));
        }
        if v.initial_instance_count == Some(0) {
            return Err(ApiError::validation(format!(
                "ProductionVariants[{:?}].InitialInstanceCount must be at least 1",
                v.variant_name
            )));
        }
        if let Some(t) = &v.instance_type
            && (t.is_empty() || t.len() > 64)
        {
            return Err(ApiError::validation(format!(
                "ProductionVariants[{:?}].InstanceType {t:?} is not an instance type",
                v.variant_name
            )));
        }
        if !names.insert(v.variant_name.as_str()) {
            return Err(ApiError::validation(format!(
                "VariantName {:?} is used twice",
                v.variant_name
            )));
        }
        let Some(model) = app
            .db
            .get::<ModelRecord>(Table::Models, &v.model_name)
            .await?
        else {
            return Err(super::models::not_found(&v.model_name));
        };
        // Batching settings are checked here, not first at deploy time.
        super::options::resolve_batching(&model.primary_container, v.pier_batching.as_ref())
            .map_err(|e| {
                ApiError::validation(format!("ProductionVariants[{:?}]: {e}", v.variant_name))
            })?;
    }
    let weights: Vec<f64> = req
        .production_variants
        .iter()
        .map(ProductionVariant::weight)
        .collect();
    WeightedChoice::new(&weights)
        .map_err(|e| ApiError::validation(format!("InitialVariantWeight: {e}")))?;
    for v in &req.shadow_production_variants {
        let w = v.weight();
        if !(w.is_finite() && w > 0.0) {
            return Err(ApiError::validation(format!(
                "ShadowProductionVariants[{:?}].InitialVariantWeight must be a finite number above 0 (it is {w})",
                v.variant_name
            )));
        }
    }
    let record = described(EndpointConfigRecord {
        endpoint_config_arn: arn("endpoint-config", &req.endpoint_config_name),
        endpoint_config_name: req.endpoint_config_name.clone(),
        production_variants: req.production_variants,
        execution_role_arn: req.execution_role_arn,
        enable_network_isolation: req.enable_network_isolation,
        data_capture_config: req.data_capture_config,
        shadow_production_variants: req.shadow_production_variants,
        creation_time: now(),
    });
    if !app
        .db
        .insert(Table::EndpointConfigs, &req.endpoint_config_name, &record)
        .await?
    {
        return Err(ApiError::already_exists(
            "endpoint configuration",
            &record.endpoint_config_arn,
        ));
    }
    tags::set_initial(app, &record.endpoint_config_arn, &req.tags).await?;
    Ok(EndpointConfigArn {
        endpoint_config_arn: record.endpoint_config_arn,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ByName {
    endpoint_config_name: String,
}

pub(super) async fn describe(
    app: &AppState,
    req: ByName,
) -> Result<EndpointConfigRecord, ApiError> {
    app.db
        .get(Table::EndpointConfigs, &req.endpoint_config_name)
        .await?
        .map(described)
        .ok_or_else(|| not_found(&req.endpoint_config_name))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Summary {
    endpoint_config_name: String,
    endpoint_config_arn: String,
    creation_time: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListResponse {
    endpoint_configs: Vec<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list(app: &AppState, req: ListRequest) -> Result<ListResponse, ApiError> {
    let all: Vec<EndpointConfigRecord> = app.db.list(Table::EndpointConfigs).await?;
    let spec = ListSpec {
        sort_keys: &["Name", "CreationTime"],
        last_modified: false,
        statuses: None,
    };
    let (items, next_token) = page(all, &req, &spec, |c| ListKey {
        name: &c.endpoint_config_name,
        creation_time: c.creation_time,
        last_modified_time: c.creation_time,
        status: "",
    })?;
    let endpoint_configs = items
        .into_iter()
        .map(|c| Summary {
            endpoint_config_name: c.endpoint_config_name,
            endpoint_config_arn: c.endpoint_config_arn,
            creation_time: c.creation_time,
        })
        .collect();
    Ok(ListResponse {
        endpoint_configs,
        next_token,
    })
}

/// Deletes a config. An endpoint that uses it keeps serving (and is restored after a restart
/// from what it recorded at deploy time), as SageMaker allows.
pub(super) async fn delete(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let _guard = app.control.lock().await;
    if !app
        .db
        .delete(Table::EndpointConfigs, &req.endpoint_config_name)
        .await?
    {
        return Err(not_found(&req.endpoint_config_name));
    }
    tags::remove_all(app, &arn("endpoint-config", &req.endpoint_config_name)).await?;
    Ok(serde_json::json!({}))
}
