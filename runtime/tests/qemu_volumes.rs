//! Volumes on real app VMs (QEMU TCG, the Debian cloud kernel, BytePort's
//! guest init): what the app writes to its volume is there for the next VM;
//! a bigger size grows the filesystem; a volume is attached to one VM at a
//! time; a volume that cannot be mounted fails the boot with the reason.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use runtime::boot::BootError;
use runtime::volume::{Volume, VolumeError};

fn volume(dir: &Path, mib: u64, mount: &str) -> Volume {
    Volume {
        name: "data".into(),
        image: dir.join("volumes/app/data.ext4"),
        mount: mount.into(),
        size_bytes: mib << 20,
    }
}

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const WAIT: Duration = Duration::from_secs(120);

#[test]
fn data_written_to_a_volume_is_there_for_the_next_vm_and_the_volume_grows() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));

    // VM 1 writes as the app's user (uid 1000) into its freshly made volume.
    let mut spec = common::spec(
        &g,
        "keeper",
        &rootfs,
        &[(
            "app",
            "echo \"written by vm 1 as uid $(id -u)\" > /data/note && sync && \
             ls -ln /data/note && echo WROTE; exec sleep 100000",
        )],
        None,
        None,
    );
    spec.volumes = vec![volume(work.path(), 64, "/data")];
    let logs = common::Logs::default();
    let mut vm1 = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    assert!(
        logs.wait_for("app", "WROTE", WAIT),
        "vm 1 did not write:\n{}\n{}",
        logs.dump(),
        vm1.vm.console_tail()
    );
    let init = logs.of("init");
    assert!(
        init.iter()
            .any(|l| l.starts_with("volume data created (64 MiB")),
        "{init:?}"
    );
    assert!(
        init.iter()
            .any(|l| l.contains("volume data mounted at /data") && l.contains("owner uid 1000")),
        "{init:?}"
    );
    vm1.vm.stop(Duration::from_secs(20));
    drop(vm1);

    // On the host: the file is in the image, the app's.
    let image = &spec.volumes[0].image;
    assert_eq!(debugfs(image, "cat /note"), "written by vm 1 as uid 1000\n");
    assert!(
        debugfs(image, "stat /note").contains("User:  1000"),
        "the app's file"
    );
    assert_eq!(std::fs::metadata(image).unwrap().uid(), 0, "back to root");

    // VM 2, a new VM of the same app with the volume asked bigger: grown,
    // and the note is there.
    spec.volumes[0].size_bytes = 128 << 20;
    spec.processes = vec![(
        "app".into(),
        "cat /data/note; df -k /data | tail -1; echo READ; exec sleep 100000".into(),
    )];
    let logs = common::Logs::default();
    let vm2 = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    assert!(
        logs.wait_for("app", "READ", WAIT),
        "vm 2 did not read:\n{}\n{}",
        logs.dump(),
        vm2.vm.console_tail()
    );
    let out = logs.of("app");
    assert!(
        out.iter().any(|l| l == "written by vm 1 as uid 1000"),
        "{out:?}"
    );
    let total_kib: u64 = out
        .iter()
        .find(|l| l.ends_with("/data"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no df line: {out:?}"));
    println!("grown volume: df says {total_kib} KiB");
    assert!(total_kib > 100 << 10, "not grown: {total_kib} KiB");
    assert!(
        logs.of("init")
            .iter()
            .any(|l| l.starts_with("volume data grown from 64 MiB to 128 MiB")),
        "{}",
        logs.dump()
    );
}

#[test]
fn a_volume_is_attached_to_one_vm_at_a_time() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let mut spec = common::spec(
        &g,
        "single",
        &rootfs,
        &[("app", "echo UP; exec sleep 100000")],
        None,
        None,
    );
    spec.volumes = vec![volume(work.path(), 32, "/data")];
    let logs = common::Logs::default();
    let first = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    // QEMU itself holds a share of the volume's lock (descriptor 10).
    let pid = first.vm.pid().unwrap();
    let held = std::fs::read_link(format!("/proc/{pid}/fd/10")).unwrap();
    assert_eq!(held, runtime::volume::lock_path(&spec.volumes[0].image));

    let vms_before = std::fs::read_dir(opts.run_dir.join("vms")).unwrap().count();
    let second = runtime::boot(&spec, &opts, common::Logs::default().sink());
    let e = second
        .err()
        .expect("a second VM with the same volume must be refused");
    println!("second VM: {e}");
    assert!(
        matches!(e, BootError::Volume(VolumeError::InUse { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("one VM at a time"), "{e}");
    assert_eq!(
        std::fs::read_dir(opts.run_dir.join("vms")).unwrap().count(),
        vms_before,
        "the refused boot left nothing behind"
    );
    drop(first);
    let again = runtime::boot(&spec, &opts, logs.sink())
        .unwrap_or_else(|e| panic!("once the first VM is gone the volume is free: {e}"));
    drop(again);
}

#[test]
fn a_volume_that_cannot_be_mounted_fails_the_boot_with_the_reason() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    let mut spec = common::spec(
        &g,
        "clash",
        &rootfs,
        &[("app", "echo STARTED-ANYWAY; exec sleep 100000")],
        None,
        None,
    );
    // A file of the image where the volume should go.
    spec.volumes = vec![volume(work.path(), 32, "/www/index.html")];
    let logs = common::Logs::default();
    let e = runtime::boot(&spec, &opts, logs.sink())
        .err()
        .expect("the boot must fail");
    let text = e.to_string();
    println!("boot with an unmountable volume: {text}");
    assert!(
        text.contains("volume data at /www/index.html")
            && text.contains("exists in the image and is not a directory"),
        "{text}"
    );
    assert!(
        !logs.of("app").iter().any(|l| l.contains("STARTED-ANYWAY")),
        "the app never starts without its volume"
    );
}

#[test]
fn a_one_off_vm_runs_its_command_once_with_the_volume_and_reports_its_exit() {
    let g = common::guest();
    let work = tempfile::tempdir().unwrap();
    let rootfs = common::image(work.path());
    let opts = common::qemu_opts(&g, &work.path().join("run"));
    // A release command that migrates, then fails: run once, never again.
    let mut spec = common::spec(
        &g,
        "release",
        &rootfs,
        &[(
            "release",
            "echo migrating as $(id -u); echo v2 > /data/schema; sync; exit 3",
        )],
        None,
        None,
    );
    spec.one_off = true;
    spec.volumes = vec![volume(work.path(), 32, "/data")];
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    let status = runtime::one_off::wait_exit(vm.vm.as_mut(), WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs.dump()));
    assert_eq!(status, 3, "{}", logs.dump());
    assert!(logs.of("release").iter().any(|l| l == "migrating as 1000"));
    let events = vm.vm.drain_events();
    assert!(events.iter().any(|e| e == "DONE"), "{events:?}");
    assert!(
        !events.iter().any(|e| e.starts_with("RESTART")),
        "a one-off command is never restarted: {events:?}"
    );
    drop(vm);

    // The next one-off VM sees what the first wrote; status 0 is success.
    spec.processes = vec![("release".into(), "cat /data/schema".into())];
    let logs = common::Logs::default();
    let mut vm = runtime::boot(&spec, &opts, logs.sink()).unwrap_or_else(|e| panic!("boot: {e}"));
    assert_eq!(
        runtime::one_off::wait_exit(vm.vm.as_mut(), WAIT).unwrap(),
        0
    );
    assert_eq!(logs.of("release"), ["v2"]);
}
