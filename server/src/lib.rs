//! Pier's server: the control plane (SageMaker's API for models, endpoint configs and
//! endpoints, persisted in SQLite) and the data plane (SageMaker's runtime API and container
//! contract, Open Inference Protocol v2 over REST and gRPC) over one shared serving snapshot.
//!
//! Layout: the protocol facades (`sagemaker`, [`v2`]) parse and encode and call the one
//! invocation core (`serving::invoke`); [`routers`] and the gRPC server put them behind
//! the same tower layers (`layers`); [`DataPlane`] is the data plane's state (no database),
//! [`AppState`] the control plane's.
//!
//! Concurrency design: requests read the current [`serving::ServingSnapshot`] through one
//! `ArcSwap` load; the control plane changes it one writer at a time, building the next
//! snapshot on the side (outside its lock) and storing it whole. Model code runs on a
//! dedicated compute pool, except calls whose measured cost is under the inline budget
//! (`--inline-predict-us`), which run on the request's task. Errors become wire statuses in
//! `error` alone.

pub mod auth;
pub mod capture;
pub mod config;
pub mod control;
pub use pier_db as db;
mod error;
mod layers;
mod listener;
mod metrics;
pub mod model_dir;
mod records;
pub mod repository;
pub mod routers;
mod sagemaker;
mod server;
pub mod serving;
mod state;
mod tls;
pub mod v2;

pub use config::{ComputeConfig, Limits, ServerConfig};
pub use error::{ApiCode, ApiError, AuthError, ServeError};
pub use listener::ListenerLimits;
pub use server::{RunningServer, StartError, start};
pub use state::{AppState, DataPlane};
