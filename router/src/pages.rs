//! The router's own pages: small, self-explanatory, no internals shown.

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
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

/// 400: the request has no usable Host header.
pub fn bad_request(why: &str) -> String {
    page("Bad request", &format!("<p>{}</p>", escape(why)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_hosts_are_escaped() {
        let p = super::unknown_host("<script>alert(1)</script>");
        assert!(!p.contains("<script>"));
        assert!(p.contains("&lt;script&gt;"));
    }
}
