//! No Chromium outlives its owner: this test re-executes itself as a
//! child that owns a `Screenshotter` with a running browser, then
//!  1. SIGKILLs the child: every process of that browser must be gone;
//!  2. lets another child drop its `Screenshotter` and keep running: the
//!     browser must be gone while the owner still lives.
//!
//! Processes are found by an environment token the owner passes to all
//! its descendants (Chromium's zygote and renderers inherit it).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portfolio::capture::{BrowserOptions, CaptureRequest, ImageStore, Screenshotter};

const ROLE: &str = "BYTEPORT_TEST_CHROMIUM_ROLE";
const TOKEN: &str = "BYTEPORT_TEST_CHROMIUM_TOKEN";

/// PIDs (other than `except`) whose environment holds `TOKEN=token`.
fn holders(token: &str, except: u32) -> Vec<u32> {
    let needle = format!("{TOKEN}={token}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == except || pid == std::process::id() {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            // Zombies have already released everything; they only wait to be reaped.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(String::from));
            if state.as_deref() != Some("Z") {
                out.push(pid);
            }
        }
    }
    out
}

fn child(role: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = support::serve(axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html("<title>t</title><h1>owner test</h1>")
            }),
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let shooter = Screenshotter::new(
            BrowserOptions {
                chromium_path: None,
                scratch_dir: None,
            },
            ImageStore::new(dir.path()).unwrap(),
        )
        .unwrap();
        let (outcome, _) = shooter
            .capture(CaptureRequest {
                url: format!("http://{addr}/"),
                wait: Duration::ZERO,
                load_timeout: Duration::from_secs(30),
            })
            .await
            .unwrap();
        assert!(outcome.shots().is_some(), "{outcome:?}");
        let pid = shooter.host().pid().unwrap();
        println!("READY {pid}");
        if role == "drop" {
            drop(shooter);
            println!("DROPPED");
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

/// Starts a child in `role`, returns it, its browser PID and the token.
fn start(
    role: &str,
) -> (
    std::process::Child,
    u32,
    String,
    BufReader<std::process::ChildStdout>,
) {
    let token = format!("{}-{}", std::process::id(), role);
    let mut c = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env(TOKEN, &token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let pid: u32 = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("child said {line:?}"))
        .trim()
        .parse()
        .unwrap();
    (c, pid, token, out)
}

fn wait_until_gone(token: &str, owner: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = holders(token, owner);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn owner_sigkilled() -> Result<(), String> {
    let (mut c, browser, token, _out) = start("kill");
    let before = holders(&token, c.id());
    if !before.contains(&browser) || before.len() < 2 {
        return Err(format!(
            "expected the browser {browser} and its helpers, saw {before:?}"
        ));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    c.wait().unwrap();
    let left = wait_until_gone(&token, c.id());
    if !left.is_empty() {
        for pid in &left {
            // SAFETY: clean up what the failed test left (our descendants).
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        return Err(format!(
            "chromium processes outlived their SIGKILLed owner: {left:?} (of {before:?})"
        ));
    }
    eprintln!("owner SIGKILLed: {} chromium processes gone", before.len());
    Ok(())
}

fn host_dropped() -> Result<(), String> {
    let (mut c, _browser, token, mut out) = start("drop");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "DROPPED");
    let left = wait_until_gone(&token, c.id());
    let still_alive = c.try_wait().unwrap().is_none();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
    c.wait().unwrap();
    if !still_alive {
        return Err("the owner exited early".into());
    }
    if !left.is_empty() {
        return Err(format!(
            "chromium kept running after its Screenshotter was dropped: {left:?}"
        ));
    }
    Ok(())
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    type Case = (&'static str, fn() -> Result<(), String>);
    let tests: [Case; 2] = [
        ("owner_sigkilled_leaves_no_chromium", owner_sigkilled),
        ("dropped_screenshotter_leaves_no_chromium", host_dropped),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        match test() {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("test {name} ... FAILED\n  {e}");
            }
        }
    }
    println!("{} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
