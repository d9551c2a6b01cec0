//! Tiny hand-assembled 64-bit guests on the bare /dev/kvm of this machine
//! (instruction emulation only: each guest runs a few hundred instructions at most).

use std::path::Path;
use std::time::{Duration, Instant};

use runtime::vmm::{BootSource, ConsoleOutput, Vm, VmConfig, VmExit, VmState};

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
    // mov rbx, 0xd0000000 ; mov eax, [rbx] ; add al, '0' ; out dx, al
    code.extend([0x48, 0xbb, 0, 0, 0, 0xd0, 0, 0, 0, 0]);
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
