//! The data plane's HTTP routes: SageMaker's runtime API and container contract.
//!
//! Every route answers errors through [`crate::error::ServeError`]; model code runs on the
//! compute pool, never on the async workers.

mod invocations;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

use crate::error::ServeError;
use crate::state::AppState;

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

/// The data-plane router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/ping", get(invocations::ping))
        .route("/metrics", get(metrics))
        .route("/invocations", post(invocations::invoke_default))
        .route(
            "/endpoints/{endpoint}/invocations",
            post(invocations::invoke_endpoint),
        )
        .fallback(|| async {
            ServeError::Validation("no such route; see /endpoints/{name}/invocations".into())
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
