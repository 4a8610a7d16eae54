//! The agent's tools: shell commands, file patches and the plan, with approvals and a sandbox.

pub mod patch;
pub mod safety;
