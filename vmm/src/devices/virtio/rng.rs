//! virtio-rng: fills guest-writable buffers from the host's getrandom(2).

use std::io::Write;

use virtio_queue::{QueueOwnedT, QueueT};

use super::{DeviceError, QueueCtx, VirtioDevice, VIRTIO_F_VERSION_1};

/// Largest number of bytes returned for one request.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The entropy device (one request queue).
#[derive(Debug, Default)]
pub struct Rng;

fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer/length pair describes the writable tail of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        4
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process_queue(&mut self, idx: usize, ctx: &mut QueueCtx<'_>) -> Result<bool, DeviceError> {
        let mem = ctx.mem;
        let Some(queue) = ctx.queue(idx) else {
            return Ok(false);
        };
        let mut used = false;
        let chains: Vec<_> = queue
            .iter(mem)
            .map_err(|source| DeviceError::Queue { queue: idx, source })?
            .collect();
        for chain in chains {
            let head = chain.head_index();
            // A chain whose buffers are not in guest memory yields no writer: 0 bytes.
            let len = match chain.writer::<()>(mem) {
                Ok(mut w) => {
                    let n = w.available_bytes().min(MAX_REQUEST);
                    let mut buf = vec![0u8; n];
                    random_bytes(&mut buf).map_err(|e| DeviceError::Host(e.to_string()))?;
                    w.write_all(&buf).map(|_| n).unwrap_or(0)
                }
                Err(_) => 0,
            };
            queue
                .add_used(mem, head, len as u32)
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

    #[test]
    fn fills_writable_buffer() {
        let mem = mem();
        let mut q = [queue(16)];
        desc(&mem, 0, 0x8000, 32, WRITE, 0);
        publish(&mem, &[0]);
        assert!(Rng.process_queue(0, &mut ctx(&mut q, &mem)).unwrap());
        assert_eq!(used(&mem).1, vec![(0, 32)]);
    }

    #[test]
    fn hostile_chains_do_not_panic() {
        let mem = mem();
        let mut q = [queue(16)];
        // 0: loops onto itself; 1: out of guest memory; 2: read-only; 3: huge.
        desc(&mem, 0, 0x8000, 16, WRITE | NEXT, 0);
        desc(&mem, 1, 0xffff_0000, 16, WRITE, 0);
        desc(&mem, 2, 0x8000, 16, 0, 0);
        desc(&mem, 3, 0x8000, u32::MAX, WRITE, 0);
        publish(&mem, &[0, 1, 2, 3]);
        Rng.process_queue(0, &mut ctx(&mut q, &mem)).unwrap();
        let (n, entries) = used(&mem);
        assert_eq!(n, 4);
        // Loop: bounded by the queue size; out of range and oversized: nothing written.
        assert!(entries[0].1 <= 16 * 16);
        assert_eq!(entries[1], (1, 0));
        assert_eq!(entries[2], (2, 0));
        assert_eq!(entries[3], (3, 0));
    }

    #[test]
    fn avail_index_beyond_queue_size_is_device_error() {
        let mem = mem();
        let mut q = [queue(4)];
        desc(&mem, 0, 0x8000, 16, WRITE, 0);
        publish(&mem, &[0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Rng.process_queue(0, &mut ctx(&mut q, &mem)).is_err());
    }
}
