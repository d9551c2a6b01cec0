//! The kernel-facing steps of PID 1: mounts, modules, switching to the
//! rootfs, host name, network interfaces, power off.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use guest_init::config::{Network, RootFs};

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    }
}

/// mount(2); an already-mounted target (EBUSY) is not an error.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY) {
        return Ok(());
    }
    check(rc, &format!("mount {fstype} on {target}"))
}

/// The early mounts every init needs.
pub fn mount_basics() -> io::Result<()> {
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount("proc", "/proc", "proc", nosuid, "")?;
    mount("sysfs", "/sys", "sysfs", nosuid, "")?;
    mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755")?;
    Ok(())
}

/// Mounts inside the final root.
pub fn mount_runtime_dirs() -> io::Result<()> {
    mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    )?;
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "mode=0620,ptmxmode=0666",
    )?;
    mount(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    )?;
    Ok(())
}

/// Loads one kernel module from a file; already-loaded is fine.
pub fn load_module(path: &str) -> io::Result<()> {
    let f =
        std::fs::File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    let params = cstr("")?;
    // SAFETY: finit_module takes an open fd, a NUL-terminated parameter
    // string and flags; both stay valid for the duration of the call.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("finit_module {path}: {e}"),
        ));
    }
    Ok(())
}

/// Waits for a block device to appear (drivers probe asynchronously).
pub fn wait_for(path: &str, tries: u32) -> io::Result<()> {
    for _ in 0..tries {
        if Path::new(path).exists() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{path} did not appear"),
    ))
}

/// Mounts the rootfs and makes it `/`, carrying /proc, /sys and /dev over.
pub fn switch_root(root: &RootFs) -> io::Result<()> {
    let device = match &root.uuid {
        Some(uuid) => crate::disks::find(uuid, crate::disks::DISK_WAIT)?
            .display()
            .to_string(),
        None => {
            wait_for(&root.device, 200)?;
            root.device.clone()
        }
    };
    let flags = if root.readonly { libc::MS_RDONLY } else { 0 };
    mount(&device, "/newroot", &root.fstype, flags, "")?;
    for dir in ["/proc", "/sys", "/dev"] {
        let target = format!("/newroot{dir}");
        std::fs::create_dir_all(&target)?;
        let (s, t) = (cstr(dir)?, cstr(&target)?);
        // SAFETY: valid C strings; MS_MOVE with null fstype/data is the documented form.
        let rc = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            )
        };
        check(rc, &format!("move {dir}"))?;
    }
    std::env::set_current_dir("/newroot")?;
    let (dot, slash) = (cstr(".")?, cstr("/")?);
    // SAFETY: moving the new root over / and chrooting into it, as
    // switch_root(8) does; strings are valid for the calls.
    unsafe {
        check(
            libc::mount(
                dot.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ),
            "move root",
        )?;
        check(libc::chroot(dot.as_ptr()), "chroot")?;
    }
    std::env::set_current_dir("/")
}

/// Sets the host name.
pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(
        unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) },
        "sethostname",
    )
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name `{name}`"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn sockaddr_in(addr: std::net::Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux; this
    // is the documented way to pass an AF_INET address through ifreq.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

struct Socket(libc::c_int);
impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor we own.
        unsafe { libc::close(self.0) };
    }
}

fn inet_socket() -> io::Result<Socket> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Socket(fd))
}

/// Brings an interface up (no address change).
pub fn link_up(name: &str) -> io::Result<()> {
    let s = inet_socket()?;
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read/write the flags member of a valid ifreq.
    unsafe {
        check(
            libc::ioctl(s.0, libc::SIOCGIFFLAGS, &mut req),
            &format!("get flags of {name}"),
        )?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        check(
            libc::ioctl(s.0, libc::SIOCSIFFLAGS, &req),
            &format!("bring {name} up"),
        )
    }
}

/// Configures a static IPv4 address (and default route) on an interface.
pub fn configure(net: &Network) -> io::Result<()> {
    wait_for(&format!("/sys/class/net/{}", net.interface), 100)?;
    let s = inet_socket()?;
    let mask = if net.prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(net.prefix))
    };
    let mut req = ifreq(&net.interface)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(net.address);
    // SAFETY: SIOCSIFADDR/SIOCSIFNETMASK read a sockaddr from a valid ifreq.
    unsafe {
        check(libc::ioctl(s.0, libc::SIOCSIFADDR, &req), "set address")?;
        req.ifr_ifru.ifru_netmask = sockaddr_in(std::net::Ipv4Addr::from(mask));
        check(libc::ioctl(s.0, libc::SIOCSIFNETMASK, &req), "set netmask")?;
    }
    link_up(&net.interface)?;
    if let Some(gw) = net.gateway {
        // SAFETY: rtentry is plain old data; zero is valid.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr_in(std::net::Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr_in(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        // SAFETY: SIOCADDRT reads a valid rtentry.
        check(
            unsafe { libc::ioctl(s.0, libc::SIOCADDRT, &rt) },
            "add default route",
        )?;
    }
    Ok(())
}

/// Flushes filesystems and powers the VM off. Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions; as PID 1
    // powering off is the intended end of the guest.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot only returns on failure; there is nothing else to do.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
