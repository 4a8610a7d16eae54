//! Regression tests for the escapes a security review reproduced against the binary: each test
//! replays the model's tool calls the way the attack did and checks that the attack is now
//! refused or contained.
//!
//! The machine these run on (like CI and containers) runs them as root; the tests that depend
//! on it say so. Process tests find a command's descendants by a marker in their argv, scanning
//! `/proc`, and check that none is left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_server_tests::TestServer;
use agent_server_tests::schema::auth::LoginChatGptParams;
use agent_server_tests::schema::lifecycle::EmptyResult;
use agent_server_tests::schema::methods::{Interrupt, LoginChatGpt};
use agent_server_tests::schema::session::InterruptParams;
use agent_server_tests::turns::{
    api_key_builder, initialize, just_events, new_session, session_in, submit, turn_events,
};
use agent_server_tests::upstream::{
    function_call_output, mount_answer, mount_call, mount_calls, responses_requests,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

fn add_file(path: &str, text: &str) -> Value {
    json!({"input": format!("*** Begin Patch\n*** Add File: {path}\n+{text}\n*** End Patch")})
}

/// The `output` sent back for `call_id` in the last upstream request.
async fn told_model(upstream: &MockServer, call_id: &str) -> String {
    let requests = responses_requests(upstream).await;
    requests
        .last()
        .and_then(|r| function_call_output(r, call_id))
        .unwrap_or_else(|| panic!("no function_call_output for {call_id}: {requests:?}"))
}

fn items_of(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "itemCompleted" && e["item"]["type"] == kind)
        .map(|e| e["item"].clone())
        .collect()
}

/// Every entry of `dir` (names only).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn real(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", path.display()))
}

// ---- finding 1: patches written through a symlink swapped in after the check ----

/// Under `untrusted` + `workspaceWrite`, `sub/` is replaced by a symlink to a directory outside
/// while the approval is pending: after the approval nothing lands outside.
#[tokio::test]
async fn a_directory_swapped_for_a_symlink_during_the_approval_wait_is_not_written_through() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "apply_patch",
        &add_file("sub/first.txt", "x"),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    std::fs::create_dir(cwd.path().join("sub")).unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "add").await;
    let ask = server.next_server_request().await;
    assert_eq!(
        ask["params"]["changes"][0]["path"],
        json!(real(cwd.path()).join("sub/first.txt")),
        "{ask}"
    );
    // The swap, while the user is deciding.
    std::fs::rename(cwd.path().join("sub"), cwd.path().join("sub_moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), cwd.path().join("sub")).unwrap();
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items = items_of(&events, "fileChange");
    assert_eq!(items[0]["status"], "failed", "{events:?}");
    assert_eq!(entries(outside.path()), Vec::<String>::new());
    assert!(
        told_model(&upstream, "call_1")
            .await
            .starts_with("apply_patch failed"),
    );
}

/// Patches raced in [`patches_racing_a_symlink_exchange_never_write_outside`]: against the
/// code before the fix, about one run in three had a file land outside with this many.
const RACING_PATCHES: usize = 600;
/// Pause of the swapping thread between exchanges: none, the tightest race.
const RACING_PAUSE_US: u64 = 0;

/// Under `never`, another process keeps exchanging `sub/` with a symlink to a directory outside
/// (`renameat2(RENAME_EXCHANGE)`) while 600 patches add files under `sub/`: none lands outside.
/// The race is probabilistic; it is the deterministic test above that pins the check-then-write
/// gap.
#[tokio::test]
async fn patches_racing_a_symlink_exchange_never_write_outside() {
    let upstream = MockServer::start().await;
    let calls: Vec<(String, &str, Value)> = (0..RACING_PATCHES)
        .map(|n| {
            (
                format!("call_{n}"),
                "apply_patch",
                add_file(&format!("sub/p{n}.txt"), "x"),
            )
        })
        .collect();
    mount_calls(&upstream, &calls).await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    let ws = real(cwd.path());
    std::fs::create_dir(ws.join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.join("swap")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, ws) = (stop.clone(), ws.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    ws.join("sub"),
                    rustix::fs::CWD,
                    ws.join("swap"),
                    rustix::fs::RenameFlags::EXCHANGE,
                )
                .unwrap();
                swaps += 1;
                std::thread::sleep(Duration::from_micros(RACING_PAUSE_US));
            }
            swaps
        })
    };
    let (mut server, session) = session_in(&upstream, &ws, true, "never", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "add sixty").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 20, "the race hardly ran: {swaps} swaps");
    let items = items_of(&events, "fileChange");
    let statuses: Vec<&Value> = items.iter().map(|i| &i["status"]).collect();
    eprintln!("patch outcomes while racing: {statuses:?}");
    assert_eq!(items.len(), RACING_PATCHES);
    assert_eq!(entries(outside.path()), Vec::<String>::new());
}

// ---- finding 6: unresolved paths in prompts and symlink-blind session approvals ----

/// Under `onFailure`, a link inside the cwd points outside: the prompt shows the real path,
/// and `approveForSession` does not let a later patch through the link without asking.
#[tokio::test]
async fn prompts_show_real_paths_and_session_approvals_compare_real_paths() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "apply_patch",
        &add_file("link/first.txt", "1"),
    )
    .await;
    mount_call(
        &upstream,
        "call_2",
        "apply_patch",
        &add_file("link/second.txt", "2"),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    let outside_real = real(outside.path());
    std::os::unix::fs::symlink(outside.path(), cwd.path().join("link")).unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "onFailure", "workspaceWrite").await;
    let turn = submit(&mut server, &session, "two patches").await;
    let ask = server.next_server_request().await;
    let first = outside_real.join("first.txt").display().to_string();
    assert_eq!(
        (
            ask["params"]["changes"][0]["path"].clone(),
            ask["params"]["reason"].clone()
        ),
        (
            json!(first),
            json!(format!(
                "The patch writes outside what the sandbox allows: {first}"
            ))
        ),
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "approveForSession"}))
        .await;
    // The model's next response asks for the second patch.
    let ask = server.next_server_request().await;
    assert!(outside_real.join("first.txt").exists());
    assert_eq!(
        ask["params"]["changes"][0]["path"],
        json!(outside_real.join("second.txt")),
        "a session approval of the cwd let a write through a link go unasked: {ask}"
    );
    server
        .respond(ask["id"].clone(), json!({"decision": "deny"}))
        .await;
    turn_events(&mut server, &turn).await;
    assert!(!outside_real.join("second.txt").exists());
}

// ---- helpers for the command tests ----

/// The real python interpreter (not a version manager's shim, which needs its own environment
/// variables, and commands get an allow-listed environment).
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| panic!("these tests need python3: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs the scripts (as `sh -c`, one call each) under policy `never` in `sandbox` and returns
/// the server, each command's output and exit code.
async fn run_scripts(
    builder: impl FnOnce(&MockServer) -> agent_server_tests::TestServerBuilder,
    cwd: &Path,
    sandbox: &str,
    scripts: &[String],
) -> Vec<(String, Value)> {
    let upstream = MockServer::start().await;
    let calls: Vec<(String, &str, Value)> = scripts
        .iter()
        .enumerate()
        .map(|(n, s)| {
            (
                format!("call_{n}"),
                "shell",
                json!({"command": ["sh", "-c", s]}),
            )
        })
        .collect();
    mount_calls(&upstream, &calls).await;
    mount_answer(&upstream).await;
    let mut server = builder(&upstream).spawn().await;
    initialize(&mut server, true).await;
    let session = new_session(
        &mut server,
        json!({"cwd": cwd, "approvalPolicy": "never", "sandbox": sandbox}),
    )
    .await;
    let turn = submit(&mut server, &session, "run").await;
    let events = just_events(&turn_events(&mut server, &turn).await);
    items_of(&events, "commandExecution")
        .iter()
        .map(|i| {
            (
                i["output"].as_str().unwrap_or_default().to_owned(),
                i["exitCode"].clone(),
            )
        })
        .collect()
}

const SECRET: &str = "sk-hardening-test-secret-0123456789";

// ---- finding 2: root keeps every capability in the sandbox ----

/// Needs root (as CI and containers run): confined commands have no capability left, cannot
/// make device nodes or set the hostname, and cannot read the server's environment.
#[tokio::test]
async fn confined_commands_of_a_root_server_have_no_capabilities_and_cannot_read_the_server() {
    let cwd = tempfile::tempdir().unwrap();
    for sandbox in ["readOnly", "workspaceWrite"] {
        let scripts = [
            "grep CapEff /proc/self/status".to_owned(),
            "mknod kmsg c 1 11 && echo MKNOD-OK".to_owned(),
            "hostname \"$(hostname)\" && echo HOSTNAME-OK".to_owned(),
            "for p in $PPID 1 $(ls /proc | grep -E '^[0-9]+$'); do tr '\\0' '\\n' < /proc/$p/environ; done 2>/dev/null; echo scanned".to_owned(),
        ];
        let results = run_scripts(
            |up| api_key_builder(up).env("OPENAI_API_KEY", SECRET),
            cwd.path(),
            sandbox,
            &scripts,
        )
        .await;
        assert_eq!(results[0].0, "CapEff:\t0000000000000000\n", "{sandbox}");
        assert!(!results[1].0.contains("MKNOD-OK"), "{sandbox}: {results:?}");
        assert!(
            !results[2].0.contains("HOSTNAME-OK"),
            "{sandbox}: {results:?}"
        );
        assert!(
            results[3].0.ends_with("scanned\n"),
            "{sandbox}: {results:?}"
        );
        assert!(!results[3].0.contains(SECRET), "{sandbox}: the key leaked");
        assert!(!cwd.path().join("kmsg").exists());
    }
}

// ---- finding 5: credentials readable without approval ----

/// The agent home is empty for confined commands, and the environment is allow-listed.
#[tokio::test]
async fn the_agent_home_is_invisible_and_only_allow_listed_variables_reach_commands() {
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("auth.json"),
        format!("{{\"key\":\"{SECRET}\"}}"),
    )
    .unwrap();
    let home_dir = home.path().display().to_string();
    let scripts = [
        "env".to_owned(),
        format!("ls -A '{home_dir}'; cat '{home_dir}/auth.json'; echo listed"),
    ];
    for sandbox in ["readOnly", "workspaceWrite"] {
        let results = run_scripts(
            |up| {
                api_key_builder(up)
                    .home(home.path())
                    .env("OPENAI_API_KEY", SECRET)
                    .env("PGPASSWORD", "pg-secret")
                    .env("MY_PASSWORD", "my-secret")
                    .env("DATABASE_URL", "postgres://u:db-secret@h/d")
                    .env("LC_TIME", "C")
            },
            cwd.path(),
            sandbox,
            &scripts,
        )
        .await;
        let env = &results[0].0;
        for secret in ["pg-secret", "my-secret", "db-secret", SECRET] {
            assert!(
                !env.contains(secret),
                "{secret} reached the command:\n{env}"
            );
        }
        assert!(
            env.contains("LC_TIME=C\n") && env.contains("PATH="),
            "{env}"
        );
        let listing = &results[1].0;
        assert!(listing.contains("listed\n"), "{listing}");
        assert!(
            !listing.lines().any(|l| l == "auth.json") && !listing.contains(SECRET),
            "{listing}"
        );
    }
}

/// Under `untrusted`, `cat <home>/auth.json` is not run without asking, although `cat` is
/// known safe; approved, it still finds nothing there.
#[tokio::test]
async fn a_known_safe_command_naming_the_agent_home_needs_approval() {
    let upstream = MockServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let auth = home.path().join("auth.json");
    std::fs::write(&auth, SECRET).unwrap();
    mount_call(
        &upstream,
        "call_1",
        "shell",
        &json!({"command": ["cat", auth]}),
    )
    .await;
    mount_call(
        &upstream,
        "call_2",
        "shell",
        &json!({"command": ["cat", "/etc/hostname"]}),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let mut server = api_key_builder(&upstream).home(home.path()).spawn().await;
    initialize(&mut server, true).await;
    let session = new_session(
        &mut server,
        json!({"cwd": cwd.path(), "approvalPolicy": "untrusted", "sandbox": "readOnly"}),
    )
    .await;
    let turn = submit(&mut server, &session, "read").await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["params"]["itemId"], "call_1", "{ask}");
    server
        .respond(ask["id"].clone(), json!({"decision": "approve"}))
        .await;
    // The second, harmless `cat` runs unasked.
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items = items_of(&events, "commandExecution");
    assert_eq!(items.len(), 2, "{events:?}");
    assert!(
        !items[0]["output"]
            .as_str()
            .unwrap_or_default()
            .contains(SECRET)
    );
    assert_eq!(items[1]["exitCode"], 0, "{events:?}");
}

// ---- finding 4: readOnly is not read-only ----

/// Needs root or user namespaces (mount namespaces). Metadata of files outside the writable
/// roots cannot be changed, and processes outside the sandbox cannot be signalled.
#[tokio::test]
async fn metadata_changes_and_signals_outside_the_sandbox_are_refused() {
    let cwd = tempfile::tempdir().unwrap();
    let outside = agent_server_tests::outside_temp_dir();
    let file = outside.path().join("secret");
    std::fs::write(&file, "x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let f = file.display();
    let py = python();
    let scripts = [
        format!("chmod 0644 '{f}' && echo CHMOD-OK"),
        format!("touch -d 2001-01-01 '{f}' && echo TOUCH-OK"),
        format!("{py} -c \"import os; os.setxattr('{f}', 'user.x', b'1'); print('XATTR-OK')\""),
        format!("kill -0 {} && echo KILL-OK", victim.id()),
    ];
    for sandbox in ["readOnly", "workspaceWrite"] {
        let results = run_scripts(api_key_builder, cwd.path(), sandbox, &scripts).await;
        for (output, code) in &results {
            assert!(!output.contains("-OK"), "{sandbox}: {results:?}");
            assert_ne!(code, &json!(0), "{sandbox}: {results:?}");
        }
    }
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(meta.modified().unwrap() > std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    let _ = victim.kill();
    let _ = victim.wait();
}

// ---- finding 8: the socket filter was a deny-list ----

/// vsock sockets cannot be made, and the host's abstract unix sockets are out of reach.
#[tokio::test]
async fn only_local_socket_families_are_allowed_and_host_abstract_sockets_are_unreachable() {
    let cwd = tempfile::tempdir().unwrap();
    let name = format!("hardening-{}", std::process::id());
    let listener = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    let py = python();
    let scripts = [
        format!(
            "{py} -c \"import socket; socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); print('VSOCK-OK')\""
        ),
        format!(
            "{py} -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('\\0{name}'); print('ABSTRACT-OK')\""
        ),
        format!(
            "{py} -c \"import socket; socket.socket(socket.AF_UNIX).close(); print('UNIX-OK')\""
        ),
    ];
    for sandbox in ["readOnly", "workspaceWrite"] {
        let results = run_scripts(api_key_builder, cwd.path(), sandbox, &scripts).await;
        assert!(!results[0].0.contains("VSOCK-OK"), "{sandbox}: {results:?}");
        assert!(
            !results[1].0.contains("ABSTRACT-OK"),
            "{sandbox}: {results:?}"
        );
        assert!(results[2].0.contains("UNIX-OK"), "{sandbox}: {results:?}");
    }
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "a command reached the host's abstract socket"
    );
}

// ---- finding 3: tool processes outlive their command, the turn and the server ----

/// Processes (not zombies) whose argv contains `marker`.
fn with_marker(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// Waits (bounded) until no process with `marker` is left.
async fn assert_none_left(marker: &str, when: &str) {
    let deadline = tokio::time::Instant::now() + agent_server_tests::DEFAULT_TIMEOUT;
    loop {
        let left = with_marker(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes {left:?} with {marker} survived {when}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A script that starts escapees with `marker` in their argv (one in a new session, one in a
/// new process group, one plain background child), prints `started` and then runs `tail`.
fn escapees(marker: &str, tail: &str) -> String {
    let py = python();
    format!(
        "setsid sleep {marker} & \
         {py} -c 'import os, time; os.setpgid(0, 0); time.sleep(300)' {marker} & \
         sleep {marker} & \
         echo started; {tail}"
    )
}

/// Starts a server whose model runs `script` under `never` in `sandbox`; returns it once the
/// command printed `started`, with the session and turn ids.
async fn started_command(
    upstream: &MockServer,
    cwd: &Path,
    sandbox: &str,
    script: &str,
) -> (TestServer, String, String) {
    mount_call(
        upstream,
        "call_1",
        "shell",
        &json!({"command": ["sh", "-c", script]}),
    )
    .await;
    mount_answer(upstream).await;
    let (mut server, session) = session_in(upstream, cwd, true, "never", sandbox).await;
    let turn = submit(&mut server, &session, "start").await;
    server
        .wait_for_notification("session/event", |p| {
            p["event"]["type"] == "commandOutputDelta"
                && p["event"]["delta"]
                    .as_str()
                    .is_some_and(|d| d.contains("started"))
        })
        .await;
    (server, session, turn)
}

fn marker(n: u32) -> String {
    // A sleep length no other process uses: seconds with a fraction unique to this run.
    format!("3{n}{}.{}", std::process::id() % 1000, n)
}

/// Needs root for the PID namespace of unconfined commands (confined ones get it from a user
/// namespace otherwise). Every descendant dies when the command ends, is interrupted, or the
/// server shuts down or is killed with SIGKILL; in each sandbox mode.
#[tokio::test]
async fn no_descendant_of_a_command_outlives_it_its_turn_or_the_server() {
    let cwd = tempfile::tempdir().unwrap();
    let mut n = 0;
    for sandbox in ["workspaceWrite", "dangerFullAccess"] {
        // The command ends on its own.
        n += 1;
        let m = marker(n);
        let upstream = MockServer::start().await;
        let (mut server, _, turn) =
            started_command(&upstream, cwd.path(), sandbox, &escapees(&m, "exit 0")).await;
        turn_events(&mut server, &turn).await;
        assert_none_left(&m, &format!("the command's end ({sandbox})")).await;

        // The turn is interrupted.
        n += 1;
        let m = marker(n);
        let upstream = MockServer::start().await;
        let (mut server, session, turn) =
            started_command(&upstream, cwd.path(), sandbox, &escapees(&m, "wait")).await;
        assert!(!with_marker(&m).is_empty(), "the escapees did not start");
        let reply = server
            .request::<Interrupt>(InterruptParams {
                session_id: session.clone(),
                turn_id: None,
            })
            .await;
        assert_eq!(reply, Ok(EmptyResult {}));
        turn_events(&mut server, &turn).await;
        assert_none_left(&m, &format!("an interrupt ({sandbox})")).await;

        // The server is asked to shut down mid-command.
        n += 1;
        let m = marker(n);
        let upstream = MockServer::start().await;
        let (mut server, _, _) =
            started_command(&upstream, cwd.path(), sandbox, &escapees(&m, "wait")).await;
        server
            .send_json(json!({"jsonrpc": "2.0", "id": 99, "method": "shutdown"}))
            .await;
        server.close_stdin().await;
        server.wait_exit().await;
        assert_none_left(&m, &format!("shutdown ({sandbox})")).await;

        // The server is killed with SIGKILL mid-command.
        n += 1;
        let m = marker(n);
        let upstream = MockServer::start().await;
        let (mut server, _, _) =
            started_command(&upstream, cwd.path(), sandbox, &escapees(&m, "wait")).await;
        server.kill_signal(agent_server_tests::SIGKILL);
        server.wait_exit().await;
        assert_none_left(&m, &format!("kill -9 of the server ({sandbox})")).await;
    }
}

// ---- finding 7: auto-approved git commands ran programs named in the repository config ----

/// `git status`, `git diff` and `git show HEAD` run unasked under `untrusted`, without running
/// the fsmonitor, external diff or textconv programs the repository's config names.
#[tokio::test]
async fn known_safe_git_commands_do_not_run_programs_from_the_repository_config() {
    let cwd = tempfile::tempdir().unwrap();
    let repo = cwd.path();
    let proof = tempfile::tempdir().unwrap();
    let hook = repo.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch '{}/ran-'\"$(basename \"$0\")\"\n",
            proof.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    std::fs::write(repo.join(".gitattributes"), "*.txt diff=conv\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    std::fs::write(repo.join("a.txt"), "two\n").unwrap();
    let h = hook.display();
    git(&["config", "core.fsmonitor", &format!("{h}")]);
    git(&["config", "diff.external", &format!("{h}")]);
    git(&["config", "diff.conv.textconv", &format!("{h}")]);
    git(&["config", "core.pager", &format!("{h}")]);

    let upstream = MockServer::start().await;
    let calls: Vec<(String, &str, Value)> = [
        vec!["git", "status"],
        vec!["git", "diff"],
        vec!["git", "show", "HEAD"],
    ]
    .iter()
    .enumerate()
    .map(|(n, argv)| (format!("call_{n}"), "shell", json!({"command": argv})))
    .collect();
    mount_calls(&upstream, &calls).await;
    mount_answer(&upstream).await;
    let (mut server, session) =
        session_in(&upstream, repo, true, "untrusted", "dangerFullAccess").await;
    let turn = submit(&mut server, &session, "git").await;
    // No approval request: these are known safe.
    let events = just_events(&turn_events(&mut server, &turn).await);
    let items = items_of(&events, "commandExecution");
    assert_eq!(items.len(), 3, "{events:?}");
    assert!(
        items[1]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("+two"),
        "{events:?}"
    );
    assert_eq!(entries(proof.path()), Vec::<String>::new());
}

// ---- finding 11: `-z` in a short-option cluster; unbounded timeout_ms ----

/// `rg -nz` needs approval under `untrusted`; a `timeout_ms` above the maximum is capped and
/// the model is told.
#[tokio::test]
async fn rg_z_in_a_cluster_needs_approval_and_a_huge_timeout_is_capped_and_said() {
    let upstream = MockServer::start().await;
    mount_call(
        &upstream,
        "call_1",
        "shell",
        &json!({"command": ["rg", "-nz", "x"]}),
    )
    .await;
    mount_call(
        &upstream,
        "call_2",
        "shell",
        &json!({"command": ["echo", "hi"], "timeout_ms": 9_000_000_000_u64}),
    )
    .await;
    mount_answer(&upstream).await;
    let cwd = tempfile::tempdir().unwrap();
    let (mut server, session) =
        session_in(&upstream, cwd.path(), true, "untrusted", "readOnly").await;
    let turn = submit(&mut server, &session, "search").await;
    let ask = server.next_server_request().await;
    assert_eq!(ask["params"]["itemId"], "call_1", "{ask}");
    server
        .respond(ask["id"].clone(), json!({"decision": "deny"}))
        .await;
    turn_events(&mut server, &turn).await;
    let told = told_model(&upstream, "call_2").await;
    assert!(
        told.ends_with(
            "hi\n[timeout_ms 9000000000 is more than the maximum; the command ran with a \
             timeout of 3600000 ms]"
        ),
        "{told}"
    );
}

// ---- finding 10: the login callback server ----

/// Needs to read the server's `/proc/<pid>/fd` (root, as the server is not dumpable). Idle
/// connections are capped and closed after the header timeout, and `[::1]` is held on the
/// callback port too (where the host has IPv6).
#[tokio::test]
async fn the_login_callback_server_caps_idle_connections_and_holds_both_loopbacks() {
    let issuer = MockServer::start().await;
    let mut server = TestServer::builder()
        .env("AGENT_SERVER_AUTH_ISSUER", issuer.uri())
        .args(["-c", "login_callback_port=0"])
        .spawn()
        .await;
    let started = server
        .request::<LoginChatGpt>(LoginChatGptParams::default())
        .await
        .unwrap();
    let auth_url = url::Url::parse(started.auth_url.as_deref().unwrap()).unwrap();
    let redirect = auth_url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| url::Url::parse(&v).unwrap())
        .unwrap();
    let port = redirect.port().unwrap();
    let fds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds(server.pid());
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = fds(server.pid());
    assert!(
        after < before + 40,
        "300 idle connections took {} descriptors",
        after - before
    );
    if std::net::TcpListener::bind(("::1", 0)).is_ok() {
        let taken = std::net::TcpListener::bind(("::1", port)).map_err(|e| e.kind());
        assert_eq!(taken.err(), Some(std::io::ErrorKind::AddrInUse));
    }
    // Every idle connection is closed by the server within the header timeout (5 s).
    for stream in &mut idle {
        use std::io::Read;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0u8; 1];
        let read = stream.read(&mut byte);
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "an idle connection stayed open: {read:?}"
        );
    }
}
