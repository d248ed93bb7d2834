//! Fuzz target `commit_request`: see `floe_origin::fuzzing::commit_request` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_origin::fuzzing::commit_request(data));
