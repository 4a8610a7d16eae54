//! The `agent-server` binary.
fn main() {}
