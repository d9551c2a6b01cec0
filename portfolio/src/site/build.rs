//! Published versions + profile → every page of the site.

use std::collections::BTreeMap;

use askama::Template;

use super::pages::{self, Meta, MetaImage, ProfileLinkView, TagLink};
use super::{Profile, Site, SiteError, SiteFile};
use crate::capture::{ImageStore, Screenshots};
use crate::dates;
use crate::review::Version;

/// Cards per index page: keeps the index (HTML, CSS and thumbnails)
/// under 200 KB however many projects there are.
pub const PROJECTS_PER_PAGE: usize = 24;

const STYLE_CSS: &str = include_str!("../../../site-templates/assets/style.css");

fn render(page: &str, t: &impl Template) -> Result<Vec<u8>, SiteError> {
    t.render()
        .map(String::into_bytes)
        .map_err(|source| SiteError::Render {
            page: page.to_string(),
            source,
        })
}

fn safe_link(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// Builds the site. Only the given versions appear (pass
/// [`crate::review::Review::published`]); their images are taken from
/// `images` (a version whose image files are missing is shown without
/// screenshots rather than with broken ones).
pub fn build(
    profile: &Profile,
    published: &[Version],
    images: &ImageStore,
) -> Result<Site, SiteError> {
    if profile.name.trim().is_empty() {
        return Err(SiteError::Profile(
            "the owner's name is empty; set it with `byteport portfolio profile --name NAME`"
                .into(),
        ));
    }
    let mut site_url = profile.site_url.trim().to_string();
    if !(site_url.starts_with("http://") || site_url.starts_with("https://")) {
        return Err(SiteError::Profile(format!(
            "site_url {site_url:?} must be an absolute http(s) URL, e.g. https://alice.github.io/"
        )));
    }
    if !site_url.ends_with('/') {
        site_url.push('/');
    }
    // The path part of site_url, for the 404 page (served at any depth).
    let base_path = site_url
        .splitn(4, '/')
        .nth(3)
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| "/".into());

    let mut versions: Vec<&Version> = published.iter().collect();
    versions.sort_by(|a, b| {
        b.reviewed_at_ms
            .cmp(&a.reviewed_at_ms)
            .then_with(|| a.app.cmp(&b.app))
    });
    let with_images: BTreeMap<&str, bool> = versions
        .iter()
        .map(|v| {
            let ok = v.capture.shots().is_some_and(|s| {
                all_images(s).iter().all(|i| images.path_of(i).is_file())
            });
            if v.capture.shots().is_some() && !ok {
                tracing::warn!(app = %v.app, "portfolio: screenshot files missing; page built without them");
            }
            (v.app.as_str(), ok)
        })
        .collect();

    let site_title = pages::site_title(profile);
    let owner = profile.name.trim().to_string();
    let mut site = Site::default();
    site.insert_bytes(
        "style.css".into(),
        "text/css; charset=utf-8",
        STYLE_CSS.as_bytes().to_vec(),
    );

    // Images.
    for v in &versions {
        if let (Some(s), true) = (v.capture.shots(), with_images[v.app.as_str()]) {
            for i in all_images(s) {
                site.files.insert(
                    format!("img/{}", i.file_name()),
                    SiteFile::Image {
                        source: images.path_of(i),
                    },
                );
            }
        }
    }

    // Index pages.
    let bio: Vec<String> = profile
        .bio
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect();
    let index_description = bio.first().cloned().unwrap_or_else(|| site_title.clone());
    let links: Vec<ProfileLinkView> = profile
        .links
        .iter()
        .filter(|l| safe_link(&l.url) && !l.label.trim().is_empty())
        .map(|l| ProfileLinkView {
            label: l.label.trim().to_string(),
            url: l.url.trim().to_string(),
        })
        .collect();
    let chunks: Vec<&[&Version]> = if versions.is_empty() {
        vec![&[]]
    } else {
        versions.chunks(PROJECTS_PER_PAGE).collect()
    };
    let pages_total = chunks.len();
    let first_og = versions.iter().find_map(|v| {
        v.capture
            .shots()
            .filter(|_| with_images[v.app.as_str()])
            .map(|s| (v, s))
    });
    let mut sitemap: Vec<(String, Option<String>)> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i + 1;
        let (path, root, url) = if n == 1 {
            ("index.html".to_string(), "", site_url.clone())
        } else {
            (
                format!("page/{n}/index.html"),
                "../../",
                format!("{site_url}page/{n}/"),
            )
        };
        let page_href = |m: usize| {
            if m == 1 {
                root.to_string()
            } else {
                format!("{root}page/{m}/")
            }
        };
        let page = pages::IndexPage {
            root: root.into(),
            site_title: site_title.clone(),
            owner: owner.clone(),
            meta: Meta {
                title: if n == 1 {
                    site_title.clone()
                } else {
                    format!("{site_title} (page {n})")
                },
                description: index_description.clone(),
                url: url.clone(),
                og_type: "website",
                image: first_og.map(|(v, s)| og_image(&site_url, &v.text.title, s)),
            },
            first_page: n == 1,
            page_number: n,
            bio: bio.clone(),
            links: links
                .iter()
                .map(|l| ProfileLinkView {
                    label: l.label.clone(),
                    url: l.url.clone(),
                })
                .collect(),
            cards: chunk
                .iter()
                .map(|v| pages::card(root, v, with_images[v.app.as_str()]))
                .collect(),
            prev_href: (n > 1).then(|| page_href(n - 1)),
            next_href: (n < pages_total).then(|| page_href(n + 1)),
        };
        let html = render(&path, &page)?;
        site.insert_bytes(path, "text/html; charset=utf-8", html);
        sitemap.push((url, None));
    }

    // Project pages.
    for v in &versions {
        let path = format!("projects/{}/index.html", v.app);
        let url = format!("{site_url}projects/{}/", v.app);
        let root = "../../";
        let shots = v.capture.shots().filter(|_| with_images[v.app.as_str()]);
        let page = pages::ProjectPage {
            root: root.into(),
            site_title: site_title.clone(),
            owner: owner.clone(),
            meta: Meta {
                title: format!("{} — {}", v.text.title, owner),
                description: v.text.summary.clone(),
                url: url.clone(),
                og_type: "article",
                image: shots.map(|s| og_image(&site_url, &v.text.title, s)),
            },
            p: project_view(root, v, shots),
        };
        let html = render(&path, &page)?;
        site.insert_bytes(path, "text/html; charset=utf-8", html);
        sitemap.push((url, v.reviewed_at_ms.map(|ms| dates::date(ms / 1000))));
    }

    // Tag pages.
    let mut by_tag: BTreeMap<String, Vec<&Version>> = BTreeMap::new();
    for v in &versions {
        for t in &v.text.tags {
            by_tag.entry(t.clone()).or_default().push(v);
        }
    }
    for (tag, tagged) in &by_tag {
        let slug = pages::tag_slug(tag);
        let path = format!("tags/{slug}/index.html");
        let url = format!("{site_url}tags/{slug}/");
        let root = "../../";
        let page = pages::TagPage {
            root: root.into(),
            site_title: site_title.clone(),
            owner: owner.clone(),
            meta: Meta {
                title: format!("Projects tagged {tag} — {owner}"),
                description: format!("{} project(s) by {owner} tagged {tag}.", tagged.len()),
                url: url.clone(),
                og_type: "website",
                image: None,
            },
            tag: tag.clone(),
            cards: tagged
                .iter()
                .map(|v| pages::card(root, v, with_images[v.app.as_str()]))
                .collect(),
        };
        let html = render(&path, &page)?;
        site.insert_bytes(path, "text/html; charset=utf-8", html);
        sitemap.push((url, None));
    }
    let tags_page = pages::TagsPage {
        root: "../".into(),
        site_title: site_title.clone(),
        owner: owner.clone(),
        meta: Meta {
            title: format!("Tags — {site_title}"),
            description: format!("All tags of {owner}'s projects."),
            url: format!("{site_url}tags/"),
            og_type: "website",
            image: None,
        },
        tags: by_tag
            .iter()
            .map(|(t, vs)| TagLink {
                name: t.clone(),
                href: format!("{}/", pages::tag_slug(t)),
                count: vs.len(),
            })
            .collect(),
    };
    let html = render("tags/index.html", &tags_page)?;
    site.insert_bytes("tags/index.html".into(), "text/html; charset=utf-8", html);
    sitemap.push((format!("{site_url}tags/"), None));

    let not_found = pages::NotFoundPage {
        root: base_path,
        site_title: site_title.clone(),
        owner: owner.clone(),
        meta: Meta {
            title: format!("Not found — {site_title}"),
            description: index_description.clone(),
            url: format!("{site_url}404.html"),
            og_type: "website",
            image: None,
        },
    };
    let html = render("404.html", &not_found)?;
    site.insert_bytes("404.html".into(), "text/html; charset=utf-8", html);

    let xml = render("sitemap.xml", &pages::Sitemap { urls: sitemap })?;
    site.insert_bytes("sitemap.xml".into(), "application/xml; charset=utf-8", xml);

    let updated = versions
        .iter()
        .filter_map(|v| v.reviewed_at_ms)
        .max()
        .unwrap_or(0);
    let feed = pages::Feed {
        title: site_title.clone(),
        site_url: site_url.clone(),
        owner: owner.clone(),
        updated: dates::rfc3339(updated / 1000),
        entries: versions
            .iter()
            .map(|v| pages::FeedEntry {
                title: v.text.title.clone(),
                url: format!("{site_url}projects/{}/", v.app),
                updated: dates::rfc3339(v.reviewed_at_ms.unwrap_or(0) / 1000),
                summary: v.text.summary.clone(),
                tags: v.text.tags.clone(),
            })
            .collect(),
    };
    let xml = render("feed.xml", &feed)?;
    site.insert_bytes(
        "feed.xml".into(),
        "application/atom+xml; charset=utf-8",
        xml,
    );
    Ok(site)
}

fn all_images(s: &Screenshots) -> [&crate::capture::ImageRef; 5] {
    [
        &s.desktop,
        &s.mobile,
        &s.full_page,
        &s.open_graph,
        &s.thumbnail,
    ]
}

fn og_image(site_url: &str, title: &str, s: &Screenshots) -> MetaImage {
    MetaImage {
        url: format!("{site_url}img/{}", s.open_graph.file_name()),
        width: s.open_graph.width,
        height: s.open_graph.height,
        alt: pages::alt(title, "as a 1200×630 preview"),
    }
}

fn project_view(root: &str, v: &Version, shots: Option<&Screenshots>) -> pages::ProjectView {
    let title = &v.text.title;
    let f = &v.facts;
    let languages: Vec<pages::LangView> = f
        .languages
        .iter()
        .map(|l| pages::LangView {
            name: l.name.clone(),
            width: format!("{}.{}%", l.permille / 10, l.permille % 10),
            percent: format!("{}.{} %", l.permille / 10, l.permille % 10),
            color: pages::language_color(&l.name),
        })
        .collect();
    let languages_label = format!(
        "Languages: {}",
        languages
            .iter()
            .map(|l| format!("{} {}", l.name, l.percent))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut facts = Vec::new();
    if !f.frameworks.is_empty() {
        facts.push(("Built with".to_string(), f.frameworks.join(", ")));
    }
    if f.history.commits > 0 {
        let authors = match f.history.authors {
            0 | 1 => "1 author".to_string(),
            n => format!("{n} authors"),
        };
        let more = if f.history.truncated {
            "more than "
        } else {
            ""
        };
        facts.push((
            "History".into(),
            format!("{more}{} commits, {authors}", f.history.commits),
        ));
        facts.push((
            "Active".into(),
            format!(
                "{} – {}",
                dates::date(f.history.first_commit),
                dates::date(f.history.last_commit)
            ),
        ));
    }
    if let Some(ms) = v.reviewed_at_ms {
        facts.push(("Published".into(), dates::date(ms / 1000)));
    }
    pages::ProjectView {
        title: title.clone(),
        summary: v.text.summary.clone(),
        live_url: f.live_url.clone(),
        repository_url: f.repository_url.clone(),
        shots: shots.map(|s| pages::Shots {
            desktop: pages::img(
                root,
                &s.desktop,
                pages::alt(title, "on a 1280 px wide desktop screen"),
            ),
            mobile: pages::img(
                root,
                &s.mobile,
                pages::alt(title, "on a 390 px wide phone screen"),
            ),
            full_page_href: format!("{root}img/{}", s.full_page.file_name()),
        }),
        body: v
            .text
            .body
            .split("\n\n")
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        languages,
        languages_label,
        facts,
        tags: v
            .text
            .tags
            .iter()
            .map(|t| TagLink {
                name: t.clone(),
                href: format!("{root}tags/{}/", pages::tag_slug(t)),
                count: 0,
            })
            .collect(),
    }
}
