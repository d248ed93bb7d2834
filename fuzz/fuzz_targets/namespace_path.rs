//! Fuzz target `namespace_path`: see `floe_origin::fuzzing::namespace_path` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_origin::fuzzing::namespace_path(data));
