//! The recorded Responses API transcripts in `tests/fixtures/`.

use std::path::PathBuf;

/// The directory holding the transcripts.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The text of a fixture, e.g. `fixture("text_answer.sse")`.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}
