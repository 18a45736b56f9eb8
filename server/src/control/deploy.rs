//! Putting endpoint configs into service: load and warm every variant's model version on the
//! side, then publish the endpoint in one snapshot store. A failure publishes nothing.
//!
//! Runs under the control lock, so snapshot edits never interleave.

use std::sync::Arc;

use super::options;
use crate::db::Table;
use crate::records::{
    EndpointConfigRecord, EndpointRecord, EndpointStatus, ModelRecord, VariantState, now,
};
use crate::serving::{EndpointServing, Variant, WeightedChoice};
use crate::state::AppState;

/// Loads everything `config` needs and returns the endpoint ready to publish. `weights`
/// overrides the config's initial weights by variant name (kept across restarts).
pub(super) async fn build(
    app: &AppState,
    endpoint_name: &str,
    config: &EndpointConfigRecord,
    weights: Option<&[VariantState]>,
) -> Result<EndpointServing, String> {
    let mut variants = Vec::with_capacity(config.production_variants.len());
    let mut weight_values = Vec::with_capacity(config.production_variants.len());
    for pv in &config.production_variants {
        let model: ModelRecord = app
            .db
            .get(Table::Models, &pv.model_name)
            .await
            .map_err(|e| e.message)?
            .ok_or_else(|| {
                format!(
                    "Could not find model \"{}\" (variant {:?}).",
                    pv.model_name, pv.variant_name
                )
            })?;
        let variant_err = |e: String| format!("variant {:?}: {e}", pv.variant_name);
        let load_opts = options::load_options(&model.primary_container).map_err(variant_err)?;
        let batching =
            options::resolve_batching(&model.primary_container, pv.pier_batching.as_ref())
                .map_err(variant_err)?;
        let (state, artifact) = (app.clone(), model.pier_artifact.clone());
        let shared = tokio::task::spawn_blocking(move || {
            state
                .serving
                .cache
                .get_or_load_with(&state.store, &artifact, &load_opts)
        })
        .await
        .map_err(|e| format!("loading {} panicked: {e}", model.pier_artifact))?
        .map_err(variant_err)?;
        if batching.is_some() {
            options::check_batchable(shared.model.signature()).map_err(variant_err)?;
        }
        let loaded = shared.serve_as(
            endpoint_name,
            &pv.variant_name,
            &pv.model_name,
            batching.map(|b| (b, app.serving.pool.clone())),
        );
        let weight = weights
            .and_then(|w| w.iter().find(|s| s.variant_name == pv.variant_name))
            .map_or_else(|| pv.weight(), |s| s.current_weight);
        weight_values.push(weight);
        variants.push(Variant {
            name: pv.variant_name.clone(),
            model_name: pv.model_name.clone(),
            loaded,
        });
    }
    let choice = WeightedChoice::new(&weight_values).map_err(|e| e.to_string())?;
    Ok(EndpointServing {
        name: endpoint_name.to_owned(),
        config_name: config.endpoint_config_name.clone(),
        variants,
        choice,
    })
}

/// The variant states to record for an endpoint in service.
pub(super) fn variant_states(
    serving: &EndpointServing,
    config: &EndpointConfigRecord,
) -> Vec<VariantState> {
    serving
        .variants
        .iter()
        .zip(&config.production_variants)
        .enumerate()
        .map(|(i, (v, pv))| VariantState {
            variant_name: v.name.clone(),
            current_weight: serving.choice.weight(i),
            desired_weight: serving.choice.weight(i),
            current_instance_count: 1,
            desired_instance_count: pv.initial_instance_count.unwrap_or(1),
            pier_model_name: v.model_name.clone(),
            pier_artifact: v.loaded.artifact.to_string(),
        })
        .collect()
}

/// Loads `config` for a new endpoint and records the outcome. Holds the control lock.
pub(super) async fn create_in_background(
    app: AppState,
    mut record: EndpointRecord,
    config: EndpointConfigRecord,
) {
    let _guard = app.control.lock().await;
    let name = record.endpoint_name.clone();
    if !matches!(
        app.db.get::<EndpointRecord>(Table::Endpoints, &name).await,
        Ok(Some(_))
    ) {
        return; // deleted before it was built
    }
    // The record is written before the snapshot changes: a failed write leaves nothing
    // live that the database (and so a restart) would not show.
    match build(&app, &name, &config, None).await {
        Ok(serving) => {
            record.production_variants = variant_states(&serving, &config);
            record.endpoint_status = EndpointStatus::InService;
            record.failure_reason = None;
            record.last_modified_time = now();
            match app.db.update(Table::Endpoints, &name, &record).await {
                Ok(_) => {
                    let serving = Arc::new(serving);
                    app.serving.update(|s| {
                        s.creating.remove(&name);
                        s.failed.remove(&name);
                        s.endpoints.insert(name.clone(), serving);
                    });
                    tracing::info!(endpoint = %name, config = %config.endpoint_config_name, "endpoint in service");
                }
                Err(e) => {
                    tracing::error!(endpoint = %name, error = %e, "could not record the endpoint in service; it is not put in service");
                    app.serving.update(|s| {
                        s.creating.remove(&name);
                        s.failed.insert(name.clone());
                    });
                }
            }
        }
        Err(reason) => {
            app.serving.update(|s| {
                s.creating.remove(&name);
                s.failed.insert(name.clone());
            });
            tracing::warn!(endpoint = %name, %reason, "endpoint creation failed");
            record.endpoint_status = EndpointStatus::Failed;
            record.failure_reason = Some(reason);
            record.last_modified_time = now();
            if let Err(e) = app.db.update(Table::Endpoints, &name, &record).await {
                tracing::error!(endpoint = %name, error = %e, "could not record endpoint status");
            }
        }
    }
}

/// Loads `config` for an endpoint in service and swaps it in; on failure the old config keeps
/// serving and the reason is recorded. Holds the control lock.
pub(super) async fn update_in_background(
    app: AppState,
    endpoint_name: String,
    config: EndpointConfigRecord,
) {
    let _guard = app.control.lock().await;
    let Ok(Some(mut record)) = app
        .db
        .get::<EndpointRecord>(Table::Endpoints, &endpoint_name)
        .await
    else {
        return; // deleted meanwhile
    };
    let old_config = record.endpoint_config_name.clone();
    let old_variants = record.production_variants.clone();
    let built = build(&app, &endpoint_name, &config, None).await;
    record.endpoint_status = EndpointStatus::InService;
    record.last_modified_time = now();
    // Persist first, then swap: if the write fails, the old config keeps serving and the
    // database still names it, so live routing and a restart agree.
    match built {
        Ok(serving) => {
            record.production_variants = variant_states(&serving, &config);
            record.endpoint_config_name = config.endpoint_config_name.clone();
            record.failure_reason = None;
            match app
                .db
                .update(Table::Endpoints, &endpoint_name, &record)
                .await
            {
                Ok(_) => {
                    let serving = Arc::new(serving);
                    app.serving.update(|s| {
                        s.endpoints.insert(endpoint_name.clone(), serving);
                    });
                    tracing::info!(endpoint = %endpoint_name, config = %config.endpoint_config_name, "endpoint updated");
                    return;
                }
                Err(e) => {
                    tracing::error!(endpoint = %endpoint_name, error = %e, "could not record the update; the previous config keeps serving");
                    record.endpoint_config_name = old_config;
                    record.production_variants = old_variants;
                    record.failure_reason =
                        Some(format!("the update could not be recorded: {}", e.message));
                }
            }
        }
        Err(reason) => {
            tracing::warn!(endpoint = %endpoint_name, %reason, "endpoint update failed; the previous config keeps serving");
            record.failure_reason = Some(reason);
        }
    }
    if let Err(e) = app
        .db
        .update(Table::Endpoints, &endpoint_name, &record)
        .await
    {
        tracing::error!(endpoint = %endpoint_name, error = %e, "could not record endpoint status");
    }
}

/// Brings every recorded endpoint back into service after a restart, with the config,
/// weights and pinned model versions it had.
pub async fn restore_endpoints(app: &AppState) -> Result<usize, crate::error::ApiError> {
    let _guard = app.control.lock().await;
    let records: Vec<EndpointRecord> = app.db.list(Table::Endpoints).await?;
    let mut restored = 0;
    for mut record in records {
        let name = record.endpoint_name.clone();
        if record.endpoint_status == EndpointStatus::Failed {
            app.serving.update(|s| {
                s.failed.insert(name.clone());
            });
            continue;
        }
        let config: Option<EndpointConfigRecord> = app
            .db
            .get(Table::EndpointConfigs, &record.endpoint_config_name)
            .await?;
        let outcome = match &config {
            Some(config) => build(app, &name, config, Some(&record.production_variants)).await,
            None => Err(format!(
                "endpoint configuration \"{}\" no longer exists",
                record.endpoint_config_name
            )),
        };
        match outcome {
            Ok(serving) => {
                let config = config.expect("built from a config");
                record.production_variants = variant_states(&serving, &config);
                let serving = Arc::new(serving);
                app.serving.update(|s| {
                    s.endpoints.insert(name.clone(), serving);
                });
                record.endpoint_status = EndpointStatus::InService;
                restored += 1;
                tracing::info!(endpoint = %name, "endpoint restored");
            }
            Err(reason) => {
                tracing::error!(endpoint = %name, %reason, "endpoint could not be restored");
                app.serving.update(|s| {
                    s.failed.insert(name.clone());
                });
                record.endpoint_status = EndpointStatus::Failed;
                record.failure_reason = Some(reason);
            }
        }
        record.last_modified_time = now();
        app.db.update(Table::Endpoints, &name, &record).await?;
    }
    Ok(restored)
}
