//! Instance counts: `InitialInstanceCount` / `DesiredInstanceCount` of a variant, and the
//! server's cap on their sum over all endpoints (`--max-instances`).
//!
//! An instance is Triton's `instance_group` count: copies of a variant's execution
//! resources on each serving process. For a model on ONNX Runtime, an instance is a pool of
//! `PIER_SESSIONS` sessions; for a batched variant, one batch slot per compute thread; other
//! variants run on the shared compute pool, which no count enlarges, so their count only
//! feeds the limit and the autoscaler's per-instance metric. One instance is what a variant
//! had before counts meant anything.
//!
//! Counts live in the endpoint records; the limit check reads them under the control lock
//! (every caller holds it or runs before the endpoint exists). A new desired count is
//! recorded at once. Where resources depend on it, [`converge`] then builds the variant's
//! new copy off the lock (an ort load takes seconds), swaps it into the snapshot as an update
//! does (requests in flight finish on the old copy), and only then sets `CurrentInstanceCount`;
//! meanwhile the variant reports `VariantStatus` `Updating`.

use std::sync::Arc;

use pier_runtimes::{Backend, LoadOptions};

use crate::db::Table;
use crate::error::{ApiCode, ApiError};
use crate::records::{
    EndpointConfigRecord, EndpointRecord, EndpointStatus, VariantState, VariantStatus, now,
};
use crate::state::AppState;

/// The load options of a variant with `count` instances: ONNX Runtime keeps its
/// `PIER_SESSIONS` sessions per instance; the other engines' options do not change.
pub(super) fn load_options_for(base: &LoadOptions, count: u32) -> LoadOptions {
    let mut options = base.clone();
    if options.backend == Backend::Ort {
        options.sessions = options.sessions.saturating_mul(count.max(1) as usize);
    }
    options
}

/// Records `count` as `state`'s desired count. The current count follows at once unless the
/// variant's resources depend on it (`scales`): then it stays until [`converge`] has swapped
/// them in, and the variant shows `Updating`. Answers whether a convergence is due.
pub(super) fn set_desired(state: &mut VariantState, count: u32, scales: bool) -> bool {
    state.desired_instance_count = count;
    if !scales || state.current_instance_count == count {
        state.current_instance_count = count;
        state.variant_status.clear();
        return false;
    }
    state.variant_status = vec![VariantStatus {
        status: "Updating".into(),
        status_message: Some(format!(
            "Changing the instance count from {} to {count}",
            state.current_instance_count
        )),
        start_time: now(),
    }];
    true
}

/// Whether the variant `variant` of `endpoint`, as served now, gets resources per instance.
pub(super) fn scales(app: &AppState, endpoint: &str, variant: &str) -> bool {
    let snapshot = app.serving.snapshot();
    snapshot.endpoint(endpoint).ok().is_some_and(|e| {
        e.variants
            .iter()
            .any(|v| &*v.name == variant && v.loaded.scales_with_instances())
    })
}

/// Brings `variant`'s resources to its desired count in the background (see the module
/// documentation); call after the desired count is recorded and the control lock released.
pub(super) fn spawn_converge(app: &AppState, endpoint: &str, variant: &str) {
    let (app, endpoint, variant) = (app.clone(), endpoint.to_owned(), variant.to_owned());
    tokio::spawn(async move {
        if let Err(e) = converge(&app, &endpoint, &variant).await {
            tracing::warn!(%endpoint, %variant, error = %e.message, "instance count not applied");
        }
    });
}

/// One convergence: loads the variant at its recorded desired count and swaps it in, unless
/// the record changed meanwhile (another count, another config, not in service): then the
/// later change's own convergence applies.
pub(super) async fn converge(
    app: &AppState,
    endpoint: &str,
    variant: &str,
) -> Result<(), ApiError> {
    let still_asked = |r: &EndpointRecord, count: u32| {
        r.endpoint_status == EndpointStatus::InService
            && r.production_variants
                .iter()
                .any(|v| v.variant_name == variant && v.desired_instance_count == count)
    };
    let Some(record) = app
        .db
        .get::<EndpointRecord>(Table::Endpoints, endpoint)
        .await?
    else {
        return Ok(());
    };
    let Some(count) = record
        .production_variants
        .iter()
        .find(|v| v.variant_name == variant)
        .map(|v| v.desired_instance_count)
    else {
        return Ok(());
    };
    let Some(deployed) = record.pier_deployed.as_ref() else {
        return Ok(());
    };
    let Some((pv, model)) = deployed
        .config
        .production_variants
        .iter()
        .zip(&deployed.models)
        .find(|(pv, _)| pv.variant_name == variant)
    else {
        return Ok(());
    };
    if !still_asked(&record, count) {
        return Ok(());
    }
    let loaded = super::deploy::load_variant(app, endpoint, pv, model, count).await;
    let _guard = app.control.lock().await;
    let Some(mut record) = app
        .db
        .get::<EndpointRecord>(Table::Endpoints, endpoint)
        .await?
    else {
        return Ok(());
    };
    if !still_asked(&record, count)
        || record.endpoint_config_name != deployed.config.endpoint_config_name
    {
        return Ok(());
    }
    let snapshot = app.serving.snapshot();
    let Ok(serving) = snapshot.endpoint(endpoint) else {
        return Ok(());
    };
    let Some(position) = serving.variants.iter().position(|v| &*v.name == variant) else {
        return Ok(());
    };
    let state = record
        .production_variants
        .iter_mut()
        .find(|v| v.variant_name == variant)
        .expect("checked by still_asked");
    state.variant_status.clear();
    let loaded = match loaded {
        Ok(loaded) => {
            state.current_instance_count = count;
            Some(loaded)
        }
        Err(reason) => {
            // As SageMaker rolls a failed capacity change back: the old count stays.
            state.desired_instance_count = state.current_instance_count;
            record.failure_reason = Some(format!(
                "changing the instance count of variant {variant:?} to {count} failed: {reason}"
            ));
            None
        }
    };
    record.last_modified_time = now();
    // Persist first: a failed write changes nothing live.
    app.db.update(Table::Endpoints, endpoint, &record).await?;
    if let Some(loaded) = loaded {
        let next = Arc::new(serving.with_variant(position, loaded));
        app.serving.update(|s| {
            s.endpoints.insert(endpoint.to_owned(), next);
        });
        super::replicas::note_served(app, &record);
        tracing::info!(endpoint, variant, count, "instance count applied");
    }
    Ok(())
}

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
    let converging = set_desired(state, count, scales(app, endpoint, variant));
    check_limit(app, endpoint, &record.production_variants).await?;
    record.last_modified_time = crate::records::now();
    app.db.update(Table::Endpoints, endpoint, &record).await?;
    if converging {
        spawn_converge(app, endpoint, variant);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(current: u32) -> VariantState {
        serde_json::from_value(serde_json::json!({
            "VariantName": "a", "CurrentWeight": 1.0, "DesiredWeight": 1.0,
            "CurrentInstanceCount": current, "DesiredInstanceCount": current,
            "PierModelName": "m", "PierArtifact": "m/1", "DeployedImages": [],
            "VariantStatus": []
        }))
        .unwrap()
    }

    #[test]
    fn ort_keeps_its_sessions_per_instance_and_tract_shares_one_load() {
        let mut ort = LoadOptions::with_backend(Backend::Ort);
        ort.sessions = 2;
        assert_eq!(load_options_for(&ort, 3).sessions, 6);
        assert_eq!(load_options_for(&ort, 0).sessions, 2, "0 counts as one");
        let tract = LoadOptions::default();
        assert_eq!(load_options_for(&tract, 5), tract, "the cache shares it");
    }

    #[test]
    fn the_current_count_waits_for_resources_only_where_there_are_some() {
        let mut shared = state(1);
        assert!(!set_desired(&mut shared, 4, false));
        assert_eq!(
            (shared.current_instance_count, shared.desired_instance_count),
            (4, 4)
        );
        assert!(shared.variant_status.is_empty());

        let mut scaled = state(1);
        assert!(set_desired(&mut scaled, 4, true));
        assert_eq!(
            (scaled.current_instance_count, scaled.desired_instance_count),
            (1, 4)
        );
        assert_eq!(scaled.variant_status[0].status, "Updating");
        // Back to the count in force: nothing to build.
        assert!(!set_desired(&mut scaled, 1, true));
        assert_eq!(scaled.current_instance_count, 1);
        assert!(scaled.variant_status.is_empty());
    }
}
