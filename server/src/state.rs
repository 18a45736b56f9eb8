//! Shared application state handed to every handler (axum `State`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pier_model_store::ModelStore;
use tokio::sync::{Mutex, Semaphore};

use crate::config::ServerConfig;
use crate::db::Db;
use crate::serving::Serving;

/// Cheap-to-clone handle on the server's state.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The state itself.
#[derive(Debug)]
pub struct Inner {
    /// Configuration.
    pub config: ServerConfig,
    /// Artifact store.
    pub store: ModelStore,
    /// Control-plane records.
    pub db: Db,
    /// Snapshot, model cache, compute pool.
    pub serving: Serving,
    /// Serialises control-plane changes (each builds the next snapshot from the current one).
    pub control: Mutex<()>,
    /// Data-plane admission: one permit per request in flight.
    pub in_flight: Semaphore,
    /// The in-process job runner, when `--job-slots` > 0 (set once at start).
    pub runner: std::sync::OnceLock<pier_jobs::Runner>,
    /// Set when shutdown begins: health checks then answer "not ready".
    draining: AtomicBool,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(config: ServerConfig, store: ModelStore, db: Db) -> Self {
        let serving = Serving::new(config.compute.threads, config.compute.queue);
        let in_flight = Semaphore::new(config.limits.max_in_flight);
        Self(Arc::new(Inner {
            config,
            store,
            db,
            serving,
            control: Mutex::new(()),
            runner: std::sync::OnceLock::new(),
            in_flight,
            draining: AtomicBool::new(false),
        }))
    }

    /// Server health for `/ping`, `/v2/health/ready` and gRPC ServerReady: the server is up
    /// and not shutting down. One endpoint that is creating or failed does not make a server
    /// that serves the others unhealthy (per-endpoint readiness is the model-ready call's);
    /// only with `--default-endpoint` (Pier as a SageMaker container, whose `/ping` speaks
    /// for its one model) does that endpoint's readiness decide.
    pub fn server_ready(&self) -> bool {
        if self.draining.load(Ordering::Relaxed) {
            return false;
        }
        match &self.config.default_endpoint {
            Some(name) => self.serving.snapshot().endpoint_ready(name),
            None => true,
        }
    }

    /// Marks the server as shutting down (health checks answer "not ready" from now on).
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
