//! virtio-blk (device id 2, virtio 1.2 §5.2) over a split-phase 4 KiB-block backend.
//!
//! The guest speaks 512-byte sectors; the backend (the sDDF block protocol) speaks 4 KiB
//! blocks. Requests are parsed ([`request::parse`]) and checked (range, read-only) before
//! anything executes, then run as a sequence of chunks, one backend operation in flight per
//! request at a time:
//!
//! - a read fetches the covering blocks into a backend buffer and copies the sector slice out;
//! - a 4 KiB-aligned write copies guest data into a buffer and writes it;
//! - a partial-block write does read-modify-write of that one block.
//!
//! Several requests run at once (up to `N`, the in-flight table size), but a request waits
//! while an *earlier* unfinished request overlaps its block range and one of the two writes
//! (a flush overlaps everything). That keeps overlapping requests in order, so concurrent
//! read-modify-writes of one block cannot undo each other. Backend completions may arrive in
//! any order. When the backend has no free buffer or its queue is full the request waits and
//! is resumed by the next [`VirtioDevice::poll`]: nothing is lost. A backend error answers
//! VIRTIO_BLK_S_IOERR.

mod backend;
mod chunk;
pub mod request;

pub use backend::{
    BackendBusy, BlockBackend, BlockInfo, BlockOp, BufferId, BufferRange, BACKEND_BLOCK,
};

use chunk::{copy_out, finish_chunk, merge, start_chunk, Fault, Phase, Slot};

use zerocopy::IntoBytes;

use crate::device::{read_config_bytes, ActivateError, DeviceContext, VirtioDevice};
use crate::layout::{VirtioBlkConfig, VirtioBlkGeometry, VirtioBlkTopology};
use crate::memory::GuestMemory;
use crate::queue::{DescriptorChain, Queue, MAX_SEGMENTS};
use request::{
    Request, RequestError, RequestKind, SECTOR_SIZE, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};

/// virtio device id of a block device (virtio 1.2 §5).
pub const BLOCK_DEVICE_ID: u32 = 2;
/// The only queue, requestq (virtio 1.2 §5.2.2).
pub const REQUESTQ: u16 = 0;
/// QueueNumMax of requestq.
pub const QUEUE_SIZE: u16 = 128;
/// 512-byte sectors per backend block.
pub const SECTORS_PER_BLOCK: u64 = BACKEND_BLOCK / SECTOR_SIZE;

/// VIRTIO_BLK_F_SIZE_MAX (bit 1): `size_max` is valid (virtio 1.2 §5.2.3).
pub const VIRTIO_BLK_F_SIZE_MAX: u64 = 1 << 1;
/// VIRTIO_BLK_F_SEG_MAX (bit 2): `seg_max` is valid.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// VIRTIO_BLK_F_RO (bit 5): the device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// VIRTIO_BLK_F_BLK_SIZE (bit 6): `blk_size` is valid.
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// VIRTIO_BLK_F_FLUSH (bit 9): the device supports VIRTIO_BLK_T_FLUSH.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// VIRTIO_BLK_F_TOPOLOGY (bit 10): `topology` is valid.
pub const VIRTIO_BLK_F_TOPOLOGY: u64 = 1 << 10;

/// `size_max`: largest data segment offered to the guest.
pub const SIZE_MAX: u32 = 64 * 1024;
/// `seg_max`: most data segments per request (a chain also holds header and status).
pub const SEG_MAX: u32 = MAX_SEGMENTS as u32 - 2;
/// Default largest chunk, in backend blocks, of one backend operation: 1 MiB, so the
/// guest's usual largest request (Linux: `max_sectors_kb` 1280) is one backend round trip, not
/// eight. A backend short of space gets smaller chunks (halved until they fit).
pub const DEFAULT_CHUNK_BLOCKS: u32 = 256;
/// Default GET_ID string.
pub const DEFAULT_ID: [u8; VIRTIO_BLK_ID_BYTES] = *b"mkvm-virtio-blk\0\0\0\0\0";

/// A virtio block device over a [`BlockBackend`], with at most `N` requests in flight.
///
/// Each table entry keeps its parsed chain (about 1.1 KiB), so the device is about
/// `N × 1.1 KiB` (37 KiB for the default `N = 32`, 9 KiB for `N = 8`). On a small
/// protection-domain stack, pick a small `N` or build it where it will live (a static).
pub struct BlockDevice<B: BlockBackend, const N: usize = 32> {
    backend: B,
    slots: [Option<Slot>; N],
    /// The parsed chain of each slot's request: filled in place by the queue, never moved.
    chains: [DescriptorChain; N],
    next_seq: u64,
    next_gen: u16,
    id: [u8; VIRTIO_BLK_ID_BYTES],
    chunk_blocks: u32,
    active: bool,
    reported_capacity: u64,
    /// Whether "storage not ready" was logged since the storage was last seen ready.
    not_ready_logged: bool,
}

impl<B: BlockBackend, const N: usize> BlockDevice<B, N> {
    /// A block device over `backend`, with [`DEFAULT_ID`] and [`DEFAULT_CHUNK_BLOCKS`].
    pub fn new(backend: B) -> BlockDevice<B, N> {
        // Tags carry the slot index in 16 bits; an empty table could never take a request.
        const { assert!(N > 0 && N <= 1 << 16, "BlockDevice: N must be in 1..=65536") };
        BlockDevice {
            backend,
            slots: [const { None }; N],
            chains: [const { DescriptorChain::empty(0) }; N],
            next_seq: 0,
            next_gen: 0,
            id: DEFAULT_ID,
            chunk_blocks: DEFAULT_CHUNK_BLOCKS,
            active: false,
            reported_capacity: 0,
            not_ready_logged: false,
        }
    }

    /// Sets the GET_ID string (20 bytes, NUL-padded if shorter).
    pub fn with_id(mut self, id: [u8; VIRTIO_BLK_ID_BYTES]) -> BlockDevice<B, N> {
        self.id = id;
        self
    }

    /// Sets the largest backend operation, in 4 KiB blocks (at least 1).
    pub fn with_chunk_blocks(mut self, blocks: u32) -> BlockDevice<B, N> {
        self.chunk_blocks = core::cmp::max(blocks, 1);
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Requests in the in-flight table (waiting or with the backend).
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Capacity in 512-byte sectors; 0 while the backend is not ready.
    fn capacity_sectors(&self) -> u64 {
        self.backend.info().map_or(0, |i| i.capacity.saturating_mul(SECTORS_PER_BLOCK))
    }

    /// Drains completions, takes new requests and advances every request until nothing
    /// moves (bounded).
    fn run<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        let mut submitted = false;
        // Once the ring is seen empty it stays so for this run: the guest does not run
        // meanwhile (and with EVENT_IDX it was asked to notify for its next buffer).
        let mut ring_empty = false;
        for round in 0..4 {
            let mut progress = self.drain(ctx);
            if self.active {
                if let Some((q, mem)) = ctx.queue(REQUESTQ) {
                    if !ring_empty {
                        let (took, empty) = self.accept(q, mem);
                        progress |= took;
                        ring_empty = empty;
                    }
                    // A request only moves once something changed: a new one, or a
                    // completion that freed a buffer, a backend slot or a conflict.
                    if round == 0 || progress {
                        let (moved, sub) = self.advance(q, mem);
                        progress |= moved;
                        submitted |= sub;
                    }
                }
            }
            if !progress {
                break;
            }
        }
        if submitted {
            self.backend.notify();
        }
    }

    /// Handles backend completions. Returns whether there were any.
    fn drain<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) -> bool {
        let mut any = false;
        // Bounded: at most one completion per submitted operation is expected.
        for _ in 0..N.saturating_mul(2).saturating_add(1) {
            let Some((tag, ok)) = self.backend.complete() else { break };
            any = true;
            match ctx.queue(REQUESTQ) {
                Some((q, mem)) => self.on_complete(q, mem, tag, ok),
                None => self.on_complete_orphan_only(tag),
            }
        }
        any
    }

    /// Takes requests from the queue while the table has room. Returns whether any was
    /// taken, and whether the queue had no more.
    fn accept<M: GuestMemory + ?Sized>(&mut self, q: &mut Queue, mem: &mut M) -> (bool, bool) {
        let mut any = false;
        while let Some(free) = self.slots.iter().position(Option::is_none) {
            let Some(chain) = self.chains.get_mut(free) else { break };
            if !q.pop_into(mem, chain) {
                return (any, true);
            }
            any = true;
            match request::parse(chain, &*mem) {
                Ok(req) => self.admit(q, mem, free, req),
                Err(e) => reject(q, mem, e),
            }
        }
        (any, false)
    }

    /// Answers what needs no backend at once; puts the rest in slot `free`.
    fn admit<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        free: usize,
        req: Request,
    ) {
        let info = self.backend.info();
        if info.is_some() {
            self.not_ready_logged = false;
        }
        let status = match (req.kind, info) {
            (RequestKind::Unsupported(t), _) => {
                guest_warn!("blk: unsupported request type {}", t);
                VIRTIO_BLK_S_UNSUPP
            }
            (RequestKind::GetId, _) => {
                let Some(chain) = self.chains.get(free) else { return };
                let n = req.write_data(chain, mem, 0, &self.id).unwrap_or(0);
                // At most 20.
                return finish(q, mem, &req, VIRTIO_BLK_S_OK, n as u64);
            }
            (_, None) => {
                // Once per state change, not per request: the guest controls the rate.
                if !core::mem::replace(&mut self.not_ready_logged, true) {
                    log::warn!(target: "virtio", "blk: storage not ready; requests fail until it is");
                }
                VIRTIO_BLK_S_IOERR
            }
            (RequestKind::Write, Some(i)) if i.read_only => {
                guest_warn!("blk: write to a read-only disk");
                VIRTIO_BLK_S_IOERR
            }
            (RequestKind::Read | RequestKind::Write, Some(i)) if !in_range(&req, &i) => {
                guest_warn!("blk: sectors {}+{} out of range", req.sector, req.data_len / 512);
                VIRTIO_BLK_S_IOERR
            }
            _ => {
                self.insert(free, req);
                return;
            }
        };
        finish(q, mem, &req, status, 0);
    }

    fn insert(&mut self, free: usize, req: Request) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        if let Some(slot) = self.slots.get_mut(free) {
            *slot = Some(Slot {
                req,
                seq,
                gen,
                started: false,
                done: 0,
                chunk: None,
                phase: Phase::Idle,
                orphan: false,
            });
        }
    }

    /// Moves every request as far as it can go, oldest first. Returns (progress, submitted).
    fn advance<M: GuestMemory + ?Sized>(&mut self, q: &mut Queue, mem: &mut M) -> (bool, bool) {
        let mut order = [(u64::MAX, 0usize); N];
        let mut n = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if let (Some(s), Some(o)) = (s, order.get_mut(n)) {
                *o = (s.seq, i);
                n += 1;
            }
        }
        // Usually one or two requests are in flight: sort only the occupied entries.
        let order = order.get_mut(..n).unwrap_or(&mut []);
        order.sort_unstable();
        let (mut progress, mut submitted) = (false, false);
        for &(_, i) in order.iter() {
            if !self.try_start(i) {
                continue;
            }
            let (p, s) = self.step(q, mem, i);
            progress |= p;
            submitted |= s;
        }
        (progress, submitted)
    }

    /// Starts slot `i` if no earlier unfinished request conflicts with it. Returns whether it
    /// is started.
    fn try_start(&mut self, i: usize) -> bool {
        let Some(Some(me)) = self.slots.get(i) else { return false };
        if me.started || me.orphan {
            return me.started && !me.orphan;
        }
        if self.blocked(me) {
            return false;
        }
        if let Some(Some(me)) = self.slots.get_mut(i) {
            me.started = true;
        }
        true
    }

    /// Whether an earlier unfinished request conflicts with `me`. Once per request; kept out
    /// of line so that the per-event paths that inline `advance` do not precompute every
    /// slot's range.
    #[inline(never)]
    fn blocked(&self, me: &Slot) -> bool {
        self.slots.iter().flatten().any(|other| other.seq < me.seq && me.conflicts(other))
    }

    /// Advances started slot `i`: plans and allocates a chunk, submits. Returns
    /// (progress, submitted).
    fn step<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        i: usize,
    ) -> (bool, bool) {
        let (Some(Some(slot)), Some(chain)) = (self.slots.get_mut(i), self.chains.get(i)) else {
            return (false, false);
        };
        let (mut progress, mut submitted) = (false, false);
        if slot.phase == Phase::Idle {
            if slot.req.kind == RequestKind::Flush {
                slot.phase = Phase::Submit(BlockOp::Flush);
            } else if slot.done >= slot.req.data_len {
                return (self.finish_slot(q, mem, i, VIRTIO_BLK_S_OK), false);
            } else {
                match start_chunk(&mut self.backend, slot, chain, &*mem, self.chunk_blocks) {
                    Ok(true) => progress = true,
                    Ok(false) => return (false, false),
                    Err(Fault) => return (self.finish_slot(q, mem, i, VIRTIO_BLK_S_IOERR), false),
                }
            }
        }
        if let Phase::Submit(op) = slot.phase {
            let (block, count, buf) = match (op, slot.chunk) {
                (BlockOp::Flush, _) => (0, 0, None),
                (_, Some(c)) => (c.block, c.blocks, c.buf),
                (_, None) => (0, 0, None),
            };
            let tag = (u32::from(slot.gen) << 16) | i as u32;
            if self.backend.submit(op, block, count, buf, tag).is_ok() {
                slot.phase = Phase::InFlight(op);
                progress = true;
                submitted = true;
            }
        }
        (progress, submitted)
    }

    /// Completes slot `i` with `status` and frees it.
    fn finish_slot<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        i: usize,
        status: u8,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::take) else { return false };
        if let Some(buf) = slot.chunk.and_then(|c| c.buf) {
            self.backend.free(buf);
        }
        let written = if slot.req.kind == RequestKind::Read { slot.done } else { 0 };
        finish(q, mem, &slot.req, status, written);
        true
    }

    /// The slot an in-flight `tag` names, if it is one.
    fn slot_for(&mut self, tag: u32) -> Option<usize> {
        let i = (tag & 0xffff) as usize;
        let gen = (tag >> 16) as u16;
        match self.slots.get(i) {
            Some(Some(s)) if s.gen == gen && matches!(s.phase, Phase::InFlight(_)) => Some(i),
            _ => {
                log::warn!(target: "virtio", "blk: backend completed unknown tag {:#x}", tag);
                None
            }
        }
    }

    fn on_complete_orphan_only(&mut self, tag: u32) {
        let Some(i) = self.slot_for(tag) else { return };
        if let Some(slot) = self.slots.get_mut(i).and_then(Option::take) {
            if let Some(buf) = slot.chunk.and_then(|c| c.buf) {
                self.backend.free(buf);
            }
        }
    }

    /// A backend operation of slot `tag` finished.
    fn on_complete<M: GuestMemory + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        tag: u32,
        ok: bool,
    ) {
        let Some(i) = self.slot_for(tag) else { return };
        let orphan = self.slots.get(i).and_then(Option::as_ref).is_some_and(|s| s.orphan);
        if orphan {
            return self.on_complete_orphan_only(tag);
        }
        if !ok {
            log::warn!(target: "virtio", "blk: backend reported an I/O error");
            self.finish_slot(q, mem, i, VIRTIO_BLK_S_IOERR);
            return;
        }
        let (Some(Some(slot)), Some(chain)) = (self.slots.get_mut(i), self.chains.get(i)) else {
            return;
        };
        let Phase::InFlight(op) = slot.phase else { return };
        let result = match (op, slot.chunk) {
            (BlockOp::Flush, _) => {
                self.finish_slot(q, mem, i, VIRTIO_BLK_S_OK);
                return;
            }
            (BlockOp::Read, Some(c)) if c.rmw => merge(&mut self.backend, slot, chain, &*mem, c),
            (BlockOp::Read, Some(c)) => copy_out(&mut self.backend, slot, chain, mem, c),
            (BlockOp::Write, Some(c)) => {
                finish_chunk(&mut self.backend, slot, c);
                Ok(())
            }
            (_, None) => Err(Fault),
        };
        if result.is_err() {
            self.finish_slot(q, mem, i, VIRTIO_BLK_S_IOERR);
        }
    }
}

/// Whether a read or write lies inside the disk.
fn in_range(req: &Request, info: &BlockInfo) -> bool {
    let sectors = req.data_len / SECTOR_SIZE;
    let capacity = info.capacity.saturating_mul(SECTORS_PER_BLOCK);
    // The byte offset of the end must not overflow either.
    req.sector
        .checked_add(sectors)
        .filter(|end| end.checked_mul(SECTOR_SIZE).is_some())
        .is_some_and(|end| end <= capacity)
}

/// Writes the status byte and returns the chain with `data` bytes written plus the status.
fn finish<M: GuestMemory + ?Sized>(
    q: &mut Queue,
    mem: &mut M,
    req: &Request,
    status: u8,
    data: u64,
) {
    if let Err(e) = mem.write(req.status, &[status]) {
        log::warn!(target: "virtio", "blk: status byte lost: {}", e);
    }
    // `data` is at most the chain's length, below 2^32.
    q.add_used(mem, req.head(), (data as u32).saturating_add(1));
}

/// Answers a request that did not parse: IOERR if it has a status byte, else length 0.
fn reject<M: GuestMemory + ?Sized>(q: &mut Queue, mem: &mut M, e: RequestError) {
    guest_warn!("blk: bad request at head {}: {}", e.head, e.error);
    match e.status {
        Some(at) => {
            let len = if mem.write(at, &[VIRTIO_BLK_S_IOERR]).is_ok() { 1 } else { 0 };
            q.add_used(mem, e.head, len);
        }
        None => q.add_used(mem, e.head, 0),
    }
}

impl<B: BlockBackend, const N: usize> VirtioDevice for BlockDevice<B, N> {
    fn device_id(&self) -> u32 {
        BLOCK_DEVICE_ID
    }

    fn features(&self) -> u64 {
        let ro = self.backend.info().is_some_and(|i| i.read_only);
        VIRTIO_BLK_F_SIZE_MAX
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_TOPOLOGY
            | if ro { VIRTIO_BLK_F_RO } else { 0 }
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let optimal = self.backend.info().map_or(0, |i| i.optimal_blocks);
        let opt_io = core::cmp::max(u64::from(optimal), 1) * SECTORS_PER_BLOCK;
        let c = VirtioBlkConfig {
            capacity: self.capacity_sectors().into(),
            size_max: SIZE_MAX.into(),
            seg_max: SEG_MAX.into(),
            // Geometry is not offered.
            geometry: VirtioBlkGeometry::default(),
            blk_size: (SECTOR_SIZE as u32).into(),
            // 2^3 logical blocks per physical block, I/O sizes in logical blocks.
            topology: VirtioBlkTopology {
                physical_block_exp: 3,
                alignment_offset: 0,
                min_io_size: (SECTORS_PER_BLOCK as u16).into(),
                opt_io_size: u32::try_from(opt_io).unwrap_or(u32::MAX).into(),
            },
        };
        read_config_bytes(c.as_bytes(), offset, data);
    }

    fn activate(&mut self, _features: u64, queues: &[Queue]) -> Result<(), ActivateError> {
        if !queues.get(usize::from(REQUESTQ)).is_some_and(Queue::ready) {
            return Err(ActivateError::QueueNotReady(REQUESTQ));
        }
        self.reported_capacity = self.capacity_sectors();
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = false;
        for entry in &mut self.slots {
            let Some(slot) = entry else { continue };
            if matches!(slot.phase, Phase::InFlight(_)) {
                // The backend still owns the buffer: wait for its completion, then drop.
                slot.orphan = true;
            } else {
                if let Some(buf) = slot.chunk.and_then(|c| c.buf) {
                    self.backend.free(buf);
                }
                *entry = None;
            }
        }
    }

    fn queue_notify<M: GuestMemory + ?Sized>(
        &mut self,
        _queue: u16,
        ctx: &mut DeviceContext<'_, M>,
    ) {
        self.run(ctx);
    }

    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        if self.active {
            let capacity = self.capacity_sectors();
            if capacity != 0 {
                self.not_ready_logged = false;
            }
            if capacity != self.reported_capacity {
                self.reported_capacity = capacity;
                ctx.signal_config_change();
            }
        }
        self.run(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::request::{
        VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    };
    use super::*;
    use crate::memory::{CopyError, SharedBuffer, SliceMemory};
    use crate::testing::DriverQueue;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    const BASE: u64 = 0x4000_0000;
    const BUFS: u64 = BASE + 0x10000;
    const RAM: usize = 8 << 20;

    use fastrand::Rng;

    type Pending = (BlockOp, u64, u32, Option<BufferId>, u32);

    /// A backend buffer that is copied into and out of, never borrowed.
    struct Cells(RefCell<Vec<u8>>);

    impl SharedBuffer for Cells {
        fn read(&self, at: usize, dst: &mut [u8]) -> Result<(), CopyError> {
            let cells = self.0.borrow();
            dst.copy_from_slice(cells.get(at..at + dst.len()).ok_or(CopyError::Buffer)?);
            Ok(())
        }
        fn write(&self, at: usize, src: &[u8]) -> Result<(), CopyError> {
            let mut cells = self.0.borrow_mut();
            cells.get_mut(at..at + src.len()).ok_or(CopyError::Buffer)?.copy_from_slice(src);
            Ok(())
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// A 4 KiB-block disk in a Vec that runs submitted operations when the test says so, in
    /// random order.
    struct FakeDisk {
        disk: Vec<u8>,
        info: Option<BlockInfo>,
        buffers: Vec<Option<Cells>>,
        /// Whether the buffers are offered as [`SharedBuffer`]s (direct copies).
        direct: bool,
        free_blocks: u32,
        pending: Vec<Pending>,
        done: VecDeque<(u32, bool)>,
        queue_limit: usize,
        fail: bool,
        ops: Vec<(BlockOp, u64, u32)>,
        notifies: usize,
        rng: Rng,
    }

    impl FakeDisk {
        fn new(blocks: u64) -> FakeDisk {
            let disk = (0..blocks * BACKEND_BLOCK).map(|i| (i * 7 % 251) as u8).collect();
            FakeDisk {
                disk,
                info: Some(BlockInfo { capacity: blocks, read_only: false, optimal_blocks: 0 }),
                buffers: Vec::new(),
                direct: false,
                free_blocks: 64,
                pending: Vec::new(),
                done: VecDeque::new(),
                queue_limit: 16,
                fail: false,
                ops: Vec::new(),
                notifies: 0,
                rng: Rng::with_seed(1),
            }
        }

        /// Runs up to `n` pending operations, picked at random.
        fn execute(&mut self, n: usize) {
            for _ in 0..n {
                if self.pending.is_empty() {
                    return;
                }
                let i = self.rng.u64(..self.pending.len() as u64) as usize;
                let (op, block, count, buf, tag) = self.pending.swap_remove(i);
                let start = (block * BACKEND_BLOCK) as usize;
                let len = count as usize * BACKEND_BLOCK as usize;
                if op != BlockOp::Flush {
                    assert!(start + len <= self.disk.len(), "device asked outside the disk");
                    let mut cells =
                        self.buffers[buf.unwrap().0 as usize].as_ref().unwrap().0.borrow_mut();
                    assert!(cells.len() >= len);
                    if op == BlockOp::Read {
                        cells[..len].copy_from_slice(&self.disk[start..start + len]);
                    } else {
                        self.disk[start..start + len].copy_from_slice(&cells[..len]);
                    }
                }
                self.done.push_back((tag, !self.fail));
            }
        }
    }

    impl BlockBackend for FakeDisk {
        fn info(&self) -> Option<BlockInfo> {
            self.info
        }
        fn alloc(&mut self, blocks: u32) -> Option<BufferId> {
            if blocks == 0 || blocks > self.free_blocks {
                return None;
            }
            self.free_blocks -= blocks;
            let cells = vec![0xee; blocks as usize * BACKEND_BLOCK as usize];
            self.buffers.push(Some(Cells(RefCell::new(cells))));
            Some(BufferId(self.buffers.len() as u32 - 1))
        }
        fn free(&mut self, buf: BufferId) {
            let cells = self.buffers[buf.0 as usize].take().expect("double free");
            self.free_blocks += (cells.0.borrow().len() / BACKEND_BLOCK as usize) as u32;
        }
        fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
            let cells = self.buffers[buf.0 as usize].as_ref().expect("freed buffer used");
            cells.read(at, dst).map_err(|_| BufferRange)
        }
        fn write_buffer(
            &mut self,
            buf: BufferId,
            at: usize,
            src: &[u8],
        ) -> Result<(), BufferRange> {
            let cells = self.buffers[buf.0 as usize].as_ref().expect("freed buffer used");
            cells.write(at, src).map_err(|_| BufferRange)
        }
        fn shared_buffer(&self, buf: BufferId) -> Option<(&dyn SharedBuffer, usize, usize)> {
            let cells = self.buffers[buf.0 as usize].as_ref().expect("freed buffer used");
            self.direct.then(|| (cells as &dyn SharedBuffer, 0, cells.0.borrow().len()))
        }
        fn submit(
            &mut self,
            op: BlockOp,
            block: u64,
            count: u32,
            buf: Option<BufferId>,
            tag: u32,
        ) -> Result<(), BackendBusy> {
            if self.pending.len() >= self.queue_limit {
                return Err(BackendBusy);
            }
            self.ops.push((op, block, count));
            self.pending.push((op, block, count, buf, tag));
            Ok(())
        }
        fn complete(&mut self) -> Option<(u32, bool)> {
            self.done.pop_front()
        }
        fn notify(&mut self) {
            self.notifies += 1;
        }
    }

    /// A guest request: where its data and status byte are.
    #[derive(Clone, Copy, Debug)]
    struct Req {
        head: u16,
        data: u64,
        len: u64,
        status: u64,
    }

    struct Rig {
        ram: Vec<u8>,
        queues: [Queue; 1],
        drv: DriverQueue,
        dev: BlockDevice<FakeDisk, 8>,
        next_buf: u64,
    }

    impl Rig {
        fn new(blocks: u64) -> Rig {
            let mut ram = vec![0u8; RAM];
            let mem = SliceMemory::new(BASE, &mut ram);
            let drv = DriverQueue::at(BASE, 64);
            let mut queues = [Queue::new(QUEUE_SIZE)];
            drv.configure(&mut queues[0]);
            queues[0].enable(&mem, 0).unwrap();
            let mut dev = BlockDevice::new(FakeDisk::new(blocks));
            dev.activate(0, &queues).unwrap();
            Rig { ram, queues, drv, dev, next_buf: BUFS }
        }

        fn mem(&mut self) -> SliceMemory<'_> {
            SliceMemory::new(BASE, &mut self.ram)
        }

        fn alloc(&mut self, len: u64) -> u64 {
            let at = self.next_buf;
            self.next_buf += (len + 15) & !15;
            if self.next_buf > BASE + RAM as u64 - 0x10000 {
                self.next_buf = BUFS;
            }
            at
        }

        /// Makes a request available: header, data (split in two segments when it can be),
        /// status. `data` is written for OUT requests.
        fn request(&mut self, ty: u32, sector: u64, len: u64, data: Option<&[u8]>) -> Req {
            let hdr = self.alloc(16);
            let buf = self.alloc(len);
            let status = self.alloc(1);
            let mut h = [0u8; 16];
            h[..4].copy_from_slice(&ty.to_le_bytes());
            h[8..].copy_from_slice(&sector.to_le_bytes());
            let mut drv = self.drv.clone();
            let mut mem = self.mem();
            mem.write(hdr, &h).unwrap();
            mem.write(status, &[0xff]).unwrap();
            if let Some(d) = data {
                mem.write(buf, d).unwrap();
            }
            let w = ty != VIRTIO_BLK_T_OUT;
            let mut segs = vec![(hdr, 16, false)];
            if len > 512 {
                segs.push((buf, 300, w));
                segs.push((buf + 300, len as u32 - 300, w));
            } else if len > 0 {
                segs.push((buf, len as u32, w));
            }
            segs.push((status, 1, true));
            let head = drv.add_chain(&mut mem, &segs);
            self.drv = drv;
            Req { head, data: buf, len, status }
        }

        fn notify(&mut self) {
            let mut mem = SliceMemory::new(BASE, &mut self.ram);
            let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
            self.dev.queue_notify(REQUESTQ, &mut ctx);
        }

        fn poll(&mut self) -> bool {
            let mut mem = SliceMemory::new(BASE, &mut self.ram);
            let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
            self.dev.poll(&mut ctx);
            ctx.config_changed()
        }

        /// Lets the backend run a few operations at a time and polls, until idle.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                if self.dev.in_flight() == 0 && self.dev.backend().pending.is_empty() {
                    return;
                }
                let n = 1 + self.dev.backend_mut().rng.u64(..3) as usize;
                self.dev.backend_mut().execute(n);
                self.poll();
            }
            panic!("requests did not finish");
        }

        fn status(&mut self, r: Req) -> u8 {
            let mut b = [0u8];
            self.mem().read(r.status, &mut b).unwrap();
            b[0]
        }

        fn data(&mut self, r: Req) -> Vec<u8> {
            let mut v = vec![0u8; r.len as usize];
            self.mem().read(r.data, &mut v).unwrap();
            v
        }

        fn used(&mut self) -> Vec<(u32, u32)> {
            let mut drv = self.drv.clone();
            let mem = self.mem();
            let v = std::iter::from_fn(|| drv.pop_used(&mem)).collect();
            self.drv = drv;
            v
        }
    }

    fn bytes(rng: &mut Rng, n: u64) -> Vec<u8> {
        (0..n).map(|_| rng.u8(..)).collect()
    }

    #[test]
    fn random_overlapping_requests_match_a_reference_disk() {
        random_requests_match_a_reference_disk(false);
    }

    #[test]
    fn direct_copies_to_shared_buffers_match_a_reference_disk() {
        random_requests_match_a_reference_disk(true);
    }

    fn random_requests_match_a_reference_disk(direct: bool) {
        let mut rig = Rig::new(64);
        rig.dev.backend_mut().direct = direct;
        let mut reference = rig.dev.backend().disk.clone();
        let mut rng = Rng::with_seed(42);
        let sectors = 64 * SECTORS_PER_BLOCK;
        for _round in 0..60 {
            let mut reads = Vec::new();
            let mut writes = Vec::new();
            for _ in 0..1 + rng.u64(..12) {
                let n = 1 + rng.u64(..20);
                let sector = rng.u64(..sectors - n);
                let (a, b) = ((sector * 512) as usize, ((sector + n) * 512) as usize);
                if rng.u64(..10) < 7 {
                    let data = bytes(&mut rng, n * 512);
                    reference[a..b].copy_from_slice(&data);
                    writes.push(rig.request(VIRTIO_BLK_T_OUT, sector, n * 512, Some(&data)));
                } else {
                    let r = rig.request(VIRTIO_BLK_T_IN, sector, n * 512, None);
                    reads.push((r, reference[a..b].to_vec()));
                }
            }
            rig.notify();
            rig.settle();
            for &w in &writes {
                assert_eq!(rig.status(w), VIRTIO_BLK_S_OK);
            }
            for (r, expected) in &reads {
                assert_eq!(rig.status(*r), VIRTIO_BLK_S_OK);
                assert!(rig.data(*r) == *expected, "read sees exactly the earlier writes");
            }
            assert_eq!(rig.used().len(), reads.len() + writes.len());
        }
        assert!(rig.dev.backend().disk == reference);
        assert_eq!(rig.dev.backend().free_blocks, 64, "every buffer freed");
    }

    #[test]
    fn two_partial_writes_to_one_block_both_land() {
        let mut rig = Rig::new(4);
        let mut reference = rig.dev.backend().disk.clone();
        let a = rig.request(VIRTIO_BLK_T_OUT, 1, 512, Some(&[0xaa; 512]));
        let b = rig.request(VIRTIO_BLK_T_OUT, 6, 1024, Some(&[0xbb; 1024]));
        rig.notify();
        assert_eq!(rig.dev.backend().pending.len(), 1, "second RMW waits for the first");
        rig.settle();
        reference[512..1024].fill(0xaa);
        reference[3072..4096].fill(0xbb);
        assert_eq!((rig.status(a), rig.status(b)), (VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK));
        assert!(rig.dev.backend().disk == reference);
    }

    #[test]
    fn aligned_write_goes_straight_and_unaligned_does_rmw() {
        let mut rig = Rig::new(8);
        rig.request(VIRTIO_BLK_T_OUT, 8, 8192, Some(&[1; 8192]));
        rig.notify();
        rig.settle();
        assert_eq!(rig.dev.backend().ops, vec![(BlockOp::Write, 1, 2)]);
        rig.dev.backend_mut().ops.clear();
        rig.request(VIRTIO_BLK_T_OUT, 7, 8192 + 1024, Some(&[2; 9216]));
        rig.notify();
        rig.settle();
        let ops = &rig.dev.backend().ops;
        assert_eq!(
            ops,
            &vec![
                (BlockOp::Read, 0, 1),
                (BlockOp::Write, 0, 1),
                (BlockOp::Write, 1, 2),
                (BlockOp::Read, 3, 1),
                (BlockOp::Write, 3, 1)
            ]
        );
    }

    #[test]
    fn large_requests_are_chunked() {
        let mut rig = Rig::new(32);
        rig.dev = BlockDevice::new(FakeDisk::new(32)).with_chunk_blocks(2);
        rig.dev.activate(0, &rig.queues).unwrap();
        let expected = rig.dev.backend().disk[512 * 3..512 * 43].to_vec();
        let r = rig.request(VIRTIO_BLK_T_IN, 3, 40 * 512, None);
        rig.notify();
        rig.settle();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_OK);
        assert!(rig.data(r) == expected);
        assert!(rig.dev.backend().ops.iter().all(|&(_, _, n)| n <= 2));
        assert_eq!(rig.used(), vec![(u32::from(r.head), 40 * 512 + 1)]);
    }

    #[test]
    fn requests_wait_for_buffers_and_queue_space() {
        let mut rig = Rig::new(8);
        rig.dev.backend_mut().free_blocks = 0;
        let r = rig.request(VIRTIO_BLK_T_IN, 0, 4096, None);
        rig.notify();
        assert!(rig.used().is_empty());
        rig.dev.backend_mut().free_blocks = 1;
        rig.dev.backend_mut().queue_limit = 0;
        rig.poll();
        assert!(rig.dev.backend().pending.is_empty(), "busy queue: not submitted yet");
        rig.dev.backend_mut().queue_limit = 4;
        rig.poll();
        rig.settle();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_OK);
        assert_eq!(rig.used().len(), 1);
    }

    #[test]
    fn a_smaller_chunk_is_tried_when_buffers_are_short() {
        let mut rig = Rig::new(16);
        rig.dev.backend_mut().free_blocks = 3;
        let expected = rig.dev.backend().disk[..65536].to_vec();
        let r = rig.request(VIRTIO_BLK_T_IN, 0, 65536, None);
        rig.notify();
        rig.settle();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_OK);
        assert!(rig.data(r) == expected);
    }

    #[test]
    fn backend_errors_answer_ioerr() {
        let mut rig = Rig::new(8);
        rig.dev.backend_mut().fail = true;
        let r = rig.request(VIRTIO_BLK_T_OUT, 0, 512, Some(&[1; 512]));
        rig.notify();
        rig.settle();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_IOERR);
        assert_eq!(rig.used(), vec![(u32::from(r.head), 1)]);
        assert_eq!(rig.dev.backend().free_blocks, 64);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let mut rig = Rig::new(8);
        rig.dev.backend_mut().info.as_mut().unwrap().read_only = true;
        assert_ne!(rig.dev.features() & VIRTIO_BLK_F_RO, 0);
        let w = rig.request(VIRTIO_BLK_T_OUT, 0, 512, Some(&[1; 512]));
        let r = rig.request(VIRTIO_BLK_T_IN, 0, 512, None);
        rig.notify();
        rig.settle();
        assert_eq!((rig.status(w), rig.status(r)), (VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK));
        assert!(rig.dev.backend().ops.iter().all(|&(op, _, _)| op == BlockOp::Read));
    }

    #[test]
    fn out_of_range_sectors_answer_ioerr() {
        let mut rig = Rig::new(8);
        let last = rig.request(VIRTIO_BLK_T_IN, 63, 512, None);
        let past = rig.request(VIRTIO_BLK_T_IN, 63, 1024, None);
        let huge = rig.request(VIRTIO_BLK_T_OUT, u64::MAX - 1, 1024, Some(&[0; 1024]));
        let wrap = rig.request(VIRTIO_BLK_T_IN, u64::MAX / 512, 512, None);
        rig.notify();
        rig.settle();
        assert_eq!(rig.status(last), VIRTIO_BLK_S_OK);
        for r in [past, huge, wrap] {
            assert_eq!(rig.status(r), VIRTIO_BLK_S_IOERR);
        }
    }

    #[test]
    fn flush_waits_for_earlier_writes() {
        let mut rig = Rig::new(8);
        let w = rig.request(VIRTIO_BLK_T_OUT, 0, 4096, Some(&[3; 4096]));
        let f = rig.request(VIRTIO_BLK_T_FLUSH, 0, 0, None);
        rig.notify();
        assert_eq!(rig.dev.backend().ops, vec![(BlockOp::Write, 0, 1)]);
        rig.settle();
        assert_eq!(rig.dev.backend().ops[1].0, BlockOp::Flush);
        assert_eq!((rig.status(w), rig.status(f)), (VIRTIO_BLK_S_OK, VIRTIO_BLK_S_OK));
        assert_eq!(rig.used()[1], (u32::from(f.head), 1));
    }

    #[test]
    fn get_id_returns_the_id_string() {
        let mut rig = Rig::new(8);
        let r = rig.request(VIRTIO_BLK_T_GET_ID, 0, 20, None);
        rig.notify();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_OK);
        assert_eq!(rig.data(r), DEFAULT_ID);
        assert_eq!(rig.used(), vec![(u32::from(r.head), 21)]);
    }

    #[test]
    fn unsupported_and_malformed_requests() {
        let mut rig = Rig::new(8);
        let u = rig.request(13, 0, 0, None);
        let z = rig.request(VIRTIO_BLK_T_IN, 0, 0, None);
        let mut drv = rig.drv.clone();
        let mut mem = rig.mem();
        let no_status = drv.add_chain(&mut mem, &[(BUFS, 16, false)]);
        rig.drv = drv;
        rig.notify();
        assert_eq!(rig.status(u), VIRTIO_BLK_S_UNSUPP);
        assert_eq!(rig.status(z), VIRTIO_BLK_S_IOERR);
        let used = rig.used();
        assert_eq!(used[2], (u32::from(no_status), 0));
        assert!(rig.dev.backend().ops.is_empty());
    }

    #[test]
    fn reset_with_requests_in_flight_never_touches_the_guest() {
        let mut rig = Rig::new(8);
        let r = rig.request(VIRTIO_BLK_T_IN, 0, 4096, None);
        let w = rig.request(VIRTIO_BLK_T_OUT, 0, 512, Some(&[9; 512]));
        rig.notify();
        rig.dev.reset();
        rig.queues[0].reset();
        rig.dev.backend_mut().execute(10);
        rig.poll();
        assert_eq!(rig.status(r), 0xff);
        assert_eq!(rig.status(w), 0xff);
        assert_eq!(rig.dev.in_flight(), 0);
        assert_eq!(rig.dev.backend().free_blocks, 64);
    }

    #[test]
    fn storage_not_ready_reports_zero_and_then_a_config_change() {
        let mut rig = Rig::new(8);
        let info = rig.dev.backend_mut().info.take();
        rig.dev.activate(0, &rig.queues).unwrap();
        let mut cap = [0u8; 8];
        rig.dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 0);
        let r = rig.request(VIRTIO_BLK_T_IN, 0, 512, None);
        rig.notify();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_IOERR);
        assert!(!rig.poll());
        rig.dev.backend_mut().info = info;
        assert!(rig.poll(), "capacity change is a config change");
        rig.dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 64);
    }

    /// Counts this thread's `virtio` warnings that contain "not ready".
    struct CountingLogger;
    std::thread_local!(static NOT_READY_LINES: core::cell::Cell<usize> = const { core::cell::Cell::new(0) });
    impl log::Log for CountingLogger {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if record.target() == "virtio" && std::format!("{}", record.args()).contains("ready") {
                NOT_READY_LINES.with(|n| n.set(n.get() + 1));
            }
        }
        fn flush(&self) {}
    }

    fn not_ready_lines() -> usize {
        static LOGGER: CountingLogger = CountingLogger;
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Trace);
        NOT_READY_LINES.with(|n| n.get())
    }

    #[test]
    fn requests_before_the_storage_is_ready_log_once_per_state_change() {
        let start = not_ready_lines();
        let mut rig = Rig::new(8);
        let info = rig.dev.backend_mut().info.take();
        for _ in 0..50 {
            let r = rig.request(VIRTIO_BLK_T_IN, 0, 512, None);
            rig.notify();
            assert_eq!(rig.status(r), VIRTIO_BLK_S_IOERR);
        }
        assert_eq!(not_ready_lines() - start, 1, "one line for 50 requests");
        rig.dev.backend_mut().info = info;
        rig.poll();
        rig.dev.backend_mut().info = None;
        let r = rig.request(VIRTIO_BLK_T_IN, 0, 512, None);
        rig.notify();
        assert_eq!(rig.status(r), VIRTIO_BLK_S_IOERR);
        assert_eq!(not_ready_lines() - start, 2, "not ready again: one more line");
    }

    #[test]
    fn config_space_layout() {
        let dev = BlockDevice::<FakeDisk>::new(FakeDisk::new(10));
        let mut c = [0u8; 32];
        dev.read_config(0, &mut c);
        assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 80);
        assert_eq!(u32::from_le_bytes(c[8..12].try_into().unwrap()), SIZE_MAX);
        assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), SEG_MAX);
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
        assert_eq!((c[24], c[25]), (3, 0));
        assert_eq!(u16::from_le_bytes(c[26..28].try_into().unwrap()), 8);
        let f = dev.features();
        assert_eq!(f & VIRTIO_BLK_F_RO, 0);
        let want = VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_SIZE_MAX
            | VIRTIO_BLK_F_TOPOLOGY;
        assert_eq!(f, want);
    }

    #[test]
    fn activation_needs_the_request_queue() {
        let mut dev = BlockDevice::<FakeDisk>::new(FakeDisk::new(10));
        assert_eq!(dev.activate(0, &[Queue::new(8)]), Err(ActivateError::QueueNotReady(0)));
    }
}
