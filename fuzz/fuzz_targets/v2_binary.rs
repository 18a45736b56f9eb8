//! Fuzz target `v2_binary`: see `pier_fuzz_targets::v2_binary`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::v2_binary(data));
