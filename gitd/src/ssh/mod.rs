//! The SSH side: russh session handler, public-key authentication against
//! the [`Authority`](crate::Authority), the authenticated budget from
//! [`crate::admission`], `GIT_PROTOCOL` from env requests, exec requests
//! dispatched to the git services or the admin
//! [`Commands`](crate::Commands) ([`exec`]), and everything else refused
//! at once with a reply, so no client waits on a request that will never
//! be served:
//!
//! | request | answer |
//! | --- | --- |
//! | `subsystem` (`ssh -s sftp`) | a stderr line saying what this server does, exit status 1, channel closed (the request itself gets a success reply: OpenSSH exits on a failure reply before printing the message) |
//! | `pty-req` (`ssh -t`) | success, and the terminal's name and size are kept for the channel (`window-change` updates them): an admin command gets them, with the client's stdin, through [`Commands::run_interactive`](crate::Commands::run_interactive), and runs as without a terminal if it does not implement it (so `ssh -t git@host logs -f APP` works); a git service ignores them. A `TERM` that is no terminfo name becomes `dumb`, and the command's stderr says so first (OpenSSH gives up on a failed `-t` with a message that does not say why). Failure on a channel already running a command |
//! | `x11-req` (`ssh -X`), `auth-agent-req` (`ssh -A`) | failure (OpenSSH prints "X11 forwarding request failed"; agent requests want no reply), the command still runs |
//! | `tcpip-forward` (`-R`), `streamlocal-forward`, channel opens `direct-tcpip` (`-L`, `-D`), `direct-streamlocal`, `x11`, `forwarded-tcpip` | refused; on a connection that has run no command, disconnected with the reason |

mod channel_io;
mod exec;
mod input;
mod pending;

pub(crate) use input::NORMAL_WINDOW;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};

use crate::admission::Ticket;
use crate::limits::{ConnState, HARD_EXTRA};
use crate::terminal::{Tty, WindowSize};
use crate::{wording, Shared};

/// Most session channels one connection may open.
const MAX_CHANNELS: usize = 8;

/// One client connection.
pub struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    user: Option<String>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    git_protocol: HashMap<ChannelId, String>,
    /// Terminals asked for, with a note for the client when its request
    /// was changed.
    ttys: HashMap<ChannelId, (Tty, Option<String>)>,
    over_limit: bool,
    state: Arc<ConnState>,
    ticket: Ticket,
    /// The window granted for the client's data (see `input`).
    input_window: Arc<input::InputWindow>,
}

impl Connection {
    /// A handler for a new client holding `ticket` (its place in the
    /// connection budget).
    pub fn new(
        shared: Arc<Shared>,
        peer: Option<SocketAddr>,
        state: Arc<ConnState>,
        ticket: Ticket,
    ) -> Connection {
        Connection {
            shared,
            peer,
            user: None,
            channels: HashMap::new(),
            git_protocol: HashMap::new(),
            ttys: HashMap::new(),
            input_window: Arc::default(),
            over_limit: false,
            state,
            ticket,
        }
    }

    /// A forwarding request on a connection that has run nothing is all
    /// the connection is for: end it with the reason rather than let it
    /// hold a slot until the idle timeout.
    fn refuse_forwarding(&self, what: &str, session: &mut Session) -> Result<(), russh::Error> {
        tracing::info!(peer = ?self.peer, user = ?self.user, what, "gitd: forwarding refused");
        if !self.state.ran_anything() && self.channels.is_empty() {
            session.disconnect(
                russh::Disconnect::ByApplication,
                &wording::forwarding_refused(),
                "",
            )?;
        }
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    /// russh asks after each window adjustment it sent: a channel whose
    /// command has fallen behind on its stdin shrinks the next ones, so
    /// less input is on its way (see `input::InputWindow`).
    fn adjust_window(&mut self, _channel: ChannelId, _current: u32) -> u32 {
        self.input_window.target()
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.state.handshake_done();
        Ok(Auth::reject())
    }

    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        self.state.handshake_done();
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.state.handshake_done();
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.state.handshake_done();
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        match self.shared.authority.user_for_key(&fingerprint).await {
            Ok(Some(user)) => {
                self.over_limit = !self.ticket.authenticated();
                tracing::info!(peer = ?self.peer, %user, over_limit = self.over_limit, "gitd: authenticated");
                self.user = Some(user);
                self.state.authenticated();
                Ok(Auth::Accept)
            }
            Ok(None) => {
                tracing::info!(peer = ?self.peer, %fingerprint, "gitd: unknown key refused");
                Ok(Auth::reject())
            }
            Err(e) => {
                tracing::error!(error = %crate::wording::chain(&e), "gitd: key lookup failed");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        // Far over the budget, not even a channel to say so on.
        if self.over_limit && self.ticket.over_limit_now() > HARD_EXTRA {
            let max = self.shared.config.max_connections;
            session.disconnect(
                russh::Disconnect::TooManyConnections,
                &wording::connection_limit(max),
                "",
            )?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.state.touch();
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse_forwarding("direct-tcpip", session)
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _path: &str,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse_forwarding("direct-streamlocal", session)
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse_forwarding("x11 channel", session)
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        self.refuse_forwarding("forwarded-tcpip", session)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_forwarding("tcpip-forward", session)?;
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _path: &str,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse_forwarding("streamlocal-forward", session)?;
        Ok(false)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only a channel that has not started its command can get one
        // (`self.channels` holds exactly those).
        if !self.channels.contains_key(&channel) {
            session.channel_failure(channel)?;
            return Ok(());
        }
        let granted = match Tty::from_request(term, col_width, row_height) {
            Ok(tty) => (tty, None),
            Err(e) => {
                tracing::info!(peer = ?self.peer, term = %term.escape_default(), error = %e, "gitd: pty request with a bad TERM");
                let tty = Tty {
                    term: crate::terminal::FALLBACK_TERM.into(),
                    size: WindowSize::clamped(col_width, row_height),
                };
                (tty, Some(wording::bad_term(term, &e)))
            }
        };
        self.ttys.insert(channel, granted);
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Before the command starts; after, the channel's own messages
        // carry the change to the command (`exec::forward_input`).
        if let Some((tty, _)) = self.ttys.get_mut(&channel) {
            tty.size = WindowSize::clamped(col_width, row_height);
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = ?self.peer, subsystem = %name.escape_default(), "gitd: subsystem refused");
        // OpenSSH exits the moment it reads a failure reply, before it
        // prints stderr data that came with it; so the request is
        // answered with success and the refusal is the message and exit
        // status 1 (an sftp client then reports the closed connection).
        session.channel_success(id)?;
        let message = format!("{}\n", wording::unsupported_subsystem(name));
        session.extended_data(id, 1, message.into_bytes())?;
        session.exit_status_request(id, 1)?;
        session.eof(id)?;
        session.close(id)?;
        self.channels.remove(&id);
        self.ttys.remove(&id);
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "GIT_PROTOCOL" && value.len() < 256 {
            self.git_protocol.insert(channel, value.to_string());
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = if self.over_limit { "" } else { "help" };
        self.start(id, line.as_bytes().to_vec(), session)
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(id, data.to_vec(), session)
    }
}

impl Connection {
    /// Runs `line` on channel `id` in its own task; the exit status and
    /// close follow when it ends.
    fn start(
        &mut self,
        id: ChannelId,
        line: Vec<u8>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (Some(channel), Some(user)) = (self.channels.remove(&id), self.user.clone()) else {
            session.channel_failure(id)?;
            return Ok(());
        };
        session.channel_success(id)?;
        let handle = session.handle();
        let shared = self.shared.clone();
        let protocol = self.git_protocol.remove(&id).unwrap_or_default();
        let (tty, tty_note) = self.ttys.remove(&id).unzip();
        let running = self.state.running();
        let over_limit = self.over_limit;
        let input_window = self.input_window.clone();
        tokio::spawn(async move {
            let (code, keep) = if over_limit {
                let max = shared.config.max_connections;
                exec::stderr(&handle, id, &wording::connection_limit(max)).await;
                (1, Some(Box::new(channel) as exec::Keep))
            } else {
                let exec = exec::Exec {
                    shared: &shared,
                    user: &user,
                    git_protocol: &protocol,
                    tty,
                    tty_note: tty_note.flatten(),
                    handle: &handle,
                    id,
                    input_window,
                };
                exec.run(&line, channel).await
            };
            // The channel's streams live until the exit status is sent: an
            // EOF before exit-status makes OpenSSH report status -1.
            exec::finish(&handle, id, code).await;
            drop(keep);
            drop(running);
        });
        Ok(())
    }
}
