//! The two servers under test, each in its own process so its memory can
//! be measured: gitd (this benchmark binary re-executed in server mode,
//! running the gitd library as `byteport up` does) and OpenSSH's `sshd`
//! with its own config, host key and authorized_keys in a temp dir,
//! running `git-receive-pack` / `git-upload-pack` as Dokku and Piku do.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use gitd::{
    Access, AuthError, Authority, BoxFuture, CommandOutput, Commands, DeployError, DeployHook,
    DeployRequest,
};

/// The argument that turns this binary into the gitd server.
pub const SERVE_ARG: &str = "--serve-gitd";

struct OneKey(String);

impl Authority for OneKey {
    fn user_for_key<'a>(&'a self, fp: &'a str) -> BoxFuture<'a, Result<Option<String>, AuthError>> {
        Box::pin(async move { Ok((fp == self.0).then(|| "bench".to_string())) })
    }
    fn authorize<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Access,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
}

struct NoDeploy;

impl DeployHook for NoDeploy {
    fn deploy<'a>(
        &'a self,
        _: &'a DeployRequest,
        _: gitd::hook::Progress<'a>,
    ) -> BoxFuture<'a, Result<(), DeployError>> {
        Box::pin(async { Ok(()) })
    }
}

impl Commands for NoDeploy {
    fn run<'a>(&'a self, _: &'a str, _: &'a str, _: &'a dyn CommandOutput) -> BoxFuture<'a, u32> {
        Box::pin(async { 1 })
    }
}

/// Server mode: `--serve-gitd HOME FINGERPRINT`; prints the port, serves
/// until stdin closes.
pub fn serve_gitd(args: &[String]) {
    let (home, fingerprint) = (PathBuf::from(&args[0]), args[1].clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut config = gitd::GitdConfig::new("127.0.0.1:0".parse().unwrap(), &home);
        config.deploy_branches = vec![];
        config.max_pack_bytes = 1 << 40;
        let server = gitd::serve(
            config,
            Arc::new(OneKey(fingerprint)),
            Arc::new(NoDeploy),
            Arc::new(NoDeploy),
        )
        .await
        .expect("gitd starts");
        println!("{}", server.local_addr().port());
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .unwrap();
        drop(server);
    });
}

/// A running server process.
pub struct Server {
    /// The process (its tree is measured).
    pub child: Child,
    /// SSH port on 127.0.0.1.
    pub port: u16,
    /// Where new repositories go (gitd: by app name; sshd: by path).
    pub repos: PathBuf,
    /// The login user in URLs.
    pub user: String,
    /// Whether repositories are addressed by absolute path (sshd).
    pub by_path: bool,
}

impl Server {
    /// The URL of repository `name`; for sshd it is created first (bare),
    /// as a PaaS would on app creation.
    pub fn url(&self, name: &str) -> String {
        if self.by_path {
            let path = self.repos.join(format!("{name}.git"));
            if !path.exists() {
                let st = Command::new("git")
                    .args(["init", "-q", "--bare"])
                    .arg(&path)
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            format!(
                "ssh://{}@127.0.0.1:{}{}",
                self.user,
                self.port,
                path.display()
            )
        } else {
            format!("ssh://git@127.0.0.1:{}/{name}.git", self.port)
        }
    }

    /// The bare repository of `name` on disk.
    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.repos.join(format!("{name}.git"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts gitd (this binary, server mode).
pub fn start_gitd(dir: &Path, fingerprint: &str) -> Server {
    let home = dir.join("gitd-home");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(SERVE_ARG)
        .arg(&home)
        .arg(fingerprint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("gitd prints its port");
    Server {
        child,
        port,
        repos: home.join("repos"),
        user: "git".into(),
        by_path: false,
    }
}

use testvm::free_port;

/// Starts `sshd -D` on a loopback port with its own configuration.
pub fn start_sshd(dir: &Path, client_pub: &Path) -> Server {
    let d = dir.join("sshd");
    std::fs::create_dir_all(d.join("repos")).unwrap();
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sshd is missing: apt-get install openssh-server (scripts/install-deps.sh)");
    // Debian's sshd refuses to start without its privilege separation dir.
    let _ = std::fs::create_dir_all("/run/sshd");
    let key = d.join("host_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::copy(client_pub, d.join("authorized_keys")).unwrap();
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let port = free_port();
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nAuthorizedKeysFile {keys}\n\
PidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
AcceptEnv GIT_PROTOCOL\nPrintMotd no\nLogLevel ERROR\nMaxStartups 100\n",
        key = key.display(),
        keys = d.join("authorized_keys").display(),
        pid = d.join("sshd.pid").display(),
    );
    std::fs::write(d.join("sshd_config"), config).unwrap();
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "sshd did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Server {
        child,
        port,
        repos: d.join("repos"),
        user,
        by_path: true,
    }
}
