//! Network for build steps: BytePort's egress proxy ([`egress`]), run on a
//! background thread for the whole build and reachable from each step at
//! `http://127.0.0.1:3128` through a listener made inside the step's own
//! network namespace ([`super::netns`]). It reaches the internet and
//! nothing else (not this host, its private networks, link-local or
//! metadata addresses); every refusal is shown in the build log.
//!
//! Why a proxy rather than `slirp4netns`/`pasta`: those forward anything
//! to anywhere the host can reach except its loopback (private networks,
//! the host's own public address, cloud metadata), so they would need host
//! firewall rules on top; the proxy decides per destination after DNS and
//! connects to the address it checked, needs no extra process per step and
//! no change to the host's firewall, names refused destinations, and is the
//! same code app VMs use. Package managers (apt, pip, npm, cargo, go, git,
//! curl, wget) honour `http_proxy`/`https_proxy`; a tool that does not
//! fails with a connection error, never reaches the host.

use egress::{BackgroundProxy, Policy, ProxyConfig, Refusal, Serving};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The proxy URL steps get in `http_proxy` and friends.
pub const PROXY_URL: &str = "http://127.0.0.1:3128";

/// Proxy variables set in a step with network (the manifest's env wins).
pub const PROXY_ENV: &[&str] = &["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"];

/// Destinations tools must not send through the proxy (the step's own loopback).
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// The egress proxy of one build.
pub struct Egress {
    proxy: BackgroundProxy,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Start the proxy enforcing `policy`.
    pub fn start(policy: Policy) -> std::io::Result<Egress> {
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let sink = refusals.clone();
        let config = ProxyConfig {
            policy,
            max_connections: 256,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            on_refusal: Some(Arc::new(move |r: &Refusal| {
                if let Ok(mut s) = sink.lock() {
                    s.push(r.to_string());
                }
            })),
        };
        Ok(Egress {
            proxy: BackgroundProxy::start(config)?,
            refusals,
        })
    }

    /// Serve a listener made inside a step's network namespace.
    pub(crate) fn serve(&self, listener: std::net::TcpListener) -> std::io::Result<Serving> {
        self.proxy.serve_tcp(listener)
    }

    /// Refusals since the last call, as log text.
    pub(crate) fn take_refusals(&self) -> Vec<String> {
        self.refusals
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

/// What network a step gets.
#[derive(Debug, Clone, Copy)]
pub enum StepNetwork<'a> {
    /// Loopback only (`build { network off }`, or a caller's choice).
    Off,
    /// The internet through this build's egress proxy.
    Egress(&'a Egress),
}
