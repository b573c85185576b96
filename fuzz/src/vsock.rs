//! Target `virtio_vsock`: the vsock device behind the transport, driven by the hostile driver
//! of `virtio_ops`, over a hostile peer backend (packets with wild addresses, types, ops and
//! lengths, payloads shorter than they claim, room that comes and goes, the peer going up,
//! down and resetting).
//!
//! Checks, besides `virtio_ops::check_transport`:
//! - every guest-memory write the device makes lies in the used ring of a ready queue or in a
//!   device-writable buffer that a descriptor of a ready queue (or an indirect table it
//!   names) describes at that moment ("nothing written outside descriptors");
//! - every used length on rx and event is at most the writable bytes of the chain it
//!   completes (walked here independently, in RAM as it was before the step; skipped for a
//!   step whose device writes landed in a descriptor table), tx used lengths are 0, event
//!   lengths are 0 or 4, rx lengths 0 or a header plus at most 64 KiB;
//! - towards the peer, only well-formed packets: our CID to the peer's, STREAM, a known op,
//!   payload only on RW and at most 64 KiB, a REQUEST only while the peer is up, only while
//!   the device is up, payload written in chunks of at most `CHUNK` inside the packet and
//!   every byte exactly once before the commit; no payload read past a packet's `len`;
//! - after a reset, the device is down for the peer and holds no reservation.

use std::cell::Cell;
use std::collections::VecDeque;

use arbitrary::{Arbitrary, Unstructured};
use virtio::mmio::{MmioTransport, MAGIC};
use virtio::vsock::packet::{
    op_known, VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, VIRTIO_VSOCK_OP_REQUEST, VIRTIO_VSOCK_OP_RW,
    VIRTIO_VSOCK_TYPE_STREAM,
};
use virtio::vsock::{VsockBackend, VsockDevice, VsockHeader, CHUNK, EVENTQ, HEADER_SIZE, RXQ, TXQ};
use virtio::{GuestMemory, MemoryError, SliceMemory};

use crate::virtio_ops::{self, GuestOp, QueueLayout, BASE, RAM};

thread_local! {
    /// What this thread's runs reached: packets sent to the peer, rx buffers with payload,
    /// TRANSPORT_RESET events (see `corpus_reach`).
    static REACHED: Cell<[u64; 3]> = const { Cell::new([0; 3]) };
}

fn reach(i: usize) {
    REACHED.with(|r| {
        let mut v = r.get();
        v[i] += 1;
        r.set(v);
    });
}

const OWN: u64 = 3;
const PEER: u64 = 4;
const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// The hostile peer, checking what the device hands it.
#[derive(Default)]
pub struct Peer {
    /// Packets for the device: header and how many payload bytes really exist (the rest
    /// of `len` reads as zero).
    inbox: VecDeque<(VsockHeader, usize)>,
    room: usize,
    up: bool,
    reset: bool,
    /// Our device's state as it told us.
    our_up: bool,
    /// The packet being sent and how many payload bytes were written (in order).
    reserved: Option<(VsockHeader, usize)>,
}

impl VsockBackend for Peer {
    fn send_begin(&mut self, h: &VsockHeader) -> bool {
        let h = *h;
        assert!(self.reserved.is_none(), "send_begin with a packet reserved");
        assert!(self.our_up, "device sends while not up");
        let (op, len) = (h.op.get(), h.len.get());
        assert_eq!((h.src_cid.get(), h.dst_cid.get()), (OWN, PEER), "addresses");
        assert_eq!(h.socket_type.get(), VIRTIO_VSOCK_TYPE_STREAM);
        assert!(op_known(op), "op {op}");
        if op == VIRTIO_VSOCK_OP_RW {
            assert!(len <= VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, "len {len}");
        } else {
            assert_eq!(len, 0, "payload on op {op}");
        }
        if op == VIRTIO_VSOCK_OP_REQUEST {
            assert!(self.up, "REQUEST forwarded to a peer that is down");
        }
        if HEADER_SIZE + len as usize > self.room {
            return false;
        }
        self.reserved = Some((h, 0));
        true
    }

    fn send_payload(&mut self, offset: usize, data: &[u8]) {
        let (h, done) = self.reserved.as_mut().expect("send_payload without send_begin");
        assert!(!data.is_empty() && data.len() <= CHUNK, "chunk of {}", data.len());
        let end = offset.checked_add(data.len()).expect("offset wraps");
        let len = h.len.get() as usize;
        assert!(end <= len, "payload {offset}+{} past len {len}", data.len());
        assert_eq!(offset, *done, "payload out of order, repeated or with a hole");
        *done = end;
    }

    fn send_commit(&mut self) {
        let (h, done) = self.reserved.take().expect("send_commit without send_begin");
        assert_eq!(done, h.len.get() as usize, "committed with payload missing");
        reach(0);
        self.room -= HEADER_SIZE + h.len.get() as usize;
    }

    fn recv_peek(&mut self) -> Option<VsockHeader> {
        self.inbox.front().map(|(h, _)| *h)
    }

    fn recv_payload(&mut self, offset: usize, buf: &mut [u8]) {
        assert!(self.our_up, "payload read while not up");
        let &(h, real) = self.inbox.front().expect("recv_payload with no packet");
        assert!(!buf.is_empty() && buf.len() <= CHUNK, "chunk of {}", buf.len());
        let end = offset.checked_add(buf.len()).expect("offset wraps");
        let len = h.len.get() as usize;
        assert!(end <= len, "read {offset}+{} past len {len}", buf.len());
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i;
            *b = if at < real { payload_byte(&h, at) } else { 0 };
        }
    }

    fn recv_pop(&mut self) {
        self.inbox.pop_front().expect("recv_pop with no packet");
    }

    fn take_peer_reset(&mut self) -> bool {
        core::mem::take(&mut self.reset)
    }

    fn peer_up(&self) -> bool {
        self.up
    }

    fn set_up(&mut self, up: bool) {
        self.our_up = up;
        if !up {
            assert!(self.reserved.is_none(), "reset with a packet half sent");
        }
    }
}

/// Payload byte `at` of packet `h` from the peer (no allocation per packet).
fn payload_byte(h: &VsockHeader, at: usize) -> u8 {
    (at as u8).wrapping_mul(31) ^ (h.src_port.get() as u8)
}

/// What the peer does.
#[derive(Arbitrary, Debug)]
pub enum PeerOp {
    /// A packet arrives: well addressed unless told otherwise; `len` is the payload's length
    /// unless `claim` says more or less.
    Packet {
        src: Option<u64>,
        dst: Option<u64>,
        ports: (u32, u32),
        ty: Option<u16>,
        op: u8,
        flags: u32,
        credit: (u32, u32),
        payload: u16,
        claim: Option<u32>,
    },
    /// Room for our packets (header + payload bytes).
    Room(u32),
    /// The peer's device goes up or down.
    Up(bool),
    /// The peer's transport was reset.
    Reset,
}

fn peer_op(p: &mut Peer, op: PeerOp) {
    match op {
        PeerOp::Packet { src, dst, ports, ty, op, flags, credit, payload, claim } => {
            if p.inbox.len() >= 32 {
                return;
            }
            let h = VsockHeader {
                src_cid: src.unwrap_or(PEER).into(),
                dst_cid: dst.unwrap_or(OWN).into(),
                src_port: ports.0.into(),
                dst_port: ports.1.into(),
                len: claim.unwrap_or(u32::from(payload)).into(),
                socket_type: ty.unwrap_or(VIRTIO_VSOCK_TYPE_STREAM).into(),
                op: u16::from(op % 9).into(),
                flags: flags.into(),
                buf_alloc: credit.0.into(),
                fwd_cnt: credit.1.into(),
            };
            p.inbox.push_back((h, usize::from(payload)));
        }
        PeerOp::Room(n) => p.room = n as usize % (4 * 65_600),
        PeerOp::Up(up) => p.up = up,
        PeerOp::Reset => {
            p.reset = true;
            p.up = false;
        }
    }
}

/// A ready queue as it was before a step, with the used index the device had published.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ring {
    desc: u64,
    used: u64,
    size: u16,
    used_index: u16,
}

fn rings(t: &MmioTransport<VsockDevice<Peer>>) -> [Option<Ring>; 3] {
    [0, 1, 2].map(|i| {
        let q = t.queue(i)?;
        let (desc, used) = (q.desc_table(), q.used_ring());
        let (size, used_index) = (q.size() as u16, q.used_index());
        q.ready().then_some(Ring { desc, used, size, used_index })
    })
}

fn read_desc(ram: &[u8], gpa: u64) -> Option<(u64, u32, u16, u16)> {
    let off = usize::try_from(gpa.checked_sub(BASE)?).ok()?;
    let d = ram.get(off..off.checked_add(16)?)?;
    Some((
        u64::from_le_bytes(d[..8].try_into().ok()?),
        u32::from_le_bytes(d[8..12].try_into().ok()?),
        u16::from_le_bytes(d[12..14].try_into().ok()?),
        u16::from_le_bytes(d[14..].try_into().ok()?),
    ))
}

/// Guest memory that checks each device write against the writable areas described now.
/// Nothing is computed until the device's first write of the step (RAM is unchanged until
/// then): most steps write nothing.
struct Recorder<'a, 'm> {
    mem: &'a mut SliceMemory<'m>,
    rings: [Option<Ring>; 3],
    /// RAM before the device's first write; empty if it wrote nothing.
    before: Vec<u8>,
    /// Guest-physical ranges the device may write (cumulative over the step), merged.
    allowed: Vec<(u64, u64)>,
    /// Whether `allowed` was computed (at the first write).
    described: bool,
    /// Descriptor and indirect tables: a write there changes what is allowed.
    tables: Vec<(u64, u64)>,
    touched_tables: bool,
    /// A writable buffer overlaps a used ring: used entries read back may be payload.
    buffer_over_used: bool,
}

impl<'a, 'm> Recorder<'a, 'm> {
    fn new(mem: &'a mut SliceMemory<'m>, rings: [Option<Ring>; 3]) -> Self {
        Recorder {
            mem,
            rings,
            before: Vec::new(),
            allowed: Vec::new(),
            described: false,
            tables: Vec::new(),
            touched_tables: false,
            buffer_over_used: false,
        }
    }

    /// Allows writes to a buffer.
    fn buffer(&mut self, gpa: u64, len: u64) {
        let end = gpa.saturating_add(len);
        for r in self.rings.into_iter().flatten() {
            if gpa < r.used + 6 + 8 * u64::from(r.size) && r.used < end {
                self.buffer_over_used = true;
            }
        }
        self.mark(gpa, len);
    }

    fn mark(&mut self, gpa: u64, len: u64) {
        if let Some(end) = gpa.checked_add(len) {
            self.allowed.push((gpa, end));
        }
    }

    /// Whether `[gpa, end)` lies inside the allowed ranges.
    fn allows(&self, gpa: u64, end: u64) -> bool {
        let i = self.allowed.partition_point(|&(_, e)| e <= gpa);
        self.allowed.get(i).is_some_and(|&(s, e)| s <= gpa && end <= e)
    }

    /// Adds what the ready queues describe in memory now.
    fn describe(&mut self) {
        self.described = true;
        for r in self.rings.into_iter().flatten() {
            self.mark(r.used, 6 + 8 * u64::from(r.size));
            self.tables.push((r.desc, 16 * u64::from(r.size)));
            for i in 0..u64::from(r.size) {
                let Some((addr, len, flags, _)) = read_desc(self.mem.as_slice(), r.desc + 16 * i)
                else {
                    continue;
                };
                if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                    self.tables.push((addr, u64::from(len)));
                    // The device follows a table of at most the queue size (virtio 1.2 §2.7.5.3.1).
                    for j in 0..u64::from(len / 16).min(u64::from(r.size)) {
                        match read_desc(self.mem.as_slice(), addr.wrapping_add(16 * j)) {
                            Some((a, l, f, _)) if f & VIRTQ_DESC_F_WRITE != 0 => {
                                self.buffer(a, u64::from(l))
                            }
                            _ => {}
                        }
                    }
                } else if flags & VIRTQ_DESC_F_WRITE != 0 {
                    self.buffer(addr, u64::from(len));
                }
            }
        }
        self.allowed.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.allowed.len());
        for &(s, e) in &self.allowed {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.allowed = merged;
    }
}

impl GuestMemory for Recorder<'_, '_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.mem.read(gpa, buf)
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        if !self.described {
            self.before = self.mem.as_slice().to_vec();
            self.describe();
        }
        let r = self.mem.write(gpa, data);
        if r.is_ok() {
            let inside = self.allows(gpa, gpa + data.len() as u64);
            assert!(
                inside,
                "device wrote {} bytes at {gpa:#x}, outside any writable buffer",
                data.len()
            );
            let end = gpa + data.len() as u64;
            if self.tables.iter().any(|&(t, n)| gpa < t.saturating_add(n) && t < end) {
                self.touched_tables = true;
                self.describe();
            }
        }
        r
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemoryError> {
        self.mem.check_range(gpa, len)
    }
}

/// Writable bytes of the chain at `head`, walked in `ram` (one level of indirection);
/// `None` if it is not a well-formed chain.
fn writable_len(ram: &[u8], r: Ring, head: u32) -> Option<u64> {
    let (mut table, mut entries, mut index) = (r.desc, u32::from(r.size), head);
    let (mut budget, mut total, mut indirect) = (u32::from(r.size), 0u64, false);
    loop {
        if index >= entries || budget == 0 {
            return None;
        }
        budget -= 1;
        let (addr, len, flags, next) = read_desc(ram, table + 16 * u64::from(index))?;
        if flags & VIRTQ_DESC_F_INDIRECT != 0 && !indirect {
            (table, entries, index, budget, indirect) = (addr, len / 16, 0, len / 16, true);
            continue;
        }
        if flags & VIRTQ_DESC_F_WRITE != 0 {
            total += u64::from(len);
        }
        if flags & VIRTQ_DESC_F_NEXT == 0 {
            return Some(total);
        }
        index = u32::from(next);
    }
}

/// Checks the used entries each ready queue published during the step: `before` is RAM
/// before it, `mem` after it. Only the last queue's worth of entries is still readable: a
/// driver that makes more buffers available than the queue has entries gets more completed
/// in one step, and the used ring wraps over the first.
fn check_used(
    before: &[u8],
    mem: &SliceMemory<'_>,
    rings: [Option<Ring>; 3],
    after: [Option<Ring>; 3],
) {
    let ram = mem.as_slice();
    let at = |gpa: u64| (gpa - BASE) as usize;
    for q in 0..3 {
        let (Some(r), Some(a)) = (rings[q], after[q]) else { continue };
        if (r.desc, r.used, r.size) != (a.desc, a.used, a.size) {
            continue;
        }
        let new = a.used_index.wrapping_sub(r.used_index);
        for k in new.saturating_sub(r.size)..new {
            let slot = u64::from(r.used_index.wrapping_add(k) % r.size);
            let e = at(r.used + 4 + 8 * slot);
            let id = u32::from_le_bytes(ram[e..e + 4].try_into().unwrap());
            let len = u32::from_le_bytes(ram[e + 4..e + 8].try_into().unwrap());
            match q as u16 {
                TXQ => assert_eq!(len, 0, "tx used length"),
                EVENTQ => {
                    assert!(len == 0 || len == 4, "event used length {len}");
                    if len == 4 {
                        reach(2);
                    }
                }
                _ => {
                    assert!(
                        len == 0
                            || (len as usize >= HEADER_SIZE
                                && len <= HEADER_SIZE as u32 + VIRTIO_VSOCK_MAX_PKT_BUF_SIZE),
                        "rx used length {len}"
                    );
                    if len as usize > HEADER_SIZE {
                        reach(1);
                    }
                }
            }
            if len > 0 {
                let w = writable_len(before, r, id);
                assert!(
                    w.is_some_and(|w| u64::from(len) <= w),
                    "queue {q}: used {len} for chain {id} of {w:?} writable bytes"
                );
            }
        }
    }
}

/// A driver doing the right thing, roughly: the fuzzer finds these much sooner than the
/// same effect from raw operations.
#[derive(Arbitrary, Debug)]
pub enum VsockOp {
    /// Driver initialisation: acceptable features, the three queues (8 entries each, at
    /// fixed places), DRIVER_OK.
    Init { event_idx: bool, indirect: bool },
    /// A packet on tx: header (each bit of `wrong` spoils a field) and payload, in up to
    /// three buffers cut at `cuts`; then a notification.
    Tx { op: u8, wrong: u8, len: u16, claim: Option<u32>, at: u16, cuts: (u16, u16) },
    /// A receive buffer of one or two writable parts; then a notification.
    Rx { at: u16, sizes: (u16, u16) },
    /// An event buffer; then a notification.
    Event { at: u16, len: u8 },
}

/// One step of the input.
#[derive(Arbitrary, Debug)]
pub enum Step {
    /// A raw driver operation.
    Guest(GuestOp),
    /// A driver operation of several steps.
    Vsock(VsockOp),
    /// The peer.
    Peer(PeerOp),
}

/// Queue `q`'s rings: descriptors at `q * 0x400`, avail ring at +0x100, used ring at +0x200.
const RING_SPACING: u16 = 0x400;
/// Buffers go in `[DATA, RAM)`.
const DATA: usize = 0x1000;
/// Entries of each queue that `VsockOp::Init` sets up.
const QSIZE: u16 = 8;

/// The harness: transport, RAM and the driver's bookkeeping.
struct Harness<'m> {
    t: MmioTransport<VsockDevice<Peer>>,
    mem: SliceMemory<'m>,
    layout: [QueueLayout; 8],
    ident: [u64; 4],
    /// Next free descriptor of each queue (for `VsockOp`).
    next: [u16; 3],
}

impl Harness<'_> {
    /// Applies one raw driver operation and checks what the device did.
    fn guest(&mut self, g: GuestOp) {
        if virtio_ops::is_memory_write(&g) {
            virtio_ops::guest(&mut self.t, &mut self.mem, &mut self.layout, g);
        } else {
            let rings = rings(&self.t);
            let mut rec = Recorder::new(&mut self.mem, rings);
            virtio_ops::guest(&mut self.t, &mut rec, &mut self.layout, g);
            // Used entries are read back only when no buffer lies over them, and chains
            // walked only when the device wrote no descriptor table. No write, no entry.
            let skip = rec.touched_tables || rec.buffer_over_used || rec.before.is_empty();
            let before = core::mem::take(&mut rec.before);
            if !skip {
                check_used(&before, &self.mem, rings, self::rings(&self.t));
            }
        }
        virtio_ops::check_transport(&self.t, &self.mem, self.ident);
        assert!(self.t.device().pending_rsts() <= virtio::vsock::RST_QUEUE_CAPACITY);
    }

    /// Makes a chain of `(RAM offset, len, writable)` buffers available on `q` and notifies.
    fn chain(&mut self, q: u16, bufs: &[(usize, u32, bool)]) {
        let qi = usize::from(q);
        let head = self.next[qi];
        for (i, &(at, len, writable)) in bufs.iter().enumerate() {
            let index = self.next[qi];
            self.next[qi] = (index + 1) % QSIZE;
            let last = i + 1 == bufs.len();
            let next = if last { 0 } else { VIRTQ_DESC_F_NEXT };
            let flags = (next | if writable { VIRTQ_DESC_F_WRITE } else { 0 }) as u8;
            self.guest(GuestOp::Desc {
                q: q as u8,
                index: index as u8,
                addr: at as u16,
                wild: None,
                len: len as u16,
                flags,
                next: self.next[qi] as u8,
            });
        }
        self.guest(GuestOp::Avail { q: q as u8, head, bump: 0 });
        self.guest(GuestOp::Notify { q: q as u8 });
    }

    fn vsock(&mut self, op: VsockOp) {
        match op {
            VsockOp::Init { event_idx, indirect } => {
                use virtio::features::*;
                let features = VIRTIO_F_VERSION_1
                    | virtio::vsock::VIRTIO_VSOCK_F_STREAM
                    | if event_idx { VIRTIO_F_EVENT_IDX } else { 0 }
                    | if indirect { VIRTIO_F_INDIRECT_DESC } else { 0 };
                self.guest(GuestOp::Reset);
                self.guest(GuestOp::Negotiate { features });
                for q in 0..3u16 {
                    let base = q * RING_SPACING;
                    self.guest(GuestOp::SetupQueue {
                        q: q as u8,
                        size_log: 3,
                        desc: base,
                        avail: base + 0x100,
                        used: base + 0x200,
                    });
                }
                self.next = [0; 3];
                self.guest(GuestOp::DriverOk);
            }
            VsockOp::Tx { op, wrong, len, claim, at, cuts } => {
                let payload = usize::from(len) % 3000;
                let h = VsockHeader {
                    src_cid: (if wrong & 1 != 0 { PEER } else { OWN }).into(),
                    dst_cid: [PEER, 2, 77, OWN][usize::from(wrong >> 1 & 3)].into(),
                    src_port: (1000 + u32::from(op)).into(),
                    dst_port: 2000.into(),
                    len: claim.unwrap_or(payload as u32).into(),
                    socket_type: (if wrong & 8 != 0 { 2 } else { VIRTIO_VSOCK_TYPE_STREAM }).into(),
                    op: u16::from(op % 9).into(),
                    flags: 0.into(),
                    buf_alloc: 65536.into(),
                    fwd_cnt: 0.into(),
                };
                let total = HEADER_SIZE + payload;
                let at = DATA + usize::from(at) % (RAM - DATA - total);
                let mut bytes = h.to_bytes().to_vec();
                bytes.extend((0..payload).map(|i| i as u8));
                let _ = self.mem.write(BASE + at as u64, &bytes);
                let mut cut =
                    [usize::from(cuts.0) % (total + 1), usize::from(cuts.1) % (total + 1)];
                cut.sort_unstable();
                let pieces = [(0, cut[0]), (cut[0], cut[1]), (cut[1], total)];
                let bufs: Vec<(usize, u32, bool)> = pieces
                    .iter()
                    .filter(|(a, b)| b > a)
                    .map(|&(a, b)| (at + a, (b - a) as u32, false))
                    .collect();
                self.chain(TXQ, &bufs);
            }
            VsockOp::Rx { at, sizes } => {
                let a = usize::from(sizes.0) % 2100;
                let b = usize::from(sizes.1) % 3 * usize::from(sizes.1 >> 2) % 1100;
                let at = DATA + usize::from(at) % (RAM - DATA - a - b - 1);
                let mut bufs = vec![(at, a as u32, true)];
                if b > 0 {
                    bufs.push((at + a, b as u32, true));
                }
                self.chain(RXQ, &bufs);
            }
            VsockOp::Event { at, len } => {
                let at = DATA + usize::from(at) % (RAM - DATA - 8);
                self.chain(EVENTQ, &[(at, u32::from(len % 8), true)]);
            }
        }
    }
}

/// Runs one `virtio_vsock` input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut ram = vec![0u8; RAM];
    let t = MmioTransport::new(VsockDevice::new(OWN, PEER, Peer::default()));
    let ident = virtio_ops::ident(&t);
    assert_eq!(ident[0], u64::from(MAGIC));
    let mut h = Harness {
        t,
        mem: SliceMemory::new(BASE, &mut ram),
        layout: [QueueLayout::default(); 8],
        ident,
        next: [0; 3],
    };
    for _ in 0..200 {
        let Ok(step) = Step::arbitrary(&mut u) else { break };
        match step {
            Step::Guest(g) => h.guest(g),
            Step::Vsock(v) => h.vsock(v),
            Step::Peer(p) => peer_op(h.t.device_mut().backend_mut(), p),
        }
    }
    h.t.write(&mut h.mem, virtio::mmio::STATUS, 4, 0);
    let p = h.t.device().backend();
    assert!(!p.our_up && p.reserved.is_none(), "down and nothing half sent after a reset");
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run() {
        for seed in crate::seeds::noise(21, 16, 1500) {
            super::run(&seed);
        }
    }

    /// Found after 1.19 M runs: the guest made 9 rx buffers available in an 8-entry queue
    /// (the device had already read entry 1, so its next look at `avail.idx` saw only 8
    /// ahead). When a packet arrived the device completed 9 chains in one step, within its
    /// bounds, and the used ring wrapped; the harness had asserted at most a queue's worth.
    #[test]
    fn regression_more_buffers_available_than_queue_entries() {
        super::run(&[
            77, 167, 93, 30, 12, 0, 188, 2, 0, 0, 135, 221, 126, 90, 12, 213, 118, 49, 114, 46, 94,
            63, 189, 238, 209, 46, 222, 19, 43, 238, 92, 142, 147, 137, 19, 168, 224, 199, 151, 98,
            45, 218, 6, 155, 168, 68, 86, 86, 86, 86, 86, 86, 86, 86, 86, 86, 86, 86, 86, 86, 86,
            86, 86, 86, 86, 86, 86, 86, 86, 35, 79, 79, 79, 79, 79, 79, 79, 79, 79, 79, 86, 86, 86,
            86, 86, 86, 79, 86, 86, 79, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 161, 60, 81, 57, 184, 51, 252, 150, 115, 41, 97, 101, 60, 115, 91, 97,
            86, 82, 73, 91, 101, 218, 255, 255, 255, 255, 255, 255, 50, 53, 51, 252, 34, 113, 242,
            100, 255, 98, 89, 252, 31, 79, 79, 79, 79, 195, 7, 79, 79, 79, 79, 79, 79, 145, 79, 79,
            142, 77, 25, 110, 43, 171, 185, 218, 7, 134, 165, 110, 37, 161, 232, 70, 121, 0, 86,
            35, 79, 79, 79, 79, 79, 79, 79, 79, 79, 79, 86, 86, 86, 86, 86, 86, 79, 86, 86, 79,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 113, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129,
            129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 129, 255, 255, 147, 179,
            244, 135, 37, 134, 213, 49, 10, 236, 52, 12, 46, 49, 152, 176, 140, 28, 65, 170, 17,
            166, 113, 87, 62, 54, 70, 162, 155, 111, 77, 146, 5, 237, 142, 245, 66, 234, 129, 129,
            129, 129, 3, 40, 111, 137, 30, 189, 117, 83, 189, 209, 40, 220, 140, 72,
        ]);
    }

    /// Replays `corpus/virtio_vsock/` after a fuzzing run and prints what it reached:
    /// `cargo test --release -- --ignored corpus_reach --nocapture`. The fuzz smoke script
    /// runs the ignored tests before fuzzing, when the corpus holds only the noise seeds (or
    /// is being written): then it only reports.
    #[test]
    #[ignore]
    fn corpus_reach() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/virtio_vsock");
        let Ok(entries) = std::fs::read_dir(dir) else {
            println!("no corpus/virtio_vsock: nothing to replay");
            return;
        };
        let mut n = 0;
        for entry in entries.flatten() {
            if let Ok(input) = std::fs::read(entry.path()) {
                super::run(&input);
                n += 1;
            }
        }
        let [sent, payload, events] = super::REACHED.with(|r| r.get());
        println!(
            "{n} inputs: {sent} packets sent, {payload} rx buffers with payload, {events} events"
        );
        if n >= 100 {
            assert!(sent > 0 && payload > 0 && events > 0, "a fuzzed corpus reaches the device");
        }
    }
}
