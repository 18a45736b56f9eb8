//! Authentication of every listener (with `--credentials`): AWS SigV4 signatures as boto3,
//! the AWS CLI and the SageMaker SDK send them, or `Authorization: Bearer <pier_token>`.
//!
//! One tower layer per plane ([`AuthLayer`], made by [`layer`] for `crate::routers`'
//! stack) runs after the early body-length check and before decompression. It decides
//! from the request's head: an open path or a valid bearer token goes straight to the
//! inner service (no body read, no allocation, no clone of the service); a SigV4-signed
//! request's body is read whole (bounded by the body limit, so signing never buffers an
//! unbounded body) and hashed as its frames arrive, its signature checked against the
//! bytes as sent, and the request passed on with those bytes. Health and
//! scraping stay open (`/ping`, `/v2/health/*`, `/metrics` unless `--metrics-auth`). gRPC
//! takes bearer tokens in its `authorization` metadata ([`grpc_check`]); `ServerLive` and
//! `ServerReady` stay open.
//!
//! Concurrency: the credentials table is immutable and shared through an `Arc`; each check
//! is a function of the request and the clock, plus each principal's lock-free cache of its
//! last SigV4 signing key (an `ArcSwap`, swapped once a day per key).

pub(crate) mod amz_date;
mod body;
pub mod credentials;
mod service;
pub mod sigv4;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;

pub use credentials::{Credentials, CredentialsError, Plane, Planes, Principal};
pub use service::{AuthLayer, AuthService};

use crate::error::AuthError;
use crate::layers;

/// What one plane's check needs.
#[derive(Clone, Debug)]
pub struct Authenticator {
    credentials: Arc<Credentials>,
    plane: Plane,
    /// Whether `/metrics` needs credentials.
    metrics_auth: bool,
    /// The body limit (a signed body is read whole, up to this).
    max_body_bytes: usize,
}

impl Authenticator {
    /// The check of `plane`.
    pub fn new(
        credentials: Arc<Credentials>,
        plane: Plane,
        metrics_auth: bool,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            credentials,
            plane,
            metrics_auth,
            max_body_bytes,
        }
    }

    fn error_plane(&self) -> layers::Plane {
        match self.plane {
            Plane::Admin => layers::Plane::Admin,
            Plane::Invoke => layers::Plane::Data,
        }
    }

    /// Paths that need no credentials.
    fn is_open(&self, path: &str) -> bool {
        self.plane == Plane::Invoke
            && (path == "/ping"
                || path.starts_with("/v2/health/")
                || (path == "/metrics" && !self.metrics_auth))
    }

    fn allow<'p>(&self, principal: &'p Principal) -> Result<&'p Principal, AuthError> {
        if principal.planes.allows(self.plane) {
            Ok(principal)
        } else {
            Err(AuthError::Denied {
                who: format!("[{}]", principal.name),
                plane: self.plane.name(),
            })
        }
    }

    /// The principal of a bearer token (empty: none sent), if allowed on this plane.
    fn bearer(&self, token: &str) -> Result<&Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.credentials
            .token(token)
            .ok_or(AuthError::UnknownKey)
            .and_then(|p| self.allow(p))
    }
}

/// The check of `plane` when credentials are configured (none without): a layer for the
/// plane's stack, inside the body limit and outside decompression (see `crate::routers`).
pub fn layer(
    config: &crate::config::AuthConfig,
    plane: Plane,
    max_body_bytes: usize,
) -> Option<AuthLayer> {
    let credentials = config.credentials.as_ref()?;
    Some(AuthLayer::new(Arc::new(Authenticator::new(
        credentials.clone(),
        plane,
        config.metrics_auth,
        max_body_bytes,
    ))))
}

/// The token of an `Authorization: Bearer <token>` value (empty when the value is only
/// the scheme); `None` for another scheme or a token that is not UTF-8.
fn bearer_token(value: &[u8]) -> Option<&str> {
    // Byte checks on the scheme alone: a SigV4 header (~200 bytes) is told apart without
    // validating it as text first.
    let (scheme, token) = (value.get(..6)?, &value[6..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.first().is_some_and(|b| *b != b' ') {
        return None;
    }
    std::str::from_utf8(token).ok().map(str::trim)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What to do with a request, decided from its head alone.
enum Decision {
    /// Open path or valid bearer token: pass it on as it is.
    Pass,
    /// Answer with this error.
    Refuse(AuthError),
    /// A SigV4 signature: read the body, then verify.
    Verify,
}

impl Authenticator {
    fn decide(&self, request: &Request) -> Decision {
        if self.is_open(request.uri().path()) {
            return Decision::Pass;
        }
        // One lookup of the header: a bearer token is checked here, anything else in it
        // is a signature to verify.
        match request.headers().get(AUTHORIZATION) {
            Some(value) => match bearer_token(value.as_bytes()) {
                Some(token) => match self.bearer(token) {
                    Ok(_) => Decision::Pass,
                    Err(e) => Decision::Refuse(e),
                },
                None => Decision::Verify,
            },
            None if sigv4::is_presigned(request.uri().query().unwrap_or("")) => Decision::Verify,
            None => Decision::Refuse(AuthError::Missing),
        }
    }

    /// The plane's answer to `e`.
    fn refuse(&self, e: &AuthError, path: &str) -> Response {
        tracing::debug!(error = %e, %path, "request refused by authentication");
        e.response(self.error_plane(), path)
    }

    /// Checks a signed request's signature against its body as read (whole, hashed as it
    /// arrived): the request with its body on success, else the answer.
    // A request is as large as a response: boxing the refusal would save no moves.
    #[allow(clippy::result_large_err)]
    fn check_signed(
        &self,
        parts: axum::http::request::Parts,
        read: Result<(bytes::Bytes, [u8; 32]), body::ReadError>,
    ) -> Result<Request, Response> {
        let path = parts.uri.path();
        let (bytes, body_sha256) = match read {
            Ok(read) => read,
            Err(e) => return Err(self.body_error(path, e)),
        };
        let signed = sigv4::Request {
            method: parts.method.as_str(),
            path,
            query: parts.uri.query().unwrap_or(""),
            authority: parts.uri.authority().map(|a| a.as_str()),
            headers: &parts.headers,
            body_sha256,
        };
        match sigv4::verify(&self.credentials, &signed, now()).and_then(|p| self.allow(p)) {
            Ok(_) => Ok(Request::from_parts(parts, Body::from(bytes))),
            Err(e) => Err(self.refuse(&e, path)),
        }
    }

    /// The answer to a body that could not be read whole: 413 over the limit, else 400.
    fn body_error(&self, path: &str, e: body::ReadError) -> Response {
        use axum::response::IntoResponse;
        let body::ReadError::Read(e) = e else {
            return layers::too_large(self.max_body_bytes, self.error_plane(), path, None);
        };
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return layers::too_large(self.max_body_bytes, self.error_plane(), path, None);
            }
            source = err.source();
        }
        let message = format!("cannot read the request body: {e}");
        match self.error_plane() {
            layers::Plane::Admin => crate::error::ApiError::validation(message).into_response(),
            layers::Plane::Data => crate::error::ServeError::Validation(message).response_for(path),
        }
    }
}

/// The gRPC check: a bearer token in the `authorization` metadata, except for `ServerLive`
/// and `ServerReady` (health).
#[allow(clippy::result_large_err)]
pub fn grpc_check<B>(
    credentials: &Credentials,
    request: &axum::http::Request<B>,
) -> Result<(), tonic::Status> {
    let path = request.uri().path();
    if path.ends_with("/ServerLive") || path.ends_with("/ServerReady") {
        return Ok(());
    }
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let token = bearer_token(header.as_bytes()).ok_or_else(|| {
        AuthError::Incomplete(
            "gRPC takes `authorization: Bearer <pier_token>` (SigV4 is for HTTP)".into(),
        )
    })?;
    let principal = credentials.token(token).ok_or(AuthError::UnknownKey)?;
    if !principal.planes.invoke {
        return Err(AuthError::Denied {
            who: format!("[{}]", principal.name),
            plane: Plane::Invoke.name(),
        }
        .into());
    }
    Ok(())
}

/// The gRPC listener's authentication ([`grpc_check`] on every call when credentials are
/// configured; nothing without them): a refused call is answered with its status at once,
/// as a trailers-only gRPC answer.
#[derive(Clone, Debug)]
pub struct GrpcAuthLayer {
    credentials: Option<Arc<Credentials>>,
}

impl GrpcAuthLayer {
    /// Checks against `credentials`, or lets everything through when `None`.
    pub fn new(credentials: Option<Arc<Credentials>>) -> Self {
        Self { credentials }
    }
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;
    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            credentials: self.credentials.clone(),
        }
    }
}

/// See [`GrpcAuthLayer`].
#[derive(Clone, Debug)]
pub struct GrpcAuth<S> {
    inner: S,
    credentials: Option<Arc<Credentials>>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if let Some(credentials) = &self.credentials
            && let Err(status) = grpc_check(credentials, &request)
        {
            return futures::future::Either::Left(std::future::ready(Ok(status.into_http())));
        }
        futures::future::Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer  abc "), Some("abc"));
        assert_eq!(bearer_token(b"Bearer "), Some(""));
        assert_eq!(bearer_token(b"Bearer"), Some(""));
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Bearer \xff"), None);
        assert_eq!(bearer_token(b"AWS4-HMAC-SHA256 Credential=x"), None);
    }
}
