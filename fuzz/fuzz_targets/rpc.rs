//! Fuzz target: see `agent_server::fuzzing::rpc` for what it drives and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agent_server::fuzzing::rpc(data));
