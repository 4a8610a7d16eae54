//! Wire types of the agent-server protocol: only the schema.
