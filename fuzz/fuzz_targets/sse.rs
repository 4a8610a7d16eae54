//! Fuzz target: see `agent_server::fuzzing::sse` for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_server::fuzzing::sse(data));
