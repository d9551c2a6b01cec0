//! Per-VM control socket: `<runtime_dir>/<name>.sock`, one line-based request per
//! connection: `status`, `pause`, `resume`, `stop`; the reply is one JSON line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Vm, VmState};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64;

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

/// Serves control requests for `vm` until the VM is taken out of the slot.
pub fn serve(listener: UnixListener, vm: Arc<Mutex<Option<Vm>>>, name: String) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut line = String::new();
        if BufReader::new((&conn).take(MAX_REQUEST))
            .read_line(&mut line)
            .is_err()
        {
            continue;
        }
        let mut slot = vm.lock().unwrap_or_else(|p| p.into_inner());
        let reply = match (line.trim(), slot.as_ref()) {
            (_, None) => serde_json::json!({"name": name, "state": VmState::Stopped}),
            ("status", Some(v)) => serde_json::json!({"name": name, "state": v.state()}),
            ("pause", Some(v)) => {
                v.pause();
                serde_json::json!({"name": name, "state": v.state()})
            }
            ("resume", Some(v)) => {
                v.resume();
                serde_json::json!({"name": name, "state": v.state()})
            }
            ("stop", Some(_)) => {
                let exit = slot.take().map(Vm::shutdown);
                serde_json::json!({"name": name, "state": VmState::Stopped, "exit": format!("{exit:?}")})
            }
            (other, Some(_)) => serde_json::json!({"error": format!("unknown request {other:?}")}),
        };
        drop(slot);
        let _ = writeln!(&conn, "{reply}");
    }
}

/// Sends `request` to the VM behind `sock` and returns the parsed JSON reply.
pub fn request(sock: &Path, request: &str) -> Result<serde_json::Value, ControlError> {
    let io = |source| ControlError::Io {
        path: sock.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(sock).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    writeln!(s, "{request}").map_err(io)?;
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
