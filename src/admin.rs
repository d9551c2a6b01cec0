//! The admin commands users run over SSH (`ssh -p 2222 git@host CMD`), in
//! the spirit of Dokku: `help`, `apps`, `config`, `deploys`, `logs`,
//! `restart`. Every command is checked against the caller's access.

use crate::store::{Store, StoreError};

/// What an admin command produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AdminReply {
    /// Text for the client's stdout.
    pub stdout: String,
    /// Text for the client's stderr.
    pub stderr: String,
    /// Exit status sent to the client.
    pub code: u32,
}

impl AdminReply {
    fn ok(stdout: String) -> AdminReply {
        AdminReply {
            stdout,
            ..Default::default()
        }
    }
    fn fail(message: impl Into<String>) -> AdminReply {
        let mut stderr = message.into();
        if !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        AdminReply {
            stderr,
            code: 1,
            ..Default::default()
        }
    }
}

/// Help text shown by `help` and for unknown commands.
pub const HELP: &str = "\
BytePort commands (ssh -p PORT git@HOST COMMAND):
  help                                 this text
  apps                                 apps you own or collaborate on
  config APP                           show APP's config vars
  config APP set KEY=VALUE...          set config vars
  config APP unset KEY...              remove config vars
  deploys APP                          deploy history
  logs APP [-f]                        app logs (-f: follow)
  restart APP                          restart APP's VM on its live deploy
git:
  git push ssh://git@HOST:PORT/APP.git main   deploy
";

/// Longest admin command line accepted.
const MAX_LINE: usize = 64 * 1024;

/// Runs one admin command line for `user`.
pub async fn run(store: &Store, router_port: u16, user: &str, line: &str) -> AdminReply {
    if line.len() > MAX_LINE {
        return AdminReply::fail(format!(
            "command too long ({} bytes; limit {MAX_LINE})",
            line.len()
        ));
    }
    let Some(words) = shlex::split(line) else {
        return AdminReply::fail("cannot parse the command: unbalanced quotes");
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match dispatch(store, router_port, user, &words).await {
        Ok(reply) => reply,
        Err(e) => AdminReply::fail(format!("error: {e}")),
    }
}

async fn require_access(store: &Store, user: &str, app: &str) -> Result<(), StoreError> {
    if store.can_access(user, app).await? {
        Ok(())
    } else {
        // Same message whether the app exists or not: no probing for names.
        Err(StoreError::NotFound {
            kind: "app (or you have no access to it)",
            name: app.to_string(),
        })
    }
}

async fn dispatch(
    store: &Store,
    router_port: u16,
    user: &str,
    words: &[&str],
) -> Result<AdminReply, StoreError> {
    match words {
        [] | ["help"] | ["--help"] | ["-h"] => Ok(AdminReply::ok(HELP.to_string())),
        ["apps"] => {
            let apps = store.list_apps(Some(user)).await?;
            let mut out = String::new();
            if apps.is_empty() {
                out.push_str("no apps yet: git push a repository with a Byteport manifest\n");
            }
            for a in apps {
                let live = store.live_deploy(&a.name).await?;
                out.push_str(&format!(
                    "{:<24} {:<12} http://{}.localhost:{router_port}\n",
                    a.name,
                    live.map(|d| format!("deploy #{}", d.number))
                        .unwrap_or_else(|| "not live".into()),
                    a.name
                ));
            }
            Ok(AdminReply::ok(out))
        }
        ["config", app] => {
            require_access(store, user, app).await?;
            let vars = store.config_vars(app).await?;
            Ok(AdminReply::ok(
                vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
            ))
        }
        ["config", app, "set", pairs @ ..] if !pairs.is_empty() => {
            require_access(store, user, app).await?;
            let mut parsed = vec![];
            for p in pairs {
                match p.split_once('=') {
                    Some((k, v)) if !k.is_empty() => parsed.push((k.to_string(), v.to_string())),
                    _ => return Ok(AdminReply::fail(format!("`{p}` is not KEY=VALUE"))),
                }
            }
            store.set_config(app, &parsed).await?;
            Ok(AdminReply::ok(format!(
                "set {} on {app} (takes effect on the next deploy or restart)\n",
                parsed
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        ["config", app, "unset", keys @ ..] if !keys.is_empty() => {
            require_access(store, user, app).await?;
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            let n = store.unset_config(app, &keys).await?;
            Ok(AdminReply::ok(format!("removed {n} var(s) from {app}\n")))
        }
        ["deploys", app] => {
            require_access(store, user, app).await?;
            let mut out = String::new();
            for d in store.list_deploys(app, 20).await? {
                out.push_str(&format!(
                    "#{:<4} {:<10} {}{}\n",
                    d.number,
                    d.status.as_str(),
                    d.commit.get(..12).unwrap_or(&d.commit),
                    d.failure_reason
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default()
                ));
            }
            if out.is_empty() {
                out = format!("{app} has no deploys yet\n");
            }
            Ok(AdminReply::ok(out))
        }
        ["logs", app] | ["logs", app, "-f"] | ["logs", "-f", app] => {
            require_access(store, user, app).await?;
            let segments = store.log_segments(app).await?;
            if segments.is_empty() {
                return Ok(AdminReply::ok(format!("{app} has no logs yet\n")));
            }
            let mut out = String::new();
            for s in segments.iter().rev() {
                if let Ok(text) = std::fs::read_to_string(&s.path) {
                    out.push_str(&text);
                }
            }
            Ok(AdminReply::ok(out))
        }
        ["restart", app] => {
            require_access(store, user, app).await?;
            Ok(AdminReply::fail(format!(
                "restart {app}: restarting over SSH is not wired to the supervisor yet; push again (or `git commit --allow-empty`) to redeploy"
            )))
        }
        [cmd, ..] => Ok(AdminReply::fail(format!(
            "unknown or incomplete command `{}`\n\n{HELP}",
            cmd.escape_default()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICDkA31zzsJ+GveuiOShxwxvnGAMWnU9bigP+TVyTJ7c alice@laptop";

    async fn store() -> (tempfile::TempDir, Store) {
        let home = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", home.path().join("s.db").display());
        let store = Store::open(&url, home.path()).await.unwrap();
        store.add_key("alice", KEY).await.unwrap();
        store.add_user("bob", None).await.unwrap();
        store.create_app("hello", "alice").await.unwrap();
        (home, store)
    }

    #[tokio::test]
    async fn owner_manages_config_and_sees_apps() {
        let (_h, s) = store().await;
        let r = run(&s, 8000, "alice", "apps").await;
        assert!(r.stdout.contains("hello") && r.stdout.contains("http://hello.localhost:8000"));
        let r = run(
            &s,
            8000,
            "alice",
            "config hello set 'GREETING=hi there' MODE=1",
        )
        .await;
        assert_eq!(r.code, 0, "{r:?}");
        let r = run(&s, 8000, "alice", "config hello").await;
        assert_eq!(r.stdout, "GREETING=hi there\nMODE=1\n");
        let r = run(&s, 8000, "alice", "config hello unset MODE").await;
        assert!(r.stdout.contains("removed 1"));
        let r = run(&s, 8000, "alice", "deploys hello").await;
        assert!(r.stdout.contains("no deploys yet"));
    }

    #[tokio::test]
    async fn others_cannot_see_or_touch_an_app() {
        let (_h, s) = store().await;
        for cmd in [
            "config hello",
            "config hello set A=1",
            "deploys hello",
            "logs hello",
            "restart hello",
        ] {
            let r = run(&s, 8000, "bob", cmd).await;
            assert_eq!(r.code, 1, "{cmd}: {r:?}");
            assert!(r.stderr.contains("no access"), "{cmd}: {r:?}");
        }
        assert!(s.config_vars("hello").await.unwrap().is_empty());
        assert!(run(&s, 8000, "bob", "apps")
            .await
            .stdout
            .contains("no apps yet"));
    }

    #[tokio::test]
    async fn hostile_and_malformed_lines_get_clear_errors() {
        let (_h, s) = store().await;
        let r = run(&s, 8000, "alice", "config 'hello").await;
        assert!(r.stderr.contains("unbalanced quotes"), "{r:?}");
        let r = run(&s, 8000, "alice", &"x".repeat(MAX_LINE + 1)).await;
        assert!(r.stderr.contains("too long"), "{r:?}");
        let r = run(&s, 8000, "alice", "rm -rf /").await;
        assert!(
            r.stderr.contains("unknown or incomplete command `rm`"),
            "{r:?}"
        );
        let r = run(&s, 8000, "alice", "config ../../etc/passwd").await;
        assert_eq!(r.code, 1);
        let r = run(&s, 8000, "alice", "config hello set bad-key=1").await;
        assert!(r.stderr.contains("invalid variable name"), "{r:?}");
        let r = run(&s, 8000, "alice", "config hello set NOEQUALS").await;
        assert!(r.stderr.contains("not KEY=VALUE"), "{r:?}");
        let r = run(&s, 8000, "alice", "\u{0}\u{1b}[2J").await;
        assert_eq!(r.code, 1);
        assert!(
            !r.stderr.contains('\u{1b}'),
            "control bytes are escaped: {r:?}"
        );
        assert_eq!(run(&s, 8000, "alice", "").await.stdout, HELP);
    }

    #[tokio::test]
    async fn restart_says_plainly_that_it_is_not_wired() {
        let (_h, s) = store().await;
        let r = run(&s, 8000, "alice", "restart hello").await;
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("not wired"), "{r:?}");
    }
}
