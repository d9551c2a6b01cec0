//! The static site: built from reviewed versions in a real SQLite store,
//! exported, validated (HTML parses, links and images resolve, alt texts,
//! Open Graph), reproducible, served, and published to a bare repository.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portfolio::capture::{CaptureOutcome, ImageRef, ImageStore, PageFacts, Screenshots};
use portfolio::draft::{DraftText, Drafted, DraftedBy};
use portfolio::facts::{Facts, History, LanguageShare, ManifestFacts, PublishPolicy};
use portfolio::review::Review;
use portfolio::site::{self, Profile, ProfileLink, PublishOutcome, PublishTarget};
use scraper::{Html, Selector};
use support::SqliteStore;

const SITE_URL: &str = "https://alice.example.invalid/";

fn webp(store: &ImageStore, w: u32, h: u32, seed: u8) -> ImageRef {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x as u8).wrapping_add(seed), y as u8, seed])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::WebP,
        )
        .unwrap();
    store.put_webp(&bytes, w, h).unwrap()
}

fn shots(store: &ImageStore, seed: u8) -> CaptureOutcome {
    CaptureOutcome::Captured {
        shots: Screenshots {
            desktop: webp(store, 64, 40, seed),
            mobile: webp(store, 39, 84, seed),
            full_page: webp(store, 64, 120, seed),
            open_graph: webp(store, 60, 32, seed),
            thumbnail: webp(store, 32, 20, seed),
        },
        page: PageFacts::default(),
    }
}

fn facts(app: &str) -> Facts {
    Facts {
        app: app.into(),
        commit: "a".repeat(40),
        manifest: ManifestFacts {
            title: app.into(),
            publish: PublishPolicy::Review,
            ..Default::default()
        },
        languages: vec![
            LanguageShare {
                name: "Rust".into(),
                lines: 700,
                permille: 700,
            },
            LanguageShare {
                name: "HTML".into(),
                lines: 300,
                permille: 300,
            },
        ],
        frameworks: vec!["axum".into()],
        history: History {
            commits: 12,
            truncated: false,
            first_commit: 1_767_225_600,
            last_commit: 1_772_323_200,
            authors: 2,
        },
        live_url: Some(format!("http://{app}.localhost:8000")),
        repository_url: Some(format!("https://git.example.invalid/alice/{app}")),
        ..Default::default()
    }
}

fn text(title: &str, tags: &[&str]) -> Drafted {
    Drafted {
        text: DraftText {
            title: title.into(),
            summary: format!("{title} in one sentence."),
            body: "First paragraph.\n\nSecond paragraph.".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        },
        by: DraftedBy::Offline,
        notes: vec![],
    }
}

fn profile() -> Profile {
    Profile {
        name: "Alice Example".into(),
        bio: "I build small web apps.\n\nThis is where they live.".into(),
        links: vec![
            ProfileLink {
                label: "Code".into(),
                url: "https://git.example.invalid/alice".into(),
            },
            ProfileLink {
                label: "Bad".into(),
                url: "javascript:alert(1)".into(),
            },
        ],
        site_url: SITE_URL.into(),
        site_title: None,
    }
}

/// A store with: 2 approved apps (one with a tricky title), one draft, one
/// rejected, and `extra` more approved apps.
async fn populated(dir: &Path, extra: usize) -> (Review<SqliteStore>, ImageStore) {
    let images = ImageStore::new(dir.join("images")).unwrap();
    let r = Review::new(SqliteStore::open(&dir.join("state.db")).await);
    r.record_draft(
        facts("hello"),
        text("Tom & Jerry's \"app\"", &["rust", "c++", "web"]),
        shots(&images, 1),
        None,
    )
    .await
    .unwrap();
    r.approve("hello", "alice", None).await.unwrap();
    r.record_draft(
        facts("notes"),
        text("Notes", &["rust"]),
        CaptureOutcome::NotRequested,
        None,
    )
    .await
    .unwrap();
    r.approve("notes", "alice", None).await.unwrap();
    r.record_draft(
        facts("secret-draft"),
        text("UNREVIEWED DRAFT", &["hidden"]),
        shots(&images, 2),
        None,
    )
    .await
    .unwrap();
    r.record_draft(
        facts("turned-down"),
        text("REJECTED ENTRY", &["hidden"]),
        shots(&images, 3),
        None,
    )
    .await
    .unwrap();
    r.reject("turned-down", "alice").await.unwrap();
    for i in 0..extra {
        let app = format!("extra{i:03}");
        r.record_draft(
            facts(&app),
            text(&format!("Extra {i}"), &["extra"]),
            shots(&images, 10 + i as u8),
            None,
        )
        .await
        .unwrap();
        r.approve(&app, "alice", None).await.unwrap();
    }
    (r, images)
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().unwrap() != ".git" {
                    stack.push(p);
                }
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Resolves a relative link of the page at `page` to a file of the export.
fn resolve(page: &str, href: &str) -> String {
    let href = href.split(['#', '?']).next().unwrap();
    let mut parts: Vec<&str> = page.split('/').collect();
    parts.pop();
    for seg in href.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut p = parts.join("/");
    if href.is_empty() || href.ends_with('/') {
        p = if p.is_empty() {
            "index.html".into()
        } else {
            format!("{p}/index.html")
        };
    }
    p
}

fn validate(tree: &BTreeMap<String, Vec<u8>>) {
    let sel = |s: &str| Selector::parse(s).unwrap();
    let mut pages = 0;
    for (path, bytes) in tree.iter().filter(|(p, _)| p.ends_with(".html")) {
        pages += 1;
        let html = std::str::from_utf8(bytes).unwrap();
        let doc = Html::parse_document(html);
        assert!(
            doc.errors.is_empty(),
            "{path}: HTML parse errors {:?}",
            doc.errors
        );
        for (selector, attr) in [
            ("a[href]", "href"),
            ("link[href]", "href"),
            ("img[src]", "src"),
        ] {
            for el in doc.select(&sel(selector)) {
                let target = el.value().attr(attr).unwrap();
                if target.starts_with("http://")
                    || target.starts_with("https://")
                    || target.starts_with("mailto:")
                {
                    continue;
                }
                if path == "404.html" {
                    assert!(
                        target.starts_with('/'),
                        "404 links are absolute paths: {target}"
                    );
                    continue;
                }
                let file = resolve(path, target);
                assert!(
                    tree.contains_key(&file),
                    "{path}: {target} → {file} does not exist"
                );
            }
        }
        for img in doc.select(&sel("img")) {
            let alt = img.value().attr("alt").unwrap_or("");
            assert!(!alt.trim().is_empty(), "{path}: image without alt text");
        }
        for prop in [
            "og:title",
            "og:description",
            "og:url",
            "og:type",
            "og:site_name",
        ] {
            let s = sel(&format!("meta[property=\"{prop}\"]"));
            assert!(doc.select(&s).next().is_some(), "{path}: no {prop}");
        }
        if let Some(og) = doc.select(&sel("meta[property=\"og:image\"]")).next() {
            let url = og.value().attr("content").unwrap();
            let file = url
                .strip_prefix(SITE_URL)
                .expect("og:image is absolute on the site");
            assert!(tree.contains_key(file), "{path}: og:image {url} missing");
            assert!(doc
                .select(&sel(
                    "meta[name=\"twitter:card\"][content=\"summary_large_image\"]"
                ))
                .next()
                .is_some());
        }
        assert!(
            !html.contains("UNREVIEWED DRAFT") && !html.contains("REJECTED ENTRY"),
            "{path} shows an unapproved entry"
        );
        assert!(
            !html.contains("javascript:"),
            "{path}: unsafe profile link kept"
        );
    }
    assert!(pages >= 5);
    // Sitemap and feed point at pages that exist.
    for xml in ["sitemap.xml", "feed.xml"] {
        let text = std::str::from_utf8(&tree[xml]).unwrap();
        assert!(text.starts_with("<?xml"), "{xml}");
        for url in text.split(SITE_URL).skip(1) {
            let rel = url.split(['<', '"']).next().unwrap();
            let file = resolve("index.html", rel);
            assert!(
                tree.contains_key(&file),
                "{xml}: {SITE_URL}{rel} → {file} missing"
            );
        }
    }
}

#[tokio::test]
async fn exported_site_is_valid_complete_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (review, images) = populated(dir.path(), 30).await;
    let published = review.published().await.unwrap();
    assert_eq!(published.len(), 32);

    let site = site::build(&profile(), &published, &images).unwrap();
    let out1 = dir.path().join("export1");
    let stats = site.export(&out1).unwrap();
    let tree = files(&out1);
    assert_eq!(stats.files, tree.len());
    validate(&tree);

    // Pages that must exist; only approved entries.
    for p in [
        "index.html",
        "page/2/index.html",
        "projects/hello/index.html",
        "projects/notes/index.html",
        "tags/index.html",
        "tags/rust/index.html",
        "tags/cplusplus/index.html",
        "404.html",
        "style.css",
        "sitemap.xml",
        "feed.xml",
    ] {
        assert!(tree.contains_key(p), "{p} missing");
    }
    assert!(!tree
        .keys()
        .any(|p| p.contains("secret-draft") || p.contains("turned-down") || p.contains("hidden")));

    // Escaping: the text shows as written, the markup stays intact.
    let hello = std::str::from_utf8(&tree["projects/hello/index.html"]).unwrap();
    let h1_line = hello.lines().find(|l| l.contains("<h1>")).unwrap();
    assert_eq!(
        h1_line.trim(),
        "<h1>Tom &#38; Jerry&#39;s &#34;app&#34;</h1>",
        "title escaped"
    );
    let doc = Html::parse_document(hello);
    let h1: String = doc
        .select(&Selector::parse("h1").unwrap())
        .next()
        .unwrap()
        .text()
        .collect();
    assert_eq!(h1, "Tom & Jerry's \"app\"");
    assert!(hello.contains("Rust 70.0 %") && hello.contains("12 commits, 2 authors"));

    // Byte-reproducible: build again from the same store, export elsewhere.
    let again = site::build(&profile(), &review.published().await.unwrap(), &images).unwrap();
    let out2 = dir.path().join("export2");
    again.export(&out2).unwrap();
    assert_eq!(tree, files(&out2), "two exports differ");

    // Export refuses a non-empty directory.
    assert!(site
        .export(&out1)
        .unwrap_err()
        .to_string()
        .contains("not empty"));

    // render() serves the same bytes; no escape from the site.
    assert_eq!(site.render("/").unwrap().1, tree["index.html"]);
    assert_eq!(
        site.render("projects/hello/").unwrap().1,
        tree["projects/hello/index.html"]
    );
    assert_eq!(
        site.render("/projects/hello/index.html").unwrap().0,
        "text/html; charset=utf-8"
    );
    assert!(site.render("../state.db").is_none());
    assert!(site.render("img/../../state.db").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_under_portfolio_with_axum() {
    let dir = tempfile::tempdir().unwrap();
    let (review, images) = populated(dir.path(), 0).await;
    let site = site::build(&profile(), &review.published().await.unwrap(), &images).unwrap();
    let image_path = site
        .paths()
        .find(|p| p.starts_with("img/"))
        .unwrap()
        .to_string();
    let handle = site::SiteHandle::new(site);
    let addr = support::serve(axum::Router::new().merge(site::router(handle.clone()))).await;
    let get = |path: &str| {
        let out = tokio::task::block_in_place(|| {
            std::process::Command::new("curl")
                .args([
                    "-s",
                    "-m",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{content_type} %{redirect_url}",
                ])
                .arg(format!("http://{addr}{path}"))
                .output()
                .unwrap()
        });
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(get("/portfolio"), format!("308  http://{addr}/portfolio/"));
    assert!(
        get("/other").starts_with("404"),
        "only /portfolio is the site's"
    );
    assert_eq!(get("/portfolio/"), "200 text/html; charset=utf-8 ");
    assert_eq!(
        get("/portfolio/projects/hello/"),
        "200 text/html; charset=utf-8 "
    );
    assert_eq!(get(&format!("/portfolio/{image_path}")), "200 image/webp ");
    assert_eq!(
        get("/portfolio/projects/secret-draft/"),
        "404 text/html; charset=utf-8 "
    );
    // A new site replaces the old one without a restart.
    handle.replace(portfolio::site::Site::default());
    assert!(get("/portfolio/").starts_with("404"));
}

fn target(dir: &Path, remote: &Path) -> PublishTarget {
    PublishTarget {
        remote: remote.to_string_lossy().into_owned(),
        branch: "main".into(),
        work_dir: dir.join("publish-work"),
        author_name: "BytePort".into(),
        author_email: "byteport@localhost".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_commits_once_per_change_to_a_bare_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (review, images) = populated(dir.path(), 0).await;
    let remote: PathBuf = dir.path().join("site.git");
    support::git(
        dir.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().unwrap(),
        ],
    );
    let t = target(dir.path(), &remote);

    let site1 = site::build(&profile(), &review.published().await.unwrap(), &images).unwrap();
    let first = tokio::task::block_in_place(|| site::publish(&site1, &t)).unwrap();
    assert!(
        matches!(first, PublishOutcome::Committed { .. }),
        "{first:?}"
    );
    // Same site again: no new commit.
    let again = tokio::task::block_in_place(|| site::publish(&site1, &t)).unwrap();
    assert_eq!(again, PublishOutcome::Unchanged);

    // The owner adds a CNAME in their repository; it survives publishes.
    let clone = dir.path().join("owner-clone");
    support::git(
        dir.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    std::fs::write(clone.join("CNAME"), "alice.example.invalid\n").unwrap();
    support::git(&clone, &["add", "CNAME"]);
    support::git(&clone, &["commit", "-qm", "custom domain"]);
    support::git(&clone, &["push", "-q", "origin", "main"]);

    // A new approval: one more commit with the new page.
    review
        .record_draft(
            facts("later"),
            text("Later", &["web"]),
            shots(&images, 9),
            None,
        )
        .await
        .unwrap();
    review.approve("later", "alice", None).await.unwrap();
    let site2 = site::build(&profile(), &review.published().await.unwrap(), &images).unwrap();
    let second = tokio::task::block_in_place(|| site::publish(&site2, &t)).unwrap();
    let PublishOutcome::Committed { commit, .. } = second else {
        panic!("{second:?}")
    };
    assert_eq!(support::git(&remote, &["rev-parse", "main"]), commit);
    assert_eq!(
        support::git(&remote, &["rev-list", "--count", "main"]),
        "3",
        "publish, owner's CNAME, publish"
    );

    // The remote holds exactly the export (+ CNAME and .nojekyll).
    let check = dir.path().join("check");
    support::git(
        dir.path(),
        &[
            "clone",
            "-q",
            remote.to_str().unwrap(),
            check.to_str().unwrap(),
        ],
    );
    let exported = dir.path().join("export");
    site2.export(&exported).unwrap();
    let mut published = files(&check);
    assert_eq!(
        published.remove("CNAME").as_deref(),
        Some(&b"alice.example.invalid\n"[..])
    );
    assert_eq!(published.remove(".nojekyll").as_deref(), Some(&b""[..]));
    assert_eq!(published, files(&exported));
}
