//! The router's own pages: small, self-explanatory, no internals shown.
//!
//! Every one is marked twice as the router's, so nobody takes it for the
//! app's: the response header `x-byteport-router: error` and, for
//! whatever drops headers on the way (a CDN, a saved page), the
//! `<meta name="byteport-router" content="error">` in its head. The
//! portfolio's screenshotter refuses a capture that carries either; keep
//! both exactly as they are.

/// The response header on the router's own pages (removed from the app's
/// responses, so an app cannot pass for the router).
pub const MARKER_HEADER: &str = "x-byteport-router";
/// [`MARKER_HEADER`]'s value.
pub const MARKER_VALUE: &str = "error";
/// The same marker inside the page's `<head>`.
pub const MARKER_META: &str = r#"<meta name="byteport-router" content="error">"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{MARKER_META}<title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;color:#222}}\
code{{background:#eee;padding:0 .3em}}</style></head><body><h1>{title}</h1>{body}\
<p><small>BytePort router</small></p></body></html>\n"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// 404: no app has this host.
pub fn unknown_host(host: &str) -> String {
    page(
        "No app here",
        &format!(
            "<p>No BytePort app answers to <code>{}</code>.</p>\
<p>Apps are served at <code>http://&lt;app&gt;.localhost:PORT</code>; push one with \
<code>git push ssh://git@HOST:2222/&lt;app&gt;.git main</code>.</p>",
            escape(host)
        ),
    )
}

/// 502: the app exists but nothing is serving it.
pub fn app_down(app: &str, why: &str) -> String {
    page(
        "App not running",
        &format!(
            "<p>The app <code>{}</code> is not answering right now: {}.</p>\
<p>If it is deploying, retry in a few seconds; otherwise see <code>byteport deploys {0}</code> \
and its logs.</p>",
            escape(app),
            escape(why)
        ),
    )
}

/// 503: the app is between two deploys with nothing serving it.
pub fn app_deploying(app: &str, retry_after_secs: u64) -> String {
    page(
        "App deploying",
        &format!(
            "<p>The app <code>{}</code> is being deployed and will be back in a moment.</p>\
<p>This page is not cached; retry in {} s. To follow the deploy: <code>byteport deploys {0}</code>.</p>",
            escape(app),
            retry_after_secs
        ),
    )
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3): rounded up, at
/// least 1 (0 would invite a retry storm).
pub fn retry_after_secs(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// 400: the request cannot be routed or forwarded as sent.
pub fn bad_request(why: &str) -> String {
    page("Bad request", &format!("<p>{}</p>", escape(why)))
}

/// 413: the request body is over `max_body_bytes`.
pub fn body_too_large(limit: u64) -> String {
    page(
        "Request body too large",
        &format!(
            "<p>This server accepts request bodies of at most {} bytes ({}).</p>",
            limit,
            human_bytes(limit)
        ),
    )
}

/// 504: the app sent no response in time.
pub fn app_too_slow(app: &str, waited: std::time::Duration) -> String {
    page(
        "App too slow",
        &format!(
            "<p>The app <code>{}</code> did not start answering within {} s.</p>\
<p>If this keeps happening, see its logs: <code>byteport logs {0}</code>.</p>",
            escape(app),
            waited.as_secs_f64()
        ),
    )
}

fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .iter()
        .find(|(size, _)| n >= *size)
        .map(|(size, unit)| format!("{:.1} {unit}", n as f64 / *size as f64))
        .unwrap_or_else(|| format!("{n} B"))
}

/// 503 to a connection over the caps, written before any request is read
/// (so it cannot wait for one) and without blocking: one short write.
/// `the_refusal_is_a_whole_http_response` checks its length.
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/html; charset=utf-8\r\n\
x-byteport-router: error\r\n\
cache-control: no-store\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 175\r\n\r\n\
<!doctype html><html><head><meta name=\"byteport-router\" content=\"error\">\
<title>Too many connections</title></head><body>Too many connections; retry in a moment.</body></html>\n";

#[cfg(test)]
mod tests {
    #[test]
    fn every_page_carries_the_marker_in_its_head() {
        for page in [
            super::unknown_host("x"),
            super::app_down("a", "it is starting"),
            super::app_deploying("a", 5),
            super::bad_request("why"),
            super::body_too_large(1),
            super::app_too_slow("a", std::time::Duration::from_secs(1)),
        ] {
            let head = &page[..page.find("</head>").expect("a head")];
            assert!(head.contains(super::MARKER_META), "{page}");
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        use std::time::Duration;
        for (d, secs) in [
            (0, 1),
            (1, 1),
            (1000, 1),
            (1001, 2),
            (1500, 2),
            (30_000, 30),
        ] {
            assert_eq!(
                super::retry_after_secs(Duration::from_millis(d)),
                secs,
                "{d} ms"
            );
        }
    }

    #[test]
    fn hostile_hosts_are_escaped() {
        let p = super::unknown_host("<script>alert(1)</script>");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;"));
    }

    #[test]
    fn the_refusal_is_a_whole_http_response() {
        let text = std::str::from_utf8(super::TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(head.contains("\r\nx-byteport-router: error\r\n"), "{head}");
        assert!(body.contains(super::MARKER_META), "{body}");
        assert!(super::body_too_large(100 << 20).contains("100.0 MiB"));
    }
}
