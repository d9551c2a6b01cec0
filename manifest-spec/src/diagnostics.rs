//! Diagnostics: what went wrong, where, and what to do about it.
//!
//! A [`Diagnostic`] carries a position (`file:line:col`), the source line it
//! points into, the length of the offending span and an optional hint.
//! [`Diagnostics`] is the error type of [`crate::parse`]; its `Display` is the
//! full human rendering, its `Serialize` the machine one (`--json`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The origin the caller gave to [`crate::parse`], usually a file name.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What to do about it, when we can tell.
    pub hint: Option<String>,
    /// The text of the line the diagnostic points into (empty if none).
    pub source_line: String,
    /// How many characters the caret underlines (at least 1).
    pub span_len: usize,
}

/// Longest source line shown in a rendering; longer lines are cut around the
/// caret.
const SHOWN_LINE_CHARS: usize = 120;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.col, self.message
        )?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let (shown, caret_col) = window(&self.source_line, self.col);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{gutter} | {shown}")?;
            // Reproduce tabs so that the caret lines up in a terminal.
            let lead: String = shown
                .chars()
                .take(caret_col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let avail = shown.chars().count().saturating_sub(caret_col - 1);
            let carets = self.span_len.clamp(1, avail.max(1));
            writeln!(f, "{pad} | {lead}{}", "^".repeat(carets))?;
        }
        if let Some(hint) = &self.hint {
            let pad = " ".repeat(self.line.to_string().len());
            writeln!(f, "{pad} = hint: {hint}")?;
        }
        Ok(())
    }
}

/// Cuts `line` to at most [`SHOWN_LINE_CHARS`] characters around `col`,
/// returning the shown text and the caret's column within it.
fn window(line: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= SHOWN_LINE_CHARS {
        return (line.to_string(), col.max(1));
    }
    let idx = col.saturating_sub(1).min(chars.len());
    let start = idx.saturating_sub(SHOWN_LINE_CHARS / 2);
    let end = (start + SHOWN_LINE_CHARS).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut caret = idx - start + 1;
    if start > 0 {
        shown.insert_str(0, "...");
        caret += 3;
    }
    if end < chars.len() {
        shown.push_str("...");
    }
    (shown, caret)
}

/// Every problem found in one manifest, in source order. Never empty when
/// returned by [`crate::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// Wraps a list of diagnostics.
    pub fn new(list: Vec<Diagnostic>) -> Self {
        Diagnostics(list)
    }

    /// Iterates over the diagnostics in source order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The diagnostics as a slice.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            let file = &self.0[0].file;
            write!(f, "\n{file}: {} errors", self.0.len())?;
            writeln!(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(line: &str, col: usize, len: usize) -> Diagnostic {
        Diagnostic {
            file: "Byteport".into(),
            line: 3,
            col,
            message: "unknown directive `memroy` in `vm` block".into(),
            hint: Some("did you mean `memory`?".into()),
            source_line: line.into(),
            span_len: len,
        }
    }

    #[test]
    fn renders_position_line_caret_and_hint() {
        let text = diag("  memroy 256M", 3, 6).to_string();
        assert_eq!(
            text,
            "Byteport:3:3: error: unknown directive `memroy` in `vm` block\n  |\n3 |   memroy 256M\n  |   ^^^^^^\n  = hint: did you mean `memory`?\n"
        );
    }

    #[test]
    fn caret_keeps_tabs_aligned() {
        let text = diag("\tmemroy 1", 2, 6).to_string();
        assert!(text.contains("3 | \tmemroy 1\n  | \t^^^^^^\n"), "{text}");
    }

    #[test]
    fn long_lines_are_windowed_around_the_caret() {
        let line = format!("{}X{}", "a".repeat(500), "b".repeat(500));
        let text = diag(&line, 501, 1).to_string();
        let shown = text.lines().nth(2).unwrap();
        assert!(shown.len() < 140, "{shown}");
        let caret = text.lines().nth(3).unwrap();
        let x_at = shown.find('X').unwrap();
        assert_eq!(caret.find('^').unwrap(), x_at);
    }

    #[test]
    fn several_diagnostics_end_with_a_count() {
        let all = Diagnostics::new(vec![diag("a", 1, 1), diag("b", 1, 1)]);
        assert!(all.to_string().ends_with("Byteport: 2 errors\n"));
        assert_eq!(all.len(), 2);
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(json[0]["hint"], "did you mean `memory`?");
    }
}
