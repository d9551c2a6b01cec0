use super::*;

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn defaults_apply_without_file_or_env() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_string();
    let env = move |k: &str| (k == "BYTEPORT_HOME").then(|| home.clone());
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.ssh_addr.to_string(), "127.0.0.1:2222");
    assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(c.router_addr.to_string(), "127.0.0.1:8000");
    assert_eq!(c.driver, Driver::Auto);
    assert_eq!(c.deploy_branches, vec!["main", "master"]);
    assert!(c.database_url.contains("state.db"));
    assert_eq!(c.sources["ssh_addr"], Source::Default);
    assert_eq!(c.sources["home"], Source::Env("BYTEPORT_HOME".into()));
    assert!(c.file.is_none());
}

#[test]
fn env_overrides_file_and_file_overrides_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("byteport.toml"),
        "ssh_addr = \"127.0.0.1:3333\"\nhttp_addr = \"127.0.0.1:9090\"\ndriver = \"qemu\"\n",
    )
    .unwrap();
    let home = dir.path().to_str().unwrap().to_string();
    let env = move |k: &str| match k {
        "BYTEPORT_HOME" => Some(home.clone()),
        "BYTEPORT_HTTP_ADDR" => Some("127.0.0.1:7070".into()),
        _ => None,
    };
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.ssh_addr.port(), 3333);
    assert_eq!(c.http_addr.port(), 7070);
    assert_eq!(c.driver, Driver::Qemu);
    assert!(matches!(c.sources["ssh_addr"], Source::File(_)));
    assert_eq!(
        c.sources["http_addr"],
        Source::Env("BYTEPORT_HTTP_ADDR".into())
    );
    assert_eq!(c.sources["router_addr"], Source::Default);
    let shown = c.render();
    assert!(shown.contains("ssh_addr") && shown.contains("(env BYTEPORT_HTTP_ADDR)"));
}

#[test]
fn bad_values_name_the_key_and_the_source() {
    let err = Config::load(
        None,
        &env_of(&[
            ("BYTEPORT_HOME", "/tmp/x"),
            ("BYTEPORT_SSH_ADDR", "localhost"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ssh_addr") && err.contains("BYTEPORT_SSH_ADDR"),
        "{err}"
    );
    let err = Config::load(
        None,
        &env_of(&[("BYTEPORT_HOME", "/tmp/x"), ("BYTEPORT_DRIVER", "xen")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown driver `xen`"), "{err}");
}

#[test]
fn build_ca_is_host_none_or_an_existing_bundle() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_str().unwrap().to_string();
    let load = |ca: Option<&str>| {
        let (h, ca) = (h.clone(), ca.map(String::from));
        Config::load(None, &move |k| match k {
            "BYTEPORT_HOME" => Some(h.clone()),
            "BYTEPORT_BUILD_CA" => ca.clone(),
            _ => None,
        })
    };
    assert_eq!(load(None).unwrap().build_ca, builder::CaTrust::Host);
    assert_eq!(load(Some("none")).unwrap().build_ca, builder::CaTrust::None);
    let err = load(Some("/no/such/bundle.pem")).unwrap_err().to_string();
    assert!(
        err.contains("build_ca")
            && err.contains("BYTEPORT_BUILD_CA")
            && err.contains("/no/such/bundle.pem"),
        "{err}"
    );
    let c = load(Some("none")).unwrap();
    assert!(
        c.render().contains("build_ca                    = none"),
        "{}",
        c.render()
    );
}

#[test]
fn unknown_keys_and_broken_toml_are_rejected_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("b.toml");
    std::fs::write(&f, "sshaddr = \"x\"\n").unwrap();
    let err = Config::load(Some(&f), &env_of(&[("BYTEPORT_HOME", "/tmp/x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `sshaddr`"), "{err}");
    std::fs::write(&f, "ssh_addr = \n").unwrap();
    let err = Config::load(Some(&f), &env_of(&[("BYTEPORT_HOME", "/tmp/x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn git_server_limits_parse_and_bad_ones_are_named() {
    let c = Config::load(None, &env_of(&[("BYTEPORT_HOME", "/tmp/x")])).unwrap();
    assert_eq!(
        (
            c.ssh_max_connections,
            c.ssh_idle_timeout_secs,
            c.max_pack_size
        ),
        (64, 600, 1 << 30)
    );
    let c = Config::load(
        None,
        &env_of(&[
            ("BYTEPORT_HOME", "/tmp/x"),
            ("BYTEPORT_SSH_MAX_CONNECTIONS", "3"),
            ("BYTEPORT_SSH_IDLE_TIMEOUT_SECS", "30"),
            ("BYTEPORT_MAX_PACK_SIZE", "512M"),
        ]),
    )
    .unwrap();
    assert_eq!(
        (
            c.ssh_max_connections,
            c.ssh_idle_timeout_secs,
            c.max_pack_size
        ),
        (3, 30, 512 << 20)
    );
    for (var, bad) in [
        ("BYTEPORT_MAX_PACK_SIZE", "lots"),
        ("BYTEPORT_MAX_PACK_SIZE", "2T"),
        ("BYTEPORT_SSH_MAX_CONNECTIONS", "0"),
        ("BYTEPORT_SSH_IDLE_TIMEOUT_SECS", "-1"),
    ] {
        let err = Config::load(None, &|k: &str| match k {
            "BYTEPORT_HOME" => Some("/tmp/x".into()),
            k if k == var => Some(bad.into()),
            _ => None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains(var) && err.contains(bad), "{err}");
    }
}

#[test]
fn explicit_missing_file_is_an_error() {
    let err = Config::load(
        Some(Path::new("/nonexistent/byteport.toml")),
        &env_of(&[("BYTEPORT_HOME", "/tmp/x")]),
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn database_password_is_redacted() {
    assert_eq!(
        redact_url("postgres://bp:hunter2@db:5432/bp"),
        "postgres://bp:***@db:5432/bp"
    );
    assert_eq!(redact_url("sqlite:///x/state.db"), "sqlite:///x/state.db");
}

#[test]
fn trusted_proxy_is_an_ip_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_string();
    let h = home.clone();
    let env = move |k: &str| (k == "BYTEPORT_HOME").then(|| h.clone());
    assert_eq!(Config::load(None, &env).unwrap().http_trusted_proxy, None);
    std::fs::write(
        dir.path().join("byteport.toml"),
        "http_trusted_proxy = \"127.0.0.1\"\n",
    )
    .unwrap();
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.http_trusted_proxy, Some("127.0.0.1".parse().unwrap()));
    assert!(c.render().contains("http_trusted_proxy"));
    let env = move |k: &str| match k {
        "BYTEPORT_HOME" => Some(home.clone()),
        "BYTEPORT_HTTP_TRUSTED_PROXY" => Some("proxy.example".into()),
        _ => None,
    };
    let e = Config::load(None, &env).unwrap_err().to_string();
    assert!(e.contains("http_trusted_proxy"), "{e}");
}

#[test]
fn router_keys_set_the_routers_limits_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_string();
    let h = home.clone();
    let env = move |k: &str| (k == "BYTEPORT_HOME").then(|| h.clone());
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.router, ::router::RouterConfig::new(c.router_addr));
    std::fs::write(
        dir.path().join("byteport.toml"),
        "router_max_body_size = \"5M\"\nrouter_header_timeout_secs = 3\nrouter_trusted_proxies = \"10.0.0.0/8, 192.0.2.7\"\n",
    )
    .unwrap();
    let c = Config::load(None, &env).unwrap();
    assert_eq!(c.router.max_body_bytes, 5 << 20);
    assert_eq!(
        c.router.header_read_timeout,
        std::time::Duration::from_secs(3)
    );
    assert_eq!(c.router.trusted_proxies.len(), 2);
    let shown = c.render();
    assert!(
        shown.contains("router_max_body_size") && shown.contains("10.0.0.0/8"),
        "{shown}"
    );
    for (var, value, key) in [
        (
            "BYTEPORT_ROUTER_TRUSTED_PROXIES",
            "lb.example",
            "router_trusted_proxies",
        ),
        (
            "BYTEPORT_ROUTER_IDLE_TIMEOUT_SECS",
            "0",
            "router_idle_timeout_secs",
        ),
        ("BYTEPORT_ROUTER_MAX_HEADER_SIZE", "12", "router_"),
    ] {
        let home = home.clone();
        let env = move |k: &str| match k {
            "BYTEPORT_HOME" => Some(home.clone()),
            k if k == var => Some(value.to_string()),
            _ => None,
        };
        let e = Config::load(None, &env).unwrap_err().to_string();
        assert!(e.contains(key), "{var}={value}: {e}");
    }
}
