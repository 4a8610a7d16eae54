//! [`TestServer`]: the real binary on real pipes, driven like an IDE would drive it.
//!
//! Everything the server writes is read by one background task into a channel, so the server
//! never blocks on a full stdout pipe while a test is busy writing (10,000 pipelined requests
//! would otherwise dead-lock). Messages a test has read but not asked for yet wait in one
//! ordered buffer: `wait_for_response(id)` takes the reply with that id wherever it is, while
//! notifications and server requests keep their order.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_server_schema::methods::{Method, Notification};
use agent_server_schema::rpc::RpcError;
use agent_server_schema::session::ApprovalDecision;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::binary::scrubbed_command;
use crate::framing::{Frame, Framing, read_frames};

/// How many recent frames a timeout or EOF panic shows.
const RECENT_SHOWN: usize = 12;

/// Answers a server → client request (`method`, whole message) with `Some(result)`, or leaves
/// it for the test (`None`).
pub type ServerRequestHandler = Box<dyn FnMut(&str, &Value) -> Option<Value> + Send>;

/// One message read from the server: its text exactly as framed, and its parsed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The message's text, without the framing (no trailing `\n`, no headers).
    pub raw: String,
    /// The parsed JSON.
    pub value: Value,
}

/// What a JSON-RPC message from the server is.
fn is_response(v: &Value) -> bool {
    v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some())
}

fn is_server_request(v: &Value) -> bool {
    v.get("method").is_some() && v.get("id").is_some()
}

fn is_notification(v: &Value) -> bool {
    v.get("method").is_some() && v.get("id").is_none()
}

/// Sets up a [`TestServer`]: extra environment, arguments, home contents, framing, timeout.
pub struct TestServerBuilder {
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    home: Option<PathBuf>,
    home_files: Vec<(PathBuf, Vec<u8>)>,
    pass_home: bool,
    framing: Framing,
    timeout: Duration,
    handler: Option<ServerRequestHandler>,
    ignore_sigxfsz: bool,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            env: Vec::new(),
            home: None,
            home_files: Vec::new(),
            pass_home: true,
            framing: Framing::Ndjson,
            timeout: crate::DEFAULT_TIMEOUT,
            handler: None,
            ignore_sigxfsz: false,
        }
    }
}

impl TestServerBuilder {
    /// Sets an environment variable for the server (on top of the scrubbed environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a command-line argument (after `--home <dir>`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several command-line arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Uses `path` as the home (`--home` and `HOME`) instead of a fresh temp dir. The test keeps
    /// ownership of it.
    pub fn home(mut self, path: impl Into<PathBuf>) -> Self {
        self.home = Some(path.into());
        self
    }

    /// Writes a file into the home before the server starts (`name` relative to the home).
    pub fn home_file(mut self, name: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.home_files.push((name.into(), contents.into()));
        self
    }

    /// Leaves out `--home`: the server finds its home on its own (`HOME` is still the temp dir).
    pub fn without_home_arg(mut self) -> Self {
        self.pass_home = false;
        self
    }

    /// Frames what the client writes, and expects what it reads, with `framing`.
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Shorthand for `framing(Framing::ContentLength)`.
    pub fn content_length(self) -> Self {
        self.framing(Framing::ContentLength)
    }

    /// How long any single wait (a reply, a notification, the exit) may take before the test
    /// panics. This guards against hangs; it is not an assertion about speed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the server with `SIGXFSZ` ignored (through `sh`, which `exec`s it with the same
    /// pid), so a file-size limit set on it later (`prlimit`) makes its writes fail with
    /// `EFBIG` instead of killing it: a full disk that holds even for root.
    pub fn ignore_file_size_signal(mut self) -> Self {
        self.ignore_sigxfsz = true;
        self
    }

    /// Answers server → client requests with `handler` instead of queueing them for the test.
    pub fn on_server_request(
        mut self,
        handler: impl FnMut(&str, &Value) -> Option<Value> + Send + 'static,
    ) -> Self {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Answers every `session/requestApproval` with `decision`.
    pub fn auto_approve(self, decision: ApprovalDecision) -> Self {
        self.on_server_request(move |method, _| {
            (method == "session/requestApproval").then(|| json!({ "decision": decision }))
        })
    }

    /// Starts the server.
    pub async fn spawn(self) -> TestServer {
        let (home, home_dir) = match self.home {
            Some(path) => (path, None),
            None => {
                let dir = tempfile::tempdir()
                    .unwrap_or_else(|e| panic!("cannot create a temp home: {e}"));
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        for (name, contents) in &self.home_files {
            let path = home.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
            }
            std::fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }

        let mut command = scrubbed_command(&home);
        if self.ignore_sigxfsz {
            // An ignored signal stays ignored across `exec`.
            command = crate::binary::scrubbed_program(std::path::Path::new("sh"), &home);
            command
                .arg("-c")
                .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
                .arg(crate::server_bin());
        }
        if self.pass_home {
            command.arg("--home").arg(&home);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start agent-server: {e}"));
        let pid = child
            .id()
            .unwrap_or_else(|| panic!("agent-server exited before it could be watched"));
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("the child has no stdout pipe"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("the child has no stderr pipe"));

        let (tx, frames) = unbounded_channel();
        tokio::spawn(read_frames(stdout, self.framing, tx));

        let stderr_text = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr_text);
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[agent-server] {line}");
                if let Ok(mut text) = sink.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });

        TestServer {
            child,
            pid,
            stdin,
            frames,
            stdout_closed: false,
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            sent: VecDeque::new(),
            next_id: 1,
            timeout: self.timeout,
            framing: self.framing,
            home,
            _home_dir: home_dir,
            stderr: stderr_text,
            stderr_task: Some(stderr_task),
            handler: self.handler,
            exit_status: None,
        }
    }
}

/// A running `agent-server` with its stdin, stdout and stderr on pipes.
///
/// Every wait is bounded by the timeout (10 s unless set otherwise) and panics with what it was
/// waiting for, the last messages seen, and the tail of stderr. Every message read is checked
/// for `"jsonrpc":"2.0"` (the contract requires it on everything the server sends).
pub struct TestServer {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    frames: UnboundedReceiver<Frame>,
    stdout_closed: bool,
    pending: VecDeque<Message>,
    recent: VecDeque<String>,
    sent: VecDeque<String>,
    next_id: i64,
    timeout: Duration,
    framing: Framing,
    home: PathBuf,
    _home_dir: Option<TempDir>,
    stderr: Arc<Mutex<String>>,
    stderr_task: Option<JoinHandle<()>>,
    handler: Option<ServerRequestHandler>,
    exit_status: Option<ExitStatus>,
}

impl TestServer {
    /// A builder for a server with extra settings.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// A server in a fresh temp home with default settings.
    pub async fn start() -> TestServer {
        Self::builder().spawn().await
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The home the server was started with.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The framing this client uses.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Changes the wait bound for the rest of the test.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Replaces (or removes) the handler for server → client requests.
    pub fn set_server_request_handler(&mut self, handler: Option<ServerRequestHandler>) {
        self.handler = handler;
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    // ---- writing ----

    /// Writes bytes to the server's stdin exactly as given (no framing added).
    pub async fn send_raw(&mut self, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        self.remember_sent(&String::from_utf8_lossy(bytes));
        let context = self.context("writing to stdin");
        let Some(stdin) = self.stdin.as_mut() else {
            panic!("stdin is already closed\n{context}");
        };
        let written = async {
            stdin.write_all(bytes).await?;
            stdin.flush().await
        };
        if let Err(e) = written.await {
            panic!("writing to agent-server's stdin failed: {e}\n{context}");
        }
    }

    /// Serializes `message` and writes it with this client's framing.
    pub async fn send_json(&mut self, message: Value) {
        let text = message.to_string();
        let bytes = self.framing.encode(&text);
        self.send_raw(bytes).await;
    }

    /// Sends a request with a fresh integer id and returns the id. `params: None` leaves the
    /// member out.
    pub async fn send_request(&mut self, method: &str, params: Option<Value>) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send_json(message).await;
        id
    }

    /// Sends a notification.
    pub async fn send_notification(&mut self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.send_json(message).await;
    }

    /// Sends a request and returns the whole reply object.
    pub async fn request_raw(&mut self, method: &str, params: Option<Value>) -> Value {
        let id = self.send_request(method, params).await;
        self.wait_for_response(id).await
    }

    /// Sends a typed request and decodes its reply: the result, or the error object.
    pub async fn request<M: Method>(&mut self, params: M::Params) -> Result<M::Result, RpcError> {
        let params = serde_json::to_value(params)
            .unwrap_or_else(|e| panic!("cannot serialize {} params: {e}", M::NAME));
        let reply = self.request_raw(M::NAME, Some(params)).await;
        decode_reply::<M::Result>(M::NAME, reply)
    }

    /// Sends a typed notification.
    pub async fn notify<N: Notification>(&mut self, params: N::Params) {
        let params = serde_json::to_value(params)
            .unwrap_or_else(|e| panic!("cannot serialize {} params: {e}", N::NAME));
        self.send_notification(N::NAME, Some(params)).await;
    }

    /// Answers a server → client request with a result.
    pub async fn respond(&mut self, id: Value, result: Value) {
        self.send_json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
            .await;
    }

    /// Answers a server → client request with an error.
    pub async fn respond_error(&mut self, id: Value, code: i64, message: &str) {
        self.send_json(json!({
            "jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}
        }))
        .await;
    }

    /// Closes the server's stdin (EOF).
    pub async fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // The server may already be gone; EOF is what the test wants either way.
            let _ = stdin.flush().await;
        }
    }

    // ---- reading ----

    /// The next message the test has not claimed yet, whatever it is.
    pub async fn read_message(&mut self) -> Value {
        self.read_message_raw().await.value
    }

    /// Like [`Self::read_message`], with the exact text of the message.
    pub async fn read_message_raw(&mut self) -> Message {
        if let Some(message) = self.pending.pop_front() {
            return message;
        }
        let deadline = Instant::now() + self.timeout;
        match self.next_frame(deadline, "the next message").await {
            Some(message) => message,
            None => panic!(
                "stdout closed while waiting for the next message\n{}",
                self.context("the next message")
            ),
        }
    }

    /// Waits for the reply (result or error) whose id equals `id` exactly, buffering
    /// everything else that arrives first.
    pub async fn wait_for_response(&mut self, id: impl Into<Value>) -> Value {
        let id = id.into();
        let what = format!("the reply with id {id}");
        self.wait_for(&what, |v| is_response(v) && v.get("id") == Some(&id))
            .await
            .value
    }

    /// Waits for a notification named `method` whose params satisfy `predicate`; returns the
    /// whole notification. Earlier notifications that do not match stay buffered in order.
    pub async fn wait_for_notification(
        &mut self,
        method: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("a {method} notification");
        let null = Value::Null;
        self.wait_for(&what, |v| {
            is_notification(v)
                && v.get("method").and_then(Value::as_str) == Some(method)
                && predicate(v.get("params").unwrap_or(&null))
        })
        .await
        .value
    }

    /// Waits for a typed notification whose params satisfy `predicate`.
    pub async fn wait_for_typed<N: Notification>(
        &mut self,
        predicate: impl Fn(&N::Params) -> bool,
    ) -> N::Params {
        let message = self
            .wait_for_notification(N::NAME, |params| {
                serde_json::from_value::<N::Params>(params.clone())
                    .map(|p| predicate(&p))
                    .unwrap_or(false)
            })
            .await;
        decode(N::NAME, message["params"].clone())
    }

    /// The next server → client request not handled by the handler.
    pub async fn next_server_request(&mut self) -> Value {
        self.wait_for("a server request", is_server_request)
            .await
            .value
    }

    /// Reads everything until the server closes stdout (normally: it exited), and returns all
    /// unclaimed messages in order. Use it to prove nothing else was sent.
    pub async fn read_to_end(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + self.timeout;
        while let Some(message) = self.next_frame(deadline, "stdout to close").await {
            self.pending.push_back(message);
        }
        self.pending.drain(..).map(|m| m.value).collect()
    }

    // ---- the process ----

    /// Waits for the process to exit and returns its status (stdin is left as it is).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status {
            return status;
        }
        let status = match tokio::time::timeout(self.timeout, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("waiting for agent-server failed: {e}"),
            Err(_) => panic!(
                "agent-server did not exit within {:?}\n{}",
                self.timeout,
                self.context("the process to exit")
            ),
        };
        self.exit_status = Some(status);
        // Its stderr ends with it (unless a grandchild still holds the pipe); wait so that
        // `stderr_text` shows everything it wrote.
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(self.timeout, task).await;
        }
        status
    }

    /// Sends a signal (e.g. [`crate::SIGTERM`]) to the server process.
    pub fn kill_signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid)
            .unwrap_or_else(|_| panic!("pid {} does not fit a pid_t", self.pid));
        send_signal(pid, signal);
    }

    // ---- internals ----

    /// Takes the first buffered message matching `predicate`, else reads until one arrives.
    async fn wait_for(&mut self, what: &str, predicate: impl Fn(&Value) -> bool) -> Message {
        if let Some(index) = self.pending.iter().position(|m| predicate(&m.value))
            && let Some(message) = self.pending.remove(index)
        {
            return message;
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.next_frame(deadline, what).await {
                Some(message) if predicate(&message.value) => return message,
                Some(message) => self.pending.push_back(message),
                None => panic!(
                    "stdout closed while waiting for {what}\n{}",
                    self.context(what)
                ),
            }
        }
    }

    /// The next message off the wire, after the server-request handler had its go. `None` when
    /// stdout is closed.
    async fn next_frame(&mut self, deadline: Instant, what: &str) -> Option<Message> {
        loop {
            if self.stdout_closed {
                return None;
            }
            let frame = match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    self.stdout_closed = true;
                    return None;
                }
                Err(_) => panic!(
                    "timed out after {:?} waiting for {what}\n{}",
                    self.timeout,
                    self.context(what)
                ),
            };
            let raw = match frame {
                Ok(raw) => raw,
                Err(broken) => panic!(
                    "the server broke the framing: {broken}\n{}",
                    self.context(what)
                ),
            };
            self.remember_received(&raw);
            let value: Value = match serde_json::from_str(&raw) {
                Ok(value) => value,
                Err(e) => panic!(
                    "stdout carried something that is not JSON ({e}): {raw:?}\n{}",
                    self.context(what)
                ),
            };
            check_jsonrpc_version(&value, &raw);
            if is_server_request(&value) {
                let method = value["method"].as_str().unwrap_or_default().to_owned();
                if let Some(handler) = self.handler.as_mut()
                    && let Some(result) = handler(&method, &value)
                {
                    self.respond(value["id"].clone(), result).await;
                    continue;
                }
            }
            return Some(Message { raw, value });
        }
    }

    fn remember_received(&mut self, raw: &str) {
        self.recent.push_back(shorten(raw));
        while self.recent.len() > RECENT_SHOWN {
            self.recent.pop_front();
        }
    }

    fn remember_sent(&mut self, raw: &str) {
        self.sent.push_back(shorten(raw.trim_end()));
        while self.sent.len() > RECENT_SHOWN / 2 {
            self.sent.pop_front();
        }
    }

    /// What a panic shows: the last messages both ways, what is buffered, stderr's tail.
    fn context(&self, what: &str) -> String {
        let mut out = format!("-- while waiting for {what}\n-- last messages received:\n");
        for raw in &self.recent {
            out.push_str(&format!("   <- {raw}\n"));
        }
        out.push_str("-- last messages sent:\n");
        for raw in &self.sent {
            out.push_str(&format!("   -> {raw}\n"));
        }
        out.push_str(&format!(
            "-- {} message(s) read but not claimed\n",
            self.pending.len()
        ));
        let stderr = self.stderr_text();
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        out.push_str("-- stderr tail:\n");
        for line in tail.into_iter().rev() {
            out.push_str(&format!("   {line}\n"));
        }
        out
    }
}

/// Decodes a reply object: `Ok(result)` or `Err(error)`, panicking when it is neither, or when
/// the error does not have the contract's shape (`code`, `message`, `data.kind`).
pub fn decode_reply<R: DeserializeOwned>(method: &str, reply: Value) -> Result<R, RpcError> {
    match (reply.get("result"), reply.get("error")) {
        (Some(result), None) => Ok(decode(method, result.clone())),
        (None, Some(error)) => Err(serde_json::from_value(error.clone()).unwrap_or_else(|e| {
            panic!("the error reply to {method} does not have the contract's shape ({e}): {reply}")
        })),
        _ => panic!("the reply to {method} has neither or both of result and error: {reply}"),
    }
}

fn decode<T: DeserializeOwned>(what: &str, value: Value) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{what}: cannot decode as {}: {e}: {value}",
            std::any::type_name::<T>()
        )
    })
}

/// Every message the server sends carries `"jsonrpc":"2.0"`, batch elements included.
fn check_jsonrpc_version(value: &Value, raw: &str) {
    let elements: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for element in elements {
        if element.get("jsonrpc") != Some(&json!("2.0")) {
            panic!("the server sent a message without \"jsonrpc\":\"2.0\": {raw}");
        }
    }
}

fn shorten(raw: &str) -> String {
    const MAX: usize = 400;
    if raw.len() <= MAX {
        return raw.to_owned();
    }
    let mut end = MAX;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &raw[..end], raw.len())
}

#[allow(
    unsafe_code,
    reason = "kill(2) has no safe wrapper among the declared dependencies"
)]
fn send_signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) takes plain integers and touches no memory of this process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        panic!(
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}
