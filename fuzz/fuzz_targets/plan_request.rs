//! Fuzz target `plan_request`: see `floe_origin::fuzzing::plan_request` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_origin::fuzzing::plan_request(data));
