//! The in-guest listen check: connect to the app's port at the address the
//! host's forward uses until it accepts, then report `LISTENING <process>
//! <addr>`. A forward on the host accepts before the app does; only a
//! connect inside the guest tells whether the app listens.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use guest_init::config::ListenCheck;

use crate::supervise::{emit, Sink};

/// Probes every 250 ms (from a thread of its own) until the app accepts or
/// the VM stops.
pub fn spawn(check: ListenCheck, sink: Sink, stop: &'static AtomicBool) {
    std::thread::spawn(move || {
        let addr = SocketAddr::V4(check.addr);
        while !stop.load(Ordering::SeqCst) {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                emit(
                    &sink,
                    "init",
                    "evt",
                    &format!("LISTENING {} {}", check.process, check.addr),
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}
