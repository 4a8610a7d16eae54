//! Writes the JSON Schema bundle: `cargo run -p agent-server-schema --example export -- schema/json`.

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "schema/json".to_string());
    agent_server_schema::export::write(std::path::Path::new(&dir))
}
