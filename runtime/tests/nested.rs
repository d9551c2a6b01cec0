//! Boots Linux under our VMM inside a nested test host (QEMU TCG level 1, emulated
//! SVM), since this machine's own /dev/kvm cannot run Linux in useful time.
//! Level 2 must reach userspace, see 2 CPUs, mount ext4 over virtio-blk, see the
//! virtio-rng device and power off; markers come back over the serial console.

mod nested_host;
use nested_host as nested;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const L2_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo L2-USERSPACE-UP
for m in virtio_ring virtio virtio_mmio virtio_blk vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport virtio-rng; do
  insmod /lib/modules/$m.ko || echo L2-INSMOD-FAIL-$m
done
echo L2-CPUS=$(grep -c ^processor /proc/cpuinfo)
sleep 1
mount -t ext4 /dev/vda /mnt && echo L2-DISK=$(cat /mnt/hello.txt)
echo L2-RNG=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null || cat /sys/devices/virtual/misc/hw_random/rng_current)
echo L2-POWEROFF
poweroff -f
"#;

const L1_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in irqbypass kvm kvm-amd; do insmod /lib/modules/$m.ko || echo L1-INSMOD-FAIL-$m; done
[ -e /dev/kvm ] && echo L1-KVM-READY
/byteport-vmm --runtime-dir /run/vmm run --name l2 --kernel /l2/vmlinuz --initrd /l2/initrd.gz \
  --disk /l2/disk.ext4 --cpus 2 --mem 256 --cmdline "console=ttyS0 reboot=k panic=-1 quiet"
echo L1-VMM-EXIT=$?
poweroff -f
"#;

#[test]
fn linux_boots_under_byteport_vmm_in_nested_host() {
    nested::require_tools();
    let (kernel, modules) = nested::kernel();
    let vmm = nested::static_vmm();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // Level 2: initramfs + ext4 disk.
    let l2root = w.join("l2root");
    nested::busybox_root(&l2root, L2_INIT, &modules, nested::L2_MODULES);
    let diskdir = w.join("diskdir");
    std::fs::create_dir_all(&diskdir).unwrap();
    std::fs::write(diskdir.join("hello.txt"), "ext4-over-virtio-blk\n").unwrap();

    // Level 1: initramfs holding the VMM and the level-2 payload.
    let l1root = w.join("l1root");
    nested::busybox_root(&l1root, L1_INIT, &modules, nested::L1_MODULES);
    let l2 = l1root.join("l2");
    std::fs::create_dir_all(&l2).unwrap();
    nested::cpio(&l2root, &l2.join("initrd.gz"));
    nested::ext4(&diskdir, &l2.join("disk.ext4"), 16);
    std::fs::copy(&kernel, l2.join("vmlinuz")).unwrap();
    std::fs::copy(&vmm, l1root.join("byteport-vmm")).unwrap();
    let l1initrd = w.join("l1.gz");
    nested::cpio(&l1root, &l1initrd);

    let start = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-M", "microvm", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&l1initrd)
        // Under load, TCG timing defeats the kernel's PIT-based TSC calibration and the
        // boot stalls; give it the figures instead.
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1 tsc_early_khz=2000000 lpj=4000000",
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("qemu-system-x86_64: {e}; run: {}", nested::APT));
    let out = qemu.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = start + Duration::from_secs(240);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => {
                let l = l.trim_end_matches('\r').to_string();
                eprintln!("[{:6.1}s] {l}", start.elapsed().as_secs_f64());
                let done = l.starts_with("L1-VMM-EXIT");
                log.push(l);
                if done {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let has = |m: &str| log.iter().any(|l| l.contains(m));
    let all = log.join("\n");
    assert!(has("L1-KVM-READY"), "level 1 has no /dev/kvm:\n{all}");
    assert!(
        has("L2-USERSPACE-UP"),
        "level 2 never reached userspace:\n{all}"
    );
    assert!(!has("L2-INSMOD-FAIL"), "module load failed:\n{all}");
    assert!(has("L2-CPUS=2"), "level 2 does not see 2 CPUs:\n{all}");
    assert!(
        has("L2-DISK=ext4-over-virtio-blk"),
        "ext4 over virtio-blk failed:\n{all}"
    );
    assert!(has("L2-RNG=virtio_rng"), "virtio-rng not found:\n{all}");
    assert!(
        has("L1-VMM-EXIT=0"),
        "VMM did not exit cleanly after poweroff:\n{all}"
    );
}
