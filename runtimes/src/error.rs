//! The one error type of the runtimes crate, with kinds a server can match on to choose a
//! status (bad input → 4xx, model failure → 424, load failure → reported at deploy).

use crate::codec::CodecError;

/// Everything a runtime can report.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The artifact could not be read from the store.
    #[error(transparent)]
    Store(#[from] pier_model_store::StoreError),
    /// The manifest names a runtime this build does not have.
    #[error("unsupported runtime {0:?}; this build serves: {supported}", supported = crate::loader::SUPPORTED_RUNTIMES.join(", "))]
    UnsupportedRuntime(String),
    /// The model uses operators the backend cannot run; reported at load, never at predict.
    #[error("model {model} uses operators {backend} does not support: {}", operators.join(", "))]
    UnsupportedOperator {
        /// Model name and version.
        model: String,
        /// Backend name.
        backend: &'static str,
        /// The operators, named as in the model file.
        operators: Vec<String>,
    },
    /// Any other failure to load a model.
    #[error("cannot load model {model}: {message}")]
    Load {
        /// Model name and version.
        model: String,
        /// What went wrong.
        message: String,
    },
    /// The backend asked for cannot run here (feature not built, library not found,
    /// device absent).
    #[error("backend {backend} is unavailable: {reason}")]
    BackendUnavailable {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// Inputs that do not fit the model's signature.
    #[error("{0}")]
    InvalidInput(String),
    /// A request body that could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The model failed while predicting valid inputs.
    #[error("model failed: {0}")]
    Predict(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
