//! `byteport up` as a child process in a temp `$BYTEPORT_HOME`, with free
//! loopback ports, a real OpenSSH client and real `git`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running daemon and the paths a test needs.
pub struct Daemon {
    child: Child,
    /// `$BYTEPORT_HOME`.
    pub home: PathBuf,
    /// Git over SSH.
    pub ssh_port: u16,
    /// The router.
    pub router_port: u16,
    /// The dashboard and API.
    pub http_port: u16,
    _dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

pub use testvm::free_port;
pub use testvm::git::keygen;

/// Runs `git` in `dir`, returning its output (not checked).
pub fn git(dir: &Path, args: &[&str], ssh_command: Option<&str>) -> Output {
    testvm::git::git(dir, args, ssh_command)
}

fn spawn_up(
    dir: &Path,
    home: &Path,
    ssh_port: u16,
    router_port: u16,
    http_port: u16,
    extra_env: &[(String, String)],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("up.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_byteport"))
        .arg("up")
        .env("BYTEPORT_HOME", home)
        .env("BYTEPORT_SSH_ADDR", format!("127.0.0.1:{ssh_port}"))
        .env("BYTEPORT_ROUTER_ADDR", format!("127.0.0.1:{router_port}"))
        .env("BYTEPORT_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("BYTEPORT_DRIVER", "qemu")
        .env("BYTEPORT_INIT", super::assets::init_binary())
        .env("RUST_LOG", "info")
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Daemon {
    /// Starts `byteport up`, reusing the cached guest kernel.
    pub fn start() -> Daemon {
        Daemon::start_with_env(&[])
    }

    /// Starts `byteport up` with extra environment (configuration).
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        super::assets::guest_assets();
        let cached = super::assets::cache_dir().join("home");
        std::os::unix::fs::symlink(cached.join("kernels"), home.join("kernels")).unwrap();
        std::os::unix::fs::symlink(cached.join("assets"), home.join("assets")).unwrap();
        // Debian base layers are shared with the builder's tests (keyed by
        // base, packages and builder version), so a push builds only its app.
        let bases = super::assets::cache_dir().join("bases");
        std::fs::create_dir_all(&bases).unwrap();
        std::fs::create_dir_all(home.join("cache")).unwrap();
        std::os::unix::fs::symlink(&bases, home.join("cache/bases")).unwrap();
        let (ssh_port, router_port, http_port) = (free_port(), free_port(), free_port());
        let child = spawn_up(dir.path(), &home, ssh_port, router_port, http_port, &env);
        let d = Daemon {
            child,
            home,
            ssh_port,
            router_port,
            http_port,
            _dir: dir,
            env,
        };
        d.wait_for_port(ssh_port);
        d.wait_for_port(router_port);
        d.wait_for_port(http_port);
        d
    }

    /// Stops `byteport up` and starts it again on the same home and ports.
    pub fn restart(&mut self) {
        self.stop();
        let http_port = free_port();
        self.http_port = http_port;
        self.child = spawn_up(
            self._dir.path(),
            &self.home,
            self.ssh_port,
            self.router_port,
            http_port,
            &self.env,
        );
        self.wait_for_port(self.ssh_port);
        self.wait_for_port(self.router_port);
    }

    fn wait_for_port(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "byteport up did not listen on {port}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("up.log")).unwrap_or_default()
    }

    /// Runs a `byteport` CLI command against the same home.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_byteport"))
            .args(args)
            .env("BYTEPORT_HOME", &self.home)
            .output()
            .unwrap()
    }

    /// `GIT_SSH_COMMAND` for a private key.
    pub fn ssh_command(&self, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR -o BatchMode=yes -i {} -p {}",
            key.display(),
            self.ssh_port
        )
    }

    /// The remote URL of an app.
    pub fn remote(&self, app: &str) -> String {
        format!("ssh://git@127.0.0.1:{}/{app}.git", self.ssh_port)
    }

    /// Creates a key pair in `dir` with ssh-keygen and registers it for
    /// user `name` with `byteport keys add`; returns the private key.
    pub fn add_key(&self, dir: &Path, name: &str) -> PathBuf {
        let key = keygen(dir, name);
        let out = self.cli(&[
            "keys",
            "add",
            name,
            key.with_extension("pub").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "keys add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        key
    }

    /// Runs an admin command over SSH with the real OpenSSH client.
    pub fn ssh(&self, key: &Path, command: &str) -> Output {
        let mut args: Vec<String> = self
            .ssh_command(key)
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        args.extend(["git@127.0.0.1".to_string(), command.to_string()]);
        Command::new("ssh")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("ssh (openssh-client) is needed")
    }

    /// GET / through the router with `Host: <app>.localhost`.
    pub fn get(&self, app: &str) -> Result<String, String> {
        self.get_path(app, "/")
    }

    /// GET `path` through the router with `Host: <app>.localhost`; `Ok`
    /// for a 200, `Err` with the whole response otherwise.
    pub fn get_path(&self, app: &str, path: &str) -> Result<String, String> {
        get_via(self.router_port, app, path)
    }

    /// One HTTP/1.0 exchange with `app` through the router: (status,
    /// headers, body). A form body is sent url-encoded with POST.
    pub fn request(
        &self,
        app: &str,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: &str,
    ) -> (u16, String, String) {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.router_port)) else {
            return (0, String::new(), String::new());
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {app}.localhost\r\n");
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                form.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(form);
        let mut raw = String::new();
        if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut raw).is_err() {
            return (0, raw, String::new());
        }
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    /// Kills the daemon with SIGKILL (no cleanup of its own) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `byteport up` again on the same home and ports after it died
    /// (see [`Daemon::kill9`]).
    pub fn start_again(&mut self) {
        let http_port = free_port();
        self.child = spawn_up(
            self._dir.path(),
            &self.home,
            self.ssh_port,
            self.router_port,
            http_port,
            &self.env,
        );
        self.wait_for_port(self.ssh_port);
        self.wait_for_port(self.router_port);
    }

    /// The host pids of the VMs `byteport up` recorded (`run/vms/*/vm.json`).
    pub fn recorded_vm_pids(&self) -> Vec<u32> {
        let Ok(dirs) = std::fs::read_dir(self.home.join("run/vms")) else {
            return Vec::new();
        };
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| std::fs::read_to_string(d.path().join("vm.json")).ok())
            .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .filter_map(|v| v.get("pid").and_then(|p| p.as_u64()))
            .map(|p| p as u32)
            .collect()
    }

    /// Stops the daemon with SIGTERM and waits.
    pub fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `secs` for `ok`, polling every 250 ms; fails the test with
/// `what` and the daemon's log when time runs out.
pub fn wait_for(d: &Daemon, what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// GET `path` from the router on `router_port` with `Host: <app>.localhost`;
/// `Ok` for a 200, `Err` with the whole response (or the error) otherwise.
pub fn get_via(router_port: u16, app: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", router_port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {app}.localhost\r\nConnection: close\r\n\r\n"
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

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Pushes `APP`, a busybox httpd serving the page `APP page` (with a
/// 32 MiB volume `data` at `/data` if `volume`), from a repository made
/// in `root/APP`; the push must succeed.
pub fn push_site(d: &Daemon, ssh: &str, root: &std::path::Path, app: &str, volume: bool) {
    let work = root.join(app);
    std::fs::create_dir_all(work.join("public")).unwrap();
    git(&work, &["init", "-q", "-b", "main"], None);
    std::fs::write(work.join("public/index.html"), format!("{app} page")).unwrap();
    let volume = if volume {
        "volume data /data 32M\n"
    } else {
        ""
    };
    std::fs::write(
        work.join("Byteport"),
        format!("app {app}\nfrom busybox\nbuild {{\n  copy public /srv\n}}\nweb {{\n  run busybox httpd -f -p 8080 -h /srv\n  port 8080\n}}\n{volume}"),
    )
    .unwrap();
    git(&work, &["add", "-A"], None);
    git(&work, &["commit", "-qm", app], None);
    let out = git(
        &work,
        &["push", "-q", &d.remote(app), "HEAD:main"],
        Some(ssh),
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        testvm::git::text(&out),
        d.log()
    );
}
