//! The recorded Responses API transcripts in `tests/fixtures/`, and places on disk tests need.

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

/// A fresh directory where the `workspaceWrite` sandbox must refuse writes: outside the temp
/// dir (which that mode allows, and where test workspaces live). The checkout itself may be
/// under the temp dir, so other places are tried after it.
pub fn outside_temp_dir() -> tempfile::TempDir {
    let temp = std::env::temp_dir();
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        PathBuf::from("/var/tmp"),
        PathBuf::from(std::env::var("HOME").unwrap_or_default()),
    ];
    let base = candidates
        .into_iter()
        .find(|c| c.is_absolute() && c.is_dir() && !c.starts_with(&temp))
        .unwrap_or_else(|| {
            panic!(
                "no writable directory outside the temp dir {}",
                temp.display()
            )
        });
    tempfile::tempdir_in(&base)
        .unwrap_or_else(|e| panic!("cannot make a directory in {}: {e}", base.display()))
}
