//! Pier's companion job runner: SageMaker training jobs (and, building on them, tuning and
//! batch transform) over channels on local disk or any S3-compatible store.
//!
//! - [`channels`]: reading `InputDataConfig` channels (S3 prefix or manifest, local paths,
//!   gzip, CSV and RecordIO-protobuf) into training data.
//! - [`output`]: `<S3OutputPath>/<job>/output/model.tar.gz`, written so no reader sees it half
//!   written, and CreateModel's `ModelDataUrl` fetched and unpacked with the store's rules.
//! - [`train`]: train a built-in algorithm on local `text/csv` files and publish it (the
//!   library path behind `pier train`, which needs no server).
//! - [`training`]: the training job record in SageMaker's field names, its checks at create
//!   (image, hyperparameters, channels), running it over its channels and writing its outputs.
//! - [`script`]: script mode: users' training scripts run as local processes under the
//!   sagemaker-training toolkit's contract (job folder, `SM_*` environment, metrics from the
//!   log, the model they leave published with its runtime detected).
//! - [`transform`]: batch transform jobs: the record, its checks, the bounded read → decode →
//!   predict → encode → write pipeline, and running a job over S3 or local objects.
//! - [`tuning`]: hyperparameter tuning jobs: the pure search strategies, the record, and the
//!   task that runs a search as ordinary training jobs in the same queue.
//! - [`runner`]: the durable queue in `pier-db`: runners claim jobs atomically, hold them by a
//!   lease renewed by a heartbeat, write each transition before acting, log progress to the
//!   job's log, and on start reconcile jobs whose runner died (failed with a reason, or
//!   retried under `RetryStrategy`).
//!
//! Concurrency: the runner is a tokio task; each job runs as a task whose blocking work
//! (training, publishing) goes to `spawn_blocking`, channel reads are async inside tokio, and
//! training itself runs on the runner's own rayon pool (`--training-threads`), never the global
//! pool nor the server's compute threads. Cancellation (StopTrainingJob, MaxRuntimeInSeconds,
//! shutdown) is a flag checked between chunks of channel data and units of training work.

pub mod channels;
pub mod error;
pub mod output;
pub mod runner;
pub mod script;
pub mod train;
pub mod training;
pub mod transform;
pub mod tuning;

pub use error::{JobsError, Result};
pub use runner::{Runner, RunnerConfig, RunnerHandle};

/// `arn:aws:sagemaker:local:000000000000:<kind>/<name>`, as the control plane writes ARNs
/// (the name lower-cased, as SageMaker's).
pub fn arn(kind: &str, name: &str) -> String {
    format!(
        "arn:aws:sagemaker:local:000000000000:{kind}/{}",
        name.to_ascii_lowercase()
    )
}
