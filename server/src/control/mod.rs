//! The control plane: SageMaker's API subset in its own protocol (AWS JSON 1.1), so
//! `boto3.client("sagemaker", endpoint_url=...)` and `aws sagemaker --endpoint-url` drive it.
//!
//! `POST /` with `X-Amz-Target: SageMaker.<Action>` and a JSON body in SageMaker's PascalCase
//! field names. With `--credentials`, requests need a SigV4 signature or a bearer token
//! ([`crate::auth`]); without, the port stays on loopback unless `--insecure-admin`.
//! Answers follow SageMaker's to the letter (error codes and messages, filters, tags), and
//! every answer carries an `x-amzn-RequestId`.

mod autoscaling;
mod configs;
pub mod demo;
mod deploy;
mod endpoints;
pub(crate) mod import;
mod instances;
mod list;
mod logs;
mod models;
pub mod options;
pub mod replicas;
pub mod scaler;
mod scripts;
mod tags;
mod training;
mod transform;
mod tuning;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use deploy::{publish_models, restore_endpoints};
pub use replicas::ReplicaState;
pub use transform::{ControlPlaneModels, Models};

use crate::error::ApiError;
use crate::state::AppState;

/// The control-plane routes (state applied). [`crate::routers::control_plane`] serves them
/// behind the listener's layers: bodies bounded by `--max-body-bytes` (a declared length
/// over it is refused before it is read), every refusal in AWS JSON's error shape, and an
/// `x-amzn-RequestId` on every answer.
pub fn routes(state: AppState) -> Router {
    Router::new().route("/", post(dispatch)).with_state(state)
}

async fn dispatch(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = app.config.limits.max_body_bytes;
            return crate::layers::too_large(limit, crate::layers::Plane::Admin, "/", None);
        }
        Err(rejection) => return ApiError::validation(rejection.body_text()).into_response(),
    };
    let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) else {
        return ApiError::validation("missing X-Amz-Target header (expected SageMaker.<Action>)")
            .into_response();
    };
    if let Some(action) = target.strip_prefix(logs::TARGET_PREFIX) {
        return respond(logs::dispatch(&app, action, &body).await);
    }
    if let Some(action) = target.strip_prefix("AnyScaleFrontendService.") {
        return respond(autoscaling::dispatch(&app, action, &body).await);
    }
    let action = target.strip_prefix("SageMaker.").unwrap_or(target);
    tracing::debug!(action, "control-plane call");
    let result = match action {
        "CreateModel" => call(&app, &body, models::create).await,
        "DescribeModel" => call(&app, &body, models::describe).await,
        "ListModels" => call(&app, &body, models::list).await,
        "DeleteModel" => call(&app, &body, models::delete).await,
        "CreateEndpointConfig" => call(&app, &body, configs::create).await,
        "DescribeEndpointConfig" => call(&app, &body, configs::describe).await,
        "ListEndpointConfigs" => call(&app, &body, configs::list).await,
        "DeleteEndpointConfig" => call(&app, &body, configs::delete).await,
        "CreateEndpoint" => call(&app, &body, endpoints::create).await,
        "DescribeEndpoint" => call(&app, &body, endpoints::describe).await,
        "ListEndpoints" => call(&app, &body, endpoints::list).await,
        "UpdateEndpoint" => call(&app, &body, endpoints::update).await,
        "UpdateEndpointWeightsAndCapacities" => call(&app, &body, endpoints::update_weights).await,
        "DeleteEndpoint" => call(&app, &body, endpoints::delete).await,
        "AddTags" => call(&app, &body, tags::add).await,
        "ListTags" => call(&app, &body, tags::list).await,
        "DeleteTags" => call(&app, &body, tags::delete).await,
        "CreateTrainingJob" => call(&app, &body, training::create).await,
        "DescribeTrainingJob" => call(&app, &body, training::describe).await,
        "ListTrainingJobs" => call(&app, &body, training::list).await,
        "StopTrainingJob" => call(&app, &body, training::stop).await,
        "CreateTransformJob" => call(&app, &body, transform::create).await,
        "DescribeTransformJob" => call(&app, &body, transform::describe).await,
        "ListTransformJobs" => call(&app, &body, transform::list).await,
        "StopTransformJob" => call(&app, &body, transform::stop).await,
        "CreateHyperParameterTuningJob" => call(&app, &body, tuning::create).await,
        "DescribeHyperParameterTuningJob" => call(&app, &body, tuning::describe).await,
        "ListHyperParameterTuningJobs" => call(&app, &body, tuning::list).await,
        "ListTrainingJobsForHyperParameterTuningJob" => {
            call(&app, &body, tuning::list_children).await
        }
        "StopHyperParameterTuningJob" => call(&app, &body, tuning::stop).await,
        other => Err(ApiError::unknown_operation(format!(
            "Pier does not implement SageMaker.{other}"
        ))),
    };
    respond(result)
}

/// The answer in AWS JSON 1.1.
fn respond(result: Result<String, ApiError>) -> Response {
    match result {
        Ok(json) => {
            let mut response = json.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Parses the body into the action's request type, runs it, serialises the answer.
async fn call<'a, Req, Resp, Fut>(
    app: &'a AppState,
    body: &[u8],
    action: impl FnOnce(&'a AppState, Req) -> Fut,
) -> Result<String, ApiError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, ApiError>>,
{
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    let request: Req = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        // SageMaker fields Pier does not know are refused by name, never silently dropped.
        match text
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, _)) => ApiError::validation(format!(
                "{field} is not supported by Pier yet; remove it from the request ({text})"
            )),
            None => ApiError::validation(format!("invalid request: {text}")),
        }
    })?;
    let response = action(app, request).await?;
    serde_json::to_string(&response).map_err(ApiError::internal)
}

/// Checks a resource name against SageMaker's rule.
fn validate_name(kind: &str, name: &str) -> Result<(), ApiError> {
    pier_model_store::validate_model_name(name).map_err(|e| {
        ApiError::validation(format!("{kind} name {name:?} is invalid: {}", reason(&e)))
    })
}

fn reason(e: &pier_model_store::StoreError) -> String {
    match e {
        pier_model_store::StoreError::InvalidName { reason, .. } => (*reason).to_owned(),
        other => other.to_string(),
    }
}
