//! Tests of AGENTS.md discovery on real directory trees.

use std::path::Path;

use pretty_assertions::assert_eq;

use super::*;

struct Tree {
    _dir: tempfile::TempDir,
    home: PathBuf,
    root: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let root = dir.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    Tree {
        home,
        root,
        _dir: dir,
    }
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn settings(t: &Tree, max_bytes: usize, fallback: &[&str]) -> DocSettings {
    DocSettings {
        home: t.home.clone(),
        max_bytes,
        fallback_filenames: fallback.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn nested_docs_join_from_the_repository_root_down_to_the_cwd() {
    let t = tree();
    let repo = t.root.join("repo");
    let cwd = repo.join("a/b");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    // Above the repository: never read.
    write(&t.root.join("AGENTS.md"), "outside");
    write(&repo.join("AGENTS.md"), "root\n");
    write(&repo.join("a/AGENTS.md"), "middle");
    write(&cwd.join("AGENTS.md"), "leaf");
    let docs = discover(&settings(&t, 32768, &[]), &cwd);
    assert_eq!(
        docs,
        ProjectDocs {
            text: "root\n\nmiddle\n\nleaf".into(),
            sources: vec![
                repo.join("AGENTS.md"),
                repo.join("a/AGENTS.md"),
                cwd.join("AGENTS.md")
            ],
        }
    );
    assert_eq!(
        docs.message_text(&cwd).unwrap(),
        format!(
            "# AGENTS.md instructions for {}\n\n<INSTRUCTIONS>\nroot\n\nmiddle\n\nleaf\n</INSTRUCTIONS>",
            cwd.display()
        )
    );
}

#[test]
fn a_git_file_marks_the_root_too_and_without_a_repository_only_the_cwd_counts() {
    let t = tree();
    let cwd = t.root.join("x/y");
    std::fs::create_dir_all(&cwd).unwrap();
    write(&t.root.join("x/AGENTS.md"), "parent");
    write(&cwd.join("AGENTS.md"), "here");
    assert_eq!(search_dirs(&cwd), vec![cwd.clone()]);
    assert_eq!(discover(&settings(&t, 100, &[]), &cwd).text, "here");
    write(&t.root.join("x/.git"), "gitdir: /elsewhere\n");
    assert_eq!(search_dirs(&cwd), vec![t.root.join("x"), cwd.clone()]);
    assert_eq!(
        discover(&settings(&t, 100, &[]), &cwd).text,
        "parent\n\nhere"
    );
}

#[test]
fn override_files_win_in_the_home_and_in_each_directory_then_fallback_names() {
    let t = tree();
    std::fs::create_dir_all(t.root.join(".git")).unwrap();
    let cwd = t.root.join("sub");
    write(&t.home.join("AGENTS.md"), "global");
    write(&t.home.join("AGENTS.override.md"), "global override");
    write(&t.root.join("AGENTS.md"), "root");
    write(&t.root.join("AGENTS.override.md"), "root override");
    write(&cwd.join("CLAUDE.md"), "second fallback");
    write(&cwd.join("NOTES.md"), "first fallback");
    let docs = discover(&settings(&t, 1000, &["NOTES.md", "CLAUDE.md"]), &cwd);
    assert_eq!(
        docs,
        ProjectDocs {
            text: "global override\n\nroot override\n\nfirst fallback".into(),
            sources: vec![
                t.home.join("AGENTS.override.md"),
                t.root.join("AGENTS.override.md"),
                cwd.join("NOTES.md"),
            ],
        }
    );
}

#[test]
fn the_byte_budget_cuts_project_docs_in_all_and_zero_turns_them_off() {
    let t = tree();
    std::fs::create_dir_all(t.root.join(".git")).unwrap();
    let cwd = t.root.join("sub");
    write(&t.home.join("AGENTS.md"), "global");
    write(&t.root.join("AGENTS.md"), "0123456789");
    write(&cwd.join("AGENTS.md"), "abcdefghij");
    write(&cwd.join("deeper/AGENTS.md"), "never");
    let docs = discover(&settings(&t, 14, &[]), &cwd);
    assert_eq!(
        (docs.text.as_str(), docs.sources.len()),
        ("global\n\n0123456789\n\nabcd", 3)
    );
    // Exactly used up: the next directory's file is not read.
    let docs = discover(&settings(&t, 10, &[]), &cwd.join("deeper"));
    assert_eq!(
        docs.sources,
        vec![t.home.join("AGENTS.md"), t.root.join("AGENTS.md")]
    );
    let docs = discover(&settings(&t, 0, &[]), &cwd);
    assert_eq!(
        docs,
        ProjectDocs {
            text: "global".into(),
            sources: vec![t.home.join("AGENTS.md")]
        }
    );
}

#[test]
fn a_cut_never_splits_a_character() {
    let t = tree();
    let path = t.root.join("AGENTS.md");
    write(&path, "aé€");
    assert_eq!(read_doc(&path, 2).as_deref(), Some("a"));
    assert_eq!(read_doc(&path, 3).as_deref(), Some("aé"));
    assert_eq!(read_doc(&path, 6).as_deref(), Some("aé€"));
}

#[test]
fn binary_non_utf8_blank_and_unreadable_files_are_skipped() {
    let t = tree();
    let cwd = t.root.clone();
    write(&cwd.join("AGENTS.md"), b"text\0more");
    assert_eq!(
        discover(&settings(&t, 1000, &[]), &cwd),
        ProjectDocs::default()
    );
    write(&cwd.join("AGENTS.md"), b"caf\xe9 latin-1");
    assert_eq!(
        discover(&settings(&t, 1000, &[]), &cwd),
        ProjectDocs::default()
    );
    write(&cwd.join("AGENTS.md"), " \n\t\n");
    assert_eq!(
        discover(&settings(&t, 1000, &[]), &cwd),
        ProjectDocs::default()
    );
    // A directory with the name is not a file: the next name is used.
    std::fs::remove_file(cwd.join("AGENTS.md")).unwrap();
    std::fs::create_dir(cwd.join("AGENTS.md")).unwrap();
    write(&cwd.join("HELP.md"), "fallback");
    assert_eq!(
        discover(&settings(&t, 1000, &["HELP.md"]), &cwd).text,
        "fallback"
    );
    // Unreadable (a FIFO with no writer would block; a file without permission does not,
    // unless the tests run as root, where permissions do not apply).
    let locked = t.root.join("locked");
    write(&locked.join("AGENTS.md"), "secret");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        locked.join("AGENTS.md"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    if File::open(locked.join("AGENTS.md")).is_err() {
        assert_eq!(
            discover(&settings(&t, 1000, &[]), &locked),
            ProjectDocs::default()
        );
    }
}

#[test]
fn symlink_loops_above_the_cwd_are_passed_over() {
    let t = tree();
    let cwd = t.root.join("a/b");
    std::fs::create_dir_all(&cwd).unwrap();
    // `.git` and `AGENTS.md` in the parent are links to themselves.
    std::os::unix::fs::symlink(t.root.join("a/.git"), t.root.join("a/.git")).unwrap();
    std::os::unix::fs::symlink(t.root.join("a/AGENTS.md"), t.root.join("a/AGENTS.md")).unwrap();
    std::os::unix::fs::symlink(t.root.join("loop2"), t.root.join("loop1")).unwrap();
    std::os::unix::fs::symlink(t.root.join("loop1"), t.root.join("loop2")).unwrap();
    std::os::unix::fs::symlink(t.root.join("loop1"), cwd.join("AGENTS.md")).unwrap();
    write(&cwd.join("AGENTS.override.md"), "leaf override");
    std::fs::create_dir_all(t.root.join(".git")).unwrap();
    let docs = discover(&settings(&t, 1000, &[]), &cwd);
    assert_eq!(docs.sources, vec![cwd.join("AGENTS.override.md")]);
    std::fs::remove_file(cwd.join("AGENTS.override.md")).unwrap();
    assert_eq!(
        discover(&settings(&t, 1000, &[]), &cwd),
        ProjectDocs::default()
    );
}

#[test]
fn a_huge_file_is_read_only_up_to_the_budget() {
    let t = tree();
    let path = t.root.join("AGENTS.md");
    let file = File::create(&path).unwrap();
    // A sparse 8 GiB file: reading it whole would take the machine down.
    file.set_len(8 << 30).unwrap();
    drop(file);
    // Zeros are binary: skipped, after reading only the budget.
    assert_eq!(read_doc(&path, 1024), None);
    let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, &[b'y'; 2048]).unwrap();
    assert_eq!(read_doc(&path, 1024), Some("y".repeat(1024)));
}
