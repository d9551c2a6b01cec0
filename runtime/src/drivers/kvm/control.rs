//! The client side of `byteport-vmm`'s per-VM control socket
//! (`<dir>/<name>.sock`; the protocol is documented in the `vmm` crate's
//! `control` module): one request line per connection, one JSON line back.
//! The driver only needs `stop`; it speaks the protocol here rather than
//! linking the VMM.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The control socket of VM `name` in `dir`.
pub fn socket_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.sock"))
}

/// Sends `request` and returns the reply line, waiting at most `timeout`.
/// An `{"error": ...}` reply is an error of kind `Other` carrying the reply.
pub fn request(sock: &Path, request: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    writeln!(s, "{request}")?;
    let mut reply = String::new();
    BufReader::new(&s).take_line(&mut reply)?;
    let reply = reply.trim().to_string();
    match serde_json::from_str::<serde_json::Value>(&reply) {
        Ok(v) if v.get("error").is_none() => Ok(reply),
        _ => Err(std::io::Error::other(format!(
            "byteport-vmm refused {request:?}: {reply}"
        ))),
    }
}

/// Reads one line of at most 4 KiB (a reply is a short JSON object).
trait TakeLine {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(4096).read_line(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn serve_once(reply: &'static str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let sock = socket_path(d.path(), "vm");
        let l = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&c).read_line(&mut line).unwrap();
            assert_eq!(line, "stop 5000\n");
            (&c).write_all(reply.as_bytes()).unwrap();
        });
        (d, sock)
    }

    #[test]
    fn replies_and_refusals() {
        let (_d, sock) = serve_once("{\"name\":\"vm\",\"state\":\"stopped\"}\n");
        let r = request(&sock, "stop 5000", Duration::from_secs(5)).unwrap();
        assert!(r.contains("stopped"), "{r}");
        let (_d, sock) = serve_once("{\"error\":\"no\"}\n");
        let e = request(&sock, "stop 5000", Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
    }
}
