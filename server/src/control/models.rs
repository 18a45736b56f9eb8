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
use crate::records::{ArtifactRef, ContainerDefinition, ModelRecord, Tag, arn, first_present, now};
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
    /// Refused until inference pipelines are served.
    #[serde(default)]
    containers: Option<serde_json::Value>,
    /// Refused with `Containers`.
    #[serde(default)]
    inference_execution_config: Option<serde_json::Value>,
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

pub(super) async fn create(app: &AppState, req: CreateModel) -> Result<ModelArn, ApiError> {
    validate_name("model", &req.model_name)?;
    if let Some(field) = first_present(&[
        ("Containers", req.containers.is_some()),
        (
            "InferenceExecutionConfig",
            req.inference_execution_config.is_some(),
        ),
        ("VpcConfig", req.vpc_config.is_some()),
    ]) {
        return Err(unsupported(field));
    }
    let Some(mut container) = req.primary_container else {
        return Err(ApiError::validation("PrimaryContainer is required"));
    };
    // SageMaker's image URIs of the built-ins (`…/linear-learner:1`, `…/sagemaker-xgboost:1.7-1`)
    // name Pier's runtime of the same algorithm; the record keeps the runtime's name.
    if let Some(algorithm) = pier_jobs::training::builtin_for_image(&container.image) {
        container.image = algorithm.image_name().to_owned();
    }
    if let Some(field) = container.unsupported() {
        return Err(unsupported(&format!("PrimaryContainer.{field}")));
    }
    if let Some(mode) = container.mode.as_deref()
        && mode != "SingleModel"
        && mode != "MultiModel"
    {
        return Err(ApiError::validation(format!(
            "PrimaryContainer.Mode {mode:?} is not valid; use SingleModel or MultiModel"
        )));
    }
    container
        .check_multi_model_config()
        .map_err(ApiError::validation)?;
    if let Some(role) = &req.execution_role_arn {
        validate_role_arn(role)?;
    }
    tags::validate(&req.tags)?;
    let supported = pier_runtimes::loader::SUPPORTED_RUNTIMES;
    if !supported.contains(&container.image.as_str()) {
        return Err(ApiError::validation(format!(
            "PrimaryContainer.Image {:?} is not a Pier runtime; use one of: {}",
            container.image,
            supported.join(", ")
        )));
    }
    super::options::validate_model(&container).map_err(ApiError::validation)?;
    let Some(url) = container.model_data_url.clone() else {
        return Err(ApiError::validation(
            "PrimaryContainer.ModelDataUrl is required",
        ));
    };
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
    if container.is_multi_model() {
        // Nothing is imported now: each archive under the prefix loads on its first request.
        let policy = app
            .config
            .import
            .policy(app.config.admin_addr)
            .map_err(|e| ApiError::validation(e.to_string()))?;
        crate::serving::MultiModelSource::parse(&url, &policy).map_err(ApiError::validation)?;
        return save(
            app,
            req.model_name,
            container,
            req.execution_role_arn,
            req.enable_network_isolation,
            None,
            &req.tags,
        )
        .await;
    }
    // The import runs on a blocking thread; if this handler is dropped (the client went
    // away, the request timed out) the guard sets the cancel flag, the copy stops at its next
    // chunk and its staging folder is removed.
    let cancel = Cancel::new();
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let (store, config, admin_addr, name, image) = (
        app.store.clone(),
        app.config.import.clone(),
        app.config.admin_addr,
        req.model_name.clone(),
        container.image.clone(),
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
    let resolved = tokio::task::spawn_blocking(move || {
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
    .map_err(ApiError::internal)??;
    save(
        app,
        req.model_name,
        container,
        req.execution_role_arn,
        req.enable_network_isolation,
        Some(resolved),
        &req.tags,
    )
    .await
}

/// Records a Model (and publishes it to the data plane); a version this call imported is
/// removed again if the record cannot be saved.
async fn save(
    app: &AppState,
    model_name: String,
    container: ContainerDefinition,
    execution_role_arn: Option<String>,
    enable_network_isolation: Option<bool>,
    resolved: Option<import::Resolved>,
    tags: &[Tag],
) -> Result<ModelArn, ApiError> {
    let record = ModelRecord {
        model_arn: arn("model", &model_name),
        model_name: model_name.clone(),
        primary_container: container,
        execution_role_arn,
        enable_network_isolation,
        creation_time: now(),
        pier_artifact: resolved.as_ref().map(|r| r.artifact.clone()),
    };
    let inserted = app.db.insert(Table::Models, &model_name, &record).await;
    if let Some(resolved) = &resolved
        && !matches!(inserted, Ok(true))
        && resolved.imported
    {
        // Nothing of a failed CreateModel stays in the store.
        remove_import(app, &resolved.artifact).await;
    }
    if !inserted? {
        return Err(ApiError::already_exists("model", &record.model_arn));
    }
    super::deploy::publish_model(app, &record).await;
    tags::set_initial(app, &record.model_arn, tags).await?;
    match &record.pier_artifact {
        Some(artifact) => tracing::info!(model = %model_name, %artifact, "model created"),
        None => {
            tracing::info!(model = %model_name, prefix = ?record.primary_container.model_data_url, "multi-model model created")
        }
    }
    Ok(ModelArn {
        model_arn: record.model_arn,
    })
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

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<ModelRecord, ApiError> {
    app.db
        .get(Table::Models, &req.model_name)
        .await?
        .ok_or_else(|| not_found(&req.model_name))
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
