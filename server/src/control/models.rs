//! CreateModel, DescribeModel, ListModels, DeleteModel.
//!
//! CreateModel imports on a blocking thread, cancelled when the handler is dropped; a version
//! it imported is deleted again if the model record cannot be saved, so a failed CreateModel
//! leaves nothing behind.

use pier_model_store::Cancel;
use serde::{Deserialize, Serialize};

use super::list::{ListRequest, page};
use super::{import, validate_name};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{
    ArtifactRef, ContainerDefinition, EndpointConfigRecord, EndpointRecord, ModelRecord, arn, now,
};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CreateModel {
    model_name: String,
    primary_container: Option<ContainerDefinition>,
    #[serde(default)]
    containers: Vec<ContainerDefinition>,
    #[serde(default)]
    execution_role_arn: Option<String>,
}

impl CreateModel {
    pub(super) fn new(name: &str, container: ContainerDefinition) -> Self {
        Self {
            model_name: name.into(),
            primary_container: Some(container),
            containers: Vec::new(),
            execution_role_arn: None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ModelArn {
    model_arn: String,
}

pub(super) async fn create(app: &AppState, req: CreateModel) -> Result<ModelArn, ApiError> {
    validate_name("model", &req.model_name)?;
    let container = match (req.primary_container, req.containers.len()) {
        (Some(c), 0) => c,
        (None, 1) => req.containers.into_iter().next().expect("one container"),
        (None, 0) => return Err(ApiError::validation("PrimaryContainer is required")),
        _ => {
            return Err(ApiError::validation(
                "give exactly one of PrimaryContainer or a single Containers entry",
            ));
        }
    };
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
        return Err(ApiError::in_use(format!(
            "Cannot create already existing model \"{}\".",
            req.model_name
        )));
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
    let resolved = tokio::task::spawn_blocking(move || {
        let job = import::Import {
            store: &store,
            config: &config,
            admin_addr,
            cancel,
            model_name: &name,
            image: &image,
        };
        import::resolve(&job, &url)
    })
    .await
    .map_err(ApiError::internal)??;
    let record = ModelRecord {
        model_arn: arn("model", &req.model_name),
        model_name: req.model_name.clone(),
        primary_container: container,
        execution_role_arn: req.execution_role_arn,
        creation_time: now(),
        pier_artifact: resolved.artifact.clone(),
    };
    let inserted = app.db.insert(Table::Models, &req.model_name, &record).await;
    if !matches!(inserted, Ok(true)) && resolved.imported {
        // Nothing of a failed CreateModel stays in the store.
        remove_import(app, &resolved.artifact).await;
    }
    if !inserted? {
        return Err(ApiError::in_use(format!(
            "Cannot create already existing model \"{}\".",
            req.model_name
        )));
    }
    tracing::info!(model = %req.model_name, artifact = %record.pier_artifact, "model created");
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
#[serde(rename_all = "PascalCase")]
pub(super) struct ByName {
    model_name: String,
}

pub(super) async fn describe(app: &AppState, req: ByName) -> Result<ModelRecord, ApiError> {
    app.db
        .get(Table::Models, &req.model_name)
        .await?
        .ok_or_else(|| ApiError::not_found("model", &req.model_name))
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
    let (items, next_token) = page(all, &req, |m| (m.model_name.as_str(), m.creation_time))?;
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

pub(super) async fn delete(app: &AppState, req: ByName) -> Result<serde_json::Value, ApiError> {
    let _guard = app.control.lock().await;
    let endpoints: Vec<EndpointRecord> = app.db.list(Table::Endpoints).await?;
    for endpoint in endpoints {
        let config: Option<EndpointConfigRecord> = app
            .db
            .get(Table::EndpointConfigs, &endpoint.endpoint_config_name)
            .await?;
        if config.is_some_and(|c| {
            c.production_variants
                .iter()
                .any(|v| v.model_name == req.model_name)
        }) {
            return Err(ApiError::in_use(format!(
                "model \"{}\" is served by endpoint \"{}\"; update or delete the endpoint first",
                req.model_name, endpoint.endpoint_name
            )));
        }
    }
    if !app.db.delete(Table::Models, &req.model_name).await? {
        return Err(ApiError::not_found("model", &req.model_name));
    }
    Ok(serde_json::json!({}))
}
