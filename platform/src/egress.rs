//! Each app's one way out of its VM: an HTTP egress proxy of its own
//! (the `egress` crate's policy — internet only, never this host's
//! loopback, its addresses or a private range), listening on a Unix socket
//! that the runtime's per-VM door connects to.
//!
//! The router is the one exception: an app reaches another app only as
//! the public does, `http://<other>.localhost:<router port>` through the
//! router. A manifest's `vm { network off }` gets no proxy at all: its
//! guest reaches nothing.
//!
//! Refusals are told to the app's owner as notes in its log (at most
//! [`NOTES_PER_MINUTE`] a minute, then a count), because an app that
//! cannot reach a database on a private address should say why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use egress::{Allow, Policy, Proxy, ProxyConfig};
use runtime::EgressEndpoint;

use crate::events::{EventKind, Events};

/// Refusal notes per app per minute; more are counted, not logged.
pub const NOTES_PER_MINUTE: u64 = 20;
/// Connections one app may have open through its proxy.
pub const MAX_CONNECTIONS_PER_APP: usize = 64;

/// The proxies of the apps that run here.
pub(crate) struct AppEgress {
    dir: PathBuf,
    policy: Policy,
    build_policy: Policy,
    events: Events,
    serving: Mutex<HashMap<String, Served>>,
}

struct Served {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl AppEgress {
    /// Proxies under `dir` (made 0700: only the daemon connects there)
    /// allowing the internet, the router at `router`, and `extra`.
    pub(crate) fn new(dir: PathBuf, router: SocketAddr, extra: &[Allow], events: Events) -> Self {
        let mut build_policy = Policy::internet_only();
        for a in extra {
            build_policy = build_policy.allowing(*a);
        }
        let policy = build_policy.clone().allowing(Allow::Addr(SocketAddr::from((
            std::net::Ipv4Addr::LOCALHOST,
            router.port(),
        ))));
        AppEgress {
            dir,
            policy,
            build_policy,
            events,
            serving: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint of `app`'s proxy, started on first use (call from
    /// within the daemon's runtime).
    pub(crate) fn endpoint(&self, app: &str) -> std::io::Result<EgressEndpoint> {
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = serving.get(app) {
            if !s.task.is_finished() {
                return Ok(EgressEndpoint::Unix(s.path.clone()));
            }
        }
        {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let path = socket_path(&self.dir, app);
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("egress proxy of {app} at {}: {e}", path.display()),
            )
        })?;
        let proxy = Proxy::new(ProxyConfig {
            policy: self.policy.clone(),
            max_connections: MAX_CONNECTIONS_PER_APP,
            idle_timeout: Duration::from_secs(300),
            on_refusal: Some(refusal_notes(self.events.clone(), app)),
            ..ProxyConfig::default()
        });
        let task = tokio::spawn(async move { proxy.serve_unix(listener).await });
        serving.insert(
            app.to_string(),
            Served {
                path: path.clone(),
                task,
            },
        );
        Ok(EgressEndpoint::Unix(path))
    }

    /// Where build steps may connect: the internet and the configured
    /// exceptions (not the router: a build does not call apps).
    pub(crate) fn build_policy(&self) -> Policy {
        self.build_policy.clone()
    }

    /// Stops `app`'s proxy (its app was destroyed).
    pub(crate) fn close(&self, app: &str) {
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }
}

/// `<dir>/<app>.sock`, or a digest of the name where a long name would not
/// fit a Unix socket path (108 bytes).
fn socket_path(dir: &Path, app: &str) -> PathBuf {
    let plain = dir.join(format!("{app}.sock"));
    if plain.as_os_str().len() < 100 {
        return plain;
    }
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(app.as_bytes())[..8]);
    dir.join(format!("{digest}.sock"))
}

/// Tells `app`'s log about refusals, rate-limited per minute.
fn refusal_notes(events: Events, app: &str) -> egress::RefusalHook {
    let app = app.to_string();
    // (minute, notes written in it, refusals not written)
    let window = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let started = std::time::Instant::now();
    let total = Arc::new(AtomicU64::new(0));
    Arc::new(move |refusal: &egress::Refusal| {
        total.fetch_add(1, Ordering::Relaxed);
        let minute = started.elapsed().as_secs() / 60;
        let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0 != minute {
            if w.2 > 0 {
                events.emit(
                    &app,
                    None,
                    None,
                    EventKind::Note {
                        text: format!("egress: {} more refusals not shown", w.2),
                    },
                );
            }
            *w = (minute, 0, 0);
        }
        if w.1 >= NOTES_PER_MINUTE {
            w.2 += 1;
            return;
        }
        w.1 += 1;
        events.emit(
            &app,
            None,
            None,
            EventKind::Note {
                text: format!("egress: refused {refusal}"),
            },
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_app_name_still_fits_a_socket_path() {
        let dir = Path::new("/tmp/a-rather-long-home-directory-for-byteport/egress");
        let p = socket_path(dir, &"x".repeat(63));
        assert!(p.as_os_str().len() < 108, "{}", p.display());
        assert_eq!(socket_path(dir, "hello"), dir.join("hello.sock"));
    }
}
