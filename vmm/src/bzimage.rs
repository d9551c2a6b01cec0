//! Fast path for bzImage kernels: instead of copying the protected-mode kernel
//! (14 MiB for the Debian cloud kernel — the largest start-up cost by far) into
//! guest RAM, map that part of the file there, private and copy-on-write. Pages
//! come in from the page cache when the guest first touches them, so the copy
//! moves off the start-up path and pages the guest never writes stay shared
//! with the page cache.
//!
//! Only used when the boot protocol allows it (header checks below, as the Linux
//! x86 boot protocol describes them) and the kernel's offset in the file and its
//! load address are page aligned; otherwise [`super::kernel`] copies it with
//! linux-loader. The file must not be modified in place while a VM uses it
//! (replace kernels by renaming a new file over the old one).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::KernelLoaderResult;
use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Offset of the setup header in a bzImage.
const SETUP_HEADER: u64 = 0x1f1;
/// "HdrS".
const HDR_MAGIC: u32 = 0x5372_6448;
/// `loadflags` bit: the protected-mode kernel is loaded at 1 MiB (bzImage).
const LOADED_HIGH: u8 = 1;
const PAGE: u64 = 4096;

/// Maps the protected-mode kernel of the bzImage `file` at `load` (≥ `himem`).
/// Returns `None` when this image or layout cannot be mapped (the caller then
/// copies it the ordinary way).
pub fn map(mem: &GuestMemoryMmap, file: &File, load: GuestAddress) -> Option<KernelLoaderResult> {
    let mut hdr = setup_header::default();
    file.read_exact_at(hdr.as_mut_slice(), SETUP_HEADER).ok()?;
    if hdr.header != HDR_MAGIC || hdr.version < 0x0200 || hdr.loadflags & LOADED_HIGH == 0 {
        return None;
    }
    let setup_sects = if hdr.setup_sects == 0 {
        4
    } else {
        hdr.setup_sects
    };
    let offset = (u64::from(setup_sects) + 1) * 512;
    let file_len = file.metadata().ok()?.len();
    let size = file_len.checked_sub(offset).filter(|&s| s > 0)?;
    if !offset.is_multiple_of(PAGE)
        || !load.0.is_multiple_of(PAGE)
        || u64::from(hdr.code32_start) < load.0
    {
        return None;
    }
    let map_len = size.div_ceil(PAGE) * PAGE;
    let end = load.0.checked_add(map_len)?;
    // The whole range must be inside one RAM region.
    let region = mem.find_region(load)?;
    if end > region.start_addr().0 + region.len() {
        return None;
    }
    let host = mem.get_host_address(load).ok()?;
    // SAFETY: [host, host + map_len) lies inside the guest RAM mapping owned by
    // `mem` (checked above) and nothing borrows it yet (the VM has not started).
    // MAP_FIXED replaces those pages atomically with a private copy-on-write view
    // of the file; the region's own munmap removes it with the rest. The file
    // mapping beyond EOF within the last page reads as zeros, like fresh RAM.
    let p = unsafe {
        libc::mmap(
            host.cast(),
            map_len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
            file.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED || p != host.cast() {
        return None;
    }
    hdr.code32_start = load.0 as u32;
    Some(KernelLoaderResult {
        kernel_load: load,
        kernel_end: load.0 + size,
        setup_header: Some(hdr),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vm_memory::Bytes;

    /// A fake bzImage: header with `setup_sects`, then a recognisable kernel body.
    fn image(setup_sects: u8, body: &[u8]) -> tempfile::NamedTempFile {
        let setup = (usize::from(setup_sects) + 1) * 512;
        let mut b = vec![0u8; setup];
        b[0x1f1] = setup_sects;
        b[0x202..0x206].copy_from_slice(&HDR_MAGIC.to_le_bytes());
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x211] = LOADED_HIGH;
        b[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        b.extend_from_slice(body);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&b).unwrap();
        f
    }

    #[test]
    fn maps_aligned_kernels_copy_on_write() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let f = image(7, &body); // (7 + 1) * 512 = 4096: page aligned
        let r = map(&mem, f.as_file(), GuestAddress(0x10_0000)).expect("mapped");
        assert_eq!(r.kernel_end, 0x10_0000 + body.len() as u64);
        let mut got = vec![0u8; body.len()];
        mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(got, body);
        // Past EOF in the last page: zeros. Guest writes do not reach the file.
        let tail: u8 = mem
            .read_obj(GuestAddress(0x10_0000 + body.len() as u64))
            .unwrap();
        assert_eq!(tail, 0);
        mem.write_obj(0xffu8, GuestAddress(0x10_0000)).unwrap();
        let on_disk = std::fs::read(f.path()).unwrap();
        assert_eq!(on_disk[4096], 0);
        // RAM around the mapping is untouched and usable.
        mem.write_obj(7u64, GuestAddress(0x10_0000 - 8)).unwrap();
        mem.write_obj(7u64, GuestAddress(0x10_0000 + 0x3000))
            .unwrap();
    }

    #[test]
    fn unaligned_or_invalid_images_are_left_to_the_copying_loader() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let f = image(4, &[1; 5000]); // offset 2560: not page aligned
        assert!(map(&mem, f.as_file(), GuestAddress(0x10_0000)).is_none());
        let mut g = tempfile::NamedTempFile::new().unwrap();
        g.write_all(&[0x42; 8192]).unwrap();
        assert!(map(&mem, g.as_file(), GuestAddress(0x10_0000)).is_none());
        // Too big for guest RAM.
        let big = image(7, &vec![1; 17 << 20]);
        assert!(map(&mem, big.as_file(), GuestAddress(0x10_0000)).is_none());
    }
}
