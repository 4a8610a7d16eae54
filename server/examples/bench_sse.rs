//! Measures the cost of parsing and forwarding one streamed text delta.
//!
//! Builds a Responses SSE body with 50,000 `response.output_text.delta` events and runs it
//! (1) through the SSE parser from memory and (2) through a whole `ModelClient` call that
//! replays it from a file, then prints ns/delta and deltas/s for each.
//!
//! Run with `cargo run --release -p agent-server --example bench_sse [ROUNDS]`.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

use std::error::Error;
use std::time::{Duration, Instant};

use agent_server::config::WireApi;
use agent_server::model::fixture::{REPLAY_CHUNK_BYTES, chunked};
use agent_server::model::sse::responses_events;
use agent_server::model::{
    ClientSettings, DEFAULT_BACKOFF_BASE, DEFAULT_STREAM_IDLE_TIMEOUT, ModelClient, ModelRequest,
    Provider, ResponseEvent,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

const DELTAS: usize = 50_000;

fn body() -> String {
    let mut body = String::with_capacity(DELTAS * 200);
    body.push_str("event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_bench\",\"status\":\"in_progress\"}}\n\n");
    for n in 0..DELTAS {
        body.push_str(&format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\" token{n}\",\"logprobs\":[]}}\n\n",
            n + 1
        ));
    }
    body.push_str("event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":50001,\"response\":{\"id\":\"resp_bench\",\"status\":\"completed\",\"usage\":{\"input_tokens\":1,\"output_tokens\":50000,\"total_tokens\":50001}}}\n\n");
    body
}

/// Counts the text deltas of one parse; fails unless the stream completed.
async fn parse_once(bytes: Vec<u8>) -> Result<usize, Box<dyn Error>> {
    let mut events = responses_events(chunked(bytes, REPLAY_CHUNK_BYTES));
    let mut deltas = 0;
    while let Some(event) = events.next().await {
        match event.map_err(|f| format!("{f:?}"))? {
            ResponseEvent::OutputTextDelta { .. } => deltas += 1,
            ResponseEvent::Completed { .. } => return Ok(deltas),
            _ => {}
        }
    }
    Err("the stream ended before response.completed".into())
}

/// Counts the text deltas of one whole client call replaying the body from a file.
async fn call_once(client: &ModelClient) -> Result<usize, Box<dyn Error>> {
    let request = ModelRequest {
        session_id: "bench".into(),
        model: "gpt-5-codex".into(),
        instructions: String::new(),
        input: Vec::new(),
        tools: Vec::new(),
        reasoning_effort: None,
        previous_response_id: None,
        user_agent: "bench".into(),
        output_schema: None,
    };
    let mut events = client.stream(request, CancellationToken::new());
    let mut deltas = 0;
    while let Some(event) = events.next().await {
        match event? {
            ResponseEvent::OutputTextDelta { .. } => deltas += 1,
            ResponseEvent::Completed { .. } => return Ok(deltas),
            _ => {}
        }
    }
    Err("the call ended before response.completed".into())
}

fn report(label: &str, deltas: usize, elapsed: Duration) {
    let ns = elapsed.as_nanos() as f64 / deltas as f64;
    println!(
        "{label}: {deltas} deltas in {:.1} ms = {ns:.0} ns/delta, {:.0} deltas/s",
        elapsed.as_secs_f64() * 1000.0,
        1e9 / ns
    );
}

fn main() -> Result<(), Box<dyn Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(10);
    let body = body();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "body: {} bytes, {DELTAS} deltas, {rounds} rounds",
        body.len()
    );

    runtime.block_on(async {
        parse_once(body.clone().into_bytes()).await?;
        let mut total = 0;
        let mut elapsed = Duration::ZERO;
        for _ in 0..rounds {
            let bytes = body.clone().into_bytes();
            let start = Instant::now();
            total += parse_once(bytes).await?;
            elapsed += start.elapsed();
        }
        report("parser   ", total, elapsed);

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.sse");
        std::fs::write(&path, &body)?;
        let provider = Provider {
            id: "bench".into(),
            name: "bench".into(),
            base_url: None,
            env_key: None,
            bearer: None,
            wire_api: WireApi::Responses,
            query_params: Default::default(),
            headers: Default::default(),
            request_max_retries: 0,
            stream_max_retries: 0,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            requires_auth: false,
        };
        let settings = ClientSettings {
            originator: "bench".into(),
            chatgpt_base_url: String::new(),
            store: false,
            sse_fixture: Some(path.display().to_string()),
            backoff_base: DEFAULT_BACKOFF_BASE,
            rate_limits: agent_server::model::RateLimitTracker::default(),
        };
        let client = ModelClient::new(settings, provider, None, reqwest::Client::new());
        call_once(&client).await?;
        let mut total = 0;
        let start = Instant::now();
        for _ in 0..rounds {
            total += call_once(&client).await?;
        }
        report("client   ", total, start.elapsed());
        Ok(())
    })
}
