//! An in-memory "wire" joining two vsock devices back to back, for tests.
//!
//! [`VsockWire`] holds one byte ring per direction (packets framed as a 44-byte header then
//! the payload), each side's up flag and pending peer-reset flag, and counters. Each device
//! gets a [`WireEnd`] (its [`VsockBackend`]) borrowing the wire through a `RefCell`, so a test
//! can also look at the wire, inject packets as a scripted peer, take what a device sent, or
//! shrink a ring to make it fill. No heap: `CAP` is the capacity of each ring in bytes.
//!
//! Policy of this loopback (the real channel decides its own): when a side goes down, the
//! packets queued towards it are discarded (its guest is gone) and the other side's peer-reset
//! flag is raised; packets it sent earlier stay queued for the peer.

use core::cell::RefCell;

use crate::vsock::{VsockBackend, VsockHeader, HEADER_SIZE};

/// A ring large enough for two full-size (64 KiB) packets.
pub const DEFAULT_WIRE_CAP: usize = 2 * (HEADER_SIZE + 64 * 1024);

/// Packets towards one side: a byte ring.
#[derive(Clone, Debug)]
struct Pipe<const CAP: usize> {
    buf: [u8; CAP],
    head: usize,
    len: usize,
    /// Usable bytes (at most CAP), so a test can make the ring fill early.
    limit: usize,
    /// Bytes of the reserved, unpublished packet.
    reserved: Option<usize>,
    packets: usize,
}

impl<const CAP: usize> Pipe<CAP> {
    fn new() -> Pipe<CAP> {
        Pipe { buf: [0; CAP], head: 0, len: 0, limit: CAP, reserved: None, packets: 0 }
    }

    fn copy_in(&mut self, at: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let slot = (self.head + self.len + at + i) % CAP;
            self.buf[slot] = b;
        }
    }

    fn copy_out(&self, at: usize, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.buf[(self.head + at + i) % CAP];
        }
    }

    fn reserve(&mut self, h: &VsockHeader) -> bool {
        let total = HEADER_SIZE + h.len.get() as usize;
        assert!(self.reserved.is_none(), "send_begin twice without send_commit");
        if self.len + total > self.limit {
            return false;
        }
        self.copy_in(0, &h.to_bytes());
        self.reserved = Some(total);
        true
    }

    fn payload(&mut self, offset: usize, data: &[u8]) {
        let total = self.reserved.expect("send_payload without send_begin");
        assert!(HEADER_SIZE + offset + data.len() <= total, "payload past the packet's len");
        self.copy_in(HEADER_SIZE + offset, data);
    }

    fn commit(&mut self) {
        let total = self.reserved.take().expect("send_commit without send_begin");
        self.len += total;
        self.packets += 1;
    }

    fn peek(&self) -> Option<VsockHeader> {
        if self.len == 0 {
            return None;
        }
        let mut raw = [0u8; HEADER_SIZE];
        self.copy_out(0, &mut raw);
        Some(VsockHeader::from_bytes(&raw))
    }

    fn pop(&mut self) {
        let h = self.peek().expect("recv_pop with no packet");
        let total = HEADER_SIZE + h.len.get() as usize;
        self.head = (self.head + total) % CAP;
        self.len -= total;
        self.packets -= 1;
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.packets = 0;
    }
}

/// Two vsock devices' channel: side 0 and side 1.
#[derive(Clone, Debug)]
pub struct VsockWire<const CAP: usize = DEFAULT_WIRE_CAP> {
    /// `to[i]`: packets towards side `i`.
    to: [Pipe<CAP>; 2],
    up: [bool; 2],
    peer_reset: [bool; 2],
    /// Whether side `i` sent or consumed something since its last flush.
    dirty: [bool; 2],
    notifications: [u32; 2],
}

impl<const CAP: usize> Default for VsockWire<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize> VsockWire<CAP> {
    /// An empty wire, both sides down.
    pub fn new() -> VsockWire<CAP> {
        VsockWire {
            to: [Pipe::new(), Pipe::new()],
            up: [false; 2],
            peer_reset: [false; 2],
            dirty: [false; 2],
            notifications: [0; 2],
        }
    }

    /// Limits the ring towards `side` to `bytes` (at most `CAP`).
    pub fn set_limit(&mut self, side: usize, bytes: usize) {
        self.to[side].limit = core::cmp::min(bytes, CAP);
    }

    /// Packets queued towards `side`.
    pub fn queued(&self, side: usize) -> usize {
        self.to[side].packets
    }

    /// Whether `side` is up.
    pub fn is_up(&self, side: usize) -> bool {
        self.up[side]
    }

    /// Sets `side` up or down, as its device would ([`VsockBackend::set_up`]); a test playing
    /// the peer uses it for the side no device drives.
    pub fn set_up(&mut self, side: usize, up: bool) {
        if self.up[side] && !up {
            self.to[side].clear();
            self.peer_reset[1 - side] = true;
        }
        self.up[side] = up;
    }

    /// Queues a packet towards `side` as if its peer sent it. False if it does not fit.
    pub fn inject(&mut self, side: usize, h: &VsockHeader, payload: &[u8]) -> bool {
        let pipe = &mut self.to[side];
        if !pipe.reserve(h) {
            return false;
        }
        pipe.payload(0, &payload[..core::cmp::min(payload.len(), h.len.get() as usize)]);
        pipe.commit();
        true
    }

    /// Takes the oldest packet queued towards `side`, copying up to `payload.len()` payload
    /// bytes into `payload`.
    pub fn take(&mut self, side: usize, payload: &mut [u8]) -> Option<VsockHeader> {
        let pipe = &mut self.to[side];
        let h = pipe.peek()?;
        let n = core::cmp::min(payload.len(), h.len.get() as usize);
        pipe.copy_out(HEADER_SIZE, &mut payload[..n]);
        pipe.pop();
        Some(h)
    }

    /// Notifications side `i` sent to its peer (one per flush after any traffic).
    pub fn notifications(&self, side: usize) -> u32 {
        self.notifications[side]
    }
}

/// One side of a [`VsockWire`]: a device's [`VsockBackend`].
#[derive(Clone, Copy, Debug)]
pub struct WireEnd<'a, const CAP: usize = DEFAULT_WIRE_CAP> {
    wire: &'a RefCell<VsockWire<CAP>>,
    side: usize,
}

impl<'a, const CAP: usize> WireEnd<'a, CAP> {
    /// Side `side` (0 or 1) of `wire`.
    pub fn new(wire: &'a RefCell<VsockWire<CAP>>, side: usize) -> WireEnd<'a, CAP> {
        assert!(side < 2, "a wire has sides 0 and 1");
        WireEnd { wire, side }
    }

    /// The wire.
    pub fn wire(&self) -> &'a RefCell<VsockWire<CAP>> {
        self.wire
    }

    fn peer(&self) -> usize {
        1 - self.side
    }
}

impl<const CAP: usize> VsockBackend for WireEnd<'_, CAP> {
    fn send_begin(&mut self, hdr: &VsockHeader) -> bool {
        self.wire.borrow_mut().to[self.peer()].reserve(hdr)
    }

    fn send_payload(&mut self, offset: usize, data: &[u8]) {
        self.wire.borrow_mut().to[self.peer()].payload(offset, data);
    }

    fn send_commit(&mut self) {
        let mut w = self.wire.borrow_mut();
        w.to[self.peer()].commit();
        w.dirty[self.side] = true;
    }

    fn recv_peek(&mut self) -> Option<VsockHeader> {
        self.wire.borrow().to[self.side].peek()
    }

    fn recv_payload(&mut self, offset: usize, buf: &mut [u8]) {
        let w = self.wire.borrow();
        let pipe = &w.to[self.side];
        let h = pipe.peek().expect("recv_payload with no packet");
        assert!(offset + buf.len() <= h.len.get() as usize, "recv_payload past the packet's len");
        pipe.copy_out(HEADER_SIZE + offset, buf);
    }

    fn recv_pop(&mut self) {
        let mut w = self.wire.borrow_mut();
        w.to[self.side].pop();
        w.dirty[self.side] = true;
    }

    fn take_peer_reset(&mut self) -> bool {
        core::mem::take(&mut self.wire.borrow_mut().peer_reset[self.side])
    }

    fn peer_up(&self) -> bool {
        self.wire.borrow().up[self.peer()]
    }

    fn set_up(&mut self, up: bool) {
        self.wire.borrow_mut().set_up(self.side, up);
    }

    fn flush(&mut self) {
        let mut w = self.wire.borrow_mut();
        if core::mem::take(&mut w.dirty[self.side]) {
            w.notifications[self.side] += 1;
        }
    }
}
