//! Accepting client connections: the caps, then one task per connection
//! running hyper's HTTP/1.1 server beside the connection's watchdog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use crate::conn::{ConnState, TimedIo};
use crate::limits::{Limits, Refusal};
use crate::pages;
use crate::proxy::{self, Proxy};
use crate::stats::Counters;
use crate::watchdog;

/// hyper's server settings for client connections.
pub(crate) fn http1_builder(config: &crate::RouterConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.keep_alive(true)
        // A client that half-closes is gone: its request is abandoned.
        .half_close(false)
        // The watchdog times request heads; hyper's own timer would also
        // count the idle time between keep-alive requests.
        .header_read_timeout(None)
        .max_header_size(config.max_header_bytes)
        // What a half-sent head can make the router hold (hyper's default
        // is ~400 KB per connection).
        .max_buf_size(config.max_header_bytes.max(8192));
    b
}

/// Accepts connections on `listener` for ever.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: Arc<Limits>,
    http: http1::Builder,
) {
    let http = Arc::new(http);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, most likely: give closes a moment.
                tracing::warn!(error = %e, "router: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let trusted = proxy.config.is_trusted(peer.ip());
        let slot = match limits.acquire(peer.ip(), trusted) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(&stream, peer, refusal, &proxy.counters);
                continue;
            }
        };
        Counters::bump(&proxy.counters.accepted);
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnState::new(proxy.clone(), peer, trusted, slot));
        tokio::spawn(serve(stream, conn, http.clone()));
    }
}

/// Answers a connection over the caps with a 503, if its socket takes it
/// at once, and closes it; nothing waits on it.
fn refuse(stream: &TcpStream, peer: SocketAddr, refusal: Refusal, counters: &Counters) {
    let counter = match refusal {
        Refusal::AtCapacity => &counters.refused_at_capacity,
        Refusal::PerClient => &counters.refused_per_client,
    };
    Counters::bump(counter);
    tracing::debug!(%peer, ?refusal, "router: connection refused");
    let _ = stream.try_write(pages::TOO_MANY_CONNECTIONS);
}

/// Serves one connection until it closes or its watchdog closes it.
async fn serve(stream: TcpStream, conn: Arc<ConnState>, http: Arc<http1::Builder>) {
    let _watchdog = watchdog::spawn(&conn);
    // hyper's connection holds two 8 KiB buffers from its start: a socket
    // that sends nothing gets neither, only this task and its watchdog
    // (nginx allocates its header buffer the same way). A peek, not
    // `readable()`: an accepted socket counts as readable until a read
    // has found it empty.
    let mut first = [0u8; 1];
    tokio::select! {
        biased;
        why = watchdog::closed(&conn) => {
            tracing::debug!(peer = %conn.peer, ?why, "router: silent connection closed by its deadline");
            return;
        }
        peeked = stream.peek(&mut first) => {
            if !matches!(peeked, Ok(n) if n > 0) {
                return; // closed (or reset) before a byte was sent
            }
        }
    }
    let io = TokioIo::new(TimedIo::new(stream, conn.clone()));
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let conn = service_conn.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy::handle(req, conn).await) }
    });
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::select! {
        biased;
        ended = connection => {
            if let Err(e) = ended {
                tracing::debug!(peer = %conn.peer, error = %e, "router: connection ended with an error");
            }
        }
        why = watchdog::closed(&conn) => {
            tracing::debug!(peer = %conn.peer, ?why, "router: connection closed by its deadline");
        }
    }
}
