//! Reading whole messages from a byte stream, never buffering more than the size cap.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};

use super::{Framing, FramingChoice};

/// Bytes read from stdin per system call; 64 KiB keeps syscalls few for large messages
/// without holding much memory per connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// One whole message body (not yet parsed; may be invalid UTF-8 or JSON).
    Message(Vec<u8>),
    /// A message longer than the cap was skipped without being held in memory.
    TooLarge,
    /// A Content-Length header block that could not be understood; the stream is resynchronised
    /// at the next header block.
    BadHeader(String),
    /// End of input.
    Eof,
}

/// Reads messages in one framing from an async byte stream.
pub struct MessageReader<R> {
    inner: BufReader<R>,
    framing: Option<Framing>,
    max_bytes: usize,
    /// Bytes consumed while detecting the framing that belong to the first NDJSON line.
    pending: Vec<u8>,
}

/// A UTF-8 byte-order mark, tolerated before the first message.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// A reader with a framing choice and a cap on one message's size.
    pub fn new(input: R, choice: FramingChoice, max_bytes: usize) -> Self {
        let framing = match choice {
            FramingChoice::Auto => None,
            FramingChoice::Ndjson => Some(Framing::Ndjson),
            FramingChoice::ContentLength => Some(Framing::ContentLength),
        };
        Self {
            inner: BufReader::with_capacity(READ_BUFFER_BYTES, input),
            framing,
            max_bytes,
            pending: Vec::new(),
        }
    }

    /// The framing in use, detecting it from the first non-whitespace byte when it was `auto`.
    /// Returns `None` at end of input before any message.
    pub async fn framing(&mut self) -> std::io::Result<Option<Framing>> {
        if let Some(framing) = self.framing {
            return Ok(Some(framing));
        }
        // How much of a BOM has been consumed: it may arrive split over reads like anything
        // else (found by fuzzing: a BOM split from the `C` after it was read as NDJSON, whole
        // as a `Content-Length` header).
        let mut bom = 0;
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok((bom > 0).then(|| self.detected(Framing::Ndjson, bom)));
            }
            let mut used = 0;
            let mut found = None;
            for &b in buf {
                // Whitespace before the first message is never part of it, whichever read it
                // arrived in (found by fuzzing: it used to be kept when it came in the same read
                // as the message and dropped when it came in an earlier one).
                if bom == 0 && b.is_ascii_whitespace() {
                    used += 1;
                    continue;
                }
                if bom < BOM.len() && b == BOM[bom] {
                    bom += 1;
                    used += 1;
                    continue;
                }
                let whole_bom_or_none = bom == 0 || bom == BOM.len();
                found = Some(if whole_bom_or_none && (b == b'C' || b == b'c') {
                    Framing::ContentLength
                } else {
                    Framing::Ndjson
                });
                break;
            }
            self.inner.consume(used);
            if let Some(framing) = found {
                return Ok(Some(self.detected(framing, bom)));
            }
        }
    }

    /// Settles on `framing`. The `bom` bytes consumed while detecting it go back in front of an
    /// NDJSON stream's first line: a whole BOM is stripped there as on any line, a partial one
    /// is the message's own bytes. Before a `Content-Length` header a BOM is dropped.
    fn detected(&mut self, framing: Framing, bom: usize) -> Framing {
        if framing == Framing::Ndjson {
            self.pending = BOM[..bom].to_vec();
        }
        self.framing = Some(framing);
        framing
    }

    /// Reads the next message.
    pub async fn next(&mut self) -> std::io::Result<Inbound> {
        match self.framing().await? {
            None => Ok(Inbound::Eof),
            Some(Framing::Ndjson) => self.next_line().await,
            Some(Framing::ContentLength) => self.next_content_length().await,
        }
    }

    /// The next non-blank line, without its line ending and BOM.
    async fn next_line(&mut self) -> std::io::Result<Inbound> {
        loop {
            let mut line = std::mem::take(&mut self.pending);
            let mut too_large = false;
            let ended =
                read_until_capped(&mut self.inner, &mut line, self.max_bytes, &mut too_large)
                    .await?;
            if too_large {
                return Ok(Inbound::TooLarge);
            }
            if !ended && line.is_empty() {
                return Ok(Inbound::Eof);
            }
            let body = trim_line(&line);
            if body.len() > self.max_bytes {
                return Ok(Inbound::TooLarge);
            }
            if body.iter().all(u8::is_ascii_whitespace) {
                if !ended {
                    return Ok(Inbound::Eof);
                }
                continue;
            }
            let start = body.as_ptr() as usize - line.as_ptr() as usize;
            let len = body.len();
            line.truncate(start + len);
            line.drain(..start);
            return Ok(Inbound::Message(line));
        }
    }

    /// The next `Content-Length` message.
    async fn next_content_length(&mut self) -> std::io::Result<Inbound> {
        let mut length: Option<usize> = None;
        let mut saw_header = false;
        let mut bad: Option<String> = None;
        loop {
            let mut line = Vec::new();
            let mut too_large = false;
            // Header lines are short; 8 KiB is far above any real header.
            let ended =
                read_until_capped(&mut self.inner, &mut line, 8 * 1024, &mut too_large).await?;
            if !ended && line.is_empty() && !too_large {
                return Ok(Inbound::Eof);
            }
            let text = String::from_utf8_lossy(trim_line(&line)).trim().to_string();
            if text.is_empty() && !too_large {
                if !saw_header {
                    continue;
                }
                break;
            }
            saw_header = true;
            if too_large {
                bad = Some("a header line longer than 8 KiB".into());
                continue;
            }
            match text.split_once(':') {
                Some((name, value)) if name.trim().eq_ignore_ascii_case("content-length") => {
                    match value.trim().parse::<usize>() {
                        Ok(n) => length = Some(n),
                        Err(_) => {
                            bad = Some(format!("Content-Length `{}` is not a number", value.trim()))
                        }
                    }
                }
                Some(_) => {}
                None => bad = Some(format!("`{text}` is not a header line")),
            }
            if !ended {
                return Ok(Inbound::Eof);
            }
        }
        let Some(length) = length else {
            return Ok(Inbound::BadHeader(
                bad.unwrap_or_else(|| "no Content-Length header".into()),
            ));
        };
        if let Some(reason) = bad {
            // Skip the body we were told about so the next header block lines up.
            skip_bytes(&mut self.inner, length).await?;
            return Ok(Inbound::BadHeader(reason));
        }
        if length > self.max_bytes {
            skip_bytes(&mut self.inner, length).await?;
            return Ok(Inbound::TooLarge);
        }
        let mut body = vec![0u8; length];
        tokio::io::AsyncReadExt::read_exact(&mut self.inner, &mut body).await?;
        Ok(Inbound::Message(body))
    }
}

/// Strips a trailing `\n`, `\r\n` and a leading BOM.
fn trim_line(line: &[u8]) -> &[u8] {
    let mut body = line;
    if let Some(rest) = body.strip_suffix(b"\n") {
        body = rest;
    }
    if let Some(rest) = body.strip_suffix(b"\r") {
        body = rest;
    }
    if let Some(rest) = body.strip_prefix(b"\xEF\xBB\xBF") {
        body = rest;
    }
    body
}

/// Reads up to and including `\n` into `out`, but keeps at most `cap` bytes: past that the rest
/// of the line is consumed and dropped and `too_large` is set. Returns whether a `\n` was seen.
async fn read_until_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
    too_large: &mut bool,
) -> std::io::Result<bool> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(false);
        }
        let (chunk, found) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let n = chunk.len();
        if !*too_large {
            // The cap applies to the message without its line ending; one byte of slack keeps
            // a `\r` before the `\n`, and the caller checks the trimmed length.
            let content = chunk.len() - usize::from(found);
            if out.len() + content > cap + 1 {
                *too_large = true;
                out.clear();
                out.shrink_to_fit();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        reader.consume(n);
        if found {
            return Ok(true);
        }
    }
}

async fn skip_bytes<R: AsyncBufRead + Unpin>(reader: &mut R, mut n: usize) -> std::io::Result<()> {
    while n > 0 {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(());
        }
        let take = buf.len().min(n);
        reader.consume(take);
        n -= take;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use tokio::io::AsyncReadExt;

    async fn read_all(input: &[u8], choice: FramingChoice, max: usize) -> Vec<Inbound> {
        read_from(input, choice, max).await
    }

    async fn read_from<R: AsyncRead + Unpin>(
        input: R,
        choice: FramingChoice,
        max: usize,
    ) -> Vec<Inbound> {
        let mut reader = MessageReader::new(input, choice, max);
        let mut out = Vec::new();
        loop {
            let item = reader.next().await.unwrap();
            if item == Inbound::Eof {
                return out;
            }
            out.push(item);
        }
    }

    fn msg(s: &str) -> Inbound {
        Inbound::Message(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn leading_whitespace_is_dropped_however_the_input_is_split() {
        // A fuzzing finding: `\t` then a message, in one read or in two, read differently.
        let whole = read_all(b"\t\xfc", FramingChoice::Auto, 64).await;
        let (first, second) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut first = first;
            first.write_all(b"\t").await.unwrap();
            first.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            first.write_all(b"\xfc").await.unwrap();
        });
        let mut reader = MessageReader::new(second, FramingChoice::Auto, 64);
        let split = reader.next().await.unwrap();
        writer.await.unwrap();
        assert_eq!(whole, vec![Inbound::Message(vec![0xfc])]);
        assert_eq!(split, Inbound::Message(vec![0xfc]));
    }

    #[tokio::test]
    async fn a_bom_is_read_the_same_however_the_input_is_split() {
        // A fuzzing finding: a BOM split from the `C` after it (or split itself) was taken for
        // the start of an NDJSON line; whole, it was the start of a `Content-Length` header.
        let inputs: [&[u8]; 5] = [
            b"\r\n\xEF\xBB\xBFContent-Length: 2\r\n\r\n{}",
            b"\xEF\xBB\xBF{\"a\":1}\n",
            b"\xEF\xBB{}\n",
            b"\xEF\xBB",
            b"\xEF\xBB\xBF",
        ];
        for input in inputs {
            let whole = read_all(input, FramingChoice::Auto, 64).await;
            for at in 1..input.len() {
                let (first, second) = input.split_at(at);
                let split = read_from(first.chain(second), FramingChoice::Auto, 64).await;
                assert_eq!(split, whole, "{input:?} split at {at}");
            }
        }
        assert_eq!(
            read_all(inputs[0], FramingChoice::Auto, 64).await,
            vec![msg("{}")]
        );
        assert_eq!(
            read_all(inputs[2], FramingChoice::Auto, 64).await,
            vec![Inbound::Message(b"\xEF\xBB{}".to_vec())]
        );
        assert_eq!(read_all(inputs[4], FramingChoice::Auto, 64).await, vec![]);
    }

    #[tokio::test]
    async fn ndjson_tolerates_crlf_bom_and_blank_lines() {
        let input = b"\xEF\xBB\xBF{\"a\":1}\r\n\n   \n{\"b\":2}\n{\"c\":3}";
        assert_eq!(
            read_all(input, FramingChoice::Auto, 1024).await,
            vec![msg("{\"a\":1}"), msg("{\"b\":2}"), msg("{\"c\":3}")]
        );
    }

    #[tokio::test]
    async fn an_oversized_line_is_skipped_and_the_next_one_read() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        assert_eq!(
            read_all(&input, FramingChoice::Ndjson, 100).await,
            vec![Inbound::TooLarge, msg("{\"ok\":true}")]
        );
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_cap_is_accepted() {
        let input = b"0123456789\r\n0123456789A\n";
        assert_eq!(
            read_all(input, FramingChoice::Ndjson, 10).await,
            vec![msg("0123456789"), Inbound::TooLarge]
        );
    }

    #[tokio::test]
    async fn content_length_is_detected_and_read() {
        let input = b"\r\nContent-Length: 7\r\nContent-Type: application/json\r\n\r\n{\"a\":1}content-length: 2\r\n\r\n[]";
        let mut reader = MessageReader::new(&input[..], FramingChoice::Auto, 1024);
        assert_eq!(
            reader.framing().await.unwrap(),
            Some(Framing::ContentLength)
        );
        assert_eq!(reader.next().await.unwrap(), msg("{\"a\":1}"));
        assert_eq!(reader.next().await.unwrap(), msg("[]"));
        assert_eq!(reader.next().await.unwrap(), Inbound::Eof);
    }

    #[tokio::test]
    async fn content_length_over_the_cap_is_skipped() {
        let body = "x".repeat(50);
        let input = format!("Content-Length: 50\r\n\r\n{body}Content-Length: 2\r\n\r\n{{}}");
        assert_eq!(
            read_all(input.as_bytes(), FramingChoice::ContentLength, 10).await,
            vec![Inbound::TooLarge, msg("{}")]
        );
    }

    #[tokio::test]
    async fn a_bad_content_length_is_reported_and_reading_goes_on() {
        let input = b"Content-Length: abc\r\n\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(
            read_all(input, FramingChoice::ContentLength, 100).await,
            vec![
                Inbound::BadHeader("Content-Length `abc` is not a number".into()),
                msg("{}")
            ]
        );
    }

    #[tokio::test]
    async fn forced_ndjson_treats_a_header_as_a_line() {
        let input = b"Content-Length: 2\r\n\r\n{}\n";
        assert_eq!(
            read_all(input, FramingChoice::Ndjson, 100).await,
            vec![msg("Content-Length: 2"), msg("{}")]
        );
    }
}
