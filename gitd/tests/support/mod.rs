//! A gitd server in the test process (the library `byteport up` runs),
//! driven by the real `git` and OpenSSH clients.
#![allow(dead_code)]

pub mod client;
pub mod probe;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitd::{
    Access, AuthError, Authority, BoxFuture, CommandOutput, Commands, DeployError, DeployHook,
    DeployRequest, Stream,
};

/// Known keys (fingerprint → user); every known user may use every app.
#[derive(Default)]
pub struct Keys(pub Mutex<Vec<(String, String)>>);

impl Authority for Keys {
    fn user_for_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AuthError>> {
        Box::pin(async move {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(f, _)| f == fingerprint)
                .map(|(_, u)| u.clone()))
        })
    }
    fn authorize<'a>(
        &'a self,
        _user: &'a str,
        _app: &'a str,
        _access: Access,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A deploy hook that accepts every push and records it; a test can hold
/// deploys at a gate and see which started, finished or were dropped.
pub struct Record {
    /// Deploys that finished, in order.
    pub pushes: Mutex<Vec<DeployRequest>>,
    held: tokio::sync::watch::Sender<bool>,
    /// Deploys that began.
    pub started: AtomicUsize,
    /// Deploy futures dropped before they finished (the client left).
    pub dropped: AtomicUsize,
    /// Deploys of commits in this list are rejected with this reason.
    pub reject: Mutex<Option<String>>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            pushes: Mutex::default(),
            held: tokio::sync::watch::channel(false).0,
            started: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            reject: Mutex::new(None),
        }
    }
}

impl Record {
    /// Deploys from now on wait at the gate.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }
    /// Opens the gate.
    pub fn release(&self) {
        self.held.send_replace(false);
    }
    /// Waits (polling, up to `guard`) until `n` deploys have started.
    pub fn wait_started(&self, n: usize, guard: Duration) {
        let until = std::time::Instant::now() + guard;
        while self.started.load(Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < until,
                "hang guard: {n} deploys never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Counts a deploy future dropped before it finished.
struct DropWatch<'a>(&'a AtomicUsize, bool);

impl Drop for DropWatch<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl DeployHook for Record {
    fn deploy<'a>(
        &'a self,
        req: &'a DeployRequest,
        progress: gitd::hook::Progress<'a>,
    ) -> BoxFuture<'a, Result<(), DeployError>> {
        Box::pin(async move {
            let mut watch = DropWatch(&self.dropped, false);
            self.started.fetch_add(1, Ordering::SeqCst);
            progress("-----> test hook: deploying");
            let mut rx = self.held.subscribe();
            let _ = rx.wait_for(|held| !held).await;
            watch.1 = true;
            if let Some(reason) = self.reject.lock().unwrap().clone() {
                return Err(DeployError::Rejected { reason });
            }
            progress("-----> test hook: accepted");
            self.pushes.lock().unwrap().push(req.clone());
            Ok(())
        })
    }
}

struct NoCommands;

impl Commands for NoCommands {
    fn run<'a>(
        &'a self,
        _user: &'a str,
        line: &'a str,
        out: &'a dyn CommandOutput,
    ) -> BoxFuture<'a, u32> {
        Box::pin(async move {
            if let Some(secs) = line.strip_prefix("sleep ") {
                let secs: u64 = secs.trim().parse().unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(secs)).await;
            }
            out.write(Stream::Stdout, &format!("ran {line}\n")).await;
            0
        })
    }
}

/// A running server with one authorized key.
pub struct Server {
    pub runtime: tokio::runtime::Runtime,
    pub gitd: Option<gitd::Gitd>,
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub port: u16,
    pub hook: Arc<Record>,
}

pub use testvm::git::keygen;

/// The SHA256 fingerprint of a public key, as ssh-keygen prints it.
pub fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

impl Server {
    /// Starts gitd with defaults changed by `tune`.
    pub fn start(tune: impl FnOnce(&mut gitd::GitdConfig)) -> Server {
        Server::start_with(tune, Arc::new(NoCommands))
    }

    /// Starts gitd with defaults changed by `tune` and these admin
    /// commands.
    pub fn start_with(
        tune: impl FnOnce(&mut gitd::GitdConfig),
        commands: Arc<dyn Commands>,
    ) -> Server {
        // RUST_LOG=gitd=debug shows the server's side when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "client");
        let keys = Arc::new(Keys::default());
        keys.0
            .lock()
            .unwrap()
            .push((fingerprint(&key), "alice".into()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config =
            gitd::GitdConfig::new("127.0.0.1:0".parse().unwrap(), &dir.path().join("home"));
        tune(&mut config);
        let hook = Arc::new(Record::default());
        let gitd = runtime
            .block_on(gitd::serve(config, keys, hook.clone(), commands))
            .unwrap();
        let port = gitd.local_addr().port();
        Server {
            runtime,
            gitd: Some(gitd),
            dir,
            key,
            port,
            hook,
        }
    }

    /// `GIT_SSH_COMMAND` for the authorized key.
    pub fn ssh(&self) -> String {
        format!(
            "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR -o BatchMode=yes -i {} -p {}",
            self.key.display(),
            self.port
        )
    }

    /// The server's connection counters now.
    pub fn stats(&self) -> gitd::ConnectionStats {
        self.gitd.as_ref().unwrap().stats()
    }

    /// Waits (polling, up to `guard`) until `done` holds for the stats.
    pub fn wait_stats(&self, guard: Duration, done: impl Fn(&gitd::ConnectionStats) -> bool) {
        let until = std::time::Instant::now() + guard;
        loop {
            let s = self.stats();
            if done(&s) {
                return;
            }
            assert!(std::time::Instant::now() < until, "hang guard: {s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The remote URL of an app.
    pub fn url(&self, app: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{app}.git", self.port)
    }

    /// The bare repository of an app.
    pub fn repo(&self, app: &str) -> PathBuf {
        self.dir.path().join(format!("home/repos/{app}.git"))
    }

    /// Runs a raw exec over real ssh with `stdin` as input.
    pub fn exec(&self, command: &str, stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{} git@127.0.0.1 \"{command}\"", self.ssh()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _g = self.runtime.enter();
        self.gitd.take();
    }
}

/// Runs `git` in `dir` with `GIT_SSH_COMMAND = ssh` and extra `env`,
/// protocol v0 unless `env` or the args say otherwise.
pub fn git_env(dir: &Path, args: &[&str], ssh: &str, env: &[(&str, &str)]) -> Output {
    let mut all = vec!["-c", "protocol.version=0"];
    all.extend_from_slice(args);
    testvm::git::git_env(dir, &all, Some(ssh), env)
}

/// Runs `git` in `dir` (protocol v0 unless the args say otherwise).
pub fn git(dir: &Path, args: &[&str], ssh: &str) -> Output {
    git_env(dir, args, ssh, &[])
}

/// Runs `git`, asserting success; returns trimmed stdout.
pub fn git_ok(dir: &Path, args: &[&str], ssh: &str) -> String {
    let out = git(dir, args, ssh);
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub use testvm::git::text;

/// Commits a file change in `dir`, a minute after the previous commit
/// of this test process (so date-ordered walks see a real history).
pub fn commit(dir: &Path, file: &str, content: &str, msg: &str) {
    static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(parent) = Path::new(file).parent() {
        std::fs::create_dir_all(dir.join(parent)).unwrap();
    }
    std::fs::write(dir.join(file), content).unwrap();
    git_ok(dir, &["add", "-A"], "");
    let t = 1_700_000_000 + 60 * CLOCK.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let date = format!("@{t} +0000");
    let out = git_env(
        dir,
        &["commit", "-qm", msg],
        "",
        &[("GIT_AUTHOR_DATE", &date), ("GIT_COMMITTER_DATE", &date)],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// Objects in the newest pack of a repository's `objects/pack`.
pub fn objects_in_pack(idx: &Path) -> usize {
    let out = Command::new("git")
        .args(["show-index"])
        .stdin(std::fs::File::open(idx).unwrap())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}
