//! A running VM and its control: the vCPU threads and the event loop thread,
//! pause/resume, graceful stop (ACPI power button, then kill), wait.

use std::os::unix::thread::JoinHandleExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use super::builder;
use super::devices::{ged::Ged, Bus};
use super::event_loop::LoopExit;
use super::vcpu::{self, Step, VcpuStop};
use super::{VmConfig, VmError};

/// Externally visible run state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// vCPUs are running.
    Running,
    /// vCPUs are parked.
    Paused,
    /// The VM has stopped (see [`VmExit`]).
    Stopped,
}

/// Why the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// Guest powered off.
    PowerOff,
    /// Guest asked for a reboot (the VMM stops; the runtime decides whether to boot it again).
    Reboot,
    /// Guest halted with interrupts off or triple-faulted.
    Shutdown,
    /// Stopped by the host ([`Vm::shutdown`]).
    Killed,
    /// A vCPU failed.
    Error(String),
}

#[derive(Debug)]
struct Control {
    state: VmState,
    stop_requested: bool,
    parked: usize,
    exited: usize,
    exit: Option<VmExit>,
}

#[derive(Debug)]
struct Shared {
    ctl: Mutex<Control>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a fatal VMM error and asks every vCPU to stop.
    fn fail(&self, e: String) {
        let mut c = self.lock();
        if c.exit.is_none() {
            c.exit = Some(VmExit::Error(e));
        }
        c.stop_requested = true;
        self.cv.notify_all();
    }
}

/// A running (or paused/stopped) VM. All methods take `&self`, so one handle can
/// be shared (e.g. with the control socket thread) through an `Arc`.
#[derive(Debug)]
pub struct Vm {
    shared: Arc<Shared>,
    /// vCPU threads not joined yet (kicking a joined thread would be undefined).
    vcpus: Mutex<Vec<JoinHandle<()>>>,
    events: Mutex<Option<JoinHandle<()>>>,
    loop_exit: LoopExit,
    ged: Arc<Ged>,
    cpus: usize,
    // Field order matters: the VM fd goes before the memory it maps.
    _vm: VmFd,
    _mem: GuestMemoryMmap,
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

impl Vm {
    /// Builds the VM from `cfg` and starts its vCPU threads and its event loop.
    pub fn start(cfg: VmConfig) -> Result<Vm, VmError> {
        let io_err = |what: &str| {
            let what = what.to_string();
            move |source| VmError::Io { what, source }
        };
        let built = builder::build(&cfg)?;

        // Signal used to kick vCPUs out of KVM_RUN; the handler does nothing.
        register_signal_handler(SIGRTMIN(), kick_handler).map_err(|e| VmError::Io {
            what: "registering kick signal".into(),
            source: e.into(),
        })?;

        let shared = Arc::new(Shared {
            ctl: Mutex::new(Control {
                state: VmState::Running,
                stop_requested: false,
                parked: 0,
                exited: 0,
                exit: None,
            }),
            cv: Condvar::new(),
        });
        let loop_exit = built
            .events
            .exit_handle()
            .map_err(io_err("event loop exit eventfd"))?;
        let events = built.events;
        let ev_shared = shared.clone();
        let events_thread = std::thread::Builder::new()
            .name("vmm-events".into())
            .spawn(move || {
                let r = super::seccomp::apply_for(super::seccomp::ThreadKind::EventLoop)
                    .map_err(|e| e.to_string())
                    .and_then(|_| events.run().map_err(|e| format!("event loop: {e}")));
                if let Err(e) = r {
                    ev_shared.fail(e);
                }
            })
            .map_err(io_err("spawning the event loop thread"))?;

        let mut threads = Vec::new();
        for (id, mut fd) in built.vcpus.into_iter().enumerate() {
            let bus = built.bus.clone();
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    if let Err(e) = super::seccomp::apply_for(super::seccomp::ThreadKind::Vcpu) {
                        shared.fail(e.to_string());
                        let mut c = shared.lock();
                        c.exited += 1;
                        shared.cv.notify_all();
                        return;
                    }
                    vcpu_loop(&mut fd, &bus, &shared, id as u8)
                })
                .map_err(io_err("spawning vCPU thread"))?;
            threads.push(t);
        }
        Ok(Vm {
            shared,
            vcpus: Mutex::new(threads),
            events: Mutex::new(Some(events_thread)),
            loop_exit,
            ged: built.ged,
            cpus: usize::from(cfg.cpus),
            _vm: built.vm,
            _mem: built.mem,
        })
    }

    /// Current state.
    pub fn state(&self) -> VmState {
        self.shared.lock().state
    }

    fn kick_all(&self) {
        for t in lock(&self.vcpus).iter() {
            // SAFETY: the pthread id belongs to a thread we spawned and have not joined
            // (joined handles are removed from the list under this lock); the signal
            // has a no-op handler installed.
            unsafe { libc::pthread_kill(t.as_pthread_t(), SIGRTMIN()) };
        }
    }

    /// Parks all vCPUs; returns once every vCPU is out of `KVM_RUN`.
    pub fn pause(&self) {
        {
            let mut c = self.shared.lock();
            if c.state != VmState::Running {
                return;
            }
            c.state = VmState::Paused;
        }
        loop {
            self.kick_all();
            let c = self.shared.lock();
            if c.parked + c.exited >= self.cpus {
                return;
            }
            let _ = self.shared.cv.wait_timeout(c, Duration::from_millis(5));
        }
    }

    /// Resumes parked vCPUs.
    pub fn resume(&self) {
        let mut c = self.shared.lock();
        if c.state == VmState::Paused {
            c.state = VmState::Running;
            self.shared.cv.notify_all();
        }
    }

    /// Presses the ACPI power button: a guest that handles it shuts down in an
    /// orderly way and powers off (see [`super::devices::ged`]).
    pub fn power_button(&self) -> Result<(), VmError> {
        self.ged.press_power_button().map_err(|source| VmError::Io {
            what: "raising the power-button interrupt".into(),
            source,
        })
    }

    /// Graceful stop: presses the power button (resuming a paused guest first so it
    /// can react), waits up to `grace` for the guest to power off, then kills it.
    pub fn stop(&self, grace: Duration) -> VmExit {
        self.resume();
        if self.wait_timeout(Duration::ZERO).is_none() {
            if let Err(e) = self.power_button() {
                tracing::warn!(error = %e, "power button failed; killing the VM");
            }
            if self.wait_timeout(grace).is_some() {
                return self.finish();
            }
        }
        self.kill()
    }

    /// Stops the VM now (vCPUs kicked out of `KVM_RUN`), then joins its threads.
    pub fn kill(&self) -> VmExit {
        {
            let mut c = self.shared.lock();
            c.stop_requested = true;
            if c.exit.is_none() {
                c.exit = Some(VmExit::Killed);
            }
            self.shared.cv.notify_all();
        }
        loop {
            self.kick_all();
            let c = self.shared.lock();
            if c.exited >= self.cpus {
                break;
            }
            let _ = self.shared.cv.wait_timeout(c, Duration::from_millis(5));
        }
        self.finish()
    }

    /// Same as [`kill`](Self::kill), consuming the handle.
    pub fn shutdown(self) -> VmExit {
        self.kill()
    }

    /// Waits up to `timeout` for the guest to stop by itself; `None` on timeout.
    /// Once one vCPU has stopped the machine, the others are kicked out of `KVM_RUN`
    /// (every 20 ms until they are out); otherwise this sleeps until a vCPU exits.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<VmExit> {
        let deadline = std::time::Instant::now() + timeout;
        let mut c = self.shared.lock();
        loop {
            if c.exited >= self.cpus {
                return Some(c.exit.clone().unwrap_or(VmExit::Killed));
            }
            let stopping = c.stop_requested;
            if stopping {
                drop(c);
                self.kick_all();
                c = self.shared.lock();
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return None;
            }
            let mut step = deadline - now;
            if stopping {
                step = step.min(Duration::from_millis(20));
            }
            c = self
                .shared
                .cv
                .wait_timeout(c, step)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the guest to stop by itself, then joins the VM's threads.
    pub fn wait(&self) -> VmExit {
        while self.wait_timeout(Duration::from_secs(3600)).is_none() {}
        self.finish()
    }

    /// Joins every thread once all vCPUs have exited; idempotent.
    fn finish(&self) -> VmExit {
        let handles = std::mem::take(&mut *lock(&self.vcpus));
        for t in handles {
            let _ = t.join();
        }
        self.loop_exit.trigger();
        if let Some(t) = lock(&self.events).take() {
            let _ = t.join();
        }
        let mut c = self.shared.lock();
        c.state = VmState::Stopped;
        c.exit.clone().unwrap_or(VmExit::Killed)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !lock(&self.vcpus).is_empty() || lock(&self.events).is_some() {
            self.kill();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn vcpu_loop(fd: &mut kvm_ioctls::VcpuFd, bus: &Arc<Bus>, shared: &Shared, id: u8) {
    if id == 0 {
        super::startup::report();
    }
    loop {
        {
            let mut c = shared.lock();
            if c.state == VmState::Paused && !c.stop_requested {
                c.parked += 1;
                shared.cv.notify_all();
                while c.state == VmState::Paused && !c.stop_requested {
                    c = shared.cv.wait(c).unwrap_or_else(|p| p.into_inner());
                }
                c.parked -= 1;
            }
            if c.stop_requested {
                break;
            }
        }
        match vcpu::step(fd, bus) {
            Step::Continue | Step::Interrupted => {}
            Step::Stop(why) => {
                let mut c = shared.lock();
                if c.exit.is_none() {
                    c.exit = Some(match why {
                        VcpuStop::Reboot => VmExit::Reboot,
                        VcpuStop::Shutdown => VmExit::Shutdown,
                        VcpuStop::PowerOff => VmExit::PowerOff,
                        VcpuStop::Error(e) => VmExit::Error(e),
                    });
                }
                c.stop_requested = true;
                break;
            }
        }
    }
    let mut c = shared.lock();
    c.exited += 1;
    shared.cv.notify_all();
}
