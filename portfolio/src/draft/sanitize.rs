//! Untrusted text (a model's output, a README) made safe to store and
//! show: no HTML, no links except the app's and the repository's, no
//! control characters, lengths capped.

/// Limits a draft must meet.
pub const MAX_TITLE: usize = 80;
/// Summary limit, in characters.
pub const MAX_SUMMARY: usize = 160;
/// Body limit, in characters.
pub const MAX_BODY: usize = 1200;
/// Most tags.
pub const MAX_TAGS: usize = 8;
/// Longest tag.
pub const MAX_TAG_CHARS: usize = 32;

/// Removes anything that looks like an HTML tag or comment, keeping the
/// text between tags.
pub fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '<' {
            let next = s[i + 1..].chars().next();
            if matches!(next, Some(n) if n.is_ascii_alphabetic() || n == '/' || n == '!' || n == '?')
            {
                // Skip to the closing '>' (or the end: an unclosed tag is
                // dropped entirely rather than half-kept).
                for (_, c2) in chars.by_ref() {
                    if c2 == '>' {
                        break;
                    }
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Drops control characters (keeping newlines and tabs as spaces/newlines).
fn strip_controls(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' | '\r' => Some(' '),
            c if c.is_control() => None,
            // Bidirectional overrides can disguise text.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => None,
            c => Some(c),
        })
        .collect()
}

/// Whether `url` may stay: it starts with one of `allowed` (compared
/// case-insensitively, at a path boundary).
fn allowed_url(url: &str, allowed: &[&str]) -> bool {
    let lower = url.to_ascii_lowercase();
    allowed.iter().filter(|a| !a.is_empty()).any(|a| {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        lower == a
            || lower.starts_with(&format!("{a}/"))
            || lower.starts_with(&format!("{a}?"))
            || lower.starts_with(&format!("{a}#"))
    })
}

fn is_url_start(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    [
        "http://",
        "https://",
        "ftp://",
        "javascript:",
        "data:",
        "vbscript:",
        "file:",
        "www.",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
}

/// Markdown links `[text](url)` become `text` (or `text (url)` for an
/// allowed URL); bare URLs not in `allowed` are removed.
pub fn strip_links(s: &str, allowed: &[&str]) -> String {
    // Markdown links first.
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let Some(end) = after[close + 2..].find(')') else {
            break;
        };
        if after[..close].contains('[') {
            out.push_str(&rest[..open + 1]);
            rest = after;
            continue;
        }
        let text = &after[..close];
        let url = after[close + 2..close + 2 + end].trim();
        out.push_str(&rest[..open]);
        out.push_str(text);
        if allowed_url(url, allowed) {
            out.push_str(" (");
            out.push_str(url);
            out.push(')');
        }
        rest = &after[close + 2 + end + 1..];
    }
    out.push_str(rest);
    // Then bare URLs, word by word (whitespace kept as it was).
    let mut result = String::with_capacity(out.len());
    let mut word = String::new();
    let flush = |word: &mut String, result: &mut String| {
        let trimmed = word.trim_start_matches(['(', '"', '\'', '<']);
        if is_url_start(trimmed) {
            let core =
                trimmed.trim_end_matches(['.', ',', ';', ':', ')', '"', '\'', '!', '?', '>']);
            if allowed_url(core, allowed) {
                result.push_str(word);
            } else {
                // Keep trailing punctuation so sentences still end.
                let tail = &trimmed[core.len()..];
                result.push_str(tail.trim_start_matches(')'));
            }
        } else {
            result.push_str(word);
        }
        word.clear();
    };
    for c in out.chars() {
        if c.is_whitespace() {
            flush(&mut word, &mut result);
            result.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut result);
    result
}

/// Collapses runs of spaces, trims lines, keeps at most one blank line
/// between paragraphs.
fn tidy(s: &str, keep_paragraphs: bool) -> String {
    if !keep_paragraphs {
        return s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let paragraphs: Vec<String> = s
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    paragraphs.join("\n\n")
}

/// Caps at `max` characters, at a word boundary when one is near, with
/// an ellipsis.
pub fn cap(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if cut[..i].chars().count() > max * 3 / 4 => cut[..i].trim_end().to_string(),
        _ => cut,
    };
    format!("{cut}…")
}

/// One text field: HTML, foreign links and controls removed, tidied,
/// capped.
pub fn clean_text(s: &str, max: usize, keep_paragraphs: bool, allowed_links: &[&str]) -> String {
    let s = strip_controls(s);
    let s = strip_html(&s);
    let s = strip_links(&s, allowed_links);
    cap(&tidy(&s, keep_paragraphs), max)
}

/// Tags: lowercased, only `a-z 0-9 - + # . _`, non-empty, ≤ 32 characters,
/// unique, at most 8, in order.
pub fn clean_tags<S: AsRef<str>>(tags: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t: String = strip_html(t.as_ref())
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_whitespace() { '-' } else { c })
            .filter(|c| c.is_ascii_alphanumeric() || "-+#._".contains(*c))
            .take(MAX_TAG_CHARS)
            .collect();
        let t = t.trim_matches(['-', '.', '_']).to_string();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
        if out.len() == MAX_TAGS {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_removed_text_kept() {
        assert_eq!(
            strip_html("a <b>bold</b> <script>x()</script> 1 < 2"),
            "a bold x() 1 < 2"
        );
        assert_eq!(strip_html("cut <img src=x onerror=alert(1)"), "cut ");
    }

    #[test]
    fn only_allowed_links_survive() {
        let allowed = [
            "http://hello.localhost:8000",
            "https://github.com/alice/hello",
        ];
        let s = strip_links(
            "See [the app](http://hello.localhost:8000/) and [evil](https://evil.example/x). Visit https://evil.example. Code: https://github.com/alice/hello.",
            &allowed,
        );
        assert_eq!(
            s,
            "See the app (http://hello.localhost:8000/) and evil. Visit . Code: https://github.com/alice/hello."
        );
        // A look-alike host is not the app.
        assert_eq!(
            strip_links("http://hello.localhost:8000.evil.example/", &allowed),
            ""
        );
        assert_eq!(strip_links("javascript:alert(1)", &allowed), "");
    }

    #[test]
    fn caps_and_tags() {
        let s = clean_text(&"word ".repeat(100), 80, false, &[]);
        assert!(s.chars().count() <= 80 && s.ends_with('…'), "{s}");
        assert_eq!(
            clean_tags(&[
                "Rust", "rust", "Web App", "<b>x</b>", "", "a", "b", "c", "d", "e", "f", "g"
            ]),
            ["rust", "web-app", "x", "a", "b", "c", "d", "e"]
        );
        assert_eq!(clean_text("a\u{202e}b\u{0007}c", 10, false, &[]), "abc");
    }
}
