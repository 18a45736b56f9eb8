//! Putting endpoint configs and Models into service: load and warm every variant's model
//! version on the side, then publish the endpoint in one snapshot store. A failure publishes
//! nothing.
//!
//! Loading and warming run outside the control lock (they take seconds); the result is
//! stored under it, after a generation check: when nothing was published since the build
//! started, what it read still holds; otherwise the endpoint's record is read again and
//! the build is stored only if the record still asks for it.

use std::collections::HashMap;
use std::sync::Arc;

use super::options;
use crate::capture::Capture;
use crate::db::Table;
use crate::error::ApiError;
use crate::records::ArtifactRef;
use crate::records::{
    Deployed, DeployedImage, EndpointConfigRecord, EndpointRecord, EndpointStatus, ModelRecord,
    ProductionVariant, VariantState, VariantStatus, now,
};
use crate::serving::{
    EndpointServing, LoadedModel, ModelTarget, MultiModelSet, MultiModelSource, Shadow, Variant,
    WeightedChoice,
};
use crate::state::AppState;

/// The data plane's view of one Model: its pinned artifact and that artifact's store
/// versions. Blocks on the store: call from a blocking thread.
/// `None` for a multi-model Model (v2 cannot name its targets).
fn model_target(store: &pier_model_store::ModelStore, record: &ModelRecord) -> Option<ModelTarget> {
    let artifact = record.pier_artifact.as_ref()?;
    let versions = store.list_versions(&artifact.name).unwrap_or_else(|e| {
        tracing::warn!(model = %record.model_name, error = %e, "cannot list the artifact's versions");
        vec![artifact.version]
    });
    Some(ModelTarget {
        artifact: artifact.clone(),
        versions,
    })
}

/// Publishes every control-plane Model into the serving snapshot (at start), so v2 requests
/// that name a Model never read the database. Holds the control lock.
pub async fn publish_models(app: &AppState) -> Result<(), ApiError> {
    let _guard = app.control.lock().await;
    let records: Vec<ModelRecord> = app.db.list(Table::Models).await?;
    let store = app.store.clone();
    let models = tokio::task::spawn_blocking(move || {
        records
            .iter()
            .filter(|r| !r.is_pipeline())
            .filter_map(|r| Some((r.model_name.clone(), Arc::new(model_target(&store, r)?))))
            .collect::<HashMap<_, _>>()
    })
    .await
    .map_err(ApiError::internal)?;
    app.serving.update(|s| s.models = models);
    Ok(())
}

/// Publishes a Model just created; the other Models of its artifact learn of its version
/// too. Holds the control lock.
pub(super) async fn publish_model(app: &AppState, record: &ModelRecord) {
    if record.is_pipeline() {
        return; // a pipeline is served through an endpoint, not as a v2 Model
    }
    let (store, r) = (app.store.clone(), record.clone());
    let Ok(target) = tokio::task::spawn_blocking(move || model_target(&store, &r)).await else {
        tracing::error!(model = %record.model_name, "cannot publish the model to the data plane");
        return;
    };
    let Some(target) = target else {
        return; // a multi-model Model: endpoints serve it, v2 does not name it
    };
    let _guard = app.control.lock().await;
    let name = record.model_name.clone();
    app.serving.update(|s| {
        for other in s.models.values_mut() {
            if other.artifact.name == target.artifact.name {
                Arc::make_mut(other).versions.clone_from(&target.versions);
            }
        }
        s.models.insert(name, Arc::new(target));
    });
}

/// Withdraws a deleted Model from the data plane. Callers hold the control lock.
pub(super) fn retract_model(app: &AppState, name: &str) {
    app.serving.update(|s| {
        s.models.remove(name);
    });
}

/// The models `config` names, read from the database now (a deploy takes a copy of them).
pub(super) async fn resolve_models(
    app: &AppState,
    config: &EndpointConfigRecord,
) -> Result<Vec<ModelRecord>, String> {
    let mut models = Vec::with_capacity(config.all_variants().count());
    for pv in config.all_variants() {
        let model: ModelRecord = app
            .db
            .get(Table::Models, &pv.model_name)
            .await
            .map_err(|e| crate::error::ApiError::from(e).message)?
            .ok_or_else(|| {
                format!(
                    "Could not find model \"{}\" (variant {:?}).",
                    pv.model_name, pv.variant_name
                )
            })?;
        models.push(model);
    }
    Ok(models)
}

/// Loads everything `config` needs (`models` holds its variants' models, in order) and
/// returns the endpoint ready to publish. `weights` overrides the config's initial weights by
/// variant name (kept across restarts, or retained by an update), `counts` its initial
/// instance counts (their desired counts).
pub(super) async fn build(
    app: &AppState,
    endpoint_name: &str,
    config: &EndpointConfigRecord,
    models: &[ModelRecord],
    weights: Option<&[VariantState]>,
    counts: Option<&[VariantState]>,
) -> Result<EndpointServing, String> {
    if models.len() != config.all_variants().count() {
        return Err("the recorded deployment does not match its config".into());
    }
    let (production_models, shadow_models) = models.split_at(config.production_variants.len());
    let mut variants = Vec::with_capacity(config.production_variants.len());
    let mut weight_values = Vec::with_capacity(config.production_variants.len());
    for (pv, model) in config.production_variants.iter().zip(production_models) {
        let count = counts
            .and_then(|c| c.iter().find(|s| s.variant_name == pv.variant_name))
            .map_or_else(
                || pv.initial_instance_count.unwrap_or(1),
                |s| s.desired_instance_count,
            );
        let loaded = load_variant(app, endpoint_name, pv, model, count).await?;
        let weight = weights
            .and_then(|w| w.iter().find(|s| s.variant_name == pv.variant_name))
            .map_or_else(|| pv.weight(), |s| s.current_weight);
        weight_values.push(weight);
        variants.push(Variant {
            name: pv.variant_name.as_str().into(),
            model_name: pv.model_name.clone(),
            loaded,
            multi: multi_model_set(app, model)?,
        });
    }
    let choice = WeightedChoice::new(&weight_values).map_err(|e| e.to_string())?;
    let total: f64 = weight_values.iter().sum();
    let mut shadows = Vec::with_capacity(shadow_models.len());
    for (pv, model) in config.shadow_production_variants.iter().zip(shadow_models) {
        let loaded = load_variant(
            app,
            endpoint_name,
            pv,
            model,
            pv.initial_instance_count.unwrap_or(1),
        )
        .await?;
        shadows.push(Shadow {
            variant: Variant {
                name: pv.variant_name.as_str().into(),
                model_name: pv.model_name.clone(),
                loaded,
                multi: multi_model_set(app, model)?,
            },
            share: (pv.weight() / total).min(1.0),
        });
    }
    let capture = match &config.data_capture_config {
        Some(c) => Capture::start(
            endpoint_name,
            c,
            &app.config.capture,
            &app.config.jobs.s3,
            &app.config.jobs.import_policy,
        )?,
        None => None,
    };
    Ok(EndpointServing {
        name: endpoint_name.to_owned(),
        config_name: config.endpoint_config_name.clone(),
        variants,
        choice,
        shadows,
        capture,
    })
}

/// Loads (or shares) `model` and makes the copy variant `pv` of `endpoint_name` serves with
/// `count` instances: an ONNX Runtime session pool per instance
/// ([`super::instances::load_options_for`]) and, when batching is on, batch slots per
/// instance.
pub(super) async fn load_variant(
    app: &AppState,
    endpoint_name: &str,
    pv: &ProductionVariant,
    model: &ModelRecord,
    count: u32,
) -> Result<Arc<LoadedModel>, String> {
    let variant_err = |e: String| format!("variant {:?}: {e}", pv.variant_name);
    let batching = options::resolve_batching(&model.primary_container, pv.pier_batching.as_ref())
        .map_err(variant_err)?;
    let Some(artifact) = model.pier_artifact.clone() else {
        // A multi-model variant: a placeholder carries its labels; targets load per request.
        let placeholder = Arc::new(LoadedModel::new(
            ArtifactRef {
                name: model.model_name.clone(),
                version: 0,
            },
            Arc::new(crate::serving::multi_model::MultiModelContainer::default()),
            Default::default(),
        ));
        return Ok(placeholder.serve_as(
            endpoint_name,
            &pv.variant_name,
            &pv.model_name,
            None,
            count,
        ));
    };
    let shared = if model.is_pipeline() {
        load_pipeline(app, model, count)
            .await
            .map_err(variant_err)?
    } else {
        let load_opts = options::load_options(&model.primary_container).map_err(variant_err)?;
        let load_opts = super::instances::load_options_for(&load_opts, count);
        let (state, shown) = (app.clone(), artifact.clone());
        tokio::task::spawn_blocking(move || {
            state
                .serving
                .cache
                .get_or_load_with(&state.store, &artifact, &load_opts)
        })
        .await
        .map_err(|e| format!("loading {shown} panicked: {e}"))?
        .map_err(|e| variant_err(e.to_string()))?
    };
    if batching.is_some() {
        options::check_batchable(shared.model.signature()).map_err(variant_err)?;
    }
    Ok(shared.serve_as(
        endpoint_name,
        &pv.variant_name,
        &pv.model_name,
        batching.map(|b| (b, app.serving.pool.clone())),
        count,
    ))
}

/// Loads a serial pipeline's containers (each through the cache, with its own load
/// options and `count` instances) and composes them, warmed as one model: each container
/// answers in its `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT` (default `text/csv`), which the
/// next one reads.
async fn load_pipeline(
    app: &AppState,
    model: &ModelRecord,
    count: u32,
) -> Result<Arc<LoadedModel>, String> {
    use pier_runtimes::codec::Format;
    use pier_runtimes::pipeline::{Pipeline, Step};
    if model.containers.len() != model.pier_pipeline.len() {
        return Err(format!(
            "model {:?} records {} containers and {} artifacts",
            model.model_name,
            model.containers.len(),
            model.pier_pipeline.len()
        ));
    }
    let mut plan = Vec::with_capacity(model.containers.len());
    for (i, (container, artifact)) in model
        .containers
        .iter()
        .zip(&model.pier_pipeline)
        .enumerate()
    {
        let options = options::load_options(container)
            .map(|o| super::instances::load_options_for(&o, count))
            .map_err(|e| format!("container {}: {e}", i + 1))?;
        let accept = match container.environment.get(super::models::PIPELINE_ACCEPT) {
            Some(a) => {
                Format::from_content_type(a).map_err(|e| format!("container {}: {e}", i + 1))?
            }
            None => Format::Csv,
        };
        let name = container
            .container_hostname
            .clone()
            .unwrap_or_else(|| format!("container {} ({})", i + 1, container.image));
        plan.push((artifact.clone(), options, accept, name));
    }
    let state = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut parts = Vec::with_capacity(plan.len());
        let mut steps = Vec::with_capacity(plan.len());
        for (artifact, options, accept, name) in plan {
            let loaded = state
                .serving
                .cache
                .get_or_load_with(&state.store, &artifact, &options)
                .map_err(|e| e.to_string())?;
            steps.push(Step {
                name,
                model: loaded.model.clone(),
                accept,
            });
            parts.push(loaded);
        }
        let pipeline = Pipeline::new(steps).map_err(|e| e.to_string())?;
        crate::serving::warm_up(&pipeline)
            .map_err(|e| format!("the pipeline failed its warm-up request: {e}"))?;
        let first = parts[0].artifact.clone();
        Ok(LoadedModel::composed(first, Arc::new(pipeline), parts))
    })
    .await
    .map_err(|e| format!("loading pipeline {:?} panicked: {e}", model.model_name))?
}

/// The multi-model set a variant of `model` serves, `None` for a single-model Model; the
/// prefix is checked again against the import roots (they may have changed since
/// CreateModel).
fn multi_model_set(
    app: &AppState,
    model: &ModelRecord,
) -> Result<Option<Arc<MultiModelSet>>, String> {
    let container = &model.primary_container;
    if !container.is_multi_model() {
        return Ok(None);
    }
    let url = container.model_data_url.as_deref().unwrap_or_default();
    let policy = app
        .config
        .import
        .policy(app.config.admin_addr)
        .map_err(|e| e.to_string())?;
    let source = MultiModelSource::parse(url, &policy)?;
    Ok(Some(Arc::new(MultiModelSet {
        model_name: model.model_name.clone(),
        key: format!("{}@{}", model.model_name, model.creation_time),
        image: container.image.clone(),
        source,
        options: options::load_options(container)?,
        hits: crate::metrics::multi_model_hits(&model.model_name),
    })))
}

/// A multi-model Model's `ModelDataUrl` prefix, as given.
fn multi_model_prefix(model: &ModelRecord) -> String {
    model
        .primary_container
        .model_data_url
        .clone()
        .unwrap_or_default()
}

/// Records what an endpoint serves now: its variants' and shadow variants' states and its
/// data capture.
pub(super) fn record_serving(
    record: &mut EndpointRecord,
    serving: &EndpointServing,
    config: &EndpointConfigRecord,
    models: &[ModelRecord],
) {
    let time = now();
    let state =
        |v: &Variant, pv: &ProductionVariant, model: &ModelRecord, weight: f64| VariantState {
            variant_name: v.name.to_string(),
            current_weight: weight,
            desired_weight: weight,
            current_instance_count: pv.initial_instance_count.unwrap_or(1),
            desired_instance_count: pv.initial_instance_count.unwrap_or(1),
            pier_model_name: v.model_name.clone(),
            // A multi-model variant serves whatever its prefix holds: it names the prefix.
            pier_artifact: match &v.multi {
                Some(_) => multi_model_prefix(model),
                None => v.loaded.artifact.to_string(),
            },
            deployed_images: vec![DeployedImage {
                specified_image: model.primary_container.image.clone(),
                resolved_image: match &v.multi {
                    Some(_) => format!(
                        "{}@{}",
                        model.primary_container.image,
                        multi_model_prefix(model)
                    ),
                    None => format!(
                        "{}@pier:{}",
                        model.primary_container.image, v.loaded.artifact
                    ),
                },
                resolution_time: time,
            }],
            variant_status: Vec::new(),
        };
    let (production_models, shadow_models) = models.split_at(serving.variants.len());
    record.production_variants = serving
        .variants
        .iter()
        .zip(&config.production_variants)
        .zip(production_models)
        .enumerate()
        .map(|(i, ((v, pv), model))| state(v, pv, model, serving.choice.weight(i)))
        .collect();
    record.shadow_production_variants = serving
        .shadows
        .iter()
        .zip(&config.shadow_production_variants)
        .zip(shadow_models)
        .map(|((s, pv), model)| state(&s.variant, pv, model, pv.weight()))
        .collect();
    record.data_capture_config = config
        .data_capture_config
        .as_ref()
        .map(crate::capture::DataCaptureConfig::summary);
}

/// Marks every variant as in the step `status` (SageMaker's `VariantStatus`).
pub(super) fn set_variant_status(variants: &mut [VariantState], status: &str) {
    let time = now();
    for v in variants {
        v.variant_status = vec![VariantStatus {
            status: status.to_owned(),
            status_message: None,
            start_time: time,
        }];
    }
}

/// Which variant properties an update keeps from the endpoint (`RetainAllVariantProperties`
/// less `ExcludeRetainedVariantProperties`).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Retain {
    /// Keep `DesiredWeight` of variants the new config names too.
    pub weights: bool,
    /// Keep `DesiredInstanceCount` of variants the new config names too.
    pub instance_counts: bool,
}

/// Loads `config` for a new endpoint (outside the control lock) and records the outcome
/// (under it).
pub(super) async fn create_in_background(
    app: AppState,
    mut record: EndpointRecord,
    config: EndpointConfigRecord,
) {
    let name = record.endpoint_name.clone();
    // Read the generation, then the record: a delete before this point shows in the record,
    // one after it changes the generation.
    let generation = app.serving.generation();
    let waiting = |r: &Result<Option<EndpointRecord>, _>| matches!(r, Ok(Some(r)) if r.endpoint_status == EndpointStatus::Creating);
    if !waiting(&app.db.get::<EndpointRecord>(Table::Endpoints, &name).await) {
        return; // deleted before it was built
    }
    let built = match resolve_models(&app, &config).await {
        Ok(models) => build(&app, &name, &config, &models, None, None)
            .await
            .map(|serving| (serving, models)),
        Err(e) => Err(e),
    };
    let _guard = app.control.lock().await;
    // Published meanwhile: a delete may have come; store only if the record still waits.
    if app.serving.generation() != generation
        && !waiting(&app.db.get::<EndpointRecord>(Table::Endpoints, &name).await)
    {
        return; // deleted while it was built
    }
    // The record is written before the snapshot changes: a failed write leaves nothing
    // live that the database (and so a restart) would not show.
    match built {
        Ok((serving, models)) => {
            record_serving(&mut record, &serving, &config, &models);
            record.pier_deployed = Some(Deployed {
                config: config.clone(),
                models,
            });
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
                    super::replicas::note_served(&app, &record);
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

/// Loads `config` for an endpoint in service (outside the control lock) and swaps it in
/// (under it); on failure the old config keeps serving and the reason is recorded.
pub(super) async fn update_in_background(
    app: AppState,
    endpoint_name: String,
    config: EndpointConfigRecord,
    retain: Retain,
) {
    let generation = app.serving.generation();
    let updating = |r: &EndpointRecord| r.endpoint_status == EndpointStatus::Updating;
    let Ok(Some(record)) = app
        .db
        .get::<EndpointRecord>(Table::Endpoints, &endpoint_name)
        .await
    else {
        return; // deleted meanwhile
    };
    if !updating(&record) {
        return;
    }
    let mut old_variants = record.production_variants.clone();
    for v in &mut old_variants {
        v.variant_status.clear();
    }
    // While the endpoint is Updating, no other update and no weight change is accepted, so
    // the weights kept here are the ones in force when the build is stored.
    let kept_weights = retain.weights.then_some(old_variants.as_slice());
    let built = match resolve_models(&app, &config).await {
        Ok(models) => build(
            &app,
            &endpoint_name,
            &config,
            &models,
            kept_weights,
            retain.instance_counts.then_some(old_variants.as_slice()),
        )
        .await
        .map(|serving| (serving, models)),
        Err(e) => Err(e),
    };
    let _guard = app.control.lock().await;
    let mut record = if app.serving.generation() == generation {
        record
    } else {
        // Published meanwhile: a delete may have come; read the record again.
        match app
            .db
            .get::<EndpointRecord>(Table::Endpoints, &endpoint_name)
            .await
        {
            Ok(Some(r)) if updating(&r) => r,
            _ => return,
        }
    };
    let old_config = record.endpoint_config_name.clone();
    let old_deployed = record.pier_deployed.clone();
    record.endpoint_status = EndpointStatus::InService;
    record.last_modified_time = now();
    record.production_variants.clone_from(&old_variants);
    // Persist first, then swap: if the write fails, the old config keeps serving and the
    // database still names it, so live routing and a restart agree.
    match built {
        Ok((serving, models)) => {
            record_serving(&mut record, &serving, &config, &models);
            if retain.instance_counts {
                for v in &mut record.production_variants {
                    if let Some(old) = old_variants
                        .iter()
                        .find(|o| o.variant_name == v.variant_name)
                    {
                        v.desired_instance_count = old.desired_instance_count;
                        v.current_instance_count = old.desired_instance_count;
                    }
                }
            }
            record.endpoint_config_name = config.endpoint_config_name.clone();
            record.pier_deployed = Some(Deployed {
                config: config.clone(),
                models,
            });
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
                    super::replicas::note_served(&app, &record);
                    tracing::info!(endpoint = %endpoint_name, config = %config.endpoint_config_name, "endpoint updated");
                    return;
                }
                Err(e) => {
                    tracing::error!(endpoint = %endpoint_name, error = %e, "could not record the update; the previous config keeps serving");
                    record.endpoint_config_name = old_config;
                    record.pier_deployed = old_deployed;
                    record.production_variants = old_variants;
                    record.failure_reason = Some(format!(
                        "the update could not be recorded: {}",
                        crate::error::ApiError::from(e).message
                    ));
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
/// models, weights and pinned versions it recorded at deploy time (so an endpoint whose
/// config or models were deleted since is restored all the same), and finishes deletes that
/// a stop interrupted.
pub async fn restore_endpoints(app: &AppState) -> Result<usize, crate::error::ApiError> {
    let _guard = app.control.lock().await;
    let records: Vec<EndpointRecord> = app.db.list(Table::Endpoints).await?;
    let mut restored = 0;
    for mut record in records {
        let name = record.endpoint_name.clone();
        match record.endpoint_status {
            EndpointStatus::Failed => {
                app.serving.update(|s| {
                    s.failed.insert(name.clone());
                });
                continue;
            }
            EndpointStatus::Deleting => {
                app.db.delete(Table::Endpoints, &name).await?;
                super::tags::remove_all(app, &record.endpoint_arn).await?;
                tracing::info!(endpoint = %name, "finished an interrupted delete");
                continue;
            }
            _ => {}
        }
        let deployed = match record.pier_deployed.clone() {
            Some(deployed) => Ok(deployed),
            // Recorded before deployments were copied, or stopped while Creating.
            None => match app
                .db
                .get::<EndpointConfigRecord>(Table::EndpointConfigs, &record.endpoint_config_name)
                .await?
            {
                Some(config) => resolve_models(app, &config)
                    .await
                    .map(|models| Deployed { config, models }),
                None => Err(format!(
                    "endpoint configuration \"{}\" no longer exists",
                    record.endpoint_config_name
                )),
            },
        };
        let outcome = match &deployed {
            Ok(d) => {
                build(
                    app,
                    &name,
                    &d.config,
                    &d.models,
                    Some(&record.production_variants),
                    Some(&record.production_variants),
                )
                .await
            }
            Err(e) => Err(e.clone()),
        };
        match outcome {
            Ok(serving) => {
                let deployed = deployed.expect("built from a deployment");
                let counts: Vec<(String, u32)> = record
                    .production_variants
                    .iter()
                    .map(|v| (v.variant_name.clone(), v.desired_instance_count))
                    .collect();
                record_serving(&mut record, &serving, &deployed.config, &deployed.models);
                for v in &mut record.production_variants {
                    if let Some((_, count)) = counts.iter().find(|(n, _)| *n == v.variant_name) {
                        v.desired_instance_count = *count;
                        v.current_instance_count = *count;
                    }
                }
                record.endpoint_config_name = deployed.config.endpoint_config_name.clone();
                record.pier_deployed = Some(deployed);
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
        super::replicas::note_served(app, &record);
    }
    Ok(restored)
}
