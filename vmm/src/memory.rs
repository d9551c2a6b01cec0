//! Guest RAM: allocation through vm-memory and registration with KVM.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Guest RAM below this address; the range above it up to 4 GiB is the MMIO hole.
pub const MMIO_HOLE_START: u64 = 0xC000_0000;
/// Smallest RAM size accepted (the fixed boot structures live in the first MiB).
pub const MIN_MEM_BYTES: u64 = 2 << 20;

/// Errors while creating or registering guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Requested size is below the minimum or reaches into the MMIO hole.
    #[error("guest memory size {0} bytes is outside {MIN_MEM_BYTES}..={MMIO_HOLE_START}")]
    BadSize(u64),
    /// mmap of the guest RAM failed.
    #[error("allocating {size} bytes of guest memory: {source}")]
    Alloc {
        /// Requested size.
        size: u64,
        /// Underlying error.
        source: vm_memory::mmap::FromRangesError,
    },
    /// KVM refused the memory slot.
    #[error("registering memory slot {slot} with KVM: {source}")]
    Register {
        /// Slot number.
        slot: u32,
        /// Underlying error.
        source: kvm_ioctls::Error,
    },
}

/// Allocates `size` bytes of guest RAM starting at guest physical address 0
/// (anonymous, populated lazily as the guest or the loader touches it).
pub fn create(size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    if !(MIN_MEM_BYTES..=MMIO_HOLE_START).contains(&size) {
        return Err(MemoryError::BadSize(size));
    }
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)])
        .map_err(|source| MemoryError::Alloc { size, source })
}

/// Registers every region of `mem` as a KVM memory slot.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let region_desc = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the region is a live mmap owned by `mem`, which the caller keeps
        // alive (it is held by the Vm) for as long as the VM fd exists.
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(|source| MemoryError::Register { slot, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(create(4096), Err(MemoryError::BadSize(4096))));
        assert!(matches!(
            create(MMIO_HOLE_START + 1),
            Err(MemoryError::BadSize(_))
        ));
    }

    #[test]
    fn out_of_range_access_is_an_error() {
        let mem = create(MIN_MEM_BYTES).unwrap();
        assert!(mem
            .write_obj(1u64, GuestAddress(MIN_MEM_BYTES - 4))
            .is_err());
        assert!(mem.write_obj(1u64, GuestAddress(MIN_MEM_BYTES - 8)).is_ok());
    }
}
