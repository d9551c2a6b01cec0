//! `byteport-init`: PID 1 inside every BytePort microVM.
//!
//! Loads the kernel modules the artifact names (in order), mounts the
//! rootfs and `/proc`, `/sys`, `/dev`, `/tmp`, sets the host name and the
//! network, opens the records channel to the host (a virtio-serial port
//! under QEMU, vsock from a privileged port under BytePort's own VMM — both
//! out of an app's reach), starts the app's processes as an unprivileged
//! user, reaps every child, restarts crashed processes with backoff, ships
//! their output as records within a per-process budget, and reports
//! `LISTENING` once the app accepts connections on its port inside the
//! guest. The app's volumes are found by filesystem UUID and mounted
//! before any process starts; one that cannot be mounted fails the boot. Under the own VMM it also proxies host connections to the app and
//! the app's outbound connections to the host (vsock). A stop request
//! (SIGTERM/SIGINT to PID 1, Ctrl-Alt-Del, `STOP` on the records port, or
//! the ACPI power button) sends SIGTERM to the app, waits, syncs and powers
//! off. A one-off VM (`once`: a release command) runs its processes once
//! and powers off when they have exited; with a console, its one process
//! gets a pseudo-terminal relayed over the console's port (`console`).
//!
//! On the host, `byteport-init --relay SOCKET` copies stdin/stdout to a Unix
//! socket: QEMU runs it for each guest connection to the egress address
//! (`guestfwd=...-cmd:`), inside QEMU's jail.
//!
//! It must stay small and static: it runs before anything else exists.

mod channel;
mod console;
mod disks;
mod listen;
mod power;
mod relay;
mod supervise;
mod system;
mod vsock;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use guest_init::config::InitConfig;
use supervise::{emit, Sink, Supervisor};

const CONFIG_PATH: &str = "/byteport/init.json";
const STOP_GRACE: Duration = Duration::from_secs(10);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn console() -> Sink {
    let out: Box<dyn Write + Send> =
        match std::fs::OpenOptions::new().write(true).open("/dev/console") {
            Ok(f) => Box::new(f),
            Err(_) => Box::new(std::io::stderr()),
        };
    Arc::new(Mutex::new(out))
}

/// Reports `what` (on the records channel if it is open, else on the
/// console, which the host shows in the boot error) and powers off.
fn fatal(sink: &Sink, what: &str) -> ! {
    emit(sink, "init", "evt", &format!("FATAL {what}"));
    system::power_off()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--check") => {
            // Used by the builder: validate a config without running anything.
            let path = args.get(2).map(String::as_str).unwrap_or(CONFIG_PATH);
            match std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| InitConfig::parse(&b).map_err(|e| e.0))
            {
                Ok(_) => println!("{path}: ok"),
                Err(e) => {
                    eprintln!("{path}: {e}");
                    std::process::exit(1);
                }
            }
            return;
        }
        Some("--relay") => {
            let Some(path) = args.get(2) else {
                eprintln!("usage: byteport-init --relay UNIX_SOCKET");
                std::process::exit(2);
            };
            std::process::exit(relay::run(std::path::Path::new(path)));
        }
        _ => {}
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("byteport-init runs as PID 1 inside a BytePort microVM; use --check FILE to validate a config");
        std::process::exit(2);
    }
    run();
}

fn run() -> ! {
    if let Err(e) = system::mount_basics() {
        // Without /dev there may be no console yet; try anyway.
        fatal(&console(), &format!("early mounts: {e}"));
    }
    let sink = console();
    let config = match std::fs::read(CONFIG_PATH) {
        Ok(bytes) => InitConfig::parse(&bytes).unwrap_or_else(|e| fatal(&sink, &e.0)),
        Err(e) => fatal(&sink, &format!("{CONFIG_PATH}: {e}")),
    };
    for m in &config.modules {
        if let Err(e) = system::load_module(m) {
            fatal(&sink, &format!("module: {e}"));
        }
    }
    // From here on records go to the host over the channel only PID 1 holds.
    match channel::open(&config.records) {
        Ok(ch) => {
            *sink.lock().unwrap_or_else(|p| p.into_inner()) = ch.writer;
            if let Some(requests) = ch.requests {
                channel::watch_requests(requests, request_stop);
            }
        }
        Err(e) => fatal(&sink, &format!("records channel {:?}: {e}", config.records)),
    }
    emit(&sink, "init", "evt", "BOOT byteport-init");
    // The one-off process's terminal (opened while /dev is the initramfs's).
    let console_port = config.console.as_ref().map(|t| {
        console::open_channel(&t.channel)
            .unwrap_or_else(|e| fatal(&sink, &format!("console {:?}: {e}", t.channel)))
    });
    if let Some(root) = &config.root {
        if let Err(e) = system::switch_root(root) {
            fatal(&sink, &format!("rootfs {}: {e}", root.device));
        }
    }
    if let Err(e) = system::mount_runtime_dirs() {
        emit(&sink, "init", "evt", &format!("WARN {e}"));
    }
    // Volumes before anything of the app runs: an app never starts on an
    // empty directory where its data should be.
    let say = |line: &str| emit(&sink, "init", "out", line);
    if let Err(e) = disks::mount_volumes(&config.volumes, config.user, &say) {
        fatal(&sink, &e);
    }
    let _ = system::set_hostname(&config.hostname);
    if let Err(e) = system::link_up("lo") {
        emit(&sink, "init", "evt", &format!("WARN loopback: {e}"));
    }
    if let Some(net) = &config.network {
        if let Err(e) = system::configure(net) {
            fatal(&sink, &format!("network {}: {e}", net.interface));
        }
    }
    if let Some(link) = &config.vsock {
        if let Some(p) = link.proxy {
            if let Err(e) = vsock::spawn_proxy(p) {
                fatal(&sink, &format!("vsock proxy on port {}: {e}", p.vsock_port));
            }
        }
        if let Some(e) = link.egress {
            if let Err(err) = vsock::spawn_egress(e) {
                fatal(&sink, &format!("egress proxy on {}: {err}", e.listen));
            }
        }
        // The database relay works as the egress one: another host port.
        if let Some(d) = link.database {
            if let Err(err) = vsock::spawn_egress(d) {
                fatal(&sink, &format!("database relay on {}: {err}", d.listen));
            }
        }
    }
    install_stop_handlers();
    if power::watch(request_stop).is_none() && config.vsock.is_some() {
        emit(
            &sink,
            "init",
            "evt",
            "WARN no ACPI power button; stop requests come by signal only",
        );
    }

    let listen_check = config.listen_check.clone();
    let mut sup = Supervisor::new(config, sink.clone());
    if let Some(port) = console_port {
        sup.attach_console(port);
    }
    sup.start_all();
    emit(&sink, "init", "evt", "READY");
    if let Some(check) = listen_check {
        listen::spawn(check, sink.clone(), &STOP);
    }
    while !STOP.load(Ordering::SeqCst) && !sup.all_done() {
        std::thread::sleep(Duration::from_millis(100));
        sup.reap();
        sup.restart_due();
    }
    if sup.all_done() {
        // A one-off VM whose processes have all exited.
        emit(&sink, "init", "evt", "DONE");
    }
    emit(&sink, "init", "evt", "STOPPING");
    let volumes = sup.config().volumes.clone();
    sup.stop_all(STOP_GRACE);
    disks::unmount_volumes(&volumes);
    emit(&sink, "init", "evt", "POWEROFF");
    system::power_off()
}

fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    // RB_DISABLE_CAD turns Ctrl-Alt-Del into SIGINT for PID 1.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGPWR, handler);
        libc::reboot(libc::RB_DISABLE_CAD);
    }
}
