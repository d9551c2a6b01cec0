//! seccomp filters, one per kind of VMM thread, installed by each thread on itself
//! once setup is over. Each allows only the syscalls that thread makes; any other
//! fails with EPERM, so a compromised device model (the code that parses guest
//! memory) cannot open files, exec, or reach the network:
//!
//! - vCPU threads: `KVM_RUN` (no other ioctl), writes to the console and eventfds.
//! - the event loop: epoll, device I/O on already-open files, Unix-domain sockets
//!   only (vsock host side), non-blocking mode through `FIONBIO` only.
//! - the control-socket thread: accept/read/write on its socket, signals to kick vCPUs.
//! - the main thread of `byteport-vmm` once the VM runs: waiting, joining, printing
//!   the result and removing its sockets.
//!
//! Every thread also gets memory management, futexes, clocks, signal return and
//! exit. Each filter is compiled by the first thread that installs it, once.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors building or installing a filter.
#[derive(Debug, thiserror::Error)]
#[error("seccomp filter for the {kind:?} thread: {msg}")]
pub struct SeccompError {
    kind: ThreadKind,
    msg: String,
}

/// The kinds of VMM thread, each with its own allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// Runs one vCPU.
    Vcpu,
    /// The event loop (device queues, vsock sockets, console input).
    EventLoop,
    /// Serves the control socket.
    Control,
    /// The VMM process's main thread after start-up.
    Main,
}

/// `_IO(KVMIO, 0x80)`.
const KVM_RUN: u64 = 0xae80;

const COMMON: &[libc::c_long] = &[
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_close,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_restart_syscall,
    libc::SYS_rseq,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// `sendto`: console output to an attached socket client (std's `UnixStream`
/// writes with `sendto(MSG_NOSIGNAL)`); vCPU threads cannot create sockets.
const VCPU: &[libc::c_long] = &[libc::SYS_sendto];

const EVENT_LOOP: &[libc::c_long] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_getrandom,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
    libc::SYS_fcntl,
];

const CONTROL: &[libc::c_long] = &[
    libc::SYS_accept4,
    libc::SYS_read,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_fcntl,
    libc::SYS_tgkill,
    libc::SYS_epoll_ctl,
];

const MAIN: &[libc::c_long] = &[
    libc::SYS_tgkill,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_epoll_ctl,
];

fn err(kind: ThreadKind) -> impl Fn(String) -> SeccompError {
    move |msg| SeccompError { kind, msg }
}

fn arg_eq(arg: u8, v: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        v,
    )?])
}

/// The rules of `kind` (syscall → conditions; an empty list allows any arguments).
fn rules(kind: ThreadKind) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let e = |x: seccompiler::BackendError| err(kind)(x.to_string());
    let extra = match kind {
        ThreadKind::Vcpu => VCPU,
        ThreadKind::EventLoop => EVENT_LOOP,
        ThreadKind::Control => CONTROL,
        ThreadKind::Main => MAIN,
    };
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = COMMON
        .iter()
        .chain(extra)
        .map(|&n| (n, Vec::new()))
        .collect();
    // ioctl: vCPUs only run; other threads only switch sockets to non-blocking.
    let ioctl = match kind {
        ThreadKind::Vcpu => Some(arg_eq(1, KVM_RUN).map_err(e)?),
        ThreadKind::EventLoop | ThreadKind::Control => Some(arg_eq(1, libc::FIONBIO).map_err(e)?),
        ThreadKind::Main => None,
    };
    if let Some(r) = ioctl {
        m.insert(libc::SYS_ioctl, vec![r]);
    }
    if kind == ThreadKind::EventLoop {
        // Guest-initiated vsock connections go to Unix sockets only.
        m.insert(
            libc::SYS_socket,
            vec![arg_eq(0, libc::AF_UNIX as u64).map_err(e)?],
        );
    }
    Ok(m)
}

/// Compiles the filter of `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let f = SeccompFilter::new(
        rules(kind)?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|x| err(kind)(x.to_string()))?;
    BpfProgram::try_from(f).map_err(|x| err(kind)(x.to_string()))
}

/// Installs the filter of `kind` on the calling thread. Each kind is compiled
/// once per process, by the first thread that needs it.
pub fn apply_for(kind: ThreadKind) -> Result<(), SeccompError> {
    static COMPILED: [OnceLock<BpfProgram>; 4] = [const { OnceLock::new() }; 4];
    let cell = &COMPILED[kind as usize];
    let prog = match cell.get() {
        Some(p) => p,
        None => {
            let _ = cell.set(filter(kind)?);
            cell.get().ok_or_else(|| err(kind)("filter cache".into()))?
        }
    };
    seccompiler::apply_filter(prog).map_err(|x| err(kind)(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn errno() -> Option<i32> {
        std::io::Error::last_os_error().raw_os_error()
    }

    /// Runs `f` on a fresh thread under the filter of `kind`.
    fn confined(kind: ThreadKind, f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(move || {
            apply_for(kind).unwrap();
            f();
        })
        .join()
        .unwrap();
    }

    fn open_denied() {
        assert!(std::fs::File::open("/etc/hostname").is_err());
    }

    #[test]
    fn vcpu_threads_may_only_run_the_vcpu_and_write() {
        let kvm = std::fs::File::open("/dev/kvm").ok();
        confined(ThreadKind::Vcpu, move || {
            // SAFETY: plain syscalls with valid arguments.
            let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            assert_eq!((sock, errno()), (-1, Some(libc::EPERM)));
            open_denied();
            assert!(vmm_sys_util::eventfd::EventFd::new(0).is_err());
            if let Some(kvm) = kvm {
                // KVM_GET_API_VERSION is an ioctl other than KVM_RUN: denied.
                // SAFETY: ioctl on a valid fd; the request takes no argument.
                let r = unsafe { libc::ioctl(kvm.as_raw_fd(), 0xae00) };
                assert_eq!((r, errno()), (-1, Some(libc::EPERM)));
            }
            let efd_ok = std::io::stderr().lock();
            drop(efd_ok);
        });
        // Other threads are unaffected.
        assert!(std::fs::metadata("/").is_ok());
    }

    #[test]
    fn event_loop_may_use_unix_sockets_but_not_inet_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        confined(ThreadKind::EventLoop, move || {
            let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.set_nonblocking(true).unwrap();
            drop(listener.accept().unwrap());
            // SAFETY: plain syscall with valid arguments.
            let inet = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
            assert_eq!((inet, errno()), (-1, Some(libc::EPERM)));
            open_denied();
            assert!(std::process::Command::new("/bin/true").status().is_err());
        });
    }

    #[test]
    fn control_thread_may_serve_its_socket_but_not_connect_or_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        confined(ThreadKind::Control, move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
                .unwrap();
            drop(client);
            // SAFETY: plain syscall with valid arguments.
            let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            assert_eq!((sock, errno()), (-1, Some(libc::EPERM)));
            open_denied();
        });
    }

    #[test]
    fn main_thread_may_wait_and_unlink_but_not_open_or_socket() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sock");
        std::fs::write(&f, b"").unwrap();
        confined(ThreadKind::Main, move || {
            std::fs::remove_file(&f).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
            // SAFETY: plain syscall with valid arguments.
            let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            assert_eq!((sock, errno()), (-1, Some(libc::EPERM)));
            open_denied();
        });
    }
}
