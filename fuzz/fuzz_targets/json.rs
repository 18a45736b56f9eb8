//! Fuzz target `json`: see `pier_fuzz_targets::json`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::json(data));
