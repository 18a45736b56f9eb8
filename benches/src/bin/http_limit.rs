//! The zero-work HTTP limit: a hyper-util server with Pier's listener settings that answers
//! every request with a fixed body, doing no work between the socket and the answer. Pier's
//! HTTP data plane is measured against it (`benches/http_limit.sh`): what Pier loses to it is
//! what its own path costs.
//!
//! Settings as `pier serve`'s data-plane listener (`server/src/listener.rs`, `cli/src/main.rs`):
//! a multi-thread tokio runtime with default workers (one per core), hyper-util's `auto`
//! builder (HTTP/1 with keep-alive and the same header-read timeout and buffer, HTTP/2),
//! TCP_NODELAY on every accepted connection, one task per connection, mimalloc (`pier_alloc`)
//! as the global allocator. The request body is read whole before the answer (as any server
//! must), then dropped.
//!
//! usage: `http_limit ADDR BODY_BYTES|@FILE [CONTENT_TYPE]` — prints `listening on ADDR` (the
//! bound address; port 0 picks one) and serves until killed. The answer is BODY_BYTES bytes of
//! `0.5,` repeated and cut to size (the size of Pier's answer to the same request), or the
//! bytes of FILE (`benches/peers/run.sh` saves Pier's own answer), with the headers Pier sends
//! (`content-type`, `x-amzn-requestid`, `x-amzn-invoked-production-variant`, `x-pier-model`)
//! as fixed values.
//!
//! Concurrency: tokio's worker threads; no shared state but the immutable body.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

/// The allocator `pier` runs with (`cli/src/main.rs`), so the two differ only in their work.
#[global_allocator]
static ALLOCATOR: pier_alloc::Allocator = pier_alloc::Allocator;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let body_arg = args.next().unwrap_or_else(|| "16".into());
    let content_type = args.next().unwrap_or_else(|| "text/csv".into());
    let body: Bytes = match body_arg.strip_prefix('@') {
        Some(path) => std::fs::read(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))?
            .into(),
        None => {
            let size: usize = body_arg.parse().map_err(|_| {
                std::io::Error::other(format!("BODY_BYTES {body_arg:?} is not a size"))
            })?;
            b"0.5,"
                .iter()
                .copied()
                .cycle()
                .take(size)
                .collect::<Vec<u8>>()
                .into()
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .max_header_list_size(64 * 1024);
        let builder = std::sync::Arc::new(builder);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            let (builder, body, content_type) =
                (builder.clone(), body.clone(), content_type.clone());
            tokio::spawn(async move {
                let service = TowerToHyperService::new(tower::service_fn(
                    move |request: Request<Incoming>| {
                        let (body, content_type) = (body.clone(), content_type.clone());
                        async move {
                            // Read the request body whole, as a server that uses it must.
                            let _ = request.into_body().collect().await;
                            let response = Response::builder()
                                .header("content-type", content_type)
                                .header("x-amzn-requestid", "00000000-0000-4000-8000-000000000000")
                                .header("x-amzn-invoked-production-variant", "main")
                                .header("x-pier-model", "demo/1")
                                .body(Full::new(body))
                                .expect("a valid response");
                            Ok::<_, Infallible>(response)
                        }
                    },
                ));
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
