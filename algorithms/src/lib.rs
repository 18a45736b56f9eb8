//! Pier's native algorithms: readers and fast predictors for users' XGBoost and LightGBM
//! models, and the built-in algorithms Pier trains (fit and predict side by side).
//!
//! Nothing here knows about HTTP, the model store or tensors: inputs are dense row-major
//! `f32` feature matrices with NaN for missing values.

pub mod builtin;
pub mod trees;
