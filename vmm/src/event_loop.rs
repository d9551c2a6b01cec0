//! The VMM's single event loop thread (`vmm-events`): one epoll set holding every
//! host-side event source — virtio queue notifications (ioeventfds KVM signals when
//! the guest writes `QueueNotify`), vsock Unix sockets, serial console input — so
//! device work never runs on a vCPU thread and never needs a thread per source.
//!
//! Each source owns a [`Poller`]: a handle on the shared epoll set that stamps the
//! source's index into the high half of every registered token. The loop hands an
//! event back to its source's [`EventHandler`] with the low half.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// A host-side event source served by the loop.
pub trait EventHandler: Send + Sync {
    /// `token` is what the source registered (low 32 bits), `events` what epoll reported.
    fn handle(&self, token: u32, events: EventSet);
}

/// Registration handle for one source; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct Poller {
    epoll: Arc<Epoll>,
    source: u32,
}

impl Poller {
    fn data(&self, token: u32) -> u64 {
        (u64::from(self.source) << 32) | u64::from(token)
    }

    /// Watches `fd` for `events`; epoll reports it to this source with `token`.
    pub fn add(&self, fd: RawFd, token: u32, events: EventSet) -> std::io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(events, self.data(token)),
        )
    }

    /// Changes the events watched on `fd` (already added by this source).
    pub fn modify(&self, fd: RawFd, token: u32, events: EventSet) -> std::io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(events, self.data(token)),
        )
    }

    /// Stops watching `fd`. Closing the fd has the same effect; this is for fds
    /// that stay open.
    pub fn remove(&self, fd: RawFd) -> std::io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
    }
}

/// Source index reserved for the loop's own exit eventfd.
const EXIT_SOURCE: u32 = 0;

/// The epoll set and its sources, before the loop thread takes it over.
pub struct EventLoop {
    epoll: Arc<Epoll>,
    handlers: Vec<Arc<dyn EventHandler>>,
    exit: EventFd,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("sources", &self.handlers.len())
            .finish()
    }
}

/// Asks a running loop to return (from any thread).
#[derive(Debug)]
pub struct LoopExit(EventFd);

impl LoopExit {
    /// Makes [`EventLoop::run`] return after the events it is handling.
    pub fn trigger(&self) {
        if let Err(e) = self.0.write(1) {
            tracing::warn!(error = %e, "cannot signal the event loop to exit");
        }
    }
}

impl EventLoop {
    /// A new, empty loop.
    pub fn new() -> std::io::Result<Self> {
        let epoll = Arc::new(Epoll::new()?);
        let exit = EventFd::new(libc::EFD_NONBLOCK)?;
        epoll.ctl(
            ControlOperation::Add,
            exit.as_raw_fd(),
            EpollEvent::new(EventSet::IN, u64::from(EXIT_SOURCE) << 32),
        )?;
        Ok(Self {
            epoll,
            handlers: Vec::new(),
            exit,
        })
    }

    /// Reserves a source slot; register fds through the returned poller, then
    /// [`set_handler`](Self::set_handler) before running the loop.
    pub fn poller(&mut self) -> Poller {
        self.handlers.push(Arc::new(Unset));
        Poller {
            epoll: self.epoll.clone(),
            source: self.handlers.len() as u32,
        }
    }

    /// Installs the handler of the source `poller` was made for.
    pub fn set_handler(&mut self, poller: &Poller, handler: Arc<dyn EventHandler>) {
        if let Some(slot) = self.handlers.get_mut(poller.source as usize - 1) {
            *slot = handler;
        }
    }

    /// A handle that stops the loop.
    pub fn exit_handle(&self) -> std::io::Result<LoopExit> {
        Ok(LoopExit(self.exit.try_clone()?))
    }

    /// Serves events until [`LoopExit::trigger`]. Returns the epoll error that
    /// ended it, if any.
    pub fn run(&self) -> std::io::Result<()> {
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for ev in &events[..n] {
                let source = (ev.data() >> 32) as u32;
                if source == EXIT_SOURCE {
                    return Ok(());
                }
                if let Some(h) = self.handlers.get(source as usize - 1) {
                    h.handle(ev.data() as u32, ev.event_set());
                }
            }
        }
    }
}

/// Placeholder for a reserved source whose handler has not been installed yet.
struct Unset;
impl EventHandler for Unset {
    fn handle(&self, token: u32, _events: EventSet) {
        tracing::warn!(token, "event for a source without a handler");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Count(AtomicU32, EventFd);
    impl EventHandler for Count {
        fn handle(&self, token: u32, _events: EventSet) {
            let _ = self.1.read();
            self.0.fetch_add(token, Ordering::SeqCst);
        }
    }

    #[test]
    fn events_reach_their_source_with_their_token_and_exit_stops_the_loop() {
        let mut el = EventLoop::new().unwrap();
        let _other = el.poller();
        let p = el.poller();
        let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        p.add(efd.as_raw_fd(), 7, EventSet::IN).unwrap();
        let h = Arc::new(Count(AtomicU32::new(0), efd.try_clone().unwrap()));
        el.set_handler(&p, h.clone());
        let exit = el.exit_handle().unwrap();
        let t = std::thread::spawn(move || el.run());
        efd.write(1).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while h.0.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "event not delivered");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(h.0.load(Ordering::SeqCst), 7);
        exit.trigger();
        t.join().unwrap().unwrap();
    }
}
