//! README (Markdown) → title and first paragraphs as plain text.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

use super::Readme;

/// Most paragraphs kept.
pub const MAX_PARAGRAPHS: usize = 3;
/// Most characters kept over all paragraphs.
pub const MAX_CHARS: usize = 1500;

/// Whether `name` (a file at the repository root) is a README, and how
/// much it is preferred (lower first).
pub fn readme_rank(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "readme.md" => Some(0),
        "readme.markdown" => Some(1),
        "readme" | "readme.txt" => Some(2),
        "readme.rst" | "readme.adoc" | "readme.org" => Some(3),
        _ => None,
    }
}

/// Extracts title and paragraphs. `bytes` may be anything: invalid UTF-8
/// is replaced, NUL bytes mean "binary" (`None`).
pub fn extract(path: &str, bytes: &[u8]) -> Option<Readme> {
    if bytes.contains(&0) {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut title = None;
    let mut paragraphs: Vec<String> = Vec::new();
    let mut total = 0usize;

    let mut in_heading = false;
    let mut in_paragraph = false;
    let mut quote_or_list_depth = 0usize;
    let mut current = String::new();
    let mut only_media = true;
    let mut in_image = 0usize;
    for event in Parser::new(&text) {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                in_heading = true;
                current.clear();
            }
            Event::End(TagEnd::Heading(_)) => {
                in_heading = false;
                if title.is_none() {
                    let t = squash(&current);
                    if !t.is_empty() {
                        title = Some(cap(&t, 200));
                    }
                }
                current.clear();
            }
            Event::Start(Tag::BlockQuote(_)) | Event::Start(Tag::List(_)) => {
                quote_or_list_depth += 1
            }
            Event::End(TagEnd::BlockQuote(_)) | Event::End(TagEnd::List(_)) => {
                quote_or_list_depth = quote_or_list_depth.saturating_sub(1)
            }
            Event::Start(Tag::Paragraph) if quote_or_list_depth == 0 => {
                in_paragraph = true;
                only_media = true;
                current.clear();
            }
            Event::End(TagEnd::Paragraph) if in_paragraph => {
                in_paragraph = false;
                let p = squash(&current);
                // A line of badges is not a paragraph.
                if !p.is_empty() && !only_media && paragraphs.len() < MAX_PARAGRAPHS {
                    let room = MAX_CHARS.saturating_sub(total);
                    if room > 0 {
                        let p = cap(&p, room);
                        total += p.chars().count();
                        paragraphs.push(p);
                    }
                }
                current.clear();
            }
            // Alt text of images (badges) is not prose.
            Event::Start(Tag::Image { .. }) => in_image += 1,
            Event::End(TagEnd::Image) => {
                in_image = in_image.saturating_sub(1);
                current.push(' ');
            }
            Event::Text(t) | Event::Code(t) if (in_heading || in_paragraph) && in_image == 0 => {
                if in_paragraph && !t.trim().is_empty() {
                    only_media = false;
                }
                current.push_str(&t);
            }
            Event::SoftBreak | Event::HardBreak if in_heading || in_paragraph => current.push(' '),
            _ => {}
        }
        if paragraphs.len() >= MAX_PARAGRAPHS && title.is_some() {
            break;
        }
    }
    Some(Readme {
        path: path.to_string(),
        title,
        paragraphs,
    })
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cap(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_paragraphs_and_no_badges_or_html() {
        let md = "# Hello *Flask*\n\n[![ci](https://x/badge.svg)](https://x)\n\nA small app that\nsays **hello**.\n\n<div>raw html</div>\n\n- a list item\n\nSecond `paragraph`.\n\nThird.\n\nFourth.\n";
        let r = extract("README.md", md.as_bytes()).unwrap();
        assert_eq!(r.title.as_deref(), Some("Hello Flask"));
        assert_eq!(
            r.paragraphs,
            vec![
                "A small app that says hello.",
                "Second paragraph.",
                "Third."
            ]
        );
    }

    #[test]
    fn binary_and_invalid_utf8() {
        assert_eq!(extract("README", b"\x00\x01\x02"), None);
        let r = extract("README", b"# T\xff\xfe\n\nbody \xc3\x28 text\n").unwrap();
        assert_eq!(r.title.as_deref(), Some("T\u{fffd}\u{fffd}"));
        assert_eq!(r.paragraphs.len(), 1);
    }

    #[test]
    fn huge_paragraphs_are_capped() {
        let md = format!("{}\n\n{}\n", "word ".repeat(2000), "more ".repeat(2000));
        let r = extract("README.md", md.as_bytes()).unwrap();
        let total: usize = r.paragraphs.iter().map(|p| p.chars().count()).sum();
        assert!(total <= MAX_CHARS, "{total}");
    }
}
