//! session (placeholder until its issue lands).
