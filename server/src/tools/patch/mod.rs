//! The `apply_patch` format: parsing the envelope and applying it all or nothing.

mod apply;
pub(crate) mod nofollow;
mod parser;

pub use apply::{ChangeKind, Plan, plan, resolve};
pub use parser::parse;
#[cfg(feature = "fuzzing")]
pub use parser::{HunkLine, Patch, PatchOp};

/// Finds a patch given as a command: `["apply_patch", PATCH]`, `["applypatch", PATCH]`, or a
/// shell script `apply_patch <<'EOF' … EOF` (optionally after `cd DIR &&`) run by `bash -lc`.
/// Returns the patch text and the directory the script changed to, if any.
pub fn from_command(argv: &[String]) -> Option<(String, Option<String>)> {
    match argv {
        [program, patch] if is_apply_patch(program) => Some((patch.clone(), None)),
        [shell, flag, script]
            if crate::tools::safety::is_shell(shell) && (flag == "-c" || flag == "-lc") =>
        {
            from_heredoc(script)
        }
        _ => None,
    }
}

fn is_apply_patch(program: &str) -> bool {
    program == "apply_patch" || program == "applypatch"
}

/// `[cd DIR &&] apply_patch <<'EOF'\n…\nEOF\n`.
fn from_heredoc(script: &str) -> Option<(String, Option<String>)> {
    let script = script.trim_start();
    let (first_line, body) = script.split_once('\n')?;
    let (dir, command) = match first_line.split_once("&&") {
        Some((cd, rest)) => {
            let dir = cd.trim().strip_prefix("cd ")?.trim();
            let dir = dir.trim_matches(|c| c == '\'' || c == '"');
            (Some(dir.to_owned()), rest.trim())
        }
        None => (None, first_line.trim()),
    };
    let (program, redirect) = command.split_once("<<")?;
    if !is_apply_patch(program.trim()) {
        return None;
    }
    let delimiter = redirect
        .trim()
        .trim_start_matches('-')
        .trim()
        .trim_matches(|c| c == '\'' || c == '"');
    if delimiter.is_empty() {
        return None;
    }
    let mut patch = String::new();
    let mut lines = body.lines();
    for line in lines.by_ref() {
        if line == delimiter {
            // Only whitespace may follow the heredoc, or this is a longer script.
            return lines
                .all(|rest| rest.trim().is_empty())
                .then_some((patch, dir));
        }
        patch.push_str(line);
        patch.push('\n');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::apply::PlannedChange;
    use super::*;
    use pretty_assertions::assert_eq;
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;

    /// Every file under `dir` with its bytes, to compare whole trees.
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                if path.is_dir() {
                    files.insert(format!("{rel}/"), Vec::new());
                    stack.push(path);
                } else {
                    files.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
        files
    }

    fn tree(entries: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn run(cwd: &Path, patch: &str) -> Result<Vec<PlannedChange>, String> {
        let parsed = parse(patch).map_err(|e| e.to_string())?;
        let planned = plan(&parsed, cwd, cwd).map_err(|e| e.to_string())?;
        planned.commit(&|_| true).map_err(|e| e.to_string())?;
        Ok(planned.changes)
    }

    #[test]
    fn adds_updates_moves_and_deletes_files() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("keep.txt"), "one\ntwo\nthree\nfour\n").unwrap();
        fs::write(cwd.join("old.txt"), "bye\n").unwrap();
        fs::write(cwd.join("from.txt"), "a\nb\n").unwrap();
        let patch = "*** Begin Patch\n\
                     *** Add File: sub/new.txt\n\
                     +hello\n\
                     *** Update File: keep.txt\n\
                     @@ one\n \
                     two\n\
                     -three\n\
                     +THREE\n\
                     *** Delete File: old.txt\n\
                     *** Update File: from.txt\n\
                     *** Move to: moved/to.txt\n\
                     @@\n \
                     a\n\
                     -b\n\
                     +B\n\
                     *** End Patch";
        let changes = run(cwd, patch).unwrap();
        assert_eq!(
            snapshot(cwd),
            tree(&[
                ("keep.txt", "one\ntwo\nTHREE\nfour\n"),
                ("moved/", ""),
                ("moved/to.txt", "a\nB\n"),
                ("sub/", ""),
                ("sub/new.txt", "hello\n"),
            ])
        );
        assert_eq!(
            changes,
            vec![
                PlannedChange {
                    path: cwd.join("sub/new.txt"),
                    moved_from: None,
                    kind: ChangeKind::Add,
                    diff: "--- /dev/null\n+++ b/sub/new.txt\n@@ -0,0 +1 @@\n+hello\n".into(),
                },
                PlannedChange {
                    path: cwd.join("keep.txt"),
                    moved_from: None,
                    kind: ChangeKind::Update,
                    diff: "--- a/keep.txt\n+++ b/keep.txt\n@@ -1,4 +1,4 @@\n one\n two\n\
                           -three\n+THREE\n four\n"
                        .into(),
                },
                PlannedChange {
                    path: cwd.join("old.txt"),
                    moved_from: None,
                    kind: ChangeKind::Delete,
                    diff: "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n".into(),
                },
                PlannedChange {
                    path: cwd.join("moved/to.txt"),
                    moved_from: Some(cwd.join("from.txt")),
                    kind: ChangeKind::Update,
                    diff: "--- a/from.txt\n+++ b/moved/to.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n"
                        .into(),
                },
            ]
        );
    }

    #[test]
    fn matches_hunks_leniently_and_keeps_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("a.txt"), "  fn x() {   \r\n    body\r\n}\r\n").unwrap();
        let patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n fn x() {\n-body\n+new body\n \
                     }\n*** End of File\n*** End Patch";
        run(cwd, patch).unwrap();
        assert_eq!(
            fs::read_to_string(cwd.join("a.txt")).unwrap(),
            "  fn x() {   \r\nnew body\r\n}\r\n"
        );
    }

    #[test]
    fn a_crlf_file_keeps_crlf_on_every_line_through_an_update() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("w.txt"), "one\r\ntwo\r\nthree\r\nfour\r\n").unwrap();
        let patch = "*** Begin Patch\n*** Update File: w.txt\n@@\n one\n-two\n+TWO\n+two and a half\n \
                     three\n*** End Patch";
        run(cwd, patch).unwrap();
        assert_eq!(
            fs::read(cwd.join("w.txt")).unwrap(),
            b"one\r\nTWO\r\ntwo and a half\r\nthree\r\nfour\r\n".to_vec()
        );
    }

    #[test]
    fn a_mixed_file_keeps_each_untouched_line_ending_and_new_lines_take_the_dominant_one() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        // Three CRLF lines and two LF lines: CRLF dominates.
        fs::write(cwd.join("m.txt"), "a\r\nb\nc\r\nd\ne\r\n").unwrap();
        let patch =
            "*** Begin Patch\n*** Update File: m.txt\n@@\n a\n b\n-c\n+C\n d\n*** End Patch";
        run(cwd, patch).unwrap();
        assert_eq!(
            fs::read(cwd.join("m.txt")).unwrap(),
            b"a\r\nb\nC\r\nd\ne\r\n".to_vec()
        );
        // Mostly LF with one CRLF line: an added line takes LF, the CRLF line stays CRLF.
        fs::write(cwd.join("l.txt"), "x\ny\r\nz\n").unwrap();
        let patch = "*** Begin Patch\n*** Update File: l.txt\n@@\n x\n y\n+new\n z\n*** End Patch";
        run(cwd, patch).unwrap();
        assert_eq!(
            fs::read(cwd.join("l.txt")).unwrap(),
            b"x\ny\r\nnew\nz\n".to_vec()
        );
    }

    #[test]
    fn a_patch_with_padded_headers_applies() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("foo.txt"), "old\n").unwrap();
        let patch = "*** Begin Patch\n  *** Update File: foo.txt\n  *** Move to: bar.txt\n@@\n-old\n+new\n  \
                     *** Add File: n.txt\n+n\n*** End Patch";
        run(cwd, patch).unwrap();
        assert_eq!(
            snapshot(cwd),
            tree(&[("bar.txt", "new\n"), ("n.txt", "n\n")])
        );
    }

    #[test]
    fn a_bad_hunk_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("a.txt"), "alpha\nbeta\n").unwrap();
        fs::write(cwd.join("b.txt"), "gamma\n").unwrap();
        let before = snapshot(cwd);
        let patch = "*** Begin Patch\n\
                     *** Add File: c.txt\n\
                     +new\n\
                     *** Update File: a.txt\n\
                     @@\n\
                     -alpha\n\
                     +ALPHA\n\
                     *** Update File: b.txt\n\
                     @@\n \
                     delta\n\
                     -epsilon\n\
                     +EPSILON\n\
                     *** End Patch";
        let err = run(cwd, patch).unwrap_err();
        assert_eq!(
            err,
            format!(
                "could not find these lines in {}:\ndelta\nepsilon\nRead the file again and make \
                 the hunk's context and '-' lines match it",
                cwd.join("b.txt").display()
            )
        );
        assert_eq!(snapshot(cwd), before);
    }

    #[test]
    fn a_failed_write_restores_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("a.txt"), "alpha\n").unwrap();
        // A regular file where a directory is needed makes the second write fail on disk.
        fs::write(cwd.join("blocker"), "x\n").unwrap();
        let before = snapshot(cwd);
        let patch = "*** Begin Patch\n\
                     *** Update File: a.txt\n\
                     -alpha\n\
                     +ALPHA\n\
                     *** Add File: fresh/dir/b.txt\n\
                     +b\n\
                     *** Add File: blocker/c.txt\n\
                     +c\n\
                     *** End Patch";
        let err = run(cwd, patch).unwrap_err();
        assert_eq!(
            err,
            format!(
                "could not write {}: not a directory; no file was changed",
                cwd.join("blocker/c.txt").display()
            )
        );
        assert_eq!(snapshot(cwd), before);
    }

    #[test]
    fn missing_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let patch = "*** Begin Patch\n*** Delete File: nope.txt\n*** End Patch";
        assert_eq!(
            run(dir.path(), patch).unwrap_err(),
            format!(
                "{} does not exist; check the path, or use `*** Add File:` to create it",
                dir.path().join("nope.txt").display()
            )
        );
    }

    #[test]
    fn inserts_after_the_context_line() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        fs::write(cwd.join("a.txt"), "one\ntwo\n").unwrap();
        run(
            cwd,
            "*** Begin Patch\n*** Update File: a.txt\n@@ one\n+one and a half\n*** End Patch",
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(cwd.join("a.txt")).unwrap(),
            "one\none and a half\ntwo\n"
        );
    }

    #[test]
    fn finds_patches_given_as_commands() {
        let patch = "*** Begin Patch\n*** Delete File: a\n*** End Patch\n";
        let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            from_command(&argv(&["apply_patch", patch])),
            Some((patch.to_owned(), None))
        );
        assert_eq!(
            from_command(&argv(&[
                "bash",
                "-lc",
                &format!("apply_patch <<'EOF'\n{patch}EOF\n")
            ])),
            Some((patch.to_owned(), None))
        );
        assert_eq!(
            from_command(&argv(&[
                "bash",
                "-lc",
                &format!("cd sub && apply_patch <<EOF\n{patch}EOF")
            ])),
            Some((patch.to_owned(), Some("sub".to_owned())))
        );
        assert_eq!(
            from_command(&argv(&[
                "bash",
                "-lc",
                &format!("apply_patch <<'EOF'\n{patch}EOF\nrm -rf x\n")
            ])),
            None
        );
        assert_eq!(from_command(&argv(&["ls", "-l"])), None);
    }
}
