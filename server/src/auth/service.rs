//! The authentication layer as a hand-written tower service and future, so that what needs
//! no body costs next to nothing and what does costs no box: an open path, a bearer token or
//! a refusal is decided from the request's head and the inner service is called in place
//! (no clone of the inner service, no request rebuilt). A SigV4-signed request, whose body
//! must be read before the signature can be checked, takes the ready inner service into its
//! future (the usual `mem::replace` with a clone), which reads the body, checks it and then
//! becomes the inner service's future, all in place.
//!
//! Concurrency: one service around each route of a plane, cloned per request by axum; the
//! [`Authenticator`] is shared through an `Arc`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::response::Response;
use tower::{Layer, Service};

use super::body::HashedRead;
use super::{Authenticator, Decision};

/// The [`AuthService`] of one plane around each route.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// The layer checking what `auth` says.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            auth: self.auth.clone(),
            inner,
        }
    }
}

/// Passes authenticated, allowed requests to `S`; answers every other with the plane's
/// error.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    auth: Arc<Authenticator>,
    inner: S,
}

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AuthFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.auth.decide(&request) {
            Decision::Pass => AuthFuture::Inner {
                future: self.inner.call(request),
            },
            Decision::Refuse(e) => AuthFuture::Answer {
                answer: std::future::ready(Ok(self.auth.refuse(&e, request.uri().path()))),
            },
            Decision::Verify => {
                // The ready service goes with the future; its clone waits for poll_ready.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let (parts, body) = request.into_parts();
                AuthFuture::Reading {
                    auth: self.auth.clone(),
                    inner: Some(inner),
                    parts: Some(parts),
                    body,
                    read: HashedRead::new(self.auth.max_body_bytes),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// [`AuthService`]'s answer: the inner service's future, a refusal, or a signed
    /// request's body being read before its check.
    #[project = Step]
    pub enum AuthFuture<S>
    where
        S: Service<Request>,
    {
        /// Passed on (or checked and passed on).
        Inner { #[pin] future: S::Future },
        /// Refused.
        Answer { answer: std::future::Ready<Result<Response, Infallible>> },
        /// A SigV4-signed request: its body is read and hashed, then checked.
        Reading {
            auth: Arc<Authenticator>,
            inner: Option<S>,
            parts: Option<Parts>,
            body: Body,
            read: HashedRead,
        },
    }
}

impl<S> Future for AuthFuture<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project() {
                Step::Inner { future } => return future.poll(cx),
                Step::Answer { answer } => return Pin::new(answer).poll(cx),
                Step::Reading {
                    auth,
                    inner,
                    parts,
                    body,
                    read,
                } => {
                    let read = ready!(read.poll(Pin::new(body), cx));
                    let parts = parts.take().expect("AuthFuture polled after it ended");
                    match auth.check_signed(parts, read) {
                        Ok(request) => AuthFuture::Inner {
                            future: inner
                                .take()
                                .expect("AuthFuture polled after it ended")
                                .call(request),
                        },
                        Err(answer) => AuthFuture::Answer {
                            answer: std::future::ready(Ok(answer)),
                        },
                    }
                }
            };
            self.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use bytes::Bytes;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{Credentials, Plane, sigv4};

    /// The inner service: answers 200 with the body it read.
    async fn echo(request: Request) -> Result<Response, Infallible> {
        let body = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        Ok(body.into_response())
    }

    fn service() -> impl Service<Request, Response = Response, Error = Infallible> + Clone {
        let credentials: Credentials = "[t]\naws_access_key_id = AKID\n\
             aws_secret_access_key = s\npier_token = tok\n"
            .parse()
            .unwrap();
        let auth = Authenticator::new(Arc::new(credentials), Plane::Invoke, false, 16);
        AuthLayer::new(Arc::new(auth)).layer(tower::service_fn(echo))
    }

    fn request(path: &str, authorization: Option<&str>, body: Body) -> Request {
        let mut request = Request::new(body);
        *request.method_mut() = axum::http::Method::POST;
        *request.uri_mut() = path.parse().unwrap();
        let headers = request.headers_mut();
        headers.insert("host", HeaderValue::from_static("127.0.0.1"));
        let date = sigv4::format_amz_date(super::super::now());
        headers.insert("x-amz-date", date.parse().unwrap());
        if let Some(value) = authorization {
            headers.insert("authorization", value.parse().unwrap());
        }
        request
    }

    async fn answer(request: Request) -> (StatusCode, String, Bytes) {
        let response = service().oneshot(request).await.unwrap();
        let code = response
            .headers()
            .get("x-amzn-ErrorType")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, code, body)
    }

    /// A body of `chunks` with no length known in advance (as a chunked upload).
    fn streamed(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn open_paths_tokens_and_refusals() {
        let path = "/endpoints/demo/invocations";
        let ok = answer(request("/ping", None, Body::from("x"))).await;
        assert_eq!((ok.0, &ok.2[..]), (StatusCode::OK, &b"x"[..]));
        let ok = answer(request(path, Some("Bearer tok"), Body::from("row"))).await;
        assert_eq!((ok.0, &ok.2[..]), (StatusCode::OK, &b"row"[..]));
        for (authorization, status, code) in [
            (None, StatusCode::FORBIDDEN, "MissingAuthenticationToken"),
            (
                Some("Bearer nope"),
                StatusCode::FORBIDDEN,
                "UnrecognizedClientException",
            ),
            (
                Some("Bearer "),
                StatusCode::FORBIDDEN,
                "MissingAuthenticationToken",
            ),
            (
                Some("Basic abc"),
                StatusCode::BAD_REQUEST,
                "IncompleteSignatureException",
            ),
        ] {
            let (s, c, _) = answer(request(path, authorization, Body::from("row"))).await;
            assert_eq!((s, c.as_str()), (status, code), "{authorization:?}");
        }
    }

    #[tokio::test]
    async fn signed_bodies_are_read_within_the_limit_then_checked() {
        let path = "/endpoints/demo/invocations";
        let date = sigv4::format_amz_date(super::super::now());
        let wrong = format!(
            "AWS4-HMAC-SHA256 Credential=AKID/{}/us-west-2/sagemaker/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={}",
            &date[..8],
            "0".repeat(64)
        );
        // Within the limit, in several frames: read whole, then the signature is wrong.
        let chunks: &[&'static [u8]] = &[b"5.1,3.5,", b"1.4,0.2\n"];
        let (s, c, _) = answer(request(path, Some(&wrong), streamed(chunks))).await;
        assert_eq!(
            (s, c.as_str()),
            (StatusCode::FORBIDDEN, "InvalidSignatureException")
        );
        // Over the 16-byte limit without a declared length: 413 before any check.
        let chunks: &[&'static [u8]] = &[b"5.1,3.5,1.4,", b"0.2\n6.7,3.0\n"];
        let (s, _, body) = answer(request(path, Some(&wrong), streamed(chunks))).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body:?}");
    }
}
