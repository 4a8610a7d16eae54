//! Parser of the `*** Begin Patch` … `*** End Patch` envelope the model writes.
//!
//! ```text
//! *** Begin Patch
//! *** Add File: path          followed by the file's lines, each prefixed with `+`
//! *** Delete File: path
//! *** Update File: path
//! *** Move to: new/path       optional, right after `Update File`
//! @@ optional context line    starts a hunk; the first hunk may omit it
//!  context line               (a space), `-removed`, `+added`; an empty line is empty context
//! *** End of File             optional: the hunk's lines end the file
//! *** End Patch
//! ```
//!
//! The parser is lenient where models are sloppy in harmless ways: surrounding blank lines,
//! trailing whitespace on marker lines, a heredoc wrapper (`<<'EOF'` … `EOF`) left around the
//! envelope, and blank lines between file operations.

/// A parsed patch: file operations in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// The operations, applied in this order.
    pub ops: Vec<PatchOp>,
}

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOp {
    /// Create a file (replacing one that exists) with these contents.
    Add {
        /// Path as written in the patch.
        path: String,
        /// The new contents, each line ending in `\n`.
        contents: String,
    },
    /// Delete a file.
    Delete {
        /// Path as written in the patch.
        path: String,
    },
    /// Change a file in place, optionally moving it.
    Update {
        /// Path as written in the patch.
        path: String,
        /// Where the file moves to, if it moves.
        move_to: Option<String>,
        /// The hunks, in file order.
        chunks: Vec<Chunk>,
    },
}

/// One `@@` hunk of an update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// The text after `@@ `: a line that appears before the hunk, used to find it.
    pub context: Option<String>,
    /// The hunk's lines, without their prefix.
    pub lines: Vec<HunkLine>,
    /// The hunk ends at the end of the file (`*** End of File`).
    pub end_of_file: bool,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    /// ` line`: expected in the file and kept.
    Context(String),
    /// `-line`: expected in the file and removed.
    Remove(String),
    /// `+line`: inserted.
    Add(String),
}

impl Chunk {
    /// The lines the hunk expects in the file (context and `-` lines).
    pub fn old_lines(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                HunkLine::Context(t) | HunkLine::Remove(t) => Some(t.clone()),
                HunkLine::Add(_) => None,
            })
            .collect()
    }
}

/// Why a patch could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid patch at line {line}: {message}")]
pub struct ParseError {
    /// 1-based line of the patch text where the problem is.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File: ";
const DELETE: &str = "*** Delete File: ";
const UPDATE: &str = "*** Update File: ";
const MOVE_TO: &str = "*** Move to: ";
const END_OF_FILE: &str = "*** End of File";

/// Parses a whole patch; nothing touches the disk here.
pub fn parse(input: &str) -> Result<Patch, ParseError> {
    let lines: Vec<&str> = input.lines().collect();
    let (first, last) = envelope_bounds(&lines)?;
    let mut parser = Parser {
        lines: &lines,
        pos: first + 1,
        end: last,
    };
    let mut ops = Vec::new();
    while parser.pos < parser.end {
        let line = parser.lines[parser.pos].trim_end();
        if line.trim().is_empty() {
            parser.pos += 1;
            continue;
        }
        ops.push(parser.file_op()?);
    }
    if ops.is_empty() {
        return Err(ParseError {
            line: last + 1,
            message: "the patch contains no file operation; add `*** Add File:`, \
                      `*** Update File:` or `*** Delete File:` sections"
                .to_owned(),
        });
    }
    Ok(Patch { ops })
}

/// Finds the `*** Begin Patch` and `*** End Patch` lines, skipping blank lines and a heredoc
/// wrapper around them.
fn envelope_bounds(lines: &[&str]) -> Result<(usize, usize), ParseError> {
    let is_blank = |l: &&str| l.trim().is_empty();
    let mut first = lines.iter().position(|l| !is_blank(l)).unwrap_or(0);
    let mut last = lines.iter().rposition(|l| !is_blank(l)).unwrap_or(0);
    if let Some(delimiter) = lines.get(first).and_then(|l| heredoc_delimiter(l))
        && last > first
        && lines[last].trim() == delimiter
    {
        first += 1;
        last -= 1;
    }
    if lines.get(first).map(|l| l.trim()) != Some(BEGIN) {
        return Err(ParseError {
            line: first + 1,
            message: format!("the patch must start with `{BEGIN}`"),
        });
    }
    if last <= first || lines[last].trim() != END {
        return Err(ParseError {
            line: last + 1,
            message: format!("the patch must end with `{END}`"),
        });
    }
    Ok((first, last))
}

/// `<<'EOF'`, `<<"EOF"`, `<<EOF` → `EOF`.
fn heredoc_delimiter(line: &str) -> Option<&str> {
    let rest = line
        .trim()
        .strip_prefix("<<")?
        .trim_start_matches('-')
        .trim();
    let unquoted = rest.trim_matches(|c| c == '\'' || c == '"');
    (!unquoted.is_empty() && unquoted.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then_some(unquoted)
}

/// An indented file header (`  *** Update File: x`) or `*** End Patch` ends the hunk before it
/// rather than being read as a context line: the text after the padding is exactly a header
/// the model meant, and a file line that reads like one is far less likely than a padded header.
fn is_padded_header(line: &str) -> bool {
    let trimmed = line.trim();
    trimmed != line.trim_end()
        && (trimmed == END
            || [ADD, DELETE, UPDATE, MOVE_TO]
                .iter()
                .any(|h| trimmed.starts_with(h) && trimmed.len() > h.len()))
}

struct Parser<'a> {
    lines: &'a [&'a str],
    pos: usize,
    end: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.pos + 1,
            message: message.into(),
        }
    }

    fn current(&self) -> Option<&str> {
        (self.pos < self.end).then(|| self.lines[self.pos])
    }

    fn file_op(&mut self) -> Result<PatchOp, ParseError> {
        // Models sometimes indent the headers; the envelope lines are accepted padded too.
        let line = self.lines[self.pos].trim();
        if let Some(path) = line.strip_prefix(ADD) {
            let path = self.path(path)?;
            self.pos += 1;
            return Ok(PatchOp::Add {
                path,
                contents: self.add_lines()?,
            });
        }
        if let Some(path) = line.strip_prefix(DELETE) {
            let path = self.path(path)?;
            self.pos += 1;
            return Ok(PatchOp::Delete { path });
        }
        if let Some(path) = line.strip_prefix(UPDATE) {
            let path = self.path(path)?;
            self.pos += 1;
            let move_to = match self.current().map(str::trim) {
                Some(next) if next.starts_with(MOVE_TO) => {
                    let target = self.path(&next[MOVE_TO.len()..])?;
                    self.pos += 1;
                    Some(target)
                }
                _ => None,
            };
            let chunks = self.chunks()?;
            if chunks.is_empty() && move_to.is_none() {
                return Err(self.error(format!(
                    "`{UPDATE}{path}` has no hunk; add `@@` hunks with ' ', '-' and '+' lines"
                )));
            }
            return Ok(PatchOp::Update {
                path,
                move_to,
                chunks,
            });
        }
        Err(self.error(format!(
            "expected `{ADD}`, `{DELETE}` or `{UPDATE}` followed by a path, found `{line}`"
        )))
    }

    fn path(&self, raw: &str) -> Result<String, ParseError> {
        let path = raw.trim();
        if path.is_empty() {
            return Err(self.error("the file operation names no path"));
        }
        Ok(path.to_owned())
    }

    fn add_lines(&mut self) -> Result<String, ParseError> {
        let mut contents = String::new();
        while let Some(line) = self.current() {
            if let Some(text) = line.strip_prefix('+') {
                contents.push_str(text);
                contents.push('\n');
                self.pos += 1;
            } else if line.starts_with("***") || is_padded_header(line) || line.trim().is_empty() {
                break;
            } else {
                return Err(self.error(format!(
                    "every line of an added file must start with '+', found `{line}`"
                )));
            }
        }
        Ok(contents)
    }

    fn chunks(&mut self) -> Result<Vec<Chunk>, ParseError> {
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut current: Option<Chunk> = None;
        let mut current_start = self.pos;
        while let Some(line) = self.current() {
            let marker = line.trim_end();
            if marker == "@@" || marker.starts_with("@@ ") {
                if let Some(done) = current.take() {
                    chunks.push(self.finish_chunk(done, current_start)?);
                }
                let context = marker[2..].trim();
                current = Some(Chunk {
                    context: (!context.is_empty()).then(|| context.to_owned()),
                    ..Chunk::default()
                });
                current_start = self.pos;
                self.pos += 1;
                continue;
            }
            if marker == END_OF_FILE {
                let Some(mut chunk) = current.take() else {
                    return Err(self.error(format!("`{END_OF_FILE}` outside a hunk")));
                };
                chunk.end_of_file = true;
                chunks.push(self.finish_chunk(chunk, current_start)?);
                self.pos += 1;
                continue;
            }
            if marker.starts_with("***") || is_padded_header(line) {
                break;
            }
            // The first hunk may come without an `@@` line; later ones need it.
            if current.is_none() {
                if !chunks.is_empty() {
                    return Err(self.error(format!(
                        "expected `@@` to start the next hunk, found `{line}`"
                    )));
                }
                current = Some(Chunk::default());
                current_start = self.pos;
            }
            let Some(chunk) = current.as_mut() else {
                break;
            };
            match line.chars().next() {
                None => chunk.lines.push(HunkLine::Context(String::new())),
                Some(' ') => chunk.lines.push(HunkLine::Context(line[1..].to_owned())),
                Some('-') => chunk.lines.push(HunkLine::Remove(line[1..].to_owned())),
                Some('+') => chunk.lines.push(HunkLine::Add(line[1..].to_owned())),
                Some(_) => {
                    return Err(self.error(format!(
                        "every hunk line must start with ' ', '-' or '+', found `{line}`"
                    )));
                }
            }
            self.pos += 1;
        }
        if let Some(done) = current.take() {
            chunks.push(self.finish_chunk(done, current_start)?);
        }
        Ok(chunks)
    }

    fn finish_chunk(&self, chunk: Chunk, start: usize) -> Result<Chunk, ParseError> {
        if chunk.lines.is_empty() {
            return Err(ParseError {
                line: start + 1,
                message: "the hunk has no lines; give it ' ', '-' or '+' lines".to_owned(),
            });
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn ctx(t: &str) -> HunkLine {
        HunkLine::Context(t.to_owned())
    }
    fn rm(t: &str) -> HunkLine {
        HunkLine::Remove(t.to_owned())
    }
    fn add(t: &str) -> HunkLine {
        HunkLine::Add(t.to_owned())
    }

    #[test]
    fn parses_every_kind_of_operation() {
        let patch = "*** Begin Patch\n\
                     *** Add File: new.txt\n\
                     +hello\n\
                     +world\n\
                     *** Delete File: old.txt\n\
                     *** Update File: src/a.rs\n\
                     *** Move to: src/b.rs\n\
                     @@ fn main() {\n \
                     keep\n\
                     -gone\n\
                     +added\n\
                     \n\
                     @@\n\
                     -last\n\
                     +final\n\
                     *** End of File\n\
                     *** End Patch\n";
        assert_eq!(
            parse(patch),
            Ok(Patch {
                ops: vec![
                    PatchOp::Add {
                        path: "new.txt".into(),
                        contents: "hello\nworld\n".into()
                    },
                    PatchOp::Delete {
                        path: "old.txt".into()
                    },
                    PatchOp::Update {
                        path: "src/a.rs".into(),
                        move_to: Some("src/b.rs".into()),
                        chunks: vec![
                            Chunk {
                                context: Some("fn main() {".into()),
                                lines: vec![ctx("keep"), rm("gone"), add("added"), ctx("")],
                                end_of_file: false,
                            },
                            Chunk {
                                context: None,
                                lines: vec![rm("last"), add("final")],
                                end_of_file: true,
                            },
                        ],
                    },
                ]
            })
        );
    }

    #[test]
    fn first_hunk_may_omit_the_header_and_heredoc_wrappers_are_dropped() {
        let patch = "<<'EOF'\n*** Begin Patch\n*** Update File: a\n-x\n+y\n*** End Patch\nEOF\n";
        assert_eq!(
            parse(patch),
            Ok(Patch {
                ops: vec![PatchOp::Update {
                    path: "a".into(),
                    move_to: None,
                    chunks: vec![Chunk {
                        context: None,
                        lines: vec![rm("x"), add("y")],
                        end_of_file: false,
                    }],
                }]
            })
        );
    }

    #[test]
    fn padded_file_headers_are_accepted() {
        let patch = "*** Begin Patch\n  *** Add File: new.txt\n+hi\n   *** Update File: a.txt\n \
                     *** Move to: b.txt\n@@\n-x\n+y\n\t*** Delete File: old.txt\n  *** End Patch\n";
        assert_eq!(
            parse(patch),
            Ok(Patch {
                ops: vec![
                    PatchOp::Add {
                        path: "new.txt".into(),
                        contents: "hi\n".into()
                    },
                    PatchOp::Update {
                        path: "a.txt".into(),
                        move_to: Some("b.txt".into()),
                        chunks: vec![Chunk {
                            context: None,
                            lines: vec![rm("x"), add("y")],
                            end_of_file: false,
                        }],
                    },
                    PatchOp::Delete {
                        path: "old.txt".into()
                    },
                ]
            })
        );
    }

    #[test]
    fn reports_the_line_and_what_is_wrong() {
        let cases = [
            (
                "*** Update File: a\n*** End Patch",
                1,
                "the patch must start with `*** Begin Patch`",
            ),
            (
                "*** Begin Patch\n*** Add File: a\n+x",
                3,
                "the patch must end with `*** End Patch`",
            ),
            (
                "*** Begin Patch\n*** Add File: a\nx\n*** End Patch",
                3,
                "every line of an added file must start with '+', found `x`",
            ),
            (
                "*** Begin Patch\n*** Frobnicate: a\n*** End Patch",
                2,
                "expected `*** Add File: `, `*** Delete File: ` or `*** Update File: ` followed \
                 by a path, found `*** Frobnicate: a`",
            ),
            (
                "*** Begin Patch\n*** Update File: a\n@@\n*** End Patch",
                3,
                "the hunk has no lines; give it ' ', '-' or '+' lines",
            ),
            (
                "*** Begin Patch\n*** Update File: a\n@@\n?x\n*** End Patch",
                4,
                "every hunk line must start with ' ', '-' or '+', found `?x`",
            ),
            (
                "*** Begin Patch\n*** Update File: a\n*** End Patch",
                3,
                "`*** Update File: a` has no hunk; add `@@` hunks with ' ', '-' and '+' lines",
            ),
            (
                "*** Begin Patch\n\n*** End Patch",
                3,
                "the patch contains no file operation; add `*** Add File:`, `*** Update File:` \
                 or `*** Delete File:` sections",
            ),
        ];
        for (input, line, message) in cases {
            assert_eq!(
                parse(input),
                Err(ParseError {
                    line,
                    message: message.to_owned()
                }),
                "{input}"
            );
        }
    }
}
