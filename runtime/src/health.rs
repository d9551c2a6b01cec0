//! Health checks that cannot pass for an app that does not serve.
//!
//! A connect to the app's host address proves nothing: QEMU's port forward
//! and the kvm driver's listener accept before anything in the guest does.
//! So the check has two phases:
//!
//! 1. **Listening** — the guest init connects to the app's port from inside
//!    the guest (at the address the forward uses) and reports `LISTENING`;
//!    until then the check waits, and fails with the reason if the web
//!    process keeps exiting ([`MAX_EXITS`] times: a crash loop such as
//!    `python3: not found`), if the VM ends, or at the deadline.
//! 2. **Answering** — for an HTTP check, `METHOD path` through the host
//!    address must answer 2xx or 3xx.
//!
//! A TCP check is the first phase alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::drivers::AppVm;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// The app accepts connections on its port.
    Tcp,
    /// `METHOD path` must answer 2xx or 3xx.
    Http {
        /// Usually GET.
        method: String,
        /// Starts with `/`.
        path: String,
    },
}

/// How to check one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What decides.
    pub probe: HealthProbe,
    /// The app's port in the guest (for messages).
    pub port: u16,
    /// Time between HTTP probes.
    pub interval: Duration,
    /// Timeout of one HTTP probe.
    pub probe_timeout: Duration,
    /// Give up after this long in total.
    pub deadline: Duration,
}

/// Exits of the web process before it ever listened that make a crash loop.
pub const MAX_EXITS: u32 = 3;

/// Why an app is not healthy, in words for the person who pushed it.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The web process never accepted a connection on its port in time.
    #[error(
        "the web process never listened on port {port} inside the VM (waited {waited_s} s){detail}"
    )]
    NeverListened {
        /// The app's port.
        port: u16,
        /// Seconds waited.
        waited_s: u64,
        /// Its exits and last output, if any.
        detail: String,
    },
    /// The web process kept exiting before it listened.
    #[error("the web process exited {exits} times without listening on port {port} (last: {last_exit}){output}")]
    CrashLoop {
        /// How often.
        exits: u32,
        /// The app's port.
        port: u16,
        /// The last `EXITED ...` event.
        last_exit: String,
        /// Its last output lines.
        output: String,
    },
    /// The VM ended during the check.
    #[error("the VM ended before the app was healthy: {how}")]
    VmEnded {
        /// How it ended.
        how: String,
    },
    /// It listens, but the HTTP check never passed.
    #[error("the app listens on port {port} but is not healthy after {waited_ms} ms: {last}")]
    Timeout {
        /// The app's port.
        port: u16,
        /// How long was waited.
        waited_ms: u128,
        /// The last failure.
        last: String,
    },
}

/// The web process's last output lines, as a suffix for messages.
fn web_output(recent: &[String]) -> String {
    let mut lines: Vec<&str> = recent
        .iter()
        .filter(|l| l.starts_with("web "))
        .map(String::as_str)
        .collect();
    // A crash loop says the same thing each time: once is enough.
    lines.dedup();
    let last = &lines[lines.len().saturating_sub(3)..];
    if last.is_empty() {
        String::new()
    } else {
        format!("; its last output: {}", last.join(" | "))
    }
}

/// One probe with a timeout; `Err` says what failed.
pub fn check_once(addr: SocketAddr, probe: &HealthProbe, timeout: Duration) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let HealthProbe::Http { method, path } = probe else {
        return Ok(());
    };
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: byteport-health\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            // A reset after the status line still tells us the status.
            Err(_) if n > 0 => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head[..n]);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                text.lines().next().unwrap_or("")
            )
        })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("{method} {path} answered {code}"))
    }
}

/// Waits until the app in `vm` is healthy (see the module docs); returns
/// how long that took.
pub fn wait_healthy(vm: &mut dyn AppVm, check: &HealthCheck) -> Result<Duration, HealthError> {
    let start = Instant::now();
    let tick = check.interval.min(Duration::from_millis(200));
    loop {
        if let Some(how) = vm.exit_status() {
            return Err(HealthError::VmEnded { how });
        }
        let st = vm.guest();
        if st.listening.is_some() {
            break;
        }
        if st.exits >= MAX_EXITS {
            return Err(HealthError::CrashLoop {
                exits: st.exits,
                port: check.port,
                last_exit: st.last_exit.unwrap_or_default(),
                output: web_output(&st.recent_output),
            });
        }
        if start.elapsed() >= check.deadline {
            let mut detail = String::new();
            if let Some(last) = &st.last_exit {
                detail = format!("; it exited {} time(s), last: {last}", st.exits);
            }
            detail.push_str(&web_output(&st.recent_output));
            return Err(HealthError::NeverListened {
                port: check.port,
                waited_s: start.elapsed().as_secs(),
                detail,
            });
        }
        std::thread::sleep(tick);
    }
    let (HealthProbe::Http { .. }, Some(addr)) = (&check.probe, vm.host_addr()) else {
        return Ok(start.elapsed());
    };
    let mut last = String::from("no probe ran");
    while start.elapsed() < check.deadline {
        if let Some(how) = vm.exit_status() {
            return Err(HealthError::VmEnded { how });
        }
        match check_once(addr, &check.probe, check.probe_timeout) {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        std::thread::sleep(check.interval);
    }
    Err(HealthError::Timeout {
        port: check.port,
        waited_ms: start.elapsed().as_millis(),
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let mut s = s.unwrap();
                // Read the whole request (or until the client stops writing).
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut req = vec![];
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => req.extend_from_slice(&buf[..k]),
                    }
                }
                let _ = s.write_all(reply);
            }
        });
        addr
    }

    fn get(path: &str) -> HealthProbe {
        HealthProbe::Http {
            method: "GET".into(),
            path: path.into(),
        }
    }

    #[test]
    fn http_status_decides() {
        let ok = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        check_once(ok, &get("/healthz"), Duration::from_secs(2)).unwrap();
        let bad = serve(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let e = check_once(bad, &get("/healthz"), Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("503"), "{e}");
        let garbage = serve(b"\x00\x01garbage");
        let e = check_once(garbage, &get("/"), Duration::from_secs(2)).unwrap_err();
        assert!(e.contains("not an HTTP response"), "{e}");
        check_once(garbage, &HealthProbe::Tcp, Duration::from_secs(2)).unwrap();
    }

    /// A VM that only reports what it is told to.
    struct Scripted {
        status: crate::guest_link::GuestStatus,
        addr: Option<SocketAddr>,
        ended: Option<String>,
    }

    impl AppVm for Scripted {
        fn name(&self) -> &str {
            "t"
        }
        fn host_addr(&self) -> Option<SocketAddr> {
            self.addr
        }
        fn console_tail(&self) -> String {
            String::new()
        }
        fn guest(&self) -> crate::guest_link::GuestStatus {
            self.status.clone()
        }
        fn drain_events(&mut self) -> Vec<String> {
            vec![]
        }
        fn exit_status(&mut self) -> Option<String> {
            self.ended.clone()
        }
        fn stop(&mut self, _: Duration) {}
        fn pid(&self) -> Option<u32> {
            None
        }
    }

    fn check(probe: HealthProbe) -> HealthCheck {
        HealthCheck {
            probe,
            port: 8080,
            interval: Duration::from_millis(20),
            probe_timeout: Duration::from_millis(200),
            deadline: Duration::from_millis(300),
        }
    }

    #[test]
    fn an_accepting_forward_is_not_enough() {
        // The host address accepts (as QEMU's forward does) but the guest
        // never reported LISTENING: not healthy, and the message says why.
        let forward = serve(b"");
        let mut vm = Scripted {
            status: Default::default(),
            addr: Some(forward),
            ended: None,
        };
        let e = wait_healthy(&mut vm, &check(HealthProbe::Tcp))
            .unwrap_err()
            .to_string();
        assert!(e.contains("never listened on port 8080"), "{e}");
    }

    #[test]
    fn a_crash_loop_fails_with_the_exit_and_the_output() {
        let mut vm = Scripted {
            status: crate::guest_link::GuestStatus {
                exits: 3,
                last_exit: Some("EXITED web pid=9 status=127".into()),
                recent_output: vec!["web err: sh: python3: not found".into()],
                ..Default::default()
            },
            addr: None,
            ended: None,
        };
        let e = wait_healthy(&mut vm, &check(HealthProbe::Tcp))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exited 3 times"), "{e}");
        assert!(
            e.contains("status=127") && e.contains("python3: not found"),
            "{e}"
        );
    }

    #[test]
    fn listening_then_http_decides() {
        let listening = crate::guest_link::GuestStatus {
            listening: Some("web 10.0.2.15:8080".into()),
            ..Default::default()
        };
        let mut vm = Scripted {
            status: listening.clone(),
            addr: None,
            ended: None,
        };
        assert!(wait_healthy(&mut vm, &check(HealthProbe::Tcp)).is_ok());
        let mut vm = Scripted {
            status: listening.clone(),
            addr: Some(serve(b"HTTP/1.1 500 Oops\r\n\r\n")),
            ended: None,
        };
        let e = wait_healthy(&mut vm, &check(get("/healthz")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("answered 500"), "{e}");
        let mut vm = Scripted {
            status: listening,
            addr: Some(serve(b"HTTP/1.1 204 No Content\r\n\r\n")),
            ended: None,
        };
        assert!(wait_healthy(&mut vm, &check(get("/healthz"))).is_ok());
        let mut vm = Scripted {
            status: Default::default(),
            addr: None,
            ended: Some("qemu exited (signal 9)".into()),
        };
        let e = wait_healthy(&mut vm, &check(HealthProbe::Tcp))
            .unwrap_err()
            .to_string();
        assert!(e.contains("VM ended") && e.contains("signal 9"), "{e}");
    }
}
