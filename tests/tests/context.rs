//! End-to-end: project instructions (AGENTS.md) and the environment context at the start of a
//! conversation, against a wiremock upstream.

use std::path::Path;

use agent_server_tests::TestServer;
use agent_server_tests::schema::methods::ListSessions;
use agent_server_tests::schema::session::{ApprovalPolicy, SandboxMode, SubmitParams};
use agent_server_tests::turns::{
    api_key_builder, completion, environment_message, new_session, submit, submit_params,
    turn_events, user_text_message,
};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_message_done, mount_sse, responses_requests, responses_usage, sse,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use wiremock::MockServer;

fn answer(id: &str, text: &str) -> String {
    sse([
        ev_created(id),
        ev_message_done("m1", text),
        ev_completed(id, responses_usage(10, 0, 2, 0)),
    ])
}

async fn answering_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    mount_sse(&upstream, answer("resp_1", "ok")).await;
    upstream
}

fn write(path: &Path, text: impl AsRef<[u8]>) {
    let parent = path.parent().unwrap_or(path);
    std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn instructions_message(cwd: &Path, text: &str) -> Value {
    user_text_message(&format!(
        "# AGENTS.md instructions for {}\n\n<INSTRUCTIONS>\n{text}\n</INSTRUCTIONS>",
        cwd.display()
    ))
}

fn assistant(text: &str) -> Value {
    json!({"type": "message", "role": "assistant",
           "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]})
}

/// Runs one turn of `text` and checks it completed.
async fn run_turn(server: &mut TestServer, session: &str, text: &str) {
    let turn = submit(server, session, text).await;
    assert_eq!(
        completion(&turn_events(server, &turn).await)["status"],
        "completed"
    );
}

/// Runs one turn of `params.text` in `session` with `params`' per-turn settings and checks it
/// completed.
async fn run_turn_with(server: &mut TestServer, session: &str, params: SubmitParams) {
    let turn = submit_params(
        server,
        SubmitParams {
            session_id: Some(session.to_owned()),
            ..params
        },
    )
    .await;
    assert_eq!(
        completion(&turn_events(server, &turn).await)["status"],
        "completed"
    );
}

fn text(text: &str) -> SubmitParams {
    SubmitParams {
        text: Some(text.to_owned()),
        ..SubmitParams::default()
    }
}

async fn instruction_sources(server: &mut TestServer) -> Value {
    let listed = server
        .request::<ListSessions>(Default::default())
        .await
        .unwrap_or_else(|e| panic!("session/list failed: {e:?}"));
    json!(listed.sessions[0].instruction_sources)
}

#[tokio::test]
async fn the_first_request_starts_with_the_instructions_then_the_environment() {
    let upstream = answering_upstream().await;
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let cwd = repo.join("pkg/app");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    write(
        &work.path().join("AGENTS.md"),
        "above the repository: not read",
    );
    write(&repo.join("AGENTS.md"), "root rules");
    write(&repo.join("AGENTS.override.md"), "root override");
    write(&repo.join("pkg/TEAM.md"), "team rules from a fallback name");
    write(&cwd.join("AGENTS.md"), "app rules\n");
    let mut server = api_key_builder(&upstream)
        .home_file("AGENTS.md", "global rules")
        .home_file("AGENTS.override.md", "global override")
        .args(["-c", "project_doc_fallback_filenames=[\"TEAM.md\"]"])
        .spawn()
        .await;
    let session = new_session(
        &mut server,
        json!({"cwd": cwd, "approvalPolicy": "never", "sandbox": "readOnly"}),
    )
    .await;
    assert_eq!(instruction_sources(&mut server).await, json!([]));
    run_turn(&mut server, &session, "hi").await;
    run_turn(&mut server, &session, "again").await;
    let home = server.home().to_path_buf();
    assert_eq!(
        instruction_sources(&mut server).await,
        json!([
            home.join("AGENTS.override.md"),
            repo.join("AGENTS.override.md"),
            repo.join("pkg/TEAM.md"),
            cwd.join("AGENTS.md"),
        ])
    );
    let requests = responses_requests(&upstream).await;
    let first = requests[0]["input"].as_array().unwrap();
    assert_eq!(
        first[..3],
        [
            instructions_message(
                &cwd,
                "global override\n\nroot override\n\nteam rules from a fallback name\n\napp rules"
            ),
            environment_message(&cwd, "never", "readOnly"),
            user_text_message("hi"),
        ]
    );
    // The second turn sends them once, as part of the history, not again.
    let second = requests[1]["input"].as_array().unwrap();
    assert_eq!(second[..3], first[..3]);
    assert_eq!(
        second.iter().filter(|i| i == &&first[1]).count(),
        1,
        "{second:?}"
    );
    assert_eq!(second.last(), Some(&user_text_message("again")));
}

#[tokio::test]
async fn the_byte_budget_cuts_project_docs_and_zero_turns_them_off() {
    let upstream = answering_upstream().await;
    let cwd = tempfile::tempdir().unwrap();
    write(&cwd.path().join("AGENTS.md"), "0123456789abcdef");
    for (budget, expected) in [
        (Some(10), Some("global\n\n0123456789")),
        (Some(0), Some("global")),
        (None, Some("global\n\n0123456789abcdef")),
    ] {
        let mut builder = api_key_builder(&upstream).home_file("AGENTS.md", "global");
        if let Some(budget) = budget {
            builder = builder.args(["-c".to_string(), format!("project_doc_max_bytes={budget}")]);
        }
        let mut server = builder.spawn().await;
        let session = new_session(&mut server, json!({"cwd": cwd.path()})).await;
        run_turn(&mut server, &session, "hi").await;
        let requests = responses_requests(&upstream).await;
        let first = &requests.last().unwrap()["input"][0];
        assert_eq!(
            Some(first),
            expected
                .map(|text| instructions_message(cwd.path(), text))
                .as_ref(),
            "budget {budget:?}"
        );
    }
}

#[tokio::test]
async fn without_instructions_the_environment_comes_first_and_bad_files_never_fail_a_turn() {
    let upstream = answering_upstream().await;
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join(".git")).unwrap();
    // Not UTF-8, and binary: both skipped.
    write(&cwd.path().join("AGENTS.md"), b"caf\xe9");
    write(&cwd.path().join("sub/AGENTS.md"), b"\0\x01\x02");
    let sub = cwd.path().join("sub");
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({"cwd": sub})).await;
    run_turn(&mut server, &session, "hi").await;
    let requests = responses_requests(&upstream).await;
    assert_eq!(
        requests[0]["input"],
        json!([
            environment_message(&sub, "untrusted", "workspaceWrite"),
            user_text_message("hi"),
        ])
    );
    assert_eq!(instruction_sources(&mut server).await, json!([]));
}

#[tokio::test]
async fn per_turn_settings_that_change_the_environment_resend_it_once() {
    let upstream = answering_upstream().await;
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let sub = repo.join("sub");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    write(&repo.join("AGENTS.md"), "repo rules");
    write(&sub.join("AGENTS.md"), "sub rules");
    let mut server = api_key_builder(&upstream).spawn().await;
    let session = new_session(&mut server, json!({"cwd": repo})).await;
    run_turn_with(&mut server, &session, text("one")).await;
    // Each override that changes the environment: the message again, then the input.
    let never = SubmitParams {
        approval_policy: Some(ApprovalPolicy::Never),
        ..text("two")
    };
    run_turn_with(&mut server, &session, never).await;
    // No override (the changed policy stays the session's): nothing resent.
    run_turn_with(&mut server, &session, text("three")).await;
    let read_only = SubmitParams {
        sandbox: Some(SandboxMode::ReadOnly),
        ..text("four")
    };
    run_turn_with(&mut server, &session, read_only).await;
    // A new cwd: its project docs are read again (root down to it) before the environment.
    let moved = SubmitParams {
        cwd: Some(sub.display().to_string()),
        ..text("five")
    };
    run_turn_with(&mut server, &session, moved).await;
    // Overrides equal to what the session already has change nothing.
    let same = SubmitParams {
        cwd: Some(sub.display().to_string()),
        approval_policy: Some(ApprovalPolicy::Never),
        sandbox: Some(SandboxMode::ReadOnly),
        ..text("six")
    };
    run_turn_with(&mut server, &session, same).await;
    let requests = responses_requests(&upstream).await;
    assert_eq!(requests.len(), 6);
    let ok = assistant("ok");
    assert_eq!(
        requests[5]["input"],
        json!([
            instructions_message(&repo, "repo rules"),
            environment_message(&repo, "untrusted", "workspaceWrite"),
            user_text_message("one"),
            ok,
            environment_message(&repo, "never", "workspaceWrite"),
            user_text_message("two"),
            ok,
            user_text_message("three"),
            ok,
            environment_message(&repo, "never", "readOnly"),
            user_text_message("four"),
            ok,
            instructions_message(&sub, "repo rules\n\nsub rules"),
            environment_message(&sub, "never", "readOnly"),
            user_text_message("five"),
            ok,
            user_text_message("six"),
        ])
    );
    // Each request was the one before plus that turn's items: nothing sent was rewritten.
    for pair in requests.windows(2) {
        let (before, after) = (pair[0]["input"].as_array(), pair[1]["input"].as_array());
        let (before, after) = (before.unwrap(), after.unwrap());
        assert_eq!(after[..before.len()], before[..]);
    }
    assert_eq!(
        instruction_sources(&mut server).await,
        json!([repo.join("AGENTS.md"), sub.join("AGENTS.md")])
    );
}
