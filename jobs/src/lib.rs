//! Pier's companion job runner: SageMaker training jobs (and, building on them, tuning and
//! batch transform) over channels on local disk or any S3-compatible store.
//!
//! - [`train`]: train a built-in algorithm on local `text/csv` files and publish it (the
//!   library path behind `pier train`, which needs no server).
//! - [`training`]: the training job record in SageMaker's field names, its checks at create
//!   (image, hyperparameters, channels), reading its channels and writing its outputs.
//! - [`runner`]: the durable queue in `pier-db`: runners claim jobs atomically, hold them by a
//!   lease renewed by a heartbeat, write each transition before acting, log progress to the
//!   job's log, and on start reconcile jobs whose runner died (failed with a reason, or
//!   retried under `RetryStrategy`).
//!
//! Concurrency: the runner is a tokio task; each job runs as a task whose blocking work
//! (reading channels, training, publishing) goes to `spawn_blocking`, and training itself to
//! the runner's own rayon pool (`--training-threads`), never the global pool nor the server's
//! compute threads. Cancellation (StopTrainingJob, MaxRuntimeInSeconds, shutdown) is a flag
//! checked between units of training work.

pub mod error;
pub mod runner;
pub mod train;
pub mod training;

pub use error::{JobsError, Result};
pub use runner::{Runner, RunnerConfig, RunnerHandle};
