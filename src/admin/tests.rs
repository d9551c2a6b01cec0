use std::sync::{Arc, Mutex};

use super::*;
use crate::config::Config;
use platform::store::Store;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDkA31zzsJ+GveuiOShxwxvnGAMWnU9bigP+TVyTJ7c alice@laptop";

/// What a command wrote, per stream.
#[derive(Default)]
struct Captured {
    stdout: Mutex<String>,
    stderr: Mutex<String>,
}

impl CommandOutput for Captured {
    fn write<'a>(&'a self, stream: Stream, text: &'a str) -> gitd::BoxFuture<'a, ()> {
        Box::pin(async move {
            match stream {
                Stream::Stdout => self.stdout.lock().unwrap().push_str(text),
                Stream::Stderr => self.stderr.lock().unwrap().push_str(text),
            }
        })
    }
}

#[derive(Debug)]
struct Reply {
    code: u32,
    stdout: String,
    stderr: String,
}

async fn run_as(p: &Platform, caller: Caller<'_>, line: &str) -> Reply {
    let out = Captured::default();
    let code = run(p, caller, line, &out).await;
    Reply {
        code,
        stdout: out.stdout.into_inner().unwrap(),
        stderr: out.stderr.into_inner().unwrap(),
    }
}

async fn platform() -> (tempfile::TempDir, Arc<Platform>) {
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap().to_string();
    let config = Config::load(None, &move |k| match k {
        "BYTEPORT_HOME" => Some(home_s.clone()),
        "BYTEPORT_DRIVER" => Some("qemu".into()),
        _ => None,
    })
    .unwrap();
    let store = Store::open(&config.database_url, home.path())
        .await
        .unwrap();
    store.add_key("alice", KEY).await.unwrap();
    store.add_user("bob", None).await.unwrap();
    store.create_app("hello", "alice").await.unwrap();
    let p = Arc::new(Platform::new(
        crate::driver::platform_settings(&config),
        store,
        router::RouteTable::new("localhost"),
    ));
    p.start().await.unwrap();
    (home, p)
}

fn app_line(p: &Platform, deploy: i64, text: &str) {
    (p.events.app_sink("hello", deploy))("web", "out", text);
}

#[tokio::test]
async fn owner_manages_config_and_sees_apps() {
    let (_h, p) = platform().await;
    let alice = Caller::User("alice");
    let r = run_as(&p, alice, "apps").await;
    assert!(
        r.stdout.contains("hello") && r.stdout.contains("http://hello.localhost:8000"),
        "{r:?}"
    );
    assert!(r.stdout.contains("not live"), "{r:?}");
    let r = run_as(&p, alice, "config hello set 'GREETING=hi there' MODE=1").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("restart hello"), "{r:?}");
    let r = run_as(&p, alice, "config hello").await;
    assert_eq!(r.stdout, "GREETING=hi there\nMODE=1\n");
    let r = run_as(&p, alice, "config hello unset MODE").await;
    assert!(r.stdout.contains("removed 1"));
    let r = run_as(&p, alice, "deploys hello").await;
    assert!(r.stdout.contains("no deploys yet"));
    let r = run_as(&p, alice, "ps").await;
    assert_eq!(r.stdout, "no VMs running\n");
}

#[tokio::test]
async fn others_cannot_see_or_touch_an_app() {
    let (_h, p) = platform().await;
    for cmd in [
        "config hello",
        "config hello set A=1",
        "deploys hello",
        "logs hello",
        "logs -f hello",
        "ps hello",
        "restart hello",
        "rollback hello 1",
        "stop hello",
        "start hello",
    ] {
        let r = run_as(&p, Caller::User("bob"), cmd).await;
        assert_eq!(r.code, 1, "{cmd}: {r:?}");
        assert!(r.stderr.contains("no access"), "{cmd}: {r:?}");
    }
    assert!(p.store.config_vars("hello").await.unwrap().is_empty());
    assert!(!p.store.app("hello").await.unwrap().unwrap().stopped);
    assert!(run_as(&p, Caller::User("bob"), "apps")
        .await
        .stdout
        .contains("no apps yet"));
}

#[tokio::test]
async fn the_operator_reaches_every_app_but_not_missing_ones() {
    let (_h, p) = platform().await;
    let r = run_as(&p, Caller::Operator, "config hello set A=1").await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run_as(&p, Caller::Operator, "apps").await;
    assert!(r.stdout.contains("hello"), "{r:?}");
    let r = run_as(&p, Caller::Operator, "deploys nope").await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no access"), "{r:?}");
}

#[tokio::test]
async fn lifecycle_commands_on_an_app_never_deployed_say_so() {
    let (_h, p) = platform().await;
    let alice = Caller::User("alice");
    for cmd in ["restart hello", "rollback hello", "start hello"] {
        let r = run_as(&p, alice, cmd).await;
        assert_eq!(r.code, 1, "{cmd}: {r:?}");
        // On a host that cannot boot, that is the first thing said.
        assert!(
            r.stderr.contains("no live deploy") || r.stderr.contains("cannot boot here"),
            "{cmd}: {r:?}"
        );
    }
    // Stopping is recorded even with nothing running, and kept.
    let r = run_as(&p, alice, "stop hello").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("was not running"), "{r:?}");
    assert!(p.store.app("hello").await.unwrap().unwrap().stopped);
    let r = run_as(&p, alice, "rollback hello v0").await;
    assert!(r.stderr.contains("not a deploy number"), "{r:?}");
    let r = run_as(&p, alice, "rollback hello abc").await;
    assert!(r.stderr.contains("not a deploy number"), "{r:?}");
}

#[tokio::test]
async fn logs_show_the_tail_across_deploys() {
    let (_h, p) = platform().await;
    let alice = Caller::User("alice");
    let r = run_as(&p, alice, "logs hello").await;
    assert_eq!(r.stdout, "hello has no logs yet\n");
    for deploy in 1..=2 {
        for i in 0..3 {
            app_line(&p, deploy, &format!("deploy {deploy} line {i}"));
        }
        // Build output is not part of the runtime log.
        p.events.emit(
            "hello",
            Some(deploy),
            None,
            platform::EventKind::BuildOutput {
                text: "compiling".into(),
            },
        );
    }
    let r = run_as(&p, alice, "logs hello -n 4").await;
    let texts: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split_once(" web  ").map_or(l, |(_, t)| t))
        .collect();
    assert_eq!(
        texts,
        [
            "deploy 1 line 2",
            "deploy 2 line 0",
            "deploy 2 line 1",
            "deploy 2 line 2"
        ],
        "{r:?}"
    );
    let r = run_as(&p, alice, "logs hello -n 100").await;
    assert_eq!(r.stdout.lines().count(), 6, "{r:?}");
    assert!(
        r.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with(" web  deploy 1 line 0"),
        "{r:?}"
    );
    let r = run_as(&p, alice, "logs hello -n x").await;
    assert!(r.stderr.contains("number of lines"), "{r:?}");
}

#[tokio::test]
async fn logs_follow_streams_new_lines_until_dropped() {
    let (_h, p) = platform().await;
    let out = Arc::new(Captured::default());
    let follow = {
        let (p, out) = (p.clone(), out.clone());
        tokio::spawn(async move { run(&p, Caller::User("alice"), "logs hello -f", &*out).await })
    };
    // The follower subscribes first; lines written afterwards must arrive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 0;
    while !out.stdout.lock().unwrap().contains("live line") {
        assert!(std::time::Instant::now() < deadline, "no live line arrived");
        app_line(&p, 1, &format!("live line {n}"));
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!follow.is_finished(), "-f keeps following");
    follow.abort();
}

#[tokio::test]
async fn hostile_and_malformed_lines_get_clear_errors() {
    let (_h, p) = platform().await;
    let alice = Caller::User("alice");
    let r = run_as(&p, alice, "config 'hello").await;
    assert!(r.stderr.contains("unbalanced quotes"), "{r:?}");
    let r = run_as(&p, alice, &"x".repeat(MAX_LINE + 1)).await;
    assert!(r.stderr.contains("too long"), "{r:?}");
    let r = run_as(&p, alice, "rm -rf /").await;
    assert!(
        r.stderr.contains("unknown or incomplete command `rm`"),
        "{r:?}"
    );
    let r = run_as(&p, alice, "config ../../etc/passwd").await;
    assert_eq!(r.code, 1);
    let r = run_as(&p, alice, "config hello set bad-key=1").await;
    assert!(r.stderr.contains("invalid variable name"), "{r:?}");
    let r = run_as(&p, alice, "config hello set NOEQUALS").await;
    assert!(r.stderr.contains("not KEY=VALUE"), "{r:?}");
    let r = run_as(&p, alice, "\u{0}\u{1b}[2J").await;
    assert_eq!(r.code, 1);
    assert!(
        !r.stderr.contains('\u{1b}'),
        "control bytes are escaped: {r:?}"
    );
    let r = run_as(&p, alice, "logs hello --evil").await;
    assert!(r.stderr.contains("unknown option"), "{r:?}");
    assert_eq!(run_as(&p, alice, "").await.stdout, HELP);
}

#[tokio::test]
async fn only_the_owner_destroys_and_only_when_confirmed() {
    let (h, p) = platform().await;
    p.store.share_app("hello", "bob").await.unwrap();
    let repo = h.path().join("repos/hello.git");
    std::fs::create_dir_all(&repo).unwrap();
    let r = run_as(&p, Caller::User("alice"), "destroy hello").await;
    assert!(r.stderr.contains("--confirm hello"), "{r:?}");
    let r = run_as(&p, Caller::User("alice"), "destroy hello --confirm other").await;
    assert!(r.stderr.contains("--confirm hello"), "{r:?}");
    let r = run_as(&p, Caller::User("bob"), "destroy hello --confirm hello").await;
    assert!(r.stderr.contains("only hello's owner (alice)"), "{r:?}");
    assert!(p.store.app("hello").await.unwrap().is_some() && repo.exists());
    let r = run_as(&p, Caller::User("alice"), "destroy hello --confirm hello").await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Destroyed hello"), "{r:?}");
    assert!(p.store.app("hello").await.unwrap().is_none());
    assert!(
        !repo.exists(),
        "a later app of that name must not inherit the history"
    );
}
