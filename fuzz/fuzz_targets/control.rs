//! Fuzz target `control`: see `pier_fuzz_targets::control`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::control(data));
