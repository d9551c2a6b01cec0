//! A session channel as a byte stream for a git service, plus a token
//! that says when the client has left.
//!
//! russh's own `ChannelStream` ends the read side at the client's EOF and
//! swallows the channel's close, so a service that is not reading (a
//! push waiting on its deploy) could not tell "the client sent all it
//! will send" from "the client is gone". Here a small task owns the
//! channel's read half: data goes to the reader, EOF ends the reader's
//! stream, and a close of the channel (or the end of the connection,
//! which drops the channel) cancels the token.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Packets queued between the channel and a reader that is busy.
const QUEUED_PACKETS: usize = 16;

/// The channel's data as [`AsyncRead`] and its output as [`AsyncWrite`].
pub struct ChannelIo {
    input: mpsc::Receiver<Bytes>,
    pending: Bytes,
    output: Pin<Box<dyn AsyncWrite + Send>>,
    pump: tokio::task::JoinHandle<()>,
}

impl ChannelIo {
    /// Takes over `channel`; the token is cancelled when the client closes
    /// it or the connection ends.
    pub fn new(channel: Channel<Msg>) -> (ChannelIo, CancellationToken) {
        let output = Box::pin(channel.make_writer());
        let (mut read, _write) = channel.split();
        let gone = CancellationToken::new();
        let (tx, input) = mpsc::channel(QUEUED_PACKETS);
        let pump = tokio::spawn({
            let gone = gone.clone();
            async move {
                let mut tx = Some(tx);
                loop {
                    match read.wait().await {
                        Some(ChannelMsg::Data { data }) => {
                            if let Some(t) = &tx {
                                if t.send(data).await.is_err() {
                                    tx = None; // the reader is done
                                }
                            }
                        }
                        Some(ChannelMsg::Eof) => tx = None,
                        Some(ChannelMsg::Close) | None => break,
                        Some(_) => {}
                    }
                }
                gone.cancel();
            }
        });
        let io = ChannelIo {
            input,
            pending: Bytes::new(),
            output,
            pump,
        };
        (io, gone)
    }
}

impl Drop for ChannelIo {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl AsyncRead for ChannelIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match ready!(this.input.poll_recv(cx)) {
                Some(data) => this.pending = data,
                None => return Poll::Ready(Ok(())), // EOF
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ChannelIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.output.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.output.as_mut().poll_shutdown(cx)
    }
}
