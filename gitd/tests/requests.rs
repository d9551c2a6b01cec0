//! Requests gitd does not serve are refused at once, with a message,
//! instead of holding a connection slot until a timeout: `ssh -s sftp`,
//! `-t` (pty, granted), `-X` (X11), `-A` (agent), `-L` and `-R` (port forwarding). Real OpenSSH against gitd; the idle timeout is long,
//! so a client that ends within the hang guard was answered, not timed out.

mod support;

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// A hang guard, far below the idle timeout the server runs with.
const GUARD: Duration = Duration::from_secs(30);

fn server() -> Server {
    Server::start(|c| c.idle_timeout = Duration::from_secs(600))
}

/// Waits for `child` within the hang guard; kills it and fails otherwise.
fn finish(mut child: Child, what: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > GUARD {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}: still waiting after {GUARD:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ssh(s: &Server, args: &str, env: &[(&str, &str)]) -> Child {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "{} {args}",
            s.ssh().replace("LogLevel=ERROR", "LogLevel=INFO")
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

#[test]
fn sftp_and_other_subsystems_are_refused_at_once() {
    let s = server();
    for name in ["sftp", "netconf"] {
        let out = finish(ssh(&s, &format!("-s git@127.0.0.1 {name}"), &[]), name);
        let t = text(&out);
        assert!(!out.status.success(), "{name}: {t}");
        assert!(
            t.contains(&format!("byteport: subsystem `{name}` is not available")),
            "{name}: {t}"
        );
    }
    // The connection slot is free again.
    s.wait_stats(GUARD, |st| st.authenticated == 0);
}

#[test]
fn a_requested_terminal_is_granted_and_the_command_runs() {
    // `ssh -t git@host logs -f APP` is how people follow logs; the
    // command's output is the same with or without a terminal.
    let s = server();
    let out = finish(ssh(&s, "-tt git@127.0.0.1 apps", &[]), "pty");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("ran apps"), "{t}");
    assert!(!t.contains("PTY allocation request failed"), "{t}");
    s.wait_stats(GUARD, |st| st.authenticated == 0);
}

#[test]
fn x11_and_agent_forwarding_are_refused_and_the_command_still_runs() {
    let s = server();
    let agent_dir = tempfile::tempdir().unwrap();
    let agent_sock = agent_dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client) is needed");
    let started = Instant::now();
    while !agent_sock.exists() {
        assert!(started.elapsed() < GUARD, "ssh-agent never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sock = agent_sock.to_str().unwrap().to_string();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: [Case; 2] = [
        (
            "x11",
            "-X -v git@127.0.0.1 apps",
            &[("DISPLAY", "127.0.0.1:99")],
        ),
        (
            "agent",
            "-A -v git@127.0.0.1 apps",
            &[("SSH_AUTH_SOCK", &sock)],
        ),
    ];
    for (what, args, env) in cases {
        let out = finish(ssh(&s, args, env), what);
        let t = text(&out);
        assert!(out.status.success(), "{what}: {t}");
        assert!(t.contains("ran apps"), "{what}: {t}");
        if what == "x11" {
            assert!(
                t.contains("Requesting X11 forwarding")
                    && t.contains("X11 forwarding request failed"),
                "{t}"
            );
        } else {
            // Sent without wanting a reply: nothing to print, and nothing
            // forwarded (gitd never opens an agent channel).
            assert!(
                t.contains("Requesting authentication agent forwarding"),
                "{t}"
            );
            assert!(!t.contains("auth-agent@openssh.com"), "{t}");
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
}

use testvm::free_port;

#[test]
fn local_port_forwarding_is_refused_and_the_connection_ends_with_the_reason() {
    let s = server();
    let local = free_port();
    // The forwarded target is never contacted: gitd refuses to open it.
    let child = ssh(
        &s,
        &format!("-N -L 127.0.0.1:{local}:127.0.0.1:9 git@127.0.0.1"),
        &[],
    );
    // Once ssh listens, a connection to it asks gitd for a direct-tcpip
    // channel.
    let started = Instant::now();
    let mut conn = loop {
        if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", local)) {
            break c;
        }
        assert!(started.elapsed() < GUARD, "ssh never listened on {local}");
        std::thread::sleep(Duration::from_millis(50));
    };
    conn.set_read_timeout(Some(GUARD)).unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(conn.read(&mut b), Ok(0) | Err(_)),
        "nothing is forwarded"
    );
    let out = finish(child, "-L");
    let t = text(&out);
    assert!(
        t.contains("byteport: port forwarding is not available here"),
        "{t}"
    );
    s.wait_stats(GUARD, |st| st.authenticated == 0);
}

#[test]
fn remote_port_forwarding_is_refused_and_the_connection_ends_with_the_reason() {
    let s = server();
    let out = finish(
        ssh(&s, "-N -R 127.0.0.1:0:127.0.0.1:9 git@127.0.0.1", &[]),
        "-R",
    );
    let t = text(&out);
    assert!(
        t.contains("byteport: port forwarding is not available here"),
        "{t}"
    );
    s.wait_stats(GUARD, |st| st.authenticated == 0);
    // OpenSSH asks for its forwardings before it opens the session, so a
    // command with `-R` on the side is ended the same way, with the same
    // reason, before it runs.
    let out = finish(
        ssh(&s, "-R 127.0.0.1:0:127.0.0.1:9 git@127.0.0.1 apps", &[]),
        "-R with a command",
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("port forwarding is not available") && !t.contains("ran apps"),
        "{t}"
    );
}
