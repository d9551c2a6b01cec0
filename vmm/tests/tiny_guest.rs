//! Tiny hand-assembled 64-bit guests on the bare /dev/kvm of this machine
//! (instruction emulation only: each guest runs a few hundred instructions at most).

use std::path::Path;
use std::time::{Duration, Instant};

use vmm::{BootSource, ConsoleInput, ConsoleOutput, Vm, VmConfig, VmExit, VmState};

const LOAD: u64 = 0x10_0000;

fn cfg(code: Vec<u8>, console: &Path) -> VmConfig {
    VmConfig {
        boot: BootSource::RawCode {
            code,
            load_addr: LOAD,
        },
        cpus: 1,
        mem_mib: 16,
        console: ConsoleOutput::File(console.to_path_buf()),
        console_input: ConsoleInput::None,
        disks: Vec::new(),
        rng: true,
        vsock: None,
    }
}

/// `mov dx, 0x3f8`
const MOV_DX_COM1: [u8; 4] = [0x66, 0xba, 0xf8, 0x03];
/// `mov al, 0xfe; out 0x64, al` — i8042 reset.
const RESET: [u8; 4] = [0xb0, 0xfe, 0xe6, 0x64];

fn out_char(c: u8) -> [u8; 3] {
    [0xb0, c, 0xee] // mov al, c; out dx, al
}

#[test]
fn serial_output_and_i8042_reset() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let mut code = MOV_DX_COM1.to_vec();
    for c in b"Hi from guest\n" {
        code.extend(out_char(*c));
    }
    code.extend(RESET);
    let vm = Vm::start(cfg(code, &console)).expect("start");
    let exit = vm
        .wait_timeout(Duration::from_secs(60))
        .expect("guest did not stop");
    assert_eq!(exit, VmExit::Reboot);
    assert_eq!(vm.shutdown(), VmExit::Reboot);
    assert_eq!(
        std::fs::read_to_string(&console).unwrap(),
        "Hi from guest\n"
    );
}

#[test]
fn port_in_and_unclaimed_mmio_reads() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let mut code = MOV_DX_COM1.to_vec();
    // mov rbx, 0xe0000000 (unclaimed) ; mov eax, [rbx] ; add al, '0' ; out dx, al
    code.extend([0x48, 0xbb, 0, 0, 0, 0xe0, 0, 0, 0, 0]);
    code.extend([0x8b, 0x03, 0x04, b'0', 0xee]);
    // mov dword [rbx], 0x1234 (unclaimed MMIO write is ignored)
    code.extend([0xc7, 0x03, 0x34, 0x12, 0, 0]);
    // LSR read: mov dx, 0x3fd ; in al, dx ; and al, 0x60 ; (THR empty bits 5,6 set → 0x60)
    code.extend([0x66, 0xba, 0xfd, 0x03, 0xec, 0x24, 0x60]);
    // shr al, 5 ; add al, '0' ; mov dx, 0x3f8 ; out dx, al   → '3'
    code.extend([0xc0, 0xe8, 0x05, 0x04, b'0']);
    code.extend(MOV_DX_COM1);
    code.push(0xee);
    // in from an unknown port reads 0xff: mov dx, 0x510 ; in al, dx ; and al, 0x0f; add al,'A' → 'P'
    code.extend([0x66, 0xba, 0x10, 0x05, 0xec, 0x24, 0x0f, 0x04, b'A']);
    code.extend(MOV_DX_COM1);
    code.push(0xee);
    code.extend(RESET);
    let vm = Vm::start(cfg(code, &console)).expect("start");
    let exit = vm
        .wait_timeout(Duration::from_secs(60))
        .expect("guest did not stop");
    assert_eq!(exit, VmExit::Reboot);
    drop(vm);
    assert_eq!(std::fs::read_to_string(&console).unwrap(), "03P");
}

#[test]
fn triple_fault_is_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    // ud2 with no IDT → triple fault.
    let vm = Vm::start(cfg(vec![0x0f, 0x0b], &console)).expect("start");
    let exit = vm
        .wait_timeout(Duration::from_secs(60))
        .expect("guest did not stop");
    assert_eq!(exit, VmExit::Shutdown);
}

#[test]
fn pause_resume_and_host_stop() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    // loop: mov al,'.'; out dx,al; jmp loop
    let mut code = MOV_DX_COM1.to_vec();
    code.extend([0xb0, b'.', 0xee, 0xeb, 0xfb]);
    let vm = Vm::start(cfg(code, &console)).expect("start");
    let len = || std::fs::metadata(&console).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while len() < 10 {
        assert!(Instant::now() < deadline, "guest produced no output");
        std::thread::sleep(Duration::from_millis(10));
    }
    vm.pause();
    assert_eq!(vm.state(), VmState::Paused);
    let a = len();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(len(), a, "console grew while paused");
    vm.resume();
    assert_eq!(vm.state(), VmState::Running);
    let deadline = Instant::now() + Duration::from_secs(30);
    while len() <= a {
        assert!(Instant::now() < deadline, "no output after resume");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(vm.wait_timeout(Duration::from_millis(50)).is_none());
    assert_eq!(vm.shutdown(), VmExit::Killed);
}

#[test]
fn bad_configs_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("c");
    let mut c = cfg(vec![0xf4], &console);
    c.cpus = 0;
    assert!(Vm::start(c).is_err());
    let mut c = cfg(vec![0xf4], &console);
    c.mem_mib = 1 << 20;
    assert!(Vm::start(c).is_err());
    let mut c = cfg(vec![0xf4; 64], &console);
    c.boot = BootSource::RawCode {
        code: vec![0; 32 << 20],
        load_addr: LOAD,
    };
    assert!(Vm::start(c).is_err());
}

/// `mov dword [rbx + off], val` (rbx = virtio-mmio base).
fn mmio_w32(off: u32, val: u32) -> Vec<u8> {
    let mut v = vec![0xc7, 0x83];
    v.extend(off.to_le_bytes());
    v.extend(val.to_le_bytes());
    v
}

/// `mov dword [addr], val` (absolute).
fn mem_w32(addr: u32, val: u32) -> Vec<u8> {
    let mut v = vec![0xc7, 0x04, 0x25];
    v.extend(addr.to_le_bytes());
    v.extend(val.to_le_bytes());
    v
}

#[test]
fn virtio_mmio_registers_and_queue_notify() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let (desc, avail, used, buf) = (0x20_0000u32, 0x20_1000u32, 0x20_2000u32, 0x20_3000u32);
    let mut code = MOV_DX_COM1.to_vec();
    // mov rbx, 0xd0000000
    code.extend([0x48, 0xbb, 0, 0, 0, 0xd0, 0, 0, 0, 0]);
    // magic: mov eax,[rbx]; 4x (out dx,al; shr eax,8)  → "virt"
    code.extend([0x8b, 0x03]);
    for _ in 0..4 {
        code.extend([0xee, 0xc1, 0xe8, 0x08]);
    }
    // device id: mov eax,[rbx+8]; add al,'0'; out → '4' (rng)
    code.extend([0x8b, 0x43, 0x08, 0x04, b'0', 0xee]);
    // Driver setup: status ACK|DRIVER|FEATURES_OK, queue 0 size 8, ring addresses, ready.
    code.extend(mmio_w32(0x70, 0xb));
    code.extend(mmio_w32(0x30, 0));
    code.extend(mmio_w32(0x38, 8));
    for (off, a) in [(0x80, desc), (0x90, avail), (0xa0, used)] {
        code.extend(mmio_w32(off, a));
        code.extend(mmio_w32(off + 4, 0));
    }
    code.extend(mmio_w32(0x44, 1));
    code.extend(mmio_w32(0x70, 0xf)); // DRIVER_OK
                                      // Descriptor 0: buf, 16 bytes, WRITE; avail ring: [0], idx 1.
    code.extend(mem_w32(desc, buf));
    code.extend(mem_w32(desc + 4, 0));
    code.extend(mem_w32(desc + 8, 16));
    code.extend(mem_w32(desc + 12, 2));
    code.extend(mem_w32(avail, 1 << 16)); // flags 0, idx 1
    code.extend(mem_w32(avail + 4, 0));
    // Notify queue 0: KVM signals the queue's ioeventfd and the event loop thread
    // processes the queue, so spin until the used index moves:
    // wait: movzx eax, word [used+2]; test eax, eax; jz wait
    code.extend(mmio_w32(0x50, 0));
    code.extend([0x0f, 0xb7, 0x04, 0x25]);
    code.extend((used + 2).to_le_bytes());
    code.extend([0x85, 0xc0, 0x74, 0xf4]);
    // used idx: movzx eax, word [used+2]; add al,'0'; out → '1'
    code.extend([0x0f, 0xb7, 0x04, 0x25]);
    code.extend((used + 2).to_le_bytes());
    code.extend([0x04, b'0', 0xee]);
    // used len: mov eax,[used+8]; add al,'@'; out → 'P' (16 + 64)
    code.extend([0x8b, 0x04, 0x25]);
    code.extend((used + 8).to_le_bytes());
    code.extend([0x04, b'@', 0xee]);
    // interrupt status: mov eax,[rbx+0x60]; add al,'0'; out → '1'
    code.extend([0x8b, 0x43, 0x60, 0x04, b'0', 0xee]);
    code.extend(RESET);
    let vm = Vm::start(cfg(code, &console)).expect("start");
    let exit = vm
        .wait_timeout(Duration::from_secs(60))
        .expect("guest did not stop");
    assert_eq!(exit, VmExit::Reboot);
    drop(vm);
    assert_eq!(std::fs::read_to_string(&console).unwrap(), "virt41P1");
}

#[test]
fn one_vcpu_stopping_stops_the_whole_machine() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    // With the in-kernel LAPIC, vCPUs 1..3 wait for a SIPI inside KVM_RUN that never
    // comes; when vCPU 0 resets the machine they must be kicked out.
    let mut code = MOV_DX_COM1.to_vec();
    code.extend(out_char(b'x'));
    code.extend(RESET);
    let mut c = cfg(code, &console);
    c.cpus = 4;
    let vm = Vm::start(c).expect("start");
    let exit = vm
        .wait_timeout(Duration::from_secs(60))
        .expect("VM did not stop");
    assert_eq!(exit, VmExit::Reboot);
}

#[test]
fn control_socket_pause_resume_stop_and_list() {
    use std::sync::Arc;
    use vmm::control;
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let mut code = MOV_DX_COM1.to_vec();
    code.extend([0xb0, b'.', 0xee, 0xeb, 0xfb]);
    let vm = Arc::new(Vm::start(cfg(code, &console)).unwrap());
    let sock = control::socket_path(dir.path(), "t1");
    let listener = control::bind(&sock).unwrap();
    let v2 = vm.clone();
    // SAFETY: no preconditions.
    let me = unsafe { libc::geteuid() };
    std::thread::spawn(move || control::serve(listener, v2, "t1".into(), me));

    assert_eq!(
        control::request(&sock, "status").unwrap()["state"],
        "running"
    );
    assert_eq!(control::request(&sock, "pause").unwrap()["state"], "paused");
    assert_eq!(vm.state(), VmState::Paused);
    assert_eq!(
        control::request(&sock, "resume").unwrap()["state"],
        "running"
    );
    assert!(control::request(&sock, "bogus").is_err());
    assert!(control::request(&sock, "stop soon").is_err());
    // `list` through the CLI entry point sees the VM.
    vmm::cli::run(vmm::cli::VmCommand::List { json: true }, dir.path()).unwrap();
    // This guest ignores the power button: a graceful stop ends in a kill after
    // the grace period.
    let t = Instant::now();
    let r = control::request(&sock, "stop 300").unwrap();
    assert_eq!(r["state"], "stopped");
    assert_eq!(r["exit"], "Killed");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(vm.state(), VmState::Stopped);
    assert!(control::request(&dir.path().join("none.sock"), "status").is_err());
}

/// `mov rbx, GED event register`, then spin until an event bit is set; print it
/// as a digit and power off through the ACPI sleep control register.
fn power_button_guest() -> Vec<u8> {
    let mut code = vec![0x48, 0xbb];
    code.extend(0xcfff_f000u64.to_le_bytes());
    // wait: mov eax,[rbx]; test eax,eax; jz wait
    code.extend([0x8b, 0x03, 0x85, 0xc0, 0x74, 0xfa]);
    // add al,'0'; mov dx,0x3f8; out dx,al
    code.extend([0x04, b'0']);
    code.extend(MOV_DX_COM1);
    code.push(0xee);
    // mov al, SLP_EN; mov dx, 0x3c0; out dx, al
    code.extend([0xb0, 0x20, 0x66, 0xba, 0xc0, 0x03, 0xee]);
    code
}

#[test]
fn graceful_stop_presses_the_power_button_and_the_guest_powers_off() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let vm = Vm::start(cfg(power_button_guest(), &console)).expect("start");
    assert!(
        vm.wait_timeout(Duration::from_millis(200)).is_none(),
        "the guest must wait for the button"
    );
    assert_eq!(vm.stop(Duration::from_secs(60)), VmExit::PowerOff);
    assert_eq!(vm.state(), VmState::Stopped);
    assert_eq!(std::fs::read_to_string(&console).unwrap(), "1");
}

#[test]
fn serial_input_from_the_console_socket_reaches_the_guest() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let sock = dir.path().join("console.sock");
    // Three times: wait for LSR data-ready, read RBR, echo it + 1. Then reset.
    let mut code = vec![0xb9, 3, 0, 0, 0]; // mov ecx, 3
    code.extend([0x66, 0xba, 0xfd, 0x03]); // next: mov dx, 0x3fd
    code.extend([0xec, 0xa8, 0x01, 0x74, 0xfb]); // wait: in al,dx; test al,1; jz wait
    code.extend(MOV_DX_COM1);
    code.extend([0xec, 0xfe, 0xc0, 0xee]); // in al,dx; inc al; out dx,al
    code.extend([0xff, 0xc9, 0x75, 0xeb]); // dec ecx; jnz next
    code.extend(RESET);
    let mut c = cfg(code, &console);
    c.console_input = ConsoleInput::Socket(sock.clone());
    let vm = Vm::start(c).expect("start");
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"abc").unwrap();
    let mut echo = [0u8; 3];
    if let Err(e) = s.read_exact(&mut echo) {
        panic!(
            "no echo on the console socket ({e}); console file: {:?}, exit: {:?}",
            std::fs::read_to_string(&console),
            vm.wait_timeout(Duration::ZERO)
        );
    }
    assert_eq!(&echo, b"bcd", "console output goes to the attached client");
    assert_eq!(
        vm.wait_timeout(Duration::from_secs(30)),
        Some(VmExit::Reboot)
    );
    drop(vm);
    assert_eq!(std::fs::read_to_string(&console).unwrap(), "bcd");
}

#[test]
fn vmm_threads_run_under_seccomp() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console.log");
    let mut code = MOV_DX_COM1.to_vec();
    code.extend([0xb0, b'.', 0xee, 0xeb, 0xfb]);
    let mut c = cfg(code, &console);
    c.cpus = 2;
    let vm = Vm::start(c).expect("start");
    std::thread::sleep(Duration::from_millis(100));
    let mut confined = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if comm.starts_with("vcpu") || comm == "vmm-events" {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap();
            assert!(
                status.lines().any(|l| l == "Seccomp:\t2"),
                "thread {comm} is not under a seccomp filter"
            );
            confined.push(comm);
        }
    }
    // Other tests' VMs run in this process too; ours must be among the confined.
    for t in ["vcpu0", "vcpu1", "vmm-events"] {
        assert!(confined.iter().any(|c| c == t), "{t} missing: {confined:?}");
    }
    assert_eq!(vm.kill(), VmExit::Killed);
}
