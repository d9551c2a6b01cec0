//! `setup` against the real Debian archive: the cloud kernel (vmlinuz,
//! modules, config) and busybox-static; a warm cache does no network work.
//! One test in this binary because it changes `PATH`.

mod common;

use builder::setup::{current_kernel, ensure_assets, SetupOptions};

#[test]
fn setup_fetches_kernel_and_busybox_once_then_works_offline_and_registers_user_kernels() {
    let home = common::test_cache().join("setup-home");
    let opts = SetupOptions {
        home: home.clone(),
        kernel: None,
        kernel_modules: None,
        progress: false,
    };
    let assets =
        ensure_assets(&opts).expect("setup (needs apt-get and the Debian mirror on a cold cache)");
    let k = &assets.kernel;
    assert_eq!(k.source, "debian");
    assert!(k.version.ends_with("-cloud-amd64"), "{}", k.version);
    assert!(std::fs::metadata(&k.image).unwrap().len() > 1 << 20);
    let config = std::fs::read_to_string(k.config.as_ref().unwrap()).unwrap();
    assert!(config.contains("CONFIG_EXT4_FS=y"));
    let modules = k.modules_dir.as_ref().unwrap();
    let found = std::process::Command::new("find")
        .arg(modules)
        .args(["-name", "virtio_blk.ko*"])
        .output()
        .unwrap();
    assert!(!found.stdout.is_empty(), "virtio_blk module kept");
    assert!(assets.busybox.is_file());
    assert_eq!(current_kernel(&home).as_ref(), Some(k));

    // Warm cache: no apt-get, no dpkg-deb (they are not even on PATH now).
    let empty = tempfile::tempdir().unwrap();
    let old_path = std::env::var_os("PATH");
    std::env::set_var("PATH", empty.path());
    let start = std::time::Instant::now();
    let warm = ensure_assets(&opts);
    std::env::set_var("PATH", old_path.unwrap_or_default());
    assert_eq!(warm.expect("warm setup must not need any tool"), assets);
    assert!(start.elapsed() < std::time::Duration::from_secs(2));

    // --kernel: a user-supplied image (+ modules) becomes the default of another home.
    let other = tempfile::tempdir().unwrap();
    let user = ensure_assets(&SetupOptions {
        home: other.path().to_path_buf(),
        kernel: Some(k.image.clone()),
        kernel_modules: Some(modules.clone()),
        progress: false,
    })
    .unwrap();
    assert_eq!(user.kernel.source, "user");
    let copied = std::process::Command::new("find")
        .arg(user.kernel.modules_dir.unwrap())
        .args(["-name", "virtio_blk.ko*"])
        .output()
        .unwrap();
    assert!(
        !copied.stdout.is_empty(),
        "modules copied with the user kernel"
    );
    assert_eq!(
        current_kernel(other.path()).unwrap().version,
        user.kernel.version
    );
}
