//! Runtime drivers: how an artifact becomes a running VM. `qemu` is QEMU's
//! microvm machine (portable; TCG where hardware virtualization is not
//! usable); `kvm` is BytePort's own VMM (see `crate::vmm`).

pub mod initramfs;
pub mod qemu;
