//! The block backend seam: 4 KiB blocks, split-phase (the sDDF block protocol).
//!
//! The device allocates space in the backend's data region, copies data in or out of it, and
//! submits
//! operations tagged with an id; completions come back in any order through
//! [`BlockBackend::complete`].

use crate::memory::SharedBuffer;

/// Size of one backend block (sDDF BLK_TRANSFER_SIZE).
pub const BACKEND_BLOCK: u64 = 4096;

/// What the backend reports about its storage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BlockInfo {
    /// Capacity in 4 KiB blocks.
    pub capacity: u64,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Optimal I/O size in 4 KiB blocks (0 if unknown).
    pub optimal_blocks: u32,
}

/// One allocation in the backend's data region.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct BufferId(pub u32);

/// A backend operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BlockOp {
    /// Read blocks into the buffer.
    Read,
    /// Write the buffer to blocks.
    Write,
    /// Make completed writes durable.
    Flush,
}

/// A copy to or from an allocation that does not fit in it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BufferRange;

/// The backend's request queue is full; try again later.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BackendBusy;

/// Host side of a block device: 4 KiB blocks, split-phase (the sDDF block protocol).
pub trait BlockBackend {
    /// The storage's properties; `None` until the storage is ready.
    fn info(&self) -> Option<BlockInfo>;
    /// Space for `blocks` 4 KiB blocks in the backend's data region; `None` if none is free
    /// now.
    fn alloc(&mut self, blocks: u32) -> Option<BufferId>;
    /// Returns an allocation.
    fn free(&mut self, buf: BufferId);
    /// Copies `dst.len()` bytes at `offset` into allocation `buf` (of `blocks * 4096` bytes)
    /// into `dst`. A backend's data region is shared with another party (an sDDF peer), so it
    /// is copied, never lent out as a Rust reference.
    fn read_buffer(&self, buf: BufferId, offset: usize, dst: &mut [u8]) -> Result<(), BufferRange>;
    /// Copies `src` to `offset` into allocation `buf`; see [`BlockBackend::read_buffer`].
    fn write_buffer(&mut self, buf: BufferId, offset: usize, src: &[u8])
        -> Result<(), BufferRange>;
    /// Allocation `buf` as a [`SharedBuffer`] with the offset of its first byte in it and its
    /// length, so the device copies straight between guest memory and the buffer
    /// ([`GuestMemory::read_to_shared`](crate::GuestMemory::read_to_shared)). `None` (the
    /// default): copies go through [`BlockBackend::read_buffer`]/[`BlockBackend::write_buffer`].
    fn shared_buffer(&self, buf: BufferId) -> Option<(&dyn SharedBuffer, usize, usize)> {
        let _ = buf;
        None
    }
    /// Starts `op` on `count` blocks from `block`, with `buf` for Read and Write; `tag` comes
    /// back from [`BlockBackend::complete`].
    fn submit(
        &mut self,
        op: BlockOp,
        block: u64,
        count: u32,
        buf: Option<BufferId>,
        tag: u32,
    ) -> Result<(), BackendBusy>;
    /// A completed operation: `(tag, ok)`.
    fn complete(&mut self) -> Option<(u32, bool)>;
    /// Tells the backend about a batch of submits.
    fn notify(&mut self);
}
