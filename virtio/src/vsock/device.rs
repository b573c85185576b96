//! The virtio-vsock device model: the three queues over a [`VsockBackend`].

use super::packet::{
    check_rx, classify_tx, parse_tx, TxAction, VsockHeader, EVENT_SIZE, HEADER_SIZE,
    VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, VIRTIO_VSOCK_OP_RW,
};
use super::VSOCK_DEVICE_ID;
use super::{VsockBackend, CHUNK, EVENTQ, QUEUE_SIZE, RXQ, TXQ, VIRTIO_VSOCK_F_STREAM};
use crate::device::{read_config_bytes, ActivateError, DeviceContext, VirtioDevice};
use crate::memory::GuestMemory;
use crate::queue::{DescriptorChain, Queue};

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
    const fn new() -> RstQueue {
        const ZERO: VsockHeader = VsockHeader {
            src_cid: 0,
            dst_cid: 0,
            src_port: 0,
            dst_port: 0,
            len: 0,
            socket_type: 0,
            op: 0,
            flags: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        };
        RstQueue { slots: [ZERO; RST_QUEUE_CAPACITY], head: 0, len: 0 }
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
                old.dst_port
            });
        }
    }

    /// Takes tx chains until the queue is empty or the backend is full.
    fn transmit<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        let Some((q, mem)) = ctx.queue(TXQ) else { return };
        self.tx_blocked = false;
        for _ in 0..ROUNDS {
            let Some(chain) = q.pop(mem) else { return };
            let h = match parse_tx(&chain, &*mem) {
                Ok(h) => h,
                Err(e) => {
                    guest_warn!("vsock: bad tx chain {}: {}", chain.head(), e);
                    q.add_used(mem, chain.head(), 0);
                    continue;
                }
            };
            match classify_tx(&h, self.cid, self.peer_cid, self.backend.peer_up()) {
                TxAction::Forward => {
                    if !self.backend.send_begin(&h) {
                        // Stays in the available ring; the next poll takes it again.
                        q.undo_pop();
                        self.tx_blocked = true;
                        return;
                    }
                    send_payload(&mut self.backend, &chain, &*mem, h.len);
                    self.backend.send_commit();
                }
                TxAction::Reset(why) => {
                    guest_warn!("vsock: tx to port {}: {}; RST", { h.dst_port }, why);
                    self.queue_rst(h.reset_reply());
                }
                TxAction::Drop(why) => guest_warn!("vsock: tx packet dropped: {}", why),
            }
            q.add_used(mem, chain.head(), 0);
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
            let Some(chain) = q.pop(mem) else { return };
            let (h, offset) = match next {
                Next::Rst(h) => (h, 0),
                Next::Peer(p) => (p.header, p.offset),
            };
            let remaining = h.len - offset;
            let Some(room) = rx_room(&chain, remaining) else {
                guest_warn!(
                    "vsock: rx buffer {} unusable ({} bytes)",
                    chain.head(),
                    chain.writable_len()
                );
                q.add_used(mem, chain.head(), 0);
                continue;
            };
            let piece = core::cmp::min(remaining, room);
            let written = fill_rx(&mut self.backend, &chain, mem, &h, offset, piece, next);
            q.add_used(mem, chain.head(), written);
            match next {
                Next::Rst(_) => {
                    self.rsts.pop();
                }
                Next::Peer(mut p) => {
                    p.offset += piece;
                    if p.offset >= h.len {
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
            let Some(chain) = q.pop(mem) else { return };
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
    out.len = piece;
    if chain.write_at(mem, 0, &out.to_bytes()) != Ok(HEADER_SIZE) {
        log::warn!(target: "virtio", "vsock: rx buffer not writable; packet lost");
        return 0;
    }
    if matches!(next, Next::Rst(_)) || h.op != VIRTIO_VSOCK_OP_RW {
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
        // struct virtio_vsock_config { le64 guest_cid; } (virtio 1.2 §5.10.4).
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
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

    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        self.run(ctx);
    }
}
