//! The `byteport` binary as a user runs it: real processes, a temp
//! `$BYTEPORT_HOME`, real `ssh-keygen` keys.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_byteport"));
        c.args(args)
            .env("BYTEPORT_HOME", self.dir.path())
            .env_remove("BYTEPORT_CONFIG")
            .env_remove("BYTEPORT_SSH_ADDR")
            .env_remove("BYTEPORT_HTTP_ADDR")
            .env_remove("BYTEPORT_ROUTER_ADDR")
            .env_remove("BYTEPORT_DRIVER")
            .env_remove("BYTEPORT_DATABASE_URL");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A key pair made by the real ssh-keygen; returns the public key.
fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    testvm::git::keygen(dir, name).with_extension("pub")
}

#[test]
fn config_show_explains_every_source() {
    let home = Home::new();
    std::fs::write(
        home.path().join("byteport.toml"),
        "ssh_addr = \"127.0.0.1:2022\"\n",
    )
    .unwrap();
    let out = home
        .cmd(&["config", "show"])
        .env("BYTEPORT_ROUTER_ADDR", "127.0.0.1:9000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("127.0.0.1:2022") && text.contains("(file "),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1:9000") && text.contains("(env BYTEPORT_ROUTER_ADDR)"),
        "{text}"
    );
    assert!(
        text.contains("127.0.0.1:8080") && text.contains("(default)"),
        "{text}"
    );

    let out = home.run(&["config", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ssh_addr"], "127.0.0.1:2022");
    assert_eq!(v["sources"]["ssh_addr"]["kind"], "file");
}

#[test]
fn broken_config_file_is_a_clear_error() {
    let home = Home::new();
    std::fs::write(home.path().join("byteport.toml"), "driver = \"xen\"\n").unwrap();
    let out = home.run(&["config", "show"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown driver `xen`") && err.contains("byteport.toml"),
        "{err}"
    );
}

#[test]
fn doctor_reports_this_host_and_the_driver_choice() {
    let home = Home::new();
    let out = home.run(&["doctor", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let kvm = checks.iter().find(|c| c["name"] == "/dev/kvm").unwrap();
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    assert_eq!(kvm["status"] == "ok", kvm_opens, "{kvm}");
    for name in [
        "hardware virtualization",
        "QEMU",
        "Chromium",
        "mkfs.ext4",
        "free disk",
    ] {
        assert!(
            checks.iter().any(|c| c["name"] == name),
            "missing check {name}"
        );
    }
    for c in checks {
        if c["status"] == "missing" {
            assert!(
                c["fix"].is_string(),
                "a missing item must say how to fix it: {c}"
            );
        }
    }
    assert!(v["driver_reason"].as_str().unwrap().starts_with("auto → "));
    let text = stdout(&home.run(&["doctor"]));
    assert!(text.contains("runtime driver: auto → "), "{text}");
}

#[test]
fn keys_users_apps_config_and_secrets_round_trip() {
    let home = Home::new();
    let alice = keygen(home.path(), "alice");
    let out = home.run(&["keys", "add", "alice", alice.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fp = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&alice)
        .output()
        .unwrap();
    let fp = stdout(&fp).split_whitespace().nth(1).unwrap().to_string();
    assert!(
        stdout(&out).contains(&fp),
        "added line names the fingerprint"
    );

    // The same key twice, a private key, and garbage are refused.
    let out = home.run(&["keys", "add", "bob", alice.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let private = alice.with_extension("");
    let out = home.run(&["keys", "add", "bob", private.to_str().unwrap()]);
    assert!(stderr(&out).contains("PRIVATE key"), "{}", stderr(&out));
    let out = home.run(&["keys", "add", "bob", "/nonexistent.pub"]);
    assert!(!out.status.success() && stderr(&out).contains("/nonexistent.pub"));

    let out = home.run(&["keys", "list", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["fingerprint"], fp.as_str());

    let out = home.run_stdin(&["users", "add", "carol"], "a long password\n");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = home.run(&["apps", "create", "hello", "--owner", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["apps", "create", "Hello_World", "--owner", "alice"]);
    assert!(
        stderr(&out).contains("invalid app name"),
        "{}",
        stderr(&out)
    );
    let out = home.run(&["apps", "share", "hello", "carol"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["apps", "--json"]);
    let apps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["collaborators"][0], "carol");
    assert_eq!(apps[0]["url"], "http://hello.localhost:8000");

    let out = home.run(&["config", "set", "hello", "GREETING=hi there", "MODE=prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["config", "set", "hello", "bad-key=1"]);
    assert!(!out.status.success());
    let out = home.run(&["config", "get", "hello"]);
    assert_eq!(stdout(&out), "GREETING=hi there\nMODE=prod\n");

    let out = home.run_stdin(&["secrets", "set", "hello", "API_TOKEN"], "tok-12345\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["secrets", "list", "hello"]);
    assert_eq!(stdout(&out), "API_TOKEN=********\n");
    // Never readable from the database file either.
    let db = std::fs::read(home.path().join("state.db")).unwrap();
    assert!(!db.windows(9).any(|w| w == b"tok-12345"));

    let out = home.run(&["deploys", "hello"]);
    assert!(stdout(&out).contains("no deploys yet"));
    let out = home.run(&["apps", "destroy", "hello"]);
    assert!(!out.status.success() && stderr(&out).contains("--confirm hello"));
    let out = home.run(&["apps", "destroy", "hello", "--confirm", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["keys", "remove", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&home.run(&["keys", "list"])).contains("no keys yet"));
}

#[test]
fn manifest_check_accepts_every_example_and_prints_json() {
    let home = Home::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("Byteport").exists() {
            continue;
        }
        seen += 1;
        let out = home.run(&["manifest", "check", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", dir.display(), stderr(&out));
        assert!(
            stdout(&out).contains("Byteport manifest OK"),
            "{}",
            stdout(&out)
        );
        let out = home.run(&["manifest", "check", "--json", dir.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["app"].is_string(), "{v}");
    }
    assert!(seen >= 4, "expected at least four examples, found {seen}");
}

#[test]
fn manifest_check_rejects_with_location_and_exit_1() {
    let home = Home::new();
    let f = home.path().join("Byteport");
    std::fs::write(
        &f,
        "app hello\nfrom busybox\nvm {\n  memroy 256M\n}\nweb {\n  run x\n  port 8080\n}\n",
    )
    .unwrap();
    let out = home.run(&["manifest", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Byteport:4:3"), "{err}");
    assert!(err.contains("did you mean `memory`"), "{err}");
    let out = home.run(&["manifest", "check", "--json", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.to_string().contains("memroy"), "{v}");
    // Non-UTF-8 and missing files: clear errors, no panic.
    std::fs::write(&f, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let out = home.run(&["manifest", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("panicked"));
    let out = home.run(&["manifest", "check", "/nonexistent/Byteport"]);
    assert!(
        !out.status.success() && stderr(&out).contains("manifest init"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn manifest_init_guesses_the_stack_and_never_overwrites() {
    let home = Home::new();
    let repo = home.path().join("My_Node_App");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("package.json"), "{\"name\":\"x\"}").unwrap();
    let out = home.run(&["manifest", "init", repo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(repo.join("Byteport")).unwrap();
    assert!(text.contains("app my-node-app"), "{text}");
    assert!(text.contains("nodejs"), "{text}");
    let out = home.run(&["manifest", "check", repo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.run(&["manifest", "init", repo.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_data_directory_and_the_store_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let parent = tempfile::tempdir().unwrap();
    let home = parent.path().join("home");
    let key = parent.path().join("k");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_byteport"));
    cmd.args(["keys", "add", "alice"])
        .arg(key.with_extension("pub"))
        .env("BYTEPORT_HOME", &home)
        .env_remove("BYTEPORT_DATABASE_URL")
        .env_remove("BYTEPORT_CONFIG");
    // SAFETY: umask in the child before exec; no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700, "home");
    assert_eq!(
        mode(&home.join("state.db")),
        0o600,
        "state.db (password hashes, config vars)"
    );
    assert_eq!(mode(&home.join("secrets.key")), 0o600, "secrets.key");
    // A home made world-readable by hand is tightened on the next run.
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_byteport"))
        .args(["keys", "list"])
        .env("BYTEPORT_HOME", &home)
        .env_remove("BYTEPORT_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(mode(&home), 0o700);
}
