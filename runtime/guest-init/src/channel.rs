//! Opening the records channel (see `guest_init::config::RecordChannel`):
//! the named virtio-serial port under QEMU — whose device node is root's
//! and which admits a single opener, PID 1 — or a vsock connection from a
//! privileged port under BytePort's own VMM. Under QEMU the port also
//! carries the host's requests (`STOP`) the other way.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use guest_init::config::RecordChannel;

/// The writer for records, and the reader of host requests if the channel
/// has one.
pub struct Channel {
    /// Where records go.
    pub writer: Box<dyn Write + Send>,
    /// Host requests, one per line.
    pub requests: Option<File>,
}

/// Opens `c`, waiting a few seconds for the device or the host.
pub fn open(c: &RecordChannel) -> io::Result<Channel> {
    match c {
        RecordChannel::VirtioPort { name } => {
            let dev = find_port(name, 100)?;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&dev)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dev.display())))?;
            let requests = f.try_clone()?;
            Ok(Channel {
                writer: Box::new(f),
                requests: Some(requests),
            })
        }
        RecordChannel::Vsock { port } => {
            let link = crate::vsock::connect_records(*port)?;
            Ok(Channel {
                writer: Box::new(crate::vsock::RecordsLink::new(*port, link)),
                requests: None,
            })
        }
    }
}

/// `/dev/<vportNpM>` of the virtio-serial port called `name`, polling sysfs
/// `tries` times 50 ms apart (the driver probes asynchronously).
pub fn find_port(name: &str, tries: u32) -> io::Result<PathBuf> {
    for _ in 0..tries {
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in dir.flatten() {
                let label = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if label.trim() == name {
                    return Ok(PathBuf::from("/dev").join(e.file_name()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no virtio-serial port named {name} (is virtio_console loaded?)"),
    ))
}

/// Calls `on_stop` (from a thread of its own) when the host writes `STOP`;
/// `WINCH <cols> <rows>` resizes the console ([`crate::console::resize`]).
/// Lines are short; longer ones are skipped.
pub fn watch_requests(requests: File, on_stop: fn()) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(requests);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.by_ref().take(64).read_until(b'\n', &mut line) {
                Ok(0) => std::thread::sleep(Duration::from_millis(200)),
                Ok(_) if line.trim_ascii() == b"STOP" => on_stop(),
                Ok(_) if line.starts_with(b"WINCH ") => {
                    crate::console::resize(&String::from_utf8_lossy(&line))
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    });
}
