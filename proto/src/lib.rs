//! The Open Inference Protocol v2 gRPC service, `inference.GRPCInferenceService`, with the
//! Triton extensions that tritonclient and perf_analyzer call (model config, statistics,
//! repository index/load/unload).
//!
//! [`inference`] is generated at build time from `proto/inference.proto` (prost messages, a
//! tonic server trait and a tonic client). This crate holds wire types only: converting them
//! to Pier's tensors is the server's job, in one module. [`codec`] is the generated code's
//! gRPC codec: tonic-prost's, with malformed messages answered `INVALID_ARGUMENT`.
//! Generated code has no shared state; the server decides its concurrency.

pub mod codec;

/// Messages, the `grpc_inference_service_server` trait and the `grpc_inference_service_client`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod inference {
    tonic::include_proto!("inference");
}
