//! `egress`: where sandboxed code may connect — the internet, never this
//! host, its private networks, link-local or metadata addresses. One rule
//! for build steps (the builder) and app VMs (the runtime).
//!
//! - [`policy`]: the decision on one address (pure; every special range,
//!   IPv4-mapped and NAT64 forms, this host's own addresses, explicit
//!   [`Allow`] exceptions);
//! - [`host`]: destination hosts parsed the way resolvers read them
//!   (`2130706433`, `0x7f.1` and `0177.0.0.1` are `127.0.0.1`);
//! - [`dial`]: resolve once, check every address, connect to a checked
//!   one (DNS rebinding cannot slip through);
//! - [`proxy`]: an HTTP `CONNECT` + plain-HTTP forward proxy enforcing it,
//!   with connection, header-size and idle limits, on any listener the
//!   caller provides; [`BackgroundProxy`] runs it for non-async callers.
//!
//! ```
//! use egress::{Policy, Reason};
//! let p = Policy::internet_only();
//! assert!(p.check("151.101.0.223:443".parse().unwrap(), &[]).is_ok());
//! let denied = p.check("[::ffff:169.254.169.254]:80".parse().unwrap(), &[]).unwrap_err();
//! assert!(matches!(denied.reason, Reason::Special(r) if r.cidr == "169.254.0.0/16"));
//! // A test (or an operator's private mirror) is an explicit exception:
//! let p = p.allowing("127.0.0.1:8080".parse().unwrap());
//! assert!(p.check("127.0.0.1:8080".parse().unwrap(), &[]).is_ok());
//! ```
#![deny(missing_docs)]

mod background;
pub mod dial;
pub mod host;
mod local;
pub mod policy;
pub mod proxy;

pub use background::{BackgroundProxy, Serving};
pub use dial::{DialError, Dialer, Refusal};
pub use host::{parse_host, Host, HostError};
pub use local::local_addresses;
pub use policy::{
    special_range, Allow, Cidr, Denied, Policy, Reason, SpecialRange, SPECIAL_RANGES,
};
pub use proxy::{Proxy, ProxyConfig, RefusalHook};
