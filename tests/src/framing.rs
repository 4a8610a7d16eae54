//! Both wire framings, from the client's side: encoding outgoing messages and splitting the
//! server's stdout into messages.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

/// How the test client frames what it writes and how it splits what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON message per line.
    Ndjson,
    /// LSP base protocol: `Content-Length: N\r\n\r\n` then N bytes of JSON.
    ContentLength,
}

impl Framing {
    /// Frames one serialized message for the wire.
    pub fn encode(self, json: &str) -> Vec<u8> {
        match self {
            Framing::Ndjson => format!("{json}\n").into_bytes(),
            Framing::ContentLength => {
                format!("Content-Length: {}\r\n\r\n{json}", json.len()).into_bytes()
            }
        }
    }
}

/// One unit the stdout reader hands over: the text of a message, or why the bytes on stdout
/// could not be split into one (the server broke the framing).
pub type Frame = Result<String, String>;

/// Reads `stdout` until EOF, sending every frame to `frames`. Stops early when the receiver is
/// gone. Frames are forwarded as text; parsing them is the receiver's business, so that a
/// non-JSON line is reported where the test can see it.
pub async fn read_frames(
    stdout: impl AsyncRead + Unpin,
    framing: Framing,
    frames: UnboundedSender<Frame>,
) {
    let mut reader = BufReader::new(stdout);
    loop {
        let frame = match framing {
            Framing::Ndjson => read_line_frame(&mut reader).await,
            Framing::ContentLength => read_content_length_frame(&mut reader).await,
        };
        match frame {
            None => return,
            Some(frame) => {
                let broken = frame.is_err();
                if frames.send(frame).is_err() || broken {
                    return;
                }
            }
        }
    }
}

/// One `\n`-terminated line without its `\n` (a `\r` is kept, so tests can see it). `None` at
/// a clean EOF.
async fn read_line_frame(reader: &mut (impl AsyncBufReadExt + Unpin)) -> Option<Frame> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line).await {
        Ok(0) => None,
        Ok(_) => {
            if line.last() != Some(&b'\n') {
                return Some(Err(format!(
                    "stdout ended inside a line: {:?}",
                    String::from_utf8_lossy(&line)
                )));
            }
            line.pop();
            Some(String::from_utf8(line).map_err(|e| format!("stdout line is not UTF-8: {e}")))
        }
        Err(e) => Some(Err(format!("reading stdout failed: {e}"))),
    }
}

/// One `Content-Length` framed message body. `None` at a clean EOF between messages.
async fn read_content_length_frame(
    reader: &mut (impl AsyncBufReadExt + AsyncReadExt + Unpin),
) -> Option<Frame> {
    let mut length = None;
    let mut first = true;
    loop {
        let mut header = Vec::new();
        match reader.read_until(b'\n', &mut header).await {
            Ok(0) if first => return None,
            Ok(0) => return Some(Err("stdout ended inside a Content-Length header".into())),
            Ok(_) => {}
            Err(e) => return Some(Err(format!("reading stdout failed: {e}"))),
        }
        first = false;
        let text = String::from_utf8_lossy(&header).into_owned();
        let Some(text) = text.strip_suffix("\r\n") else {
            return Some(Err(format!(
                "a Content-Length header line does not end in \\r\\n: {text:?}"
            )));
        };
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            return Some(Err(format!("not a header line: {text:?}")));
        };
        if name.trim().eq_ignore_ascii_case("content-length") {
            match value.trim().parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return Some(Err(format!("bad Content-Length value: {text:?}"))),
            }
        }
    }
    let Some(length) = length else {
        return Some(Err("a header block without Content-Length".into()));
    };
    let mut body = vec![0; length];
    if let Err(e) = reader.read_exact(&mut body).await {
        return Some(Err(format!(
            "stdout ended inside a {length}-byte message body: {e}"
        )));
    }
    Some(String::from_utf8(body).map_err(|e| format!("message body is not UTF-8: {e}")))
}
