//! Health checks: an HTTP request to the manifest's health path, or a TCP
//! connect when the app declares none.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// Connect to the port.
    Tcp,
    /// `METHOD path` must answer 2xx or 3xx.
    Http {
        /// Usually GET.
        method: String,
        /// Starts with `/`.
        path: String,
    },
}

/// Why an app is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Never healthy within the deadline.
    #[error("not healthy after {waited_ms} ms: {last}")]
    Timeout {
        /// How long was waited.
        waited_ms: u128,
        /// The last failure.
        last: String,
    },
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

/// Probes every `interval` until healthy or `deadline` passes; returns
/// how long it took.
pub fn wait_healthy(
    addr: SocketAddr,
    probe: &HealthProbe,
    interval: Duration,
    probe_timeout: Duration,
    deadline: Duration,
) -> Result<Duration, HealthError> {
    let start = Instant::now();
    let mut last = String::from("no probe ran");
    while start.elapsed() < deadline {
        match check_once(addr, probe, probe_timeout) {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        std::thread::sleep(interval);
    }
    Err(HealthError::Timeout {
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

    #[test]
    fn waiting_times_out_with_the_last_reason() {
        let dead = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = wait_healthy(
            dead,
            &HealthProbe::Tcp,
            Duration::from_millis(20),
            Duration::from_millis(50),
            Duration::from_millis(150),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not healthy") && e.contains("connect"), "{e}");
    }
}
