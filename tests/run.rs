//! `byteport run APP -- CMD` and `ssh git@HOST run APP CMD` through
//! `byteport up`: the command runs in a one-off VM of the live deploy with
//! the app's config, beside the serving VM (never touching it), its stdout
//! and stderr stream back apart, and the exit status is the command's. A
//! client that goes away takes its VM with it. An app with a volume is
//! refused unless `--stop-app`, which stops it for the command and boots
//! it again.

mod support;

use std::process::{Command, Stdio};

use support::daemon::{push_site, wait_for, Daemon};

#[test]
fn run_executes_a_one_off_command_beside_the_app_with_its_config_and_exit_status() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let key = d.add_key(tmp.path(), "alice");
    let mallory = d.add_key(tmp.path(), "mallory");
    let ssh = d.ssh_command(&key);
    push_site(&d, &ssh, tmp.path(), "tool", false);
    let set = d.cli(&["config", "set", "tool", "GREETING=hello"]);
    assert!(set.status.success(), "{}", testvm::git::text(&set));
    wait_for(&d, "the restart after config set", 120, || {
        d.recorded_vm_pids().len() == 1
    });
    let serving = d.recorded_vm_pids();

    // Over SSH: stdout and stderr apart, the exit status passed on.
    let out = d.ssh(
        &key,
        "run tool -- sh -c 'echo \"$GREETING from $(id -u) in $(pwd)\"; echo oops >&2; exit 7'",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{stdout}\n{stderr}\n{}",
        d.log()
    );
    assert!(
        stdout.contains("hello from 1000"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        !stdout.contains("oops"),
        "stderr leaked into stdout: {stdout}"
    );
    assert!(stderr.contains("oops"), "stderr: {stderr}");
    assert_eq!(d.recorded_vm_pids(), serving, "the serving VM was touched");
    assert!(d.get("tool").unwrap().contains("tool page"));

    // From the CLI, words kept as given.
    let out = d.cli(&["run", "tool", "--", "cat", "/srv/index.html"]);
    assert!(out.status.success(), "{}", testvm::git::text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tool page");
    let out = d.cli(&["run", "tool", "--", "printf", "%s|", "two words", "$HOME"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "two words|$HOME|",
        "{}",
        testvm::git::text(&out)
    );

    // A client that goes away: its VM is stopped.
    let mut args: Vec<String> = ssh.split_whitespace().skip(1).map(String::from).collect();
    args.extend(["git@127.0.0.1".into(), "run tool -- sleep 3600".into()]);
    let mut client = Command::new("ssh")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&d, "the one-off VM never booted", 120, || {
        d.recorded_vm_pids().len() == 2
    });
    client.kill().unwrap();
    client.wait().unwrap();
    wait_for(&d, "the one-off VM outlived its client", 120, || {
        d.recorded_vm_pids() == serving
    });

    // Refused: no command, someone else's app.
    let out = d.ssh(&key, "run tool");
    assert!(!out.status.success());
    assert!(testvm::git::text(&out).contains("usage: run APP"));
    let out = d.ssh(&mallory, "run tool -- id");
    assert!(!out.status.success());
    assert!(
        testvm::git::text(&out).contains("no access"),
        "{}",
        testvm::git::text(&out)
    );

    // An app with a volume: refused unless it may be stopped for the run.
    push_site(&d, &ssh, tmp.path(), "keeper", true);
    let out = d.ssh(&key, "run keeper -- ls /data");
    let text = testvm::git::text(&out);
    assert!(
        !out.status.success() && text.contains("--stop-app"),
        "{text}"
    );
    let out = d.ssh(
        &key,
        "run keeper --stop-app -- sh -c 'echo kept > /data/f; cat /data/f'",
    );
    let text = testvm::git::text(&out);
    assert!(out.status.success(), "{text}\n{}", d.log());
    assert!(text.contains("kept"), "{text}");
    assert!(text.contains("Starting keeper"), "{text}");
    assert!(d.get("keeper").unwrap().contains("keeper page"));
    let out = d.ssh(&key, "run keeper --stop-app -- false");
    let text = testvm::git::text(&out);
    assert!(
        !out.status.success() && text.contains("exited with status 1"),
        "{text}"
    );
    wait_for(&d, "keeper did not come back", 120, || {
        d.get("keeper").is_ok()
    });
}
