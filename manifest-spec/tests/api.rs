//! The public API on whole manifests: the draft from the product page,
//! defaults, the summary line and multi-error runs.

use manifest_spec::{parse, Base, BuildStep, Database, Description, Network, Publish, User};

const DRAFT: &str = r#"# Byteport — at the repository root
app hello-flask
from debian:bookworm
packages python3 python3-flask

build {
  copy . /app
  workdir /app
  run python3 -m compileall -q .
}

env {
  GREETING = "hello from a microVM"
}
secret DATABASE_URL

vm {
  cpus 1
  memory 256M
  disk 1G
}

web {
  run python3 app.py
  port 8080
  health GET /healthz every 5s timeout 2s
}

worker {
  run python3 jobs.py
}

portfolio {
  title "Hello Flask"
  tags python flask
  screenshot / wait 2s
  description auto
  publish review
}
"#;

#[test]
fn the_product_draft_parses_into_the_typed_model() {
    let m = parse(DRAFT.as_bytes(), "Byteport").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.app, "hello-flask");
    assert_eq!(
        m.base,
        Base::Debian {
            suite: "bookworm".into()
        }
    );
    assert_eq!(m.packages, ["python3", "python3-flask"]);
    assert_eq!(
        m.build[2],
        BuildStep::Run {
            command: "python3 -m compileall -q .".into(),
            line: 9
        }
    );
    assert_eq!(m.env["GREETING"], "hello from a microVM");
    assert_eq!(m.secrets[0].name, "DATABASE_URL");
    assert!(!m.secrets[0].at_build);
    assert_eq!(
        (m.vm.cpus, m.vm.memory_bytes, m.vm.disk_bytes),
        (1, 256 << 20, 1 << 30)
    );
    let web = m.web.as_ref().unwrap();
    assert_eq!((web.run.as_str(), web.port), ("python3 app.py", 8080));
    let h = web.health.as_ref().unwrap();
    assert_eq!(
        (
            h.method.as_str(),
            h.path.as_str(),
            h.interval_ms,
            h.timeout_ms
        ),
        ("GET", "/healthz", 5000, 2000)
    );
    assert_eq!(m.workers[0].name, "worker");
    let p = m.portfolio.as_ref().unwrap();
    assert_eq!(p.title, "Hello Flask");
    assert_eq!(p.tags, ["python", "flask"]);
    assert_eq!(p.screenshot.as_ref().unwrap().wait_ms, 2000);
    assert_eq!(p.description, Description::Auto);
    assert_eq!(p.publish, Publish::Review);
    assert_eq!(
        m.summary(),
        "hello-flask: Byteport manifest OK (from debian:bookworm, 1 vCPU, 256M)"
    );
    assert_eq!(m.workdir(), "/app");
}

#[test]
fn defaults_are_filled_in() {
    let m = parse(b"app w\nfrom busybox\nworker beat {\n run sh -c 'while true; do echo hi; sleep 5; done'\n}", "B").unwrap();
    assert_eq!(
        (m.vm.cpus, m.vm.memory_bytes, m.vm.disk_bytes),
        (1, 256 << 20, 1 << 30)
    );
    assert_eq!(
        m.build.len(),
        2,
        "default build copies the repository to /app"
    );
    assert_eq!(m.workdir(), "/app");
    assert!(m.web.is_none());
    assert_eq!(m.workers[0].name, "beat");
}

#[test]
fn json_round_trips() {
    let m = parse(DRAFT.as_bytes(), "Byteport").unwrap();
    let json = serde_json::to_string(&m).unwrap();
    let back: manifest_spec::Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn several_errors_are_reported_in_one_run() {
    let src = "app Hello\nfrom debian:bookwrom\nvm {\n  memroy 256M\n  cpus 64\n}\nweb {\n  port 99999\n}\n";
    let e = parse(src.as_bytes(), "Byteport").unwrap_err();
    let text = e.to_string();
    assert!(e.len() >= 5, "{text}");
    assert!(
        text.contains("Byteport:1:5: error: app name `Hello` is not a DNS label"),
        "{text}"
    );
    assert!(text.contains("did you mean `debian:bookworm`?"), "{text}");
    assert!(
        text.contains("Byteport:4:3: error: unknown directive `memroy` in the `vm` block"),
        "{text}"
    );
    assert!(text.contains("did you mean `memory`?"), "{text}");
    assert!(text.contains("cpus must be between 1 and 32"), "{text}");
    assert!(text.contains("port must be between 1 and 65535"), "{text}");
    assert!(text.contains("`web` block needs `run`"), "{text}");
}

#[test]
fn network_is_on_by_default_and_off_is_a_setting_not_a_step() {
    let m = parse(DRAFT.as_bytes(), "Byteport").unwrap();
    assert_eq!((m.build_network, m.vm.network), (Network::On, Network::On));
    let off = DRAFT
        .replace("build {\n", "build {\n  network off\n")
        .replace("  disk 1G\n", "  disk 1G\n  network off\n");
    let m = parse(off.as_bytes(), "Byteport").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (m.build_network, m.vm.network),
        (Network::Off, Network::Off)
    );
    assert_eq!(
        m.build.len(),
        3,
        "`network` is not a build step: {:?}",
        m.build
    );
    assert_eq!(Network::Off.to_string(), "off");
    // Without a build block the default steps come with the default network.
    let m = parse(
        b"app a\nfrom busybox\nworker {\n  run true\n}\n",
        "Byteport",
    )
    .unwrap();
    assert_eq!(m.build_network, Network::On);
}

#[test]
fn what_an_app_keeps_parses_into_the_typed_model() {
    let src = "app flaskr\nfrom debian:bookworm\nvolume data /app/instance 1G\nvolume media /srv/media 16M\nrelease {\n  run flask --app flaskr init-db\n}\ndatabase postgres\nweb {\n  run flask run\n  port 8080\n}\n";
    let m = parse(src.as_bytes(), "Byteport").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.user, User::App, "app is the default user");
    assert_eq!(m.volumes.len(), 2);
    assert_eq!(
        (
            m.volumes[0].name.as_str(),
            m.volumes[0].path.as_str(),
            m.volumes[0].size_bytes
        ),
        ("data", "/app/instance", 1 << 30)
    );
    assert_eq!(m.volumes[1].size_bytes, 16 << 20);
    assert_eq!(
        m.release.as_ref().unwrap().run,
        "flask --app flaskr init-db"
    );
    assert_eq!(m.database, Some(Database::Postgres));
    assert_eq!(m.web.as_ref().unwrap().instances, 1);

    let root = parse(
        b"app r\nfrom busybox\nuser root\nweb {\n  run httpd -f -p 80\n  port 80\n  instances 3\n}\n",
        "Byteport",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(root.user, User::Root);
    assert_eq!(root.web.unwrap().instances, 3);
    assert!(root.volumes.is_empty() && root.release.is_none() && root.database.is_none());
}

#[test]
fn manifests_stored_before_these_directives_still_deserialize() {
    // JSON of a manifest from before `user`, `volume`, `release`,
    // `database` and `instances`: the defaults fill in.
    let old = r#"{"app":"a","base":{"kind":"busybox"},"packages":[],"build":[],"env":{},
        "secrets":[],"vm":{"cpus":1,"memory_bytes":268435456,"disk_bytes":1073741824},
        "web":{"run":"x","port":80,"health":null},"workers":[],"domains":[],"portfolio":null}"#;
    let m: manifest_spec::Manifest = serde_json::from_str(old).unwrap();
    assert_eq!(m.user, User::App);
    assert!(m.volumes.is_empty() && m.release.is_none() && m.database.is_none());
    assert_eq!(m.web.unwrap().instances, 1);
}

#[test]
fn description_off_auto_text_and_a_bad_word() {
    let src = |d: &str| {
        format!("app a\nfrom busybox\nweb {{\n  run true\n  port 8080\n}}\nportfolio {{\n  description {d}\n}}\n")
    };
    let desc = |d: &str| {
        manifest_spec::parse(src(d).as_bytes(), "Byteport")
            .map(|m| m.portfolio.unwrap().description)
    };
    assert_eq!(desc("off").unwrap(), Description::Off);
    assert_eq!(desc("auto").unwrap(), Description::Auto);
    assert_eq!(desc("\"mine\"").unwrap(), Description::Text("mine".into()));
    let err = desc("maybe").unwrap_err().to_string();
    assert!(
        err.contains("Byteport:8:15") && err.contains("description off"),
        "{err}"
    );
}
