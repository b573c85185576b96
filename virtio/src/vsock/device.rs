//! The virtio-vsock device model: the three queues over a [`VsockBackend`].

use super::packet::{
    check_rx, classify_tx, parse_tx, TxAction, VsockHeader, EVENT_SIZE, HEADER_SIZE,
    VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, VIRTIO_VSOCK_OP_RW,
};
use super::VSOCK_DEVICE_ID;
use super::{VsockBackend, CHUNK, EVENTQ, QUEUE_SIZE, RXQ, TXQ, VIRTIO_VSOCK_F_STREAM};
use crate::device::{read_config_bytes, ActivateError, DeviceContext, VirtioDevice};
use crate::layout::VirtioVsockConfig;
use crate::memory::GuestMemory;
use crate::queue::{DescriptorChain, Queue};
use zerocopy::IntoBytes;

/// Most device-generated RSTs waiting for a guest receive buffer. When full, the oldest is
/// dropped: a guest that floods bad packets without reading its rx queue cannot grow the
/// device's memory (virtio 1.2 §5.10.6.1: the extra resources are bounded).
pub const RST_QUEUE_CAPACITY: usize = 16;
/// Most chains one call takes from the tx or rx queue (a guest refilling a queue from another
/// vCPU cannot keep the device busy forever).
const ROUNDS: usize = 4 * QUEUE_SIZE as usize;
/// Most peer packets dropped per call while the device is not active.
const DRAIN_ROUNDS: usize = 4 * QUEUE_SIZE as usize;

/// A fixed-capacity FIFO of RST headers.
#[derive(Clone, Debug)]
struct RstQueue {
    slots: [VsockHeader; RST_QUEUE_CAPACITY],
    head: usize,
    len: usize,
}

impl RstQueue {
    fn new() -> RstQueue {
        RstQueue { slots: [VsockHeader::default(); RST_QUEUE_CAPACITY], head: 0, len: 0 }
    }

    /// Appends `h`; returns the oldest entry if it had to be dropped to make room.
    fn push(&mut self, h: VsockHeader) -> Option<VsockHeader> {
        let dropped = if self.len == RST_QUEUE_CAPACITY { self.pop() } else { None };
        let tail = (self.head + self.len) % RST_QUEUE_CAPACITY;
        if let Some(slot) = self.slots.get_mut(tail) {
            *slot = h;
            self.len += 1;
        }
        dropped
    }

    fn front(&self) -> Option<VsockHeader> {
        if self.len == 0 {
            return None;
        }
        self.slots.get(self.head).copied()
    }

    fn pop(&mut self) -> Option<VsockHeader> {
        let h = self.front()?;
        self.head = (self.head + 1) % RST_QUEUE_CAPACITY;
        self.len -= 1;
        Some(h)
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// The peer packet being delivered: its header (read and checked once) and how many payload
/// bytes the guest already has.
#[derive(Clone, Copy, Debug)]
struct RxProgress {
    header: VsockHeader,
    offset: u32,
}

/// What fills the next guest receive buffer.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// The oldest device RST.
    Rst(VsockHeader),
    /// The current peer packet, from payload byte `offset`.
    Peer(RxProgress),
}

/// A virtio socket device joining the guest with CID `cid` to its one peer guest.
pub struct VsockDevice<B: VsockBackend> {
    backend: B,
    cid: u64,
    peer_cid: u64,
    active: bool,
    rsts: RstQueue,
    rx: Option<RxProgress>,
    event_pending: bool,
    tx_blocked: bool,
    /// Where each chain taken from a queue is parsed (in place: a chain is about 1 KiB).
    scratch: DescriptorChain,
}

impl<B: VsockBackend> VsockDevice<B> {
    /// A device for the guest `cid` whose peer is the guest `peer_cid`, over `backend`.
    ///
    /// # Panics
    ///
    /// If a CID is reserved (0, 1, 2 = host, 0xffffffff; virtio 1.2 §5.10.4 allows only 32-bit
    /// CIDs) or both are the same: a VMM configuration mistake.
    pub fn new(cid: u64, peer_cid: u64, backend: B) -> VsockDevice<B> {
        assert!(cid_usable(cid), "vsock: guest CID {cid} is reserved");
        assert!(cid_usable(peer_cid), "vsock: peer CID {peer_cid} is reserved");
        assert!(cid != peer_cid, "vsock: guest and peer share CID {cid}");
        VsockDevice {
            backend,
            cid,
            peer_cid,
            active: false,
            rsts: RstQueue::new(),
            rx: None,
            event_pending: false,
            tx_blocked: false,
            scratch: DescriptorChain::empty(0),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The guest's CID.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// The peer guest's CID.
    pub fn peer_cid(&self) -> u64 {
        self.peer_cid
    }

    /// Device RSTs waiting for a guest receive buffer.
    pub fn pending_rsts(&self) -> usize {
        self.rsts.len
    }

    /// Whether a TRANSPORT_RESET event waits for a guest event buffer.
    pub fn event_pending(&self) -> bool {
        self.event_pending
    }

    /// Whether the last look at the tx queue stopped because the backend was full.
    pub fn tx_blocked(&self) -> bool {
        self.tx_blocked
    }

    /// Everything one notification or poll does, in order: peer reset, tx, rx, event, flush.
    fn run<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        if !self.active {
            self.drain();
        } else {
            if self.backend.take_peer_reset() {
                self.on_peer_reset();
            }
            self.transmit(ctx);
            self.receive(ctx);
            self.deliver_event(ctx);
        }
        self.backend.flush();
    }

    /// Inactive: no guest to deliver to. Peer packets are for connections of a guest that is
    /// gone or not there yet (the peer sees us down and answers its own REQUESTs).
    fn drain(&mut self) {
        self.backend.take_peer_reset();
        for _ in 0..DRAIN_ROUNDS {
            if self.backend.recv_peek().is_none() {
                break;
            }
            self.backend.recv_pop();
        }
    }

    fn on_peer_reset(&mut self) {
        self.event_pending = true;
        // Our RSTs answered packets meant for the old peer; its connections are gone.
        self.rsts.clear();
    }

    fn queue_rst(&mut self, h: VsockHeader) {
        if let Some(old) = self.rsts.push(h) {
            guest_warn!("vsock: rx queue not read; device RST for port {} dropped", {
                old.dst_port.get()
            });
        }
    }

    /// Takes tx chains until the queue is empty or the backend is full.
    fn transmit<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        let Some((q, mem)) = ctx.queue(TXQ) else { return };
        self.tx_blocked = false;
        for _ in 0..ROUNDS {
            if !q.pop_into(mem, &mut self.scratch) {
                return;
            }
            let chain = &self.scratch;
            let h = match parse_tx(chain, &*mem) {
                Ok(h) => h,
                Err(e) => {
                    guest_warn!("vsock: bad tx chain {}: {}", chain.head(), e);
                    q.add_used(mem, chain.head(), 0);
                    continue;
                }
            };
            let head = chain.head();
            match classify_tx(&h, self.cid, self.peer_cid, self.backend.peer_up()) {
                TxAction::Forward => {
                    if !self.backend.send_begin(&h) {
                        // Stays in the available ring; the next poll takes it again.
                        q.undo_pop();
                        self.tx_blocked = true;
                        return;
                    }
                    send_payload(&mut self.backend, &self.scratch, &*mem, h.len.get());
                    self.backend.send_commit();
                }
                TxAction::Reset(why) => {
                    guest_warn!("vsock: tx to port {}: {}; RST", h.dst_port.get(), why);
                    self.queue_rst(h.reset_reply());
                }
                TxAction::Drop(why) => guest_warn!("vsock: tx packet dropped: {}", why),
            }
            q.add_used(mem, head, 0);
        }
    }

    /// The next packet for the guest: a split packet is finished first, then device RSTs,
    /// then the peer's next packet (checked once; a bad one is dropped here).
    fn next_rx(&mut self) -> Option<Next> {
        if let Some(p) = self.rx {
            return Some(Next::Peer(p));
        }
        if let Some(h) = self.rsts.front() {
            return Some(Next::Rst(h));
        }
        for _ in 0..DRAIN_ROUNDS {
            let h = self.backend.recv_peek()?;
            match check_rx(&h, self.cid, self.peer_cid) {
                Ok(()) => {
                    let p = RxProgress { header: h, offset: 0 };
                    self.rx = Some(p);
                    return Some(Next::Peer(p));
                }
                Err(e) => {
                    guest_warn!("vsock: packet from the peer dropped: {}", e);
                    self.backend.recv_pop();
                }
            }
        }
        None
    }

    /// Fills guest receive buffers while there are packets and buffers.
    fn receive<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        let Some((q, mem)) = ctx.queue(RXQ) else { return };
        for _ in 0..ROUNDS {
            let Some(next) = self.next_rx() else { return };
            if !q.pop_into(mem, &mut self.scratch) {
                return;
            }
            let chain = &self.scratch;
            let (h, offset) = match next {
                Next::Rst(h) => (h, 0),
                Next::Peer(p) => (p.header, p.offset),
            };
            let remaining = h.len.get().saturating_sub(offset);
            let Some(room) = rx_room(chain, remaining) else {
                guest_warn!(
                    "vsock: rx buffer {} unusable ({} bytes)",
                    chain.head(),
                    chain.writable_len()
                );
                q.add_used(mem, chain.head(), 0);
                continue;
            };
            let piece = core::cmp::min(remaining, room);
            let written = fill_rx(&mut self.backend, chain, mem, &h, offset, piece, next);
            q.add_used(mem, chain.head(), written);
            match next {
                Next::Rst(_) => {
                    self.rsts.pop();
                }
                Next::Peer(mut p) => {
                    p.offset += piece;
                    if p.offset >= h.len.get() {
                        self.backend.recv_pop();
                        self.rx = None;
                    } else {
                        self.rx = Some(p);
                    }
                }
            }
        }
    }

    /// Puts a pending TRANSPORT_RESET in the first usable event buffer.
    fn deliver_event<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        if !self.event_pending {
            return;
        }
        let Some((q, mem)) = ctx.queue(EVENTQ) else { return };
        for _ in 0..ROUNDS {
            if !q.pop_into(mem, &mut self.scratch) {
                return;
            }
            let chain = &self.scratch;
            if chain.readable_len() != 0 || chain.writable_len() < EVENT_SIZE as u64 {
                guest_warn!("vsock: event buffer {} unusable", chain.head());
                q.add_used(mem, chain.head(), 0);
                continue;
            }
            let id = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.to_le_bytes();
            let len = match chain.write_at(mem, 0, &id) {
                Ok(EVENT_SIZE) => EVENT_SIZE as u32,
                _ => {
                    log::warn!(target: "virtio", "vsock: event buffer not writable");
                    0
                }
            };
            q.add_used(mem, chain.head(), len);
            self.event_pending = false;
            return;
        }
    }
}

/// Whether `cid` may be a guest's CID (virtio 1.2 §5.10.4: not 0, 1, 2, 0xffffffff, and the
/// upper 32 bits zero).
fn cid_usable(cid: u64) -> bool {
    cid > 2 && cid < u64::from(u32::MAX)
}

/// Payload bytes the receive `chain` can take of a packet with `remaining` payload bytes to
/// go; `None` if the chain is not a receive buffer (readable parts, no room for a header, no
/// room for any payload that remains).
fn rx_room(chain: &DescriptorChain, remaining: u32) -> Option<u32> {
    if chain.readable_len() != 0 {
        return None;
    }
    let room = chain.writable_len().checked_sub(HEADER_SIZE as u64)?;
    if room == 0 && remaining != 0 {
        return None;
    }
    Some(u32::try_from(room).unwrap_or(u32::MAX))
}

/// Copies `len` payload bytes of the tx `chain` (after the header) to the backend.
fn send_payload<B: VsockBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    chain: &DescriptorChain,
    mem: &M,
    len: u32,
) {
    let len = len as usize;
    let mut buf = [0u8; CHUNK];
    let mut at = 0;
    while at < len {
        let part = &mut buf[..core::cmp::min(CHUNK, len - at)];
        if !matches!(chain.read_at(mem, (HEADER_SIZE + at) as u64, part), Ok(n) if n == part.len())
        {
            // Checked against guest RAM when popped: a broken memory implementation.
            log::warn!(target: "virtio", "vsock: tx payload unreadable; zeros sent");
            part.fill(0);
        }
        backend.send_payload(at, part);
        at += part.len();
    }
}

/// Writes `h` with `len = piece` and payload `[offset, offset + piece)` of the current peer
/// packet into the rx `chain`. Returns the bytes written (the used length).
fn fill_rx<B: VsockBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    chain: &DescriptorChain,
    mem: &mut M,
    h: &VsockHeader,
    offset: u32,
    piece: u32,
    next: Next,
) -> u32 {
    let mut out = *h;
    out.len = piece.into();
    if chain.write_at(mem, 0, &out.to_bytes()) != Ok(HEADER_SIZE) {
        log::warn!(target: "virtio", "vsock: rx buffer not writable; packet lost");
        return 0;
    }
    if matches!(next, Next::Rst(_)) || h.op.get() != VIRTIO_VSOCK_OP_RW {
        return HEADER_SIZE as u32;
    }
    let mut buf = [0u8; CHUNK];
    let mut at = 0usize;
    let piece = piece as usize;
    while at < piece {
        let part = &mut buf[..core::cmp::min(CHUNK, piece - at)];
        backend.recv_payload(offset as usize + at, part);
        if chain.write_at(mem, (HEADER_SIZE + at) as u64, part) != Ok(part.len()) {
            log::warn!(target: "virtio", "vsock: rx buffer not writable; payload lost");
            break;
        }
        at += part.len();
    }
    // At most a u32 piece plus the header; the chain holds both (< 2^32 bytes).
    (HEADER_SIZE + at) as u32
}

impl<B: VsockBackend> VirtioDevice for VsockDevice<B> {
    fn device_id(&self) -> u32 {
        VSOCK_DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_VSOCK_F_STREAM
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = VirtioVsockConfig { guest_cid: self.cid.into() };
        read_config_bytes(config.as_bytes(), offset, data);
    }

    fn activate(&mut self, _features: u64, queues: &[Queue]) -> Result<(), ActivateError> {
        for q in [RXQ, TXQ, EVENTQ] {
            if !queues.get(usize::from(q)).is_some_and(Queue::ready) {
                return Err(ActivateError::QueueNotReady(q));
            }
        }
        // A peer reset before we were up is no news to a guest that just started.
        self.backend.take_peer_reset();
        self.active = true;
        self.backend.set_up(true);
        Ok(())
    }

    fn reset(&mut self) {
        if self.rx.take().is_some() {
            // The rest of a split packet was for the guest that is going away.
            self.backend.recv_pop();
        }
        self.rsts.clear();
        self.event_pending = false;
        self.tx_blocked = false;
        self.active = false;
        self.backend.set_up(false);
    }

    fn queue_notify<M: GuestMemory + ?Sized>(
        &mut self,
        _queue: u16,
        ctx: &mut DeviceContext<'_, M>,
    ) {
        self.run(ctx);
    }

    /// Every queue is looked at on any notification: once for several.
    fn queues_notify<M: GuestMemory + ?Sized>(&mut self, _: u64, ctx: &mut DeviceContext<'_, M>) {
        self.run(ctx);
    }

    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        self.run(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::queue::VIRTQ_DESC_F_NEXT;
    use crate::testing::vsock::{VsockWire, WireEnd};
    use crate::testing::DriverQueue;
    use crate::vsock::packet::*;
    use core::cell::RefCell;
    use fastrand::Rng;
    use std::collections::HashMap;

    const BASE: u64 = 0x4000_0000;
    const RAM: usize = 2 << 20;
    /// Buffers are handed out from here on, round robin.
    const BUFS: u64 = BASE + 0x10000;
    const QSIZE: u16 = 16;
    const A: u64 = 3;
    const B: u64 = 4;

    type Wire = RefCell<VsockWire>;

    fn pkt(src: u64, dst: u64, op: u16, len: u32) -> VsockHeader {
        VsockHeader {
            src_cid: src.into(),
            dst_cid: dst.into(),
            src_port: 1024.into(),
            dst_port: 5000.into(),
            len: len.into(),
            socket_type: VIRTIO_VSOCK_TYPE_STREAM.into(),
            op: op.into(),
            flags: 0.into(),
            buf_alloc: 262_144.into(),
            fwd_cnt: 77.into(),
        }
    }

    /// A guest (driver queues over its own RAM) with a vsock device on one side of a wire.
    struct Rig<'w> {
        ram: Vec<u8>,
        queues: [Queue; 3],
        drv: [DriverQueue; 3],
        dev: VsockDevice<WireEnd<'w>>,
        next_buf: u64,
        /// Writable segments of each posted rx / event chain, by head.
        posted: HashMap<(u16, u16), Vec<(u64, u32)>>,
    }

    impl<'w> Rig<'w> {
        fn new(wire: &'w Wire, side: usize, cid: u64, peer: u64) -> Rig<'w> {
            let mut ram = vec![0u8; RAM];
            let mem = SliceMemory::new(BASE, &mut ram);
            let drv = [0u64, 1, 2].map(|i| DriverQueue::at(BASE + i * 0x1000, QSIZE));
            let mut queues =
                [Queue::new(QUEUE_SIZE), Queue::new(QUEUE_SIZE), Queue::new(QUEUE_SIZE)];
            for (q, d) in queues.iter_mut().zip(&drv) {
                d.configure(q);
                q.enable(&mem, 0).unwrap();
            }
            let mut dev = VsockDevice::new(cid, peer, WireEnd::new(wire, side));
            dev.activate(0, &queues).unwrap();
            Rig { ram, queues, drv, dev, next_buf: BUFS, posted: HashMap::new() }
        }

        fn mem(&mut self) -> SliceMemory<'_> {
            SliceMemory::new(BASE, &mut self.ram)
        }

        fn alloc(&mut self, len: usize) -> u64 {
            if self.next_buf + len as u64 > BASE + RAM as u64 {
                self.next_buf = BUFS;
            }
            let at = self.next_buf;
            self.next_buf += (len as u64 + 15) & !15;
            at
        }

        fn poll(&mut self) {
            let mut mem = SliceMemory::new(BASE, &mut self.ram);
            let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
            self.dev.poll(&mut ctx);
        }

        fn notify(&mut self, q: u16) {
            let mut mem = SliceMemory::new(BASE, &mut self.ram);
            let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
            self.dev.queue_notify(q, &mut ctx);
        }

        /// Makes header + payload available on tx, cut into buffers at `cuts` (byte offsets).
        fn tx(&mut self, h: &VsockHeader, payload: &[u8], cuts: &[usize]) -> u16 {
            let mut bytes = h.to_bytes().to_vec();
            bytes.extend_from_slice(payload);
            let at = self.alloc(bytes.len());
            self.mem().write(at, &bytes).unwrap();
            let mut segs = Vec::new();
            let mut start = 0;
            for &end in cuts.iter().chain([bytes.len()].iter()) {
                segs.push((at + start as u64, (end - start) as u32, false));
                start = end;
            }
            self.add(TXQ, &segs)
        }

        fn add(&mut self, q: u16, segs: &[(u64, u32, bool)]) -> u16 {
            let mut drv = self.drv[usize::from(q)].clone();
            let head = drv.add_chain(&mut self.mem(), segs);
            self.drv[usize::from(q)] = drv;
            head
        }

        /// Posts a receive (or event) buffer of writable segments of `sizes` bytes.
        fn post(&mut self, q: u16, sizes: &[u32]) -> u16 {
            let segs: Vec<(u64, u32, bool)> =
                sizes.iter().map(|&n| (self.alloc(n as usize), n, true)).collect();
            let head = self.add(q, &segs);
            self.posted.insert((q, head), segs.iter().map(|&(a, n, _)| (a, n)).collect());
            head
        }

        fn used(&mut self, q: u16) -> Vec<(u32, u32)> {
            let mut drv = self.drv[usize::from(q)].clone();
            let mem = SliceMemory::new(BASE, &mut self.ram);
            let v = std::iter::from_fn(|| drv.pop_used(&mem)).collect();
            self.drv[usize::from(q)] = drv;
            v
        }

        /// The first `len` bytes written to posted chain `head` of queue `q`.
        fn written(&mut self, q: u16, head: u32, len: u32) -> Vec<u8> {
            let segs = self.posted.remove(&(q, head as u16)).expect("a posted chain");
            let mut out = Vec::new();
            for (addr, n) in segs {
                let take = n.min(len - out.len() as u32);
                let mut b = vec![0u8; take as usize];
                self.mem().read(addr, &mut b).unwrap();
                out.extend(b);
            }
            out
        }

        /// Every packet the device put on rx since the last call: header and payload.
        fn received(&mut self) -> Vec<(VsockHeader, Vec<u8>)> {
            let used = self.used(RXQ);
            used.into_iter()
                .map(|(id, len)| {
                    assert!(len as usize >= HEADER_SIZE, "rx used length {len}");
                    let b = self.written(RXQ, id, len);
                    let h = VsockHeader::from_bytes(b[..HEADER_SIZE].try_into().unwrap());
                    assert_eq!(
                        h.len.get() as usize,
                        b.len() - HEADER_SIZE,
                        "len matches used length"
                    );
                    (h, b[HEADER_SIZE..].to_vec())
                })
                .collect()
        }
    }

    fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rng.fill(&mut v);
        v
    }

    fn take_all(wire: &Wire, side: usize) -> Vec<(VsockHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Some(h) = wire.borrow_mut().take(side, &mut buf) {
            out.push((h, buf[..h.len.get() as usize].to_vec()));
        }
        out
    }

    #[test]
    fn tx_forwards_header_and_payload_split_any_way() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        wire.borrow_mut().set_up(1, true);
        let mut rng = Rng::with_seed(1);
        let data = bytes(&mut rng, 3000);
        let h = pkt(A, B, VIRTIO_VSOCK_OP_RW, 3000);
        // Linux 6.1: header and payload in separate buffers; newer: one buffer; and worse.
        let layouts: [&[usize]; 4] = [&[44], &[], &[1, 43, 44, 45, 2000], &[20, 1000]];
        let heads: Vec<u16> = layouts.iter().map(|cuts| a.tx(&h, &data, cuts)).collect();
        a.notify(TXQ);
        let used = a.used(TXQ);
        assert_eq!(used, heads.iter().map(|&h| (u32::from(h), 0)).collect::<Vec<_>>());
        let sent = take_all(&wire, 1);
        assert_eq!(sent.len(), 4);
        for (sh, payload) in sent {
            assert_eq!(sh, h, "header forwarded unchanged");
            assert!(payload == data);
        }
        assert_eq!(wire.borrow().notifications(0), 1, "one notification for the batch");
    }

    #[test]
    fn hostile_tx_chains_are_consumed_and_dropped() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        wire.borrow_mut().set_up(1, true);
        let h = pkt(A, B, VIRTIO_VSOCK_OP_RW, 100);
        let short = a.tx(&h, &[], &[20]);
        let past = a.tx(&h, &[0; 99], &[44]);
        let huge = a.tx(&pkt(A, B, VIRTIO_VSOCK_OP_RW, 65537), &[0; 65537], &[44]);
        let at = a.alloc(200);
        let writable = a.add(TXQ, &[(at, 44, false), (at + 44, 100, true)]);
        let only_writable = a.add(TXQ, &[(at, 144, true)]);
        // A descriptor that points to itself.
        let mut drv = a.drv[1].clone();
        drv.set_desc(&mut a.mem(), 14, at, 44, VIRTQ_DESC_F_NEXT, 14);
        drv.publish(&mut a.mem(), 14);
        a.drv[1] = drv;
        let wrong_src = a.tx(&pkt(9, B, VIRTIO_VSOCK_OP_RW, 0), &[], &[]);
        a.notify(TXQ);
        let used = a.used(TXQ);
        let heads = [short, past, huge, writable, only_writable, 14, wrong_src];
        assert_eq!(used, heads.iter().map(|&h| (u32::from(h), 0)).collect::<Vec<_>>());
        assert_eq!(wire.borrow().queued(1), 0, "nothing reached the peer");
        assert_eq!(a.dev.pending_rsts(), 0, "none of these is answered");
    }

    #[test]
    fn bad_type_op_and_unknown_cid_are_answered_with_rst_from_the_device() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        wire.borrow_mut().set_up(1, true);
        let seqpacket =
            VsockHeader { socket_type: 2.into(), ..pkt(A, B, VIRTIO_VSOCK_OP_REQUEST, 0) };
        let bad_op = pkt(A, B, 42, 0);
        let host = pkt(A, VMADDR_CID_HOST, VIRTIO_VSOCK_OP_REQUEST, 0);
        let stranger = VsockHeader { dst_port: 9.into(), ..pkt(A, 77, VIRTIO_VSOCK_OP_RW, 5) };
        for h in [seqpacket, bad_op, host, stranger] {
            a.tx(&h, &[1; 5], &[44]);
        }
        a.notify(TXQ);
        assert_eq!(a.used(TXQ).len(), 4);
        assert_eq!(a.dev.pending_rsts(), 4, "no rx buffer yet: held");
        for _ in 0..4 {
            a.post(RXQ, &[64]);
        }
        a.notify(RXQ);
        let got = a.received();
        assert_eq!(got.len(), 4);
        for ((r, payload), sent) in got.iter().zip([seqpacket, bad_op, host, stranger]) {
            assert_eq!(*r, sent.reset_reply());
            assert_eq!(
                (r.src_cid.get(), r.dst_cid.get(), r.op.get()),
                (sent.dst_cid.get(), A, VIRTIO_VSOCK_OP_RST)
            );
            assert_eq!((r.src_port, r.dst_port), (sent.dst_port, sent.src_port));
            assert!(payload.is_empty());
        }
        assert_eq!(wire.borrow().queued(1), 0);
    }

    #[test]
    fn request_to_a_peer_that_is_down_gets_rst_and_other_packets_still_go() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        a.post(RXQ, &[44]);
        let req = pkt(A, B, VIRTIO_VSOCK_OP_REQUEST, 0);
        a.tx(&req, &[], &[]);
        a.tx(&pkt(A, B, VIRTIO_VSOCK_OP_RST, 0), &[], &[]);
        a.notify(TXQ);
        let got = a.received();
        assert_eq!(got, vec![(req.reset_reply(), vec![])]);
        assert_eq!(wire.borrow().queued(1), 1, "the RST goes to the peer's channel");
    }

    #[test]
    fn an_rst_is_never_answered_with_an_rst() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        a.tx(&pkt(A, 2, VIRTIO_VSOCK_OP_RST, 0), &[], &[]);
        a.tx(&VsockHeader { socket_type: 9.into(), ..pkt(A, B, VIRTIO_VSOCK_OP_RST, 0) }, &[], &[]);
        a.notify(TXQ);
        assert_eq!(a.used(TXQ).len(), 2);
        assert_eq!(a.dev.pending_rsts(), 0);
    }

    #[test]
    fn full_rst_queue_drops_the_oldest() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        for port in 0..RST_QUEUE_CAPACITY as u32 + 3 {
            let h = VsockHeader { src_port: port.into(), ..pkt(A, 2, VIRTIO_VSOCK_OP_REQUEST, 0) };
            a.tx(&h, &[], &[]);
            a.notify(TXQ);
            a.used(TXQ);
        }
        assert_eq!(a.dev.pending_rsts(), RST_QUEUE_CAPACITY);
        for _ in 0..QSIZE {
            a.post(RXQ, &[44]);
        }
        a.notify(RXQ);
        let ports: Vec<u32> = a.received().iter().map(|(h, _)| h.dst_port.get()).collect();
        let want: Vec<u32> = (3..RST_QUEUE_CAPACITY as u32 + 3).collect();
        assert_eq!(ports, want, "the 3 oldest dropped, the rest in order");
    }

    #[test]
    fn rw_larger_than_the_rx_buffer_is_split_in_order_with_the_same_counters() {
        let wire = Wire::default();
        let mut b = Rig::new(&wire, 1, B, A);
        let mut rng = Rng::with_seed(5);
        let data = bytes(&mut rng, 10_000);
        let h = VsockHeader { flags: 0.into(), ..pkt(A, B, VIRTIO_VSOCK_OP_RW, 10_000) };
        assert!(wire.borrow_mut().inject(1, &h, &data));
        let ctl = pkt(A, B, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
        assert!(wire.borrow_mut().inject(1, &ctl, &[]));
        // 4 KiB buffers as Linux posts them, a header split over two descriptors, odd sizes.
        b.post(RXQ, &[44 + 4096]);
        b.post(RXQ, &[10, 34, 1000]);
        b.post(RXQ, &[45]);
        b.poll();
        assert_eq!(wire.borrow().queued(1), 2, "packet not finished: nothing popped");
        for _ in 0..4 {
            b.post(RXQ, &[44 + 2048]);
        }
        b.poll();
        let got = b.received();
        let lens: Vec<u32> = got.iter().map(|(h, _)| h.len.get()).collect();
        assert_eq!(lens, vec![4096, 1000, 1, 2048, 2048, 807, 0]);
        let mut joined = Vec::new();
        for (piece, payload) in &got[..6] {
            assert_eq!(*piece, VsockHeader { len: piece.len, ..h }, "same header, smaller len");
            joined.extend_from_slice(payload);
        }
        assert!(joined == data, "bytes in order");
        assert_eq!(got[6].0, ctl, "control packet after the split one");
        assert_eq!(wire.borrow().queued(1), 0);
    }

    #[test]
    fn unusable_rx_buffers_are_returned_empty() {
        let wire = Wire::default();
        let mut b = Rig::new(&wire, 1, B, A);
        wire.borrow_mut().inject(1, &pkt(A, B, VIRTIO_VSOCK_OP_RW, 8), &[7; 8]);
        let small = b.post(RXQ, &[43]);
        let exact = b.post(RXQ, &[44]);
        let at = b.alloc(100);
        let readable = b.add(RXQ, &[(at, 50, false), (at + 50, 50, true)]);
        let good = b.post(RXQ, &[52]);
        b.poll();
        let used = b.used(RXQ);
        let want = [(small, 0), (exact, 0), (readable, 0), (good, 52)];
        assert_eq!(used, want.map(|(h, n)| (u32::from(h), n)));
    }

    #[test]
    fn bad_packets_from_the_peer_are_dropped() {
        let wire = Wire::default();
        let mut b = Rig::new(&wire, 1, B, A);
        let mut w = wire.borrow_mut();
        w.inject(1, &pkt(A, 5, VIRTIO_VSOCK_OP_RW, 1), &[1]);
        w.inject(1, &pkt(2, B, VIRTIO_VSOCK_OP_REQUEST, 0), &[]);
        w.inject(1, &pkt(A, B, 0, 0), &[]);
        w.inject(1, &pkt(A, B, VIRTIO_VSOCK_OP_SHUTDOWN, 3), &[1, 2, 3]);
        let good = pkt(A, B, VIRTIO_VSOCK_OP_RESPONSE, 0);
        w.inject(1, &good, &[]);
        drop(w);
        b.post(RXQ, &[100]);
        b.post(RXQ, &[100]);
        b.poll();
        assert_eq!(b.received(), vec![(good, vec![])]);
        assert_eq!(wire.borrow().queued(1), 0);
    }

    #[test]
    fn full_backend_keeps_tx_chains_in_the_ring_and_loses_nothing() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        wire.borrow_mut().set_up(1, true);
        wire.borrow_mut().set_limit(1, 3 * (44 + 1000));
        let mut rng = Rng::with_seed(9);
        let sent: Vec<Vec<u8>> = (0..10).map(|_| bytes(&mut rng, 1000)).collect();
        for (i, d) in sent.iter().enumerate() {
            // One descriptor each: ten chains fit the 16-entry ring.
            a.tx(
                &VsockHeader { fwd_cnt: (i as u32).into(), ..pkt(A, B, VIRTIO_VSOCK_OP_RW, 1000) },
                d,
                &[],
            );
        }
        a.notify(TXQ);
        assert!(a.dev.tx_blocked());
        assert_eq!(a.used(TXQ).len(), 3, "only what fits is taken");
        let mut got = Vec::new();
        for _ in 0..20 {
            got.extend(take_all(&wire, 1));
            a.poll();
        }
        assert!(!a.dev.tx_blocked());
        assert_eq!(a.used(TXQ).len(), 7);
        let order: Vec<u32> = got.iter().map(|(h, _)| h.fwd_cnt.get()).collect();
        assert_eq!(order, (0..10).collect::<Vec<u32>>(), "in order");
        assert!(got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>() == sent);
    }

    #[test]
    fn peer_reset_raises_one_event_once_the_guest_posts_a_buffer() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        wire.borrow_mut().set_up(1, true);
        a.tx(&pkt(A, 2, VIRTIO_VSOCK_OP_REQUEST, 0), &[], &[]);
        a.notify(TXQ);
        assert_eq!(a.dev.pending_rsts(), 1);
        wire.borrow_mut().set_up(1, false);
        a.poll();
        assert!(a.dev.event_pending());
        assert_eq!(a.dev.pending_rsts(), 0, "RSTs for the old peer dropped");
        a.poll();
        assert!(a.used(EVENTQ).is_empty());
        let e1 = a.post(EVENTQ, &[4]);
        let e2 = a.post(EVENTQ, &[4]);
        a.notify(EVENTQ);
        a.poll();
        assert_eq!(a.used(EVENTQ), vec![(u32::from(e1), 4)], "exactly one event");
        assert_eq!(
            a.written(EVENTQ, u32::from(e1), 4),
            VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.to_le_bytes()
        );
        assert!(!a.dev.event_pending());
        let _ = e2;
    }

    #[test]
    fn unusable_event_buffers_are_returned_empty() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        wire.borrow_mut().set_up(1, true);
        wire.borrow_mut().set_up(1, false);
        let small = a.post(EVENTQ, &[3]);
        let split = a.post(EVENTQ, &[2, 2]);
        a.poll();
        assert_eq!(a.used(EVENTQ), vec![(u32::from(small), 0), (u32::from(split), 4)]);
        assert_eq!(a.written(EVENTQ, u32::from(split), 4), [0, 0, 0, 0]);
    }

    #[test]
    fn reset_and_activation_tell_the_peer_and_forget_state() {
        let wire = Wire::default();
        let mut b = Rig::new(&wire, 1, B, A);
        assert!(wire.borrow().is_up(1));
        wire.borrow_mut().inject(1, &pkt(A, B, VIRTIO_VSOCK_OP_RW, 500), &[3; 500]);
        b.post(RXQ, &[144]);
        b.poll();
        assert_eq!(b.received().len(), 1, "first piece delivered");
        b.dev.reset();
        assert!(!wire.borrow().is_up(1));
        assert_eq!(wire.borrow().queued(1), 0, "rest of the split packet dropped");
        wire.borrow_mut().inject(1, &pkt(A, B, VIRTIO_VSOCK_OP_REQUEST, 0), &[]);
        b.poll();
        assert_eq!(wire.borrow().queued(1), 0, "an inactive device drains its backend");
        b.dev.activate(0, &b.queues).unwrap();
        assert!(wire.borrow().is_up(1));
    }

    #[test]
    fn activation_needs_all_three_queues() {
        let wire = Wire::default();
        let mut dev = VsockDevice::new(A, B, WireEnd::new(&wire, 0));
        let qs = [Queue::new(8), Queue::new(8), Queue::new(8)];
        assert_eq!(dev.activate(0, &qs), Err(ActivateError::QueueNotReady(0)));
        assert!(!wire.borrow().is_up(0));
        let mut c = [0u8; 8];
        dev.read_config(0, &mut c);
        assert_eq!(u64::from_le_bytes(c), A);
        assert_eq!((dev.device_id(), dev.features()), (19, VIRTIO_VSOCK_F_STREAM));
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn host_cid_is_refused() {
        let wire = Wire::default();
        VsockDevice::new(2, B, WireEnd::new(&wire, 0));
    }

    /// Guest A sends `total` bytes as RW packets of random sizes (random descriptor cuts)
    /// through its device, the wire and B's device into B's random-sized rx buffers.
    #[test]
    fn two_devices_back_to_back_move_1_mib_exactly() {
        let wire = Wire::default();
        let mut a = Rig::new(&wire, 0, A, B);
        let mut b = Rig::new(&wire, 1, B, A);
        let mut rng = Rng::with_seed(2024);
        let total = 1 << 20;
        let data = bytes(&mut rng, total);
        let (mut sent, mut in_flight, mut got) = (0usize, 0usize, Vec::new());
        let mut rx_posted = 0;
        for _ in 0..100_000 {
            while in_flight < 4 && sent < total {
                let n = (1 + rng.usize(..65536)).min(total - sent);
                let h = VsockHeader {
                    fwd_cnt: (sent as u32).into(),
                    ..pkt(A, B, VIRTIO_VSOCK_OP_RW, n as u32)
                };
                let cut = 1 + rng.usize(..44 + n - 1);
                a.tx(&h, &data[sent..sent + n], &[cut]);
                sent += n;
                in_flight += 1;
            }
            a.notify(TXQ);
            in_flight -= a.used(TXQ).len();
            while rx_posted < 8 {
                let size = 45 + rng.u32(..5000);
                let cut = 1 + rng.u32(..size - 1);
                b.post(RXQ, &[cut, size - cut]);
                rx_posted += 1;
            }
            b.notify(RXQ);
            for (h, payload) in b.received() {
                rx_posted -= 1;
                assert_eq!(
                    (h.src_cid.get(), h.dst_cid.get(), h.op.get()),
                    (A, B, VIRTIO_VSOCK_OP_RW)
                );
                got.extend(payload);
            }
            if got.len() == total {
                break;
            }
        }
        assert_eq!(got.len(), total);
        assert!(got == data, "1 MiB arrived exactly, in order");
    }
}
