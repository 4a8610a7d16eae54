//! Entry points for the fuzz targets in `fuzz/` (built with the `fuzzing` feature only).
//!
//! Each function takes arbitrary bytes, drives one parser or state machine of the server the way
//! untrusted input reaches it, and panics when an invariant or an oracle disagrees, which is how
//! the fuzzer learns of a finding. They live inside the crate so the parsers can stay private;
//! the fuzz crate sees nothing but these functions. `docs/ROBUSTNESS.md` says how to run them.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::model::sse_decode::{Decoder, Event};
use crate::tools::patch::{HunkLine, Patch, PatchOp};
use crate::transport::{FramingChoice, Inbound, MessageReader};

mod rpc;
pub use rpc::rpc;

/// Chunk sizes derived from one seed byte, so the fuzzer explores how input is split into reads.
fn chunk_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut state = u32::from(seed) | 1;
    std::iter::from_fn(move || {
        // A small xorshift: cheap, deterministic, and varied enough to split at every offset.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some(if seed == 0 {
            usize::MAX
        } else {
            1 + (state % 23) as usize
        })
    })
}

/// Splits `data` into chunks as `chunk_sizes(seed)` says.
fn split(data: &[u8], seed: u8) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = data;
    for size in chunk_sizes(seed) {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head.to_vec());
        rest = tail;
    }
    chunks
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(err) => panic!("cannot build a runtime: {err}"),
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = runtime();
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

/// An `AsyncRead` that hands out its chunks one read at a time, like a pipe would.
struct Chunked {
    chunks: std::collections::VecDeque<Vec<u8>>,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut chunk) = self.chunks.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.chunks.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Everything a reader makes of `chunks`, checking it ends and respects the size cap.
fn read_all(chunks: Vec<Vec<u8>>, choice: FramingChoice, max: usize, len: usize) -> Vec<Inbound> {
    let reader = Chunked {
        chunks: chunks.into(),
    };
    block_on(async move {
        let mut reader = MessageReader::new(reader, choice, max);
        let mut out = Vec::new();
        // Every message consumes at least one byte, so more reads than bytes means a loop.
        for _ in 0..len + 4 {
            match reader.next().await {
                Ok(Inbound::Eof) => return out,
                Ok(Inbound::Message(body)) => {
                    assert!(body.len() <= max, "a message over the cap was returned");
                    out.push(Inbound::Message(body));
                }
                Ok(other) => out.push(other),
                // Input that ends inside a message is an error that ends reading, as in the
                // serve loop; it must be the same error however the input was split.
                Err(err) => {
                    out.push(Inbound::BadHeader(format!("read error: {}", err.kind())));
                    return out;
                }
            }
        }
        panic!("the reader did not reach the end of a {len}-byte input");
    })
}

/// The framing reader: the same bytes read whole and in arbitrary chunks give the same messages.
pub fn framing(data: &[u8]) {
    let [mode, seed, cap, rest @ ..] = data else {
        return;
    };
    let choice = match mode % 3 {
        0 => FramingChoice::Auto,
        1 => FramingChoice::Ndjson,
        _ => FramingChoice::ContentLength,
    };
    let max = 16 + usize::from(*cap) * 8;
    let whole = read_all(vec![rest.to_vec()], choice, max, rest.len());
    let pieces = read_all(split(rest, *seed), choice, max, rest.len());
    assert_eq!(whole, pieces, "chunking changed what was read");
}

/// The SSE decoder, against eventsource-stream as the oracle: the same frames for the same bytes,
/// however they are split.
pub fn sse(data: &[u8]) {
    let [seed, rest @ ..] = data else {
        return;
    };
    let mut decoder = Decoder::new();
    let mut ours = Vec::new();
    let mut failed = false;
    for chunk in split(rest, *seed) {
        if decoder.push(&chunk, &mut ours).is_err() {
            failed = true;
            break;
        }
    }
    let Ok(text) = std::str::from_utf8(rest) else {
        // Invalid UTF-8 is an error for the decoder, never a panic; the oracle can't judge it.
        return;
    };
    assert!(!failed, "valid UTF-8 was refused");
    // eventsource-stream panics on a stream that starts with a BOM (a known bug of the oracle).
    if text.starts_with('\u{feff}') {
        return;
    }
    // A lone `\r` ends a line (WHATWG), also as the stream's last byte; eventsource-stream
    // waits for a `\n` that may follow and so drops that last line at the end. Give the oracle
    // the `\n` it waits for: the lines are the same.
    let reference = if rest.ends_with(b"\r") {
        reference_sse(&[rest, b"\n"].concat())
    } else {
        reference_sse(rest)
    };
    assert_eq!(ours, reference, "the decoder disagrees with the oracle");
}

fn reference_sse(bytes: &[u8]) -> Vec<Event> {
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> = vec![Ok(bytes.to_vec())];
    let events = block_on(
        futures::stream::iter(chunks)
            .eventsource()
            .collect::<Vec<_>>(),
    );
    events
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| Event {
            event: e.event,
            data: e.data,
        })
        .collect()
}

/// Drains a model stream built over `data` split by `seed`; it must end, whatever the bytes.
fn drain<F>(data: &[u8], make: F) -> usize
where
    F: FnOnce(
        futures::stream::Iter<std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>>,
    ) -> crate::model::sse::AttemptStream,
{
    use futures::StreamExt;
    let [seed, rest @ ..] = data else {
        return 0;
    };
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        split(rest, *seed).into_iter().map(Ok).collect();
    let stream = make(futures::stream::iter(chunks));
    block_on(async move {
        let mut stream = stream;
        let mut seen = 0;
        while stream.next().await.is_some() {
            seen += 1;
            // Each event comes from at least one byte of input (a frame is at least a line).
            assert!(
                seen <= rest.len() + 1,
                "the stream produced more events than bytes"
            );
        }
        seen
    })
}

/// The Responses stream parser: any bytes end in events and at most one failure, never a panic.
pub fn responses_stream(data: &[u8]) {
    drain(data, crate::model::sse::responses_events);
}

/// The Chat Completions stream parser, the same way.
pub fn chat_stream(data: &[u8]) {
    drain(data, crate::model::chat_stream::chat_events);
}

/// The patch parser: whatever it accepts prints back to a patch that parses to the same thing,
/// and no accepted path resolves outside the directory it is resolved against.
pub fn patch(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = crate::tools::patch::parse(&text) else {
        return;
    };
    assert!(!parsed.ops.is_empty(), "an accepted patch has no operation");
    let printed = print_patch(&parsed);
    match crate::tools::patch::parse(&printed) {
        Ok(again) => assert_eq!(
            again, parsed,
            "printing and parsing again changed the patch"
        ),
        Err(err) => panic!("a printed patch does not parse: {err}\n{printed}"),
    }
    let cwd = std::path::Path::new("/fuzz/cwd");
    for op in &parsed.ops {
        let paths = match op {
            PatchOp::Add { path, .. } | PatchOp::Delete { path } => vec![path],
            PatchOp::Update { path, move_to, .. } => std::iter::once(path).chain(move_to).collect(),
        };
        for path in paths {
            let resolved = crate::tools::patch::resolve(cwd, path);
            assert!(
                resolved
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir)),
                "{path:?} resolved to {resolved:?}"
            );
        }
    }
}

/// The canonical text of a parsed patch.
fn print_patch(patch: &Patch) -> String {
    let mut out = String::from("*** Begin Patch\n");
    for op in &patch.ops {
        match op {
            PatchOp::Add { path, contents } => {
                out.push_str(&format!("*** Add File: {path}\n"));
                for line in contents.split_terminator('\n') {
                    push_line(&mut out, '+', line);
                }
            }
            PatchOp::Delete { path } => out.push_str(&format!("*** Delete File: {path}\n")),
            PatchOp::Update {
                path,
                move_to,
                chunks,
            } => {
                out.push_str(&format!("*** Update File: {path}\n"));
                if let Some(to) = move_to {
                    out.push_str(&format!("*** Move to: {to}\n"));
                }
                for chunk in chunks {
                    match &chunk.context {
                        Some(context) => out.push_str(&format!("@@ {context}\n")),
                        None => out.push_str("@@\n"),
                    }
                    for line in &chunk.lines {
                        let (prefix, text) = match line {
                            HunkLine::Context(t) => (' ', t),
                            HunkLine::Remove(t) => ('-', t),
                            HunkLine::Add(t) => ('+', t),
                        };
                        push_line(&mut out, prefix, text);
                    }
                    if chunk.end_of_file {
                        out.push_str("*** End of File\n");
                    }
                }
            }
        }
    }
    out.push_str("*** End Patch\n");
    out
}

/// One patch line. The parser splits lines as `str::lines` does, which takes a `\r` before the
/// `\n` as part of the line end, so a text that itself ends in `\r` is written with `\r\n`.
fn push_line(out: &mut String, prefix: char, text: &str) {
    out.push(prefix);
    out.push_str(text);
    out.push_str(if text.ends_with('\r') { "\r\n" } else { "\n" });
}

/// The command safety classifier: whatever it calls safe is one simple command of the allowed
/// list, checked by an independent scanner of the shell's quoting rules.
pub fn safety(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let argv: Vec<String> = text.split('\0').map(str::to_owned).collect();
    if !crate::tools::safety::is_known_safe_command(&argv) {
        return;
    }
    let program = match argv.as_slice() {
        [shell, flag, script] if is_shell_wrapper(shell, flag) => match plain_words(script) {
            Some(words) => words.into_iter().next().unwrap_or_default(),
            None => panic!("a script with shell syntax was called safe: {script:?}"),
        },
        [program, ..] => program.clone(),
        [] => panic!("an empty command was called safe"),
    };
    assert!(
        matches!(
            program.as_str(),
            "ls" | "cat"
                | "head"
                | "tail"
                | "wc"
                | "pwd"
                | "echo"
                | "grep"
                | "rg"
                | "find"
                | "sed"
                | "git"
        ),
        "{program:?} is not on the allowed list but {argv:?} was called safe"
    );
}

fn is_shell_wrapper(shell: &str, flag: &str) -> bool {
    let name = shell.rsplit('/').next().unwrap_or(shell);
    matches!(name, "bash" | "sh" | "zsh" | "dash") && (flag == "-c" || flag == "-lc")
}

/// The words of a script that has nothing but words, blanks and quotes (quotes removed), or
/// `None` when it has anything else: outside quotes an operator, redirection, expansion, glob,
/// comment or line break; inside double quotes an expansion.
fn plain_words(script: &str) -> Option<Vec<String>> {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = script.chars();
    while let Some(c) = chars.next() {
        if quote == Quote::None && matches!(c, ' ' | '\t') {
            words.extend(word.take());
            continue;
        }
        let fresh = word.is_none();
        let current = word.get_or_insert_with(String::new);
        match quote {
            Quote::Single if c == '\'' => quote = Quote::None,
            Quote::Single => current.push(c),
            Quote::Double => match c {
                '"' => quote = Quote::None,
                '$' | '`' | '!' => return None,
                '\\' => match chars.next()? {
                    e @ ('"' | '\\' | '$' | '`') => current.push(e),
                    '\n' => {}
                    other => {
                        current.push('\\');
                        current.push(other);
                    }
                },
                _ => current.push(c),
            },
            Quote::None => match c {
                '\'' => quote = Quote::Single,
                '"' => quote = Quote::Double,
                '\\' => match chars.next()? {
                    '\n' => return None,
                    e => current.push(e),
                },
                '#' | '~' if fresh => return None,
                '|' | '&' | ';' | '<' | '>' | '(' | ')' | '`' | '$' | '*' | '?' | '[' | ']'
                | '{' | '}' | '!' | '\n' | '\r' => return None,
                _ => current.push(c),
            },
        }
    }
    if quote != Quote::None {
        return None;
    }
    words.extend(word);
    Some(words)
}

#[cfg(test)]
mod tests {
    //! The fuzz entry points over the seed corpora, so a stable build checks they hold.

    use super::*;

    fn seeds() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model/testdata");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        seeds.push(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}\n".to_vec());
        seeds.push(b"Content-Length: 2\r\n\r\n{}Content-Length: x\r\n\r\n".to_vec());
        seeds
    }

    #[test]
    fn every_entry_point_holds_on_the_seeds_split_every_way() {
        for seed in seeds() {
            for first in [0u8, 1, 2, 7, 200] {
                let mut data = vec![first, first.wrapping_mul(3), 40];
                data.extend_from_slice(&seed);
                framing(&data);
                sse(&data[2..]);
                responses_stream(&data[2..]);
                chat_stream(&data[2..]);
                patch(&seed);
                safety(&seed);
            }
        }
    }

    /// Every input a fuzzer found a problem with (`fuzz/seeds/<target>/regression-*`), through
    /// its target, so that the stable suite fails if one comes back.
    #[test]
    fn every_regression_seed_holds() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 7] = [
            ("framing", framing),
            ("sse", sse),
            ("responses_stream", responses_stream),
            ("chat_stream", chat_stream),
            ("patch", patch),
            ("safety", safety),
            ("rpc", rpc),
        ];
        let mut ran = 0;
        for (target, run) in targets {
            let Ok(entries) = std::fs::read_dir(seeds.join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("regression-") {
                    run(&std::fs::read(&path).unwrap());
                    ran += 1;
                }
            }
        }
        assert!(
            ran >= 6,
            "only {ran} regression seeds found under {}",
            seeds.display()
        );
    }

    #[test]
    fn the_patch_oracle_round_trips_a_full_patch() {
        let text = "*** Begin Patch\n*** Add File: a.txt\n+one\n*** Update File: b.txt\n*** Move to: c.txt\n@@ fn main\n ctx\n-old\n+new\n*** End of File\n*** Delete File: d.txt\n*** End Patch\n";
        patch(text.as_bytes());
        assert_eq!(
            print_patch(&crate::tools::patch::parse(text).unwrap()),
            text
        );
    }

    #[test]
    fn the_safety_oracle_accepts_safe_commands_and_rejects_shell_syntax() {
        safety(b"bash\0-lc\0ls -la 'my dir'");
        safety(b"git\0status");
        // dash is one of the shells the classifier unwraps (found by the fuzzer: the oracle
        // did not know it and took `dash` for the program).
        safety(b"dash\0-lc\0ls -\x93r\xa2");
        assert_eq!(
            plain_words("grep -n \"a b\" r\"\"g"),
            Some(vec!["grep".into(), "-n".into(), "a b".into(), "rg".into()])
        );
        assert_eq!(plain_words("ls | sh"), None);
        assert_eq!(plain_words("echo \"$HOME\""), None);
        assert_eq!(plain_words("cat ~/.ssh/id_rsa"), None);
    }
}
