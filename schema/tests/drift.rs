//! The committed JSON Schema must equal what the Rust types generate.

use agent_server_schema::export::{BUNDLE_FILE, bundle_text};

#[test]
fn committed_schema_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("json")
        .join(BUNDLE_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = bundle_text();
    assert!(
        committed == generated,
        "{} is out of date with the Rust types: run `scripts/regen-schema` (or `cargo run -p agent-server -- schema --out schema/json`) and commit the result",
        path.display()
    );
}
