//! The HTTP applications: the data plane's routes (SageMaker runtime, v2 REST, `/metrics`)
//! and the control plane's, each behind the same tower stack in reading order (see
//! `crate::layers`): request id → trace → timeout → load shed → body limit →
//! authentication, then decompression (signatures cover the body as sent) and the routes.
//! The data plane's invocation routes also have a direct way to their handlers behind the
//! same layers, without axum's router ([`DataPlaneService`]).
//! The gRPC listener composes the same layers in `crate::server`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryFutureExt;
use futures::future::MapOk;
use tower::layer::util::{Identity, Stack};
use tower::util::{Either, MapResponseLayer};
use tower::{Layer, Service, ServiceBuilder};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
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

/// The data plane's HTTP application: SageMaker runtime and v2 REST routes, with the
/// invocation routes also reachable without axum's router ([`DataPlaneService`]).
pub fn data_plane(data: DataPlane) -> DataPlaneService {
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
    let layers = stack(
        Plane::Data,
        config.limits.request_timeout,
        config.limits.max_in_flight,
        limit,
        auth,
    );
    // Both ways in share one set of layers, so one load-shed semaphore counts them all.
    let invocations = layers.clone().service(Invocations { data });
    let router = routes.layer(
        layers
            // Back to axum's response type for the layers outside.
            .layer(MapResponseLayer::new(IntoResponse::into_response))
            // gzip / deflate bodies are decoded here, after authentication (signatures cover
            // the body as sent); the body limit below bounds the decoded bytes, so a
            // compression bomb is a 413.
            .layer(RequestDecompressionLayer::new().gzip(true).deflate(true))
            .layer(DefaultBodyLimit::max(limit)),
    );
    DataPlaneService {
        invocations,
        router,
    }
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
    routes.layer(
        stack(Plane::Admin, timeout, in_flight, limit, auth).layer(DefaultBodyLimit::max(limit)),
    )
}

/// The layers of every HTTP listener, in reading order: request id → trace → timeout →
/// load shed → body limit → authentication (when `auth`), answering refusals in `plane`'s
/// shape. Each plane builds them once and applies them in one `Router::layer` call (axum
/// boxes every route once per call, a boxed service and future per request).
type Layers = Stack<
    Either<AuthLayer, Identity>,
    Stack<
        BodyLimitLayer,
        Stack<
            LoadShedLayer<Plane>,
            Stack<
                TimeoutLayer<Plane>,
                Stack<
                    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan>,
                    Stack<RequestIdLayer, Identity>,
                >,
            >,
        >,
    >,
>;

/// See [`Layers`].
fn stack(
    plane: Plane,
    timeout: Duration,
    max_requests: usize,
    max_body_bytes: usize,
    auth: Option<AuthLayer>,
) -> ServiceBuilder<Layers> {
    ServiceBuilder::new()
        .layer(RequestIdLayer)
        .layer(TraceLayer::new_for_http().make_span_with(RequestSpan))
        .layer(TimeoutLayer::new(timeout, plane))
        .layer(LoadShedLayer::new(max_requests, plane))
        .layer(BodyLimitLayer::new(max_body_bytes, plane))
        .option_layer(auth)
}

/// The invocation routes the data plane answers without axum's router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Invocation<'p> {
    /// `POST /endpoints/{endpoint}/invocations`, or `POST /invocations` (`None`).
    SageMaker(Option<&'p str>),
    /// `POST /v2/models/{name}[/versions/{version}]/infer`.
    V2 {
        name: &'p str,
        version: Option<&'p str>,
    },
}

impl<'p> Invocation<'p> {
    /// The invocation route `path` names, when it names one the router would match with
    /// every segment as written: a segment that is empty or holds a `%` escape is left to
    /// the router, whose path extractor decodes and checks it.
    fn of(path: &'p str) -> Option<Self> {
        fn segment(s: &str) -> Option<&str> {
            (!s.is_empty() && !s.bytes().any(|b| b == b'/' || b == b'%')).then_some(s)
        }
        if path == "/invocations" {
            return Some(Self::SageMaker(None));
        }
        if let Some(rest) = path.strip_prefix("/endpoints/") {
            let endpoint = segment(rest.strip_suffix("/invocations")?)?;
            return Some(Self::SageMaker(Some(endpoint)));
        }
        let rest = path.strip_prefix("/v2/models/")?.strip_suffix("/infer")?;
        match rest.split_once('/') {
            None => Some(Self::V2 {
                name: segment(rest)?,
                version: None,
            }),
            Some((name, tail)) => Some(Self::V2 {
                name: segment(name)?,
                version: Some(segment(tail.strip_prefix("versions/")?)?),
            }),
        }
    }
}

/// The data plane's HTTP service: SageMaker and v2 invocations (`POST`, a body without
/// `Content-Encoding`) go straight to their handlers behind the plane's layers; every other
/// request goes through axum's router behind the same layers, decompression and the
/// routes' extractors. The direct way saves a request the router's match, its path
/// parameters' allocations and axum's boxed services, futures and response body.
#[derive(Clone)]
pub struct DataPlaneService {
    invocations: Direct,
    router: Router,
}

/// The direct way: the plane's layers around the invocation handlers.
type Direct = <Layers as Layer<Invocations>>::Service;

/// The body of a direct answer: the handler's, as the trace layer watches it.
type DirectBody = tower_http::trace::ResponseBody<
    axum::body::Body,
    tower_http::classify::NeverClassifyEos<tower_http::classify::ServerErrorsFailureClass>,
>;

/// The body of a data-plane answer, whichever way it came (no boxing to unify them).
pub type DataPlaneBody = http_body_util::Either<DirectBody, axum::body::Body>;

type Answer = http::Response<DataPlaneBody>;

impl DataPlaneService {
    fn is_direct(request: &Request) -> bool {
        request.method() == Method::POST
            && !request.headers().contains_key(header::CONTENT_ENCODING)
            && Invocation::of(request.uri().path()).is_some()
    }
}

impl Service<Request> for DataPlaneService {
    type Response = Answer;
    type Error = Infallible;
    type Future = futures::future::Either<
        MapOk<<Direct as Service<Request>>::Future, fn(http::Response<DirectBody>) -> Answer>,
        MapOk<<Router as Service<Request>>::Future, fn(Response) -> Answer>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.invocations.poll_ready(cx)?.is_pending() {
            return Poll::Pending;
        }
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures::future::Either;
        if Self::is_direct(&request) {
            let direct: fn(_) -> _ = |r: http::Response<DirectBody>| r.map(DataPlaneBody::Left);
            Either::Left(self.invocations.call(request).map_ok(direct))
        } else {
            let routed: fn(_) -> _ = |r: Response| r.map(DataPlaneBody::Right);
            Either::Right(self.router.call(request).map_ok(routed))
        }
    }
}

/// The innermost service of the direct way: the invocation handlers, called with the
/// route's segments as the router's path extractors would give them.
#[derive(Clone)]
pub struct Invocations {
    data: DataPlane,
}

impl Service<Request> for Invocations {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let data = self.data.clone();
        Box::pin(async move {
            let uri = request.uri().clone();
            let path = uri.path();
            Ok(match Invocation::of(path) {
                Some(Invocation::SageMaker(endpoint)) => {
                    crate::sagemaker::invoke_request(&data, endpoint, request).await
                }
                Some(Invocation::V2 { name, version }) => {
                    crate::v2::rest::infer_request(&data, name, version, request).await
                }
                // `DataPlaneService` sends only invocation routes here.
                None => {
                    ServeError::RouteNotFound(format!("no such route: {path}")).response_for(path)
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Invocation::{self, SageMaker, V2};

    #[test]
    fn invocation_routes_are_matched_as_the_router_matches_them() {
        let v2 = |name, version| Some(V2 { name, version });
        let cases = [
            ("/invocations", Some(SageMaker(None))),
            ("/endpoints/demo/invocations", Some(SageMaker(Some("demo")))),
            (
                "/endpoints/a.b-c_d/invocations",
                Some(SageMaker(Some("a.b-c_d"))),
            ),
            ("/v2/models/mlp/infer", v2("mlp", None)),
            ("/v2/models/mlp/versions/3/infer", v2("mlp", Some("3"))),
            ("/v2/models/stats/infer", v2("stats", None)),
            // Left to the router: not an invocation route, or a segment it must decode.
            ("/invocations/", None),
            ("/endpoints//invocations", None),
            ("/endpoints/demo/invocations/", None),
            ("/endpoints/a/b/invocations", None),
            ("/endpoints/de%6Do/invocations", None),
            ("/endpoints/demo", None),
            ("/v2/models//infer", None),
            ("/v2/models/mlp/versions//infer", None),
            ("/v2/models/mlp/versions/3/4/infer", None),
            ("/v2/models/mlp/version/3/infer", None),
            ("/v2/models/mlp/x/infer", None),
            ("/v2/models/m%20p/infer", None),
            ("/v2/models/mlp", None),
            ("/v2/models/infer", None),
            ("/ping", None),
        ];
        for (path, want) in cases {
            assert_eq!(Invocation::of(path), want, "{path}");
        }
    }
}
