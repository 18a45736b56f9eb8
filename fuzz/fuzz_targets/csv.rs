//! Fuzz target `csv`: see `pier_fuzz_targets::csv`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pier_fuzz_targets::csv(data));
