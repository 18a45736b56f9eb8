//! The SageMaker runtime facade: its API (`POST /endpoints/{name}/invocations`) and container
//! contract (`GET /ping`, `POST /invocations`). It parses and encodes; the invocation core
//! ([`crate::serving::invoke`]) does the rest. [`crate::routers::data_plane`] serves these
//! routes with v2 REST's behind the listener's layers.

mod invocations;

pub(crate) use invocations::invoke_request;

use axum::Router;
use axum::routing::{get, post};

use crate::state::DataPlane;

/// The SageMaker runtime routes (state applied; merge into the data-plane router).
pub fn routes(data: DataPlane) -> Router {
    Router::new()
        .route("/ping", get(invocations::ping))
        .route("/invocations", post(invocations::invoke_default))
        .route(
            "/endpoints/{endpoint}/invocations",
            post(invocations::invoke_endpoint),
        )
        .with_state(data)
}
