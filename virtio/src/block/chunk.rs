//! Execution state of one block request: the in-flight table entry and its chunks.
//!
//! A request runs as a sequence of chunks, each one backend operation (two for a
//! read-modify-write), with one operation in flight per request at a time. A chunk covers
//! whole 4 KiB backend blocks: a read fetches the covering blocks and copies the sector slice
//! out, an aligned write goes straight, a partial block is read, merged and written back.

use super::backend::{BlockBackend, BlockOp, BufferId, BACKEND_BLOCK};

/// Bytes moved per step between guest memory and a backend buffer without a
/// [`SharedBuffer`](crate::memory::SharedBuffer) (a stack bounce buffer: neither side may be borrowed as a Rust slice, both
/// change under us).
const BOUNCE: usize = 512;
use super::request::{Request, RequestKind, SECTOR_SIZE};
use crate::memory::{CopyError, GuestMemory};
use crate::queue::DescriptorChain;

/// The bounce buffer, aligned like the words the volatile copies move.
#[repr(C, align(16))]
struct Bounce([u8; BOUNCE]);

/// The backend misbehaved (a buffer too small, a completion that does not fit): the request
/// fails with VIRTIO_BLK_S_IOERR.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Fault;

/// The part of a request one backend operation covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Chunk {
    /// First backend block.
    pub(super) block: u64,
    /// Backend blocks.
    pub(super) blocks: u32,
    /// Byte in the buffer where the guest data starts.
    pub(super) skip: usize,
    /// Guest data bytes.
    pub(super) len: usize,
    /// Whether this is a read-modify-write.
    pub(super) rmw: bool,
    pub(super) buf: Option<BufferId>,
}

/// Where a started request is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    /// Between chunks: start the next one or finish.
    Idle,
    /// `op` must be submitted (the backend was busy).
    Submit(BlockOp),
    /// `op` is with the backend.
    InFlight(BlockOp),
}

/// One request in the in-flight table (its chain is in the device's table of chains, at
/// the same index).
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub(super) req: Request,
    pub(super) seq: u64,
    pub(super) gen: u16,
    pub(super) started: bool,
    /// Data bytes finished.
    pub(super) done: u64,
    pub(super) chunk: Option<Chunk>,
    pub(super) phase: Phase,
    /// The device was reset while the backend had this request: only wait for the backend.
    pub(super) orphan: bool,
}

impl Slot {
    /// Backend blocks `[first, end)` this request touches; `None` for a flush (everything).
    pub(super) fn range(&self) -> Option<(u64, u64)> {
        let start = self.req.sector.saturating_mul(SECTOR_SIZE);
        let end = start.saturating_add(self.req.data_len);
        match self.req.kind {
            RequestKind::Read | RequestKind::Write => {
                Some((start / BACKEND_BLOCK, end.div_ceil(BACKEND_BLOCK)))
            }
            _ => None,
        }
    }

    /// Whether `self` must wait for the earlier request `other`.
    pub(super) fn conflicts(&self, other: &Slot) -> bool {
        let (Some((a0, a1)), Some((b0, b1))) = (self.range(), other.range()) else {
            return true;
        };
        let writes = self.req.kind == RequestKind::Write || other.req.kind == RequestKind::Write;
        writes && a0 < b1 && b0 < a1
    }
}

/// Plans the next chunk of `slot` (at most `cap` blocks), allocates its buffer and prepares
/// the first operation. `Ok(false)` if no buffer is free now; `Err` on a backend fault.
pub(super) fn start_chunk<B: BlockBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    slot: &mut Slot,
    chain: &DescriptorChain,
    mem: &M,
    cap: u32,
) -> Result<bool, Fault> {
    let mut cap = cap;
    let (chunk, buf) = loop {
        let c = plan(&slot.req, slot.done, cap);
        if let Some(buf) = backend.alloc(c.blocks) {
            break (c, buf);
        }
        if c.blocks <= 1 {
            return Ok(false);
        }
        cap = c.blocks / 2;
    };
    let chunk = Chunk { buf: Some(buf), ..chunk };
    slot.chunk = Some(chunk);
    if slot.req.kind == RequestKind::Read || chunk.rmw {
        slot.phase = Phase::Submit(BlockOp::Read);
        return Ok(true);
    }
    guest_to_buffer(backend, slot, chain, mem, buf, chunk)?;
    slot.phase = Phase::Submit(BlockOp::Write);
    Ok(true)
}

/// The next chunk of `req` after `done` data bytes, at most `cap` (>= 1) blocks.
fn plan(req: &Request, done: u64, cap: u32) -> Chunk {
    let start = req.sector * SECTOR_SIZE + done;
    let remaining = req.data_len - done;
    let block = start / BACKEND_BLOCK;
    let skip = start % BACKEND_BLOCK;
    let cap = u64::from(core::cmp::max(cap, 1));
    let (blocks, len, rmw) = if req.kind == RequestKind::Read {
        let blocks = core::cmp::min(cap, (skip + remaining).div_ceil(BACKEND_BLOCK));
        (blocks, core::cmp::min(remaining, blocks * BACKEND_BLOCK - skip), false)
    } else if skip != 0 || remaining < BACKEND_BLOCK {
        (1, core::cmp::min(BACKEND_BLOCK - skip, remaining), true)
    } else {
        let blocks = core::cmp::min(cap, remaining / BACKEND_BLOCK);
        (blocks, blocks * BACKEND_BLOCK, false)
    };
    // `blocks <= cap <= u32::MAX`; `skip < 4096`; `len <= blocks * 4096` fits a buffer.
    Chunk { block, blocks: blocks as u32, skip: skip as usize, len: len as usize, rmw, buf: None }
}

/// Copies the guest data of `c` (from `slot.done` on) into `buf` at `c.skip`: straight from
/// guest memory into the backend's [`SharedBuffer`](crate::memory::SharedBuffer) if it offers one, else through a stack
/// bounce buffer.
fn guest_to_buffer<B: BlockBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    slot: &Slot,
    chain: &DescriptorChain,
    mem: &M,
    buf: BufferId,
    c: Chunk,
) -> Result<(), Fault> {
    if let Some((shared, base, size)) = backend.shared_buffer(buf) {
        let start = fits(base, size, c)?;
        let n = slot.req.read_data_pieces(chain, slot.done, c.len, |gpa, at, n| {
            mem.read_to_shared(gpa, shared, start + at, n)
        });
        return copied(n, c);
    }
    let mut bounce = Bounce([0; BOUNCE]);
    let mut at = 0;
    while at < c.len {
        let part = &mut bounce.0[..core::cmp::min(BOUNCE, c.len - at)];
        let n = slot.req.read_data(chain, mem, slot.done + at as u64, part).map_err(|_| Fault)?;
        if n != part.len() {
            return Err(Fault);
        }
        backend.write_buffer(buf, c.skip + at, part).map_err(|_| too_small(c))?;
        at += n;
    }
    Ok(())
}

/// Copies `c.len` bytes of `buf` from `c.skip` to the guest's data (from `slot.done` on); see
/// [`guest_to_buffer`].
fn buffer_to_guest<B: BlockBackend, M: GuestMemory + ?Sized>(
    backend: &B,
    slot: &Slot,
    chain: &DescriptorChain,
    mem: &mut M,
    buf: BufferId,
    c: Chunk,
) -> Result<(), Fault> {
    if let Some((shared, base, size)) = backend.shared_buffer(buf) {
        let start = fits(base, size, c)?;
        let n = slot.req.write_data_pieces(chain, slot.done, c.len, |gpa, at, n| {
            mem.write_from_shared(gpa, shared, start + at, n)
        });
        return copied(n, c);
    }
    let mut bounce = Bounce([0; BOUNCE]);
    let mut at = 0;
    while at < c.len {
        let part = &mut bounce.0[..core::cmp::min(BOUNCE, c.len - at)];
        backend.read_buffer(buf, c.skip + at, part).map_err(|_| too_small(c))?;
        let n = slot.req.write_data(chain, mem, slot.done + at as u64, part).map_err(|_| Fault)?;
        if n != part.len() {
            return Err(Fault);
        }
        at += n;
    }
    Ok(())
}

/// Offset in the shared buffer of the chunk's data, if the allocation (`size` bytes at
/// `base`) holds it.
fn fits(base: usize, size: usize, c: Chunk) -> Result<usize, Fault> {
    match c.skip.checked_add(c.len) {
        Some(end) if end <= size => base.checked_add(c.skip).ok_or(Fault),
        _ => Err(too_small(c)),
    }
}

/// The outcome of a direct copy of chunk `c`: all of it, or a fault.
fn copied(n: Result<usize, CopyError>, c: Chunk) -> Result<(), Fault> {
    match n {
        Ok(n) if n == c.len => Ok(()),
        Err(CopyError::Buffer) => Err(too_small(c)),
        _ => Err(Fault),
    }
}

/// The backend's buffer does not hold the chunk: the backend is at fault.
fn too_small(c: Chunk) -> Fault {
    log::warn!(target: "virtio", "blk: backend buffer smaller than {} bytes", c.skip + c.len);
    Fault
}

/// Read-modify-write: the covering block arrived; merge guest data and write it back.
pub(super) fn merge<B: BlockBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    slot: &mut Slot,
    chain: &DescriptorChain,
    mem: &M,
    c: Chunk,
) -> Result<(), Fault> {
    let buf = c.buf.ok_or(Fault)?;
    guest_to_buffer(backend, slot, chain, mem, buf, c)?;
    slot.phase = Phase::Submit(BlockOp::Write);
    Ok(())
}

/// A read chunk arrived: copy the sector slice to the guest.
pub(super) fn copy_out<B: BlockBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    slot: &mut Slot,
    chain: &DescriptorChain,
    mem: &mut M,
    c: Chunk,
) -> Result<(), Fault> {
    let buf = c.buf.ok_or(Fault)?;
    buffer_to_guest(backend, slot, chain, mem, buf, c)?;
    finish_chunk(backend, slot, c);
    Ok(())
}

/// A chunk is done: free its buffer and move on.
pub(super) fn finish_chunk<B: BlockBackend>(backend: &mut B, slot: &mut Slot, c: Chunk) {
    if let Some(buf) = c.buf {
        backend.free(buf);
    }
    slot.chunk = None;
    slot.done += c.len as u64;
    slot.phase = Phase::Idle;
}
