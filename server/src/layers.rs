//! The tower layers every listener (data-plane HTTP, control plane, v2 gRPC) composes, in
//! reading order, as linkerd2-proxy composes its stacks:
//!
//! request id ([`RequestIdLayer`]) → trace ([`RequestSpan`]) → timeout ([`TimeoutLayer`],
//! the whole request: body read, decode, queue, predict, encode) → load shed
//! ([`LoadShedLayer`]) → body limit ([`BodyLimitLayer`] and axum's `DefaultBodyLimit`;
//! tonic's message limits on gRPC) → authentication ([`crate::auth`]).
//!
//! Refusals a layer makes take the shape of the listener's protocol ([`Refuse`]): SageMaker
//! runtime's or v2's error on the data plane, AWS JSON on the control plane, a gRPC status.
//! The timeout layer also hands its deadline to the handler ([`Deadline`]), so the
//! invocation core answers a request that runs out of time with a counted `Timeout` error
//! an instant before the layer would cut it.
//!
//! Each layer's future is a named type holding the inner future in place: a request costs
//! no boxed future per layer (three fewer allocations a request than `Box::pin`ned `async`
//! blocks), and layers compose into one future that axum boxes once.
//!
//! [`BodyLimitLayer`] answers a request whose declared `Content-Length` is over the
//! body limit at once, before the body is read: a client that sent `Expect: 100-continue`
//! gets its 413 instead of a `100 Continue` and a wait, and no byte of the body is buffered.
//! Bodies without a length (chunked) are bounded as they arrive: by the invocation
//! handlers' body read ([`invocation_parts`]) and by axum's body limit on the other routes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request};
use axum::http::Uri;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::error::{ApiCode, ApiError, ServeError};

/// The request id header (AWS's `x-amzn-RequestId`; botocore reads it into
/// `ResponseMetadata.RequestId`), on every answer of every listener.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// Which protocol's error shape an early refusal takes.
#[derive(Clone, Copy, Debug)]
pub enum Plane {
    /// The data plane: SageMaker runtime's shape, or `{"error": ...}` under `/v2`.
    Data,
    /// The control plane: AWS JSON 1.1's shape.
    Admin,
}

/// The declared body length, when the request carries a valid `Content-Length`.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses a request whose declared `Content-Length` is over `limit` with a 413 in
/// `plane`'s shape, before any byte of its body is read (a tower layer rather than an axum
/// `from_fn` middleware: no clone of the inner service and no boxed future per request).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    limit: usize,
    plane: Plane,
}

impl BodyLimitLayer {
    /// Bodies over `limit` bytes are refused in `plane`'s shape.
    pub fn new(limit: usize, plane: Plane) -> Self {
        Self { limit, plane }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            limit: self.limit,
            plane: self.plane,
        }
    }
}

/// See [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
    plane: Plane,
}

impl<S, B> Service<http::Request<B>> for BodyLimit<S>
where
    S: Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures::future::Either;
        match declared_length(request.headers()) {
            Some(length) if length > self.limit as u64 => {
                let mut response =
                    too_large(self.limit, self.plane, request.uri().path(), Some(length));
                // The body is never read, so the connection cannot carry another request:
                // say so, or a client would send its next request into a closing connection.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Either::Left(std::future::ready(Ok(response)))
            }
            _ => Either::Right(self.inner.call(request)),
        }
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

/// An invocation request taken apart: its [`Deadline`], its headers, and its body read
/// whole within `limit` bytes (after decompression, where the request went through it: a
/// compression bomb is a 413), without copying the header map (axum's `HeaderMap`
/// extractor clones it).
///
/// A body that arrives in one frame, as a small request's does, is handed on as that
/// frame's bytes without a copy; more frames are gathered into one buffer. A body that
/// fails to arrive (a reset connection, the body deadline) is a 400 naming the error.
pub async fn invocation_parts(
    request: Request,
    limit: usize,
) -> (Deadline, http::HeaderMap, Result<Bytes, ServeError>) {
    let (parts, body) = request.into_parts();
    let deadline = Deadline::of(&parts.extensions);
    (deadline, parts.headers, read_body(body, limit).await)
}

/// `http_body_util::Limited` and `collect()` would read the same bytes, but gather every body
/// in a `VecDeque` (an allocation a request, on the hot path) and hide the limit behind a
/// boxed error to downcast.
async fn read_body(mut body: axum::body::Body, limit: usize) -> Result<Bytes, ServeError> {
    use http_body_util::BodyExt;
    let refuse =
        |e: axum::Error| ServeError::Validation(format!("Failed to buffer the request body: {e}"));
    let mut first = Bytes::new();
    let mut gathered: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(refuse)?.into_data() else {
            continue; // trailers
        };
        let held = gathered.as_ref().map_or(first.len(), Vec::len);
        if data.len() > limit.saturating_sub(held) {
            return Err(ServeError::PayloadTooLarge { limit });
        }
        match &mut gathered {
            Some(all) => all.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut all = Vec::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                gathered = Some(all);
            }
        }
    }
    Ok(gathered.map_or(first, Bytes::from))
}

/// A random version-4 UUID, as AWS's request ids are, in a stack buffer: 36 ASCII bytes
/// (hex digits and dashes), no allocation.
fn request_id_bytes() -> [u8; 36] {
    uuid_text(fastrand::u128(..))
}

/// `random` as a version-4 UUID's text (its version and variant bits set).
fn uuid_text(random: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Where each byte's two digits go: the dashes at 8, 13, 18 and 23 are skipped.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut bytes: [u8; 16] = random.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [b'-'; 36];
    for (&b, &at) in bytes.iter().zip(&AT) {
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

/// Gives each request a fresh [`REQUEST_ID`] (replacing any the client sent), seen by the
/// layers inside (the trace span) and returned on the answer, refusals included.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;
    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for RequestId<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Two values built from one stack buffer: cheaper than a shared clone of one.
        let bytes = request_id_bytes();
        let value = || HeaderValue::from_bytes(&bytes).expect("a UUID is a header value");
        request.headers_mut().insert(REQUEST_ID, value());
        // Marked never-indexed for HTTP/2's HPACK (HTTP/1 ignores the mark): an id is never
        // sent twice, so adding each one to the connection's header table only costs an
        // insertion and an eviction an answer (2.6k of a gRPC call's 86.7k instructions).
        let mut answer_id = value();
        answer_id.set_sensitive(true);
        RequestIdFuture {
            answer: self.inner.call(request),
            id: Some(answer_id),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`RequestId`]'s answer: the inner answer with the request id added (in place, no
    /// boxed future).
    pub struct RequestIdFuture<F> {
        #[pin]
        answer: F,
        id: Option<HeaderValue>,
    }
}

impl<F, RB, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.answer.poll(cx))?;
        if let Some(id) = this.id.take() {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(response))
    }
}

/// The trace span of a request: method, path and request id (debug level).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> tower_http::trace::MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        // The fields are read only when the span is enabled: a disabled span costs a
        // request no header lookup.
        tracing::debug_span!(
            "request",
            method = %request.method(),
            path = request.uri().path(),
            id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        )
    }
}

/// Why a layer answered instead of the service.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// The whole-request timeout passed.
    Timeout(Duration),
    /// The listener holds as many requests as it takes.
    Overloaded,
}

/// How a listener's protocol answers a [`Refusal`] (`path`: the request's).
pub trait Refuse<B>: Clone + Send + Sync + 'static {
    /// The answer.
    fn refuse(&self, why: Refusal, path: &str) -> http::Response<B>;

    /// How long the client gives the request, where its protocol has a way to say so
    /// (gRPC's `grpc-timeout`); the [`TimeoutLayer`] takes the shorter of it and its own.
    fn client_timeout(&self, _headers: &http::HeaderMap) -> Option<Duration> {
        None
    }
}

impl Refuse<axum::body::Body> for Plane {
    fn refuse(&self, why: Refusal, path: &str) -> Response {
        match (self, why) {
            (Plane::Data, Refusal::Timeout(after)) => ServeError::Timeout {
                seconds: after.as_secs_f64(),
            }
            .response_for(path),
            (Plane::Data, Refusal::Overloaded) => {
                ServeError::Overloaded("too many requests on this listener").response_for(path)
            }
            (Plane::Admin, Refusal::Timeout(after)) => ApiError {
                code: ApiCode::RequestTimeout,
                message: format!(
                    "the request did not finish within {} s",
                    after.as_secs_f64()
                ),
            }
            .into_response(),
            (Plane::Admin, Refusal::Overloaded) => ApiError {
                code: ApiCode::ThrottlingException,
                message: "Rate exceeded: too many control-plane requests at once".into(),
            }
            .into_response(),
        }
    }
}

/// The v2 gRPC listener's refusals, as gRPC statuses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Grpc;

impl Refuse<tonic::body::Body> for Grpc {
    fn refuse(&self, why: Refusal, _path: &str) -> http::Response<tonic::body::Body> {
        let error = match why {
            Refusal::Timeout(after) => ServeError::Timeout {
                seconds: after.as_secs_f64(),
            },
            Refusal::Overloaded => ServeError::Overloaded("too many requests on this listener"),
        };
        tonic::Status::from(error).into_http()
    }

    fn client_timeout(&self, headers: &http::HeaderMap) -> Option<Duration> {
        grpc_timeout(headers.get(GRPC_TIMEOUT)?.as_bytes())
    }
}

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// A `grpc-timeout` value (gRPC over HTTP/2: at most 8 digits, then `H`, `M`, `S`, `m`, `u`
/// or `n`); `None` for anything else, which is ignored as gRPC servers ignore it.
fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The deadline the [`TimeoutLayer`] set for a request (`None` when no layer set one:
/// in-process callers); an axum extractor that never fails.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(pub Option<Instant>);

/// The request extension behind [`Deadline`].
#[derive(Clone, Copy, Debug)]
struct DeadlineAt(Instant);

impl Deadline {
    /// The deadline of a request with these extensions (tonic requests included).
    pub fn of(extensions: &http::Extensions) -> Self {
        Self(extensions.get::<DeadlineAt>().map(|d| d.0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Deadline {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self::of(&parts.extensions))
    }
}

/// Answers a request still running `after` its arrival (or sooner, when the client's
/// protocol sets a shorter timeout: [`Refuse::client_timeout`]) with the protocol's timeout
/// error (dropping it: a queued inference is withdrawn), and tells the handler its
/// [`Deadline`].
#[derive(Clone, Debug)]
pub struct TimeoutLayer<R> {
    after: Duration,
    refuse: R,
}

impl<R> TimeoutLayer<R> {
    /// Requests get `after`; refusals are `refuse`'s.
    pub fn new(after: Duration, refuse: R) -> Self {
        Self { after, refuse }
    }
}

impl<S, R: Clone> Layer<S> for TimeoutLayer<R> {
    type Service = Timeout<S, R>;
    fn layer(&self, inner: S) -> Timeout<S, R> {
        Timeout {
            inner,
            after: self.after,
            refuse: self.refuse.clone(),
        }
    }
}

/// See [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S, R> {
    inner: S,
    after: Duration,
    refuse: R,
}

impl<S, R, B, RB> Service<http::Request<B>> for Timeout<S, R>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    R: Refuse<RB>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let after = match self.refuse.client_timeout(request.headers()) {
            Some(client) if client < self.after => client,
            _ => self.after,
        };
        let deadline = Instant::now() + after;
        request.extensions_mut().insert(DeadlineAt(deadline));
        let uri: Uri = request.uri().clone();
        TimeoutFuture {
            answer: tokio::time::timeout_at(deadline, self.inner.call(request)),
            after,
            refuse: self.refuse.clone(),
            uri,
        }
    }
}

pin_project_lite::pin_project! {
    /// [`Timeout`]'s answer: the inner answer, or the protocol's timeout error once the
    /// deadline passes (in place, no boxed future).
    pub struct TimeoutFuture<F, R> {
        #[pin]
        answer: tokio::time::Timeout<F>,
        after: Duration,
        refuse: R,
        uri: Uri,
    }
}

impl<F, R, RB, E> Future for TimeoutFuture<F, R>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    R: Refuse<RB>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(match std::task::ready!(this.answer.poll(cx)) {
            Ok(result) => result,
            Err(_) => Ok(this
                .refuse
                .refuse(Refusal::Timeout(*this.after), this.uri.path())),
        })
    }
}

/// Answers at once, with the protocol's overload error, a request that finds the listener
/// holding as many requests as `permits` allows (tower's load shedding over a concurrency
/// limit, in one step). Inference requests also pass the invocation core's admission,
/// shared by every listener.
#[derive(Clone, Debug)]
pub struct LoadShedLayer<R> {
    permits: Arc<Semaphore>,
    refuse: R,
}

impl<R> LoadShedLayer<R> {
    /// At most `max` requests at once.
    pub fn new(max: usize, refuse: R) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
            refuse,
        }
    }
}

impl<S, R: Clone> Layer<S> for LoadShedLayer<R> {
    type Service = LoadShed<S, R>;
    fn layer(&self, inner: S) -> LoadShed<S, R> {
        LoadShed {
            inner,
            permits: self.permits.clone(),
            refuse: self.refuse.clone(),
        }
    }
}

/// See [`LoadShedLayer`].
#[derive(Clone, Debug)]
pub struct LoadShed<S, R> {
    inner: S,
    permits: Arc<Semaphore>,
    refuse: R,
}

impl<S, R, B, RB> Service<http::Request<B>> for LoadShed<S, R>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    R: Refuse<RB>,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = futures::future::Either<
        std::future::Ready<Result<Self::Response, Self::Error>>,
        Admitted<S::Future>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures::future::Either;
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Either::Right(Admitted {
                answer: self.inner.call(request),
                _permit: permit,
            }),
            Err(_) => Either::Left(std::future::ready(Ok(self
                .refuse
                .refuse(Refusal::Overloaded, request.uri().path())))),
        }
    }
}

pin_project_lite::pin_project! {
    /// An admitted request's answer (in place, no boxed future), holding its
    /// [`LoadShed`] permit until the future is dropped, right after the answer.
    pub struct Admitted<F> {
        #[pin]
        answer: F,
        _permit: tokio::sync::OwnedSemaphorePermit,
    }
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().answer.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_the_standard_layout_with_version_and_variant_set() {
        for random in [0u128, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            let mut bytes = random.to_be_bytes();
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let want = format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            );
            assert_eq!(std::str::from_utf8(&uuid_text(random)).unwrap(), want);
        }
        assert_eq!(
            &uuid_text(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            b"01234567-89ab-4def-bedc-ba9876543210"
        );
    }

    #[test]
    fn request_ids_are_version_4_uuids() {
        let a = request_id_bytes();
        let b = request_id_bytes();
        assert_ne!(a, b);
        for id in [a, b] {
            let text = std::str::from_utf8(&id).unwrap();
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{text}"
            );
            assert!(
                groups
                    .iter()
                    .all(|g| g.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))),
                "{text}"
            );
            assert!(groups[2].starts_with('4'), "version nibble: {text}");
            assert!(
                matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
                "variant bits: {text}"
            );
            assert!(HeaderValue::from_bytes(&id).is_ok());
        }
    }

    #[test]
    fn grpc_timeouts_are_read_as_grpc_writes_them() {
        let cases: [(&[u8], Option<Duration>); 12] = [
            (b"1H", Some(Duration::from_secs(3600))),
            (b"2M", Some(Duration::from_secs(120))),
            (b"30S", Some(Duration::from_secs(30))),
            (b"250m", Some(Duration::from_millis(250))),
            (b"99999999u", Some(Duration::from_micros(99_999_999))),
            (b"7n", Some(Duration::from_nanos(7))),
            // Nine digits, no digits, no unit, an unknown unit, a sign, spaces: ignored.
            (b"123456789m", None),
            (b"m", None),
            (b"100", None),
            (b"5s", None),
            (b"-5S", None),
            (b" 5S", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                grpc_timeout(value),
                expected,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        // The largest value a client may send does not overflow.
        assert_eq!(
            grpc_timeout(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
    }
}
