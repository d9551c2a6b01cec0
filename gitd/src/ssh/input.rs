//! The client's side of a running admin command's channel: stdin to the
//! command, window changes, the client leaving.
//!
//! Why this is more than a loop that forwards packets: russh (0.65)
//! grants the client SSH window as data ARRIVES, not as it is consumed,
//! and hands each packet to the channel with an awaited send inside its
//! one session loop. So the only way to hold a flood back is to stop
//! taking the channel's messages; russh's per-channel queue then fills
//! and its loop stops reading the socket. But that loop also carries the
//! connection's OUTPUT (and the client's window adjustments for it): a
//! command that must write before it reads on (an echo, `cat`, a pty
//! relay) would wait for the loop while the loop waits for the command.
//!
//! Hence the rule ([`PendingInput`]): hold input back only while no
//! output write of the command is waiting ([`WaitingWrites`]). While one
//! is, keep taking the channel's messages into a pending buffer so the
//! loop can move the output; past [`MAX_UNREAD_INPUT`] pending bytes the
//! command's input ends (it gets what piled up, then end-of-file), the
//! rest of the client's stdin is dropped and the client is told once on
//! stderr.
//!
//! Taking input in whenever output waits is not enough on its own: an
//! echoing command's output waits for the client's window adjustments,
//! which come behind all the input the client had room to send, so with
//! russh's 2 MiB window the buffer grew to 20-30 MiB while 48 MiB were
//! echoed. So a channel whose buffer is backlogged ([`BACKLOG_BYTES`])
//! makes russh grant [`BACKLOG_WINDOW`] instead ([`InputWindow`], via
//! `Handler::adjust_window`): then at most ~4.5 MiB pile up (measured,
//! also on a busy machine).
//!
//! Decision: the design asked for first (count the writes in flight)
//! would also take input in while a write is merely being handed over;
//! a write counts here only once it did not complete at its first poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::pending::PendingInput;
use crate::terminal::{WindowSize, MAX_UNREAD_INPUT, QUEUED_INPUT_PACKETS};
use crate::wording;

/// The SSH window gitd grants a client for its data while no channel of
/// the connection is backlogged (russh's default; pushes need it on
/// links with a long round trip).
pub(crate) const NORMAL_WINDOW: u32 = 2 << 20;

/// The window granted while a channel of the connection is backlogged.
/// russh grants window as data arrives, so this is what bounds how much
/// input is on its way while a command falls behind: the input the
/// session loop must take in to reach the client's next window
/// adjustment for the command's OUTPUT.
pub(crate) const BACKLOG_WINDOW: u32 = 64 << 10;

/// Pending stdin beyond which a channel counts as backlogged.
pub(crate) const BACKLOG_BYTES: usize = 512 << 10;

/// Per connection: how many of its channels have stdin backlogged, which
/// decides the window russh grants next (`Handler::adjust_window`; russh
/// keeps one target per connection, so a backlogged channel also slows
/// the input of the connection's other channels until it catches up).
#[derive(Debug, Default)]
pub(crate) struct InputWindow {
    backlogged: AtomicUsize,
}

impl InputWindow {
    /// The window to grant from now on.
    pub(crate) fn target(&self) -> u32 {
        if self.backlogged.load(Ordering::SeqCst) > 0 {
            BACKLOG_WINDOW
        } else {
            NORMAL_WINDOW
        }
    }
}

/// Counts the command's output writes that are waiting (did not
/// complete when first polled): the session loop may be needed for them.
#[derive(Debug, Clone)]
pub(crate) struct WaitingWrites(Arc<watch::Sender<usize>>);

impl WaitingWrites {
    pub(crate) fn new() -> WaitingWrites {
        WaitingWrites(Arc::new(watch::channel(0).0))
    }

    fn subscribe(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }

    /// Runs `write`, counted as waiting from its first `Pending` until it
    /// completes or is dropped.
    pub(crate) async fn track<F: Future>(&self, write: F) -> F::Output {
        struct Counted<'a>(&'a watch::Sender<usize>, bool);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.send_modify(|n| *n -= 1);
                }
            }
        }
        let mut write = std::pin::pin!(write);
        let mut counted = Counted(&self.0, false);
        std::future::poll_fn(|cx| match write.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(v),
            Poll::Pending => {
                if !counted.1 {
                    counted.1 = true;
                    counted.0.send_modify(|n| *n += 1);
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// How [`InputPump::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client closed the channel or the connection dropped.
    ClientLeft,
    /// The notice to the client was handed to the session
    /// ([`Until::NoticeSent`]).
    NoticeSent,
}

/// When [`InputPump::run`] returns besides the client leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Only then.
    ClientLeaves,
    /// Also once no notice to the client is on its way.
    NoticeSent,
}

type Notice = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Passes the client's channel messages to a running admin command:
/// stdin data to `input` until the client's EOF (later data is dropped,
/// as is all of it once the command drops its receiver), window changes
/// to `window`. All its state lives here, so [`InputPump::run`] can be
/// dropped at any await and run again (after the command ended, to keep
/// the session loop moving until the exit status is sent).
pub(crate) struct InputPump {
    channel: Channel<Msg>,
    handle: Handle,
    id: ChannelId,
    input: Option<mpsc::Sender<Bytes>>,
    /// The input ends once `pending` is delivered (client EOF, or cut).
    ending: bool,
    pending: PendingInput,
    window: watch::Sender<WindowSize>,
    writes: watch::Receiver<usize>,
    /// Keeps `writes` open (a closed watch would wake the loop forever).
    _writer_count: WaitingWrites,
    /// A command that leaves a full queue unread this long gets no more
    /// input (the idle timeout).
    stall: Duration,
    stalled_since: Option<Instant>,
    notice: Option<Notice>,
    /// Most bytes pending at once (logged: how much a flood cost).
    peak: usize,
    input_window: Arc<InputWindow>,
    /// Counted in `input_window`.
    backlogged: bool,
}

impl InputPump {
    /// A pump for `channel`, and the command's ends: its stdin (at most
    /// [`QUEUED_INPUT_PACKETS`] queued) and its window size (starting at
    /// `size`).
    pub(crate) fn new(
        channel: Channel<Msg>,
        handle: Handle,
        id: ChannelId,
        size: WindowSize,
        writes: &WaitingWrites,
        stall: Duration,
        input_window: Arc<InputWindow>,
    ) -> (
        InputPump,
        mpsc::Receiver<Bytes>,
        watch::Receiver<WindowSize>,
    ) {
        let (input, input_rx) = mpsc::channel(QUEUED_INPUT_PACKETS);
        let (window, window_rx) = watch::channel(size);
        let pump = InputPump {
            channel,
            handle,
            id,
            input: Some(input),
            ending: false,
            pending: PendingInput::new(MAX_UNREAD_INPUT),
            window,
            writes: writes.subscribe(),
            _writer_count: writes.clone(),
            stall,
            stalled_since: None,
            notice: None,
            peak: 0,
            input_window,
            backlogged: false,
        };
        (pump, input_rx, window_rx)
    }

    /// Counts this channel as backlogged (or not) for the window.
    fn note_backlog(&mut self) {
        let now = self.pending.bytes() > BACKLOG_BYTES;
        if now != self.backlogged {
            self.backlogged = now;
            if now {
                self.input_window.backlogged.fetch_add(1, Ordering::SeqCst);
            } else {
                self.input_window.backlogged.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// The command ended: from now on its stdin is discarded as it
    /// arrives.
    pub(crate) fn command_ended(&mut self) {
        if self.peak > 0 {
            tracing::debug!(
                peak = self.peak,
                "gitd: most stdin bytes pending for the command"
            );
            self.peak = 0;
        }
        self.end_input();
    }

    fn end_input(&mut self) {
        self.input = None;
        self.pending.clear();
        self.note_backlog();
        self.stalled_since = None;
    }

    /// Moves messages until the client leaves (or, with
    /// [`Until::NoticeSent`], until no notice is on its way).
    pub(crate) async fn run(&mut self, until: Until) -> Ended {
        loop {
            if until == Until::NoticeSent && self.notice.is_none() {
                return Ended::NoticeSent;
            }
            if self.ending && self.pending.is_empty() {
                self.input = None; // the command sees end-of-file
            }
            let output_waiting = *self.writes.borrow_and_update() > 0;
            let deliver = self.input.is_some() && !self.pending.is_empty();
            // Without a command to give it to, data is discarded as it
            // arrives; with one, `pending` decides.
            let read = self.input.is_none() || self.pending.may_read(output_waiting);
            if deliver && self.stalled_since.is_none() {
                self.stalled_since = Some(Instant::now());
            }
            let stall_at = self.stalled_since.map(|t| t + self.stall);
            let (input, notice, channel, writes) = (
                &self.input,
                &mut self.notice,
                &mut self.channel,
                &mut self.writes,
            );
            let pending = &mut self.pending;
            let event = tokio::select! {
                biased;
                room = async { input.as_ref().expect("deliver needs input").reserve().await }, if deliver => {
                    match room {
                        Ok(permit) => {
                            if let Some(data) = pending.pop() {
                                permit.send(data);
                            }
                            Event::Delivered
                        }
                        Err(_) => Event::CommandWantsNoMore,
                    }
                }
                () = async { notice.as_mut().expect("checked").await }, if notice.is_some() => Event::NoticeSent,
                msg = channel.wait(), if read => Event::Message(msg),
                _ = writes.changed(), if !read => Event::OutputChanged,
                () = tokio::time::sleep_until(stall_at.unwrap_or_else(Instant::now)), if stall_at.is_some() => Event::Stalled,
            };
            match event {
                Event::Delivered => {
                    self.stalled_since = None;
                    self.note_backlog();
                }
                Event::CommandWantsNoMore => self.end_input(),
                Event::NoticeSent => self.notice = None,
                Event::OutputChanged => {}
                Event::Stalled => {
                    tracing::info!(
                        stall = ?self.stall,
                        "gitd: an admin command left its stdin unread; the rest is dropped"
                    );
                    self.end_input();
                }
                Event::Message(None) | Event::Message(Some(ChannelMsg::Close)) => {
                    return Ended::ClientLeft
                }
                Event::Message(Some(msg)) => self.take(msg),
            }
        }
    }

    fn take(&mut self, msg: ChannelMsg) {
        match msg {
            ChannelMsg::Data { data } => {
                if self.input.is_none() || self.ending {
                    return;
                }
                let pushed = self.pending.push(data);
                self.peak = self.peak.max(self.pending.bytes());
                self.note_backlog();
                if let Err(over) = pushed {
                    tracing::info!(
                        pending = over.pending,
                        "gitd: an admin command wrote output without reading its stdin; its input is cut"
                    );
                    self.ending = true;
                    let handle = self.handle.clone();
                    let id = self.id;
                    let text = format!("{}\n", wording::unread_input(MAX_UNREAD_INPUT));
                    self.notice = Some(Box::pin(async move {
                        let _ = handle.extended_data(id, 1, text.into_bytes()).await;
                    }));
                }
            }
            ChannelMsg::Eof => self.ending = true,
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            } => {
                self.window
                    .send_replace(WindowSize::clamped(col_width, row_height));
            }
            // The pty request itself (kept by the handler), stderr data
            // from the client (meaningless), anything else.
            _ => {}
        }
    }
}

impl Drop for InputPump {
    fn drop(&mut self) {
        self.pending.clear();
        self.note_backlog();
    }
}

enum Event {
    Delivered,
    CommandWantsNoMore,
    NoticeSent,
    OutputChanged,
    Stalled,
    Message(Option<ChannelMsg>),
}

/// After the command: keeps taking (and dropping) the channel's messages
/// so the session loop can send the exit status; stops when dropped.
pub(crate) struct Draining(tokio::task::JoinHandle<()>);

impl Draining {
    pub(crate) fn start(mut pump: InputPump) -> Draining {
        pump.command_ended();
        Draining(tokio::spawn(async move {
            pump.run(Until::ClientLeaves).await;
        }))
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlogged_channel_shrinks_the_window_until_it_catches_up() {
        let w = InputWindow::default();
        assert_eq!(w.target(), NORMAL_WINDOW);
        w.backlogged.fetch_add(1, Ordering::SeqCst);
        assert_eq!(w.target(), BACKLOG_WINDOW);
        w.backlogged.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(w.target(), NORMAL_WINDOW);
    }

    #[tokio::test]
    async fn a_write_counts_as_waiting_only_while_it_waits() {
        let writes = WaitingWrites::new();
        let rx = writes.subscribe();
        writes.track(async {}).await;
        assert_eq!(
            *rx.borrow(),
            0,
            "a write that completes at once never waits"
        );
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let w = writes.clone();
        let task = tokio::spawn(async move { w.track(gate).await });
        let mut rx2 = rx.clone();
        rx2.wait_for(|n| *n == 1).await.unwrap();
        go.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert_eq!(*rx.borrow(), 0);
        // Dropped while waiting: no longer counted.
        let (_keep, gate) = tokio::sync::oneshot::channel::<()>();
        let w = writes.clone();
        let task = tokio::spawn(async move { w.track(gate).await });
        rx2.wait_for(|n| *n == 1).await.unwrap();
        task.abort();
        rx2.wait_for(|n| *n == 0).await.unwrap();
    }
}
