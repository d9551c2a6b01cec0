//! Log lines to inert HTML: every character escaped, ANSI colour codes
//! (SGR) turned into `<span class="…">` with classes from a fixed list,
//! every other escape sequence and control character dropped or shown as
//! U+FFFD. Nothing from the line can become markup, a script, a style or a
//! link.

/// HTML-escapes `text` into `out`.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// HTML-escapes `text`.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 8);
    escape_into(&mut s, text);
    s
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Style {
    fg: Option<u8>,
    bg: Option<u8>,
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
}

impl Style {
    fn classes(&self) -> String {
        let mut c = Vec::new();
        if let Some(f) = self.fg {
            c.push(format!("a-f{f}"));
        }
        if let Some(b) = self.bg {
            c.push(format!("a-b{b}"));
        }
        for (on, name) in [
            (self.bold, "a-bold"),
            (self.dim, "a-dim"),
            (self.italic, "a-it"),
            (self.underline, "a-ul"),
        ] {
            if on {
                c.push(name.to_string());
            }
        }
        c.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let mut codes = params.split(';').map(|p| {
            if p.is_empty() {
                Some(0)
            } else {
                p.parse::<u16>().ok()
            }
        });
        while let Some(code) = codes.next() {
            let Some(code) = code else { continue };
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                49 => self.bg = None,
                // 256-colour and true-colour forms: skip their arguments.
                38 | 48 => match codes.next().flatten() {
                    Some(5) => {
                        codes.next();
                    }
                    Some(2) => {
                        codes.next();
                        codes.next();
                        codes.next();
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// Renders one log line as safe HTML.
pub fn to_html(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut style = Style::default();
    let mut open = false;
    let mut rest = line;
    while let Some(pos) = rest.find('\u{1b}') {
        escape_into(&mut out, &rest[..pos]);
        let after = &rest[pos + 1..];
        let (consumed, sgr) = parse_escape(after);
        if let Some(params) = sgr {
            let before = style;
            style.apply(params);
            if style != before {
                if open {
                    out.push_str("</span>");
                    open = false;
                }
                let classes = style.classes();
                if !classes.is_empty() {
                    out.push_str("<span class=\"");
                    out.push_str(&classes);
                    out.push_str("\">");
                    open = true;
                }
            }
        }
        rest = &after[consumed..];
    }
    escape_into(&mut out, rest);
    if open {
        out.push_str("</span>");
    }
    out
}

/// Length of the escape sequence after ESC, and its parameters if it is
/// an SGR (`ESC [ … m`).
fn parse_escape(s: &str) -> (usize, Option<&str>) {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'[') => {
            // CSI: parameter and intermediate bytes, then a final byte.
            for (i, &b) in bytes.iter().enumerate().skip(1) {
                if (0x40..=0x7e).contains(&b) {
                    let params = &s[1..i];
                    let sgr = (b == b'm'
                        && params.bytes().all(|c| c.is_ascii_digit() || c == b';'))
                    .then_some(params);
                    return (i + 1, sgr);
                }
                if !(0x20..=0x3f).contains(&b) {
                    return (i, None);
                }
            }
            (bytes.len(), None)
        }
        Some(b']') => {
            // OSC (titles, hyperlinks): up to BEL or ESC \.
            for (i, &b) in bytes.iter().enumerate() {
                if b == 0x07 {
                    return (i + 1, None);
                }
                if b == 0x1b && bytes.get(i + 1) == Some(&b'\\') {
                    return (i + 2, None);
                }
            }
            (bytes.len(), None)
        }
        Some(b) if b.is_ascii() => (1, None),
        _ => (0, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_in_log_lines_is_inert() {
        let h = to_html("<script>alert('x')</script> & \"q\"");
        assert_eq!(
            h,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert!(!to_html("<img src=x onerror=alert(1)>").contains('<'));
    }

    #[test]
    fn colours_become_fixed_classes() {
        assert_eq!(
            to_html("\u{1b}[31mred\u{1b}[0m plain"),
            "<span class=\"a-f1\">red</span> plain"
        );
        assert_eq!(
            to_html("\u{1b}[1;92mok"),
            "<span class=\"a-f10 a-bold\">ok</span>"
        );
        // 256 and true colour are dropped, the text stays.
        assert_eq!(to_html("\u{1b}[38;5;200mx\u{1b}[38;2;1;2;3my"), "xy");
    }

    #[test]
    fn other_escapes_and_controls_are_dropped() {
        assert_eq!(to_html("a\u{1b}[2Kb\u{1b}]0;title\u{7}c"), "abc");
        assert_eq!(to_html("a\u{1b}]8;;http://x\u{1b}\\link"), "alink");
        assert_eq!(to_html("bell\u{7}nul\u{0}"), "bell\u{FFFD}nul\u{FFFD}");
        // A sequence cut short cannot swallow markup into an attribute.
        assert_eq!(to_html("\u{1b}[31"), "");
        assert_eq!(to_html("\u{1b}[3\"<m"), "");
        assert_eq!(to_html("x\u{1b}"), "x");
        // Invalid UTF-8 has become U+FFFD before it is a String.
        let lossy = String::from_utf8_lossy(b"caf\xe9 <b>");
        assert_eq!(to_html(&lossy), "caf\u{FFFD} &lt;b&gt;");
    }
}
