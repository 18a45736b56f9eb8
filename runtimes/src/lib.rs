//! Pier's runtimes: the [`Tensor`] type, model [`Signature`]s, the [`Model`] trait, the
//! backends that implement it (tract for ONNX; [`native`] for XGBoost / LightGBM tree
//! ensembles and the built-in algorithms), the [`loader`] that turns a stored artifact into a
//! model, the content-type [`codec`]s and the one missing / non-finite [`values`] policy.
//!
//! Concurrency: a loaded model is immutable and shared as `Arc<dyn Model>`; `predict` takes
//! `&self`, blocks, and is called from compute threads, never from async tasks. This crate
//! knows nothing of HTTP or protobuf.

pub mod codec;
mod error;
pub mod loader;
mod model;
pub mod native;
pub mod onnx;
pub mod pipeline;
mod signature;
mod tensor;
pub mod values;

pub use error::{Result, RuntimeError};
pub use loader::{Backend, Device, LoadOptions, load};
pub use model::{JsonLayout, Model};
pub use signature::{Signature, TensorSpec};
pub use tensor::{DataType, Tensor, TensorData};
