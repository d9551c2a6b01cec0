//! Where a disk's sectors live: the image itself, or — in snapshot mode — the
//! image for reading plus a private overlay for everything the guest writes, so
//! the image (a shared, content-addressed artifact) is never modified and the
//! guest's changes vanish with the VM. The overlay is an unnamed temporary file
//! (`O_TMPFILE`), sparse; a bitmap records which 512-byte sectors it holds.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use super::SECTOR;

/// The sectors behind a block device.
#[derive(Debug)]
pub enum Storage {
    /// Reads and writes go to the image.
    Direct(File),
    /// Reads come from the overlay where written, else from the image.
    Snapshot {
        /// The image, opened read-only.
        base: File,
        /// Written sectors.
        overlay: File,
        /// One bit per sector: set when the overlay holds it.
        written: Vec<u64>,
    },
}

impl Storage {
    /// A snapshot of `base` (`sectors` long) with its overlay in `tmp_dir`.
    pub fn snapshot(base: File, sectors: u64, tmp_dir: &std::path::Path) -> io::Result<Self> {
        let overlay = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(tmp_dir)?;
        overlay.set_len(sectors * SECTOR)?;
        // calloc'd: pages of the bitmap stay unbacked until a sector is written.
        let written = vec![0u64; sectors.div_ceil(64) as usize];
        Ok(Self::Snapshot {
            base,
            overlay,
            written,
        })
    }

    fn is_written(written: &[u64], s: u64) -> bool {
        written
            .get((s / 64) as usize)
            .is_some_and(|w| w & (1 << (s % 64)) != 0)
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector` on.
    pub fn read_at(&self, buf: &mut [u8], sector: u64) -> io::Result<()> {
        match self {
            Self::Direct(f) => f.read_exact_at(buf, sector * SECTOR),
            Self::Snapshot {
                base,
                overlay,
                written,
            } => {
                // Runs of sectors from the same source, one read each.
                let n = buf.len() as u64 / SECTOR;
                let mut i = 0;
                while i < n {
                    let from_overlay = Self::is_written(written, sector + i);
                    let mut j = i + 1;
                    while j < n && Self::is_written(written, sector + j) == from_overlay {
                        j += 1;
                    }
                    let src = if from_overlay { overlay } else { base };
                    let part = &mut buf[(i * SECTOR) as usize..(j * SECTOR) as usize];
                    src.read_exact_at(part, (sector + i) * SECTOR)?;
                    i = j;
                }
                Ok(())
            }
        }
    }

    /// Writes `buf` (whole sectors) at `sector`.
    pub fn write_at(&mut self, buf: &[u8], sector: u64) -> io::Result<()> {
        match self {
            Self::Direct(f) => f.write_all_at(buf, sector * SECTOR),
            Self::Snapshot {
                overlay, written, ..
            } => {
                overlay.write_all_at(buf, sector * SECTOR)?;
                for s in sector..sector + buf.len() as u64 / SECTOR {
                    if let Some(w) = written.get_mut((s / 64) as usize) {
                        *w |= 1 << (s % 64);
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes written data durable. A snapshot's writes are thrown away with the
    /// VM, so there is nothing to make durable.
    pub fn flush(&self) -> io::Result<()> {
        match self {
            Self::Direct(f) => f.sync_all(),
            Self::Snapshot { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn snapshot_reads_mix_image_and_overlay_and_never_write_the_image() {
        let mut img = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..8 * 512).map(|i| (i / 512) as u8).collect();
        img.write_all(&content).unwrap();
        let base = File::open(img.path()).unwrap();
        let mut s = Storage::snapshot(base, 8, &std::env::temp_dir()).unwrap();
        s.write_at(&[0xee; 1024], 2).unwrap(); // sectors 2 and 3
        let mut buf = vec![0u8; 6 * 512];
        s.read_at(&mut buf, 1).unwrap(); // sectors 1..7
        assert!(buf[..512].iter().all(|&b| b == 1));
        assert!(buf[512..1536].iter().all(|&b| b == 0xee));
        assert!(buf[1536..2048].iter().all(|&b| b == 4));
        assert!(buf[2560..].iter().all(|&b| b == 6));
        s.flush().unwrap();
        assert_eq!(std::fs::read(img.path()).unwrap(), content);
    }
}
