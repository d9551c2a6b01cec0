//! Each connection's deadlines, kept by a task of its own so that nothing
//! on the request path arms or polls a timer: the watchdog sleeps until
//! the nearest deadline, and when one passes it raises a [`Signal`] that
//! the connection (close) or the waiting request (504) polls — an atomic
//! load and a waker registration, no lock.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use atomic_waker::AtomicWaker;

use crate::conn::ConnState;
use crate::stats::Counters;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// A request head did not arrive whole in time.
    SlowHead = 1,
    /// Nothing moved for `idle_timeout`.
    Idle = 2,
}

/// What passing a phase's deadline means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Close the connection.
    Close(Closed),
    /// Tell the waiting request the app is too slow.
    UpstreamTimeout,
}

/// A flag one task raises and another polls.
#[derive(Default)]
pub(crate) struct Signal {
    /// 0 while lowered; else what was raised.
    raised: AtomicU8,
    waker: AtomicWaker,
}

impl Signal {
    fn raise(&self, what: u8) {
        self.raised.store(what, Ordering::Release);
        self.waker.wake();
    }

    /// Ready with what was raised, lowering it.
    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<u8> {
        // Registered before looking, so a raise in between still wakes us.
        self.waker.register(cx.waker());
        match self.raised.swap(0, Ordering::AcqRel) {
            0 => Poll::Pending,
            what => Poll::Ready(what),
        }
    }
}

/// Resolves when the watchdog has closed the connection, with why.
pub(crate) fn closed(conn: &ConnState) -> impl Future<Output = Closed> + '_ {
    std::future::poll_fn(move |cx| {
        conn.close.poll_take(cx).map(|what| {
            if what == Closed::SlowHead as u8 {
                Closed::SlowHead
            } else {
                Closed::Idle
            }
        })
    })
}

/// Resolves when the app's response head is overdue: the watchdog's word,
/// checked again here (a request that started since may be the one
/// waiting now).
pub(crate) fn upstream_overdue(conn: &ConnState) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| loop {
        match conn.upstream_due.poll_take(cx) {
            Poll::Ready(_) if conn.upstream_overdue() => return Poll::Ready(()),
            Poll::Ready(_) => continue,
            Poll::Pending => return Poll::Pending,
        }
    })
}

/// The watchdog task of a connection, stopped when dropped.
pub(crate) struct Watchdog(tokio::task::JoinHandle<()>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts `conn`'s watchdog. It naps at most
/// `min(header_read_timeout, idle_timeout, upstream_response_timeout)`, so a
/// phase change it slept through is looked at within that.
pub(crate) fn spawn(conn: &Arc<ConnState>) -> Watchdog {
    let conn = conn.clone();
    Watchdog(tokio::spawn(async move {
        let config = &conn.proxy.config;
        let longest_nap = config
            .header_read_timeout
            .min(config.idle_timeout)
            .min(config.upstream_response_timeout)
            .max(Duration::from_millis(10));
        loop {
            let now = conn.now_ms();
            let (deadline, due) = conn.deadline();
            let nap = if now < deadline {
                Duration::from_millis(deadline - now).min(longest_nap)
            } else {
                match due {
                    Due::Close(why) => {
                        let counters = &conn.proxy.counters;
                        Counters::bump(match why {
                            Closed::SlowHead => &counters.closed_slow_head,
                            Closed::Idle => &counters.closed_idle,
                        });
                        conn.close.raise(why as u8);
                        return;
                    }
                    Due::UpstreamTimeout => {
                        conn.upstream_due.raise(1);
                        longest_nap
                    }
                }
            };
            tokio::time::sleep(nap).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_is_taken_once() {
        let signal = Signal::default();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(signal.poll_take(&mut cx), Poll::Pending);
        signal.raise(2);
        assert_eq!(signal.poll_take(&mut cx), Poll::Ready(2));
        assert_eq!(signal.poll_take(&mut cx), Poll::Pending);
    }
}
