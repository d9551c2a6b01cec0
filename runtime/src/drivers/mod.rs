//! Runtime drivers: how an artifact becomes a running VM. `qemu` is QEMU's
//! microvm machine (portable; TCG where hardware virtualization is not
//! usable); `kvm` is BytePort's own VMM (`byteport-vmm`, a child process).
//! Both give [`crate::boot`] the same [`AppVm`] handle.

pub mod guest;
pub mod kvm;
pub mod qemu;
pub mod vm_process;

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
    /// The console's last lines and the app's last output (for error messages).
    fn console_tail(&self) -> String;
    /// What the guest init has reported: READY, FATAL, whether the checked
    /// process listens, its exits (for boot and health checks).
    fn guest(&self) -> crate::guest_link::GuestStatus;
    /// Guest-init events received since the last call (`STARTED ...`,
    /// `EXITED ...`, `RESTART ...`, `LISTENING ...`; at most
    /// [`crate::guest_link::MAX_QUEUED_EVENTS`] are kept between calls).
    fn drain_events(&mut self) -> Vec<String>;
    /// `None` while the VM runs; how it ended once it has.
    fn exit_status(&mut self) -> Option<String>;
    /// Asks the guest to stop its app and power off; kills the VM after
    /// `grace`. Dropping the handle kills the VM if it still runs and
    /// removes its directory and cgroup.
    fn stop(&mut self, grace: Duration);
    /// The host process behind the VM (for `byteport ps` and tests).
    fn pid(&self) -> Option<u32>;
    /// The terminal of a VM booted with [`AppSpec::console`](crate::AppSpec::console):
    /// a connected stream carrying its bytes raw both ways (what is written
    /// is typed; what is read is the terminal's output). Given once; `None`
    /// afterwards and for VMs without a console. Closing it hangs up the
    /// terminal (the process gets SIGHUP). Until it is taken, the process's
    /// output waits in the stream's buffer (about 200 KiB; beyond that the
    /// process blocks on its writes).
    fn take_console(&mut self) -> Option<std::os::unix::net::UnixStream> {
        None
    }
    /// Resizes the console's window (an SSH `window-change`): the guest
    /// init sets it on the terminal, whose foreground processes get
    /// SIGWINCH. It travels apart from the typed bytes, so nothing typed
    /// can resize. `false` when the VM has no console or the request could
    /// not be sent.
    fn resize_console(&mut self, _cols: u16, _rows: u16) -> bool {
        false
    }
}
