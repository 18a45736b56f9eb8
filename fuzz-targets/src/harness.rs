//! An in-process Pier for the server-backed targets: an [`AppState`] over a temporary data
//! folder with the demo endpoint installed, its data-plane, control-plane and gRPC services,
//! and the runtime that drives them. Nothing listens on a socket.
//!
//! Concurrency: built once per process (per kind) and shared; calls block on its
//! current-thread runtime, which also runs the tasks the server spawns.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use pier_model_store::ModelStore;
use pier_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use pier_server::db::Db;
use pier_server::v2::grpc::{Service, service};
use pier_server::{AppState, ServerConfig};
use tower::ServiceExt;

/// One in-process server.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    data: pier_server::routers::DataPlaneService,
    control: Router,
    grpc: GrpcInferenceServiceServer<Service>,
    /// `<repo>/fixtures`, canonical.
    pub fixtures: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The harness of the data-plane targets.
    pub fn data_plane() -> &'static Harness {
        static H: OnceLock<Harness> = OnceLock::new();
        H.get_or_init(Harness::new)
    }

    /// The harness of the control-plane target (its own state, which the fuzzer mutates).
    pub fn control_plane() -> &'static Harness {
        static H: OnceLock<Harness> = OnceLock::new();
        H.get_or_init(Harness::new)
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary data folder");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut config = ServerConfig::new(dir.path());
        config.compute.threads = 1;
        let limit = config.limits.max_body_bytes;
        let state = rt.block_on(async {
            let store = ModelStore::open(config.store_dir()).expect("the store opens");
            let db = Db::open(&config.data_dir)
                .await
                .expect("the database opens");
            let state = AppState::new(config, store, db);
            pier_server::control::demo::install(&state)
                .await
                .expect("the demo endpoint installs");
            state
        });
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .canonicalize()
            .expect("the fixtures folder");
        Self {
            data: pier_server::routers::data_plane(state.data()),
            grpc: service(state.data(), limit),
            control: pier_server::routers::control_plane(state),
            rt,
            fixtures,
            _dir: dir,
        }
    }

    /// Sends `request` to the data-plane router; returns the status and the whole body.
    pub fn data(&self, request: Request<axum::body::Body>) -> (StatusCode, Bytes) {
        self.http(&self.data, request)
    }

    /// Sends `request` to the control-plane router; returns the status and the whole body.
    pub fn control(&self, request: Request<axum::body::Body>) -> (StatusCode, Bytes) {
        self.http(&self.control, request)
    }

    fn http<S, B>(&self, router: &S, request: Request<axum::body::Body>) -> (StatusCode, Bytes)
    where
        S: tower::Service<
                Request<axum::body::Body>,
                Response = http::Response<B>,
                Error = std::convert::Infallible,
            > + Clone,
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        self.rt.block_on(async {
            let response = router.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("the response body reads")
                .to_bytes();
            (status, body)
        })
    }

    /// Calls the gRPC method `path` with one already encoded message; returns the
    /// `grpc-status` code (headers or trailers) and the response messages' bytes.
    pub fn grpc(&self, path: &str, message: &[u8]) -> (Option<String>, Bytes) {
        let mut frame = Vec::with_capacity(message.len() + 5);
        frame.push(0); // not compressed
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(message);
        let request = Request::post(path)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(frame)))
            .expect("a valid request");
        self.rt.block_on(async {
            let response = self
                .grpc
                .clone()
                .oneshot(request)
                .await
                .expect("infallible");
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.expect("the response body reads");
            let code = |h: &HeaderMap| {
                h.get("grpc-status")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            let status = code(&parts.headers).or_else(|| collected.trailers().and_then(code));
            (status, collected.to_bytes())
        })
    }
}
