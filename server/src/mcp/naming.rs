//! The names the model sees: `mcp__<server>__<tool>`, within the Responses API's rules for
//! function names (`[A-Za-z0-9_-]`, at most 64 characters), and never shared by two tools.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// The longest function name the model API accepts.
pub const MAX_NAME_LEN: usize = 64;
/// Hex digits of the hash suffix that makes a cut or clashing name unique.
const HASH_LEN: usize = 8;

/// Qualified names for `(server, tool)` pairs, in the same order. Characters outside
/// `[A-Za-z0-9_-]` become `_`; a name longer than [`MAX_NAME_LEN`] is cut and ends in `_` and a
/// hash of the pair; names that would clash (after replacing characters) get the hash too.
pub fn qualified_names(pairs: &[(&str, &str)]) -> Vec<String> {
    let plain: Vec<String> = pairs
        .iter()
        .map(|(server, tool)| sanitize(&format!("mcp__{server}__{tool}")))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &plain {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let mut names: Vec<String> = plain
        .iter()
        .zip(pairs)
        .map(|(name, (server, tool))| {
            if name.len() <= MAX_NAME_LEN && counts[name.as_str()] == 1 {
                name.clone()
            } else {
                with_hash(name, server, tool)
            }
        })
        .collect();
    // A plain name could still equal another pair's hashed one, or two hashes collide: number
    // the later ones.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for name in &mut names {
        let n = seen.entry(name.clone()).or_default();
        *n += 1;
        if *n > 1 {
            let suffix = format!("_{n}");
            let keep = name.len().min(MAX_NAME_LEN - suffix.len());
            name.truncate(keep);
            name.push_str(&suffix);
        }
    }
    names
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn with_hash(name: &str, server: &str, tool: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(server.as_bytes());
    hasher.update([0]);
    hasher.update(tool.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = name.len().min(MAX_NAME_LEN - HASH_LEN - 1);
    format!("{}_{hex}", &name[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn plain_names_are_kept_and_odd_characters_replaced() {
        assert_eq!(
            qualified_names(&[("everything", "echo"), ("my server", "get.sum")]),
            vec!["mcp__everything__echo", "mcp__my_server__get_sum"]
        );
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_distinct() {
        let long_a = "a".repeat(80);
        let long_b = format!("{}b", "a".repeat(79));
        let names = qualified_names(&[("srv", &long_a), ("srv", &long_b)]);
        assert!(names.iter().all(|n| n.len() == MAX_NAME_LEN), "{names:?}");
        assert_ne!(names[0], names[1]);
        assert!(names[0].starts_with("mcp__srv__aaaa"), "{names:?}");
        // The same pair always gets the same name.
        assert_eq!(
            names,
            qualified_names(&[("srv", &long_a), ("srv", &long_b)])
        );
    }

    #[test]
    fn tools_that_sanitize_alike_get_distinct_names() {
        let names = qualified_names(&[("s", "a.b"), ("s", "a b"), ("s", "a_b"), ("s__a", "b")]);
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 4, "{names:?}");
        assert!(
            names.iter().all(|n| n.len() <= MAX_NAME_LEN
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
            "{names:?}"
        );
    }
}
