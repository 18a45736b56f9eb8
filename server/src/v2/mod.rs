//! The Open Inference Protocol v2 facades: REST on the data-plane port (`rest`) and gRPC
//! `inference.GRPCInferenceService` ([`grpc`]). Both parse and encode; inference goes
//! through the invocation core (`crate::serving::invoke`), metadata, readiness,
//! statistics and the repository operations through `resolve`, all over the
//! [`DataPlane`](crate::state::DataPlane) (the serving snapshot; never the database).
//!
//! Naming. `{m}` is first an endpoint in service: weighted variant routing applies, and its
//! versions are its variants in config order (`1`, `2`, … — numeric, as Triton's tools
//! require; a variant name is accepted too), so `/versions/2` pins the second variant the
//! way `X-Amzn-SageMaker-Target-Variant` does. Otherwise `{m}` is a control-plane Model: its
//! versions are the store versions of its artifact, the default being the version the Model
//! pins. A Model that no endpoint serves is loaded (and warmed) on first use or by
//! RepositoryModelLoad and stays loaded until RepositoryModelUnload; until then it reports
//! not ready.

pub mod grpc;
pub(crate) mod model_config;
mod resolve;
pub(crate) mod rest;
pub mod tensors;

use pier_runtimes::Signature;

pub use crate::serving::{ModelStats, NamedTensor};
pub use resolve::Described;

/// Name under which the server reports itself.
pub const SERVER_NAME: &str = "pier";

/// Protocol extensions Pier implements.
pub const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
    "parameters",
];

/// True when every input and output leads with an open (batch) dimension.
pub fn batched(signature: &Signature) -> bool {
    signature
        .inputs
        .iter()
        .chain(&signature.outputs)
        .all(|t| t.shape.first().is_some_and(|&d| d < 0))
}
