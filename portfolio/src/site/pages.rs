//! The askama templates (in `site-templates/templates`) and the view
//! models they render: every string pre-formatted, every link relative.

use askama::Template;

use super::Profile;
use crate::capture::ImageRef;
use crate::review::Version;

/// `<head>` data of one page.
pub struct Meta {
    pub title: String,
    pub description: String,
    /// Absolute URL of the page.
    pub url: String,
    pub og_type: &'static str,
    pub image: Option<MetaImage>,
}

/// The Open Graph image (absolute URL).
pub struct MetaImage {
    pub url: String,
    pub width: u32,
    pub height: u32,
    pub alt: String,
}

/// An `<img>`.
pub struct Img {
    pub src: String,
    pub alt: String,
    pub width: u32,
    pub height: u32,
}

pub struct TagLink {
    pub name: String,
    pub href: String,
    pub count: usize,
}

pub struct Card {
    pub href: String,
    pub title: String,
    pub initial: String,
    pub summary: String,
    pub thumbnail: Option<Img>,
    pub tags: Vec<TagLink>,
    pub live_url: Option<String>,
    pub repository_url: Option<String>,
}

pub struct ProfileLinkView {
    pub label: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub root: String,
    pub site_title: String,
    pub owner: String,
    pub meta: Meta,
    pub first_page: bool,
    pub page_number: usize,
    pub bio: Vec<String>,
    pub links: Vec<ProfileLinkView>,
    pub cards: Vec<Card>,
    pub prev_href: Option<String>,
    pub next_href: Option<String>,
}

#[derive(Template)]
#[template(path = "tag.html")]
pub struct TagPage {
    pub root: String,
    pub site_title: String,
    pub owner: String,
    pub meta: Meta,
    pub tag: String,
    pub cards: Vec<Card>,
}

#[derive(Template)]
#[template(path = "tags.html")]
pub struct TagsPage {
    pub root: String,
    pub site_title: String,
    pub owner: String,
    pub meta: Meta,
    pub tags: Vec<TagLink>,
}

pub struct Shots {
    pub desktop: Img,
    pub mobile: Img,
    pub full_page_href: String,
}

pub struct LangView {
    pub name: String,
    pub width: String,
    pub percent: String,
    pub color: String,
}

pub struct ProjectView {
    pub title: String,
    pub summary: String,
    pub live_url: Option<String>,
    pub repository_url: Option<String>,
    pub shots: Option<Shots>,
    pub body: Vec<String>,
    pub languages: Vec<LangView>,
    pub languages_label: String,
    pub facts: Vec<(String, String)>,
    pub tags: Vec<TagLink>,
}

#[derive(Template)]
#[template(path = "project.html")]
pub struct ProjectPage {
    pub root: String,
    pub site_title: String,
    pub owner: String,
    pub meta: Meta,
    pub p: ProjectView,
}

#[derive(Template)]
#[template(path = "not_found.html")]
pub struct NotFoundPage {
    pub root: String,
    pub site_title: String,
    pub owner: String,
    pub meta: Meta,
}

#[derive(Template)]
#[template(path = "sitemap.xml")]
pub struct Sitemap {
    pub urls: Vec<(String, Option<String>)>,
}

pub struct FeedEntry {
    pub title: String,
    pub url: String,
    pub updated: String,
    pub summary: String,
    pub tags: Vec<String>,
}

#[derive(Template)]
#[template(path = "feed.xml")]
pub struct Feed {
    pub title: String,
    pub site_url: String,
    pub owner: String,
    pub updated: String,
    pub entries: Vec<FeedEntry>,
}

/// A tag as a path segment: tags are already `[a-z0-9-+#._]`; `#` and `+`
/// would break URLs, so they are spelled out.
pub fn tag_slug(tag: &str) -> String {
    tag.replace('#', "sharp").replace('+', "plus")
}

/// Colours of well-known languages; others get one derived from the name.
pub fn language_color(name: &str) -> String {
    let known = match name {
        "Rust" => "#dea584",
        "Python" => "#3572a5",
        "JavaScript" => "#f1e05a",
        "TypeScript" => "#3178c6",
        "HTML" => "#e34c26",
        "CSS" => "#663399",
        "Go" => "#00add8",
        "Shell" | "Sh" | "BASH" | "Bash" => "#89e051",
        "Ruby" => "#701516",
        "Java" => "#b07219",
        "C" => "#555555",
        "C++" => "#f34b7d",
        "Other" => "#9a9aa3",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    // FNV-1a of the name picks a hue: stable across runs and machines.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!("hsl({} 55% 55%)", h % 360)
}

/// Alt text for a screenshot.
pub fn alt(title: &str, what: &str) -> String {
    format!("Screenshot of {title}, {what}")
}

pub(super) fn img(root: &str, image: &ImageRef, alt: String) -> Img {
    Img {
        src: format!("{root}img/{}", image.file_name()),
        alt,
        width: image.width,
        height: image.height,
    }
}

/// The card of a published version, for a page at `root`.
pub(super) fn card(root: &str, v: &Version, with_images: bool) -> Card {
    let title = v.text.title.clone();
    Card {
        href: format!("{root}projects/{}/", v.app),
        initial: title
            .chars()
            .next()
            .map(|c| c.to_uppercase().to_string())
            .unwrap_or_default(),
        summary: v.text.summary.clone(),
        thumbnail: v
            .capture
            .shots()
            .filter(|_| with_images)
            .map(|s| img(root, &s.thumbnail, alt(&title, "thumbnail"))),
        tags: v
            .text
            .tags
            .iter()
            .map(|t| TagLink {
                name: t.clone(),
                href: format!("{root}tags/{}/", tag_slug(t)),
                count: 0,
            })
            .collect(),
        live_url: v.facts.live_url.clone(),
        repository_url: v.facts.repository_url.clone(),
        title,
    }
}

/// Site title: the profile's, or "NAME — projects".
pub(super) fn site_title(profile: &Profile) -> String {
    profile
        .site_title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| format!("{} — projects", profile.name))
}
