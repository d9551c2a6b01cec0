use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn debugfs(image: &Path, request: &str, write: bool) -> String {
    let mut cmd = Command::new("debugfs");
    if write {
        cmd.arg("-w");
    }
    let out = cmd.arg("-R").arg(request).arg(image).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn volume(dir: &Path, name: &str, mib: u64) -> Volume {
    Volume {
        name: name.into(),
        image: dir.join("volumes").join(format!("{name}.ext4")),
        mount: "/data".into(),
        size_bytes: mib << 20,
    }
}

#[test]
fn a_new_volume_is_sparse_private_and_owned_by_the_app() {
    let d = tempfile::tempdir().unwrap();
    let v = volume(d.path(), "data", 1024);
    let sb = create(&v.name, &v.image, v.size_bytes, 1000, 1000).unwrap();
    assert_eq!(sb.bytes, 1 << 30);
    assert!(guest_init::config::is_uuid(&sb.uuid), "{}", sb.uuid);
    let md = std::fs::metadata(&v.image).unwrap();
    assert_eq!(md.len(), 1 << 30);
    let allocated = md.blocks() * 512;
    println!("a 1 GiB volume takes {} MiB on the host", allocated >> 20);
    assert!(
        allocated < 4 << 20,
        "not sparse: {allocated} bytes allocated"
    );
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let dir_mode = std::fs::metadata(v.image.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let root = debugfs(&v.image, "stat /", false);
    assert!(root.contains("User:  1000   Group:  1000"), "{root}");
    // Never over an existing image.
    assert!(create(&v.name, &v.image, v.size_bytes, 1000, 1000).is_err());
    assert!(!v.image.with_file_name(".data.ext4.new").exists());
}

#[test]
fn growing_keeps_the_data_and_shrinking_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let v = volume(d.path(), "data", 32);
    let sb = create(&v.name, &v.image, v.size_bytes, 1000, 1000).unwrap();
    let note = d.path().join("note");
    std::fs::write(&note, "kept across a resize\n").unwrap();
    debugfs(&v.image, &format!("write {} note", note.display()), true);
    assert_eq!(
        grow(&v.name, &v.image, 32 << 20).unwrap(),
        Growth::Unchanged
    );
    assert_eq!(
        grow(&v.name, &v.image, 96 << 20).unwrap(),
        Growth::Grown {
            from: 32 << 20,
            to: 96 << 20
        }
    );
    let after = inspect(&v.name, &v.image).unwrap();
    assert_eq!(after.uuid, sb.uuid, "the same filesystem, grown");
    assert_eq!(
        debugfs(&v.image, "cat /note", false),
        "kept across a resize\n"
    );
    let e = grow(&v.name, &v.image, 64 << 20).unwrap_err();
    assert!(matches!(e, VolumeError::Shrink { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("96 MiB and cannot shrink to 64 MiB"),
        "{text}"
    );
    assert_eq!(inspect(&v.name, &v.image).unwrap().bytes, 96 << 20);
}

#[test]
fn a_volume_is_claimed_by_one_vm_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let v = volume(d.path(), "data", 32);
    let first = claim(&v, 1000, 1000).unwrap();
    assert_eq!(first.growth, None, "created by the first claim");
    let e = claim(&v, 1000, 1000).unwrap_err();
    assert!(matches!(e, VolumeError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("one VM at a time"), "{e}");
    // The VM process's share of the lock outlives the claim itself.
    let vm_share = first.lock_fd().unwrap();
    drop(first);
    assert!(matches!(
        claim(&v, 1000, 1000).unwrap_err(),
        VolumeError::InUse { .. }
    ));
    drop(vm_share);
    let bigger = Volume {
        size_bytes: 48 << 20,
        ..v.clone()
    };
    let again = claim(&bigger, 1000, 1000).unwrap();
    assert_eq!(
        again.growth,
        Some(Growth::Grown {
            from: 32 << 20,
            to: 48 << 20
        })
    );
    assert_eq!(again.bytes, 48 << 20);
}

#[test]
fn a_claim_hands_the_image_to_the_vm_and_takes_it_back() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED a_claim_hands_the_image_to_the_vm_and_takes_it_back: chown needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let v = volume(d.path(), "data", 32);
    let c = claim(&v, 1000, 1000).unwrap();
    c.hand_to(1_900_000_123).unwrap();
    assert_eq!(std::fs::metadata(&v.image).unwrap().uid(), 1_900_000_123);
    drop(c);
    assert_eq!(std::fs::metadata(&v.image).unwrap().uid(), 0);
}

#[test]
fn bad_sizes_foreign_images_and_copies_are_refused_with_reasons() {
    let d = tempfile::tempdir().unwrap();
    let tiny = volume(d.path(), "tiny", 8);
    assert!(matches!(
        claim(&tiny, 1000, 1000).unwrap_err(),
        VolumeError::BadSize { .. }
    ));
    let junk = volume(d.path(), "junk", 32);
    std::fs::create_dir_all(junk.image.parent().unwrap()).unwrap();
    std::fs::write(&junk.image, vec![0u8; 1 << 20]).unwrap();
    let e = claim(&junk, 1000, 1000).unwrap_err();
    assert!(matches!(e, VolumeError::NotExt4 { .. }), "{e}");
    let a = volume(d.path(), "a", 32);
    drop(claim(&a, 1000, 1000).unwrap());
    let b = volume(d.path(), "b", 32);
    std::fs::copy(&a.image, &b.image).unwrap();
    let e = claim_all(&[a, b], 1000, 1000).unwrap_err();
    assert!(matches!(e, VolumeError::SameFilesystem { .. }), "{e}");
    assert!(e.to_string().contains("tune2fs -U random"), "{e}");
}

#[test]
fn names_and_paths_that_would_reach_qemu_or_the_guest_are_checked_again() {
    let d = tempfile::tempdir().unwrap();
    for (name, mount) in [
        ("x,file=/etc/shadow", "/data"),
        ("Data", "/data"),
        ("", "/data"),
        ("data", "data"),
        ("data", "/"),
        ("data", "/a/../etc"),
        ("data", "/a\nb"),
    ] {
        let v = Volume {
            name: name.into(),
            mount: mount.into(),
            ..volume(d.path(), "ok", 32)
        };
        let e = claim(&v, 1000, 1000).unwrap_err();
        assert!(
            matches!(e, VolumeError::BadVolume { .. }),
            "{name} {mount}: {e}"
        );
    }
    assert!(!d.path().join("volumes/ok.ext4").exists(), "nothing made");
}
