//! virtio-console (device id 3) with one port and no optional features (virtio 1.2 §5.3).
//!
//! Queue 0 (receiveq) carries bytes from the backend to the guest, queue 1 (transmitq) from
//! the guest to the backend. No byte is ever dropped:
//!
//! - Guest output is taken only as far as the backend accepts it. A chain the backend could
//!   not take whole is remembered (chain and offset) and resumed by the next
//!   [`VirtioDevice::poll`], which the VMM calls when the backend signals space. The chain is
//!   returned to the guest only once all of it was sent.
//! - Input is read from the backend only into a guest receive buffer: while the guest has
//!   none, bytes stay in the backend. A receive buffer that arrives before any input is held
//!   until input arrives.

use zerocopy::IntoBytes;

use crate::device::{read_config_bytes, ActivateError, DeviceContext, VirtioDevice};
use crate::layout::VirtioConsoleConfig;
use crate::memory::{GuestMemory, MemoryError};
use crate::queue::{DescriptorChain, Queue};

/// virtio device id of a console (virtio 1.2 §5).
pub const CONSOLE_DEVICE_ID: u32 = 3;
/// receiveq of port 0: device to guest (virtio 1.2 §5.3.2).
pub const RECEIVEQ: u16 = 0;
/// transmitq of port 0: guest to device (virtio 1.2 §5.3.2).
pub const TRANSMITQ: u16 = 1;
/// QueueNumMax of both queues.
pub const QUEUE_SIZE: u16 = 128;
/// Bytes moved per backend call (a stack bounce buffer).
const CHUNK: usize = 256;

/// The host side of a console: a byte stream each way, split-phase.
pub trait SerialBackend {
    /// Bytes the backend can take now.
    fn tx_space(&self) -> usize;
    /// Offers `data`; returns how many bytes (a prefix) the backend took.
    fn tx(&mut self, data: &[u8]) -> usize;
    /// Flushes / notifies the consumer after a batch of [`SerialBackend::tx`] calls.
    fn tx_flush(&mut self);
    /// Moves up to `buf.len()` received bytes into `buf`; returns how many.
    fn rx(&mut self, buf: &mut [u8]) -> usize;
    /// The device is idle: pass on everything a coalescing [`SerialBackend::tx_flush`] held
    /// back. Defaults to `tx_flush`.
    fn tx_flush_all(&mut self) {
        self.tx_flush();
    }
}

/// A guest transmit chain being sent: `offset` readable bytes were taken by the backend.
#[derive(Clone, Debug)]
struct TxProgress {
    chain: DescriptorChain,
    offset: u64,
    /// Whether `chain` holds a chain being sent (else it is only storage).
    held: bool,
}

/// A guest receive chain waiting for input.
#[derive(Clone, Debug)]
struct RxBuffer {
    chain: DescriptorChain,
    /// Whether `chain` holds a chain (else it is only storage).
    held: bool,
}

/// A virtio console over a [`SerialBackend`].
///
/// The chain in progress each way is kept in place (a parsed chain is about 1 KiB, and the
/// queues fill it where it lies), so a poll without input or backend space copies nothing.
pub struct Console<S: SerialBackend> {
    backend: S,
    tx: TxProgress,
    rx: RxBuffer,
    active: bool,
}

impl<S: SerialBackend> Console<S> {
    /// A console over `backend`.
    pub fn new(backend: S) -> Console<S> {
        Console {
            backend,
            tx: TxProgress { chain: DescriptorChain::empty(0), offset: 0, held: false },
            rx: RxBuffer { chain: DescriptorChain::empty(0), held: false },
            active: false,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &S {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut S {
        &mut self.backend
    }

    /// Whether a guest transmit chain is waiting for backend space.
    pub fn tx_pending(&self) -> bool {
        self.tx.held
    }

    /// Sends guest output until the transmit queue is empty or the backend is full.
    fn transmit<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        let Some((q, mem)) = ctx.queue(TRANSMITQ) else { return };
        let mut moved = false;
        // Bounded: each round completes one chain or stops.
        for _ in 0..=u32::from(QUEUE_SIZE) {
            let p = &mut self.tx;
            if !p.held {
                if !q.pop_into(mem, &mut p.chain) {
                    break;
                }
                p.offset = 0;
                p.held = true;
            }
            let start = p.offset;
            let done = send(&mut self.backend, &*mem, p);
            moved |= p.offset != start;
            match done {
                Ok(false) => break,
                Ok(true) => q.add_used(mem, p.chain.head(), 0),
                Err(e) => {
                    guest_warn!("console: transmit buffer unreadable: {}", e);
                    q.add_used(mem, p.chain.head(), 0);
                }
            }
            p.held = false;
        }
        if moved {
            self.backend.tx_flush();
        }
    }

    /// Moves backend input into guest receive buffers while both exist.
    fn receive<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        let Some((q, mem)) = ctx.queue(RECEIVEQ) else { return };
        // Bounded: each round completes one chain or stops.
        for _ in 0..=u32::from(QUEUE_SIZE) {
            if !self.rx.held {
                if !q.pop_into(mem, &mut self.rx.chain) {
                    return;
                }
                self.rx.held = true;
            }
            let chain = &self.rx.chain;
            let cap = chain.writable_len();
            if cap == 0 {
                guest_warn!("console: receive buffer {} has no writable bytes", chain.head());
                q.add_used(mem, chain.head(), 0);
                self.rx.held = false;
                continue;
            }
            let filled = fill(&mut self.backend, mem, chain);
            if filled == 0 {
                // No input now: keep the buffer for when some arrives.
                return;
            }
            // `filled <= cap <= u32::MAX` (chains are bounded to 2^32 - 1 bytes).
            q.add_used(mem, chain.head(), filled as u32);
            self.rx.held = false;
            if filled < cap {
                return;
            }
        }
    }
}

/// Offers the rest of `p`'s chain to the backend. `Ok(true)` once all of it was taken,
/// `Ok(false)` when the backend is full.
fn send<S: SerialBackend, M: GuestMemory + ?Sized>(
    backend: &mut S,
    mem: &M,
    p: &mut TxProgress,
) -> Result<bool, MemoryError> {
    let total = p.chain.readable_len();
    let mut buf = [0u8; CHUNK];
    while p.offset < total {
        let space = backend.tx_space();
        if space == 0 {
            return Ok(false);
        }
        // Bounded by CHUNK.
        let want = core::cmp::min(core::cmp::min(space, CHUNK) as u64, total - p.offset) as usize;
        let n = p.chain.read_at(mem, p.offset, &mut buf[..want])?;
        let took = core::cmp::min(backend.tx(&buf[..n]), n);
        p.offset += took as u64;
        if took < n || n == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Fills `chain`'s writable bytes from the backend; returns how many were written. Bytes are
/// only taken from the backend when there is room for them.
fn fill<S: SerialBackend, M: GuestMemory + ?Sized>(
    backend: &mut S,
    mem: &mut M,
    chain: &DescriptorChain,
) -> u64 {
    let cap = chain.writable_len();
    let mut buf = [0u8; CHUNK];
    let mut filled = 0u64;
    while filled < cap {
        let want = core::cmp::min(CHUNK as u64, cap - filled) as usize;
        let n = core::cmp::min(backend.rx(&mut buf[..want]), want);
        if n == 0 {
            break;
        }
        match chain.write_at(mem, filled, &buf[..n]) {
            Ok(w) => filled += w as u64,
            Err(e) => {
                // The chain was checked against guest RAM when popped, so this is a broken
                // memory implementation, not a guest mistake.
                log::warn!(target: "virtio", "console: {} received bytes lost: {}", n, e);
                break;
            }
        }
    }
    filled
}

impl<S: SerialBackend> VirtioDevice for Console<S> {
    fn device_id(&self) -> u32 {
        CONSOLE_DEVICE_ID
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr: all zero, as no feature that gives them
        // meaning is offered.
        read_config_bytes(VirtioConsoleConfig::default().as_bytes(), offset, data);
    }

    fn activate(&mut self, _features: u64, queues: &[Queue]) -> Result<(), ActivateError> {
        for q in [RECEIVEQ, TRANSMITQ] {
            if !queues.get(usize::from(q)).is_some_and(Queue::ready) {
                return Err(ActivateError::QueueNotReady(q));
            }
        }
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.tx.held = false;
        self.rx.held = false;
        self.active = false;
    }

    fn queue_notify<M: GuestMemory + ?Sized>(
        &mut self,
        queue: u16,
        ctx: &mut DeviceContext<'_, M>,
    ) {
        match queue {
            RECEIVEQ => self.receive(ctx),
            TRANSMITQ => self.transmit(ctx),
            _ => {}
        }
    }

    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        if self.active {
            self.transmit(ctx);
            self.backend.tx_flush_all();
            self.receive(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::testing::DriverQueue;
    use std::collections::VecDeque;

    const BASE: u64 = 0x4000_0000;
    const DATA: u64 = BASE + 0x8000;

    /// Takes at most `room` bytes until the test gives it more; input comes from `input`.
    #[derive(Default)]
    struct Fake {
        out: Vec<u8>,
        room: usize,
        input: VecDeque<u8>,
        flushes: usize,
    }

    impl SerialBackend for Fake {
        fn tx_space(&self) -> usize {
            self.room
        }
        fn tx(&mut self, data: &[u8]) -> usize {
            let n = data.len().min(self.room);
            self.out.extend_from_slice(&data[..n]);
            self.room -= n;
            n
        }
        fn tx_flush(&mut self) {
            self.flushes += 1;
        }
        fn rx(&mut self, buf: &mut [u8]) -> usize {
            let n = buf.len().min(self.input.len());
            for b in &mut buf[..n] {
                *b = self.input.pop_front().unwrap();
            }
            n
        }
    }

    struct Rig {
        ram: Vec<u8>,
        queues: [Queue; 2],
        rxq: DriverQueue,
        txq: DriverQueue,
        con: Console<Fake>,
    }

    impl Rig {
        fn new() -> Rig {
            let mut ram = vec![0u8; 0x20000];
            let mut mem = SliceMemory::new(BASE, &mut ram);
            let rxq = DriverQueue::at(BASE, 8);
            let txq = DriverQueue::at(BASE + 0x1000, 8);
            let mut queues = [Queue::new(QUEUE_SIZE), Queue::new(QUEUE_SIZE)];
            rxq.configure(&mut queues[0]);
            txq.configure(&mut queues[1]);
            queues[0].enable(&mem, 0).unwrap();
            queues[1].enable(&mem, 0).unwrap();
            let mut con = Console::new(Fake::default());
            con.activate(0, &queues).unwrap();
            mem.write(DATA, b"hello, world! this is the console.").unwrap();
            Rig { ram, queues, rxq, txq, con }
        }

        fn mem(&mut self) -> SliceMemory<'_> {
            SliceMemory::new(BASE, &mut self.ram)
        }

        fn notify(&mut self, q: u16) {
            let mut mem = SliceMemory::new(BASE, &mut self.ram);
            let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
            self.con.queue_notify(q, &mut ctx);
        }

        fn poll(&mut self) {
            let mut mem = SliceMemory::new(BASE, &mut self.ram);
            let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
            self.con.poll(&mut ctx);
        }
    }

    #[test]
    fn transmit_loses_no_byte_with_a_backend_taking_3_bytes_at_a_time() {
        let mut rig = Rig::new();
        let mut txq = rig.txq.clone();
        let mut mem = rig.mem();
        let heads = [
            txq.add_chain(&mut mem, &[(DATA, 5, false), (DATA + 5, 8, false)]),
            txq.add_chain(&mut mem, &[(DATA + 13, 1, false)]),
            txq.add_chain(&mut mem, &[(DATA + 14, 20, false)]),
        ];
        rig.notify(TRANSMITQ);
        let mut used = Vec::new();
        for _ in 0..100 {
            rig.con.backend_mut().room = 3;
            rig.poll();
            while let Some((id, len)) = txq.pop_used(&rig.mem()) {
                assert_eq!(len, 0);
                used.push(id as u16);
            }
        }
        assert_eq!(rig.con.backend().out, b"hello, world! this is the console.");
        assert_eq!(used, heads, "each chain returned once, after all of it was sent");
        assert!(!rig.con.tx_pending());
        assert!(rig.con.backend().flushes >= 12);
    }

    #[test]
    fn transmit_keeps_the_chain_while_the_backend_is_full() {
        let mut rig = Rig::new();
        let mut txq = rig.txq.clone();
        let mut mem = rig.mem();
        txq.add_chain(&mut mem, &[(DATA, 5, false)]);
        rig.notify(TRANSMITQ);
        assert!(rig.con.tx_pending());
        assert!(txq.pop_used(&rig.mem()).is_none());
        assert_eq!(rig.con.backend().flushes, 0, "nothing sent, nothing to flush");
        rig.con.backend_mut().room = 100;
        rig.poll();
        assert_eq!(rig.con.backend().out, b"hello");
        assert_eq!(txq.pop_used(&rig.mem()), Some((0, 0)));
    }

    #[test]
    fn input_stays_in_the_backend_until_the_guest_gives_a_buffer() {
        let mut rig = Rig::new();
        let mut rxq = rig.rxq.clone();
        rig.con.backend_mut().input.extend(b"input!");
        rig.poll();
        assert_eq!(rig.con.backend().input.len(), 6, "not drained without a buffer");
        let mut mem = rig.mem();
        let h = rxq.add_chain(&mut mem, &[(DATA + 0x100, 2, true), (DATA + 0x200, 2, true)]);
        rig.notify(RECEIVEQ);
        let mem = rig.mem();
        assert_eq!(rxq.pop_used(&mem), Some((u32::from(h), 4)));
        assert_eq!(&mem.as_slice()[0x8100..0x8102], b"in");
        assert_eq!(&mem.as_slice()[0x8200..0x8202], b"pu");
        assert_eq!(rig.con.backend().input, b"t!");
    }

    #[test]
    fn receive_buffer_is_held_until_input_arrives() {
        let mut rig = Rig::new();
        let mut rxq = rig.rxq.clone();
        let mut mem = rig.mem();
        let h = rxq.add_chain(&mut mem, &[(DATA + 0x100, 64, true)]);
        rig.notify(RECEIVEQ);
        assert!(rxq.pop_used(&rig.mem()).is_none());
        rig.con.backend_mut().input.extend(b"late");
        rig.poll();
        let mem = rig.mem();
        assert_eq!(rxq.pop_used(&mem), Some((u32::from(h), 4)));
        assert_eq!(&mem.as_slice()[0x8100..0x8104], b"late");
    }

    #[test]
    fn receive_fills_several_buffers_in_order() {
        let mut rig = Rig::new();
        let mut rxq = rig.rxq.clone();
        let mut mem = rig.mem();
        rxq.add_chain(&mut mem, &[(DATA + 0x100, 300, true)]);
        rxq.add_chain(&mut mem, &[(DATA + 0x400, 300, true)]);
        let input: Vec<u8> = (0..500u32).map(|i| i as u8).collect();
        rig.con.backend_mut().input.extend(&input);
        rig.notify(RECEIVEQ);
        let mem = rig.mem();
        assert_eq!(rxq.pop_used(&mem), Some((0, 300)));
        assert_eq!(rxq.pop_used(&mem), Some((1, 200)));
        assert_eq!(&mem.as_slice()[0x8100..0x822c], &input[..300]);
        assert_eq!(&mem.as_slice()[0x8400..0x84c8], &input[300..]);
    }

    #[test]
    fn receive_buffer_without_writable_bytes_is_returned_empty() {
        let mut rig = Rig::new();
        let mut rxq = rig.rxq.clone();
        let mut mem = rig.mem();
        let h = rxq.add_chain(&mut mem, &[(DATA, 4, false)]);
        rig.con.backend_mut().input.extend(b"x");
        rig.notify(RECEIVEQ);
        assert_eq!(rxq.pop_used(&rig.mem()), Some((u32::from(h), 0)));
        assert_eq!(rig.con.backend().input.len(), 1);
    }

    #[test]
    fn activation_needs_both_queues() {
        let mut con = Console::new(Fake::default());
        let queues = [Queue::new(8), Queue::new(8)];
        assert_eq!(con.activate(0, &queues), Err(ActivateError::QueueNotReady(0)));
        assert_eq!(con.activate(0, &queues[..0]), Err(ActivateError::QueueNotReady(0)));
    }

    #[test]
    fn reset_forgets_held_buffers() {
        let mut rig = Rig::new();
        let mut txq = rig.txq.clone();
        let mut mem = rig.mem();
        txq.add_chain(&mut mem, &[(DATA, 5, false)]);
        rig.notify(TRANSMITQ);
        assert!(rig.con.tx_pending());
        rig.con.reset();
        assert!(!rig.con.tx_pending());
        rig.con.backend_mut().room = 10;
        rig.poll();
        assert!(rig.con.backend().out.is_empty(), "inactive after reset");
    }

    #[test]
    fn config_space_reads_as_zero() {
        let con = Console::new(Fake::default());
        let mut d = [0xffu8; 4];
        con.read_config(0, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
