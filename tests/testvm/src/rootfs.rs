//! Root filesystems for app VMs in tests: a static busybox with a link for
//! every applet (so `/bin/sh -c 'nc ...'` works as on a real image), the
//! caller's files, packed as ext4 with `mkfs.ext4 -d` (as the builder does).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes a busybox ext4 image of `size_mib` to `out`, with `files`
/// (absolute guest path, contents, mode) added; `work` is a scratch
/// directory. Panics with the packages to install if a tool is missing.
pub fn busybox_ext4(
    work: &Path,
    out: &Path,
    files: &[(&str, &[u8], u32)],
    size_mib: u32,
) -> PathBuf {
    let root = work.join("rootfs-tree");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["bin", "dev", "proc", "sys", "tmp", "run", "etc", "newroot"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("/bin/busybox: {e}; run: {}", crate::nested::APT));
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.contains('/') {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
    )
    .unwrap();
    for (path, contents, mode) in files {
        let dest = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(&dest, contents).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    crate::nested::ext4(&root, out, size_mib);
    // The artifact store keeps images world-readable: the jailed VM process
    // opens it as its own user.
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644)).unwrap();
    out.to_path_buf()
}
