//! The initramfs a microVM boots with: BytePort's guest init as `/init`
//! (with the shared libraries it needs), the kernel modules the guest must
//! load, and `/byteport/init.json`. Written as cpio newc archives, gzip
//! compressed; the per-VM config is a second archive appended to a cached
//! base (the kernel unpacks concatenated archives in order).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Errors assembling an initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// A file to include cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A module named by the caller is not in `modules.dep`.
    #[error("kernel module `{name}` is not in {dep_file} (wrong kernel version or modules dir?)")]
    UnknownModule {
        /// The module's name.
        name: String,
        /// The modules.dep consulted.
        dep_file: PathBuf,
    },
    /// Writing the archive failed.
    #[error("cannot write initramfs {path}")]
    Write {
        /// The archive.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// `ldd` could not list the init binary's libraries.
    #[error("cannot list shared libraries of {binary}: {message}")]
    Ldd {
        /// The binary.
        binary: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The modules a Debian cloud kernel needs for virtio-mmio block, net, rng
/// and vsock; dependencies (virtio, virtio_ring, failover...) are added from
/// `modules.dep`.
pub const VIRTIO_MODULES: [&str; 6] = [
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_rng",
    "vmw_vsock_virtio_transport",
    "vsock",
];

/// The ACPI power button as an input device: how the `kvm` driver's VMM asks
/// the guest init for a graceful stop (add these to [`VIRTIO_MODULES`] for it).
pub const POWER_BUTTON_MODULES: [&str; 2] = ["evdev", "button"];

/// Resolves `wanted` module names to their files under `modules_dir`,
/// dependencies first, each once. Dependencies come from `modules.dep`
/// when present, else from each module's own `.modinfo` (`depends=`), as a
/// kernel package unpacked without `depmod` has no `modules.dep`.
pub fn resolve_modules(
    modules_dir: &Path,
    wanted: &[&str],
) -> Result<Vec<PathBuf>, InitramfsError> {
    let dep_file = modules_dir.join("modules.dep");
    let deps = match std::fs::read_to_string(&dep_file) {
        Ok(text) => parse_modules_dep(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound && modules_dir.is_dir() => {
            scan_modinfo(modules_dir)?
        }
        Err(source) => {
            return Err(InitramfsError::Read {
                path: dep_file,
                source,
            })
        }
    };
    let mut order = vec![];
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        if let Some((path, ds)) = deps.get(name) {
            for d in ds {
                visit(d, deps, seen, order);
            }
            order.push(path.clone());
        }
    }
    for w in wanted {
        let key = w.replace('-', "_");
        if !deps.contains_key(&key) {
            return Err(InitramfsError::UnknownModule {
                name: w.to_string(),
                dep_file,
            });
        }
        visit(&key, &deps, &mut seen, &mut order);
    }
    Ok(order.into_iter().map(|p| modules_dir.join(p)).collect())
}

/// name → (relative path, dependency names) from a `modules.dep` file.
fn parse_modules_dep(text: &str) -> HashMap<String, (String, Vec<String>)> {
    let mut deps = HashMap::new();
    for line in text.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            module_name(module),
            (
                module.to_string(),
                rest.split_whitespace().map(module_name).collect(),
            ),
        );
    }
    deps
}

/// name → (relative path, dependency names) by reading every `.ko` file's
/// `depends=` modinfo string.
fn scan_modinfo(
    modules_dir: &Path,
) -> Result<HashMap<String, (String, Vec<String>)>, InitramfsError> {
    let mut deps = HashMap::new();
    let mut stack = vec![modules_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| InitramfsError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "ko") {
                let bytes = std::fs::read(&path).map_err(|source| InitramfsError::Read {
                    path: path.clone(),
                    source,
                })?;
                let rel = path
                    .strip_prefix(modules_dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .to_string();
                deps.insert(module_name(&rel), (rel, modinfo_depends(&bytes)));
            }
        }
    }
    Ok(deps)
}

/// The `depends=` list of a module's `.modinfo` strings.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return vec![];
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Lists the shared libraries (and the dynamic loader) `binary` needs.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, InitramfsError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| InitramfsError::Ldd {
            binary: binary.into(),
            message: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(vec![]);
    }
    if !out.status.success() {
        return Err(InitramfsError::Ldd {
            binary: binary.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// An in-progress cpio newc archive with deterministic metadata.
pub struct Archive<W: Write> {
    out: W,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl<W: Write> Archive<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Archive<W> {
        Archive {
            out,
            ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    fn header(&mut self, name: &str, mode: u32, size: u32) -> cpio::newc::Writer<&mut W> {
        self.ino += 1;
        cpio::NewcBuilder::new(name)
            .ino(self.ino)
            .mode(mode)
            .uid(0)
            .gid(0)
            .nlink(1)
            .mtime(0)
            .write(&mut self.out, size)
    }

    /// Adds a directory and its parents (once each).
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let path = path.trim_matches('/');
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                let name = prefix.clone();
                self.header(&name, 0o040755, 0).finish()?;
            }
        }
        Ok(())
    }

    /// Adds a regular file with `contents`.
    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        let size = u32::try_from(contents.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{path} is over 4 GiB"))
        })?;
        let mut w = self.header(path, 0o100000 | (mode & 0o7777), size);
        w.write_all(contents)?;
        w.finish()?;
        Ok(())
    }

    /// Adds a symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut w = self.header(path, 0o120777, target.len() as u32);
        w.write_all(target.as_bytes())?;
        w.finish()?;
        Ok(())
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        cpio::newc::trailer(self.out)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    std::fs::read(path).map_err(|source| InitramfsError::Read {
        path: path.into(),
        source,
    })
}

/// Writes the base initramfs: `/init` (the guest init binary), its shared
/// libraries at their usual paths, and `modules` under `/lib/modules/`.
/// Returns the in-guest module paths, in load order.
pub fn write_base(
    dest: &Path,
    init_binary: &Path,
    modules: &[PathBuf],
) -> Result<Vec<String>, InitramfsError> {
    let werr = |source: io::Error| InitramfsError::Write {
        path: dest.into(),
        source,
    };
    let file = std::fs::File::create(dest).map_err(werr)?;
    let mut a = Archive::new(GzEncoder::new(
        io::BufWriter::new(file),
        Compression::fast(),
    ));
    for d in ["dev", "proc", "sys", "newroot", "tmp", "byteport"] {
        a.dir(d).map_err(werr)?;
    }
    a.file("init", 0o755, &read(init_binary)?).map_err(werr)?;
    for lib in shared_libraries(init_binary)? {
        let bytes = read(&lib)?;
        a.file(&lib.to_string_lossy(), 0o755, &bytes)
            .map_err(werr)?;
    }
    let mut in_guest = vec![];
    for (i, m) in modules.iter().enumerate() {
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        // Numbered so the listing shows the load order.
        let path = format!("lib/modules/{i:02}-{name}");
        a.file(&path, 0o644, &read(m)?).map_err(werr)?;
        in_guest.push(format!("/{path}"));
    }
    let gz = a.finish().map_err(werr)?;
    let mut buf = gz.finish().map_err(werr)?;
    buf.flush().map_err(werr)?;
    Ok(in_guest)
}

/// Writes the small per-VM archive holding `/byteport/init.json` (mode 0600:
/// it carries the app's secrets).
pub fn write_config(dest: &Path, init_json: &[u8]) -> Result<(), InitramfsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source: io::Error| InitramfsError::Write {
        path: dest.into(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)
        .map_err(werr)?;
    let mut a = Archive::new(GzEncoder::new(file, Compression::fast()));
    a.file("byteport/init.json", 0o600, init_json)
        .map_err(werr)?;
    a.finish().map_err(werr)?.finish().map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_resolve_dependencies_first_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("modules.dep"),
            "kernel/drivers/virtio/virtio_ring.ko:\n\
             kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko\n",
        )
        .unwrap();
        let got = resolve_modules(d.path(), &["virtio_mmio", "virtio_blk", "virtio-rng"]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_mmio.ko",
                "virtio_blk.ko",
                "virtio-rng.ko"
            ]
        );
        let e = resolve_modules(d.path(), &["nope"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nope`"), "{e}");
        assert!(resolve_modules(&d.path().join("missing"), &["x"]).is_err());
    }

    #[test]
    fn without_modules_dep_the_modinfo_strings_are_used() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("kernel/drivers");
        std::fs::create_dir_all(&k).unwrap();
        std::fs::write(k.join("virtio_ring.ko"), b"\x7fELF\0name=virtio_ring\0").unwrap();
        std::fs::write(
            k.join("virtio.ko"),
            b"\x7fELF\0depends=virtio_ring\0name=virtio\0",
        )
        .unwrap();
        std::fs::write(
            k.join("virtio_blk.ko"),
            b"\x7fELF\0depends=virtio,virtio_ring\0",
        )
        .unwrap();
        let got = resolve_modules(d.path(), &["virtio_blk"]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["virtio_ring.ko", "virtio.ko", "virtio_blk.ko"]);
    }

    #[test]
    fn archives_list_with_real_cpio() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.cpio");
        let f = std::fs::File::create(&path).unwrap();
        let mut a = Archive::new(f);
        a.file("byteport/init.json", 0o600, b"{}").unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.finish().unwrap();
        let out = Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::fs::File::open(&path).unwrap())
            .output()
            .expect("cpio (Debian package cpio) is needed");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert_eq!(listing, "byteport\nbyteport/init.json\nbin\nbin/sh\n");
    }

    #[test]
    fn dynamic_binaries_bring_their_loader() {
        let libs = shared_libraries(Path::new("/bin/true")).unwrap();
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
    }
}
