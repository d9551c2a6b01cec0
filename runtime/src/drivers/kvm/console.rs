//! A one-off VM's terminal under the own VMM (`byteport run` with a TTY).
//!
//! The guest init connects, from privileged ports, to two vsock host ports
//! before it starts the process ([`VSOCK_CONSOLE_PORT`] for the terminal's
//! bytes, [`VSOCK_CONSOLE_CONTROL_PORT`] for window changes); the VMM admits
//! only such connections there (`--vsock-root-port`) and connects each to
//! `v_<port>` in the VM's socket directory. Each listener takes exactly one
//! connection and is then removed, so nothing can take its place. The bytes
//! connection is handed out raw ([`Console::take`]); window changes are
//! `WINCH <cols> <rows>` lines on the control connection, never in-band.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

pub use guest_init::config::{VSOCK_CONSOLE_CONTROL_PORT, VSOCK_CONSOLE_PORT};

/// The host ends of a VM's console, as the guest connects them.
pub struct Console {
    data: Receiver<UnixStream>,
    control: Receiver<UnixStream>,
    control_conn: Option<UnixStream>,
    sockets: [PathBuf; 2],
    closing: Arc<AtomicBool>,
}

/// Listens on `v_<port>` in `sock_dir` (owned by `owner`, the VMM's uid in
/// its jail) for the one connection the guest makes.
fn listen_once(
    sock_dir: &Path,
    port: u32,
    owner: Option<u32>,
    closing: Arc<AtomicBool>,
) -> std::io::Result<(PathBuf, Receiver<UnixStream>)> {
    let path = sock_dir.join(format!("v_{port}"));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    if let Some(uid) = owner {
        std::os::unix::fs::chown(&path, Some(uid), Some(uid))?;
    }
    let (tx, rx) = mpsc::channel();
    let socket = path.clone();
    std::thread::Builder::new()
        .name(format!("vm-console-{port}"))
        .spawn(move || {
            let accepted = listener.accept();
            // One connection only: nobody connects after the guest init.
            let _ = std::fs::remove_file(&socket);
            if let (Ok((conn, _)), false) = (accepted, closing.load(Ordering::SeqCst)) {
                let _ = tx.send(conn);
            }
        })?;
    Ok((path, rx))
}

impl Console {
    /// Opens both listeners before the VMM starts.
    pub fn open(sock_dir: &Path, owner: Option<u32>) -> std::io::Result<Console> {
        let closing = Arc::new(AtomicBool::new(false));
        let (data_socket, data) =
            listen_once(sock_dir, VSOCK_CONSOLE_PORT, owner, closing.clone())?;
        let (control_socket, control) =
            listen_once(sock_dir, VSOCK_CONSOLE_CONTROL_PORT, owner, closing.clone())?;
        Ok(Console {
            data,
            control,
            control_conn: None,
            sockets: [data_socket, control_socket],
            closing,
        })
    }

    /// The terminal's bytes, once the guest has connected (it does before
    /// its READY; `wait` covers the hand-over); `None` after the first call.
    pub fn take(&mut self, wait: Duration) -> Option<UnixStream> {
        self.data.recv_timeout(wait).ok()
    }

    /// Sends a window change; false if the guest's control connection is
    /// not (or no longer) there.
    pub fn resize(&mut self, cols: u16, rows: u16) -> bool {
        if self.control_conn.is_none() {
            self.control_conn = self.control.recv_timeout(Duration::from_secs(1)).ok();
        }
        let Some(conn) = self.control_conn.as_mut() else {
            return false;
        };
        conn.set_write_timeout(Some(Duration::from_secs(1)))
            .and_then(|()| conn.write_all(format!("WINCH {cols} {rows}\n").as_bytes()))
            .is_ok()
    }

    /// The listener sockets, for the jail and the VMM's root ports.
    pub fn ports() -> [u32; 2] {
        [VSOCK_CONSOLE_PORT, VSOCK_CONSOLE_CONTROL_PORT]
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        // Wakes listeners the guest never connected to, so their threads end.
        self.closing.store(true, Ordering::SeqCst);
        for s in &self.sockets {
            let _ = UnixStream::connect(s);
            let _ = std::fs::remove_file(s);
        }
    }
}
