//! Checks on what a reviewer sends, before anything is stored: an edit's
//! lengths (the portfolio crate's own limits — the crate would silently
//! shorten, a person should be told instead) and the site profile.

use portfolio::draft::sanitize::{MAX_SUMMARY, MAX_TAGS, MAX_TAG_CHARS, MAX_TITLE};
use portfolio::review::TextEdit;
use portfolio::site::{Profile, ProfileLink};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Error;

/// Longest body an owner may write: the manifest description's limit,
/// which the portfolio crate's edit also applies.
pub const MAX_BODY: usize = manifest_spec::limits::MAX_DESCRIPTION_CHARS;

/// An owner's edit of the newest version; a field left out keeps its text.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EditRequest {
    /// The version the edit was made from. When given and it is no longer
    /// the newest (a new draft arrived), the edit is refused rather than
    /// applied to text its author has not seen.
    pub base: Option<u32>,
    /// ≤ 80 characters, not empty.
    pub title: Option<String>,
    /// ≤ 160 characters.
    pub summary: Option<String>,
    /// ≤ 2000 characters; blank lines separate paragraphs. No HTML (it is
    /// removed), links only to the app and its repository.
    pub body: Option<String>,
    /// ≤ 8 tags of ≤ 32 characters (lowercased; `a-z 0-9 - + # . _`).
    pub tags: Option<Vec<String>>,
}

fn too_long(what: &str, text: &str, max: usize) -> Result<(), Error> {
    let n = text.chars().count();
    if n > max {
        return Err(Error::BadRequest(format!(
            "the {what} is {n} characters long; at most {max} are allowed"
        )));
    }
    Ok(())
}

/// Splits the form's tags field (`rust, web app`) the way the CLI's
/// `--tags a,b` does.
pub fn split_tags(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Checks an edit's lengths and turns it into the crate's [`TextEdit`].
pub fn edit(req: &EditRequest) -> Result<TextEdit, Error> {
    let norm = |s: &Option<String>| s.as_ref().map(|t| t.replace("\r\n", "\n"));
    let edit = TextEdit {
        title: norm(&req.title),
        summary: norm(&req.summary),
        body: norm(&req.body),
        tags: req.tags.clone(),
    };
    if let Some(t) = &edit.title {
        if t.trim().is_empty() {
            return Err(Error::BadRequest("the title cannot be empty".into()));
        }
        too_long("title", t.trim(), MAX_TITLE)?;
    }
    if let Some(s) = &edit.summary {
        too_long("summary", s.trim(), MAX_SUMMARY)?;
    }
    if let Some(b) = &edit.body {
        too_long("body", b.trim(), MAX_BODY)?;
    }
    if let Some(tags) = &edit.tags {
        if tags.len() > MAX_TAGS {
            return Err(Error::BadRequest(format!(
                "{} tags given; at most {MAX_TAGS} are allowed",
                tags.len()
            )));
        }
        for t in tags {
            if t.trim().chars().count() > MAX_TAG_CHARS {
                return Err(Error::BadRequest(format!(
                    "the tag `{}…` is longer than {MAX_TAG_CHARS} characters",
                    t.chars().take(16).collect::<String>().escape_default()
                )));
            }
        }
    }
    if edit == TextEdit::default() {
        return Err(Error::BadRequest(
            "nothing to change: send at least one of title, summary, body, tags".into(),
        ));
    }
    Ok(edit)
}

/// Longest display name.
pub const MAX_NAME: usize = 100;
/// Longest bio.
pub const MAX_BIO: usize = 2000;
/// Longest site title and link label.
pub const MAX_LABEL: usize = 200;
/// Longest URL.
pub const MAX_URL: usize = 2048;
/// Most profile links.
pub const MAX_LINKS: usize = 20;

/// The portfolio site's profile (operators set it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProfileBody {
    /// The owner's display name (not empty).
    pub name: String,
    /// A few sentences; blank lines separate paragraphs.
    #[serde(default)]
    pub bio: String,
    /// Links under the bio: `https://`, `http://` or `mailto:`.
    #[serde(default)]
    pub links: Vec<LinkBody>,
    /// Where the site is served, absolute (`https://alice.github.io/`):
    /// Open Graph, the sitemap and the feed need absolute URLs.
    pub site_url: String,
    /// The site's title (default: "NAME — projects").
    #[serde(default)]
    pub site_title: Option<String>,
}

/// One profile link.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LinkBody {
    /// Text shown.
    pub label: String,
    /// `https://…`, `http://…` or `mailto:…`.
    pub url: String,
}

impl ProfileBody {
    /// As the API shows the stored profile.
    pub fn of(p: &Profile) -> ProfileBody {
        ProfileBody {
            name: p.name.clone(),
            bio: p.bio.clone(),
            links: p
                .links
                .iter()
                .map(|l| LinkBody {
                    label: l.label.clone(),
                    url: l.url.clone(),
                })
                .collect(),
            site_url: p.site_url.clone(),
            site_title: p.site_title.clone(),
        }
    }

    /// The links as the form's textarea shows them: `LABEL=URL` per line
    /// (the CLI's `--link LABEL=URL`).
    pub fn links_text(&self) -> String {
        self.links
            .iter()
            .map(|l| format!("{}={}", l.label, l.url))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `LABEL=URL` lines → links; a line without `=` is an error.
pub fn parse_links(text: &str) -> Result<Vec<LinkBody>, Error> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (label, url) = l.split_once('=').ok_or_else(|| {
                Error::BadRequest(format!(
                    "a link is written LABEL=URL, not `{}`",
                    l.chars().take(60).collect::<String>().escape_default()
                ))
            })?;
            Ok(LinkBody {
                label: label.trim().to_string(),
                url: url.trim().to_string(),
            })
        })
        .collect()
}

fn is_web_url(u: &str) -> bool {
    let lower = u.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && u.len() > "http://".len() + 1
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks a profile and turns it into the site's [`Profile`].
pub fn profile(p: &ProfileBody) -> Result<Profile, Error> {
    let name = p.name.trim();
    if name.is_empty() {
        return Err(Error::BadRequest("the name cannot be empty".into()));
    }
    too_long("name", name, MAX_NAME)?;
    too_long("bio", p.bio.trim(), MAX_BIO)?;
    let site_url = p.site_url.trim();
    if !is_web_url(site_url) || site_url.len() > MAX_URL {
        return Err(Error::BadRequest(format!(
            "the site URL must be an absolute http(s) URL of at most {MAX_URL} bytes, e.g. https://alice.github.io/"
        )));
    }
    let site_title = p
        .site_title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(t) = site_title {
        too_long("site title", t, MAX_LABEL)?;
    }
    if p.links.len() > MAX_LINKS {
        return Err(Error::BadRequest(format!(
            "{} links given; at most {MAX_LINKS} are allowed",
            p.links.len()
        )));
    }
    let mut links = Vec::new();
    for l in &p.links {
        let (label, url) = (l.label.trim(), l.url.trim());
        if label.is_empty() {
            return Err(Error::BadRequest(format!(
                "the link to `{}` has no label",
                url.escape_default()
            )));
        }
        too_long("link label", label, MAX_LABEL)?;
        let mailto = url.to_ascii_lowercase().starts_with("mailto:") && url.len() > 7;
        if !(is_web_url(url) || mailto) || url.len() > MAX_URL {
            return Err(Error::BadRequest(format!(
                "the link `{}` must be an https://, http:// or mailto: URL",
                label.escape_default()
            )));
        }
        links.push(ProfileLink {
            label: label.to_string(),
            url: url.to_string(),
        });
    }
    Ok(Profile {
        name: name.to_string(),
        bio: p.bio.trim().replace("\r\n", "\n"),
        links,
        site_url: site_url.to_string(),
        site_title: site_title.map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_message(r: Result<TextEdit, Error>) -> (String, String) {
        let e = r.unwrap_err();
        (e.code().to_string(), e.to_string())
    }

    #[test]
    fn edits_are_measured_in_characters_with_the_crates_limits() {
        let ok = EditRequest {
            title: Some("é".repeat(MAX_TITLE)),
            ..Default::default()
        };
        assert_eq!(edit(&ok).unwrap().title.unwrap().chars().count(), 80);
        for (req, words) in [
            (
                EditRequest {
                    title: Some("x".repeat(MAX_TITLE + 1)),
                    ..Default::default()
                },
                "the title is 81 characters long; at most 80",
            ),
            (
                EditRequest {
                    title: Some("   ".into()),
                    ..Default::default()
                },
                "the title cannot be empty",
            ),
            (
                EditRequest {
                    summary: Some("s".repeat(161)),
                    ..Default::default()
                },
                "at most 160",
            ),
            (
                EditRequest {
                    body: Some("b".repeat(MAX_BODY + 1)),
                    ..Default::default()
                },
                "at most 2000",
            ),
            (
                EditRequest {
                    tags: Some((0..9).map(|i| format!("t{i}")).collect()),
                    ..Default::default()
                },
                "9 tags given; at most 8",
            ),
            (
                EditRequest {
                    tags: Some(vec!["x".repeat(33)]),
                    ..Default::default()
                },
                "longer than 32",
            ),
            (EditRequest::default(), "nothing to change"),
        ] {
            let (code, message) = code_and_message(edit(&req));
            assert_eq!(code, "bad_request");
            assert!(message.contains(words), "{message}");
        }
        // Windows line ends from a textarea are plain newlines.
        let e = edit(&EditRequest {
            body: Some("a\r\n\r\nb".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.body.as_deref(), Some("a\n\nb"));
        assert_eq!(split_tags(" rust, web app ,,"), ["rust", "web app"]);
    }

    #[test]
    fn profiles_need_a_name_and_real_urls() {
        let good = ProfileBody {
            name: " Alice ".into(),
            bio: "Hi".into(),
            links: parse_links("GitHub=https://github.com/alice\n\nMail = mailto:a@example.org")
                .unwrap(),
            site_url: "https://alice.example.org/".into(),
            site_title: Some(" ".into()),
        };
        let p = profile(&good).unwrap();
        assert_eq!(p.name, "Alice");
        assert_eq!(p.links[1].url, "mailto:a@example.org");
        assert_eq!(p.site_title, None);
        for (change, words) in [
            (
                Box::new(|p: &mut ProfileBody| p.name = "".into()) as Box<dyn Fn(&mut ProfileBody)>,
                "name cannot be empty",
            ),
            (
                Box::new(|p: &mut ProfileBody| p.site_url = "javascript:alert(1)".into()),
                "absolute http(s) URL",
            ),
            (
                Box::new(|p: &mut ProfileBody| p.links[0].url = "javascript:alert(1)".into()),
                "must be an https://",
            ),
            (
                Box::new(|p: &mut ProfileBody| p.links[0].label = " ".into()),
                "has no label",
            ),
            (
                Box::new(|p: &mut ProfileBody| p.bio = "b".repeat(MAX_BIO + 1)),
                "at most 2000",
            ),
        ] {
            let mut p = good.clone();
            change(&mut p);
            let e = profile(&p).unwrap_err();
            assert!(e.to_string().contains(words), "{e}");
        }
        assert!(parse_links("no equals sign")
            .unwrap_err()
            .to_string()
            .contains("LABEL=URL"));
    }
}
