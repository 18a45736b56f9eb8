//! The server's state, split by plane (axum `State`).
//!
//! [`DataPlane`] is everything serving a request needs: configuration, the artifact store
//! (for on-demand loads and metadata), the serving snapshot and compute pool, admission.
//! It holds no database: the data plane routes by the snapshot alone. [`AppState`] is the
//! control plane's: the data plane plus the database and the lock that serialises
//! control-plane changes. The data-plane routers and the gRPC service take a `DataPlane`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pier_model_store::ModelStore;
use tokio::sync::{Mutex, Semaphore};

use crate::config::ServerConfig;
use crate::db::Db;
use crate::serving::Serving;

/// Cheap-to-clone handle on the data plane's state.
#[derive(Clone, Debug)]
pub struct DataPlane(Arc<DataInner>);

/// The data plane's state itself.
#[derive(Debug)]
pub struct DataInner {
    /// Configuration.
    pub config: ServerConfig,
    /// Artifact store (read only here: on-demand loads and metadata).
    pub store: ModelStore,
    /// Snapshot, model cache, compute pool.
    pub serving: Serving,
    /// Data-plane admission: one permit per inference in flight, across protocols.
    pub in_flight: Semaphore,
    /// Set when shutdown begins: health checks then answer "not ready".
    draining: AtomicBool,
}

impl DataPlane {
    /// The data plane over `store`.
    pub fn new(config: ServerConfig, store: ModelStore) -> Self {
        let serving = Serving::new(
            config.compute.threads,
            config.compute.queue,
            config.multi_model_memory,
        );
        let in_flight = Semaphore::new(config.limits.max_in_flight);
        Self(Arc::new(DataInner {
            config,
            store,
            serving,
            in_flight,
            draining: AtomicBool::new(false),
        }))
    }
}

impl DataInner {
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

impl std::ops::Deref for DataPlane {
    type Target = DataInner;
    fn deref(&self) -> &DataInner {
        &self.0
    }
}

/// Cheap-to-clone handle on the control plane's state (which holds the data plane's).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// The control plane's state itself; its data-plane part is reached through `Deref`.
#[derive(Debug)]
pub struct Inner {
    /// The data plane this control plane changes.
    pub data: DataPlane,
    /// Control-plane records.
    pub db: Db,
    /// Serialises control-plane changes. Changes that load models build outside it and
    /// take it only to check the snapshot generation and store.
    pub control: Mutex<()>,
    /// The in-process job runner, when `--job-slots` > 0 (set once at start).
    pub runner: std::sync::OnceLock<pier_jobs::Runner>,
    /// What this replica serves, for reconciling with the records other replicas change.
    pub replicas: crate::control::ReplicaState,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(config: ServerConfig, store: ModelStore, db: Db) -> Self {
        Self(Arc::new(Inner {
            data: DataPlane::new(config, store),
            db,
            control: Mutex::new(()),
            runner: std::sync::OnceLock::new(),
            replicas: crate::control::ReplicaState::default(),
        }))
    }

    /// The data plane's state, for the data-plane routers and the gRPC service.
    pub fn data(&self) -> DataPlane {
        self.0.data.clone()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::ops::Deref for Inner {
    type Target = DataInner;
    fn deref(&self) -> &DataInner {
        &self.data
    }
}
