//! A TCP stream the server can cut at any moment, whoever owns it.
//!
//! russh owns a connection's socket from the SSH version exchange on, and
//! its session ignores our disconnect requests until the key exchange is
//! done. A client that sends its version line and then nothing would keep
//! its socket until russh's own inactivity timeout. Cutting the stream
//! underneath makes every read and write fail at once, so the session ends
//! and drops the socket, with a reset (zero linger: no `TIME_WAIT` left on
//! the server for a flood's sockets).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A [`TcpStream`] that fails every read and write once its token is
/// cancelled.
pub struct Severable {
    inner: TcpStream,
    read_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cut: Pin<Box<WaitForCancellationFutureOwned>>,
    cut: bool,
}

impl Severable {
    /// Wraps `inner`; cancelling `token` cuts it.
    pub fn new(inner: TcpStream, token: &CancellationToken) -> Severable {
        Severable {
            inner,
            read_cut: Box::pin(token.clone().cancelled_owned()),
            write_cut: Box::pin(token.clone().cancelled_owned()),
            cut: false,
        }
    }

    fn severed(&mut self) -> io::Error {
        if !self.cut {
            self.cut = true;
            // A reset instead of an orderly close.
            let _ = self.inner.set_zero_linger();
        }
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed by the server (deadline or room for another client)",
        )
    }
}

impl AsyncRead for Severable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.read_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(this.severed()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Severable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(this.severed()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.write_cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(this.severed()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn cutting_fails_a_pending_read_and_the_peer_sees_the_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let token = CancellationToken::new();
        let mut s = Severable::new(server, &token);
        peer.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let mut line = [0u8; 11];
        s.read_exact(&mut line).await.unwrap();
        // A read waiting for data that never comes ends when cut.
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 1];
            let r = s.read(&mut b).await;
            drop(s);
            r
        });
        token.cancel();
        let e = reader.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
        let mut b = [0u8; 1];
        match peer.read(&mut b).await {
            Ok(0) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            Ok(n) => panic!("read {n} bytes from a closed connection"),
        }
    }
}
