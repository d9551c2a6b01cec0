//! Boots Linux under our VMM inside a nested test host (QEMU TCG level 1, emulated
//! SVM), since this machine's own /dev/kvm cannot run Linux in useful time.
//! Level 2 must reach userspace, see 2 CPUs, mount ext4 over virtio-blk, see the
//! virtio-rng device, talk vsock both ways (it dials the host; the host inside
//! level 1 does `CONNECT` and gets its reply) and power off when level 1 presses
//! its ACPI power button through `byteport-vmm stop`. Markers come back over the
//! serial console.

use testvm::nested;

use std::time::Duration;

const L2_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo L2-USERSPACE-UP
for m in virtio_ring virtio virtio_mmio virtio_blk vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport virtio-rng evdev button; do
  insmod /lib/modules/$m.ko || echo L2-INSMOD-FAIL-$m
done
echo L2-CPUS=$(grep -c ^processor /proc/cpuinfo)
# No CMOS RTC: the wall clock must come from kvm-clock.
echo L2-YEAR=$(date +%Y)
sleep 1
mount -t ext4 /dev/vda /mnt && echo L2-DISK=$(cat /mnt/hello.txt)
echo L2-RNG=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null || cat /sys/devices/virtual/misc/hw_random/rng_current)
ev=
for d in /sys/class/input/event*; do
  grep -q "Power Button" $d/device/name 2>/dev/null && ev=/dev/input/${d##*/}
done
echo L2-POWER-BUTTON-DEVICE=$ev
# Hold the button's event device open before anyone can press it.
( exec 3<"$ev"; touch /run/armed; dd bs=24 count=1 <&3 >/dev/null 2>&1 && echo L2-POWER-BUTTON-PRESSED; echo L2-POWEROFF; poweroff -f ) &
while [ ! -e /run/armed ]; do sleep 0.1; done
echo L2-DIAL=$(byteport-vsock-probe dial 7000 hello-from-l2)
byteport-vsock-probe serve 1234
"#;

const L1_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in irqbypass kvm kvm-amd; do insmod /lib/modules/$m.ko || echo L1-INSMOD-FAIL-$m; done
[ -e /dev/kvm ] && echo L1-KVM-READY
/byteport-vsock-probe serve-uds /run/l2.vsock_7000 &
/byteport-vmm --runtime-dir /run/vmm run --name l2 --kernel /l2/vmlinuz --initrd /l2/initrd.gz \
  --disk /l2/disk.ext4 --cpus 2 --mem 256 --vsock /run/l2.vsock \
  --cmdline "console=ttyS0 reboot=k panic=-1 quiet" &
vmm=$!
echo L1-VSOCK-REPLY=$(/byteport-vsock-probe call /run/l2.vsock 1234 hello-from-l1 180)
echo L1-STOP=$(/byteport-vmm --runtime-dir /run/vmm stop l2 --grace 120)
wait $vmm
echo L1-VMM-EXIT=$?
poweroff -f
"#;

#[test]
fn linux_boots_under_byteport_vmm_in_nested_host() {
    let l1 = nested::Level1::new(L1_INIT);
    l1.add_l2_initrd(L2_INIT, nested::L2_MODULES);
    let diskdir = l1.scratch("diskdir");
    std::fs::write(diskdir.join("hello.txt"), "ext4-over-virtio-blk\n").unwrap();
    nested::ext4(&diskdir, &l1.root.join("l2/disk.ext4"), 16);

    let c = l1.boot(1024, 2, Duration::from_secs(300), "L1-VMM-EXIT");
    let all = c.text();
    assert!(
        !c.panicked,
        "the level-1 kernel (under QEMU TCG's emulated SVM) panicked; see its trace:\n{all}"
    );
    assert!(c.has("L1-KVM-READY"), "level 1 has no /dev/kvm:\n{all}");
    assert!(
        c.has("L2-USERSPACE-UP"),
        "level 2 never reached userspace:\n{all}"
    );
    assert!(!c.has("INSMOD-FAIL"), "module load failed:\n{all}");
    assert!(c.has("L2-CPUS=2"), "level 2 does not see 2 CPUs:\n{all}");
    assert!(
        c.value("L2-YEAR=")
            .and_then(|y| y.parse::<u32>().ok())
            .is_some_and(|y| y >= 2025),
        "level 2 has no wall clock:\n{all}"
    );
    assert!(
        c.has("L2-DISK=ext4-over-virtio-blk"),
        "ext4 over virtio-blk failed:\n{all}"
    );
    assert!(c.has("L2-RNG=virtio_rng"), "virtio-rng not found:\n{all}");
    assert!(
        c.value("L2-POWER-BUTTON-DEVICE=")
            .is_some_and(|d| d.starts_with("/dev/input/event")),
        "no ACPI power button in level 2:\n{all}"
    );
    assert_eq!(
        c.value("L2-DIAL="),
        Some("pong:hello-from-l2"),
        "guest → host vsock failed:\n{all}"
    );
    assert_eq!(
        c.value("L1-VSOCK-REPLY="),
        Some("pong:hello-from-l1"),
        "host → guest vsock (CONNECT) failed:\n{all}"
    );
    assert!(
        c.has("L2-POWER-BUTTON-PRESSED"),
        "the guest never saw the power button:\n{all}"
    );
    assert!(
        c.value("L1-STOP=").is_some_and(|s| s.contains("PowerOff")),
        "graceful stop did not end in a guest power-off:\n{all}"
    );
    assert!(
        c.has("L1-VMM-EXIT=0"),
        "VMM did not exit cleanly after poweroff:\n{all}"
    );
}
