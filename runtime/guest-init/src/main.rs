//! `byteport-init`: PID 1 inside every BytePort microVM.
//!
//! Loads the kernel modules the artifact names (in order), mounts the
//! rootfs and `/proc`, `/sys`, `/dev`, `/tmp`, sets the host name and the
//! network, starts the app's processes as an unprivileged user, reaps every
//! child, restarts crashed processes with backoff, and ships output lines
//! (`[bp <ms> <process> <stream>] text`) to the serial console, where the
//! host's driver reads them — or, under BytePort's own VMM, over vsock
//! (`vsock`), which also carries host connections to the app's port. A stop
//! request (SIGTERM/SIGINT to PID 1, Ctrl-Alt-Del, `BYTEPORT-STOP` on the
//! console, or the ACPI power button) sends SIGTERM to the app, waits, syncs
//! and powers off.
//!
//! It must stay small and static: it runs before anything else exists.

mod power;
mod supervise;
mod system;
mod vsock;

use std::io::{BufRead, Write};
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

fn fatal(sink: &Sink, what: &str) -> ! {
    emit(sink, "init", "evt", &format!("FATAL {what}"));
    system::power_off()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--check") {
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
    emit(&sink, "init", "evt", "BOOT byteport-init");
    let config = match std::fs::read(CONFIG_PATH) {
        Ok(bytes) => InitConfig::parse(&bytes).unwrap_or_else(|e| fatal(&sink, &e.0)),
        Err(e) => fatal(&sink, &format!("{CONFIG_PATH}: {e}")),
    };
    for m in &config.modules {
        if let Err(e) = system::load_module(m) {
            fatal(&sink, &format!("module: {e}"));
        }
    }
    if let Some(root) = &config.root {
        if let Err(e) = system::switch_root(root) {
            fatal(&sink, &format!("rootfs {}: {e}", root.device));
        }
    }
    if let Err(e) = system::mount_runtime_dirs() {
        emit(&sink, "init", "evt", &format!("WARN {e}"));
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
        match vsock::connect_log(link.log_port) {
            Ok(stream) => {
                let mut w = sink.lock().unwrap_or_else(|p| p.into_inner());
                let console = std::mem::replace(&mut *w, Box::new(std::io::sink()));
                *w = Box::new(vsock::LinkWriter::new(stream, console));
            }
            Err(e) => emit(
                &sink,
                "init",
                "evt",
                &format!(
                    "WARN vsock log link to port {}: {e}; logging to the console",
                    link.log_port
                ),
            ),
        }
        if let Some(p) = link.proxy {
            if let Err(e) = vsock::spawn_proxy(p) {
                fatal(&sink, &format!("vsock proxy on port {}: {e}", p.vsock_port));
            }
        }
    }
    install_stop_handlers();
    watch_console_for_stop();
    if power::watch(request_stop).is_none() && config.vsock.is_some() {
        emit(
            &sink,
            "init",
            "evt",
            "WARN no ACPI power button; stop requests come by signal or console only",
        );
    }

    let mut sup = Supervisor::new(config, sink.clone());
    sup.start_all();
    emit(&sink, "init", "evt", "READY");
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        sup.reap();
        sup.restart_due();
    }
    emit(&sink, "init", "evt", "STOPPING");
    sup.stop_all(STOP_GRACE);
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

fn watch_console_for_stop() {
    std::thread::spawn(|| {
        let Ok(f) = std::fs::File::open("/dev/console") else {
            return;
        };
        for line in std::io::BufReader::new(f).lines() {
            match line {
                Ok(l) if l.trim() == "BYTEPORT-STOP" => STOP.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
}
