//! The offline drafter: a write-up from the facts alone, the same facts
//! giving the same text byte for byte (no clock, no randomness, no
//! hash-map order).

use futures::future::BoxFuture;

use super::{sanitize, sanitize_text, DraftText, Drafted, DraftedBy, Drafter};
use crate::dates;
use crate::facts::Facts;

/// Deterministic drafter; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineDrafter;

impl Drafter for OfflineDrafter {
    fn draft<'a>(&'a self, facts: &'a Facts) -> BoxFuture<'a, Drafted> {
        Box::pin(async move { self.draft_sync(facts) })
    }
}

/// The first sentence of `text` (or all of it), capped.
pub(crate) fn first_sentence(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let end = flat
        .char_indices()
        .find(|(i, c)| {
            matches!(c, '.' | '!' | '?')
                && flat[i + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(flat.len());
    sanitize::cap(&flat[..end], max)
}

/// "A and B", "A, B and C".
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn percent(permille: u32) -> String {
    if permille.is_multiple_of(10) {
        format!("{} %", permille / 10)
    } else {
        format!("{}.{} %", permille / 10, permille % 10)
    }
}

impl OfflineDrafter {
    /// The draft, synchronously.
    pub fn draft_sync(&self, facts: &Facts) -> Drafted {
        let title = facts.manifest.title.clone();
        let readme_paragraphs: Vec<String> = facts
            .readme
            .as_ref()
            .map(|r| r.paragraphs.clone())
            .unwrap_or_default();
        let page = facts.page.as_ref();

        let languages: Vec<String> = facts
            .languages
            .iter()
            .filter(|l| l.name != "Other")
            .take(3)
            .map(|l| format!("{} ({})", l.name, percent(l.permille)))
            .collect();
        let main_language = facts
            .languages
            .iter()
            .find(|l| l.name != "Other")
            .map(|l| l.name.clone());

        let summary_source = readme_paragraphs
            .first()
            .cloned()
            .or_else(|| page.and_then(|p| p.description.clone()))
            .unwrap_or_else(|| {
                let kind = if facts.live_url.is_some() {
                    "web app"
                } else {
                    "project"
                };
                match &main_language {
                    Some(l) => format!("A {l} {kind} deployed with BytePort."),
                    None => format!("A {kind} deployed with BytePort."),
                }
            });
        let summary = first_sentence(&summary_source, sanitize::MAX_SUMMARY);

        let mut body: Vec<String> = Vec::new();
        let mut used = 0usize;
        for p in &readme_paragraphs {
            if used + p.chars().count() > 700 {
                break;
            }
            used += p.chars().count();
            body.push(p.clone());
        }
        let mut tech = Vec::new();
        if !languages.is_empty() {
            tech.push(format!("It is written in {}", list(&languages)));
        }
        if !facts.frameworks.is_empty() {
            let fw = list(&facts.frameworks);
            tech.push(if tech.is_empty() {
                format!("It uses {fw}")
            } else {
                format!("uses {fw}")
            });
        }
        if !tech.is_empty() {
            body.push(format!("{}.", tech.join(" and ")));
        }
        let h = &facts.history;
        if h.commits > 0 {
            let commits = if h.commits == 1 {
                "1 commit".to_string()
            } else if h.truncated {
                format!("more than {} commits", h.commits)
            } else {
                format!("{} commits", h.commits)
            };
            let authors = match h.authors {
                0 | 1 => String::new(),
                n => format!(" by {n} authors"),
            };
            let (first, last) = (
                dates::month_year(h.first_commit),
                dates::month_year(h.last_commit),
            );
            let when = if first == last {
                format!("in {last}")
            } else {
                format!("between {first} and {last}")
            };
            body.push(format!("The history has {commits}{authors}, {when}."));
        }
        if let Some(t) = page.and_then(|p| p.title.as_ref()) {
            let headings: Vec<String> = page
                .map(|p| {
                    p.headings
                        .iter()
                        .take(3)
                        .map(|h| format!("“{h}”"))
                        .collect()
                })
                .unwrap_or_default();
            if headings.is_empty() {
                body.push(format!("The live page is titled “{t}”."));
            } else {
                body.push(format!(
                    "The live page is titled “{t}” and shows {}.",
                    list(&headings)
                ));
            }
        }
        if body.is_empty() {
            body.push(summary.clone());
        }

        let mut tags: Vec<String> = facts.manifest.tags.clone();
        tags.extend(facts.frameworks.iter().map(|f| f.to_lowercase()));
        tags.extend(main_language.iter().map(|l| l.to_lowercase()));

        let raw = DraftText {
            title,
            summary,
            body: body.join("\n\n"),
            tags,
        };
        Drafted {
            text: sanitize_text(&raw, facts),
            by: DraftedBy::Offline,
            notes: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{History, LanguageShare, ManifestFacts, Readme};

    fn facts() -> Facts {
        Facts {
            app: "hello".into(),
            commit: "0".repeat(40),
            manifest: ManifestFacts {
                title: "Hello Flask".into(),
                tags: vec!["python".into(), "flask".into()],
                ..Default::default()
            },
            readme: Some(Readme {
                path: "README.md".into(),
                title: Some("Hello".into()),
                paragraphs: vec!["A tiny Flask app. It greets you.".into()],
            }),
            languages: vec![
                LanguageShare {
                    name: "Python".into(),
                    lines: 80,
                    permille: 800,
                },
                LanguageShare {
                    name: "HTML".into(),
                    lines: 20,
                    permille: 200,
                },
            ],
            frameworks: vec!["Flask".into()],
            history: History {
                commits: 3,
                truncated: false,
                first_commit: 1_767_225_600,
                last_commit: 1_772_323_200,
                authors: 2,
            },
            live_url: Some("http://hello.localhost:8000/".into()),
            ..Default::default()
        }
    }

    #[test]
    fn text_from_the_facts() {
        let d = OfflineDrafter.draft_sync(&facts());
        assert_eq!(d.by, DraftedBy::Offline);
        assert_eq!(d.text.title, "Hello Flask");
        assert_eq!(d.text.summary, "A tiny Flask app.");
        assert_eq!(
            d.text.body,
            "A tiny Flask app. It greets you.\n\nIt is written in Python (80 %) and HTML (20 %) and uses Flask.\n\nThe history has 3 commits by 2 authors, between January 2026 and March 2026."
        );
        assert_eq!(d.text.tags, ["python", "flask"]);
    }

    #[test]
    fn first_sentence_needs_a_space_after_the_dot() {
        assert_eq!(
            first_sentence("Runs on v1.2 today. Then more.", 160),
            "Runs on v1.2 today."
        );
        assert_eq!(first_sentence("no dot", 160), "no dot");
    }
}
