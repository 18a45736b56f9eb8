//! The HTTP applications: the data plane's routes (SageMaker runtime, v2 REST, `/metrics`)
//! and the control plane's, each behind the same tower stack in reading order (see
//! `crate::layers`): request id → trace → timeout → load shed → body limit →
//! authentication, then decompression (signatures cover the body as sent) and the routes.
//! The gRPC listener composes the same layers in `crate::server`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{Route, get};
use tower::util::MapResponseLayer;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::trace::TraceLayer;

use crate::auth::AuthLayer;
use crate::error::ServeError;
use crate::layers::{
    BodyLimitLayer, LoadShedLayer, Plane, RequestIdLayer, RequestSpan, TimeoutLayer,
};
use crate::state::{AppState, DataPlane};

/// `GET /metrics`: Prometheus text exposition.
async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

/// The data plane's HTTP application: SageMaker runtime and v2 REST routes.
pub fn data_plane(data: DataPlane) -> Router {
    let config = &data.config;
    let limit = config.limits.max_body_bytes;
    let routes = crate::sagemaker::routes(data.clone())
        .route("/metrics", get(metrics))
        .merge(crate::v2::rest::router(data.clone()))
        .fallback(|uri: axum::http::Uri| async move {
            let path = uri.path();
            let error = if crate::error::is_v2_path(path) {
                ServeError::RouteNotFound(format!("no such v2 route: {path}"))
            } else {
                ServeError::Validation(format!(
                    "no such route {path}; see /endpoints/{{name}}/invocations"
                ))
            };
            error.response_for(path)
        });
    let auth = crate::auth::layer(&config.auth, crate::auth::Plane::Invoke, limit);
    stack(
        routes,
        Plane::Data,
        config.limits.request_timeout,
        config.limits.max_in_flight,
        limit,
        auth,
        ServiceBuilder::new()
            // Back to axum's response type for the layers outside.
            .layer(MapResponseLayer::new(IntoResponse::into_response))
            // gzip / deflate bodies are decoded here, after authentication (signatures cover
            // the body as sent); the body limit below bounds the decoded bytes, so a
            // compression bomb is a 413.
            .layer(RequestDecompressionLayer::new().gzip(true).deflate(true))
            .layer(DefaultBodyLimit::max(limit)),
    )
}

/// The control plane's HTTP application (SageMaker's API in AWS JSON 1.1). Its timeout
/// leaves room for the longest import (`--import-timeout`) on top of the request timeout.
pub fn control_plane(app: AppState) -> Router {
    let config = &app.config;
    let limit = config.limits.max_body_bytes;
    let timeout = config.import.timeout + config.limits.request_timeout;
    let auth = crate::auth::layer(&config.auth, crate::auth::Plane::Admin, limit);
    let in_flight = config.limits.max_in_flight;
    let routes = crate::control::routes(app.clone());
    stack(
        routes,
        Plane::Admin,
        timeout,
        in_flight,
        limit,
        auth,
        DefaultBodyLimit::max(limit),
    )
}

/// `routes` behind request id → trace → timeout → load shed → body limit → authentication
/// (when `auth`) → `inner`, answering refusals in `plane`'s shape.
///
/// One `Router::layer` call for the whole stack: axum boxes every route once per call (a
/// boxed service and a boxed future per request), so the layers are composed first and
/// applied together.
fn stack<L>(
    routes: Router,
    plane: Plane,
    timeout: Duration,
    max_requests: usize,
    max_body_bytes: usize,
    auth: Option<AuthLayer>,
    inner: L,
) -> Router
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    routes.layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(TraceLayer::new_for_http().make_span_with(RequestSpan))
            .layer(TimeoutLayer::new(timeout, plane))
            .layer(LoadShedLayer::new(max_requests, plane))
            .layer(BodyLimitLayer::new(max_body_bytes, plane))
            .option_layer(auth)
            .layer(inner),
    )
}
