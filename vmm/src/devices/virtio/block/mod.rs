//! virtio-blk backed by a host file: read, write (unless read-only), flush, get-id.
//! In snapshot mode the image is only read and the guest's writes go to a
//! private overlay ([`storage`]).

mod storage;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use storage::Storage;

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{read_config_bytes, DeviceError, QueueCtx, VirtioDevice, VIRTIO_F_VERSION_1};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Largest data transfer accepted in one request.
pub const MAX_REQUEST: usize = 4 << 20;

/// Errors opening the backing file.
#[derive(Debug, thiserror::Error)]
#[error("opening disk {path}: {source}")]
pub struct BlockError {
    path: PathBuf,
    source: std::io::Error,
}

/// How the guest may use a disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskMode {
    /// Reads and writes reach the image.
    #[default]
    ReadWrite,
    /// The guest sees a read-only disk.
    ReadOnly,
    /// The guest may write, but writes go to a private overlay thrown away with
    /// the VM; the image is opened read-only.
    Snapshot,
}

/// A block device.
#[derive(Debug)]
pub struct Block {
    storage: Storage,
    read_only: bool,
    sectors: u64,
    config: [u8; 8],
    id: [u8; 20],
}

impl Block {
    /// Opens `path` for the guest in `mode`.
    pub fn open(path: &Path, mode: DiskMode) -> Result<Self, BlockError> {
        let err = |source| BlockError {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(mode == DiskMode::ReadWrite)
            .open(path)
            .map_err(err)?;
        let sectors = file.metadata().map_err(err)?.len() / SECTOR;
        let storage = match mode {
            DiskMode::Snapshot => {
                Storage::snapshot(file, sectors, &std::env::temp_dir()).map_err(|e| BlockError {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        e.kind(),
                        format!(
                            "creating the snapshot overlay in {}: {e}",
                            std::env::temp_dir().display()
                        ),
                    ),
                })?
            }
            _ => Storage::Direct(file),
        };
        let mut id = [0u8; 20];
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or(b"disk");
        let n = name.len().min(20);
        id[..n].copy_from_slice(&name[..n]);
        Ok(Self {
            storage,
            read_only: mode == DiskMode::ReadOnly,
            sectors,
            config: sectors.to_le_bytes(),
            id,
        })
    }

    /// Handles one request; returns (status, bytes written to the guest).
    fn request(
        &mut self,
        chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> Option<(u8, u32)> {
        let mut reader = chain.clone().reader::<()>(mem).ok()?;
        let mut writer = chain.writer::<()>(mem).ok()?;
        let writable = writer.available_bytes();
        if writable == 0 {
            return None; // nowhere to put the status byte
        }
        let mut status_w = writer.split_at(writable - 1).ok()?;
        let mut hdr = [0u8; 16];
        let status = match reader.read_exact(&mut hdr) {
            Err(_) => S_IOERR,
            Ok(()) => {
                let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
                let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap_or([0; 8]));
                match kind {
                    T_IN => self.read_to(sector, &mut writer),
                    T_OUT if self.read_only => S_IOERR,
                    T_OUT => self.write_from(sector, &mut reader),
                    T_FLUSH => {
                        if self.storage.flush().is_ok() {
                            S_OK
                        } else {
                            S_IOERR
                        }
                    }
                    T_GET_ID => {
                        let n = writer.available_bytes().min(20);
                        if writer.write_all(&self.id[..n]).is_ok() {
                            S_OK
                        } else {
                            S_IOERR
                        }
                    }
                    _ => S_UNSUPP,
                }
            }
        };
        status_w.write_all(&[status]).ok()?;
        Some((status, (writer.bytes_written() + 1) as u32))
    }

    fn range_ok(&self, sector: u64, len: usize) -> bool {
        len <= MAX_REQUEST
            && (len as u64).is_multiple_of(SECTOR)
            && sector
                .checked_add(len as u64 / SECTOR)
                .is_some_and(|end| end <= self.sectors)
    }

    fn read_to(&mut self, sector: u64, w: &mut virtio_queue::Writer<'_>) -> u8 {
        let len = w.available_bytes();
        if !self.range_ok(sector, len) {
            return S_IOERR;
        }
        let mut buf = vec![0u8; len];
        if self.storage.read_at(&mut buf, sector).is_err() || w.write_all(&buf).is_err() {
            return S_IOERR;
        }
        S_OK
    }

    fn write_from(&mut self, sector: u64, r: &mut virtio_queue::Reader<'_>) -> u8 {
        let len = r.available_bytes();
        if !self.range_ok(sector, len) {
            return S_IOERR;
        }
        let mut buf = vec![0u8; len];
        if r.read_exact(&mut buf).is_err() || self.storage.write_at(&buf, sector).is_err() {
            return S_IOERR;
        }
        S_OK
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }
    fn features(&self) -> u64 {
        let ro = if self.read_only { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH | ro
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }
    fn process_queue(&mut self, idx: usize, ctx: &mut QueueCtx<'_>) -> Result<bool, DeviceError> {
        let mem = ctx.mem;
        let Some(queue) = ctx.queue(idx) else {
            return Ok(false);
        };
        let chains: Vec<_> = queue
            .iter(mem)
            .map_err(|source| DeviceError::Queue { queue: idx, source })?
            .collect();
        let mut used = false;
        for chain in chains {
            let head = chain.head_index();
            // Chains with no room for a status byte are returned unused (len 0).
            let len = self.request(chain, mem).map_or(0, |(_, n)| n);
            queue
                .add_used(mem, head, len)
                .map_err(|source| DeviceError::Queue { queue: idx, source })?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    const HDR: u64 = 0x8000;
    const DATA: u64 = 0x9000;
    const STATUS: u64 = 0xa000;

    fn disk(ro: bool) -> (tempfile::NamedTempFile, Block) {
        disk_in(if ro {
            DiskMode::ReadOnly
        } else {
            DiskMode::ReadWrite
        })
    }

    fn disk_in(mode: DiskMode) -> (tempfile::NamedTempFile, Block) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut content = vec![0u8; 8 * 512];
        content[512..1024].fill(0xab);
        f.write_all(&content).unwrap();
        let b = Block::open(f.path(), mode).unwrap();
        (f, b)
    }

    fn hdr(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
        mem.write_obj(kind, GuestAddress(HDR)).unwrap();
        mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
    }

    fn status(mem: &GuestMemoryMmap) -> u8 {
        mem.read_obj(GuestAddress(STATUS)).unwrap()
    }

    fn run(b: &mut Block, m: &GuestMemoryMmap) {
        let mut q = [queue(16)];
        publish(m, &[0]);
        b.process_queue(0, &mut ctx(&mut q, m)).unwrap();
    }

    fn three(m: &GuestMemoryMmap, data_len: u32, data_flags: u16) {
        desc(m, 0, HDR, 16, NEXT, 1);
        desc(m, 1, DATA, data_len, data_flags | NEXT, 2);
        desc(m, 2, STATUS, 1, WRITE, 0);
    }

    #[test]
    fn read_write_flush_roundtrip() {
        let (f, mut b) = disk(false);
        let m = mem();
        hdr(&m, T_IN, 1);
        three(&m, 512, WRITE);
        run(&mut b, &m);
        assert_eq!(status(&m), S_OK);
        assert_eq!(m.read_obj::<u8>(GuestAddress(DATA + 7)).unwrap(), 0xab);
        assert_eq!(used(&m).1, vec![(0, 513)]);

        let m = mem();
        hdr(&m, T_OUT, 3);
        m.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        three(&m, 512, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), S_OK);
        assert_eq!(std::fs::read(f.path()).unwrap()[3 * 512], 0x5a);

        let m = mem();
        hdr(&m, T_FLUSH, 0);
        desc(&m, 0, HDR, 16, NEXT, 1);
        desc(&m, 1, STATUS, 1, WRITE, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), S_OK);
    }

    #[test]
    fn snapshot_mode_keeps_the_image_and_shows_the_guest_its_writes() {
        let (f, mut b) = disk_in(DiskMode::Snapshot);
        assert_eq!(b.features() & VIRTIO_BLK_F_RO, 0, "writable for the guest");
        let m = mem();
        hdr(&m, T_OUT, 1);
        m.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        three(&m, 512, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), S_OK);
        let m = mem();
        hdr(&m, T_IN, 1);
        three(&m, 512, WRITE);
        run(&mut b, &m);
        assert_eq!(m.read_obj::<u8>(GuestAddress(DATA)).unwrap(), 0x5a);
        assert_eq!(
            std::fs::read(f.path()).unwrap()[512],
            0xab,
            "image untouched"
        );
    }

    #[test]
    fn read_only_rejects_writes() {
        let (_f, mut b) = disk(true);
        assert_ne!(b.features() & VIRTIO_BLK_F_RO, 0);
        let m = mem();
        hdr(&m, T_OUT, 0);
        three(&m, 512, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), S_IOERR);
    }

    #[test]
    fn out_of_disk_and_oversized_requests_fail() {
        let (_f, mut b) = disk(false);
        let m = mem();
        hdr(&m, T_IN, 7);
        three(&m, 1024, WRITE); // runs past the 8-sector disk
        run(&mut b, &m);
        assert_eq!(status(&m), S_IOERR);
        let m = mem();
        hdr(&m, T_IN, u64::MAX);
        three(&m, 512, WRITE);
        run(&mut b, &m);
        assert_eq!(status(&m), S_IOERR);
        let m = mem();
        hdr(&m, T_IN, 0);
        three(&m, 0x8_0000, WRITE); // inside RAM but > disk and > sane
        run(&mut b, &m);
        assert_eq!(status(&m), S_IOERR);
    }

    #[test]
    fn hostile_chains_never_panic() {
        let (_f, mut b) = disk(false);
        // Loop: descriptor 0 points at itself.
        let m = mem();
        hdr(&m, T_IN, 0);
        desc(&m, 0, HDR, 16, NEXT, 0);
        run(&mut b, &m);
        assert_eq!(used(&m).1, vec![(0, 0)]);
        // Status descriptor in the wrong direction (read-only): no status written.
        let m = mem();
        hdr(&m, T_IN, 0);
        desc(&m, 0, HDR, 16, NEXT, 1);
        desc(&m, 1, STATUS, 1, 0, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), 0xff);
        assert_eq!(used(&m).1, vec![(0, 0)]);
        // Data buffer outside guest memory.
        let m = mem();
        hdr(&m, T_IN, 0);
        three(&m, 512, WRITE);
        desc(&m, 1, 0xfff0_0000, 512, WRITE | NEXT, 2);
        run(&mut b, &m);
        assert_eq!(used(&m).1, vec![(0, 0)]);
        // Truncated header.
        let m = mem();
        hdr(&m, T_IN, 0);
        desc(&m, 0, HDR, 4, NEXT, 1);
        desc(&m, 1, STATUS, 1, WRITE, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), S_IOERR);
        // Next index beyond the queue.
        let m = mem();
        desc(&m, 0, HDR, 16, NEXT, 200);
        run(&mut b, &m);
        assert_eq!(used(&m).0, 1);
        // Unknown request type.
        let m = mem();
        hdr(&m, 77, 0);
        desc(&m, 0, HDR, 16, NEXT, 1);
        desc(&m, 1, STATUS, 1, WRITE, 0);
        run(&mut b, &m);
        assert_eq!(status(&m), S_UNSUPP);
    }
}
