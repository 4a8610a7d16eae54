//! The JSON-RPC fuzz target: the real serve loop ([`Connection`], a [`MethodTable`], the
//! [`Hooks`]) with a small fake application behind it, checked against an independent reading of
//! the input.
//!
//! The input is a framing choice, a chunking seed, a size cap and the bytes a client writes. The
//! checks: the connection ends; the output is well framed and every message in it is valid JSON;
//! each is a reply (an id, `result` xor `error`), a non-empty batch of replies, or an event of the
//! fake app; every well-formed request (JSON-RPC 2.0 to the letter) gets exactly one reply that
//! carries its id exactly as it was sent, and no id gets more replies than input messages carried
//! it; an echo's result holds the request's own params; no event comes before the reply of the
//! request that caused it, and every such request's event comes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use agent_server_schema::methods::Method;
use agent_server_schema::rpc::ErrorKind;
use jsonrpsee::Methods;
use schemars::JsonSchema;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{read_all, split};
use crate::rpc::ServeConfig;
use crate::rpc::{Connection, Ended, Hooks, MethodTable, Peer, RequestContext, RpcError};
use crate::transport::{Framing, FramingChoice, Inbound};

/// The fake app's methods. `fuzz/refused` is registered too, but the admission hook refuses it.
const ECHO: &str = "fuzz/echo";
const FAIL: &str = "fuzz/fail";
const SLOW: &str = "fuzz/slow";
const NOTIFY: &str = "fuzz/notify";
const STOP: &str = "fuzz/stop";
const REFUSED: &str = "fuzz/refused";
/// The notification `fuzz/notify` causes, once its reply is queued.
const EVENT: &str = "fuzz/event";

/// How long one connection may take before the target calls it a hang.
const HANG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
struct TagParams {
    #[serde(default)]
    tag: u32,
    #[serde(default)]
    yields: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Echoed {
    echo: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Tagged {
    tag: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Notified {
    notified: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
struct Empty {}

macro_rules! fake_method {
    ($ty:ident, $name:expr, $params:ty, $result:ty) => {
        struct $ty;
        impl Method for $ty {
            const NAME: &'static str = $name;
            type Params = $params;
            type Result = $result;
        }
    };
}

fake_method!(Echo, ECHO, Value, Echoed);
fake_method!(Fail, FAIL, Value, Empty);
fake_method!(Slow, SLOW, TagParams, Tagged);
fake_method!(Notify, NOTIFY, TagParams, Notified);
fake_method!(Stop, STOP, Empty, Empty);
fake_method!(Refused, REFUSED, Value, Empty);

/// The fake application: what its handlers share.
struct App {
    peer: Arc<Peer>,
    stop: CancellationToken,
    background: TaskTracker,
}

#[async_trait::async_trait]
impl Hooks for App {
    fn admit(&self, method: &str) -> Result<(), RpcError> {
        if method == REFUSED {
            return Err(RpcError::new(
                ErrorKind::InvalidRequest,
                "refused by the fake app",
            ));
        }
        Ok(())
    }

    async fn input_closed(&self) {
        self.background.close();
        self.background.wait().await;
    }

    async fn stopping(&self) {
        self.background.close();
        self.background.wait().await;
    }
}

fn methods(app: &Arc<App>) -> Methods {
    let mut table = MethodTable::new(Arc::clone(app));
    table
        .add::<Echo, _, _>(|_, echo: Value, _| async move { Ok(Echoed { echo }) })
        .add::<Fail, _, _>(|_, _, _| async move {
            Err(RpcError::internal("the fake app fails this method"))
        })
        .add::<Slow, _, _>(|_, params: TagParams, _| async move {
            for _ in 0..params.yields.min(32) {
                tokio::task::yield_now().await;
            }
            Ok(Tagged { tag: params.tag })
        })
        .add::<Notify, _, _>(
            |app: Arc<App>, params: TagParams, request: RequestContext| async move {
                let peer = Arc::clone(&app.peer);
                let gate = request.reply_gate;
                app.background.spawn(async move {
                    gate.opened().await;
                    peer.notify_raw(EVENT, &Tagged { tag: params.tag }).await;
                });
                Ok(Notified {
                    notified: params.tag,
                })
            },
        )
        .add::<Stop, _, _>(|app: Arc<App>, _: Empty, _| async move {
            app.stop.cancel();
            Ok(Empty {})
        })
        .add::<Refused, _, _>(|_, _, _| async move { Ok(Empty {}) });
    table.into_methods()
}

/// The output: a byte sink that says when the writer let go of it (everything is written then).
struct Output {
    bytes: Vec<u8>,
    done: mpsc::Sender<Vec<u8>>,
}

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let _ = self.done.send(std::mem::take(&mut self.bytes));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => panic!("cannot build a runtime: {err}"),
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = runtime();
}

/// Serves `chunks` on a fresh connection; returns how it ended, the framing and the output.
fn serve(
    chunks: Vec<Vec<u8>>,
    choice: FramingChoice,
    max: usize,
) -> (Ended, Option<Framing>, Vec<u8>) {
    let (done, written) = mpsc::channel();
    let output = Output {
        bytes: Vec::new(),
        done,
    };
    let connection = Connection::new(ServeConfig {
        framing: choice,
        max_message_bytes: max,
    });
    let peer = connection.peer();
    let app = Arc::new(App {
        peer: Arc::clone(&peer),
        stop: connection.stop_token(),
        background: TaskTracker::new(),
    });
    let input = super::Chunked {
        chunks: chunks.into(),
    };
    let run = connection.run(methods(&app), app, input, Box::new(output));
    let ended = RUNTIME.with(|rt| rt.block_on(async { tokio::time::timeout(HANG, run).await }));
    let Ok(ended) = ended else {
        panic!("the connection did not end within {HANG:?}");
    };
    let framing = peer.framing();
    drop(peer);
    // The writer may outlive its grace on a starved machine; it still writes everything
    // queued, so wait for it to let go of the output rather than check a partial one.
    match written.recv_timeout(HANG) {
        Ok(bytes) => (ended, framing, bytes),
        Err(err) => panic!("the writer never finished: {err}"),
    }
}

/// The JSON-RPC layer on a fake app: see the module doc for what is checked.
pub fn rpc(data: &[u8]) {
    let [mode, seed, cap, rest @ ..] = data else {
        return;
    };
    let choice = match mode % 3 {
        0 => FramingChoice::Auto,
        1 => FramingChoice::Ndjson,
        _ => FramingChoice::ContentLength,
    };
    let max = 64 + usize::from(*cap) * 16;
    let (ended, framing, output) = serve(split(rest, *seed), choice, max);
    // The messages as the server's reader sees them (the framing target checks that reader).
    let inputs: Vec<Vec<u8>> = read_all(split(rest, *seed), choice, max, rest.len())
        .into_iter()
        .filter_map(|inbound| match inbound {
            Inbound::Message(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    check(&inputs, framing, &output, ended == Ended::Stopped);
}

/// Checks the output of a connection against its input messages (see the module doc).
pub(super) fn check(inputs: &[Vec<u8>], framing: Option<Framing>, output: &[u8], stopped: bool) {
    let expected = Expected::read(inputs);
    let mut replies: HashMap<String, usize> = HashMap::new();
    let mut notified: HashMap<u64, usize> = HashMap::new();
    let mut events: HashMap<u64, usize> = HashMap::new();
    for text in framed_messages(output, framing) {
        // Syntax only: JSON sets no limit on numbers, and ids are echoed as sent.
        let message: Box<RawValue> = match serde_json::from_str(&text) {
            Ok(message) => message,
            Err(err) => panic!("the server wrote a message that is not JSON ({err}): {text:?}"),
        };
        let items: Vec<Box<RawValue>> = if message.get().starts_with('[') {
            serde_json::from_str(message.get()).unwrap_or_default()
        } else {
            vec![message]
        };
        assert!(!items.is_empty(), "the server wrote an empty batch");
        for item in items {
            let Some(members) = Members::of(item.get()) else {
                panic!("the server wrote something other than an object: {item}");
            };
            if let Some(tag) = event_tag(&members) {
                let seen = events.entry(tag).or_default();
                *seen += 1;
                assert!(
                    *seen <= notified.get(&tag).copied().unwrap_or(0),
                    "event {tag} came before the reply of the request that caused it"
                );
                continue;
            }
            let (id, result) = reply_parts(&members, &item);
            if let Some(tag) = result.as_ref().and_then(|r| r.get("notified")?.as_u64()) {
                *notified.entry(tag).or_default() += 1;
            }
            expected.check_echo(&id, result.as_ref(), stopped);
            *replies.entry(id).or_default() += 1;
        }
    }
    expected.check_counts(&replies, stopped);
    if !stopped {
        assert_eq!(events, notified, "a notify request's event is missing");
    }
}

/// The tag of an event of the fake app, or `None` for anything else.
fn event_tag(members: &Members) -> Option<u64> {
    if members.raw("method")? != format!("\"{EVENT}\"") {
        return None;
    }
    assert!(members.raw("id").is_none(), "an event carries an id");
    assert_eq!(
        members.raw("jsonrpc").as_deref(),
        Some("\"2.0\""),
        "an event without jsonrpc 2.0"
    );
    Some(
        members
            .value("params")?
            .get("tag")?
            .as_u64()
            .unwrap_or(u64::MAX),
    )
}

/// Checks one reply's shape; returns its raw id and its result, if it has one.
fn reply_parts(members: &Members, item: &RawValue) -> (String, Option<Value>) {
    assert!(
        !members.has_duplicates(),
        "a reply with a member twice: {item}"
    );
    assert_eq!(members.raw("jsonrpc").as_deref(), Some("\"2.0\""), "{item}");
    let (result, error) = (members.raw("result"), members.value("error"));
    assert!(
        result.is_some() != members.raw("error").is_some(),
        "a reply needs result xor error: {item}"
    );
    if members.raw("error").is_some() {
        let error = error.unwrap_or_default();
        assert!(
            error["code"].is_i64() && error["message"].is_string(),
            "an error object without an integer code and a message: {item}"
        );
    }
    let Some(id) = members.raw("id") else {
        panic!("a reply without an id: {item}");
    };
    (id, members.value("result"))
}

/// The messages in `output` as the framing frames them; panics on anything badly framed.
fn framed_messages(output: &[u8], framing: Option<Framing>) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(output) else {
        panic!("the output is not UTF-8");
    };
    match framing {
        None => {
            assert!(
                text.is_empty(),
                "output before the framing was known: {text:?}"
            );
            Vec::new()
        }
        Some(Framing::Ndjson) => {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "a last line without \\n"
            );
            text.split_terminator('\n')
                .map(|line| {
                    assert!(!line.trim().is_empty(), "an empty line in the output");
                    line.to_owned()
                })
                .collect()
        }
        Some(Framing::ContentLength) => content_length_messages(text),
    }
}

fn content_length_messages(mut text: &str) -> Vec<String> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let Some((header, rest)) = text.split_once("\r\n\r\n") else {
            panic!("a header without its blank line: {text:?}");
        };
        let Some(len) = header
            .strip_prefix("Content-Length: ")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            panic!("a bad header: {header:?}");
        };
        let Some(body) = rest.get(..len) else {
            panic!("a body shorter than its Content-Length: {rest:?}");
        };
        out.push(body.to_owned());
        text = &rest[len..];
    }
    out
}

/// An object's members in order, duplicates kept, each value as raw JSON.
struct Members(Vec<(String, Box<RawValue>)>);

impl Members {
    /// The members of `text`, or `None` when it is not a JSON object.
    fn of(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The raw text of the first member called `key`.
    fn raw(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.get().to_owned())
    }

    /// The value of the only member called `key` (`None` when absent or duplicated).
    fn value(&self, key: &str) -> Option<Value> {
        let mut found = self.0.iter().filter(|(k, _)| k == key);
        let first = found.next()?;
        if found.next().is_some() {
            return None;
        }
        serde_json::from_str(first.1.get()).ok()
    }

    fn has_duplicates(&self) -> bool {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Object)
    }
}

/// What the input asks for, read independently of the server's classifier.
#[derive(Default)]
struct Expected {
    /// Well-formed requests per raw id: each must get exactly one reply.
    requests: HashMap<String, usize>,
    /// Objects carrying each raw id (any member `id`): no id gets more replies than this.
    carried: HashMap<String, usize>,
    /// The params of the echo requests whose id no other message carries.
    echoes: HashMap<String, Value>,
}

impl Expected {
    fn read(inputs: &[Vec<u8>]) -> Self {
        let mut expected = Self::default();
        let mut echoes = Vec::new();
        for bytes in inputs {
            let Ok(text) = std::str::from_utf8(bytes) else {
                continue;
            };
            let objects: Vec<Box<RawValue>> = match serde_json::from_str::<Box<RawValue>>(text) {
                Ok(raw) if raw.get().starts_with('[') => {
                    serde_json::from_str(raw.get()).unwrap_or_default()
                }
                Ok(raw) => vec![raw],
                Err(_) => Vec::new(),
            };
            for object in objects {
                let Some(members) = Members::of(object.get()) else {
                    continue;
                };
                for (_, id) in members.0.iter().filter(|(k, _)| k == "id") {
                    *expected.carried.entry(id.get().to_owned()).or_default() += 1;
                }
                if let Some((id, method, params)) = well_formed_request(&members) {
                    *expected.requests.entry(id.clone()).or_default() += 1;
                    if method == ECHO {
                        echoes.push((id, params));
                    }
                }
            }
        }
        for (id, params) in echoes {
            if expected.carried.get(&id) == Some(&1) && id != "null" && !has_float(&params) {
                expected.echoes.insert(id, params);
            }
        }
        expected
    }

    /// An echo's result is its own request's params (when the reply is not an error).
    fn check_echo(&self, id: &str, result: Option<&Value>, stopped: bool) {
        if let (Some(params), Some(result), false) = (self.echoes.get(id), result, stopped) {
            assert_eq!(
                result.get("echo"),
                Some(params),
                "the echo answered to id {id} is not that request's params"
            );
        }
    }

    fn check_counts(&self, replies: &HashMap<String, usize>, stopped: bool) {
        for (id, count) in replies {
            if id != "null" {
                let carried = self.carried.get(id).copied().unwrap_or(0);
                assert!(
                    *count <= carried,
                    "{count} replies to id {id}, carried by {carried} input messages"
                );
            }
        }
        if stopped {
            return;
        }
        for (id, count) in &self.requests {
            let got = replies.get(id).copied().unwrap_or(0);
            assert!(
                got >= *count,
                "{count} well-formed requests with id {id} got {got} replies"
            );
        }
    }
}

/// A request as JSON-RPC 2.0 defines it, read without the server's code: `jsonrpc` "2.0", a
/// string `method`, an `id` that is a string, number or null, `params` absent, null, an object
/// or an array, no member twice. Returns its raw id, method and params (`{}` when absent).
fn well_formed_request(members: &Members) -> Option<(String, String, Value)> {
    if members.has_duplicates() || members.value("jsonrpc")? != "2.0" {
        return None;
    }
    let method = members.value("method")?.as_str()?.to_owned();
    let id = members.value("id")?;
    if !(id.is_string() || id.is_number() || id.is_null()) {
        return None;
    }
    let params = match members.value("params") {
        None if members.raw("params").is_none() => Value::Object(Default::default()),
        None => return None,
        Some(Value::Null) => Value::Object(Default::default()),
        Some(p @ (Value::Object(_) | Value::Array(_))) => p,
        Some(_) => return None,
    };
    Some((members.raw("id")?, method, params))
}

/// Whether `value` holds a fractional number (a float may not survive a second parse exactly).
fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    //! The rpc entry point over its seeds, and the checker shown to catch each kind of fault.

    use super::*;

    fn seed_files() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/rpc");
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(seeds.len() >= 4, "the rpc seeds are missing");
        seeds
    }

    #[test]
    fn the_rpc_entry_point_holds_on_its_seeds_split_every_way() {
        for seed in seed_files() {
            for (mode, split) in [(None, 0u8), (None, 1), (None, 5), (Some(0u8), 200)] {
                let mut data = seed.clone();
                data[1] = split;
                if let Some(mode) = mode {
                    data[0] = mode;
                }
                rpc(&data);
            }
        }
    }

    const REQUEST: &str = r#"{"jsonrpc":"2.0","id":"a","method":"fuzz/echo","params":[1]}"#;
    const NOTIFY_1: &str = r#"{"jsonrpc":"2.0","id":2,"method":"fuzz/notify","params":{"tag":1}}"#;
    const ECHO_REPLY: &str = r#"{"jsonrpc":"2.0","id":"a","result":{"echo":[1]}}"#;
    const NOTIFIED: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"notified":1}}"#;
    const EVENT_1: &str = r#"{"jsonrpc":"2.0","method":"fuzz/event","params":{"tag":1}}"#;

    fn holds(output: &[&str]) -> bool {
        let inputs = vec![REQUEST.as_bytes().to_vec(), NOTIFY_1.as_bytes().to_vec()];
        let mut text = String::new();
        for line in output {
            text.push_str(line);
            text.push('\n');
        }
        std::panic::catch_unwind(|| check(&inputs, Some(Framing::Ndjson), text.as_bytes(), false))
            .is_ok()
    }

    #[test]
    fn the_checker_accepts_a_right_output_and_catches_each_fault() {
        assert!(holds(&[ECHO_REPLY, NOTIFIED, EVENT_1]));
        assert!(holds(&[NOTIFIED, ECHO_REPLY, EVENT_1]));
        // A missing reply, a second reply, an invented id.
        assert!(!holds(&[NOTIFIED, EVENT_1]));
        assert!(!holds(&[ECHO_REPLY, ECHO_REPLY, NOTIFIED, EVENT_1]));
        assert!(!holds(&[
            ECHO_REPLY,
            NOTIFIED,
            EVENT_1,
            r#"{"jsonrpc":"2.0","id":3,"result":{}}"#
        ]));
        // The id changed its spelling on the way back.
        assert!(!holds(&[
            r#"{"jsonrpc":"2.0","id":"\u0061","result":{"echo":[1]}}"#,
            NOTIFIED,
            EVENT_1
        ]));
        // Another request's params echoed; an event before its reply; a missing event.
        assert!(!holds(&[
            r#"{"jsonrpc":"2.0","id":"a","result":{"echo":[2]}}"#,
            NOTIFIED,
            EVENT_1
        ]));
        assert!(!holds(&[ECHO_REPLY, EVENT_1, NOTIFIED]));
        assert!(!holds(&[ECHO_REPLY, NOTIFIED]));
        // Not JSON, result and error together, a broken frame.
        assert!(!holds(&[ECHO_REPLY, NOTIFIED, EVENT_1, "{oops"]));
        assert!(!holds(&[
            r#"{"jsonrpc":"2.0","id":"a","result":{"echo":[1]},"error":{"code":1,"message":"x"}}"#,
            NOTIFIED,
            EVENT_1
        ]));
        assert!(!holds(&[ECHO_REPLY, NOTIFIED, EVENT_1, ""]));
    }

    #[test]
    fn a_request_that_breaks_the_rules_is_not_counted_as_well_formed() {
        let judge = |text: &str| well_formed_request(&Members::of(text).unwrap()).is_some();
        assert!(judge(
            r#"{"jsonrpc":"2.0","id":null,"method":"m","params":null}"#
        ));
        assert!(!judge(r#"{"id":1,"method":"m"}"#));
        assert!(!judge(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#));
        assert!(!judge(r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#));
        assert!(!judge(
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#
        ));
    }
}
