//! CreateModel, DescribeModel, ListModels, DeleteModel.

use serde::{Deserialize, Serialize};

use super::list::{ListRequest, page};
use super::{import, validate_name};
use crate::db::Table;
use crate::error::ApiError;
use crate::records::{
    ContainerDefinition, EndpointConfigRecord, EndpointRecord, ModelRecord, arn, now,
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
    let (store, name, image) = (
        app.store.clone(),
        req.model_name.clone(),
        container.image.clone(),
    );
    let artifact =
        tokio::task::spawn_blocking(move || import::resolve(&store, &name, &image, &url))
            .await
            .map_err(ApiError::internal)??;
    let record = ModelRecord {
        model_arn: arn("model", &req.model_name),
        model_name: req.model_name.clone(),
        primary_container: container,
        execution_role_arn: req.execution_role_arn,
        creation_time: now(),
        pier_artifact: artifact,
    };
    if !app
        .db
        .insert(Table::Models, &req.model_name, &record)
        .await?
    {
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
