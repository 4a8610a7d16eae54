//! Applying a parsed patch: every new content is computed in memory first, then written all or
//! nothing.
//!
//! Hunks are found leniently, as the common implementations do: the lines must match exactly,
//! else ignoring trailing whitespace, else ignoring surrounding whitespace. Each hunk is looked
//! for after the previous one (and after its `@@` context line when it has one). Files are
//! written atomically (temp file in the same directory, fsync, rename) and keep their
//! permissions; if a write fails, everything written before it is restored.

use std::collections::HashMap;
use std::fs::Permissions;
use std::path::{Component, Path, PathBuf};

use similar::TextDiff;

use super::nofollow::{self, real_path};
use super::parser::{Chunk, HunkLine, Patch, PatchOp};

/// What a patch does to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The file is created (or replaced by an `Add File`).
    Add,
    /// The file is deleted.
    Delete,
    /// The file is changed in place or moved.
    Update,
}

/// One file operation of a patch, ready for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    /// Absolute path of the file; for a move, the destination.
    pub path: PathBuf,
    /// The file the change reads from, when it differs from `path` (a move).
    pub moved_from: Option<PathBuf>,
    /// What happens to the file.
    pub kind: ChangeKind,
    /// Unified diff (`--- a/old`, `+++ b/new`; `/dev/null` for an added or deleted side).
    pub diff: String,
}

/// A patch whose every effect is known, not yet written.
#[derive(Debug)]
pub struct Plan {
    /// One entry per file operation, in patch order.
    pub changes: Vec<PlannedChange>,
    /// Final state of every touched path, in first-touch order.
    finals: Vec<(PathBuf, Content)>,
    /// State of every touched path before the patch.
    originals: HashMap<PathBuf, Option<Original>>,
}

/// A file as it was before the patch, kept to restore it.
#[derive(Debug, Clone)]
struct Original {
    bytes: Vec<u8>,
    permissions: Permissions,
}

/// Why a patch could not be applied. Nothing on disk has changed when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A file to update, move or delete does not exist.
    #[error("{path} does not exist; check the path, or use `*** Add File:` to create it")]
    Missing {
        /// The file.
        path: String,
    },
    /// A file to update is not UTF-8 text.
    #[error("{path} is not UTF-8 text and cannot be patched; rewrite it with a command instead")]
    NotText {
        /// The file.
        path: String,
    },
    /// A hunk's lines were not found in the file.
    #[error(
        "could not find these lines in {path}:\n{lines}\nRead the file again and make the \
         hunk's context and '-' lines match it"
    )]
    ContextNotFound {
        /// The file.
        path: String,
        /// The lines looked for, one per line.
        lines: String,
    },
    /// Reading a file failed.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error from the OS.
        source: std::io::Error,
    },
    /// At write time a path is no longer inside what may be written.
    #[error(
        "{path} is outside what may be written now (a directory on the way changed after the \
         patch was checked); no file was changed"
    )]
    OutsideBounds {
        /// The file.
        path: String,
    },
    /// Writing a file failed; what had been written was restored.
    #[error("could not write {path}: {source}; no file was changed")]
    Write {
        /// The file.
        path: String,
        /// The error from the OS.
        source: std::io::Error,
    },
    /// Writing a file failed and restoring an earlier write failed too.
    #[error(
        "could not write {path}: {source}; restoring the files written before it failed too \
         ({restore_errors}), check them by hand"
    )]
    RestoreFailed {
        /// The file whose write failed.
        path: String,
        /// The error from the OS.
        source: std::io::Error,
        /// What could not be restored, and why.
        restore_errors: String,
    },
}

/// Resolves a patch path against `cwd` (absolute paths stay) and removes `.`/`..` lexically.
pub fn resolve(cwd: &Path, path: &str) -> PathBuf {
    let joined = cwd.join(path);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Computes the effect of every operation without writing anything. Paths are resolved
/// against `cwd`; diff headers show them relative to `shown_from` when under it.
pub fn plan(patch: &Patch, cwd: &Path, shown_from: &Path) -> Result<Plan, ApplyError> {
    let mut state = State {
        cwd,
        shown_from,
        current: HashMap::new(),
        originals: HashMap::new(),
        order: Vec::new(),
    };
    let mut changes = Vec::new();
    for op in &patch.ops {
        changes.push(state.apply_op(op)?);
    }
    let finals = state
        .order
        .iter()
        .map(|path| {
            let content = state.current.get(path).cloned().unwrap_or(Content::Absent);
            (path.clone(), content)
        })
        .collect();
    Ok(Plan {
        changes,
        finals,
        originals: state.originals,
    })
}

/// What a path holds at some point of the patch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    /// No file.
    Absent,
    /// A UTF-8 file.
    Text(String),
    /// A file that is not UTF-8: it can be deleted or replaced, not patched.
    Binary,
}

/// A view of the files as the patch goes: what each touched path holds so far.
struct State<'a> {
    cwd: &'a Path,
    shown_from: &'a Path,
    current: HashMap<PathBuf, Content>,
    originals: HashMap<PathBuf, Option<Original>>,
    order: Vec<PathBuf>,
}

impl State<'_> {
    /// Resolves a path of the patch to its real path: every symlink in the existing part is
    /// resolved, so what is checked, shown and written is where the change really goes.
    fn resolve(&self, path: &str) -> PathBuf {
        real_path(&resolve(self.cwd, path))
    }

    fn get(&mut self, path: &Path) -> Result<Content, ApplyError> {
        if let Some(content) = self.current.get(path) {
            return Ok(content.clone());
        }
        let original = nofollow::read(path)
            .map_err(|source| ApplyError::Read {
                path: path.display().to_string(),
                source,
            })?
            .map(|(bytes, permissions)| Original { bytes, permissions });
        let content = match &original {
            None => Content::Absent,
            Some(o) => match std::str::from_utf8(&o.bytes) {
                Ok(text) => Content::Text(text.to_owned()),
                Err(_) => Content::Binary,
            },
        };
        self.current.insert(path.to_path_buf(), content.clone());
        self.originals.insert(path.to_path_buf(), original);
        self.order.push(path.to_path_buf());
        Ok(content)
    }

    fn set(&mut self, path: &Path, content: Content) {
        self.current.insert(path.to_path_buf(), content);
    }

    fn display(&self, path: &Path) -> String {
        match path.strip_prefix(self.shown_from) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    fn apply_op(&mut self, op: &PatchOp) -> Result<PlannedChange, ApplyError> {
        match op {
            PatchOp::Add { path, contents } => self.add(path, contents),
            PatchOp::Delete { path } => self.delete(path),
            PatchOp::Update {
                path,
                move_to,
                chunks,
            } => self.update(path, move_to.as_deref(), chunks),
        }
    }

    fn add(&mut self, path: &str, contents: &str) -> Result<PlannedChange, ApplyError> {
        let path = self.resolve(path);
        let shown = self.display(&path);
        let diff = match self.get(&path)? {
            Content::Text(old) => {
                unified(&old, contents, &format!("a/{shown}"), &format!("b/{shown}"))
            }
            Content::Absent | Content::Binary => {
                unified("", contents, "/dev/null", &format!("b/{shown}"))
            }
        };
        self.set(&path, Content::Text(contents.to_owned()));
        Ok(PlannedChange {
            path,
            moved_from: None,
            kind: ChangeKind::Add,
            diff,
        })
    }

    fn delete(&mut self, path: &str) -> Result<PlannedChange, ApplyError> {
        let path = self.resolve(path);
        let shown = self.display(&path);
        let diff = match self.get(&path)? {
            Content::Absent => {
                return Err(ApplyError::Missing {
                    path: path.display().to_string(),
                });
            }
            Content::Binary => format!("--- a/{shown}\n+++ /dev/null\nBinary file deleted\n"),
            Content::Text(old) => unified(&old, "", &format!("a/{shown}"), "/dev/null"),
        };
        self.set(&path, Content::Absent);
        Ok(PlannedChange {
            path,
            moved_from: None,
            kind: ChangeKind::Delete,
            diff,
        })
    }

    fn update(
        &mut self,
        path: &str,
        move_to: Option<&str>,
        chunks: &[Chunk],
    ) -> Result<PlannedChange, ApplyError> {
        let source = self.resolve(path);
        let before = match self.get(&source)? {
            Content::Text(text) => text,
            Content::Absent => {
                return Err(ApplyError::Missing {
                    path: source.display().to_string(),
                });
            }
            Content::Binary => {
                return Err(ApplyError::NotText {
                    path: source.display().to_string(),
                });
            }
        };
        let after = apply_chunks(&before, chunks, &source)?;
        let target = match move_to {
            Some(to) => self.resolve(to),
            None => source.clone(),
        };
        let diff = unified(
            &before,
            &after,
            &format!("a/{}", self.display(&source)),
            &format!("b/{}", self.display(&target)),
        );
        if target != source {
            self.get(&target)?;
            self.set(&source, Content::Absent);
        }
        self.set(&target, Content::Text(after));
        Ok(PlannedChange {
            moved_from: (target != source).then_some(source),
            path: target,
            kind: ChangeKind::Update,
            diff,
        })
    }
}

fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

/// Where a hunk applies: start line, lines replaced, the new lines and their endings.
type Replacement = (usize, usize, Vec<String>, Vec<Option<&'static str>>);

/// Applies the hunks to `text`, keeping each line's own ending (`\n` or `\r\n`): lines the
/// patch adds, and a last line that had none, take the file's dominant ending.
fn apply_chunks(text: &str, chunks: &[Chunk], path: &Path) -> Result<String, ApplyError> {
    let (mut lines, mut endings) = split_lines(text);
    let newline = dominant_ending(&endings);

    let mut replacements: Vec<Replacement> = Vec::new();
    let mut cursor = 0;
    for chunk in chunks {
        let (at, hunk, next) = locate(&lines, chunk, cursor, path)?;
        let len = old_len(hunk);
        replacements.push((
            at,
            len,
            replacement(hunk, &lines[at..at + len]),
            replacement_endings(hunk, &endings[at..at + len], newline),
        ));
        cursor = next;
    }

    // Later replacements first, so earlier indices stay valid.
    replacements.sort_by_key(|(at, _, _, _)| *at);
    for (at, len, new, new_endings) in replacements.into_iter().rev() {
        lines.splice(at..at + len, new);
        endings.splice(at..at + len, new_endings);
    }
    let mut out = String::with_capacity(text.len());
    for (line, ending) in lines.iter().zip(&endings) {
        out.push_str(line);
        out.push_str(ending.unwrap_or(newline));
    }
    Ok(out)
}

/// How many lines of the file a hunk replaces (its context and removed lines).
fn old_len(hunk: &[HunkLine]) -> usize {
    hunk.iter()
        .filter(|l| !matches!(l, HunkLine::Add(_)))
        .count()
}

/// Where `chunk` applies, searching from line `cursor` on: the first line it replaces, the
/// hunk lines to apply there (without a trailing empty context line that only stood for the
/// file's final newline), and where the search for the next chunk starts. A pure insertion
/// goes after its `@@` context line when it has one, else at the end of the file.
fn locate<'c>(
    lines: &[String],
    chunk: &'c Chunk,
    mut cursor: usize,
    path: &Path,
) -> Result<(usize, &'c [HunkLine], usize), ApplyError> {
    if let Some(context) = &chunk.context {
        match seek(lines, std::slice::from_ref(context), cursor, false) {
            Some(at) => cursor = at + 1,
            None => {
                return Err(ApplyError::ContextNotFound {
                    path: path.display().to_string(),
                    lines: format!("@@ {context}"),
                });
            }
        }
    }
    let mut hunk: &[HunkLine] = &chunk.lines;
    if old_len(hunk) == 0 {
        let at = if chunk.context.is_some() {
            cursor
        } else {
            lines.len()
        };
        return Ok((at, hunk, cursor));
    }
    let mut found = seek(lines, &expected(hunk), cursor, chunk.end_of_file);
    // A hunk ending in an empty context line often stands for the file's final newline.
    if found.is_none() && hunk.last() == Some(&HunkLine::Context(String::new())) {
        hunk = &hunk[..hunk.len() - 1];
        found = seek(lines, &expected(hunk), cursor, chunk.end_of_file);
    }
    match found {
        Some(at) => Ok((at, hunk, at + old_len(hunk))),
        None => Err(not_found(chunk, path)),
    }
}

/// The error for a hunk whose lines are not in the file: the lines it looked for.
fn not_found(chunk: &Chunk, path: &Path) -> ApplyError {
    let mut shown = String::new();
    if let Some(context) = &chunk.context {
        shown.push_str(&format!("@@ {context}\n"));
    }
    for line in chunk.old_lines() {
        shown.push_str(&line);
        shown.push('\n');
    }
    ApplyError::ContextNotFound {
        path: path.display().to_string(),
        lines: shown.trim_end_matches('\n').to_owned(),
    }
}

/// The lines of `text` without their endings, and each line's ending (`None` for a last line
/// without one).
fn split_lines(text: &str) -> (Vec<String>, Vec<Option<&'static str>>) {
    let mut lines = Vec::new();
    let mut endings = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.split_once('\n') {
            Some((line, tail)) => {
                match line.strip_suffix('\r') {
                    Some(line) => {
                        lines.push(line.to_owned());
                        endings.push(Some("\r\n"));
                    }
                    None => {
                        lines.push(line.to_owned());
                        endings.push(Some("\n"));
                    }
                }
                rest = tail;
            }
            None => {
                lines.push(rest.to_owned());
                endings.push(None);
                rest = "";
            }
        }
    }
    (lines, endings)
}

/// The ending most lines have; a tie goes to the first line's, and a file without any to `\n`.
fn dominant_ending(endings: &[Option<&'static str>]) -> &'static str {
    let crlf = endings.iter().filter(|e| **e == Some("\r\n")).count();
    let lf = endings.iter().filter(|e| **e == Some("\n")).count();
    match crlf.cmp(&lf) {
        std::cmp::Ordering::Greater => "\r\n",
        std::cmp::Ordering::Less => "\n",
        std::cmp::Ordering::Equal => endings.iter().flatten().next().copied().unwrap_or("\n"),
    }
}

/// The endings of the lines `replacement` gives for `hunk`: context lines keep their own
/// ending, added lines take `newline`.
fn replacement_endings(
    hunk: &[HunkLine],
    old_endings: &[Option<&'static str>],
    newline: &'static str,
) -> Vec<Option<&'static str>> {
    let mut out = Vec::new();
    let mut old = old_endings.iter();
    for line in hunk {
        match line {
            HunkLine::Context(_) => out.push(old.next().copied().flatten().or(Some(newline))),
            HunkLine::Remove(_) => {
                old.next();
            }
            HunkLine::Add(_) => out.push(Some(newline)),
        }
    }
    out
}

/// The lines a hunk expects in the file.
fn expected(hunk: &[HunkLine]) -> Vec<String> {
    hunk.iter()
        .filter_map(|l| match l {
            HunkLine::Context(t) | HunkLine::Remove(t) => Some(t.clone()),
            HunkLine::Add(_) => None,
        })
        .collect()
}

/// The lines that replace `matched`: context lines keep the file's own text (which may differ
/// in whitespace from the hunk's, as matching is lenient), added lines come from the hunk.
fn replacement(hunk: &[HunkLine], matched: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut old = matched.iter();
    for line in hunk {
        match line {
            HunkLine::Context(text) => {
                out.push(old.next().cloned().unwrap_or_else(|| text.clone()))
            }
            HunkLine::Remove(_) => {
                old.next();
            }
            HunkLine::Add(text) => out.push(text.clone()),
        }
    }
    out
}

/// Where `pattern` occurs in `lines` at or after `start`: exactly, else ignoring trailing
/// whitespace, else ignoring surrounding whitespace. With `eof`, a match ending the file wins.
fn seek(lines: &[String], pattern: &[String], start: usize, eof: bool) -> Option<usize> {
    if pattern.is_empty() {
        return Some(start);
    }
    if pattern.len() > lines.len() {
        return None;
    }
    let last_start = lines.len() - pattern.len();
    let passes: [fn(&str, &str) -> bool; 3] = [
        |a, b| a == b,
        |a, b| a.trim_end() == b.trim_end(),
        |a, b| a.trim() == b.trim(),
    ];
    for same in passes {
        let matches_at = |i: usize| (0..pattern.len()).all(|j| same(&lines[i + j], &pattern[j]));
        if eof && last_start >= start && matches_at(last_start) {
            return Some(last_start);
        }
        if let Some(i) = (start..=last_start).find(|&i| matches_at(i)) {
            return Some(i);
        }
    }
    None
}

impl Plan {
    /// Writes the planned contents: all files or none. On failure, files written so far are
    /// restored and directories created for them removed.
    ///
    /// `may_write` is asked again for every path right before anything is written (the bounds
    /// are re-checked after any approval wait), and no symlink is followed on the way (see
    /// [`nofollow`]), so a path that was checked cannot be redirected elsewhere meanwhile.
    pub fn commit(&self, may_write: &dyn Fn(&Path) -> bool) -> Result<(), ApplyError> {
        if let Some((path, _)) = self.finals.iter().find(|(path, _)| !may_write(path)) {
            return Err(ApplyError::OutsideBounds {
                path: path.display().to_string(),
            });
        }
        let mut done: Vec<&Path> = Vec::new();
        let mut created_dirs: Vec<PathBuf> = Vec::new();
        for (path, content) in &self.finals {
            let original = self.originals.get(path).and_then(Option::as_ref);
            let result = match (content, original) {
                (Content::Absent, None) | (Content::Binary, _) => continue,
                (Content::Text(c), Some(o)) if c.as_bytes() == o.bytes.as_slice() => continue,
                (Content::Text(c), _) => create_parents(path, &mut created_dirs).and_then(|()| {
                    nofollow::write_atomic(path, c.as_bytes(), original.map(|o| &o.permissions))
                }),
                (Content::Absent, Some(_)) => nofollow::remove_file(path),
            };
            match result {
                Ok(()) => done.push(path),
                Err(source) => {
                    let restore_errors = self.restore(&done, &created_dirs);
                    let path = path.display().to_string();
                    return Err(if restore_errors.is_empty() {
                        ApplyError::Write { path, source }
                    } else {
                        ApplyError::RestoreFailed {
                            path,
                            source,
                            restore_errors: restore_errors.join("; "),
                        }
                    });
                }
            }
        }
        Ok(())
    }

    fn restore(&self, done: &[&Path], created_dirs: &[PathBuf]) -> Vec<String> {
        let mut errors = Vec::new();
        for path in done.iter().rev() {
            let result = match self.originals.get(*path).and_then(Option::as_ref) {
                Some(o) => nofollow::write_atomic(path, &o.bytes, Some(&o.permissions)),
                None => nofollow::remove_file(path),
            };
            if let Err(e) = result {
                errors.push(format!("{}: {e}", path.display()));
            }
        }
        for dir in created_dirs.iter().rev() {
            // Only directories this patch created, deepest first; they are empty again now.
            let _ = nofollow::remove_dir(dir);
        }
        errors
    }
}

/// Creates the missing parent directories of `path`, remembering each one created.
fn create_parents(path: &Path, created: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let mut missing = Vec::new();
    let mut dir = parent;
    while !nofollow::dir_exists(dir) {
        missing.push(dir.to_path_buf());
        match dir.parent() {
            Some(up) => dir = up,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        nofollow::create_dir(&dir)?;
        created.push(dir);
    }
    Ok(())
}
