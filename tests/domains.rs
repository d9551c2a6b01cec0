//! Domain hijacking, tried as a tenant with a valid key would: a push
//! that names another app's address or a domain another app serves is
//! rejected with a clear message, and the victim keeps serving.

mod support;

use std::path::Path;

use support::daemon::{git, Daemon};

fn manifest(app: &str, domains: &str) -> String {
    format!(
        "app {app}\nfrom busybox\n\nbuild {{\n  copy public /srv\n}}\n\nweb {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n}}\n\ndomains {domains}\n"
    )
}

fn text(o: &std::process::Output) -> String {
    testvm::git::text(o)
}

fn push(
    d: &Daemon,
    work: &Path,
    ssh: &str,
    app: &str,
    domains: &str,
    page: &str,
) -> std::process::Output {
    std::fs::create_dir_all(work.join("public")).unwrap();
    std::fs::write(work.join("Byteport"), manifest(app, domains)).unwrap();
    std::fs::write(work.join("public/index.html"), page).unwrap();
    git(work, &["add", "-A"], None);
    git(work, &["commit", "-qm", page], None);
    git(
        work,
        &["push", "-q", &d.remote(app), "HEAD:main"],
        Some(ssh),
    )
}

fn get_host(d: &Daemon, host: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", d.router_port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with("HTTP/1.1 200") {
        Ok(out)
    } else {
        Err(out)
    }
}

#[test]
fn a_push_cannot_take_another_apps_address_or_claimed_domain() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let victim_key = d.add_key(tmp.path(), "victim");
    let attacker_key = d.add_key(tmp.path(), "mallory");
    let (victim_ssh, attacker_ssh) = (d.ssh_command(&victim_key), d.ssh_command(&attacker_key));
    let (vw, aw) = (tmp.path().join("v"), tmp.path().join("a"));
    for w in [&vw, &aw] {
        std::fs::create_dir_all(w).unwrap();
        git(w, &["init", "-q"], None);
    }
    let out = push(
        &d,
        &vw,
        &victim_ssh,
        "shop",
        "shop.example.test",
        "the real shop",
    );
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert!(get_host(&d, "shop.example.test")
        .unwrap()
        .contains("the real shop"));

    // Another tenant's app claims the victim's custom domain.
    let out = push(
        &d,
        &aw,
        &attacker_ssh,
        "evil",
        "shop.example.test",
        "phishing",
    );
    assert!(!out.status.success(), "hijack accepted: {}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("domain `shop.example.test` belongs to shop"),
        "{t}\n{}",
        d.log()
    );
    // ... or the victim's own address under the router's base name.
    let out = push(&d, &aw, &attacker_ssh, "evil", "shop.localhost", "phishing");
    assert!(!out.status.success(), "hijack accepted: {}", text(&out));
    assert!(
        text(&out)
            .contains("`shop.localhost` is under `shop.localhost`, the address of app `shop`"),
        "{}",
        text(&out)
    );
    let out = push(
        &d,
        &aw,
        &attacker_ssh,
        "evil",
        "www.shop.localhost",
        "phishing",
    );
    assert!(!out.status.success(), "hijack accepted: {}", text(&out));

    // The victim still serves both names.
    assert!(get_host(&d, "shop.example.test")
        .unwrap()
        .contains("the real shop"));
    assert!(d.get("shop").unwrap().contains("the real shop"));

    // Released when the owner deploys without it: then it may be claimed.
    let out = push(
        &d,
        &vw,
        &victim_ssh,
        "shop",
        "shop2.example.test",
        "the real shop, moved",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = push(
        &d,
        &aw,
        &attacker_ssh,
        "evil",
        "shop.example.test",
        "now legitimately",
    );
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert!(get_host(&d, "shop.example.test")
        .unwrap()
        .contains("now legitimately"));
    assert!(get_host(&d, "shop2.example.test")
        .unwrap()
        .contains("moved"));
}
