//! Fuzz target `token_form`: see `floe_shared::fuzzing::token_form` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_shared::fuzzing::token_form(data));
