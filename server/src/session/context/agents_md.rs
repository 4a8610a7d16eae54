//! Project instructions: finding the `AGENTS.md` files that apply to a working directory and
//! joining them into the message the model reads first.
//!
//! The files are the user's, not the model's, but they are still read defensively: a file that
//! cannot be read, is not UTF-8, looks binary or is huge never fails a turn; it is skipped (or
//! cut) and the log says why.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The file that replaces `AGENTS.md` in its directory (and globally in the home).
pub const OVERRIDE_FILENAME: &str = "AGENTS.override.md";
/// The conventional project instructions file.
pub const DEFAULT_FILENAME: &str = "AGENTS.md";
pub use crate::config::DEFAULT_PROJECT_DOC_MAX_BYTES;
/// The cap on the global file in the home. It is not a project doc, so
/// `project_doc_max_bytes` does not apply to it (0 there must not turn it off), but a huge
/// one must not fill the context either.
pub const GLOBAL_DOC_MAX_BYTES: usize = DEFAULT_PROJECT_DOC_MAX_BYTES;

/// The first line of the instructions message; the model (and our compaction) recognise the
/// message by it.
pub const MESSAGE_PREFIX: &str = "# AGENTS.md instructions for ";

/// Where to look and how much to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSettings {
    /// The home, holding the global `AGENTS.override.md` or `AGENTS.md`.
    pub home: PathBuf,
    /// Total bytes of project docs to read; 0 turns project docs off.
    pub max_bytes: usize,
    /// Names tried after `AGENTS.override.md` and `AGENTS.md` in each directory.
    pub fallback_filenames: Vec<String>,
}

/// The instructions that apply to one cwd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectDocs {
    /// The joined text (global first, then root → cwd); empty when there is none.
    pub text: String,
    /// The files the text came from, in order, as absolute paths.
    pub sources: Vec<PathBuf>,
}

impl ProjectDocs {
    /// The user message carrying the instructions, or `None` when there are none.
    pub fn message_text(&self, cwd: &Path) -> Option<String> {
        if self.text.is_empty() {
            return None;
        }
        Some(format!(
            "{MESSAGE_PREFIX}{}\n\n<INSTRUCTIONS>\n{}\n</INSTRUCTIONS>",
            cwd.display(),
            self.text
        ))
    }
}

/// Reads the global file and the project docs for `cwd` (an absolute directory).
pub fn discover(settings: &DocSettings, cwd: &Path) -> ProjectDocs {
    let mut docs = ProjectDocs::default();
    let mut parts: Vec<String> = Vec::new();
    let global = first_existing(&settings.home, &[OVERRIDE_FILENAME, DEFAULT_FILENAME]);
    if let Some(path) = global
        && let Some(text) = read_doc(&path, GLOBAL_DOC_MAX_BYTES)
    {
        parts.push(text.trim_end().to_string());
        docs.sources.push(path);
    }
    if settings.max_bytes > 0 {
        let mut budget = settings.max_bytes;
        let mut names: Vec<&str> = vec![OVERRIDE_FILENAME, DEFAULT_FILENAME];
        names.extend(settings.fallback_filenames.iter().map(String::as_str));
        for dir in search_dirs(cwd) {
            if budget == 0 {
                tracing::info!(dir = %dir.display(), "project docs budget used up; later AGENTS.md files are not read");
                break;
            }
            let Some(path) = first_existing(&dir, &names) else {
                continue;
            };
            if let Some(text) = read_doc(&path, budget) {
                budget = budget.saturating_sub(text.len());
                parts.push(text.trim_end().to_string());
                docs.sources.push(path);
            }
        }
    }
    docs.text = parts.join("\n\n");
    docs
}

/// The directories whose docs apply to `cwd`: from the repository root (the nearest ancestor
/// holding `.git`) down to `cwd`; only `cwd` when no ancestor is a repository.
///
/// The walk is over the path's own components, never following links upwards, so a symlink
/// loop above the cwd cannot make it run forever; a `.git` that is such a loop counts as absent.
pub fn search_dirs(cwd: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for dir in cwd.ancestors() {
        dirs.push(dir.to_path_buf());
        if is_repo_root(dir) {
            dirs.reverse();
            return dirs;
        }
    }
    vec![cwd.to_path_buf()]
}

fn is_repo_root(dir: &Path) -> bool {
    match std::fs::metadata(dir.join(".git")) {
        Ok(meta) => meta.is_dir() || meta.is_file(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), %err, "cannot check for .git; not treating it as the repository root");
            false
        }
    }
}

/// The first of `names` that exists in `dir` (following links); an entry that exists but is
/// not a file, or cannot be examined (a link loop, no permission), is logged and passed over.
fn first_existing(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    for name in names {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => return Some(path),
            Ok(_) => tracing::warn!(path = %path.display(), "not a regular file; ignoring it"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot examine it; ignoring it")
            }
        }
    }
    None
}

/// Reads at most `max` bytes of a doc. `None` (logged) when it cannot be used: unreadable,
/// binary (a NUL byte), not UTF-8, or blank. A longer file is cut at a character boundary.
pub fn read_doc(path: &Path, max: usize) -> Option<String> {
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file of exactly `max` bytes from a longer one.
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let read = File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes));
    if let Err(err) = read {
        tracing::warn!(path = %path.display(), %err, "cannot read project instructions; skipping them");
        return None;
    }
    let cut = bytes.len() > max;
    bytes.truncate(max);
    if memchr::memchr(0, &bytes).is_some() {
        tracing::warn!(path = %path.display(), "project instructions look binary (a NUL byte); skipping them");
        return None;
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        // The cut may have split the last character: keep what is whole.
        Err(err) if cut && err.utf8_error().error_len().is_none() => {
            let valid = err.utf8_error().valid_up_to();
            let mut bytes = err.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
        Err(_) => {
            tracing::warn!(path = %path.display(), "project instructions are not UTF-8; skipping them");
            return None;
        }
    };
    if cut {
        tracing::info!(path = %path.display(), max, "project instructions cut to the byte budget");
    }
    if text.trim().is_empty() {
        return None;
    }
    Some(text)
}

#[cfg(test)]
#[path = "agents_md_tests.rs"]
mod tests;
