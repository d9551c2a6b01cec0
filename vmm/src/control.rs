//! Per-VM control socket: `<runtime_dir>/<name>.sock`, one line-based request per
//! connection; the reply is one JSON line.
//!
//! | request | effect |
//! | --- | --- |
//! | `status` | current state |
//! | `pause` / `resume` | park / unpark the vCPUs |
//! | `stop [GRACE_MS]` | press the ACPI power button; reply when the guest has powered off, or kill it after `GRACE_MS` (default 30 s) |
//! | `kill` | stop now |
//!
//! The server is one thread that never blocks on a stopping guest: pending `stop`
//! requests are answered from its poll loop, so `status` keeps working meanwhile.
//!
//! Only the VMM's own user and root may talk to it: the socket file is 0600, and
//! each connection's peer credentials (`SO_PEERCRED`) are checked as well, so a
//! socket reachable through a bind mount or a loosened mode still refuses others.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Vm, VmExit, VmState};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64;
/// Grace period of `stop` without an argument.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Longest grace period a `stop` request may ask for.
const MAX_GRACE: Duration = Duration::from_secs(3600);

/// Errors talking to a control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Socket I/O failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The VM answered with an error.
    #[error("VM refused {request}: {reply}")]
    Refused {
        /// Request sent.
        request: String,
        /// Reply received.
        reply: String,
    },
}

/// Socket path of VM `name`.
pub fn socket_path(runtime_dir: &Path, name: &str) -> PathBuf {
    runtime_dir.join(format!("{name}.sock"))
}

fn state_reply(name: &str, vm: &Vm) -> serde_json::Value {
    serde_json::json!({"name": name, "state": vm.state()})
}

fn stopped_reply(name: &str, exit: &VmExit) -> serde_json::Value {
    serde_json::json!({"name": name, "state": VmState::Stopped, "exit": format!("{exit:?}")})
}

/// A `stop` waiting for the guest.
struct Stopping {
    conn: UnixStream,
    deadline: Instant,
}

/// What a request line asks for.
enum Request {
    Status,
    Pause,
    Resume,
    Stop(Duration),
    Kill,
    Bad(String),
}

fn parse(line: &str) -> Request {
    let mut words = line.split_whitespace();
    let req = match (words.next(), words.next()) {
        (Some("status"), None) => Request::Status,
        (Some("pause"), None) => Request::Pause,
        (Some("resume"), None) => Request::Resume,
        (Some("kill"), None) => Request::Kill,
        (Some("stop"), None) => Request::Stop(DEFAULT_GRACE),
        (Some("stop"), Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) => Request::Stop(Duration::from_millis(ms).min(MAX_GRACE)),
            Err(_) => Request::Bad(format!(
                "stop: grace {ms:?} is not a number of milliseconds"
            )),
        },
        _ => Request::Bad(format!("unknown request {:?}", line.trim())),
    };
    if words.next().is_some() {
        return Request::Bad(format!("unknown request {:?}", line.trim()));
    }
    req
}

/// The uid of the process at the other end of `conn`.
fn peer_uid(conn: &UnixStream) -> std::io::Result<u32> {
    // SAFETY: ucred is plain old data; all-zero is a valid value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket fd and a ucred buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Whether a peer with `uid` may control a VMM running as `owner`.
fn allowed(uid: u32, owner: u32) -> bool {
    uid == 0 || uid == owner
}

/// Serves control requests for `vm` until it has stopped (and every pending
/// `stop` got its answer). Peers other than root and `owner_uid` (the VMM's
/// own effective uid, read before the thread is confined) are refused.
pub fn serve(listener: UnixListener, vm: Arc<Vm>, name: String, owner_uid: u32) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::warn!(error = %e, "control socket: cannot poll; not serving");
        return;
    }
    let mut stopping: Vec<Stopping> = Vec::new();
    loop {
        if !stopping.is_empty() {
            let exit = match vm.wait_timeout(Duration::ZERO) {
                Some(_) => Some(vm.wait()),
                None if stopping.iter().any(|s| Instant::now() >= s.deadline) => Some(vm.kill()),
                None => None,
            };
            if let Some(exit) = exit {
                for s in stopping.drain(..) {
                    let _ = writeln!(&s.conn, "{}", stopped_reply(&name, &exit));
                }
            }
        } else if vm.state() == VmState::Stopped {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Wake often while a stop is pending, rarely otherwise (only to notice
        // that the VM has stopped).
        let wait_ms = if stopping.is_empty() { 250 } else { 20 };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, wait_ms) };
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        match peer_uid(&conn) {
            Ok(uid) if allowed(uid, owner_uid) => {}
            other => {
                tracing::warn!(peer = ?other, "control socket: refused a peer");
                let _ = writeln!(
                    &conn,
                    "{}",
                    serde_json::json!({ "error": "permission denied" })
                );
                continue;
            }
        }
        let mut line = String::new();
        if BufReader::new((&conn).take(MAX_REQUEST))
            .read_line(&mut line)
            .is_err()
        {
            continue;
        }
        let reply = match parse(&line) {
            Request::Status => state_reply(&name, &vm),
            Request::Pause => {
                vm.pause();
                state_reply(&name, &vm)
            }
            Request::Resume => {
                vm.resume();
                state_reply(&name, &vm)
            }
            Request::Kill => stopped_reply(&name, &vm.kill()),
            Request::Stop(grace) => {
                if let Some(exit) = vm.wait_timeout(Duration::ZERO) {
                    let _ = exit;
                    stopped_reply(&name, &vm.wait())
                } else {
                    vm.resume();
                    if let Err(e) = vm.power_button() {
                        tracing::warn!(error = %e, "power button failed");
                    }
                    stopping.push(Stopping {
                        conn,
                        deadline: Instant::now() + grace,
                    });
                    continue;
                }
            }
            Request::Bad(e) => serde_json::json!({ "error": e }),
        };
        let _ = writeln!(&conn, "{reply}");
    }
}

/// Binds the control socket at `path` (replacing a stale one), mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Sends `request` to the VM behind `sock` and returns the parsed JSON reply,
/// waiting at most `timeout` for it.
pub fn request_with_timeout(
    sock: &Path,
    request: &str,
    timeout: Duration,
) -> Result<serde_json::Value, ControlError> {
    let io = |source| ControlError::Io {
        path: sock.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(sock).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    if let Err(e) = writeln!(s, "{request}") {
        // A refused peer is answered and closed before its request is read;
        // the answer is still there to read and says why.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(io(e));
        }
    }
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).map_err(io)?;
    let v: serde_json::Value =
        serde_json::from_str(reply.trim()).map_err(|e| ControlError::Refused {
            request: request.into(),
            reply: format!("{reply:?} ({e})"),
        })?;
    if let Some(e) = v.get("error") {
        return Err(ControlError::Refused {
            request: request.into(),
            reply: e.to_string(),
        });
    }
    Ok(v)
}

/// [`request_with_timeout`] with a 30 s timeout.
pub fn request(sock: &Path, request: &str) -> Result<serde_json::Value, ControlError> {
    request_with_timeout(sock, request, Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_owner_may_control() {
        assert!(allowed(0, 1000));
        assert!(allowed(1000, 1000));
        assert!(!allowed(1001, 1000));
        let (a, _b) = UnixStream::pair().unwrap();
        // SAFETY: no preconditions.
        assert_eq!(peer_uid(&a).unwrap(), unsafe { libc::geteuid() });
        assert!(matches!(parse("stop 10"), Request::Stop(d) if d == Duration::from_millis(10)));
        assert!(matches!(parse("stop 10 20"), Request::Bad(_)));
    }
}
