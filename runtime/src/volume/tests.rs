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

#[test]
fn a_backup_restores_byte_for_byte_and_a_bad_one_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let v = volume(d.path(), "data", 64);
    create(&v.name, &v.image, v.size_bytes, 1000, 1000).unwrap();
    let note = d.path().join("note");
    std::fs::write(&note, "in the backup\n").unwrap();
    debugfs(&v.image, &format!("write {} note", note.display()), true);
    let saved = d.path().join("data.backup");
    assert_eq!(backup(&v, &saved).unwrap(), 64 << 20);
    let md = std::fs::metadata(&saved).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert!(md.blocks() * 512 < 8 << 20, "the backup is not sparse");
    let backed_up = std::fs::read(&saved).unwrap();
    assert_eq!(backed_up, std::fs::read(&v.image).unwrap());

    // Later writes are undone by a restore, byte for byte.
    debugfs(&v.image, "rm note", true);
    restore(&v, &saved).unwrap();
    assert_eq!(std::fs::read(&v.image).unwrap(), backed_up);
    assert!(debugfs(&v.image, "cat note", false).contains("in the backup"));

    // Garbage, a truncated backup, and one larger than the volume are
    // refused with the volume untouched and no stray file.
    let garbage = d.path().join("garbage");
    std::fs::write(&garbage, vec![0x5a; 4 << 20]).unwrap();
    let e = restore(&v, &garbage).unwrap_err();
    assert!(matches!(e, VolumeError::NotExt4 { .. }), "{e}");
    assert!(e.to_string().contains("garbage"), "{e}");
    let truncated = d.path().join("truncated");
    std::fs::write(&truncated, &backed_up[..(2 << 20)]).unwrap();
    let e = restore(&v, &truncated).unwrap_err();
    assert!(e.to_string().contains("e2fsck"), "{e}");
    let big = volume(d.path(), "big", 128);
    create(&big.name, &big.image, big.size_bytes, 1000, 1000).unwrap();
    let big_backup = d.path().join("big.backup");
    backup(&big, &big_backup).unwrap();
    let e = restore(&v, &big_backup).unwrap_err();
    assert!(matches!(e, VolumeError::Shrink { .. }), "{e}");
    assert_eq!(std::fs::read(&v.image).unwrap(), backed_up);
    let strays: Vec<_> = std::fs::read_dir(v.image.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");

    // Neither runs while a VM has the volume.
    let claim = claim(&v, 1000, 1000).unwrap();
    assert!(matches!(backup(&v, &saved), Err(VolumeError::InUse { .. })));
    assert!(matches!(
        restore(&v, &saved),
        Err(VolumeError::InUse { .. })
    ));
    drop(claim);
    backup(&v, &saved).unwrap();
}
