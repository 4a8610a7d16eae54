//! Bounded command output: what is kept of a stream, how it is cut for the model, and UTF-8
//! decoding of chunks that may split a character.

/// The most output the model (and the item) gets: 10 KiB…
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024;
/// …and 256 lines. Both bounds keep one tool result from crowding out the conversation.
pub const MAX_OUTPUT_LINES: usize = 256;

/// How much of a command's output is kept in memory at each end. Larger than what the model
/// gets, so the final cut can still choose whole lines; bounded, so a command printing
/// gigabytes cannot exhaust memory.
const KEEP_BYTES: usize = 64 * 1024;

/// A command's combined output: the first and the last [`KEEP_BYTES`], and a count of the rest.
#[derive(Debug, Default)]
pub struct HeadTail {
    head: String,
    tail: String,
    omitted_bytes: usize,
    omitted_lines: usize,
}

impl HeadTail {
    /// Appends text.
    pub fn push(&mut self, text: &str) {
        let room = KEEP_BYTES.saturating_sub(self.head.len());
        if room > 0 {
            let split = floor_char_boundary(text, room.min(text.len()));
            self.head.push_str(&text[..split]);
            if split == text.len() {
                return;
            }
            self.tail.push_str(&text[split..]);
        } else {
            self.tail.push_str(text);
        }
        if self.tail.len() > 2 * KEEP_BYTES {
            let cut = floor_char_boundary(&self.tail, self.tail.len() - KEEP_BYTES);
            self.omitted_bytes += cut;
            self.omitted_lines += self.tail[..cut].matches('\n').count();
            self.tail.drain(..cut);
        }
    }

    /// The output cut to [`MAX_OUTPUT_BYTES`] and [`MAX_OUTPUT_LINES`].
    pub fn truncated(&self) -> String {
        let mut whole = String::with_capacity(self.head.len() + self.tail.len());
        whole.push_str(&self.head);
        whole.push_str(&self.tail);
        if self.omitted_bytes == 0 {
            return truncate(&whole, MAX_OUTPUT_BYTES, MAX_OUTPUT_LINES);
        }
        // The middle was already dropped: cut around the seam and add what was dropped there.
        let head = truncate_head(&self.head, MAX_OUTPUT_BYTES / 2, MAX_OUTPUT_LINES / 2);
        let tail = truncate_tail(&self.tail, MAX_OUTPUT_BYTES / 2, MAX_OUTPUT_LINES / 2);
        let omitted_bytes = whole.len() - head.len() - tail.len() + self.omitted_bytes;
        let omitted_lines = self.head[head.len()..].matches('\n').count()
            + self.tail[..self.tail.len() - tail.len()]
                .matches('\n')
                .count()
            + self.omitted_lines;
        join_cut(head, tail, omitted_lines, omitted_bytes)
    }
}

/// Cuts `text` to at most `max_bytes` and `max_lines` (plus a marker line), keeping the head and
/// the tail and saying how much was left out in between.
pub fn truncate(text: &str, max_bytes: usize, max_lines: usize) -> String {
    let lines = text.matches('\n').count() + usize::from(!text.ends_with('\n') && !text.is_empty());
    if text.len() <= max_bytes && lines <= max_lines {
        return text.to_owned();
    }
    let head = truncate_head(text, max_bytes / 2, max_lines / 2);
    let tail = truncate_tail(&text[head.len()..], max_bytes / 2, max_lines / 2);
    let middle = &text[head.len()..text.len() - tail.len()];
    join_cut(head, tail, middle.matches('\n').count(), middle.len())
}

fn join_cut(head: &str, tail: &str, omitted_lines: usize, omitted_bytes: usize) -> String {
    let mut out = String::with_capacity(head.len() + tail.len() + 64);
    out.push_str(head);
    if !head.is_empty() && !head.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "[… {omitted_lines} lines ({omitted_bytes} bytes) of output omitted …]\n"
    ));
    out.push_str(tail);
    out
}

/// The longest prefix of whole lines within the bounds (a prefix of one line when even the
/// first line is too long).
fn truncate_head(text: &str, max_bytes: usize, max_lines: usize) -> &str {
    let mut end = 0;
    for (count, (i, _)) in text.match_indices('\n').enumerate() {
        if count >= max_lines || i + 1 > max_bytes {
            break;
        }
        end = i + 1;
    }
    if end == 0 {
        end = floor_char_boundary(text, max_bytes.min(text.len()));
    }
    &text[..end]
}

/// The longest suffix of whole lines within the bounds (a suffix of one line when even the last
/// line is too long).
fn truncate_tail(text: &str, max_bytes: usize, max_lines: usize) -> &str {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let line_starts = body
        .rmatch_indices('\n')
        .map(|(i, _)| i + 1)
        .chain(std::iter::once(0));
    let mut start = text.len();
    for (count, candidate) in line_starts.enumerate() {
        if count >= max_lines || text.len() - candidate > max_bytes {
            break;
        }
        start = candidate;
    }
    if start == text.len() {
        start = ceil_char_boundary(text, text.len().saturating_sub(max_bytes));
    }
    &text[start..]
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Decodes a byte stream as UTF-8 chunk by chunk, replacing invalid bytes with U+FFFD and
/// holding back a character split across chunks until its remaining bytes arrive.
#[derive(Debug, Default)]
pub struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    /// Decodes the next chunk.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Decodes what is left at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn short_output_is_kept_whole() {
        assert_eq!(truncate("a\nb\n", 100, 10), "a\nb\n");
        assert_eq!(truncate("", 100, 10), "");
    }

    #[test]
    fn long_output_keeps_head_and_tail_lines() {
        let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            truncate(&text, 1000, 4),
            "line 1\nline 2\n[… 6 lines (42 bytes) of output omitted …]\nline 9\nline 10\n"
        );
    }

    #[test]
    fn long_output_is_cut_by_bytes_too() {
        let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(
            truncate(&text, 16, 100),
            "line 1\n[… 8 lines (56 bytes) of output omitted …]\nline 10\n"
        );
    }

    #[test]
    fn one_huge_line_is_cut_inside_at_char_boundaries() {
        let text = "é".repeat(20);
        assert_eq!(
            truncate(&text, 10, 100),
            "éé\n[… 0 lines (32 bytes) of output omitted …]\néé"
        );
    }

    #[test]
    fn head_tail_bounds_memory_and_counts_what_it_dropped() {
        let mut output = HeadTail::default();
        let line = "x".repeat(99) + "\n";
        for _ in 0..10_000 {
            output.push(&line);
        }
        assert_eq!(
            output.head.len() + output.tail.len() <= 3 * KEEP_BYTES,
            true
        );
        let cut = output.truncated();
        let kept_lines = cut.lines().filter(|l| l.starts_with('x')).count();
        let marker = cut.lines().find(|l| l.starts_with('[')).unwrap_or_default();
        assert_eq!(
            (kept_lines, marker.to_owned()),
            (
                102,
                format!(
                    "[… {} lines ({} bytes) of output omitted …]",
                    10_000 - 102,
                    (10_000 - 102) * 100
                )
            )
        );
    }

    #[test]
    fn decodes_characters_split_across_chunks() {
        let mut decoder = Utf8Chunks::default();
        let bytes = "é!".as_bytes();
        assert_eq!(
            (
                decoder.decode(&bytes[..1]),
                decoder.decode(&bytes[1..]),
                decoder.decode(b"\xffok"),
                decoder.decode(b"\xe2\x82"),
                decoder.finish()
            ),
            (
                String::new(),
                "é!".to_owned(),
                "\u{fffd}ok".to_owned(),
                String::new(),
                "\u{fffd}".to_owned()
            )
        );
    }
}
