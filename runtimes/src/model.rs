//! The `Model` trait every backend implements.

use std::fmt::Debug;

use crate::error::Result;
use crate::signature::Signature;
use crate::tensor::Tensor;

/// How a model's outputs are laid out in a JSON or JSON Lines response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonLayout {
    /// Top-level key holding one entry per row (`predictions`; PCA uses `projections`).
    pub key: &'static str,
    /// Each row as an object keyed by output name, even with a single output (SageMaker's
    /// built-in algorithms do this). When false, a single output's row is given bare.
    pub always_objects: bool,
}

impl Default for JsonLayout {
    fn default() -> Self {
        Self {
            key: "predictions",
            always_objects: false,
        }
    }
}

/// A loaded model version, ready to predict.
///
/// Implementations are immutable after load and safe to call from many threads at once
/// (`&self`); any per-call scratch state is created inside `predict` or pooled internally.
/// `predict` blocks: call it from a compute thread, never from an async task.
pub trait Model: Send + Sync + Debug {
    /// Inputs and outputs.
    fn signature(&self) -> &Signature;

    /// Runs the model. `inputs` are in signature order and have passed
    /// [`Signature::check_inputs`]; outputs come back in signature order, one row per input
    /// row.
    fn predict(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>>;

    /// Backend name for logs and metrics (`tract`, `ort`, `native`).
    fn backend(&self) -> &'static str;

    /// True when the model takes missing values (NaN) in its float inputs: tree ensembles,
    /// which route them down a default branch. Decided at load; see [`crate::values`].
    fn accepts_missing(&self) -> bool {
        false
    }

    /// How JSON responses are laid out.
    fn json_layout(&self) -> JsonLayout {
        JsonLayout::default()
    }
}
