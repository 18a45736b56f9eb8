//! CreateModel, DescribeModel, ListModels, DeleteModel.
//!
//! CreateModel imports on a blocking thread, cancelled when the handler is dropped; a version
//! it imported is deleted again if the model record cannot be saved, so a failed CreateModel
//! leaves nothing behind.

use pier_model_store::Cancel;
use serde::{Deserialize, Serialize};

use super::list::{ListKey, ListRequest, ListSpec, page};
use super::{import, tags, validate_name};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{
    ArtifactRef, ContainerDefinition, InferenceExecutionConfig, ModelRecord, Tag, arn, now,
};
use crate::state::AppState;

/// CreateModel's request. Fields Pier cannot honour yet are read only to be refused by name;
/// unknown fields are refused.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateModel {
    model_name: String,
    primary_container: Option<ContainerDefinition>,
    #[serde(default)]
    execution_role_arn: Option<String>,
    #[serde(default)]
    enable_network_isolation: Option<bool>,
    #[serde(default)]
    tags: Vec<Tag>,
    /// A serial inference pipeline's containers (instead of `PrimaryContainer`).
    #[serde(default)]
    containers: Option<Vec<ContainerDefinition>>,
    /// With `Containers`: `Mode` `Serial` (the default).
    #[serde(default)]
    inference_execution_config: Option<InferenceExecutionConfig>,
    /// Refused: Pier runs no VPC.
    #[serde(default)]
    vpc_config: Option<serde_json::Value>,
}

impl CreateModel {
    pub(super) fn new(name: &str, container: ContainerDefinition) -> Self {
        Self {
            model_name: name.into(),
            primary_container: Some(container),
            execution_role_arn: None,
            enable_network_isolation: None,
            tags: Vec::new(),
            containers: None,
            inference_execution_config: None,
            vpc_config: None,
        }
    }
}

/// SageMaker's answer for a missing model.
pub(super) fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format_args!("model \"{}\"", arn("model", name)))
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ModelArn {
    model_arn: String,
}

/// Most containers of a serial inference pipeline (SageMaker's limit).
const MAX_PIPELINE_CONTAINERS: usize = 15;

pub(super) async fn create(app: &AppState, req: CreateModel) -> Result<ModelArn, ApiError> {
    validate_name("model", &req.model_name)?;
    if req.vpc_config.is_some() {
        return Err(unsupported("VpcConfig"));
    }
    let (containers, pipeline) = match (req.primary_container, req.containers) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "PrimaryContainer and Containers cannot both be given",
            ));
        }
        (None, None) => return Err(ApiError::validation("PrimaryContainer is required")),
        (Some(container), None) => {
            if req.inference_execution_config.is_some() {
                return Err(ApiError::validation(
                    "InferenceExecutionConfig goes with Containers, not PrimaryContainer",
                ));
            }
            (vec![("PrimaryContainer".to_owned(), container)], false)
        }
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_PIPELINE_CONTAINERS {
                return Err(ApiError::validation(format!(
                    "Containers must hold 1 to {MAX_PIPELINE_CONTAINERS} containers (it holds {})",
                    list.len()
                )));
            }
            if let Some(mode) = req.inference_execution_config.as_ref().map(|c| &c.mode)
                && mode != "Serial"
            {
                return Err(ApiError::validation(format!(
                    "InferenceExecutionConfig.Mode {mode:?} is not supported: Pier runs pipelines Serial (each container's answer is the next one's request)"
                )));
            }
            let named = list
                .into_iter()
                .enumerate()
                .map(|(i, c)| (format!("Containers[{i}]"), c))
                .collect();
            (named, true)
        }
    };
    let mut checked = Vec::with_capacity(containers.len());
    for (field, container) in containers {
        checked.push((field.clone(), check_container(&field, container, pipeline)?));
    }
    if let Some(role) = &req.execution_role_arn {
        validate_role_arn(role)?;
    }
    tags::validate(&req.tags)?;
    if app
        .db
        .get::<ModelRecord>(Table::Models, &req.model_name)
        .await?
        .is_some()
    {
        return Err(ApiError::already_exists(
            "model",
            &arn("model", &req.model_name),
        ));
    }
    // Each container's artifact; on any failure, nothing imported here stays in the store.
    // A multi-model Model imports nothing now: each archive under its prefix loads on its
    // first request.
    let multi = !pipeline && checked[0].1.is_multi_model();
    if multi {
        let url = checked[0].1.model_data_url.as_deref().unwrap_or_default();
        let policy = app
            .config
            .import
            .policy(app.config.admin_addr)
            .map_err(|e| ApiError::validation(e.to_string()))?;
        crate::serving::MultiModelSource::parse(url, &policy).map_err(ApiError::validation)?;
    }
    let mut resolved: Vec<import::Resolved> = Vec::with_capacity(checked.len());
    for (i, (field, container)) in checked.iter().enumerate().filter(|_| !multi) {
        let store_name = if pipeline {
            pipeline_store_name(&req.model_name, i)
        } else {
            req.model_name.clone()
        };
        match import_container(app, &store_name, container).await {
            Ok(r) => resolved.push(r),
            Err(mut e) => {
                for r in resolved.iter().filter(|r| r.imported) {
                    remove_import(app, &r.artifact).await;
                }
                if pipeline {
                    e.message = format!("{field}: {}", e.message);
                }
                return Err(e);
            }
        }
    }
    let containers: Vec<ContainerDefinition> = checked
        .into_iter()
        .enumerate()
        .map(|(i, (_, mut c))| {
            if let Some(r) = resolved.get(i) {
                c.image.clone_from(&r.runtime);
            }
            c
        })
        .collect();
    let record = ModelRecord {
        model_arn: arn("model", &req.model_name),
        model_name: req.model_name.clone(),
        primary_container: containers[0].clone(),
        execution_role_arn: req.execution_role_arn,
        enable_network_isolation: req.enable_network_isolation,
        creation_time: now(),
        pier_artifact: resolved.first().map(|r| r.artifact.clone()),
        inference_execution_config: pipeline.then(|| {
            req.inference_execution_config
                .unwrap_or(InferenceExecutionConfig {
                    mode: "Serial".into(),
                })
        }),
        pier_pipeline: if pipeline {
            resolved.iter().map(|r| r.artifact.clone()).collect()
        } else {
            Vec::new()
        },
        containers: if pipeline { containers } else { Vec::new() },
    };
    let inserted = app.db.insert(Table::Models, &req.model_name, &record).await;
    if !matches!(inserted, Ok(true)) {
        // Nothing of a failed CreateModel stays in the store.
        for r in resolved.iter().filter(|r| r.imported) {
            remove_import(app, &r.artifact).await;
        }
    }
    if !inserted? {
        return Err(ApiError::already_exists("model", &record.model_arn));
    }
    super::deploy::publish_model(app, &record).await;
    tags::set_initial(app, &record.model_arn, &req.tags).await?;
    match &record.pier_artifact {
        Some(artifact) => {
            tracing::info!(model = %req.model_name, %artifact, containers = resolved.len(), "model created")
        }
        None => {
            tracing::info!(model = %req.model_name, prefix = ?record.primary_container.model_data_url, "multi-model model created")
        }
    }
    Ok(ModelArn {
        model_arn: record.model_arn,
    })
}

/// The store name a pipeline's `i`-th container is imported under: the Model's name and
/// the container's position (a store name may be shared: versions keep imports apart).
fn pipeline_store_name(model: &str, i: usize) -> String {
    let suffix = format!("-{}", i + 1);
    let keep = model.len().min(63 - suffix.len());
    format!("{}{suffix}", &model[..keep])
}

/// Checks one container of CreateModel (`field` names it in errors) and returns it with
/// SageMaker's built-in image URIs named by Pier's runtime.
fn check_container(
    field: &str,
    mut container: ContainerDefinition,
    pipeline: bool,
) -> Result<ContainerDefinition, ApiError> {
    // SageMaker's image URIs of the built-ins (`…/linear-learner:1`, `…/sagemaker-xgboost:1.7-1`)
    // name Pier's runtime of the same algorithm; the record keeps the runtime's name.
    if let Some(algorithm) = pier_jobs::training::builtin_for_image(&container.image) {
        container.image = algorithm.image_name().to_owned();
    }
    // A framework image (`…/sagemaker-scikit-learn:1.2-1-cpu-py3`, `pier-script`, …): the
    // runtime is what the model's files show; the record keeps that runtime's name.
    let detect = pier_jobs::script::is_framework_image(&container.image);
    if let Some(unsupported_field) = container.unsupported() {
        return Err(unsupported(&format!("{field}.{unsupported_field}")));
    }
    if let Some(mode) = container.mode.as_deref()
        && mode != "SingleModel"
        && (pipeline || mode != "MultiModel")
    {
        let valid = if pipeline {
            "a pipeline's containers are SingleModel"
        } else {
            "use SingleModel or MultiModel"
        };
        return Err(ApiError::validation(format!(
            "{field}.Mode {mode:?} is not valid; {valid}"
        )));
    }
    container
        .check_multi_model_config()
        .map_err(ApiError::validation)?;
    let supported = pier_runtimes::loader::SUPPORTED_RUNTIMES;
    if !detect && !supported.contains(&container.image.as_str()) {
        return Err(ApiError::validation(format!(
            "{field}.Image {:?} is not a Pier runtime; use one of: {}",
            container.image,
            supported.join(", ")
        )));
    }
    super::options::validate_model(&container)
        .map_err(|e| ApiError::validation(if pipeline { format!("{field}: {e}") } else { e }))?;
    if pipeline && let Some(accept) = container.environment.get(PIPELINE_ACCEPT) {
        pier_runtimes::codec::Format::from_content_type(accept).map_err(|e| {
            ApiError::validation(format!("{field}.Environment {PIPELINE_ACCEPT}: {e}"))
        })?;
    }
    if container.model_data_url.is_none() {
        return Err(ApiError::validation(format!(
            "{field}.ModelDataUrl is required"
        )));
    }
    Ok(container)
}

/// The variable a pipeline container's answer type is read from, as SageMaker's pipelines.
pub(super) const PIPELINE_ACCEPT: &str = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT";

/// Imports (or resolves) `container`'s `ModelDataUrl` as store name `store_name`.
async fn import_container(
    app: &AppState,
    store_name: &str,
    container: &ContainerDefinition,
) -> Result<import::Resolved, ApiError> {
    let url = container
        .model_data_url
        .clone()
        .expect("checked by check_container");
    // The import runs on a blocking thread; if this handler is dropped (the client went
    // away, the request timed out) the guard sets the cancel flag, the copy stops at its next
    // chunk and its staging folder is removed.
    let cancel = Cancel::new();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let (store, config, admin_addr, name, image) = (
        app.store.clone(),
        app.config.import.clone(),
        app.config.admin_addr,
        store_name.to_owned(),
        if pier_jobs::script::is_framework_image(&container.image) {
            import::DETECT.to_owned()
        } else {
            container.image.clone()
        },
    );
    // An s3:// archive comes down first, into a scratch folder of this call's own in the data
    // folder (removed when the call ends, however it ends).
    let fetched = if url.starts_with("s3://") {
        let scratch = tempfile::Builder::new()
            .prefix(".model-data-")
            .tempdir_in(&app.config.data_dir)
            .map_err(ApiError::internal)?;
        let source = import::fetch_s3(&config, &app.config.jobs.s3, &url, scratch.path()).await?;
        Some((scratch, source))
    } else {
        None
    };
    tokio::task::spawn_blocking(move || {
        let job = import::Import {
            store: &store,
            config: &config,
            admin_addr,
            cancel,
            model_name: &name,
            image: &image,
        };
        match &fetched {
            Some((_scratch, source)) => import::import_fetched(&job, &url, source),
            None => import::resolve(&job, &url),
        }
    })
    .await
    .map_err(ApiError::internal)?
}

/// Sets the import's cancel flag when dropped.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Deletes a version this CreateModel published, when the model record could not be saved.
async fn remove_import(app: &AppState, artifact: &ArtifactRef) {
    let (store, artifact) = (app.store.clone(), artifact.clone());
    let removed = tokio::task::spawn_blocking(move || {
        store
            .delete_version(&artifact.name, artifact.version)
            .map(|()| artifact)
    })
    .await;
    match removed {
        Ok(Ok(artifact)) => tracing::info!(%artifact, "removed the import of a failed CreateModel"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot remove the import of a failed CreateModel")
        }
        Err(e) => tracing::warn!(error = %e, "cannot remove the import of a failed CreateModel"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ByName {
    model_name: String,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let record: ModelRecord = app
        .db
        .get(Table::Models, &req.model_name)
        .await?
        .ok_or_else(|| not_found(&req.model_name))?;
    let pipeline = record.is_pipeline();
    let mut described = serde_json::to_value(record).map_err(ApiError::internal)?;
    if pipeline {
        // A pipeline is described by its Containers, as SageMaker describes it.
        if let Some(fields) = described.as_object_mut() {
            fields.remove("PrimaryContainer");
        }
    }
    Ok(described)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ModelSummary {
    model_name: String,
    model_arn: String,
    creation_time: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListModelsResponse {
    models: Vec<ModelSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

pub(super) async fn list(app: &AppState, req: ListRequest) -> Result<ListModelsResponse, ApiError> {
    let all: Vec<ModelRecord> = app.db.list(Table::Models).await?;
    let spec = ListSpec {
        sort_keys: &["Name", "CreationTime"],
        last_modified: false,
        statuses: None,
    };
    let (items, next_token) = page(all, &req, &spec, |m| ListKey {
        name: &m.model_name,
        creation_time: m.creation_time,
        last_modified_time: m.creation_time,
        status: "",
    })?;
    let models = items
        .into_iter()
        .map(|m| ModelSummary {
            model_name: m.model_name,
            model_arn: m.model_arn,
            creation_time: m.creation_time,
        })
        .collect();
    Ok(ListModelsResponse { models, next_token })
}

/// Deletes a model. An endpoint that serves it keeps serving (and is restored after a
/// restart from what it recorded at deploy time), as SageMaker allows.
pub(super) async fn delete(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let _guard = app.control.lock().await;
    if !app.db.delete(Table::Models, &req.model_name).await? {
        return Err(not_found(&req.model_name));
    }
    super::deploy::retract_model(app, &req.model_name);
    tags::remove_all(app, &arn("model", &req.model_name)).await?;
    Ok(serde_json::json!({}))
}

/// An accepted field Pier cannot honour yet.
pub(super) fn unsupported(field: &str) -> ApiError {
    ApiError::validation(format!(
        "{field} is not supported by Pier yet; remove it from the request"
    ))
}

/// SageMaker's `RoleArn` rule: `arn:aws*:iam::ACCOUNT:role/NAME`, 20–2048 characters.
pub(super) fn validate_role_arn(role: &str) -> Result<(), ApiError> {
    let shape_ok = role.starts_with("arn:aws")
        && role
            .split_once(":iam::")
            .and_then(|(_, rest)| {
                rest.split_once(":role/")
                    .or_else(|| rest.split_once(":role"))
            })
            .is_some_and(|(account, name)| {
                account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && !name.is_empty()
            });
    if !(20..=2048).contains(&role.len()) || !shape_ok {
        return Err(ApiError::validation(format!(
            "ExecutionRoleArn {role:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        )));
    }
    Ok(())
}
