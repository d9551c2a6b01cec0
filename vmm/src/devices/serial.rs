//! The 8250 UART at COM1 (vm-superio), with its interrupt wired to an irqfd.
//!
//! Output (guest writes to THR, on a vCPU thread) goes to the configured sink and,
//! when a client is attached to the console socket, to that client too. Input
//! (stdin or the console socket) is read on the event loop by [`SerialInput`] and
//! pushed into the UART's receive FIFO; when the FIFO is full the input fd is
//! taken off the loop until the guest has drained it, so nothing is dropped.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};

use vm_superio::{serial::SerialEvents, Serial, Trigger};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::lock;
use crate::event_loop::{EventHandler, Poller};
use crate::ConsoleInput;

/// First I/O port of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Number of ports the UART decodes.
pub const COM1_LEN: u16 = 8;
/// Legacy IRQ line of COM1.
pub const COM1_IRQ: u32 = 4;

/// An [`EventFd`] that raises the guest interrupt when written (registered as irqfd).
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.write(1)
    }
}

/// Signals the event loop when the guest has emptied the receive FIFO.
#[derive(Debug)]
pub struct Drained(EventFd);

impl SerialEvents for Drained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.0.write(1);
    }
}

type Client = Arc<Mutex<Option<UnixStream>>>;

/// The console sink: the configured output plus the attached socket client.
pub struct ConsoleSink {
    out: Box<dyn Write + Send>,
    client: Client,
}

impl Write for ConsoleSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut c = lock(&self.client);
        if let Some(s) = c.as_mut() {
            // A client that cannot keep up loses output rather than stalling the
            // vCPU; one that went away is detached.
            match s.write(b) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *c = None,
            }
        }
        self.out.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// COM1 with its output sink.
pub struct Com1 {
    uart: Serial<IrqTrigger, Drained, ConsoleSink>,
}

impl std::fmt::Debug for Com1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Com1")
    }
}

/// Where console input comes from, before it is put on the event loop.
#[derive(Debug)]
pub enum InputSource {
    /// The VMM's stdin.
    Stdin,
    /// A listening socket; one client at a time.
    Socket(UnixListener),
}

/// Console input ready to be served: the source, the attached-client slot shared
/// with the sink, and the FIFO-drained eventfd.
#[derive(Debug)]
pub struct PendingInput {
    source: InputSource,
    client: Client,
    drained: EventFd,
}

impl Com1 {
    /// Creates the UART; `irq` is signalled whenever the guest should see an
    /// interrupt. Returns the input to hand to [`SerialInput::new`], if `input`
    /// asks for one.
    pub fn new(
        irq: EventFd,
        out: Box<dyn Write + Send>,
        input: &ConsoleInput,
    ) -> std::io::Result<(Self, Option<PendingInput>)> {
        let drained = EventFd::new(libc::EFD_NONBLOCK)?;
        let client: Client = Arc::default();
        let sink = ConsoleSink {
            out,
            client: client.clone(),
        };
        let source = match input {
            ConsoleInput::None => None,
            ConsoleInput::Stdin => Some(InputSource::Stdin),
            ConsoleInput::Socket(p) => {
                let _ = std::fs::remove_file(p);
                let l = UnixListener::bind(p).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("binding {}: {e}", p.display()))
                })?;
                l.set_nonblocking(true)?;
                Some(InputSource::Socket(l))
            }
        };
        let pending = match source {
            Some(source) => Some(PendingInput {
                source,
                client,
                drained: drained.try_clone()?,
            }),
            None => None,
        };
        let uart = Serial::with_events(IrqTrigger(irq), Drained(drained), sink);
        Ok((Self { uart }, pending))
    }

    /// Guest `in` from `COM1_BASE + offset`.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.uart.read(offset)
    }

    /// Guest `out` to `COM1_BASE + offset`. Output errors are logged, never fatal.
    pub fn write(&mut self, offset: u8, value: u8) {
        if let Err(e) = self.uart.write(offset, value) {
            tracing::warn!(error = ?e, "serial write failed");
        }
        let _ = self.uart.writer_mut().flush();
    }

    /// Queues host input for the guest; returns how many bytes fit in the FIFO.
    pub fn enqueue(&mut self, input: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(input).unwrap_or(0)
    }

    /// Free space in the receive FIFO.
    pub fn fifo_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }
}

const T_SOURCE: u32 = 0;
const T_CLIENT: u32 = 1;
const T_DRAINED: u32 = 2;

struct InputState {
    client: Option<UnixStream>,
    /// The active input fd is off the loop because the FIFO is full.
    paused: bool,
    /// Stdin reached EOF (or cannot be polled): no more input from it.
    stdin_done: bool,
}

/// Serves console input on the event loop.
pub struct SerialInput {
    source: InputSource,
    shared_client: Client,
    drained: EventFd,
    com1: Arc<Mutex<Com1>>,
    poller: Poller,
    state: Mutex<InputState>,
}

impl SerialInput {
    /// Registers `input`'s fds on `poller`.
    pub fn new(
        input: PendingInput,
        com1: Arc<Mutex<Com1>>,
        poller: Poller,
    ) -> std::io::Result<Self> {
        let mut stdin_done = false;
        match &input.source {
            InputSource::Stdin => {
                // Regular files and /dev/null cannot be polled: there is no input then.
                if let Err(e) = poller.add(libc::STDIN_FILENO, T_SOURCE, EventSet::IN) {
                    tracing::info!(error = %e, "stdin cannot be polled; console input disabled");
                    stdin_done = true;
                }
            }
            InputSource::Socket(l) => poller.add(l.as_raw_fd(), T_SOURCE, EventSet::IN)?,
        }
        poller.add(input.drained.as_raw_fd(), T_DRAINED, EventSet::IN)?;
        Ok(Self {
            source: input.source,
            shared_client: input.client,
            drained: input.drained,
            com1,
            poller,
            state: Mutex::new(InputState {
                client: None,
                paused: false,
                stdin_done,
            }),
        })
    }

    /// The fd input currently comes from, with its token.
    fn active(&self, st: &InputState) -> Option<(RawFd, u32)> {
        match &self.source {
            InputSource::Stdin if !st.stdin_done => Some((libc::STDIN_FILENO, T_SOURCE)),
            InputSource::Stdin => None,
            InputSource::Socket(_) => st.client.as_ref().map(|c| (c.as_raw_fd(), T_CLIENT)),
        }
    }

    fn detach_client(&self, st: &mut InputState) {
        if let Some(c) = st.client.take() {
            let _ = self.poller.remove(c.as_raw_fd());
        }
        *lock(&self.shared_client) = None;
        st.paused = false;
    }

    /// Moves as much input as the FIFO takes; pauses the fd when it is full.
    fn pump(&self, st: &mut InputState) {
        let Some((fd, token)) = self.active(st) else {
            return;
        };
        let mut com1 = lock(&self.com1);
        let cap = com1.fifo_capacity();
        if cap == 0 {
            if !st.paused && self.poller.remove(fd).is_ok() {
                st.paused = true;
            }
            return;
        }
        let mut buf = [0u8; 64];
        let n = cap.min(buf.len());
        let r = match (&self.source, st.client.as_mut()) {
            (InputSource::Socket(_), Some(c)) => c.read(&mut buf[..n]),
            // SAFETY: reading at most `n` bytes into `buf`, which has room for them;
            // epoll reported stdin readable, so this does not block.
            _ => match unsafe { libc::read(fd, buf.as_mut_ptr().cast(), n) } {
                r if r < 0 => Err(std::io::Error::last_os_error()),
                r => Ok(r as usize),
            },
        };
        match r {
            Ok(0) => {
                drop(com1);
                if token == T_CLIENT {
                    self.detach_client(st);
                } else {
                    let _ = self.poller.remove(fd);
                    st.stdin_done = true;
                }
            }
            Ok(n) => {
                com1.enqueue(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::info!(error = %e, "console input failed; detaching it");
                drop(com1);
                if token == T_CLIENT {
                    self.detach_client(st);
                } else {
                    let _ = self.poller.remove(fd);
                    st.stdin_done = true;
                }
            }
        }
    }

    fn accept(&self, st: &mut InputState) {
        let InputSource::Socket(l) = &self.source else {
            return;
        };
        while let Ok((mut s, _)) = l.accept() {
            if st.client.is_some() {
                let _ = s.write_all(b"byteport: console already attached\r\n");
                continue;
            }
            let attach = s.set_nonblocking(true).and_then(|_| {
                self.poller.add(
                    s.as_raw_fd(),
                    T_CLIENT,
                    EventSet::IN | EventSet::READ_HANG_UP,
                )
            });
            if attach.is_err() {
                continue;
            }
            *lock(&self.shared_client) = s.try_clone().ok();
            st.client = Some(s);
            st.paused = false;
        }
    }
}

impl EventHandler for SerialInput {
    fn handle(&self, token: u32, _events: EventSet) {
        let mut st = lock(&self.state);
        match token {
            T_SOURCE if matches!(self.source, InputSource::Socket(_)) => self.accept(&mut st),
            T_SOURCE | T_CLIENT => self.pump(&mut st),
            T_DRAINED => {
                let _ = self.drained.read();
                if st.paused {
                    if let Some((fd, token)) = self.active(&st) {
                        let ev = if token == T_CLIENT {
                            EventSet::IN | EventSet::READ_HANG_UP
                        } else {
                            EventSet::IN
                        };
                        if self.poller.add(fd, token, ev).is_ok() {
                            st.paused = false;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn thr_write_reaches_sink_and_raises_irq_when_enabled() {
        let sink = Sink::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let (mut com, input) = Com1::new(
            irq.try_clone().unwrap(),
            Box::new(sink.clone()),
            &ConsoleInput::None,
        )
        .unwrap();
        assert!(input.is_none());
        com.write(1, 0x02); // IER: THR empty interrupt
        com.write(0, b'x');
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"x");
        assert!(irq.read().unwrap() >= 1);
    }

    /// Socket console: a client's bytes reach the guest's RBR even when they
    /// exceed the FIFO (input pauses and resumes as the guest drains it), and
    /// guest output reaches the client.
    #[test]
    fn socket_input_flows_through_a_full_fifo_and_output_reaches_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let (com, input) = Com1::new(
            irq,
            Box::new(std::io::sink()),
            &ConsoleInput::Socket(path.clone()),
        )
        .unwrap();
        let com = Arc::new(Mutex::new(com));
        let mut el = crate::event_loop::EventLoop::new().unwrap();
        let p = el.poller();
        let si = SerialInput::new(input.unwrap(), com.clone(), p.clone()).unwrap();
        el.set_handler(&p, Arc::new(si));
        let exit = el.exit_handle().unwrap();
        let t = std::thread::spawn(move || el.run());

        let mut client = UnixStream::connect(&path).unwrap();
        let sent: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        client.write_all(&sent).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < sent.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "got {} bytes",
                got.len()
            );
            let mut c = com.lock().unwrap();
            // LSR bit 0: data ready; RBR at offset 0.
            while c.read(5) & 1 == 1 {
                got.push(c.read(0));
            }
            drop(c);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(got, sent);

        com.lock().unwrap().write(0, b'Z');
        let mut b = [0u8; 1];
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        client.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"Z");

        // A second client is turned away while the first is attached.
        let mut second = UnixStream::connect(&path).unwrap();
        let mut msg = String::new();
        second
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        second.read_to_string(&mut msg).unwrap();
        assert!(msg.contains("already attached"), "{msg}");
        exit.trigger();
        t.join().unwrap().unwrap();
    }
}
