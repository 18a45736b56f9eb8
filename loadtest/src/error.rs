//! The crate's one error type. Failures of single requests are not errors of the run: they are
//! counted by kind ([`crate::ErrorKind`]) in the report.

use std::path::PathBuf;

/// Why a load test could not be set up or its report not written or read.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// A setting or a combination of settings makes no sense.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// The payload (a file, or the model metadata it was generated from) is unusable.
    #[error("payload: {0}")]
    Payload(String),
    /// Model metadata could not be fetched from the target.
    #[error("model metadata from {url}: {message}")]
    Metadata {
        /// Where it was asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A report file is not a load-test report.
    #[error("{}: not a load-test report: {source}", path.display())]
    Report {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = LoadtestError> = std::result::Result<T, E>;

pub(crate) fn invalid(msg: impl Into<String>) -> LoadtestError {
    LoadtestError::InvalidConfig(msg.into())
}
