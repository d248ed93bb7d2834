//! Fuzz target `path_segment`: see `floe_shared::fuzzing::path_segment` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_shared::fuzzing::path_segment(data));
