//! Fuzz target `grpc_model_infer`: see `pier_fuzz_targets::grpc_model_infer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::grpc_model_infer(data));
