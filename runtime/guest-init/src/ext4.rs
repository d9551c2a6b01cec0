//! The few facts BytePort reads from an ext4 superblock — its UUID and size
//! — shared by the host (which prepares volumes and names them by UUID in
//! the init config) and the guest init (which finds its disks by them).

/// Byte offset of the superblock on the device.
pub const SUPERBLOCK_OFFSET: usize = 1024;
/// Bytes to read from the start of a device to parse its superblock.
pub const HEAD_BYTES: usize = SUPERBLOCK_OFFSET + 1024;

const MAGIC: u16 = 0xEF53;
const INCOMPAT_64BIT: u32 = 0x80;

/// What the superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Filesystem UUID, lowercase `8-4-4-4-12` hex.
    pub uuid: String,
    /// Size of the filesystem in bytes (blocks × block size).
    pub bytes: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the superblock in `head` (the first [`HEAD_BYTES`] of a device);
/// `None` when it holds no ext2/3/4 filesystem.
pub fn parse(head: &[u8]) -> Option<Superblock> {
    let sb = head.get(SUPERBLOCK_OFFSET..HEAD_BYTES)?;
    if u16_at(sb, 0x38) != MAGIC {
        return None;
    }
    let log_block = u32_at(sb, 0x18);
    if log_block > 6 {
        return None;
    }
    let block_size = 1024u64 << log_block;
    let mut blocks = u64::from(u32_at(sb, 0x04));
    if u32_at(sb, 0x60) & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(u32_at(sb, 0x150)) << 32;
    }
    let u = &sb[0x68..0x78];
    let hex =
        |r: std::ops::Range<usize>| -> String { u[r].iter().map(|b| format!("{b:02x}")).collect() };
    Some(Superblock {
        uuid: format!(
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        ),
        bytes: blocks.checked_mul(block_size)?,
    })
}

/// Reads the superblock of the device or image at `path`.
pub fn read(path: &std::path::Path) -> std::io::Result<Option<Superblock>> {
    use std::io::Read;
    let mut head = vec![0u8; HEAD_BYTES];
    let mut f = std::fs::File::open(path)?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..])? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    Ok(parse(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superblock_gives_its_uuid_and_size() {
        let mut head = vec![0u8; HEAD_BYTES];
        let sb = SUPERBLOCK_OFFSET;
        head[sb + 0x04..sb + 0x08].copy_from_slice(&262_144u32.to_le_bytes());
        head[sb + 0x18..sb + 0x1c].copy_from_slice(&2u32.to_le_bytes());
        head[sb + 0x38..sb + 0x3a].copy_from_slice(&MAGIC.to_le_bytes());
        for (i, b) in head[sb + 0x68..sb + 0x78].iter_mut().enumerate() {
            *b = i as u8 * 17;
        }
        let s = parse(&head).unwrap();
        assert_eq!(s.bytes, 1 << 30);
        assert_eq!(s.uuid, "00112233-4455-6677-8899-aabbccddeeff");
        head[sb + 0x60] = INCOMPAT_64BIT as u8;
        head[sb + 0x150] = 1;
        assert_eq!(parse(&head).unwrap().bytes, (1 << 30) + (1u64 << 32) * 4096);
        head[sb + 0x38] = 0;
        assert_eq!(parse(&head), None);
        assert_eq!(parse(&head[..100]), None);
    }
}
