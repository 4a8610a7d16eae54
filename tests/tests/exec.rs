//! `agent-server exec`: the main job for a person, a real server child process driven over
//! pipes, against the demo transcripts (the model asks to run `ls`, then answers).

use agent_server_tests::run_to_end;
use pretty_assertions::assert_eq;

fn demo_fixtures() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/demo");
    format!(
        "{}:{}",
        dir.join("shell_call.sse").display(),
        dir.join("after_shell_call.sse").display()
    )
}

#[tokio::test]
async fn exec_prints_the_conversation_with_the_command_really_run() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("Cargo.toml"), "[package]\n").unwrap();
    std::fs::create_dir(project.path().join("src")).unwrap();
    let cwd = project.path().display().to_string();
    let fixtures = demo_fixtures();
    let out = run_to_end(
        home.path(),
        &[
            "--home",
            &home.path().display().to_string(),
            "exec",
            "--cd",
            &cwd,
            "list files",
        ],
        &[("AGENT_SERVER_SSE_FIXTURE", fixtures.as_str())],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "── turn started (gpt-5-codex)".to_string(),
            format!("$ bash -lc ls    (in {cwd})"),
            "  Cargo.toml".to_string(),
            "  src".to_string(),
            "  (exit code 0)".to_string(),
            "assistant: There are two entries: `Cargo.toml` and `src`.".to_string(),
            "── turn Completed: 4410 tokens".to_string(),
        ]
    );
}

#[tokio::test]
async fn exec_json_prints_only_session_event_lines_ending_in_turn_completed() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let fixtures = demo_fixtures();
    let out = run_to_end(
        home.path(),
        &[
            "--home",
            &home.path().display().to_string(),
            "exec",
            "--json",
            "--cd",
            &project.path().display().to_string(),
            "list files",
        ],
        &[("AGENT_SERVER_SSE_FIXTURE", fixtures.as_str())],
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().all(|e| e["method"] == "session/event"));
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["params"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        events.last().unwrap()["params"]["event"]["status"],
        "completed"
    );
}
