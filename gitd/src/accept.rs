//! The accept loop and one task per connection: admission at `accept()`
//! (refused sockets are reset before a byte is sent), then the SSH session
//! on a [`Severable`] socket raced against the connection's deadlines.
//!
//! What happens at each deadline:
//! - **handshake** (no key exchange yet): the socket is cut; nothing can be
//!   said to a client before the key exchange.
//! - **login** (key exchange done, not authenticated): the reason is sent
//!   as an SSH disconnect, and the socket is cut at most
//!   [`DISCONNECT_GRACE`] later, whether the client left or not.
//! - **idle** (authenticated, no command): a disconnect with the reason;
//!   the socket is cut if the client has not left [`IDLE_GRACE`] later.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admission::{Source, Ticket};
use crate::limits::{self, Closing, ConnState, Deadlines};
use crate::severable::Severable;
use crate::{ssh, Shared};

/// How long a client told why it is disconnected at the login deadline
/// has to leave before its socket is cut.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// The same after the idle timeout (an authenticated client, so a little
/// more patience).
pub const IDLE_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    ssh_config: Arc<russh::server::Config>,
    shared: Arc<Shared>,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::error!(error = %e, "gitd: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let kill = CancellationToken::new();
        let admitted = match shared.admission.admit(Source::of(peer.ip()), kill.clone()) {
            Ok(a) => a,
            Err(refusal) => {
                let _ = socket.set_zero_linger();
                drop(socket);
                shared.warn.warn(peer, &refusal);
                continue;
            }
        };
        if let Some(victim) = admitted.displaced {
            shared.warn.warn(
                peer,
                &format_args!(
                    "the handshake pool is full: the oldest handshake from {victim} was closed to make room"
                ),
            );
        }
        let (shared, ssh_config) = (shared.clone(), ssh_config.clone());
        tokio::spawn(connection(
            shared,
            ssh_config,
            socket,
            peer,
            admitted.ticket,
            kill,
        ));
    }
}

async fn connection(
    shared: Arc<Shared>,
    ssh_config: Arc<russh::server::Config>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    kill: CancellationToken,
) {
    let _ = socket.set_nodelay(true);
    let state = Arc::new(ConnState::default());
    let stream = Severable::new(socket, &kill);
    let handler = ssh::Connection::new(shared.clone(), Some(peer), state.clone(), ticket);
    let deadlines = Deadlines {
        handshake: shared.config.handshake_timeout,
        login: shared.config.login_timeout,
        idle: shared.config.idle_timeout,
    };
    let watchdog = limits::watchdog(&state, deadlines);
    let mut watchdog = std::pin::pin!(watchdog);
    // Until the client's version line: russh reads it in `run_stream`.
    let session = tokio::select! {
        s = russh::server::run_stream(ssh_config, stream, handler) => match s {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "gitd: handshake failed");
                return;
            }
        },
        closing = &mut watchdog => {
            cut(&shared, peer, closing, &kill);
            return;
        }
        () = kill.cancelled() => return, // displaced
    };
    let handle = session.handle();
    let mut session = std::pin::pin!(session);
    tokio::select! {
        r = &mut session => {
            if let Err(e) = r {
                tracing::debug!(?peer, error = %e, "gitd: session ended with an error");
            }
        }
        closing = &mut watchdog => match closing {
            Closing::Handshake(_) => cut(&shared, peer, closing, &kill),
            Closing::Login(_) => {
                let told = async {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, closing.reason(), String::new())
                        .await;
                    let _ = (&mut session).await;
                };
                let _ = tokio::time::timeout(DISCONNECT_GRACE, told).await;
                cut(&shared, peer, closing, &kill);
            }
            Closing::Idle(_) => {
                tracing::info!(?peer, reason = %closing.reason(), "gitd: closing connection");
                let told = async {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, closing.reason(), String::new())
                        .await;
                    let _ = (&mut session).await;
                };
                // A client that does not leave when told is cut.
                if tokio::time::timeout(IDLE_GRACE, told).await.is_err() {
                    kill.cancel();
                }
            }
        },
        () = kill.cancelled() => {} // displaced
    }
}

/// Closes the socket at a handshake or login deadline, counted and logged
/// (rate-limited: a flood of these is what an attack looks like).
fn cut(shared: &Shared, peer: SocketAddr, closing: Closing, kill: &CancellationToken) {
    use std::sync::atomic::Ordering::Relaxed;
    match closing {
        Closing::Handshake(_) => shared.admission.handshake_deadline.fetch_add(1, Relaxed),
        Closing::Login(_) => shared.admission.login_deadline.fetch_add(1, Relaxed),
        Closing::Idle(_) => 0,
    };
    kill.cancel();
    shared.warn.warn(peer, &closing.reason());
}
