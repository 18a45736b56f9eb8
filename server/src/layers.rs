//! Request checks that run before any handler reads a body, shared by the data-plane and
//! control-plane routers.
//!
//! [`early_length_check`] answers a request whose declared `Content-Length` is over the
//! body limit at once, before the body is read: a client that sent `Expect: 100-continue`
//! gets its 413 instead of a `100 Continue` and a wait, and no byte of the body is buffered.
//! Bodies without a length (chunked) are bounded as they arrive by axum's body limit.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ServeError};

/// Which protocol's error shape an early refusal takes.
#[derive(Clone, Copy, Debug)]
pub enum Plane {
    /// The data plane: SageMaker runtime's shape, or `{"error": ...}` under `/v2`.
    Data,
    /// The control plane: AWS JSON 1.1's shape.
    Admin,
}

/// The declared body length, when the request carries a valid `Content-Length`.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses a request whose declared length is over `limit` with a 413 in `plane`'s shape.
pub async fn early_length_check(
    limit: usize,
    plane: Plane,
    request: Request,
    next: Next,
) -> Response {
    match declared_length(&request) {
        Some(length) if length > limit as u64 => {
            let mut response = too_large(limit, plane, request.uri().path(), Some(length));
            // The body is never read, so the connection cannot carry another request: say
            // so, or a client would send its next request into a closing connection.
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(request).await,
    }
}

/// The 413 answer of `plane` for a body over `limit` (`declared`: its Content-Length).
pub fn too_large(limit: usize, plane: Plane, path: &str, declared: Option<u64>) -> Response {
    match plane {
        Plane::Data => ServeError::PayloadTooLarge { limit }.response_for(path),
        Plane::Admin => ApiError::too_large(match declared {
            Some(n) => format!(
                "the request body of {n} bytes is larger than the control plane's {limit}-byte limit"
            ),
            None => format!("the request body is larger than the control plane's {limit}-byte limit"),
        })
        .into_response(),
    }
}
