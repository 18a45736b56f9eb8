//! Fuzz target `json_lines`: see `pier_fuzz_targets::json_lines`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::json_lines(data));
