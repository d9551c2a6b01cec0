//! Boot benchmark: BytePort's VMM (`byteport-vmm`) vs QEMU `-M microvm -accel kvm
//! -cpu host`, side by side, same kernel, initramfs and command line.
//!
//! 1. Nested host (level 1 = QEMU TCG with emulated SVM, see `testvm::nested`):
//!    alternating runs of both VMMs in the same level-1 guest. Per run: time from
//!    exec to the level-2 userspace marker, and the VMM's memory overhead = Rss of
//!    every mapping in `/proc/PID/smaps` except the guest RAM mapping, sampled at
//!    that marker. Medians and ratios. Level 1 runs under TCG: absolute times are
//!    inflated, the ratio is what compares.
//! 2. Bare host /dev/kvm (no hardware virtualization here: the guest crawls, but the
//!    host-side setup up to the first `KVM_RUN` does not depend on guest speed):
//!    `byteport-vmm` with the real Debian cloud kernel and an initramfs carrying
//!    its modules. Per run: process CPU time from exec to the first `KVM_RUN`
//!    (reported by the VMM itself), and the same Rss overhead shortly after.
//!
//! QEMU runs twice per round: as configured by default (`microvm`, with its CMOS
//! RTC, which the Debian kernel probes slowly), and `microvm,rtc=off`, the
//! closest match to our machine (whose ACPI tables say "no CMOS RTC").
//!
//! Goals (Firecracker's published figures, then beaten): boot ≤ 0.8× QEMU microvm,
//! overhead ≤ 5 MiB, ≤ 8 ms CPU to the first `KVM_RUN`.

use testvm::nested;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const RUNS: usize = 5;
const GUEST_MIB: u64 = 256;

/// Level 2: report, then give level 1 time to sample smaps before powering off.
const L2_INIT: &str =
    "#!/bin/sh\necho L2-USERSPACE-UP\n/bin/busybox sleep 3\n/bin/busybox poweroff -f\n";

const L1_INIT: &str = r#"#!/bin/sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp /run
for m in irqbypass kvm kvm-amd; do insmod /lib/modules/$m.ko; done
CMD="console=ttyS0 reboot=k panic=-1 quiet"
# Rss (kB) outside / inside guest RAM: the host range the VMM reports ($2, ours),
# else the one mapping of exactly GUEST_KB (QEMU's RAM block).
rss() { awk -v g=GUEST_KB -v range="$2" '
  function pad(x) { return substr("0000000000000000", 1, 16 - length(x)) x }
  BEGIN { split(range, r, "-"); lo = pad(r[1]); hi = pad(r[2]) }
  /^[0-9a-f]+-[0-9a-f]+ / { split($1, a, "-"); inr = (range != "" && pad(a[1]) >= lo && pad(a[2]) <= hi) }
  /^Size:/ { s = $2 }
  /^Rss:/ { if (inr || (range == "" && s == g)) guest += $2; else other += $2 }
  END { print other + 0, guest + 0 }' /proc/$1/smaps; }
measure() {
  name=$1; run=$2; shift 2
  rm -f /tmp/con /tmp/err
  s=$(cut -d' ' -f1 /proc/uptime)
  "$@" > /tmp/con 2>/tmp/err &
  pid=$!
  while ! grep -q L2-USERSPACE-UP /tmp/con 2>/dev/null; do
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
  done
  e=$(cut -d' ' -f1 /proc/uptime)
  r=$(rss $pid "$(sed -n 's/.*guest RAM \([0-9a-f-]*\).*/\1/p' /tmp/err)")
  wait $pid
  if grep -q L2-USERSPACE-UP /tmp/con; then
    echo "BENCH $name run=$run start=$s up=$e rss=${r% *} guest=${r#* }"
  else
    tail -5 /tmp/con /tmp/err | sed "s/^/BENCH-NOTE $name failed: /"
  fi
  grep "first KVM_RUN" /tmp/err | sed "s/^/BENCH-NOTE $name run $run: /"
  grep "guest RAM" /tmp/err >/dev/null || [ $name != byteport ] || echo "BENCH-NOTE $name run $run: no guest RAM range reported"
}
for i in $(seq RUNS); do
  BYTEPORT_VMM_REPORT_STARTUP=1 measure byteport $i /byteport-vmm --runtime-dir /run/v run --kernel /l2/vmlinuz --initrd /l2/initrd.gz --cpus 2 --mem GUEST_MIB --cmdline "$CMD"
  measure qemu $i /qemu/qemu-system-x86_64 -L /qemu/share -M microvm -accel kvm -cpu host -smp 2 -m GUEST_MIB -nodefaults -no-user-config -nographic -serial stdio -kernel /l2/vmlinuz -initrd /l2/initrd.gz -append "$CMD"
  measure qemu-nortc $i /qemu/qemu-system-x86_64 -L /qemu/share -M microvm,rtc=off -accel kvm -cpu host -smp 2 -m GUEST_MIB -nodefaults -no-user-config -nographic -serial stdio -kernel /l2/vmlinuz -initrd /l2/initrd.gz -append "$CMD"
done
echo BENCH-DONE
poweroff -f
"#;

/// Copies QEMU, its shared libraries and firmware into the level-1 root.
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

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One nested run: (vmm, boot seconds, overhead KiB, guest RAM Rss KiB).
type Run = (String, f64, f64, f64);

fn nested_runs() -> (Vec<Run>, Vec<String>) {
    let init = L1_INIT
        .replace("GUEST_KB", &(GUEST_MIB * 1024).to_string())
        .replace("GUEST_MIB", &GUEST_MIB.to_string())
        .replace("seq RUNS", &format!("seq {RUNS}"));
    let l1 = nested::Level1::new(&init);
    l1.add_l2_initrd(L2_INIT, nested::L2_MODULES);
    copy_qemu(&l1.root);
    let c = l1.boot(1024, 2, Duration::from_secs(900), "BENCH-DONE");
    if c.panicked {
        println!("!! the level-1 kernel panicked (QEMU TCG's emulated SVM); only the runs before it count");
    }
    let mut runs = Vec::new();
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
            runs.push((name, f("up") - f("start"), f("rss"), f("guest")));
        } else if let Some(n) = line.strip_prefix("BENCH-NOTE ") {
            notes.push(n.to_string());
        }
    }
    (runs, notes)
}

/// Rss (KiB) of `pid` outside and inside the host range `ram` (guest RAM, as the
/// VMM reports it).
fn smaps_rss(pid: u32, ram: (u64, u64)) -> (u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut in_ram, mut other, mut guest) = (false, 0u64, 0u64);
    for l in smaps.lines() {
        if let Some((a, b)) = l
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                ))
            })
        {
            in_ram = a >= ram.0 && b <= ram.1;
        } else if let Some(v) = l.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            if in_ram {
                guest += kib;
            } else {
                other += kib;
            }
        }
    }
    (other, guest)
}

/// One bare-host run: (CPU ms to first KVM_RUN, overhead KiB, guest Rss KiB).
fn host_run(vmm: &Path, kernel: &Path, initrd: &Path, dir: &Path) -> Option<(f64, u64, u64)> {
    let mut child = Command::new(vmm)
        .arg("--runtime-dir")
        .arg(dir)
        .args(["run", "--name", "bench", "--cpus", "2"])
        .args(["--mem", &GUEST_MIB.to_string()])
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .arg("--console")
        .arg(dir.join("console.log"))
        .env("BYTEPORT_VMM_REPORT_STARTUP", "1")
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("byteport-vmm");
    let err = child.stderr.take().unwrap();
    let (mut cpu, mut ram) = (None, None);
    for line in BufReader::new(err).lines().map_while(Result::ok) {
        if let Some(ms) = line
            .split("first KVM_RUN after ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            cpu = Some(ms);
            println!("  {}", line.trim_start_matches("byteport-vmm: "));
        } else if let Some(r) = line.split("guest RAM ").nth(1) {
            ram = r.split_once('-').and_then(|(a, b)| {
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b.split_whitespace().next()?, 16).ok()?,
                ))
            });
            break;
        } else {
            eprintln!("byteport-vmm: {line}");
        }
    }
    // Let the (slowly emulated) guest run a little, as it would while booting.
    std::thread::sleep(Duration::from_millis(500));
    let rss = ram.map(|r| smaps_rss(child.id(), r));
    let _ = child.kill();
    let _ = child.wait();
    let (other, guest) = rss?;
    Some((cpu?, other, guest))
}

fn main() {
    // Bare host first (quick), then the nested comparison.
    let bins = testvm::build::static_release_bins("vmm", &["byteport-vmm"])
        .unwrap_or_else(|e| panic!("{e}"));
    let kernel = testvm::kernel::debian_cloud();
    let work = tempfile::tempdir().unwrap();
    let l2root = work.path().join("l2root");
    nested::busybox_root(&l2root, L2_INIT, &kernel.modules(), nested::L2_MODULES);
    let initrd = work.path().join("initrd.gz");
    nested::cpio(&l2root, &initrd);
    let initrd_kib = std::fs::metadata(&initrd)
        .map(|m| m.len() / 1024)
        .unwrap_or(0);
    let mut host = Vec::new();
    println!("bare-host start-up breakdowns (process CPU ms per phase):");
    for i in 0..RUNS {
        let dir = work.path().join(format!("host{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        match host_run(&bins.join("byteport-vmm"), &kernel.image, &initrd, &dir) {
            Some(r) => host.push(r),
            None => println!("bare-host run {i} failed (no first-KVM_RUN report)"),
        }
    }

    let (runs, notes) = nested_runs();

    println!();
    println!("== nested host (level 1 = QEMU TCG -cpu max; L2: 2 vCPUs, {GUEST_MIB} MiB, same kernel + initramfs) ==");
    println!(
        "{:<10} {:>4} {:>20} {:>22} {:>16}",
        "vmm", "run", "exec→userspace (s)", "overhead Rss (KiB)", "guest Rss (KiB)"
    );
    for (i, (n, t, o, g)) in runs.iter().enumerate() {
        println!("{n:<10} {:>4} {t:>20.2} {o:>22.0} {g:>16.0}", i / 3 + 1);
    }
    for n in &notes {
        println!("  {n}");
    }
    let side = |name: &str, f: &dyn Fn(&Run) -> f64| {
        median(runs.iter().filter(|r| r.0 == name).map(f).collect())
    };
    let (bt, qt, nt) = (
        side("byteport", &|r| r.1),
        side("qemu", &|r| r.1),
        side("qemu-nortc", &|r| r.1),
    );
    let (bo, qo, no) = (
        side("byteport", &|r| r.2),
        side("qemu", &|r| r.2),
        side("qemu-nortc", &|r| r.2),
    );
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>11} {:>10} {:>12}",
        "median", "byteport", "qemu", "qemu-nortc", "ratio/qemu", "ratio/nortc"
    );
    println!(
        "{:<34} {bt:>10.2} {qt:>10.2} {nt:>11.2} {:>10.2} {:>12.2}   (goal ≤ 0.80)",
        "exec→userspace (s, TCG-inflated)",
        bt / qt,
        bt / nt
    );
    println!(
        "{:<34} {bo:>10.0} {qo:>10.0} {no:>11.0} {:>10.2} {:>12.2}   (goal ≤ 5120 KiB)",
        "overhead Rss without guest RAM",
        bo / qo,
        bo / no
    );

    println!();
    println!(
        "== bare host /dev/kvm (no VT-x/AMD-V: guest runs emulated), Debian cloud kernel + {initrd_kib} KiB initramfs =="
    );
    println!(
        "{:>4} {:>26} {:>22} {:>16}",
        "run", "CPU exec→1st KVM_RUN (ms)", "overhead Rss (KiB)", "guest Rss (KiB)"
    );
    for (i, (c, o, g)) in host.iter().enumerate() {
        println!("{:>4} {c:>26.2} {o:>22} {g:>16}", i + 1);
    }
    let hc = median(host.iter().map(|r| r.0).collect());
    let ho = median(host.iter().map(|r| r.1 as f64).collect());
    println!("median CPU to first KVM_RUN: {hc:.2} ms (goal ≤ 8 ms)");
    println!(
        "median overhead Rss: {ho:.0} KiB = {:.2} MiB (goal ≤ 5 MiB)",
        ho / 1024.0
    );

    assert!(
        runs.iter().any(|r| r.0 == "byteport") && runs.iter().any(|r| r.0 == "qemu"),
        "benchmark rows missing for one side"
    );
    assert!(!host.is_empty(), "no bare-host run completed");
}
