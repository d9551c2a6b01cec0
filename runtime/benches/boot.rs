//! Boot benchmark on the nested test host: BytePort's VMM vs QEMU
//! `-M microvm -accel kvm -cpu host`, side by side in the same level-1 guest.
//! Prints time from exec to the level-2 userspace marker, peak RSS of the VMM
//! process, and (for ours) process CPU time until the first KVM_RUN.
//! Figures are level-1 (TCG) time: compare the ratio, not the absolute values.

#[path = "../tests/nested_host/mod.rs"]
mod nested;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const L2_INIT: &str = "#!/bin/sh\necho L2-USERSPACE-UP\n/bin/busybox poweroff -f\n";

const L1_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
for m in irqbypass kvm kvm-amd; do insmod /lib/modules/$m.ko; done
CMD="console=ttyS0 reboot=k panic=-1 quiet"
measure() {
  name=$1; shift
  rm -f /tmp/con
  s=$(cut -d' ' -f1 /proc/uptime)
  "$@" > /tmp/con 2>/tmp/err &
  pid=$!
  hwm=0
  while ! grep -q L2-USERSPACE-UP /tmp/con 2>/dev/null; do
    h=$(grep VmHWM /proc/$pid/status 2>/dev/null | tr -s ' ' | cut -d' ' -f2)
    [ -n "$h" ] && hwm=$h
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
  done
  e=$(cut -d' ' -f1 /proc/uptime)
  h=$(grep VmHWM /proc/$pid/status 2>/dev/null | tr -s ' ' | cut -d' ' -f2)
  [ -n "$h" ] && hwm=$h
  wait $pid
  if grep -q L2-USERSPACE-UP /tmp/con; then
    echo "BENCH $name start=$s up=$e hwm_kb=$hwm"
  else
    tail -5 /tmp/con /tmp/err | sed "s/^/BENCH-NOTE $name failed: /"
  fi
  grep "first KVM_RUN" /tmp/err | sed "s/^/BENCH-NOTE $name /"
}
for i in 1 2; do
  BYTEPORT_VMM_REPORT_STARTUP=1 measure byteport /byteport-vmm --runtime-dir /run/v run --kernel /l2/vmlinuz --initrd /l2/initrd.gz --cpus 2 --mem 256 --cmdline "$CMD"
  measure qemu /qemu/qemu-system-x86_64 -L /qemu/share -M microvm -accel kvm -cpu host -smp 2 -m 256 -nodefaults -no-user-config -nographic -serial stdio -kernel /l2/vmlinuz -initrd /l2/initrd.gz -append "$CMD"
done
echo BENCH-DONE
poweroff -f
"#;

fn copy_qemu(root: &Path) {
    let q = root.join("qemu");
    std::fs::create_dir_all(q.join("share")).unwrap();
    std::fs::copy("/usr/bin/qemu-system-x86_64", q.join("qemu-system-x86_64")).unwrap();
    let ldd = Command::new("ldd")
        .arg("/usr/bin/qemu-system-x86_64")
        .output()
        .expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_string);
        if let Some(p) = path {
            let dst = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(&p, &dst).unwrap_or_else(|e| panic!("copy {p}: {e}"));
        }
    }
    for f in [
        "bios-microvm.bin",
        "linuxboot_dma.bin",
        "kvmvapic.bin",
        "pvh.bin",
    ] {
        std::fs::copy(
            Path::new("/usr/share/qemu").join(f),
            q.join("share").join(f),
        )
        .unwrap();
    }
}

fn main() {
    let l1 = nested::Level1::new(L1_INIT);
    l1.add_l2_initrd(L2_INIT, &[]);
    copy_qemu(&l1.root);
    let c = l1.boot(1024, 1, Duration::from_secs(400), "BENCH-DONE");
    let mut rows: Vec<(String, f64, u64)> = Vec::new();
    let mut notes = Vec::new();
    for (_, line) in &c.lines {
        if let Some(rest) = line.strip_prefix("BENCH ") {
            let mut it = rest.split_whitespace();
            let name = it.next().unwrap_or("?").to_string();
            let kv: std::collections::HashMap<_, _> =
                it.filter_map(|p| p.split_once('=')).collect();
            let f = |k: &str| {
                kv.get(k)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            rows.push((name, f("up") - f("start"), f("hwm_kb") as u64));
        } else if let Some(n) = line.strip_prefix("BENCH-NOTE ") {
            notes.push(n.to_string());
        }
    }
    println!(
        "{:<10} {:>22} {:>14}",
        "vmm", "exec→userspace (s)", "peak RSS (KiB)"
    );
    for (n, t, r) in &rows {
        println!("{n:<10} {t:>22.2} {r:>14}");
    }
    for n in &notes {
        println!("{n}");
    }
    let avg = |name: &str, f: &dyn Fn(&(String, f64, u64)) -> f64| {
        let v: Vec<f64> = rows.iter().filter(|r| r.0 == name).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let (bt, qt) = (avg("byteport", &|r| r.1), avg("qemu", &|r| r.1));
    let (br, qr) = (
        avg("byteport", &|r| r.2 as f64),
        avg("qemu", &|r| r.2 as f64),
    );
    println!("ratio boot time byteport/qemu = {:.2}", bt / qt);
    println!("ratio peak RSS  byteport/qemu = {:.2}", br / qr);
    assert!(
        rows.iter().any(|r| r.0 == "byteport") && rows.iter().any(|r| r.0 == "qemu"),
        "benchmark rows missing for one side"
    );
}
