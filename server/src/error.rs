//! Errors and the one place they become wire statuses.
//!
//! [`ServeError`] is everything the data plane can answer; [`ServeError::status`] gives the
//! HTTP status, SageMaker's error code and the metric outcome label together, so the
//! SageMaker, v2 REST and v2 gRPC facades cannot disagree; [`ServeError::v2_response`] and
//! `From<ServeError> for tonic::Status` put it on the v2 wires. [`ApiError`] is the control
//! plane's, in AWS JSON 1.1's error shape. Internal details are logged, never sent.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pier_runtimes::RuntimeError;

/// What the data plane can answer besides success.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ServeError {
    /// A request that can never succeed as sent (bad body, wrong feature count, …).
    #[error("{0}")]
    Validation(String),
    /// No such endpoint.
    #[error("Endpoint {0} not found.")]
    EndpointNotFound(String),
    /// `X-Amzn-SageMaker-Target-Variant` names no variant of the endpoint.
    #[error("Variant {variant} not found on endpoint {endpoint}; it has: {available}")]
    VariantNotFound {
        /// Endpoint name.
        endpoint: String,
        /// The variant asked for.
        variant: String,
        /// Comma-separated variant names.
        available: String,
    },
    /// A v2 model name, or a version of it, that Pier does not know.
    #[error("{0}")]
    ModelNotFound(String),
    /// A path no route serves (404).
    #[error("{0}")]
    RouteNotFound(String),
    /// A request that conflicts with how the model is managed (e.g. unloading a model that
    /// an endpoint serves).
    #[error("{0}")]
    Conflict(String),
    /// The body is over the configured limit.
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The endpoint exists but has no model in service yet.
    #[error("Endpoint {0} is not ready: it has no model in service yet")]
    NotReady(String),
    /// The model failed on valid input, or took too long.
    #[error("{0}")]
    Model(String),
    /// Too many requests queued or in flight.
    #[error("server is overloaded: {0}; retry later")]
    Overloaded(&'static str),
    /// The model's batch queue holds `max_queue_size` requests already (429; gRPC
    /// RESOURCE_EXHAUSTED).
    #[error("the model's queue is full ({max} requests wait); retry later")]
    QueueFull {
        /// The queue's limit.
        max: usize,
    },
    /// A model version could not be loaded (on demand: a v2 request or RepositoryModelLoad
    /// naming a Model). The reason is the client's to read: it names the artifact and what
    /// is wrong with it, never a path.
    #[error("{0}")]
    Load(#[from] crate::serving::LoadError),
    /// The request did not finish within the whole-request timeout (`--request-timeout`),
    /// decode and queueing included.
    #[error("the request did not finish within {seconds} s")]
    Timeout {
        /// The timeout in seconds.
        seconds: f64,
    },
    /// A bug or an environment failure; details are logged.
    #[error("internal error")]
    Internal(String),
}

/// How an error goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireStatus {
    /// HTTP status.
    pub http: StatusCode,
    /// SageMaker runtime error code.
    pub code: &'static str,
    /// Outcome label for metrics.
    pub outcome: &'static str,
    /// gRPC status code (v2 gRPC).
    pub grpc: tonic::Code,
}

impl ServeError {
    /// The wire status of this error.
    pub fn status(&self) -> WireStatus {
        let (http, code, outcome) = match self {
            Self::Validation(_) | Self::EndpointNotFound(_) | Self::VariantNotFound { .. } => {
                (StatusCode::BAD_REQUEST, "ValidationError", "client_error")
            }
            Self::ModelNotFound(_) | Self::RouteNotFound(_) => {
                (StatusCode::NOT_FOUND, "ValidationError", "client_error")
            }
            Self::Conflict(_) => (StatusCode::CONFLICT, "ValidationError", "client_error"),
            Self::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationError",
                "client_error",
            ),
            Self::NotReady(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "ModelNotReadyException",
                "not_ready",
            ),
            Self::Model(_) => (StatusCode::FAILED_DEPENDENCY, "ModelError", "model_error"),
            // The model store cannot be reached: nothing is wrong with the model; retry.
            Self::Load(crate::serving::LoadError::StoreUnavailable { .. }) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "load_error",
            ),
            Self::Load(_) => (StatusCode::FAILED_DEPENDENCY, "ModelError", "load_error"),
            Self::Timeout { .. } => (StatusCode::FAILED_DEPENDENCY, "ModelError", "timeout"),
            Self::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "overloaded",
            ),
            Self::QueueFull { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                "queue_full",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "internal_error",
            ),
        };
        use tonic::Code;
        let grpc = match self {
            Self::Validation(_) => Code::InvalidArgument,
            Self::EndpointNotFound(_)
            | Self::VariantNotFound { .. }
            | Self::ModelNotFound(_)
            | Self::RouteNotFound(_) => Code::NotFound,
            Self::Conflict(_) => Code::FailedPrecondition,
            Self::PayloadTooLarge { .. } | Self::QueueFull { .. } => Code::ResourceExhausted,
            Self::NotReady(_) | Self::Overloaded(_) => Code::Unavailable,
            Self::Load(_) => Code::Unavailable,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::Model(_) | Self::Internal(_) => Code::Internal,
        };
        WireStatus {
            http,
            code,
            outcome,
            grpc,
        }
    }

    /// The message a client may see: internal details are logged here, never sent.
    fn public_message(&self) -> String {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        self.to_string()
    }

    /// The data-plane answer for a request to `path`: the v2 shape under `/v2`, SageMaker
    /// runtime's elsewhere. For refusals made before a facade is chosen (layers, fallback).
    pub fn response_for(self, path: &str) -> Response {
        if is_v2_path(path) {
            self.v2_response()
        } else {
            self.into_response()
        }
    }

    /// The Open Inference Protocol v2 REST error: `{"error": "..."}` with the HTTP status.
    pub fn v2_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.public_message() });
        (status.http, axum::Json(body)).into_response()
    }
}

/// True for the Open Inference Protocol's REST paths (`/v2`, `/v2/...`).
pub fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// The v2 gRPC status of an error.
impl From<ServeError> for tonic::Status {
    fn from(e: ServeError) -> Self {
        tonic::Status::new(e.status().grpc, e.public_message())
    }
}

impl From<RuntimeError> for ServeError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::InvalidInput(_) | RuntimeError::Codec(_) => {
                Self::Validation(e.to_string())
            }
            RuntimeError::Predict(_) => Self::Model(e.to_string()),
            RuntimeError::Store(_)
            | RuntimeError::UnsupportedRuntime(_)
            | RuntimeError::UnsupportedOperator { .. }
            | RuntimeError::BackendUnavailable { .. }
            | RuntimeError::Load { .. } => Self::Internal(e.to_string()),
        }
    }
}

/// SageMaker runtime's error body, with the code also in `x-amzn-ErrorType` as botocore reads it.
impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.public_message();
        let body = serde_json::json!({ "ErrorCode": status.code, "__type": status.code, "Message": message });
        let mut response = (status.http, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(status.code));
        response
    }
}

/// The control plane's AWS error codes: the `__type` of an answer, which clients match on,
/// and the HTTP status that goes with each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCode {
    /// A request invalid as sent, or a missing or duplicate resource (SageMaker's words).
    ValidationException,
    /// A resource in use by another (the job APIs' duplicate).
    ResourceInUse,
    /// An action Pier does not implement.
    UnknownOperationException,
    /// CloudWatch Logs: a log group or stream that does not exist.
    ResourceNotFoundException,
    /// CloudWatch Logs: a parameter out of range or malformed.
    InvalidParameterException,
    /// A request body over the control plane's limit (413).
    RequestEntityTooLargeException,
    /// More control-plane requests at once than the listener takes (400, as AWS throttles).
    ThrottlingException,
    /// The request did not finish within the control plane's timeout (500).
    RequestTimeout,
    /// A server-side failure (500).
    InternalFailure,
    /// A dependency (the database, the model store on S3) cannot be reached right now;
    /// retry later (503).
    ServiceUnavailable,
    /// More instances than the server allows (`--max-instances`), or a quota of Application
    /// Auto Scaling (400).
    ResourceLimitExceeded,
    /// Application Auto Scaling: no such scalable target or policy (400).
    ObjectNotFoundException,
    /// Application Auto Scaling: a quota passed (here `--max-instances`) (400).
    LimitExceededException,
    /// Application Auto Scaling: a `NextToken` it did not hand out (400).
    InvalidNextTokenException,
}

impl ApiCode {
    /// The code as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationException => "ValidationException",
            Self::ResourceInUse => "ResourceInUse",
            Self::UnknownOperationException => "UnknownOperationException",
            Self::ResourceNotFoundException => "ResourceNotFoundException",
            Self::InvalidParameterException => "InvalidParameterException",
            Self::RequestEntityTooLargeException => "RequestEntityTooLargeException",
            Self::ThrottlingException => "ThrottlingException",
            Self::RequestTimeout => "RequestTimeout",
            Self::InternalFailure => "InternalFailure",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::ResourceLimitExceeded => "ResourceLimitExceeded",
            Self::ObjectNotFoundException => "ObjectNotFoundException",
            Self::LimitExceededException => "LimitExceededException",
            Self::InvalidNextTokenException => "InvalidNextTokenException",
        }
    }

    /// The HTTP status of an answer with this code.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InternalFailure | Self::RequestTimeout => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestEntityTooLargeException => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ValidationException
            | Self::ResourceInUse
            | Self::UnknownOperationException
            | Self::ResourceNotFoundException
            | Self::InvalidParameterException
            | Self::ThrottlingException
            | Self::ResourceLimitExceeded
            | Self::ObjectNotFoundException
            | Self::LimitExceededException
            | Self::InvalidNextTokenException => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for ApiCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ApiCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A control-plane error in AWS JSON 1.1's shape: `{"__type": code, "message": ...}`.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// AWS error code.
    pub code: ApiCode,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A request that is invalid as sent.
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            code: ApiCode::ValidationException,
            message: message.into(),
        }
    }

    /// A named resource that does not exist, in SageMaker's words: a `ValidationException`
    /// "Could not find endpoint \"NAME\"." (`what` is `endpoint "NAME"`, `model "ARN"`, …).
    /// boto3's `endpoint_deleted` waiter, the SageMaker SDK's `_deployment_entity_exists` and
    /// Terraform's provider match on exactly this.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::validation(format!("Could not find {what}."))
    }

    /// A create whose name is taken, in SageMaker's words: a `ValidationException` "Cannot
    /// create already existing model \"ARN\"." (the SDK's `Session.create_model` matches it).
    pub fn already_exists(kind: &str, arn: &str) -> Self {
        Self::validation(format!("Cannot create already existing {kind} \"{arn}\"."))
    }

    /// A resource in use by another (kept for the job APIs, which model `ResourceInUse`).
    pub fn in_use(message: impl Into<String>) -> Self {
        Self {
            code: ApiCode::ResourceInUse,
            message: message.into(),
        }
    }

    /// An internal failure; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "control plane internal error");
        Self {
            code: ApiCode::InternalFailure,
            message: "internal error".into(),
        }
    }

    /// A request body over the control plane's limit (413).
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            code: ApiCode::RequestEntityTooLargeException,
            message: message.into(),
        }
    }

    /// An action Pier does not implement.
    pub fn unknown_operation(message: impl Into<String>) -> Self {
        Self {
            code: ApiCode::UnknownOperationException,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.code.as_str(), "message": self.message });
        let mut response = (self.code.http_status(), axum::Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        response
    }
}

impl ApiError {
    /// A server-side failure whose cause the client may see (disk full, a failed database
    /// write): 500 InternalFailure with `message`, which must name no internal path.
    pub fn internal_failure(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "control plane internal failure");
        Self {
            code: ApiCode::InternalFailure,
            message,
        }
    }

    /// A model-store error of the operation `context` (e.g. `ModelDataUrl /models/a`): the
    /// store's own failures (disk full, I/O errors) are 500 InternalFailure naming the cause
    /// and the file being written, never the store's paths; an object-storage store that
    /// cannot be reached is 503 ServiceUnavailable naming its URL; the rest (the source or
    /// the request is at fault) are ValidationException.
    pub fn from_store(context: &str, e: pier_model_store::StoreError) -> Self {
        use pier_model_store::StoreError;
        match &e {
            // The client reads which store; the cause (endpoint, socket error) is logged.
            StoreError::Unavailable { store, .. } => {
                tracing::warn!(error = %e, "model store unavailable");
                Self {
                    code: ApiCode::ServiceUnavailable,
                    message: format!(
                        "{context}: the model store {store} is unavailable; retry later"
                    ),
                }
            }
            StoreError::CacheFull { .. } => Self::internal_failure(format!("{context}: {e}")),
            StoreError::Io { path, source } => {
                tracing::error!(error = %e, "model store write failed");
                let file = path
                    .file_name()
                    .map_or_else(String::new, |n| format!(" {}", n.to_string_lossy()));
                Self::internal_failure(format!(
                    "{context}: {} while writing{file} to the model store",
                    io_cause(source)
                ))
            }
            StoreError::VersionContention { .. } => {
                Self::internal_failure(format!("{context}: {e}"))
            }
            _ => Self::validation(format!("{context}: {e}")),
        }
    }
}

/// An I/O error's cause as a client may read it: "no space left on device".
fn io_cause(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

/// Database failures: an unreachable database (refused, lost, no connection in time) is 503
/// ServiceUnavailable naming the database (its URL, password redacted) and the cause, which
/// a client retries, while the server keeps serving what it has loaded; other failures are 500
/// InternalFailure naming the operation and the cause (the database's own words, such as
/// "database or disk is full"), never SQL or file paths.
impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        use crate::db::DbError;
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            let cause = match &e {
                DbError::Query { source, .. }
                | DbError::Open { source, .. }
                | DbError::Connect { source, .. } => unavailable_cause(source),
                _ => "it cannot be reached".to_owned(),
            };
            return Self {
                code: ApiCode::ServiceUnavailable,
                message: format!("the database is unavailable ({cause}); retry later"),
            };
        }
        tracing::error!(error = %e, "database error");
        let cause = |source: &sqlx::Error| match source {
            sqlx::Error::Database(d) => d.message().to_owned(),
            sqlx::Error::Io(io) => io_cause(io),
            sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
            sqlx::Error::PoolClosed => "the database is closed (the server is stopping)".into(),
            _ => "unexpected database error".into(),
        };
        match &e {
            DbError::Query {
                op,
                table,
                name,
                source,
            } => {
                let record = name
                    .as_ref()
                    .map_or_else(String::new, |n| format!(" record {n:?}"));
                Self::internal_failure(format!(
                    "database {op} of {table}{record} failed: {}",
                    cause(source)
                ))
            }
            DbError::Corrupt { table, name, .. } => Self::internal_failure(format!(
                "the stored {table} record {name:?} cannot be read (it is not valid JSON)"
            )),
            _ => Self::internal(e),
        }
    }
}

/// Why the database cannot be reached, in a client's words.
fn unavailable_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "no connection to it within the pool's timeout".into(),
        sqlx::Error::PoolClosed => "the server is stopping".into(),
        sqlx::Error::Io(io) => io_cause(io),
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::Tls(_) => "its TLS connection failed".into(),
        _ => "the connection to it failed".into(),
    }
}

/// Why a request was not authenticated or not allowed (with `--credentials`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    /// No signature and no token.
    #[error("Request is missing Authentication Token")]
    Missing,
    /// A malformed signature (400 IncompleteSignatureException, as AWS answers).
    #[error("{0}")]
    Incomplete(String),
    /// An access key id or a token that the credentials file does not hold.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    /// The signature does not match (wrong secret, tampered request or body).
    #[error("{0}")]
    BadSignature(String),
    /// The signature's date is outside the allowed clock skew, or a presigned URL expired.
    #[error("{0}")]
    Expired(String),
    /// The key or token is valid but not allowed on this plane.
    #[error("{who} is not authorized to use the {plane} plane (its pier_planes)")]
    Denied {
        /// The credentials section.
        who: String,
        /// `admin` or `invoke`.
        plane: &'static str,
    },
}

impl AuthError {
    /// HTTP status, AWS error code and gRPC code, together.
    pub fn status(&self) -> (StatusCode, &'static str, tonic::Code) {
        use tonic::Code;
        match self {
            Self::Missing => (
                StatusCode::FORBIDDEN,
                "MissingAuthenticationToken",
                Code::Unauthenticated,
            ),
            Self::Incomplete(_) => (
                StatusCode::BAD_REQUEST,
                "IncompleteSignatureException",
                Code::Unauthenticated,
            ),
            Self::UnknownKey => (
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
                Code::Unauthenticated,
            ),
            Self::BadSignature(_) | Self::Expired(_) => (
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                Code::Unauthenticated,
            ),
            Self::Denied { .. } => (
                StatusCode::FORBIDDEN,
                "AccessDeniedException",
                Code::PermissionDenied,
            ),
        }
    }

    /// The answer of the control plane (AWS JSON 1.1) or the data plane (SageMaker
    /// runtime's shape, `{"error": ...}` under `/v2`), with `x-amzn-ErrorType`.
    pub fn response(&self, plane: crate::layers::Plane, path: &str) -> Response {
        let (http, code, _) = self.status();
        let message = self.to_string();
        let body = match plane {
            crate::layers::Plane::Admin => {
                serde_json::json!({ "__type": code, "message": message })
            }
            crate::layers::Plane::Data if is_v2_path(path) => {
                serde_json::json!({ "error": message })
            }
            crate::layers::Plane::Data => {
                serde_json::json!({ "ErrorCode": code, "__type": code, "Message": message })
            }
        };
        let mut response = (http, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-amzn-ErrorType", HeaderValue::from_static(code));
        if matches!(plane, crate::layers::Plane::Admin) {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
        }
        response
    }
}

/// The v2 gRPC status of an authentication failure.
impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        tonic::Status::new(e.status().2, e.to_string())
    }
}
