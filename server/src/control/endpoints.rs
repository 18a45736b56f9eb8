//! CreateEndpoint, DescribeEndpoint, ListEndpoints, UpdateEndpoint,
//! UpdateEndpointWeightsAndCapacities, DeleteEndpoint.
//!
//! Create and Update answer at once, as SageMaker does, and load in the background: the
//! endpoint shows `Creating` / `Updating` until the new config is in service (or, for an
//! update, until it failed and the old config keeps serving with a `FailureReason`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::deploy::{self, Retain};
use super::list::{ListKey, ListRequest, ListSpec, page};
use super::models::unsupported;
use super::{tags, validate_name};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{EndpointConfigRecord, EndpointRecord, EndpointStatus, Tag, arn, now};
use crate::serving::WeightedChoice;
use crate::state::AppState;

/// CreateEndpoint's request; `DeploymentConfig` is refused (Pier's swap is atomic, with no
/// blue/green stages or alarms to roll back on).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateEndpoint {
    endpoint_name: String,
    endpoint_config_name: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    deployment_config: Option<serde_json::Value>,
}

impl CreateEndpoint {
    pub(super) fn new(name: &str, config: &str) -> Self {
        Self {
            endpoint_name: name.into(),
            endpoint_config_name: config.into(),
            tags: Vec::new(),
            deployment_config: None,
        }
    }
}

/// SageMaker's answer for a missing endpoint.
fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format_args!("endpoint \"{name}\""))
}

/// SageMaker's answer for a change to an endpoint that is not `InService`.
fn not_updatable(record: &EndpointRecord) -> ApiError {
    match record.endpoint_status {
        EndpointStatus::Failed => ApiError::validation(format!(
            "Cannot update failed endpoint \"{}\"; delete it and create it again.",
            record.endpoint_arn
        )),
        _ => ApiError::validation(format!(
            "Cannot update in-progress endpoint \"{}\".",
            record.endpoint_arn
        )),
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
        .ok_or_else(|| super::configs::not_found(name))
}

async fn endpoint(app: &AppState, name: &str) -> Result<EndpointRecord, ApiError> {
    app.db
        .get(Table::Endpoints, name)
        .await?
        .ok_or_else(|| not_found(name))
}

/// The endpoint and the stored text it was read from, for a conditional write.
async fn endpoint_versioned(
    app: &AppState,
    name: &str,
) -> Result<(EndpointRecord, crate::db::Stored), ApiError> {
    app.db
        .get_versioned(Table::Endpoints, name)
        .await?
        .ok_or_else(|| not_found(name))
}

/// Writes `record` if no one changed the endpoint since `seen` was read: another server on
/// the same database may have (replicas); then the call is answered as if it had come second.
async fn write_if_unchanged(
    app: &AppState,
    seen: &crate::db::Stored,
    record: &EndpointRecord,
) -> Result<(), ApiError> {
    if app
        .db
        .update_if(Table::Endpoints, &record.endpoint_name, seen, record)
        .await?
    {
        return Ok(());
    }
    match app
        .db
        .get::<EndpointRecord>(Table::Endpoints, &record.endpoint_name)
        .await?
    {
        // Every change to an endpoint (an update, new weights, a new instance count) is a
        // change in progress while it runs, and it ran while this call was deciding: the
        // answer is the one SageMaker gives a call that overlaps an update, whether or not
        // the other change has finished by the time this one looks again.
        Some(now) => Err(not_updatable(&now)),
        None => Err(not_found(&record.endpoint_name)),
    }
}

pub(super) async fn create(app: &AppState, req: CreateEndpoint) -> Result<EndpointArn, ApiError> {
    validate_name("endpoint", &req.endpoint_name)?;
    if req.deployment_config.is_some() {
        return Err(unsupported("DeploymentConfig"));
    }
    tags::validate(&req.tags)?;
    let config = config(app, &req.endpoint_config_name).await?;
    super::instances::check_config(app, &req.endpoint_name, &config).await?;
    let time = now();
    let record = EndpointRecord {
        endpoint_arn: arn("endpoint", &req.endpoint_name),
        endpoint_name: req.endpoint_name.clone(),
        endpoint_config_name: req.endpoint_config_name,
        endpoint_status: EndpointStatus::Creating,
        failure_reason: None,
        production_variants: Vec::new(),
        shadow_production_variants: Vec::new(),
        data_capture_config: None,
        creation_time: time,
        last_modified_time: time,
        pier_deployed: None,
    };
    {
        let _guard = app.control.lock().await;
        if !app
            .db
            .insert(Table::Endpoints, &req.endpoint_name, &record)
            .await?
        {
            return Err(ApiError::already_exists("endpoint", &record.endpoint_arn));
        }
        tags::set_initial(app, &record.endpoint_arn, &req.tags).await?;
        app.serving.update(|s| {
            s.creating.insert(req.endpoint_name.clone());
        });
    }
    let arn = record.endpoint_arn.clone();
    tokio::spawn(deploy::create_in_background(app.clone(), record, config));
    Ok(EndpointArn { endpoint_arn: arn })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ByName {
    endpoint_name: String,
}

/// DescribeEndpoint's answer: the record, and with replicas, what each serves.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Described {
    #[serde(flatten)]
    record: EndpointRecord,
    /// Every live replica on this database, the config it serves and whether it is the
    /// recorded one (a Pier extension field; only when replicas follow each other).
    #[serde(skip_serializing_if = "Option::is_none")]
    pier_replicas: Option<Vec<serde_json::Value>>,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<Described, ApiError> {
    let mut record = endpoint(app, &req.endpoint_name).await?;
    let pier_replicas = match app.config.replication.reconcile_every {
        Some(_) => Some(super::replicas::describe(app, &record).await?),
        None => None,
    };
    record.pier_deployed = None; // stored for restarts, not described
    Ok(Described {
        record,
        pier_replicas,
    })
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
    let spec = ListSpec {
        sort_keys: &["Name", "CreationTime", "Status"],
        last_modified: true,
        statuses: Some(EndpointStatus::ALL),
    };
    let (items, next_token) = page(all, &req, &spec, |e| ListKey {
        name: &e.endpoint_name,
        creation_time: e.creation_time,
        last_modified_time: e.last_modified_time,
        status: e.endpoint_status.as_str(),
    })?;
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

/// UpdateEndpoint's request. `RetainAllVariantProperties` keeps the weights and instance
/// counts of variants the new config names too, less `ExcludeRetainedVariantProperties`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct UpdateEndpoint {
    endpoint_name: String,
    endpoint_config_name: String,
    #[serde(default)]
    retain_all_variant_properties: Option<bool>,
    #[serde(default)]
    exclude_retained_variant_properties: Option<Vec<VariantProperty>>,
    /// Accepted: there is never a deployment config to retain.
    #[serde(default)]
    retain_deployment_config: Option<bool>,
    /// Refused, as at CreateEndpoint.
    #[serde(default)]
    deployment_config: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct VariantProperty {
    variant_property_type: String,
}

impl UpdateEndpoint {
    fn retain(&self) -> Result<Retain, ApiError> {
        let excluded = self
            .exclude_retained_variant_properties
            .as_deref()
            .unwrap_or_default();
        if excluded.len() > 3 {
            return Err(ApiError::validation(
                "ExcludeRetainedVariantProperties may hold at most 3 entries",
            ));
        }
        let mut retain = Retain {
            weights: true,
            instance_counts: true,
        };
        for p in excluded {
            match p.variant_property_type.as_str() {
                "DesiredWeight" => retain.weights = false,
                "DesiredInstanceCount" => retain.instance_counts = false,
                "DataCaptureConfig" => {}
                other => {
                    return Err(ApiError::validation(format!(
                        "1 validation error detected: Value '{other}' at 'excludeRetainedVariantProperties.variantPropertyType' failed to satisfy constraint: Member must satisfy enum value set: [DesiredInstanceCount, DesiredWeight, DataCaptureConfig]"
                    )));
                }
            }
        }
        if self.retain_all_variant_properties == Some(true) {
            Ok(retain)
        } else {
            Ok(Retain::default())
        }
    }
}

pub(super) async fn update(app: &AppState, req: UpdateEndpoint) -> Result<EndpointArn, ApiError> {
    if req.deployment_config.is_some() {
        return Err(unsupported("DeploymentConfig"));
    }
    let _ = req.retain_deployment_config;
    let retain = req.retain()?;
    let _guard = app.control.lock().await;
    let (mut record, seen) = endpoint_versioned(app, &req.endpoint_name).await?;
    if record.endpoint_status != EndpointStatus::InService {
        return Err(not_updatable(&record));
    }
    let config = config(app, &req.endpoint_config_name).await?;
    super::instances::check_config(app, &req.endpoint_name, &config).await?;
    record.endpoint_status = EndpointStatus::Updating;
    record.last_modified_time = now();
    deploy::set_variant_status(&mut record.production_variants, "Updating");
    write_if_unchanged(app, &seen, &record).await?;
    tokio::spawn(deploy::update_in_background(
        app.clone(),
        req.endpoint_name,
        config,
        retain,
    ));
    Ok(EndpointArn {
        endpoint_arn: record.endpoint_arn,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DesiredWeightAndCapacity {
    variant_name: String,
    #[serde(default)]
    desired_weight: Option<f64>,
    #[serde(default)]
    desired_instance_count: Option<u32>,
    /// Refused: serverless variants are not served.
    #[serde(default)]
    serverless_update_config: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
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
    if req.desired_weights_and_capacities.is_empty()
        || req.desired_weights_and_capacities.len() > 10
    {
        return Err(ApiError::validation(
            "DesiredWeightsAndCapacities must hold 1-10 entries",
        ));
    }
    for desired in &req.desired_weights_and_capacities {
        if desired.serverless_update_config.is_some() {
            return Err(unsupported(
                "DesiredWeightsAndCapacities.ServerlessUpdateConfig",
            ));
        }
        if desired.desired_weight.is_none() && desired.desired_instance_count.is_none() {
            return Err(ApiError::validation(format!(
                "DesiredWeightsAndCapacities[{:?}] must give DesiredWeight or DesiredInstanceCount",
                desired.variant_name
            )));
        }
    }
    let _guard = app.control.lock().await;
    let (mut record, seen) = endpoint_versioned(app, &req.endpoint_name).await?;
    if record.endpoint_status != EndpointStatus::InService {
        return Err(not_updatable(&record));
    }
    let snapshot = app.serving.snapshot();
    let serving = snapshot
        .endpoint(&req.endpoint_name)
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let mut weights: Vec<f64> = (0..serving.variants.len())
        .map(|i| serving.choice.weight(i))
        .collect();
    let mut converging = Vec::new();
    for desired in &req.desired_weights_and_capacities {
        let Some(i) = serving
            .variants
            .iter()
            .position(|v| *v.name == *desired.variant_name)
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
            let scales = serving.variants[i].loaded.scales_with_instances();
            if super::instances::set_desired(state, count, scales) {
                converging.push(desired.variant_name.clone());
            }
        }
    }
    let choice = WeightedChoice::new(&weights)
        .map_err(|e| ApiError::validation(format!("DesiredWeight: {e}")))?;
    super::instances::check_limit(app, &record.endpoint_name, &record.production_variants).await?;
    for (state, w) in record.production_variants.iter_mut().zip(&weights) {
        state.current_weight = *w;
        state.desired_weight = *w;
    }
    record.last_modified_time = now();
    // Persist first: a failed write changes nothing live.
    write_if_unchanged(app, &seen, &record).await?;
    let next = Arc::new(serving.with_weights(choice));
    app.serving.update(|s| {
        s.endpoints.insert(req.endpoint_name.clone(), next);
    });
    super::replicas::note_served(app, &record);
    // New counts whose resources must be built first: after this call has answered (each
    // waits for the control lock this call holds).
    for variant in &converging {
        super::instances::spawn_converge(app, &req.endpoint_name, variant);
    }
    Ok(EndpointArn {
        endpoint_arn: record.endpoint_arn,
    })
}

/// Deletes an endpoint: it stops serving at once and shows `Deleting` until its record is
/// gone (a stop in between is finished at the next start).
pub(super) async fn delete(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let _guard = app.control.lock().await;
    let mut record = endpoint(app, &req.endpoint_name).await?;
    if record.endpoint_status == EndpointStatus::Deleting {
        return Ok(serde_json::json!({}));
    }
    record.endpoint_status = EndpointStatus::Deleting;
    record.last_modified_time = now();
    deploy::set_variant_status(&mut record.production_variants, "Deleting");
    app.db
        .update(Table::Endpoints, &req.endpoint_name, &record)
        .await?;
    app.serving.update(|s| {
        s.endpoints.remove(&req.endpoint_name);
        s.creating.remove(&req.endpoint_name);
        s.failed.remove(&req.endpoint_name);
    });
    super::replicas::forget(app, &req.endpoint_name);
    tokio::spawn(finish_delete(app.clone(), record));
    Ok(serde_json::json!({}))
}

/// Removes a `Deleting` endpoint's record and tags (under the control lock, after the call
/// that marked it has answered).
async fn finish_delete(app: AppState, record: EndpointRecord) {
    let _guard = app.control.lock().await;
    let name = &record.endpoint_name;
    let done = match app.db.delete(Table::Endpoints, name).await {
        Ok(_) => tags::remove_all(&app, &record.endpoint_arn).await,
        Err(e) => Err(e.into()),
    };
    match done {
        Ok(()) => tracing::info!(endpoint = %name, "endpoint deleted"),
        Err(e) => {
            tracing::error!(endpoint = %name, error = %e, "could not remove the deleted endpoint's record; the next start finishes it")
        }
    }
}
