//! CreateEndpointConfig, DescribeEndpointConfig, ListEndpointConfigs, DeleteEndpointConfig.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::list::{ListRequest, page};
use super::validate_name;
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{
    EndpointConfigRecord, EndpointRecord, ModelRecord, ProductionVariant, arn, now,
};
use crate::serving::WeightedChoice;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateEndpointConfig {
    endpoint_config_name: String,
    production_variants: Vec<ProductionVariant>,
}

impl CreateEndpointConfig {
    pub(super) fn new(name: &str, production_variants: Vec<ProductionVariant>) -> Self {
        Self {
            endpoint_config_name: name.into(),
            production_variants,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct EndpointConfigArn {
    endpoint_config_arn: String,
}

pub(super) async fn create(
    app: &AppState,
    req: CreateEndpointConfig,
) -> Result<EndpointConfigArn, ApiError> {
    validate_name("endpoint config", &req.endpoint_config_name)?;
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
    let mut names = HashSet::new();
    for v in &req.production_variants {
        validate_name("variant", &v.variant_name)?;
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
            return Err(ApiError::validation(format!(
                "Could not find model \"{}\" (variant {:?}).",
                v.model_name, v.variant_name
            )));
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
    let record = EndpointConfigRecord {
        endpoint_config_arn: arn("endpoint-config", &req.endpoint_config_name),
        endpoint_config_name: req.endpoint_config_name.clone(),
        production_variants: req.production_variants,
        creation_time: now(),
    };
    if !app
        .db
        .insert(Table::EndpointConfigs, &req.endpoint_config_name, &record)
        .await?
    {
        return Err(ApiError::in_use(format!(
            "Cannot create already existing endpoint configuration \"{}\".",
            req.endpoint_config_name
        )));
    }
    Ok(EndpointConfigArn {
        endpoint_config_arn: record.endpoint_config_arn,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
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
        .ok_or_else(|| ApiError::not_found("endpoint configuration", &req.endpoint_config_name))
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
    let (items, next_token) = page(all, &req, |c| {
        (c.endpoint_config_name.as_str(), c.creation_time)
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

pub(super) async fn delete(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let _guard = app.control.lock().await;
    let endpoints: Vec<EndpointRecord> = app.db.list(Table::Endpoints).await?;
    if let Some(e) = endpoints
        .iter()
        .find(|e| e.endpoint_config_name == req.endpoint_config_name)
    {
        return Err(ApiError::in_use(format!(
            "endpoint configuration \"{}\" is used by endpoint \"{}\"",
            req.endpoint_config_name, e.endpoint_name
        )));
    }
    if !app
        .db
        .delete(Table::EndpointConfigs, &req.endpoint_config_name)
        .await?
    {
        return Err(ApiError::not_found(
            "endpoint configuration",
            &req.endpoint_config_name,
        ));
    }
    Ok(serde_json::json!({}))
}
