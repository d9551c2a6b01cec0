//! The app's way to its managed database (the `database` crate's cluster),
//! the second door beside [`crate::egress`]'s, built the same way: a Unix
//! socket in the VM's socket directory that only the VM's side reaches,
//! relayed by the daemon — as itself — to the cluster's socket. The jailed
//! VM process needs no access to the cluster; the guest reaches the
//! database at one fixed address and nothing else of the host:
//!
//! - QEMU: a `guestfwd` at [`QEMU_DATABASE_ADDR`]`:`[`DATABASE_PORT`],
//!   `byteport-init --relay` per connection into the door;
//! - own VMM: the guest init listens on `127.0.0.1:`[`DATABASE_PORT`] and
//!   connects to vsock host port [`DATABASE_PORT`], the door.
//!
//! A VM without a database endpoint has no door. Which login the app uses
//! is the cluster's business: the door only moves bytes (PostgreSQL's own
//! authentication — `sameuser`, SCRAM — decides).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::boot::Driver;

/// The database's port in the guest (QEMU: at [`QEMU_DATABASE_ADDR`];
/// own VMM: `127.0.0.1` in the guest, and this vsock host port).
pub const DATABASE_PORT: u16 = 5432;
/// Where the guest reaches the database under QEMU (a `guestfwd` address,
/// beside the egress proxy's `10.0.2.100`).
pub const QEMU_DATABASE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 101);

/// Where the app reaches its database inside the guest under `driver`:
/// the host and port of its `DATABASE_URL`.
pub fn database_addr(driver: &Driver) -> SocketAddrV4 {
    match driver {
        Driver::Qemu { .. } => SocketAddrV4::new(QEMU_DATABASE_ADDR, DATABASE_PORT),
        Driver::Kvm { .. } => SocketAddrV4::new(Ipv4Addr::LOCALHOST, DATABASE_PORT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_driver_has_its_fixed_database_address() {
        let qemu = Driver::Qemu {
            qemu: "/q".into(),
            accel: "tcg".into(),
        };
        assert_eq!(database_addr(&qemu).to_string(), "10.0.2.101:5432");
        let kvm = Driver::Kvm { vmm: "/v".into() };
        assert_eq!(database_addr(&kvm).to_string(), "127.0.0.1:5432");
        // Not the egress proxy's address, not the guest's own.
        assert_ne!(QEMU_DATABASE_ADDR, crate::egress::QEMU_GUEST_ADDR);
        assert_ne!(QEMU_DATABASE_ADDR, crate::drivers::qemu::GUEST_IP);
    }
}
