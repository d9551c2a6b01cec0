//! The vsock device end to end in one process: a hand-driven guest (queues written
//! into guest memory by the test), the real virtio-mmio transport and event loop
//! thread, and real Unix sockets on the host side.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::devices::virtio::mmio::MmioTransport;
use crate::event_loop::{EventLoop, LoopExit};

const QSIZE: u16 = 64;
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const GUEST_CID: u64 = 3;
const RX_DATA: u32 = 4096;
/// A host port only guest root may reach.
const ROOT_PORT: u32 = 1100;

/// One split virtqueue driven by the test (the "driver").
struct Vq {
    desc: u64,
    avail: u64,
    used: u64,
    bufs: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Vq {
    fn new(base: u64, bufs: u64) -> Self {
        Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
            bufs,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// Buffer area of descriptor `d` (8 KiB each).
    fn buf(&self, d: u16) -> u64 {
        self.bufs + u64::from(d) * 0x2000
    }

    fn set_desc(&self, m: &GuestMemoryMmap, d: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let a = GuestAddress(self.desc + 16 * u64::from(d));
        m.write_obj(addr, a).unwrap();
        m.write_obj(len, GuestAddress(a.0 + 8)).unwrap();
        m.write_obj(flags, GuestAddress(a.0 + 12)).unwrap();
        m.write_obj(next, GuestAddress(a.0 + 14)).unwrap();
    }

    fn alloc(&mut self) -> u16 {
        let d = self.next_desc;
        self.next_desc = (self.next_desc + 1) % QSIZE;
        d
    }

    fn publish(&mut self, m: &GuestMemoryMmap, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        m.write_obj(head, GuestAddress(self.avail + 4 + 2 * slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
    }

    /// Next used element, if the device has returned one.
    fn pop_used(&mut self, m: &GuestMemoryMmap) -> Option<(u32, u32)> {
        let idx: u16 = m.read_obj(GuestAddress(self.used + 2)).unwrap();
        if idx == self.used_seen {
            return None;
        }
        let e = self.used + 4 + 8 * u64::from(self.used_seen % QSIZE);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((
            m.read_obj(GuestAddress(e)).unwrap(),
            m.read_obj(GuestAddress(e + 4)).unwrap(),
        ))
    }
}

/// A packet as the guest sees it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Pkt {
    src_cid: u64,
    dst_cid: u64,
    src_port: u32,
    dst_port: u32,
    type_: u16,
    op: u16,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
    data: Vec<u8>,
}

impl Pkt {
    /// A guest → host stream packet.
    fn to_host(src_port: u32, dst_port: u32, op: u16) -> Self {
        Self {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            buf_alloc: 64 * 1024,
            ..Default::default()
        }
    }

    fn header(&self, len: u32) -> [u8; 44] {
        let mut h = [0u8; 44];
        h[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        h[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        h[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        h[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        h[24..28].copy_from_slice(&len.to_le_bytes());
        h[28..30].copy_from_slice(&self.type_.to_le_bytes());
        h[30..32].copy_from_slice(&self.op.to_le_bytes());
        h[32..36].copy_from_slice(&self.flags.to_le_bytes());
        h[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        h[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        h
    }

    fn parse(h: &[u8; 44], data: Vec<u8>) -> Self {
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(h[o..o + 4].try_into().unwrap());
        let u16_at = |o: usize| u16::from_le_bytes(h[o..o + 2].try_into().unwrap());
        Self {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
            data,
        }
    }
}

/// The device wired to a transport and a running event loop, plus the test's driver.
struct Guest {
    mem: GuestMemoryMmap,
    t: Arc<Mutex<MmioTransport>>,
    rx: Vq,
    tx: Vq,
    exit: LoopExit,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    uds: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.exit.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wr(t: &Mutex<MmioTransport>, off: u64, v: u32) {
    t.lock().unwrap().write(off, &v.to_le_bytes());
}

impl Guest {
    /// A device whose driver has (`ready`) or has not yet set DRIVER_OK.
    fn new(ready: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let mut el = EventLoop::new().unwrap();
        let p = el.poller();
        let dev = Vsock::new(GUEST_CID, &uds, &[ROOT_PORT], p.clone()).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = Arc::new(Mutex::new(
            MmioTransport::new(Box::new(dev), mem.clone(), irq, &p).unwrap(),
        ));
        el.set_handler(&p, t.clone());
        let exit = el.exit_handle().unwrap();
        let thread = Some(std::thread::spawn(move || el.run()));
        let rx = Vq::new(0x1_0000, 0x10_0000);
        let tx = Vq::new(0x2_0000, 0x20_0000);
        let ev = Vq::new(0x3_0000, 0x30_0000);
        wr(&t, 0x70, 0xb);
        for (i, q) in [&rx, &tx, &ev].iter().enumerate() {
            wr(&t, 0x30, i as u32);
            wr(&t, 0x38, u32::from(QSIZE));
            for (off, a) in [(0x80, q.desc), (0x90, q.avail), (0xa0, q.used)] {
                wr(&t, off, a as u32);
                wr(&t, off + 4, 0);
            }
            wr(&t, 0x44, 1);
        }
        if ready {
            wr(&t, 0x70, 0xf);
        }
        let mut g = Self {
            mem,
            t,
            rx,
            tx,
            exit,
            thread,
            uds,
            _dir: dir,
        };
        if ready {
            g.give_rx(8);
        }
        g
    }

    fn notify(&self, q: usize) {
        wr(&self.t, 0x50, q as u32);
    }

    /// Offers `n` RX buffers (header + 4 KiB data, both device-writable).
    fn give_rx(&mut self, n: usize) {
        for _ in 0..n {
            let h = self.rx.alloc();
            let d = self.rx.alloc();
            let buf = self.rx.buf(h);
            self.rx.set_desc(&self.mem, h, buf, 44, WRITE | NEXT, d);
            self.rx
                .set_desc(&self.mem, d, buf + 0x100, RX_DATA, WRITE, 0);
            self.rx.publish(&self.mem, h);
        }
        self.notify(RXQ);
    }

    /// Puts a raw chain on TX: (addr, len, flags) per descriptor, chained in order,
    /// and waits until the device has used it.
    fn send_raw(&mut self, descs: &[(u64, u32, u16)]) {
        let ids: Vec<u16> = descs.iter().map(|_| self.tx.alloc()).collect();
        for (i, (addr, len, flags)) in descs.iter().enumerate() {
            let next = ids.get(i + 1).copied().unwrap_or(0);
            let f = if i + 1 < ids.len() {
                flags | NEXT
            } else {
                *flags
            };
            self.tx.set_desc(&self.mem, ids[i], *addr, *len, f, next);
        }
        self.tx.publish(&self.mem, ids[0]);
        self.notify(TXQ);
        self.wait_tx_used();
    }

    /// Sends `p` with its data in a second descriptor.
    fn send(&mut self, p: &Pkt) {
        let base = self.tx.buf(self.tx.next_desc);
        self.mem
            .write_slice(&p.header(p.data.len() as u32), GuestAddress(base))
            .unwrap();
        self.mem
            .write_slice(&p.data, GuestAddress(base + 0x100))
            .unwrap();
        if p.data.is_empty() {
            self.send_raw(&[(base, 44, 0)]);
        } else {
            self.send_raw(&[(base, 44, 0), (base + 0x100, p.data.len() as u32, 0)]);
        }
    }

    /// Waits until the device has consumed every TX chain.
    fn wait_tx_used(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            while self.tx.pop_used(&self.mem).is_some() {}
            if self.tx.used_seen == self.tx.avail_idx {
                return;
            }
            assert!(Instant::now() < deadline, "TX chain never used");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Next packet for the guest (re-offering the buffer), or `None` after `wait`.
    fn recv_within(&mut self, wait: Duration) -> Option<Pkt> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((id, len)) = self.rx.pop_used(&self.mem) {
                let buf = self.rx.buf(id as u16);
                let mut h = [0u8; 44];
                self.mem.read_slice(&mut h, GuestAddress(buf)).unwrap();
                let data_len = (len as usize).saturating_sub(44);
                let mut data = vec![0u8; data_len];
                self.mem
                    .read_slice(&mut data, GuestAddress(buf + 0x100))
                    .unwrap();
                let p = Pkt::parse(&h, data);
                assert_eq!(p.data.len() as u32, {
                    u32::from_le_bytes(h[24..28].try_into().unwrap())
                });
                self.give_rx(1);
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn recv(&mut self) -> Pkt {
        self.recv_within(Duration::from_secs(5))
            .expect("no packet for the guest")
    }

    /// Receives packets until one with `op` arrives (credit updates may come first).
    fn recv_op(&mut self, op: u16) -> Pkt {
        for _ in 0..64 {
            let p = self.recv();
            if p.op == op {
                return p;
            }
            assert!(
                matches!(p.op, OP_CREDIT_UPDATE | OP_CREDIT_REQUEST),
                "expected op {op}, got {p:?}"
            );
        }
        panic!("op {op} never came");
    }

    /// Host connects through the Unix socket and the guest accepts: returns the
    /// host stream and (host port, guest port).
    fn host_connect(&mut self, guest_port: u32) -> (UnixStream, u32) {
        let mut s = UnixStream::connect(&self.uds).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        writeln!(s, "CONNECT {guest_port}").unwrap();
        let req = self.recv_op(OP_REQUEST);
        assert_eq!(
            (req.src_cid, req.dst_cid, req.dst_port, req.type_),
            (HOST_CID, GUEST_CID, guest_port, TYPE_STREAM)
        );
        self.send(&Pkt::to_host(guest_port, req.src_port, OP_RESPONSE));
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while b[0] != b'\n' {
            s.read_exact(&mut b).unwrap();
            line.push(b[0]);
        }
        assert_eq!(
            String::from_utf8(line).unwrap(),
            format!("OK {}\n", req.src_port)
        );
        (s, req.src_port)
    }
}

#[test]
fn host_initiated_connection_handshake_data_and_close() {
    let mut g = Guest::new(true);
    let (mut s, hp) = g.host_connect(1234);
    assert!(hp >= HOST_PORT_FIRST);

    s.write_all(b"ping").unwrap();
    let p = g.recv_op(OP_RW);
    assert_eq!(
        (p.src_port, p.dst_port, p.data.as_slice()),
        (hp, 1234, &b"ping"[..])
    );
    assert_eq!(p.buf_alloc, CONN_BUF_ALLOC);

    let mut pong = Pkt::to_host(1234, hp, OP_RW);
    pong.data = b"pong".to_vec();
    g.send(&pong);
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"pong");

    // Host half-closes: the guest hears SHUTDOWN(SEND) and may still send.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let p = g.recv_op(OP_SHUTDOWN);
    assert_eq!(p.flags, SHUTDOWN_SEND);
    let mut last = Pkt::to_host(1234, hp, OP_RW);
    last.data = b"bye".to_vec();
    g.send(&last);
    let mut b = [0u8; 3];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"bye");

    // The guest closes: it gets a RST, the host reads EOF.
    let mut shut = Pkt::to_host(1234, hp, OP_SHUTDOWN);
    shut.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    g.send(&shut);
    assert_eq!(g.recv_op(OP_RST).dst_port, 1234);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn guest_initiated_connections_reach_the_port_socket_or_get_rst() {
    let mut g = Guest::new(true);
    let listener = UnixListener::bind(format!("{}_5000", g.uds.display())).unwrap();
    g.send(&Pkt::to_host(777, 5000, OP_REQUEST));
    let r = g.recv();
    assert_eq!((r.op, r.src_port, r.dst_port), (OP_RESPONSE, 5000, 777));
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hello = Pkt::to_host(777, 5000, OP_RW);
    hello.data = b"hello".to_vec();
    g.send(&hello);
    let mut b = [0u8; 5];
    host.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    host.write_all(b"world").unwrap();
    assert_eq!(g.recv_op(OP_RW).data, b"world");

    // Host closes entirely: the guest gets its pending data, then a RST.
    host.write_all(b"!").unwrap();
    drop(host);
    let mut saw_data = false;
    loop {
        let p = g.recv();
        match p.op {
            OP_RW => {
                assert_eq!(p.data, b"!");
                saw_data = true;
            }
            OP_RST | OP_SHUTDOWN => break,
            OP_CREDIT_UPDATE | OP_CREDIT_REQUEST => {}
            other => panic!("unexpected op {other}"),
        }
    }
    assert!(saw_data);

    // Nobody listens on port 5001.
    g.send(&Pkt::to_host(778, 5001, OP_REQUEST));
    let r = g.recv();
    assert_eq!((r.op, r.src_port, r.dst_port), (OP_RST, 5001, 778));
}

#[test]
fn root_only_ports_refuse_unprivileged_guest_source_ports() {
    let mut g = Guest::new(true);
    let listener = UnixListener::bind(format!("{}_{ROOT_PORT}", g.uds.display())).unwrap();
    listener.set_nonblocking(true).unwrap();
    // An app (no CAP_NET_BIND_SERVICE) connects from an ephemeral port: reset,
    // and the host socket never sees it.
    g.send(&Pkt::to_host(49152, ROOT_PORT, OP_REQUEST));
    let r = g.recv();
    assert_eq!((r.op, r.src_port, r.dst_port), (OP_RST, ROOT_PORT, 49152));
    g.send(&Pkt::to_host(1024, ROOT_PORT, OP_REQUEST));
    assert_eq!(g.recv().op, OP_RST, "1024 is not a privileged port");
    assert!(
        listener.accept().is_err(),
        "a refused connection reached the host"
    );
    // Guest root binds a port below 1024: connected.
    g.send(&Pkt::to_host(1023, ROOT_PORT, OP_REQUEST));
    let r = g.recv();
    assert_eq!(
        (r.op, r.src_port, r.dst_port),
        (OP_RESPONSE, ROOT_PORT, 1023)
    );
    listener.set_nonblocking(false).unwrap();
    assert!(listener.accept().is_ok());
}

#[test]
fn host_to_guest_respects_guest_credit() {
    let mut g = Guest::new(true);
    let (mut s, hp) = g.host_connect(80);
    // The guest advertises a 1000-byte buffer with nothing consumed.
    let mut upd = Pkt::to_host(80, hp, OP_CREDIT_UPDATE);
    upd.buf_alloc = 1000;
    g.send(&upd);
    s.write_all(&[7u8; 5000]).unwrap();
    let mut got = 0;
    let mut asked = false;
    while let Some(p) = g.recv_within(Duration::from_millis(300)) {
        match p.op {
            OP_RW => got += p.data.len(),
            OP_CREDIT_REQUEST => asked = true,
            _ => {}
        }
    }
    assert_eq!(got, 1000, "the host sent beyond the guest's credit");
    assert!(asked, "no CREDIT_REQUEST when credit ran out");
    // The guest consumed everything: 1000 more bytes may come.
    upd.fwd_cnt = 1000;
    g.send(&upd);
    let mut more = 0;
    while let Some(p) = g.recv_within(Duration::from_millis(300)) {
        if p.op == OP_RW {
            more += p.data.len();
        }
    }
    assert_eq!(more, 1000);
}

#[test]
fn guest_to_host_gets_credit_updates_and_overruns_are_reset() {
    let mut g = Guest::new(true);
    let (s, hp) = g.host_connect(81);
    // 160 KiB from the guest, read by the host: our fwd_cnt passes half of
    // buf_alloc and the guest is told without asking.
    let mut rw = Pkt::to_host(81, hp, OP_RW);
    rw.data = vec![1u8; 4000];
    let mut total = 0;
    let reader = {
        let mut s2 = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 160_000];
            s2.read_exact(&mut buf).unwrap();
        })
    };
    while total < 160_000 {
        g.send(&rw);
        total += 4000;
    }
    reader.join().unwrap();
    let upd = g.recv_op(OP_CREDIT_UPDATE);
    assert!(upd.fwd_cnt >= CONN_BUF_ALLOC / 2, "{upd:?}");

    // Now the host stops reading: once the socket buffer and our 256 KiB are full,
    // more data is a protocol violation and the guest gets a RST.
    let mut rst = None;
    for _ in 0..2000 {
        g.send(&rw);
        if let Some(p) = g.recv_within(Duration::ZERO) {
            if p.op == OP_RST {
                rst = Some(p);
                break;
            }
        }
    }
    let rst = rst.expect("no RST although the guest overran its credit");
    assert_eq!((rst.src_port, rst.dst_port), (hp, 81));
    s.set_nonblocking(true).unwrap();
}

#[test]
fn hostile_packets_are_dropped_or_reset_and_the_device_keeps_working() {
    let mut g = Guest::new(true);
    let (_s, hp) = g.host_connect(90);

    // Wrong source CID, wrong destination CID: silently dropped.
    let mut p = Pkt::to_host(90, hp, OP_RW);
    p.data = b"x".to_vec();
    p.src_cid = 99;
    g.send(&p);
    p.src_cid = GUEST_CID;
    p.dst_cid = 7;
    g.send(&p);
    assert!(g.recv_within(Duration::from_millis(100)).is_none());

    // Unknown socket type, unknown op, data for no connection: RST.
    let mut seq = Pkt::to_host(91, 5, OP_REQUEST);
    seq.type_ = 2;
    g.send(&seq);
    assert_eq!(g.recv().op, OP_RST);
    g.send(&Pkt::to_host(92, 6, 99));
    assert_eq!(g.recv().op, OP_RST);
    let mut stray = Pkt::to_host(93, 7, OP_RW);
    stray.data = b"?".to_vec();
    g.send(&stray);
    assert_eq!(g.recv().op, OP_RST);

    // Malformed chains: returned used, no reply, no panic.
    let base = 0x38_0000u64;
    let hdr = Pkt::to_host(90, hp, OP_RW).header(1 << 20); // len beyond 64 KiB
    g.mem.write_slice(&hdr, GuestAddress(base)).unwrap();
    g.send_raw(&[(base, 44, 0), (base + 0x100, 4096, 0)]);
    g.send_raw(&[(base, 20, 0)]); // header cut short
    g.send_raw(&[(base, 44, WRITE)]); // device-writable TX buffer
    let small = Pkt::to_host(90, hp, OP_RW).header(4096);
    g.mem.write_slice(&small, GuestAddress(base)).unwrap();
    g.send_raw(&[(base, 44, 0), (base + 0x100, 16, 0)]); // data shorter than len
    g.send_raw(&[(base, 44, 0), (0xffff_0000, 4096, 0)]); // data outside memory
    g.send_raw(&[(0xffff_f000, 44, 0)]); // header outside memory
    assert!(g.recv_within(Duration::from_millis(100)).is_none());

    // The connection still works.
    let mut ok = Pkt::to_host(90, hp, OP_RW);
    ok.data = b"still here".to_vec();
    g.send(&ok);
    let mut s = _s;
    let mut b = [0u8; 10];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"still here");
    s.write_all(b"yes").unwrap();
    assert_eq!(g.recv_op(OP_RW).data, b"yes");
}

#[test]
fn unusable_rx_buffers_are_returned_unused() {
    let mut g = Guest::new(false);
    wr(&g.t, 0x70, 0xf);
    // First in the ring: a device-readable buffer, then a header-only one too
    // short for a header; then good ones.
    for (len, flags) in [(44, 0), (20, WRITE)] {
        let d = g.rx.alloc();
        let buf = g.rx.buf(d);
        g.rx.set_desc(&g.mem, d, buf, len, flags, 0);
        g.rx.publish(&g.mem, d);
    }
    g.give_rx(4);
    let mut s = UnixStream::connect(&g.uds).unwrap();
    writeln!(s, "CONNECT 9").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut used = Vec::new();
    while used.len() < 3 {
        assert!(Instant::now() < deadline, "used so far: {used:?}");
        if let Some(u) = g.rx.pop_used(&g.mem) {
            used.push(u);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        (used[0].1, used[1].1),
        (0, 0),
        "bad buffers must come back empty"
    );
    assert_eq!(used[2].1, 44, "the REQUEST goes into the first good buffer");
}

#[test]
fn many_concurrent_connections() {
    let mut g = Guest::new(true);
    const N: u32 = 40;
    let mut hosts: Vec<UnixStream> = (0..N)
        .map(|i| {
            let mut s = UnixStream::connect(&g.uds).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            writeln!(s, "CONNECT {}", 2000 + i).unwrap();
            s
        })
        .collect();
    // Accept every REQUEST, in whatever order they come.
    let mut ports = std::collections::HashMap::new();
    while ports.len() < N as usize {
        let r = g.recv_op(OP_REQUEST);
        g.send(&Pkt::to_host(r.dst_port, r.src_port, OP_RESPONSE));
        ports.insert(r.dst_port, r.src_port);
    }
    for (i, s) in hosts.iter_mut().enumerate() {
        let mut line = String::new();
        let mut b = [0u8; 1];
        while !line.ends_with('\n') {
            s.read_exact(&mut b).unwrap();
            line.push(b[0] as char);
        }
        let hp = ports[&(2000 + i as u32)];
        assert_eq!(line, format!("OK {hp}\n"));
        s.write_all(format!("conn {i}").as_bytes()).unwrap();
    }
    // Echo each one back through the guest.
    let mut echoed = 0;
    while echoed < N {
        let p = g.recv_op(OP_RW);
        let mut back = Pkt::to_host(p.dst_port, p.src_port, OP_RW);
        back.data = p.data.clone();
        g.send(&back);
        echoed += 1;
    }
    for (i, s) in hosts.iter_mut().enumerate() {
        let want = format!("conn {i}");
        let mut b = vec![0u8; want.len()];
        s.read_exact(&mut b).unwrap();
        assert_eq!(String::from_utf8(b).unwrap(), want);
    }
}

#[test]
fn host_connections_are_refused_until_the_driver_is_ready_and_bad_lines_closed() {
    let mut g = Guest::new(false);
    let mut s = UnixStream::connect(&g.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "a connection before DRIVER_OK must be closed"
    );

    wr(&g.t, 0x70, 0xf);
    g.give_rx(8);
    for bad in [&b"HELLO 80\n"[..], b"CONNECT x\n", &[b'9'; 100]] {
        let mut s = UnixStream::connect(&g.uds).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bad).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{bad:?} got a reply");
    }
    assert!(g.recv_within(Duration::from_millis(100)).is_none());
    // A good line still works afterwards.
    let _ = g.host_connect(22);
}

#[test]
fn device_reset_closes_host_connections() {
    let mut g = Guest::new(true);
    let (mut s, _) = g.host_connect(5);
    wr(&g.t, 0x70, 0);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}
