//! A scripted model upstream on a raw TCP socket, for faults wiremock cannot make: a stream cut
//! mid-body without its terminating chunk, or one that stalls after a few events.
//!
//! Each `POST …/responses` gets the [`Reply`] the script gives for its index (0-based, counting
//! every attempt), and its body is recorded. Every answer closes its connection, so each attempt
//! is a fresh request the way a client retry would be.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200 text/event-stream` with this whole body.
    Sse(String),
    /// `200` chunked; this prefix, then the connection closes without the final chunk.
    Abort(String),
    /// `200` chunked; this prefix, then nothing more until the client gives up.
    Stall(String),
    /// Any status with `retry-after-ms: 1` and this body.
    Status(u16, String),
}

/// The script: the reply to the request with this index (0-based) and JSON body.
pub type Script = Arc<dyn Fn(usize, &Value) -> Reply + Send + Sync>;

/// A running scripted upstream.
pub struct ScriptedUpstream {
    uri: String,
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    /// Starts listening on loopback.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot listen on loopback: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, script.clone(), recorded.clone()));
            }
        });
        Self {
            uri: format!("http://{addr}"),
            requests,
            task,
        }
    }

    /// The base URI (`http://127.0.0.1:PORT`).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The JSON bodies of the `…/responses` requests received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, script: Script, requests: Arc<Mutex<Vec<Value>>>) {
    let Some((head, body)) = read_request(&mut socket).await else {
        return;
    };
    if !head.starts_with("POST ") || !head.lines().next().unwrap_or("").contains("/responses") {
        let _ = socket
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut list = requests.lock().unwrap_or_else(|e| e.into_inner());
        list.push(json.clone());
        list.len() - 1
    };
    let _ = answer(&mut socket, script(index, &json)).await;
}

async fn answer(socket: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    const SSE: &str = "content-type: text/event-stream\r\nconnection: close\r\n";
    match reply {
        Reply::Sse(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\n{SSE}content-length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(body.as_bytes()).await?;
        }
        Reply::Abort(prefix) | Reply::Stall(prefix) if prefix.is_empty() => {
            let head = format!("HTTP/1.1 200 OK\r\n{SSE}transfer-encoding: chunked\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
        }
        Reply::Abort(prefix) => {
            let head = format!("HTTP/1.1 200 OK\r\n{SSE}transfer-encoding: chunked\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(chunk(&prefix).as_bytes()).await?;
        }
        Reply::Stall(prefix) => {
            let head = format!("HTTP/1.1 200 OK\r\n{SSE}transfer-encoding: chunked\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(chunk(&prefix).as_bytes()).await?;
            socket.flush().await?;
            // Long past any idle timeout a test sets; the client closes first.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Reply::Status(status, body) => {
            let head = format!(
                "HTTP/1.1 {status} Fault\r\ncontent-type: application/json\r\n\
                 retry-after-ms: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(body.as_bytes()).await?;
        }
    }
    socket.flush().await
}

fn chunk(data: &str) -> String {
    if data.is_empty() {
        return String::new();
    }
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// Reads one request: its head (request line and headers) and its `content-length` body.
async fn read_request(socket: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Some((head, body))
}
