//! Fuzz target: see `agent_server::fuzzing::safety` for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_server::fuzzing::safety(data));
