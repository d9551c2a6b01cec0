//! The manifest's text before any grammar sees it: size cap, UTF-8 check,
//! forbidden control characters, and the line index that turns byte offsets
//! into `line:col` diagnostics.

use crate::diagnostics::Diagnostic;
use crate::limits::{MAX_DIAGNOSTICS, MAX_MANIFEST_BYTES};

/// Checked manifest text with a line index.
pub(crate) struct Source<'a> {
    origin: &'a str,
    text: &'a str,
    /// Byte offset of the first character of every line.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    /// Checks raw bytes and indexes them. Fails with diagnostics for input
    /// that is too large, empty, not UTF-8 or holds control characters.
    pub(crate) fn new(bytes: &'a [u8], origin: &'a str) -> Result<Self, Vec<Diagnostic>> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(vec![whole_file(
                origin,
                format!(
                    "manifest is {} bytes; the limit is {} bytes (1 MiB)",
                    bytes.len(),
                    MAX_MANIFEST_BYTES
                ),
                "a Byteport manifest is a short text file: is this the right file?",
            )]);
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return Err(vec![not_utf8(bytes, origin, e.valid_up_to())]),
        };
        if text.trim().is_empty() {
            return Err(vec![whole_file(
                origin,
                "manifest is empty".to_string(),
                "start with `app <name>` and `from debian:bookworm`; `byteport manifest init` writes a starter",
            )]);
        }
        let mut line_starts = vec![0];
        line_starts.extend(line_breaks(text.as_bytes()));
        let src = Source {
            origin,
            text,
            line_starts,
        };
        let bad: Vec<Diagnostic> = text
            .char_indices()
            .filter(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            .take(MAX_DIAGNOSTICS)
            .map(|(i, c)| {
                src.diag(
                    i,
                    i + c.len_utf8(),
                    format!("control character U+{:04X} is not allowed", c as u32),
                    Some(
                        "remove it; use an escape such as \\t or \\n inside a quoted string".into(),
                    ),
                )
            })
            .collect();
        if bad.is_empty() {
            Ok(src)
        } else {
            Err(bad)
        }
    }

    /// The checked text.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let idx = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[idx];
        let col = self.text[start..offset].chars().count() + 1;
        (idx + 1, col)
    }

    /// The text of a 1-based line, without its line ending.
    pub(crate) fn line_text(&self, line: usize) -> &'a str {
        let Some(&start) = self.line_starts.get(line - 1) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |&next| next);
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// A diagnostic for the byte range `start..end` (clipped to its line).
    pub(crate) fn diag(
        &self,
        start: usize,
        end: usize,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        // A range that is not on character boundaries (a bug in a caller's
        // offsets) is widened to them rather than panicking.
        let text = self.text;
        let mut start = start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = end.clamp(start, text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let (line, col) = self.locate(start);
        let source_line = self.line_text(line);
        let line_chars = source_line.chars().count();
        let span_chars = self.text[start..end].chars().count();
        let span_len = span_chars.min(line_chars.saturating_sub(col - 1)).max(1);
        Diagnostic {
            file: self.origin.to_string(),
            line,
            col,
            message,
            hint,
            source_line: printable(source_line),
            span_len,
        }
    }

    /// A diagnostic about the manifest as a whole (no source line shown).
    pub(crate) fn whole(&self, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic {
            file: self.origin.to_string(),
            line: 1,
            col: 1,
            message,
            hint,
            source_line: String::new(),
            span_len: 1,
        }
    }
}

/// The line as it may be printed to a terminal: control characters (other
/// than tab) become U+FFFD, one for one, so carets still line up.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Offsets just after each line break, as the grammar's NEWLINE sees them:
/// `\n`, `\r\n` or a lone `\r`.
fn line_breaks(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes.iter().enumerate().filter_map(|(i, &b)| {
        let brk = b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
        brk.then_some(i + 1)
    })
}

/// A diagnostic about the file as a whole, pointing at 1:1.
fn whole_file(origin: &str, message: String, hint: &str) -> Diagnostic {
    Diagnostic {
        file: origin.to_string(),
        line: 1,
        col: 1,
        message,
        hint: Some(hint.to_string()),
        source_line: String::new(),
        span_len: 1,
    }
}

/// A diagnostic at the first byte that is not UTF-8.
fn not_utf8(bytes: &[u8], origin: &str, valid_up_to: usize) -> Diagnostic {
    let before = &bytes[..valid_up_to];
    let (line, line_start) = line_breaks(before).fold((1, 0), |(n, _), at| (n + 1, at));
    // `before` is valid UTF-8 by construction.
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    let line_end = bytes[line_start..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(bytes.len(), |i| line_start + i);
    Diagnostic {
        file: origin.to_string(),
        line,
        col,
        message: format!(
            "manifest is not valid UTF-8 (byte 0x{:02X})",
            bytes[valid_up_to]
        ),
        hint: Some("save the file as UTF-8 text".into()),
        source_line: printable(&String::from_utf8_lossy(&bytes[line_start..line_end])),
        span_len: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_char_columns() {
        let src = Source::new("app x\n  é y\nz".as_bytes(), "B").unwrap();
        assert_eq!(src.locate(0), (1, 1));
        assert_eq!(src.locate(6), (2, 1));
        assert_eq!(src.locate(10), (2, 4)); // after the two-byte é
        assert_eq!(src.line_text(2), "  é y");
        assert_eq!(src.line_text(3), "z");
    }

    #[test]
    fn rejects_oversized_empty_binary_and_control_input() {
        let big = vec![b'a'; MAX_MANIFEST_BYTES + 1];
        assert!(Source::new(&big, "B").is_err());
        assert!(Source::new(b"  \n\n", "B").is_err());
        let e = Source::new(b"app x\nfrom \xff\n", "B").err().unwrap();
        assert_eq!((e[0].line, e[0].col), (2, 6));
        let e = Source::new(b"app x\0\n", "B").err().unwrap();
        assert!(e[0].message.contains("U+0000"), "{}", e[0].message);
        assert_eq!(e[0].source_line, "app x\u{FFFD}");
    }

    #[test]
    fn lone_carriage_returns_break_lines_like_the_grammar() {
        let src = Source::new(b"app x\rfrom y\r\nz", "B").unwrap();
        assert_eq!(src.locate(6), (2, 1));
        assert_eq!(src.line_text(1), "app x");
        assert_eq!(src.line_text(2), "from y");
        assert_eq!(src.locate(14), (3, 1));
    }

    #[test]
    fn strips_a_byte_order_mark() {
        let src = Source::new(b"\xEF\xBB\xBFapp x", "B").unwrap();
        assert_eq!(src.text(), "app x");
    }
}
