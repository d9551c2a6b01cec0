//! Runtime drivers: how an artifact becomes a running VM. `qemu` is QEMU's
//! microvm machine (portable; TCG where hardware virtualization is not
//! usable); `kvm` is BytePort's own VMM (`byteport-vmm`, a child process).
//! Both give [`crate::boot`] the same [`AppVm`] handle.

pub mod guest;
pub mod kvm;
pub mod qemu;

use std::net::SocketAddr;
use std::time::Duration;

/// Receives app log lines: (process, stream, text).
pub type AppLog = std::sync::Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

/// A booted app VM, whichever driver runs it.
pub trait AppVm: Send {
    /// The VM's name (`<app>-<deploy>.<instance>`).
    fn name(&self) -> &str;
    /// The loopback address the router connects to for the app's port.
    fn host_addr(&self) -> Option<SocketAddr>;
    /// The console's last lines (for error messages).
    fn console_tail(&self) -> String;
    /// Guest-init events received since the last call (`EXITED ...`,
    /// `RESTART ...`).
    fn drain_events(&mut self) -> Vec<String>;
    /// `None` while the VM runs; how it ended once it has.
    fn exit_status(&mut self) -> Option<String>;
    /// Asks the guest to stop its app and power off; kills the VM after
    /// `grace`.
    fn stop(&mut self, grace: Duration);
    /// The host process behind the VM (for `byteport ps` and tests).
    fn pid(&self) -> Option<u32>;
}
