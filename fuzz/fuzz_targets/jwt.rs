//! Fuzz target `jwt`: see `floe_shared::fuzzing::jwt` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_shared::fuzzing::jwt(data));
