//! Shared application state handed to every handler (axum `State`).

use std::sync::Arc;

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
            in_flight,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
