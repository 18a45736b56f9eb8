//! The one error type of `pier-jobs`: every failure of validating a job, reading its channels,
//! training, publishing or persisting it, each variant matchable and its message naming the
//! channel, object, line or hyperparameter at fault (it becomes a job's `FailureReason`).

use thiserror::Error;

/// Everything that can go wrong in `pier-jobs`.
#[derive(Debug, Error)]
pub enum JobsError {
    /// A job request that cannot run as given (checked at create): names the field.
    #[error("{0}")]
    Invalid(String),
    /// Training failed (bad hyperparameter, bad data, diverged, cancelled).
    #[error(transparent)]
    Train(#[from] pier_algorithms::builtin::TrainError),
    /// A channel could not be read: names the channel, the object and the line or record.
    #[error("channel {channel}: {reason}")]
    Channel {
        /// `train`, `validation`, …
        channel: String,
        /// What is wrong, naming the object and line.
        reason: String,
    },
    /// A channel's spec is refused (checked at create): names the field.
    #[error(transparent)]
    ChannelSpec(#[from] crate::channels::ChannelSpecError),
    /// A channel could not be read ([`crate::channels::read_channel`]): names the channel, the
    /// object and the line or record.
    #[error(transparent)]
    ChannelRead(#[from] crate::channels::ChannelError),
    /// The model could not be written to the output path, or a `ModelDataUrl` fetched.
    #[error("output: {0}")]
    Output(#[from] crate::output::OutputError),
    /// The model store refused the artifact.
    #[error(transparent)]
    Store(#[from] pier_model_store::StoreError),
    /// The trained artifact does not load back.
    #[error(transparent)]
    Runtime(#[from] pier_runtimes::RuntimeError),
    /// The job database failed.
    #[error(transparent)]
    Db(#[from] pier_db::DbError),
    /// A script job failed (the script's own reason, or why it could not run): the message
    /// is its `FailureReason`.
    #[error("{0}")]
    Script(String),
    /// The training thread pool could not be built.
    #[error("cannot start the training pool: {0}")]
    Pool(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = JobsError> = std::result::Result<T, E>;
