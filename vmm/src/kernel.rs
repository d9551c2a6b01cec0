//! Loading a Linux kernel (bzImage or ELF vmlinux) with linux-loader and writing the
//! zero page (boot_params): command line, e820 map, initramfs. A page-aligned
//! bzImage is mapped rather than copied ([`super::bzimage`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{self, bzimage::BzImage, elf::Elf, KernelLoader};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest address of the zero page.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Guest address of the kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Maximum command line length we accept (including the NUL).
pub const CMDLINE_MAX: usize = 4096;
/// Start of high memory; the kernel is loaded here.
pub const HIMEM_START: u64 = 0x10_0000;
/// End of usable low memory (EBDA starts here).
pub const EBDA_START: u64 = 0x9fc00;

const E820_RAM: u32 = 1;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

/// Errors while loading the kernel or initramfs.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Could not open/read a file.
    #[error("reading {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// linux-loader rejected the image.
    #[error("loading kernel {path}: {source}")]
    Load {
        /// Kernel path.
        path: PathBuf,
        /// Underlying error.
        source: loader::Error,
    },
    /// Command line too long or invalid.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// Initramfs does not fit between the kernel and the end of RAM.
    #[error("initramfs of {size} bytes does not fit in guest memory above the kernel")]
    InitrdTooBig {
        /// Initramfs size.
        size: u64,
    },
    /// A guest memory write failed (address out of range).
    #[error("writing {what} to guest memory: {source}")]
    Memory {
        /// What was written.
        what: &'static str,
        /// Underlying error.
        source: vm_memory::GuestMemoryError,
    },
}

/// Where the vCPU must start after loading.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    /// 64-bit entry point.
    pub rip: u64,
    /// Value for RSI (zero page address).
    pub rsi: u64,
}

/// Loads `kernel` (+ optional `initrd`) into `mem` and writes the zero page.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    rsdp: u64,
) -> Result<BootEntry, KernelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KernelError::Io { path, source }
    };
    let mut f = File::open(kernel).map_err(io(kernel))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).map_err(io(kernel))?;
    f.seek(SeekFrom::Start(0)).map_err(io(kernel))?;
    let himem = Some(GuestAddress(HIMEM_START));
    let load_err = |source| KernelError::Load {
        path: kernel.to_path_buf(),
        source,
    };
    let (res, rip) = if &magic == b"\x7fELF" {
        let r = Elf::load(mem, None, &mut f, himem).map_err(load_err)?;
        (r, r.kernel_load.0)
    } else {
        let r = match super::bzimage::map(mem, &f, GuestAddress(HIMEM_START)) {
            Some(r) => r,
            None => BzImage::load(mem, None, &mut f, himem).map_err(load_err)?,
        };
        // The 64-bit entry point sits 0x200 bytes into the protected-mode kernel.
        (r, r.kernel_load.0 + 0x200)
    };

    super::startup::mark("kernel image");
    let mut params = boot_params::default();
    if let Some(hdr) = res.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.acpi_rsdp_addr = rsdp;

    let mut cl = Cmdline::new(CMDLINE_MAX).map_err(|e| KernelError::Cmdline(e.to_string()))?;
    cl.insert_str(cmdline)
        .map_err(|e| KernelError::Cmdline(e.to_string()))?;
    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), &cl)
        .map_err(|e| KernelError::Cmdline(e.to_string()))?;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline.len() as u32 + 1;

    let mem_end = mem.last_addr().0 + 1;
    if let Some(initrd) = initrd {
        let mut file = File::open(initrd).map_err(io(initrd))?;
        let size = file.metadata().map_err(io(initrd))?.len();
        let kernel_end = res.kernel_load.0 + res.kernel_end;
        let addr = mem_end
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|&a| a >= kernel_end.max(res.kernel_end))
            .ok_or(KernelError::InitrdTooBig { size })?;
        // Straight from the file into guest memory: no host-side copy.
        let len = usize::try_from(size).map_err(|_| KernelError::InitrdTooBig { size })?;
        mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
            .map_err(|source| KernelError::Memory {
                what: "initramfs",
                source,
            })?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let e820 = [(0, EBDA_START), (HIMEM_START, mem_end - HIMEM_START)];
    for (i, (addr, size)) in e820.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: E820_RAM,
        };
    }
    params.e820_entries = e820.len() as u8;

    let zp = GuestAddress(ZERO_PAGE_START);
    debug_assert!(zp
        .checked_add(std::mem::size_of::<boot_params>() as u64)
        .is_some());
    mem.write_obj(params, zp)
        .map_err(|source| KernelError::Memory {
            what: "zero page",
            source,
        })?;
    Ok(BootEntry {
        rip,
        rsi: ZERO_PAGE_START,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn garbage_kernel_is_a_clean_error() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[0x42; 8192]).unwrap();
        let err = load_linux(&mem, f.path(), None, "console=ttyS0", 0).unwrap_err();
        assert!(matches!(err, KernelError::Load { .. }), "{err}");
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(b"\x7fELF").unwrap();
        assert!(load_linux(&mem, t.path(), None, "", 0).is_err());
    }

    #[test]
    fn missing_kernel_is_io_error() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let err = load_linux(&mem, Path::new("/nonexistent/vmlinuz"), None, "", 0).unwrap_err();
        assert!(matches!(err, KernelError::Io { .. }));
    }
}
