//! Requests OpenSSH never sends, from a russh client playing the
//! attacker against an interactive admin command: data after EOF, a
//! window of 4 billion columns, a second terminal request on a channel
//! whose command already runs. Timings are hang guards only.

mod support;

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::ChannelMsg;
use support::probe::Probe;
use support::*;

/// A hang guard.
const GUARD: Duration = Duration::from_secs(60);

struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An authenticated session as the test key's owner.
async fn connect(s: &Server) -> client::Handle<AnyHostKey> {
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, ("127.0.0.1", s.port), AnyHostKey)
        .await
        .unwrap();
    let key = russh::keys::load_secret_key(&s.key, None).unwrap();
    let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None);
    let auth = session.authenticate_publickey("git", key).await.unwrap();
    assert!(auth.success(), "the test key is refused");
    session
}

/// What came back on a channel so far.
#[derive(Default, Debug)]
struct Reply {
    stdout: Vec<u8>,
    exit: Option<u32>,
    failures: usize,
    closed: bool,
}

impl Reply {
    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Reads `channel` into `r` until `done` holds for it or the channel
/// closes.
async fn read_until(
    channel: &mut russh::ChannelReadHalf,
    r: &mut Reply,
    done: impl Fn(&Reply) -> bool,
) {
    while !done(r) && !r.closed {
        let msg = tokio::time::timeout(GUARD, channel.wait())
            .await
            .unwrap_or_else(|_| panic!("hang guard: {r:?} {}", r.shown()));
        match msg {
            Some(ChannelMsg::Data { data }) => r.stdout.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => r.exit = Some(exit_status),
            Some(ChannelMsg::Failure) => r.failures += 1,
            Some(ChannelMsg::Close) | None => r.closed = true,
            Some(_) => {}
        }
    }
}

#[test]
fn data_after_eof_is_dropped() {
    let s = Server::start_with(|_| {}, Probe::new());
    s.runtime.block_on(async {
        let session = connect(&s).await;
        let (mut rd, wr) = session.channel_open_session().await.unwrap().split();
        wr.exec(true, "echo").await.unwrap();
        wr.data_bytes(&b"before"[..]).await.unwrap();
        wr.eof().await.unwrap();
        wr.data_bytes(&b"after"[..]).await.unwrap();
        let mut r = Reply::default();
        read_until(&mut rd, &mut r, |_| false).await;
        assert_eq!(r.shown(), "tty: none\r\nbefore[eof]\r\n");
        assert_eq!(r.exit, Some(0));
    });
}

#[test]
fn huge_sizes_are_clamped_and_a_late_pty_request_is_refused() {
    let s = Server::start_with(|_| {}, Probe::new());
    s.runtime.block_on(async {
        let session = connect(&s).await;
        let (mut rd, wr) = session.channel_open_session().await.unwrap().split();
        let huge = u32::MAX;
        wr.request_pty(true, "xterm", huge, huge, huge, huge, &[])
            .await
            .unwrap();
        wr.exec(true, "winch").await.unwrap();
        let mut r = Reply::default();
        let has = |text: &'static str| move |r: &Reply| r.shown().contains(text);
        read_until(&mut rd, &mut r, has("tty: xterm 10000x10000\r\n")).await;
        wr.window_change(huge, 5, huge, huge).await.unwrap();
        read_until(&mut rd, &mut r, has("size 10000x5\r\n")).await;
        // A terminal for a command that already runs: refused, and the
        // command goes on with the one it has.
        wr.request_pty(true, "vt100", 80, 24, 0, 0, &[])
            .await
            .unwrap();
        read_until(&mut rd, &mut r, |r| r.failures == 1).await;
        wr.window_change(81, 25, 0, 0).await.unwrap();
        read_until(&mut rd, &mut r, has("size 81x25\r\n")).await;
        wr.data_bytes(&b"q"[..]).await.unwrap();
        read_until(&mut rd, &mut r, |_| false).await;
        assert_eq!(r.failures, 1, "{}", r.shown());
        assert_eq!(r.exit, Some(0), "{}", r.shown());
        assert!(!r.shown().contains("vt100"), "{}", r.shown());
    });
}
