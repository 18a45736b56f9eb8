//! The authentication layer as a hand-written tower service, so that what needs no body
//! costs next to nothing: an open path, a bearer token or a refusal is decided from the
//! request's head and the inner service is called in place (no boxed future, no clone of
//! the inner service, no request rebuilt). Only a SigV4-signed request, whose body must be
//! read before the signature can be checked, takes a boxed future and the ready inner
//! service with it (the usual `mem::replace` with a clone).
//!
//! Concurrency: a service per route, cloned per connection by axum; the [`Authenticator`]
//! is shared through an `Arc`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use futures::future::{BoxFuture, Either, Ready, ready};
use tower::{Layer, Service};

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

type Answer = Result<Response, Infallible>;

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Either<Ready<Answer>, BoxFuture<'static, Answer>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.auth.decide(&request) {
            Decision::Pass => Either::Left(self.inner.call(request)),
            Decision::Refuse(e) => {
                let answer = self.auth.refuse(&e, request.uri().path());
                Either::Right(Either::Left(ready(Ok(answer))))
            }
            Decision::Verify => {
                // The ready service goes with the future; its clone waits for poll_ready.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let auth = self.auth.clone();
                Either::Right(Either::Right(Box::pin(async move {
                    match auth.verify(request).await {
                        Ok(request) => inner.call(request).await,
                        Err(answer) => Ok(answer),
                    }
                })))
            }
        }
    }
}
