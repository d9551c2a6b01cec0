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
