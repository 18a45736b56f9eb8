//! The one error type of the built-in algorithms: every failure of parsing hyperparameters,
//! reading a channel, training, loading an artifact or predicting is a [`TrainError`] whose
//! variant can be matched and whose message names the offending hyperparameter, line/column
//! or artifact field.

use thiserror::Error;

/// Everything that can go wrong in `builtin`.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TrainError {
    /// A hyperparameter this algorithm does not know.
    #[error("unknown hyperparameter `{name}` for {algorithm}")]
    UnknownHyperparameter {
        /// The SageMaker image name of the algorithm.
        algorithm: &'static str,
        /// The hyperparameter as given.
        name: String,
    },
    /// A required hyperparameter is absent.
    #[error("missing required hyperparameter `{name}`")]
    MissingHyperparameter {
        /// The hyperparameter's SageMaker name.
        name: &'static str,
    },
    /// A hyperparameter value that does not parse or is out of range.
    #[error("bad value {value:?} for hyperparameter `{name}`: {reason}")]
    BadHyperparameter {
        /// The hyperparameter's SageMaker name.
        name: String,
        /// The value as given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// An image name that is not one of the built-in algorithms.
    #[error("unknown built-in algorithm `{0}`")]
    UnknownAlgorithm(String),
    /// A malformed CSV record (1-based line and column).
    #[error("CSV line {line}, column {column}: {reason}")]
    Csv {
        /// 1-based line number.
        line: usize,
        /// 1-based column number (0 when the whole line is at fault).
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// Training data that cannot be used (empty, wrong width, bad labels).
    #[error("invalid data in channel `{channel}`: {reason}")]
    Data {
        /// `train` or `validation`.
        channel: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Training was cancelled (its cancel flag was set); nothing was produced.
    #[error("training was cancelled")]
    Cancelled,
    /// Training diverged or produced non-finite values.
    #[error("training failed: {0}")]
    Diverged(String),
    /// An artifact that is not of the expected format or version, or is malformed.
    #[error("bad artifact: {0}")]
    Artifact(String),
    /// Input rows of the wrong shape at prediction time.
    #[error("bad input: {0}")]
    Input(String),
}

/// Shorthand for results in `builtin`.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// A [`TrainError::BadHyperparameter`] for `name`.
    pub(crate) fn bad(name: &str, value: &str, reason: impl Into<String>) -> Self {
        TrainError::BadHyperparameter {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`TrainError::Data`] for `channel`.
    pub(crate) fn data(channel: &'static str, reason: impl Into<String>) -> Self {
        TrainError::Data {
            channel,
            reason: reason.into(),
        }
    }
}
