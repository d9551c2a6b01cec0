//! The proxy for callers without a tokio runtime (the builder runs build
//! steps from plain threads): one runtime thread, listeners handed over as
//! `std` sockets, each served until its [`Serving`] handle is dropped.

use crate::proxy::{Proxy, ProxyConfig};

/// A [`Proxy`] running on its own runtime thread.
pub struct BackgroundProxy {
    runtime: Option<tokio::runtime::Runtime>,
    proxy: Proxy,
}

/// One listener being served; dropping it stops accepting and closes the
/// connections it accepted.
#[derive(Debug)]
pub struct Serving {
    task: tokio::task::AbortHandle,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BackgroundProxy {
    /// Start the runtime thread (`egress-proxy`).
    pub fn start(config: ProxyConfig) -> std::io::Result<BackgroundProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("egress-proxy")
            .enable_all()
            .build()?;
        Ok(BackgroundProxy {
            runtime: Some(runtime),
            proxy: Proxy::new(config),
        })
    }

    /// The proxy being run.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    fn runtime(&self) -> std::io::Result<&tokio::runtime::Runtime> {
        self.runtime
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the egress proxy runtime is gone"))
    }

    /// Serve a bound TCP listener (made wherever the caller wants: another
    /// network namespace, a port of its choosing).
    pub fn serve_tcp(&self, listener: std::net::TcpListener) -> std::io::Result<Serving> {
        let rt = self.runtime()?;
        let _enter = rt.enter();
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let proxy = self.proxy.clone();
        let task = rt.spawn(async move { proxy.serve_tcp(listener).await });
        Ok(Serving {
            task: task.abort_handle(),
        })
    }

    /// Serve a bound unix socket listener.
    pub fn serve_unix(
        &self,
        listener: std::os::unix::net::UnixListener,
    ) -> std::io::Result<Serving> {
        let rt = self.runtime()?;
        let _enter = rt.enter();
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        let proxy = self.proxy.clone();
        let task = rt.spawn(async move { proxy.serve_unix(listener).await });
        Ok(Serving {
            task: task.abort_handle(),
        })
    }
}

impl Drop for BackgroundProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Callable from any context, async ones included.
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for BackgroundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundProxy")
            .field("policy", self.proxy.policy())
            .finish_non_exhaustive()
    }
}
