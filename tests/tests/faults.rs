//! The fault matrix: a tool-using conversation (a shell call, its output, a final answer) with a
//! fault injected at each model call — the stream cut at every SSE event boundary and at
//! pseudo-random byte offsets, stalled past the idle timeout, answered 500/429/401/garbage — and
//! the tool command killed from outside. In every cell the real binary must keep the turn rules:
//! exactly one `turnCompleted` per turn, `seq` without gaps, no item left in progress, the retry
//! budget respected, and the next turn's request a valid conversation. The matrix is printed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_server_tests::scripted::{Reply, ScriptedUpstream};
use agent_server_tests::turns::{new_session, submit};
use agent_server_tests::upstream::{
    ev_completed, ev_created, ev_function_call, ev_message_done, ev_output_text_delta,
    responses_usage, sse,
};
use agent_server_tests::{TestServer, fixture};
use serde_json::{Value, json};

/// Retries the cells allow; small so the "every attempt fails" cells end quickly.
const REQUEST_RETRIES: usize = 2;
const STREAM_RETRIES: usize = 2;
/// How long a stalled stream may stay silent.
const IDLE_MS: u64 = 400;
/// Cells run this many at a time (each is its own server process and upstream).
const PARALLEL: usize = 6;

/// Which model call of the conversation a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    /// The first request of turn 1: the model asks for a shell command.
    Tool,
    /// The request carrying the command's output: the model answers.
    Answer,
    /// The request of turn 2.
    Next,
}

const NEXT_PROMPT: &str = "and now?";

fn call_of(body: &Value) -> Call {
    let input = body["input"].as_array().cloned().unwrap_or_default();
    let last_user_text = input
        .iter()
        .rev()
        .find(|i| i["role"] == "user")
        .map(|i| i["content"].to_string())
        .unwrap_or_default();
    if last_user_text.contains(NEXT_PROMPT) {
        Call::Next
    } else if input.iter().any(|i| i["type"] == "function_call_output") {
        Call::Answer
    } else {
        Call::Tool
    }
}

/// The three well-behaved streams of the conversation; the shell call runs `command`.
fn normal(call: Call, command: &[&str]) -> String {
    match call {
        Call::Tool => sse([
            ev_created("resp_tool"),
            ev_output_text_delta("msg_a", "Looking."),
            ev_message_done("msg_a", "Looking."),
            ev_function_call("call_1", "shell", &json!({"command": command}).to_string()),
            ev_completed("resp_tool", responses_usage(100, 0, 20, 0)),
        ]),
        Call::Answer => fixture("after_shell_call.sse"),
        Call::Next => fixture("text_answer.sse"),
    }
}

/// The SSE event boundaries of a body (byte offsets after each event's blank line).
fn boundaries(body: &str) -> Vec<usize> {
    body.match_indices("\n\n").map(|(i, _)| i + 2).collect()
}

/// What one cell does to the conversation.
#[derive(Clone)]
struct Cell {
    name: String,
    /// The call that gets the fault.
    call: Call,
    /// Faulty replies for that call's first attempts; later attempts are answered normally.
    faults: Vec<Reply>,
    /// The shell command of the first call.
    command: Vec<String>,
    /// Kill the command from outside once it runs (it must be a long one).
    kill_command: bool,
}

fn cell(name: String, call: Call, faults: Vec<Reply>) -> Cell {
    Cell {
        name,
        call,
        faults,
        command: vec!["echo".into(), "fault-matrix".into()],
        kill_command: false,
    }
}

fn cells() -> Vec<Cell> {
    let mut cells = Vec::new();
    for call in [Call::Tool, Call::Answer] {
        let body = normal(call, &["echo", "fault-matrix"]);
        let label = format!("{call:?}").to_lowercase();
        for (n, end) in boundaries(&body).into_iter().enumerate() {
            if end < body.len() {
                let cut = body[..end].to_owned();
                cells.push(cell(
                    format!("{label}: ends after event {n}"),
                    call,
                    vec![Reply::Sse(cut)],
                ));
            }
        }
        // Pseudo-random byte offsets (a fixed LCG, so a failure reproduces), aborted mid-body.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ body.len() as u64;
        for _ in 0..6 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let mut at = (x >> 33) as usize % body.len();
            while !body.is_char_boundary(at) {
                at -= 1;
            }
            cells.push(cell(
                format!("{label}: aborted at byte {at}"),
                call,
                vec![Reply::Abort(body[..at].to_owned())],
            ));
        }
        let half = boundaries(&body)[1];
        cells.push(cell(
            format!("{label}: stalls"),
            call,
            vec![Reply::Stall(body[..half].to_owned())],
        ));
        let always = |reply: Reply| vec![reply; 1 + REQUEST_RETRIES + STREAM_RETRIES];
        let error = |code: &str| {
            json!({"error": {"type": code, "code": code, "message": "fault"}}).to_string()
        };
        cells.push(cell(
            format!("{label}: 500 once"),
            call,
            vec![Reply::Status(500, error("server_error"))],
        ));
        cells.push(cell(
            format!("{label}: 500 always"),
            call,
            always(Reply::Status(500, error("server_error"))),
        ));
        cells.push(cell(
            format!("{label}: 429 once"),
            call,
            vec![Reply::Status(429, error("rate_limit_exceeded"))],
        ));
        cells.push(cell(
            format!("{label}: 401"),
            call,
            always(Reply::Status(401, error("invalid_api_key"))),
        ));
        cells.push(cell(
            format!("{label}: garbage 200"),
            call,
            vec![Reply::Sse("}{ not sse\n\nat all".into())],
        ));
        cells.push(cell(
            format!("{label}: stalls always"),
            call,
            always(Reply::Stall(String::new())),
        ));
        let third = boundaries(&body)[3];
        cells.push(cell(
            format!("{label}: ends early always"),
            call,
            always(Reply::Sse(body[..third].to_owned())),
        ));
    }
    let marker = "3141.5926";
    cells.push(Cell {
        name: "tool: command killed".into(),
        call: Call::Tool,
        faults: Vec::new(),
        command: vec!["sleep".into(), marker.into()],
        kill_command: true,
    });
    cells
}

/// What a cell ended with, for the printed matrix.
struct Outcome {
    first_turn: String,
    attempts: HashMap<Call, usize>,
}

async fn run_cell(cell: Cell) -> Result<Outcome, String> {
    let counts: Arc<Mutex<HashMap<Call, usize>>> = Arc::default();
    let script_counts = counts.clone();
    let faults = cell.faults.clone();
    let faulty = cell.call;
    let command = cell.command.clone();
    let upstream = ScriptedUpstream::start(Arc::new(move |_, body: &Value| {
        let call = call_of(body);
        let attempt = {
            let mut counts = script_counts.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(call).or_insert(0);
            *n += 1;
            *n - 1
        };
        let argv: Vec<&str> = command.iter().map(String::as_str).collect();
        match faults.get(attempt) {
            Some(reply) if call == faulty => reply.clone(),
            _ => Reply::Sse(normal(call, &argv)),
        }
    }))
    .await;
    let mut server = TestServer::builder()
        .env("OPENAI_API_KEY", "test")
        .env("OPENAI_BASE_URL", format!("{}/v1", upstream.uri()))
        .args(["-c", "approval_policy=\"never\""])
        .args([
            "-c",
            &format!("model_providers.openai.request_max_retries={REQUEST_RETRIES}"),
        ])
        .args([
            "-c",
            &format!("model_providers.openai.stream_max_retries={STREAM_RETRIES}"),
        ])
        .args([
            "-c",
            &format!("model_providers.openai.stream_idle_timeout_ms={IDLE_MS}"),
        ])
        .timeout(Duration::from_secs(30))
        .spawn()
        .await;
    let mut events = Vec::new();
    let session = new_session(&mut server, json!({})).await;
    let first = submit(&mut server, &session, "list the files").await;
    if cell.kill_command {
        kill_marked(&cell.command[1]).await;
    }
    let done = read_turn(&mut server, &first, &mut events).await;
    let second = submit(&mut server, &session, NEXT_PROMPT).await;
    let next_done = read_turn(&mut server, &second, &mut events).await;
    server.close_stdin().await;
    for message in server.read_to_end().await {
        if message["method"] == "session/event" {
            events.push(message["params"].clone());
        }
    }
    let status = server.wait_exit().await;
    let attempts = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let requests = upstream.requests();

    let mut problems = Vec::new();
    check_events(&events, &[&first, &second], &mut problems);
    for (call, n) in &attempts {
        let budget = if *call == cell.call {
            1 + REQUEST_RETRIES + STREAM_RETRIES
        } else {
            1
        };
        if *n > budget {
            problems.push(format!(
                "{n} attempts of the {call:?} call, budget {budget}"
            ));
        }
    }
    if next_done["status"] != "completed" {
        problems.push(format!("the next turn did not complete: {next_done}"));
    }
    match requests.iter().rev().find(|r| call_of(r) == Call::Next) {
        Some(request) => check_conversation(request, &mut problems),
        None => problems.push("the next turn sent no request".into()),
    }
    if !status.success() {
        problems.push(format!("the server exited with {status}"));
    }
    let first_turn = match done["error"]["kind"].as_str() {
        Some(kind) => format!("{} ({kind})", done["status"].as_str().unwrap_or("?")),
        None => done["status"].as_str().unwrap_or("?").to_owned(),
    };
    if problems.is_empty() {
        Ok(Outcome {
            first_turn,
            attempts,
        })
    } else {
        Err(problems.join("; "))
    }
}

/// Collects every session event until `turn`'s `turnCompleted`, which it returns.
async fn read_turn(server: &mut TestServer, turn: &str, events: &mut Vec<Value>) -> Value {
    loop {
        let message = server.read_message().await;
        if message["method"] != "session/event" {
            continue;
        }
        let params = message["params"].clone();
        events.push(params.clone());
        if params["turnId"] == turn && params["event"]["type"] == "turnCompleted" {
            return params["event"].clone();
        }
    }
}

/// Kills the process whose argv holds `marker`, once it appears.
async fn kill_marked(marker: &str) {
    for _ in 0..200 {
        let proc = std::fs::read_dir("/proc").unwrap_or_else(|e| panic!("cannot list /proc: {e}"));
        for entry in proc.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.first().is_some_and(|a| a.ends_with(b"sleep"))
                && args.contains(&marker.as_bytes())
            {
                // A race with its own exit is harmless: then there is nothing left to kill.
                kill_pid(pid);
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the command with {marker} never started");
}

fn kill_pid(pid: i32) {
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status();
}

/// The turn rules over every event of the session.
fn check_events(events: &[Value], turns: &[&str], problems: &mut Vec<String>) {
    for (i, event) in events.iter().enumerate() {
        let want = i as u64 + 1;
        if event["seq"].as_u64() != Some(want) {
            problems.push(format!("event {i} has seq {} (want {want})", event["seq"]));
            break;
        }
    }
    for turn in turns {
        let of_turn: Vec<&Value> = events
            .iter()
            .filter(|e| e["turnId"] == **turn)
            .map(|e| &e["event"])
            .collect();
        let completions = of_turn
            .iter()
            .filter(|e| e["type"] == "turnCompleted")
            .count();
        if completions != 1 {
            problems.push(format!("turn {turn} has {completions} turnCompleted"));
        }
        if of_turn.last().map(|e| &e["type"]) != Some(&json!("turnCompleted")) {
            problems.push(format!("turn {turn} has events after its turnCompleted"));
        }
        let mut open = HashSet::new();
        for event in &of_turn {
            let id = event["item"]["id"].as_str().unwrap_or_default().to_owned();
            match event["type"].as_str() {
                Some("itemStarted") => {
                    open.insert(id);
                }
                Some("itemCompleted") => {
                    open.remove(&id);
                    if event["item"]["status"] == "inProgress" {
                        problems.push(format!("item {id} completed as inProgress"));
                    }
                }
                _ => {}
            }
        }
        if !open.is_empty() {
            problems.push(format!("items left in progress: {open:?}"));
        }
    }
}

/// A valid conversation: every function call answered exactly once, after it, and no output
/// without its call.
fn check_conversation(request: &Value, problems: &mut Vec<String>) {
    let input = request["input"].as_array().cloned().unwrap_or_default();
    let mut calls = HashSet::new();
    let mut answered = HashSet::new();
    for item in &input {
        let id = item["call_id"].as_str().unwrap_or_default().to_owned();
        match item["type"].as_str() {
            Some("function_call") if !calls.insert(id.clone()) => {
                problems.push(format!("function call {id} appears twice"));
            }
            Some("function_call_output") => {
                if !calls.contains(&id) {
                    problems.push(format!("output for {id} without its call before it"));
                }
                if !answered.insert(id.clone()) {
                    problems.push(format!("call {id} answered twice"));
                }
            }
            _ => {}
        }
    }
    for id in calls.difference(&answered) {
        problems.push(format!("function call {id} has no output"));
    }
    let last = input
        .last()
        .map(|i| i["content"].to_string())
        .unwrap_or_default();
    if !last.contains(NEXT_PROMPT) {
        problems.push("the next turn's request does not end with its prompt".into());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cell_of_the_fault_matrix_keeps_the_turn_rules() {
    let cells = cells();
    let total = cells.len();
    let mut results = Vec::new();
    for batch in cells.chunks(PARALLEL) {
        let handles: Vec<_> = batch
            .iter()
            .cloned()
            .map(|cell| {
                let name = cell.name.clone();
                (name, tokio::spawn(run_cell(cell)))
            })
            .collect();
        for (name, handle) in handles {
            let result = match handle.await {
                Ok(result) => result,
                Err(panic) => Err(format!("panicked: {panic}")),
            };
            results.push((name, result));
        }
    }
    println!("\nfault matrix ({total} cells):");
    println!(
        "{:<34} {:<30} {:<22} rules",
        "cell", "first turn", "attempts tool/answer"
    );
    let mut failed = Vec::new();
    for (name, result) in &results {
        match result {
            Ok(outcome) => {
                let n = |c| outcome.attempts.get(&c).copied().unwrap_or(0);
                println!(
                    "{:<34} {:<30} {:<22} ok",
                    name,
                    outcome.first_turn,
                    format!("{}/{}", n(Call::Tool), n(Call::Answer))
                );
            }
            Err(problems) => {
                println!("{name:<34} {:<30} {:<22} BROKEN: {problems}", "-", "-");
                failed.push(name.clone());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "cells breaking the turn rules: {failed:?}"
    );
}
