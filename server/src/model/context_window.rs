//! The context windows of the models the server knows, for auto-compaction.

/// Known model families and their context windows in tokens, longest prefix first where
/// prefixes overlap. A model not listed has no known window (no auto-compaction unless
/// `model_auto_compact_token_limit` is set).
const KNOWN: &[(&str, u64)] = &[
    ("gpt-5.2-codex", 272_000),
    ("gpt-5.1-codex", 272_000),
    ("gpt-5-codex", 272_000),
    ("codex-", 272_000),
    ("gpt-5", 272_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("o4-mini", 200_000),
    ("o3", 200_000),
];

/// The context window of `model` in tokens, when known.
pub fn context_window(model: &str) -> Option<u64> {
    KNOWN
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map(|(_, window)| *window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_families_have_windows_and_others_none() {
        assert_eq!(context_window("gpt-5-codex"), Some(272_000));
        assert_eq!(context_window("gpt-5.1-codex-max"), Some(272_000));
        assert_eq!(context_window("gpt-4o-mini"), Some(128_000));
        assert_eq!(context_window("llama3"), None);
    }
}
