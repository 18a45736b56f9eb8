//! CreateEndpoint, DescribeEndpoint, ListEndpoints, UpdateEndpoint,
//! UpdateEndpointWeightsAndCapacities, DeleteEndpoint.
//!
//! Create and Update answer at once, as SageMaker does, and load in the background: the
//! endpoint shows `Creating` / `Updating` until the new config is in service (or, for an
//! update, until it failed and the old config keeps serving with a `FailureReason`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::deploy;
use super::list::{ListRequest, page};
use super::validate_name;
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{EndpointConfigRecord, EndpointRecord, EndpointStatus, arn, now};
use crate::serving::WeightedChoice;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateEndpoint {
    endpoint_name: String,
    endpoint_config_name: String,
}

impl CreateEndpoint {
    pub(super) fn new(name: &str, config: &str) -> Self {
        Self {
            endpoint_name: name.into(),
            endpoint_config_name: config.into(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct EndpointArn {
    endpoint_arn: String,
}

async fn config(app: &AppState, name: &str) -> Result<EndpointConfigRecord, ApiError> {
    app.db
        .get(Table::EndpointConfigs, name)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint configuration", name))
}

async fn endpoint(app: &AppState, name: &str) -> Result<EndpointRecord, ApiError> {
    app.db
        .get(Table::Endpoints, name)
        .await?
        .ok_or_else(|| ApiError::not_found("endpoint", name))
}

pub(super) async fn create(app: &AppState, req: CreateEndpoint) -> Result<EndpointArn, ApiError> {
    validate_name("endpoint", &req.endpoint_name)?;
    let config = config(app, &req.endpoint_config_name).await?;
    let time = now();
    let record = EndpointRecord {
        endpoint_arn: arn("endpoint", &req.endpoint_name),
        endpoint_name: req.endpoint_name.clone(),
        endpoint_config_name: req.endpoint_config_name,
        endpoint_status: EndpointStatus::Creating,
        failure_reason: None,
        production_variants: Vec::new(),
        creation_time: time,
        last_modified_time: time,
    };
    {
        let _guard = app.control.lock().await;
        if !app
            .db
            .insert(Table::Endpoints, &req.endpoint_name, &record)
            .await?
        {
            return Err(ApiError::in_use(format!(
                "Cannot create already existing endpoint \"{}\".",
                req.endpoint_name
            )));
        }
        app.serving.update(|s| {
            s.creating.insert(req.endpoint_name.clone());
        });
    }
    let arn = record.endpoint_arn.clone();
    tokio::spawn(deploy::create_in_background(app.clone(), record, config));
    Ok(EndpointArn { endpoint_arn: arn })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ByName {
    endpoint_name: String,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<EndpointRecord, ApiError> {
    endpoint(app, &req.endpoint_name).await
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Summary {
    endpoint_name: String,
    endpoint_arn: String,
    creation_time: f64,
    last_modified_time: f64,
    endpoint_status: EndpointStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListResponse {
    endpoints: Vec<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list(app: &AppState, req: ListRequest) -> Result<ListResponse, ApiError> {
    let all: Vec<EndpointRecord> = app.db.list(Table::Endpoints).await?;
    let (items, next_token) = page(all, &req, |e| (e.endpoint_name.as_str(), e.creation_time))?;
    let endpoints = items
        .into_iter()
        .map(|e| Summary {
            endpoint_name: e.endpoint_name,
            endpoint_arn: e.endpoint_arn,
            creation_time: e.creation_time,
            last_modified_time: e.last_modified_time,
            endpoint_status: e.endpoint_status,
        })
        .collect();
    Ok(ListResponse {
        endpoints,
        next_token,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct UpdateEndpoint {
    endpoint_name: String,
    endpoint_config_name: String,
}

pub(super) async fn update(app: &AppState, req: UpdateEndpoint) -> Result<EndpointArn, ApiError> {
    let config = config(app, &req.endpoint_config_name).await?;
    let _guard = app.control.lock().await;
    let mut record = endpoint(app, &req.endpoint_name).await?;
    if record.endpoint_status != EndpointStatus::InService {
        return Err(ApiError::validation(format!(
            "Cannot update endpoint \"{}\" while it is {:?}; wait until it is InService.",
            req.endpoint_name, record.endpoint_status
        )));
    }
    record.endpoint_status = EndpointStatus::Updating;
    record.last_modified_time = now();
    app.db
        .update(Table::Endpoints, &req.endpoint_name, &record)
        .await?;
    tokio::spawn(deploy::update_in_background(
        app.clone(),
        req.endpoint_name,
        config,
    ));
    Ok(EndpointArn {
        endpoint_arn: record.endpoint_arn,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DesiredWeightAndCapacity {
    variant_name: String,
    #[serde(default)]
    desired_weight: Option<f64>,
    #[serde(default)]
    desired_instance_count: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct UpdateWeights {
    endpoint_name: String,
    desired_weights_and_capacities: Vec<DesiredWeightAndCapacity>,
}

/// Changes weights only: the same loaded models under a new weighted choice, one snapshot
/// store, effective for the next request.
pub(super) async fn update_weights(
    app: &AppState,
    req: UpdateWeights,
) -> Result<EndpointArn, ApiError> {
    let _guard = app.control.lock().await;
    let mut record = endpoint(app, &req.endpoint_name).await?;
    if record.endpoint_status != EndpointStatus::InService {
        return Err(ApiError::validation(format!(
            "Cannot update endpoint \"{}\" while it is {:?}.",
            req.endpoint_name, record.endpoint_status
        )));
    }
    let snapshot = app.serving.snapshot();
    let serving = snapshot
        .endpoint(&req.endpoint_name)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let mut weights: Vec<f64> = (0..serving.variants.len())
        .map(|i| serving.choice.weight(i))
        .collect();
    for desired in &req.desired_weights_and_capacities {
        let Some(i) = serving
            .variants
            .iter()
            .position(|v| v.name == desired.variant_name)
        else {
            return Err(ApiError::validation(format!(
                "The variant \"{}\" does not exist on endpoint \"{}\".",
                desired.variant_name, req.endpoint_name
            )));
        };
        if let Some(w) = desired.desired_weight {
            weights[i] = w;
        }
        if let Some(state) = record
            .production_variants
            .iter_mut()
            .find(|s| s.variant_name == desired.variant_name)
            && let Some(count) = desired.desired_instance_count
        {
            state.desired_instance_count = count;
        }
    }
    let choice = WeightedChoice::new(&weights)
        .map_err(|e| ApiError::validation(format!("DesiredWeight: {e}")))?;
    for (state, w) in record.production_variants.iter_mut().zip(&weights) {
        state.current_weight = *w;
        state.desired_weight = *w;
    }
    record.last_modified_time = now();
    // Persist first: a failed write changes nothing live.
    app.db
        .update(Table::Endpoints, &req.endpoint_name, &record)
        .await?;
    let next = Arc::new(serving.with_weights(choice));
    app.serving.update(|s| {
        s.endpoints.insert(req.endpoint_name.clone(), next);
    });
    Ok(EndpointArn {
        endpoint_arn: record.endpoint_arn,
    })
}

pub(super) async fn delete(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let _guard = app.control.lock().await;
    if !app.db.delete(Table::Endpoints, &req.endpoint_name).await? {
        return Err(ApiError::not_found("endpoint", &req.endpoint_name));
    }
    app.serving.update(|s| {
        s.endpoints.remove(&req.endpoint_name);
        s.creating.remove(&req.endpoint_name);
        s.failed.remove(&req.endpoint_name);
    });
    tracing::info!(endpoint = %req.endpoint_name, "endpoint deleted");
    Ok(serde_json::json!({}))
}
