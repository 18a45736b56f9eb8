//! Instance counts: `InitialInstanceCount` / `DesiredInstanceCount` of a variant, and the
//! server's cap on their sum over all endpoints (`--max-instances`).
//!
//! An instance is Triton's `instance_group` count: copies of a variant's execution
//! resources on each serving process. Counts live in the endpoint records; the check reads
//! them under the control lock (every caller holds it or runs before the endpoint exists).

use crate::db::Table;
use crate::error::{ApiCode, ApiError};
use crate::records::{EndpointConfigRecord, EndpointRecord, VariantState};
use crate::state::AppState;

/// Refuses a change that would give endpoint `name` the variants `variants` when the sum
/// over every endpoint of this server would pass `--max-instances`.
pub(super) async fn check_limit(
    app: &AppState,
    name: &str,
    variants: &[VariantState],
) -> Result<(), ApiError> {
    let asked: u64 = variants
        .iter()
        .map(|v| u64::from(v.desired_instance_count))
        .sum();
    check_total(app, name, asked).await
}

/// [`check_limit`] for a config about to be deployed on endpoint `name`.
pub(super) async fn check_config(
    app: &AppState,
    name: &str,
    config: &EndpointConfigRecord,
) -> Result<(), ApiError> {
    let asked: u64 = config
        .production_variants
        .iter()
        .map(|v| u64::from(v.initial_instance_count.unwrap_or(1)))
        .sum();
    check_total(app, name, asked).await
}

async fn check_total(app: &AppState, name: &str, asked: u64) -> Result<(), ApiError> {
    let max = u64::from(app.config.instances.max_instances);
    let others: u64 = app
        .db
        .list::<EndpointRecord>(Table::Endpoints)
        .await?
        .iter()
        .filter(|e| e.endpoint_name != name)
        .map(instances)
        .sum();
    if others + asked > max {
        return Err(ApiError {
            code: ApiCode::ResourceLimitExceeded,
            message: format!(
                "endpoint {name:?} asks for {asked} instances and the other endpoints hold {others}; this server allows {max} in all (--max-instances)"
            ),
        });
    }
    Ok(())
}

/// Instances an endpoint holds: its variants' desired counts (while it is being created,
/// before any variant is recorded, its deployed config's, if any).
fn instances(e: &EndpointRecord) -> u64 {
    if e.production_variants.is_empty() {
        return e.pier_deployed.as_ref().map_or(0, |d| {
            d.config
                .production_variants
                .iter()
                .map(|v| u64::from(v.initial_instance_count.unwrap_or(1)))
                .sum()
        });
    }
    e.production_variants
        .iter()
        .map(|v| u64::from(v.desired_instance_count))
        .sum()
}

/// Sets a variant's desired (and so current) instance count, as
/// UpdateEndpointWeightsAndCapacities does: checked against `--max-instances`, written to
/// the endpoint's record. Takes the control lock.
pub(super) async fn set_count(
    app: &AppState,
    endpoint: &str,
    variant: &str,
    count: u32,
) -> Result<(), ApiError> {
    let _guard = app.control.lock().await;
    let mut record: EndpointRecord = app
        .db
        .get(Table::Endpoints, endpoint)
        .await?
        .ok_or_else(|| ApiError::validation(format!("Could not find endpoint \"{endpoint}\".")))?;
    if record.endpoint_status != crate::records::EndpointStatus::InService {
        return Err(ApiError::validation(format!(
            "Endpoint \"{endpoint}\" is not InService; its instance count cannot change now"
        )));
    }
    let Some(state) = record
        .production_variants
        .iter_mut()
        .find(|v| v.variant_name == variant)
    else {
        return Err(ApiError::validation(format!(
            "The variant \"{variant}\" does not exist on endpoint \"{endpoint}\"."
        )));
    };
    state.desired_instance_count = count;
    state.current_instance_count = count;
    check_limit(app, endpoint, &record.production_variants).await?;
    record.last_modified_time = crate::records::now();
    Ok(app.db.update(Table::Endpoints, endpoint, &record).await?)
}

/// A variant's desired instance count as recorded (`None`: no such endpoint or variant, or
/// the endpoint is not `InService`, when its count cannot change).
pub(super) async fn count(
    app: &AppState,
    endpoint: &str,
    variant: &str,
) -> Result<Option<u32>, ApiError> {
    let record: Option<EndpointRecord> = app.db.get(Table::Endpoints, endpoint).await?;
    let in_service = crate::records::EndpointStatus::InService;
    Ok(record
        .filter(|r| r.endpoint_status == in_service)
        .and_then(|r| {
            r.production_variants
                .iter()
                .find(|v| v.variant_name == variant)
                .map(|v| v.desired_instance_count)
        }))
}
