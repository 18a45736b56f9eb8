//! Pier's server: the control plane (SageMaker's API for models, endpoint configs and
//! endpoints, persisted in SQLite) and the data plane (SageMaker's runtime API and container
//! contract) over one shared serving snapshot.
//!
//! Concurrency design: requests read the current [`serving::ServingSnapshot`] through one
//! `ArcSwap` load; the control plane changes it one writer at a time by building the next
//! snapshot on the side and storing it whole. Model code runs on a dedicated compute pool,
//! never on tokio's workers. Errors become wire statuses in [`error`] alone.

pub mod auth;
pub mod config;
pub mod control;
pub use pier_db as db;
pub mod data;
pub mod error;
pub mod layers;
pub mod listener;
pub mod metrics;
pub mod records;
pub mod server;
pub mod serving;
pub mod state;
pub mod tls;
pub mod v2;

pub use config::{ComputeConfig, Limits, ServerConfig};
pub use listener::ListenerLimits;
pub use server::{RunningServer, StartError, start};
pub use state::AppState;
