//! The jail on its own, with `/bin/sh` in place of a VMM: the process runs
//! as its own unprivileged uid with no capabilities and `no_new_privs`, in
//! its own mount namespace whose root holds only what the plan put there
//! (the daemon's files are not in its world), in its own network namespace
//! when asked, and in its cgroup.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use runtime::jail::{cgroup, Jail, JailPlan, Limits};
use runtime::process::{spawn, Spawn};

fn root_or_skip() -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the jail needs root; this test run is not root");
        return false;
    }
    true
}

#[test]
fn a_jailed_process_sees_only_its_own_world() {
    if !root_or_skip() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    // What the daemon has and a VM must never read.
    let secret = home.path().join("secrets.key");
    std::fs::write(&secret, "the daemon's key").unwrap();
    let input = home.path().join("kernel");
    std::fs::write(&input, "a kernel").unwrap();
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644)).unwrap();
    let vm_dir = home.path().join("run/vms/t-1.1");
    std::fs::create_dir_all(&vm_dir).unwrap();

    let jail = Jail::for_this_host().unwrap();
    let mut plan = JailPlan::new(&jail, &vm_dir).unwrap();
    let id = plan.id();
    let kernel = plan.file(&input, "kernel").unwrap();
    plan.new_network();
    let group = cgroup::create(
        &jail.cgroups,
        &format!("jail-test-{}", std::process::id()),
        Limits {
            memory_bytes: 64 << 20,
            pids: 16,
            cpus: 1,
        },
    )
    .unwrap();
    plan.cgroups(group.clone());
    let kernel = kernel.display();
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g); \
         echo root=$(ls / | tr '\\n' ' '); \
         cat {kernel}; echo; \
         cat {} 2>&1 | head -1; \
         echo > {kernel} 2>/dev/null && echo KERNEL-WRITABLE; \
         echo x > /tmp/x && echo tmp-ok; \
         echo INSPECT-NOW; sleep 30",
        secret.display()
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(Spawn {
        cmd,
        fds: vec![],
        jail: Some(plan.prepare().unwrap()),
    })
    .unwrap();
    let pid = child.id();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    while !out.contains("INSPECT-NOW") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the jailed shell ended early: {out}\n{err}");
        }
        out.push_str(&line);
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let in_groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let ns = |p: u32, n: &str| std::fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let me = std::process::id();
    let (mnt, net) = (
        ns(pid, "mnt") != ns(me, "mnt"),
        ns(pid, "net") != ns(me, "net"),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The shell's `sleep` outlives it in the group: removal kills it first.
    cgroup::remove(&group);
    for d in &group {
        assert!(!d.exists(), "{} stayed", d.display());
    }

    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("?")
            .trim()
            .to_string()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert!(mnt && net, "own mount and network namespaces");
    if !group.is_empty() {
        assert!(in_groups.contains("byteport-vms/jail-test-"), "{in_groups}");
    } else {
        eprintln!(
            "NOTE: no cgroup hierarchy here ({})",
            jail.cgroups.describe()
        );
    }
    assert!(out.contains(&format!("uid={id} gid={id}")), "{out}");
    assert!(id >= runtime::jail::DEFAULT_ID_BASE);
    let root = out
        .lines()
        .find_map(|l| l.strip_prefix("root="))
        .unwrap()
        .trim();
    let mut names: Vec<&str> = root.split(' ').collect();
    names.sort();
    assert_eq!(
        names,
        ["bin", "dev", "etc", "lib", "lib64", "run", "sbin", "tmp", "usr", "var", "vm"]
    );
    assert!(out.contains("a kernel"), "the input is readable: {out}");
    assert!(
        out.contains("No such file"),
        "the daemon's files are out of reach: {out}"
    );
    assert!(!out.contains("the daemon's key"), "{out}");
    assert!(
        !out.contains("KERNEL-WRITABLE"),
        "inputs are read-only: {out}"
    );
    assert!(out.contains("tmp-ok"), "{out}");
}

#[test]
fn a_jailed_process_writes_its_own_volume_and_reaches_no_other() {
    if !root_or_skip() {
        return;
    }
    use runtime::volume::{claim, Volume, VolumeError};
    use std::os::unix::fs::MetadataExt;
    let home = tempfile::tempdir().unwrap();
    let volumes = home.path().join("volumes");
    let own = Volume {
        name: "data".into(),
        image: volumes.join("app/data.ext4"),
        mount: "/data".into(),
        size_bytes: 32 << 20,
    };
    // Another app's volume, in the same directory tree on the host.
    let other = Volume {
        name: "data".into(),
        image: volumes.join("victim/data.ext4"),
        mount: "/data".into(),
        size_bytes: 32 << 20,
    };
    drop(claim(&other, 1000, 1000).unwrap());
    let c = claim(&own, 1000, 1000).unwrap();
    let vm_dir = home.path().join("run/vms/v-1.1");
    std::fs::create_dir_all(&vm_dir).unwrap();
    let jail = Jail::for_this_host().unwrap();
    let mut plan = JailPlan::new(&jail, &vm_dir).unwrap();
    let id = plan.id();
    c.hand_to(id).unwrap();
    let inside = plan.file_rw(&own.image, "vol-data").unwrap();
    assert_eq!(std::fs::metadata(&own.image).unwrap().uid(), id);
    let last = (32 << 20) - 1;
    let script = format!(
        "echo vm=$(ls /vm | tr '\\n' ' '); \
         dd if={inside} bs=4096 count=1 of=/dev/null 2>/dev/null && echo READ-OK; \
         printf x | dd of={inside} bs=1 seek={last} conv=notrunc 2>/dev/null && echo WRITE-OK; \
         cat {} 2>&1 | head -c 200; echo; \
         ls {} 2>&1 | head -1; \
         echo INSPECT-NOW; exec sleep 30",
        other.image.display(),
        volumes.display(),
        inside = inside.display()
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // The process holds a share of the volume's lock, as QEMU and the VMM do.
    let mut child = spawn(Spawn {
        cmd,
        fds: vec![(c.lock_fd().unwrap(), 10)],
        jail: Some(plan.prepare().unwrap()),
    })
    .unwrap();
    let pid = child.id();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    while !out.contains("INSPECT-NOW") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            panic!("the jailed shell ended early: {out}");
        }
        out.push_str(&line);
    }
    let held = std::fs::read_link(format!("/proc/{pid}/fd/10")).unwrap();
    // The daemon's handle goes; the process's share keeps the volume taken.
    drop(c);
    let second = claim(&own, 1000, 1000);
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(
        out.lines().any(|l| l.trim_end() == "vm=vol-data"),
        "exactly its own image: {out}"
    );
    assert!(out.contains("READ-OK") && out.contains("WRITE-OK"), "{out}");
    assert!(
        out.contains("No such file"),
        "another app's volume is out of reach: {out}"
    );
    assert_eq!(held, runtime::volume::lock_path(&own.image));
    assert!(
        matches!(second, Err(VolumeError::InUse { .. })),
        "the VM process's share of the lock keeps a second VM away"
    );
    assert_eq!(
        std::fs::metadata(&own.image).unwrap().uid(),
        0,
        "given back to root when the claim ends"
    );
    // Gone with the process: the volume can be claimed again.
    claim(&own, 1000, 1000).unwrap();
}
