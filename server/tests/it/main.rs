//! pier-server's integration tests, one binary: each module is a former test file, and
//! `common` (a real server on 127.0.0.1:0 with small clients) plus the S3 helpers
//! (`s3`, an `s3s-fs` server over a temporary folder) are shared.
//! One binary links once, where thirty linked the whole server thirty times over.
//! `metrics_v2` stays a binary of its own: it counts the process-wide metrics recorder.

mod common;
#[path = "../../../jobs/tests/common/mod.rs"]
mod s3;

mod auth;
mod bad_input;
mod batching;
mod capture_shadow;
mod hardening_import;
mod hardening_input;
mod hardening_serving;
mod hot_swap;
mod instances;
mod invocation_core;
mod lifecycle;
mod listener_limits;
mod model_dir;
mod model_repository;
mod multi_model;
mod native_models;
mod pipelines;
mod routing;
mod script_jobs;
mod store_s3;
mod tls;
mod training_jobs;
mod training_s3;
mod transform_jobs;
mod transform_s3;
mod tuning_jobs;
mod v2_grpc;
mod v2_rest;
mod v2_tensor_props;
