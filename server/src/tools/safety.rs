//! Which commands are known to be read-only, so the `untrusted` policy may run them unasked.
//!
//! The list is the contract's: `ls`, `cat`, `head`, `tail`, `wc`, `pwd`, `echo`, `grep`, `rg`,
//! `find` (without the options that run, delete or write), `sed -n` (printing line ranges only),
//! and `git status|log|diff|show|branch` (`branch` only listing). The same commands wrapped as
//! `bash -lc "<cmd>"` or `sh -c "<cmd>"` are safe when the script is one plain command: any
//! redirection, pipe, list operator, substitution, expansion or glob makes it unsafe, because
//! the classifier would then have to understand the shell, and asking is cheap.

/// Whether `argv` is a known read-only command that may run without approval.
pub fn is_known_safe_command(argv: &[String]) -> bool {
    if let Some(script) = shell_script(argv) {
        return match split_words(script) {
            Some(words) => !words.is_empty() && is_safe_argv(&words),
            None => false,
        };
    }
    is_safe_argv(argv)
}

/// The script of `bash -lc SCRIPT`, `bash -c SCRIPT`, `sh -c SCRIPT` (also `zsh`, `-lc`).
pub(crate) fn shell_script(argv: &[String]) -> Option<&str> {
    match argv {
        [shell, flag, script] if is_shell(shell) && (flag == "-c" || flag == "-lc") => {
            Some(script.as_str())
        }
        _ => None,
    }
}

/// `bash`, `sh`, `zsh` or `dash`, by name (found on `PATH`), or by absolute path in a system
/// program directory or as the user's login shell (`shell_command` runs `$SHELL`). Any other
/// path is not a shell here, whatever its file name: a program named `bash` in the workspace, or
/// `/sh/` (found by fuzzing: `Path::file_name` ignores a trailing slash), is not unwrapped.
pub(crate) fn is_shell(program: &str) -> bool {
    let name = match program.rsplit_once('/') {
        None => program,
        Some((dir, name)) if SYSTEM_PROGRAM_DIRS.contains(&dir) => name,
        Some((_, name)) if super::shell_command::login_shell().to_str() == Some(program) => name,
        Some(_) => return false,
    };
    SHELL_NAMES.contains(&name)
}

/// The shells whose `-c`/`-lc` script the classifier reads.
const SHELL_NAMES: [&str; 4] = ["bash", "sh", "zsh", "dash"];

/// Where a shell named by absolute path counts as the system's own.
const SYSTEM_PROGRAM_DIRS: [&str; 4] = ["/bin", "/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"];

fn is_safe_argv(argv: &[String]) -> bool {
    let Some((program, args)) = argv.split_first() else {
        return false;
    };
    match program.as_str() {
        "ls" | "cat" | "head" | "tail" | "wc" | "pwd" | "echo" | "grep" => true,
        "rg" => args.iter().all(|a| is_safe_rg_arg(a)),
        "find" => args.iter().all(|a| !is_unsafe_find_arg(a)),
        "sed" => is_safe_sed(args),
        "git" => is_safe_git(args),
        _ => false,
    }
}

/// `rg --pre CMD` and `--hostname-bin CMD` run programs; `-z` runs decompressors, also inside a
/// cluster of short options (`-nz`).
fn is_safe_rg_arg(arg: &str) -> bool {
    let name = arg.split('=').next().unwrap_or(arg);
    let short_cluster_with_z = !arg.starts_with("--") && arg.starts_with('-') && arg.contains('z');
    !short_cluster_with_z && !matches!(name, "--pre" | "--hostname-bin" | "--search-zip")
}

/// Whether any word of `argv` (a shell script's words included) names one of `protected` (the
/// agent home, the server's `/proc/<pid>`) or something inside it, directly, relative to `cwd`
/// or through a symlink. A known-safe command that does is not run without approval: reading
/// is what it would do there. (A recursive read of a directory above the home is not caught
/// here; in confined modes the home is hidden from commands anyway.)
pub fn names_protected_path(
    argv: &[String],
    cwd: &std::path::Path,
    protected: &[std::path::PathBuf],
) -> bool {
    let words = match shell_script(argv) {
        Some(script) => split_words(script).unwrap_or_default(),
        None => argv.to_vec(),
    };
    words.iter().any(|word| {
        // `--file=PATH` style arguments name a path too.
        let value = word.split_once('=').map_or(word.as_str(), |(_, v)| v);
        [word.as_str(), value].iter().any(|candidate| {
            let resolved = super::patch::resolve(cwd, candidate);
            let real = super::patch::nofollow::real_path(&resolved);
            protected
                .iter()
                .any(|p| resolved.starts_with(p) || real.starts_with(p))
        })
    })
}

fn is_unsafe_find_arg(arg: &str) -> bool {
    matches!(
        arg,
        "-exec"
            | "-execdir"
            | "-ok"
            | "-okdir"
            | "-delete"
            | "-fls"
            | "-fprint"
            | "-fprint0"
            | "-fprintf"
    )
}

/// Only `sed -n RANGEp [file…]`: sed scripts can also write files (`w`) and run commands (`e`).
fn is_safe_sed(args: &[String]) -> bool {
    match args {
        [flag, script, files @ ..] if flag == "-n" => {
            is_print_range(script) && files.iter().all(|f| !f.starts_with('-'))
        }
        _ => false,
    }
}

/// `N p`, `N,M p`, with `$` for the last line.
fn is_print_range(script: &str) -> bool {
    let Some(range) = script.strip_suffix('p') else {
        return false;
    };
    let is_address = |s: &str| s == "$" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    match range.split_once(',') {
        Some((from, to)) => is_address(from) && is_address(to),
        None => is_address(range),
    }
}

/// `git status|log|diff|show` without options that write files or run external programs, and
/// `git branch` with listing options only. Global options before the subcommand (`-c`, `-C`)
/// are refused: `-c` can set a pager or an alias that runs anything.
fn is_safe_git(args: &[String]) -> bool {
    let Some((sub, rest)) = args.split_first() else {
        return false;
    };
    let writes_or_runs = |a: &String| {
        let name = a.split('=').next().unwrap_or(a);
        matches!(
            name,
            "--output" | "-o" | "--ext-diff" | "--textconv" | "--exec"
        )
    };
    match sub.as_str() {
        "status" | "log" | "diff" | "show" => !rest.iter().any(writes_or_runs),
        "branch" => rest.iter().all(|a| {
            matches!(
                a.as_str(),
                "-a" | "--all"
                    | "-r"
                    | "--remotes"
                    | "-v"
                    | "-vv"
                    | "--verbose"
                    | "-l"
                    | "--list"
                    | "--show-current"
                    | "--no-color"
                    | "--color"
            )
        }),
        _ => false,
    }
}

/// Global options that keep git from running programs named in the repository's config: no
/// pager (`core.pager`, `pager.<cmd>`), no fsmonitor hook, no hooks, no signature checks (gpg).
const GIT_SAFE_GLOBALS: [&str; 7] = [
    "--no-pager",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "log.showSignature=false",
];

/// `argv` as it should run: a known-safe git command (also as a one-command shell script) gets
/// [`GIT_SAFE_GLOBALS`] and, for `diff`/`log`/`show`, `--no-ext-diff --no-textconv`, so the
/// repository's `.git/config` cannot make it run `diff.external`, textconv drivers, a pager or
/// an fsmonitor; anything else is returned unchanged.
pub fn without_repo_programs(argv: &[String]) -> Vec<String> {
    if let Some(script) = shell_script(argv)
        && let Some(words) = split_words(script)
        && let Some(hardened) = hardened_git(&words)
    {
        let quoted: Vec<String> = hardened.iter().map(|w| quote(w)).collect();
        let mut out = argv.to_vec();
        out[2] = quoted.join(" ");
        return out;
    }
    hardened_git(argv).unwrap_or_else(|| argv.to_vec())
}

fn hardened_git(argv: &[String]) -> Option<Vec<String>> {
    let (program, args) = argv.split_first()?;
    if program != "git" || !is_safe_git(args) {
        return None;
    }
    let (sub, rest) = args.split_first()?;
    let mut out = vec![program.clone()];
    out.extend(GIT_SAFE_GLOBALS.iter().map(|s| (*s).to_owned()));
    out.push(sub.clone());
    if matches!(sub.as_str(), "diff" | "log" | "show") {
        out.extend(["--no-ext-diff".to_owned(), "--no-textconv".to_owned()]);
    }
    out.extend(rest.iter().cloned());
    Some(out)
}

/// A word single-quoted for the shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Splits a shell script into the words of one simple command, or `None` when the script uses
/// anything beyond plain words and quotes (operators, redirections, substitutions, expansions,
/// globs, comments, line breaks), so that the words are exactly the argv the shell would run.
pub(crate) fn split_words(script: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        // Inside double quotes these still expand or substitute.
                        '$' | '`' | '!' => return None,
                        '\\' => match chars.next()? {
                            escaped @ ('"' | '\\' | '$' | '`') => word.push(escaped),
                            '\n' => {}
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next()? {
                    '\n' => return None,
                    escaped => word.push(escaped),
                }
            }
            // Operators, redirections, substitutions, expansions, globs, comments, newlines.
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' | '$' | '*' | '?' | '[' | ']' | '{'
            | '}' | '~' | '#' | '!' | '\n' | '\r' => {
                // `#` and `~` are only special at the start of a word; inside one they are
                // plain characters (`a#b`, `x~y`).
                if in_word && matches!(c, '#' | '~') {
                    word.push(c);
                } else {
                    return None;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn classifies_a_table_of_commands() {
        let table: &[(&[&str], bool)] = &[
            (&["ls"], true),
            (&["ls", "-la", "src"], true),
            (&["cat", "Cargo.toml"], true),
            (&["head", "-n", "5", "a.txt"], true),
            (&["tail", "-n", "5", "a.txt"], true),
            (&["wc", "-l", "a.txt"], true),
            (&["pwd"], true),
            (&["echo", "hi"], true),
            (&["grep", "-rn", "fn main", "src"], true),
            (&["rg", "-n", "TODO"], true),
            (&["rg", "--pre", "sh", "x"], false),
            (&["rg", "--pre=sh", "x"], false),
            (&["rg", "-z", "x"], false),
            (&["rg", "-nz", "x"], false),
            (&["rg", "-zn", "x"], false),
            (&["rg", "--search-zip", "x"], false),
            (&["rg", "-n", "--", "z"], true),
            (&["find", ".", "-name", "*.rs"], true),
            (&["find", ".", "-exec", "rm", "{}", ";"], false),
            (&["find", ".", "-execdir", "rm", "{}", ";"], false),
            (&["find", ".", "-ok", "rm", "{}", ";"], false),
            (&["find", ".", "-delete"], false),
            (&["find", ".", "-fprint", "out"], false),
            (&["find", ".", "-fprintf", "out", "%p"], false),
            (&["sed", "-n", "1,20p", "a.txt"], true),
            (&["sed", "-n", "5p", "a.txt"], true),
            (&["sed", "-n", "10,$p", "a.txt"], true),
            (&["sed", "-n", "w out", "a.txt"], false),
            (&["sed", "-i", "s/a/b/", "a.txt"], false),
            (&["sed", "s/a/b/", "a.txt"], false),
            (&["git", "status"], true),
            (&["git", "log", "--oneline", "-5"], true),
            (&["git", "diff", "HEAD~1"], true),
            (&["git", "diff", "--output=x.patch"], false),
            (&["git", "show", "HEAD"], true),
            (&["git", "branch"], true),
            (&["git", "branch", "-a", "-v"], true),
            (&["git", "branch", "new-branch"], false),
            (&["git", "branch", "-D", "main"], false),
            (&["git", "-c", "core.pager=sh", "log"], false),
            (&["git", "commit", "-m", "x"], false),
            (&["git", "push"], false),
            (&["git"], false),
            (&["rm", "-rf", "/"], false),
            (&["python3", "-c", "print(1)"], false),
            (&["/bin/ls"], false),
            (&[], false),
            (&["bash", "-lc", "ls -la"], true),
            (&["bash", "-c", "git status"], true),
            (&["sh", "-c", "grep -n 'a b' \"file name.txt\""], true),
            (&["bash", "-lc", "ls && rm -rf x"], false),
            (&["bash", "-lc", "ls; rm x"], false),
            (&["bash", "-lc", "ls | wc -l"], false),
            (&["bash", "-lc", "cat a > b"], false),
            (&["bash", "-lc", "cat < a"], false),
            (&["bash", "-lc", "echo $(rm x)"], false),
            (&["bash", "-lc", "echo `rm x`"], false),
            (&["bash", "-lc", "echo \"$(rm x)\""], false),
            (&["bash", "-lc", "echo $HOME"], false),
            (&["bash", "-lc", "ls *.rs"], false),
            (&["bash", "-lc", "ls &"], false),
            (&["bash", "-lc", "ls\nrm x"], false),
            (&["bash", "-lc", "FOO=bar ls"], false),
            (&["bash", "-lc", "'unterminated"], false),
            (&["bash", "-lc", ""], false),
            (&["bash", "-lc", "rm -rf x"], false),
            (&["bash", "-lc", "find . -name '*.rs'"], true),
            (&["bash", "-lc", "find . -name '*.rs' -delete"], false),
            (&["bash", "-x", "ls"], false),
        ];
        let got: Vec<(Vec<String>, bool)> = table
            .iter()
            .map(|(cmd, _)| (argv(cmd), is_known_safe_command(&argv(cmd))))
            .collect();
        let want: Vec<(Vec<String>, bool)> =
            table.iter().map(|(cmd, safe)| (argv(cmd), *safe)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_shells_by_name_system_path_or_login_shell_are_unwrapped() {
        let login = crate::tools::shell_command::login_shell();
        let login = login.to_str().unwrap();
        let table: &[(&str, bool)] = &[
            ("bash", true),
            ("dash", true),
            ("/bin/sh", true),
            ("/usr/bin/bash", true),
            ("/usr/local/bin/zsh", true),
            ("/opt/homebrew/bin/bash", true),
            // A fuzzing finding: `Path::file_name("/sh/")` is `sh`.
            ("/sh/", false),
            ("/bin/sh/", false),
            ("/work/repo/bash", false),
            ("/tmp/bash", false),
            ("/bin/../tmp/bash", false),
            ("/usr/bin/x/bash", false),
            ("./bash", false),
            ("scripts/sh", false),
            ("/bin/", false),
            ("bash.exe", false),
        ];
        // `$SHELL` counts by its full path, when it is one of the shells.
        let login_is_a_shell = SHELL_NAMES
            .iter()
            .any(|name| login.ends_with(&format!("/{name}")));
        for (program, shell) in table.iter().chain(&[(login, login_is_a_shell)]) {
            assert_eq!(is_shell(program), *shell, "{program}");
            let command = argv(&[program, "-lc", "ls"]);
            assert_eq!(is_known_safe_command(&command), *shell, "{program} -lc ls");
        }
    }

    #[test]
    fn commands_naming_the_home_or_the_server_proc_entry_are_flagged() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path().canonicalize().unwrap();
        let cwd = home.parent().unwrap().to_path_buf();
        let protected = vec![home.clone(), std::path::PathBuf::from("/proc/4242")];
        let name = home.file_name().unwrap().to_string_lossy().into_owned();
        let auth = format!("{}/auth.json", home.display());
        let table: &[(&[&str], bool)] = &[
            (&["cat", &auth], true),
            (&["cat", &format!("{name}/auth.json")], true),
            (&["grep", &format!("--file={auth}"), "x"], true),
            (&["bash", "-lc", &format!("cat '{auth}'")], true),
            (&["cat", "/proc/4242/environ"], true),
            (&["cat", "/proc/42421/environ"], false),
            (&["cat", "Cargo.toml"], false),
            (&["ls"], false),
        ];
        for (cmd, want) in table {
            assert_eq!(
                names_protected_path(&argv(cmd), &cwd, &protected),
                *want,
                "{cmd:?}"
            );
        }
    }

    #[test]
    fn known_safe_git_commands_run_without_repository_programs() {
        let globals = "--no-pager -c core.fsmonitor=false -c core.hooksPath=/dev/null -c \
                       log.showSignature=false";
        let table: &[(&[&str], String)] = &[
            (&["git", "status"], format!("git {globals} status")),
            (
                &["git", "diff", "HEAD"],
                format!("git {globals} diff --no-ext-diff --no-textconv HEAD"),
            ),
            (&["git", "commit", "-m", "x"], "git commit -m x".to_owned()),
            (&["ls", "-l"], "ls -l".to_owned()),
        ];
        for (cmd, want) in table {
            assert_eq!(without_repo_programs(&argv(cmd)).join(" "), *want);
        }
        let wrapped = without_repo_programs(&argv(&["bash", "-lc", "git show 'HEAD'"]));
        assert_eq!(
            wrapped[2],
            "'git' '--no-pager' '-c' 'core.fsmonitor=false' '-c' 'core.hooksPath=/dev/null' '-c' \
             'log.showSignature=false' 'show' '--no-ext-diff' '--no-textconv' 'HEAD'"
        );
    }

    #[test]
    fn splits_words_like_the_shell() {
        assert_eq!(
            split_words(r#"grep -n 'a b' "c \"d\"" e\ f key=value"#),
            Some(argv(&["grep", "-n", "a b", "c \"d\"", "e f", "key=value"]))
        );
        assert_eq!(split_words("  ls   -l  "), Some(argv(&["ls", "-l"])));
        assert_eq!(split_words("echo a#b"), Some(argv(&["echo", "a#b"])));
        assert_eq!(split_words("echo # comment"), None);
        // An assignment prefix stays a word; it is then no known program, so not safe.
        assert_eq!(split_words("X=1 ls"), Some(argv(&["X=1", "ls"])));
    }
}
