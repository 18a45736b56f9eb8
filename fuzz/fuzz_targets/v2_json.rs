//! Fuzz target `v2_json`: see `pier_fuzz_targets::v2_json`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::v2_json(data));
