//! The data plane's HTTP routes: SageMaker's runtime API and container contract, and the
//! Open Inference Protocol v2 REST routes ([`crate::v2::rest`]) under one body limit.
//!
//! Every route answers errors through [`crate::error::ServeError`]; model code runs on the
//! compute pool, never on the async workers.

mod invocations;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::trace::TraceLayer;

use crate::error::ServeError;
use crate::state::AppState;
use crate::v2::V2;

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

/// The data-plane router, with its own v2 state.
pub fn router(state: AppState) -> Router {
    let v2 = V2::new(state.clone());
    router_with_v2(state, v2)
}

/// The data-plane router sharing `v2` (with the gRPC listener).
pub fn router_with_v2(state: AppState, v2: Arc<V2>) -> Router {
    let limit = state.config.limits.max_body_bytes;
    let auth = state.config.auth.clone();
    let router = Router::new()
        .route("/ping", get(invocations::ping))
        .route("/metrics", get(metrics))
        .route("/invocations", post(invocations::invoke_default))
        .route(
            "/endpoints/{endpoint}/invocations",
            post(invocations::invoke_endpoint),
        )
        .with_state(state)
        .merge(crate::v2::rest::router(v2))
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
        })
        .layer(DefaultBodyLimit::max(limit))
        // gzip / deflate bodies are decoded here; the body limit above bounds the decoded
        // bytes, so a compression bomb is a 413.
        .layer(RequestDecompressionLayer::new().gzip(true).deflate(true));
    // Signatures cover the body as sent, so authentication runs before decompression.
    crate::auth::protect(router, &auth, crate::auth::Plane::Invoke, limit)
        .layer(axum::middleware::from_fn(move |request, next| {
            crate::layers::early_length_check(limit, crate::layers::Plane::Data, request, next)
        }))
        .layer(TraceLayer::new_for_http())
}
