//! The one error type of the tree readers and predictor.
//!
//! Every failure is a matchable kind that names what was wrong and where: a model file
//! that is cut short or malformed, an objective Pier does not know, a model feature Pier
//! does not serve, or an input whose shape does not match the model. Nothing in this module
//! panics on bad input; the readers turn every malformed byte into one of these.

use thiserror::Error;

/// Errors from loading a tree-ensemble model or predicting with one.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum TreeError {
    /// The file ended before the structure it was reading was complete.
    #[error("model file is truncated: {what} (at byte {offset})")]
    Truncated {
        /// What was being read when the input ran out.
        what: String,
        /// Byte offset where the input ran out (the input's length).
        offset: usize,
    },
    /// The file is not a well-formed model of the expected format.
    #[error("invalid model file at {location}: {reason}")]
    Invalid {
        /// Where in the file: a byte offset, a line, or a JSON path such as
        /// `learner.gradient_booster.model.trees[3].left_children`.
        location: String,
        /// What is wrong there.
        reason: String,
    },
    /// The model's objective is not one Pier knows how to turn into outputs.
    #[error("unknown objective `{0}`")]
    UnknownObjective(String),
    /// The model uses a feature of the format that Pier does not serve.
    #[error("unsupported model feature: {0}")]
    Unsupported(String),
    /// The input rows do not have the number of features the model was trained on.
    #[error("wrong feature count: the model expects {expected} features per row, got {got}")]
    WrongFeatureCount {
        /// Features per row the model was trained on.
        expected: usize,
        /// Features per row the caller gave.
        got: usize,
    },
    /// The input buffer length does not equal `n_rows * n_features`.
    #[error("input has {got} values, expected {n_rows} rows x {n_features} features")]
    WrongInputLength {
        /// Rows the caller said the buffer holds.
        n_rows: usize,
        /// Features per row the caller said.
        n_features: usize,
        /// Values actually in the buffer.
        got: usize,
    },
    /// The output buffer given to `predict_into` has the wrong length.
    #[error("output buffer has {got} values, expected {expected}")]
    WrongOutputLength {
        /// `n_rows * num_outputs()`.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
}

impl TreeError {
    /// Shorthand for [`TreeError::Invalid`].
    pub(crate) fn invalid(location: impl Into<String>, reason: impl Into<String>) -> Self {
        TreeError::Invalid {
            location: location.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = TreeError> = std::result::Result<T, E>;
