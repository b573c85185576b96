//! The virtio block device's backend: an sDDF block client.
//!
//! Requests go to the block virtualiser in 4 KiB blocks, with
//! `io_or_offset` an offset into this client's data region. The data region
//! is cut into 4 KiB cells handed out first-fit. Responses come back in any
//! order; their `id` is the device's tag. No signalling flags: the
//! virtualiser is notified after each batch of requests.

use super::Notifier;
use sddf_bindings::blk::BLK_TRANSFER_SIZE;
use sddf_bindings::blk::{BlkQueueHandle, BlkReq, BlkReqCode, BlkRespStatus, StorageInfoHandle};
use sddf_bindings::SharedRegion;
use virtio::block::{BackendBusy, BlockBackend, BlockInfo, BlockOp, BufferId, BufferRange};
use virtio::{CopyError, SharedBuffer};

/// A client's data region as the block device's [`SharedBuffer`]: guest RAM
/// ([`GuestRam`](crate::guest_memory::GuestRam)) recognises it and copies
/// straight between the guest's buffers and the cells, one volatile copy
/// with no bounce buffer.
pub struct DataRegion(pub SharedRegion);

impl SharedBuffer for DataRegion {
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<(), CopyError> {
        self.0.read(offset, dst).map_err(|_| CopyError::Buffer)
    }

    fn write(&self, offset: usize, src: &[u8]) -> Result<(), CopyError> {
        self.0.write(offset, src).map_err(|_| CopyError::Buffer)
    }

    fn as_any(&self) -> &dyn core::any::Any {
        self
    }
}

/// Most data cells a client tracks (4 MiB of data region).
pub const MAX_CELLS: usize = 1024;
const WORDS: usize = MAX_CELLS / 64;

/// An sDDF block client connection.
pub struct SddfBlock<N: Notifier> {
    queue: BlkQueueHandle,
    info: StorageInfoHandle,
    data: DataRegion,
    cells: usize,
    used: [u64; WORDS],
    channel: u8,
    notifier: N,
    submitted: bool,
}

/// A buffer id: first cell in the low 16 bits, cell count in the high 16.
fn buffer_id(start: usize, count: usize) -> BufferId {
    BufferId((start as u32 & 0xffff) | ((count as u32) << 16))
}

fn cells_of(buf: BufferId) -> (usize, usize) {
    ((buf.0 & 0xffff) as usize, (buf.0 >> 16) as usize)
}

impl<N: Notifier> SddfBlock<N> {
    /// A client over `queue`, the storage-info region and its `data`
    /// region, notifying the virtualiser on `channel`.
    pub fn new(
        queue: BlkQueueHandle,
        info: StorageInfoHandle,
        data: SharedRegion,
        channel: u8,
        notifier: N,
    ) -> Self {
        let cells = (data.len() / BLK_TRANSFER_SIZE).min(MAX_CELLS);
        SddfBlock {
            queue,
            info,
            data: DataRegion(data),
            cells,
            used: [0; WORDS],
            channel,
            notifier,
            submitted: false,
        }
    }

    /// The notifier (tests inspect their fake through it).
    pub fn notifier(&mut self) -> &mut N {
        &mut self.notifier
    }

    /// The data-region offset of `len` bytes at `at` in `buf`, if they are
    /// inside its cells. The cells are shared with the virtualiser (and the
    /// driver): they are only ever copied, with volatile accesses.
    fn cell_range(&self, buf: BufferId, at: usize, len: usize) -> Result<usize, BufferRange> {
        let (start, count) = cells_of(buf);
        let end = at.checked_add(len).ok_or(BufferRange)?;
        if start.saturating_add(count) > self.cells || end > count * BLK_TRANSFER_SIZE {
            return Err(BufferRange);
        }
        Ok(start * BLK_TRANSFER_SIZE + at)
    }

    fn is_used(&self, cell: usize) -> bool {
        self.used.get(cell / 64).is_some_and(|w| w & (1 << (cell % 64)) != 0)
    }

    fn set(&mut self, start: usize, count: usize, used: bool) {
        for cell in start..start.saturating_add(count).min(self.cells) {
            if let Some(w) = self.used.get_mut(cell / 64) {
                if used {
                    *w |= 1 << (cell % 64);
                } else {
                    *w &= !(1 << (cell % 64));
                }
            }
        }
    }
}

impl<N: Notifier> BlockBackend for SddfBlock<N> {
    fn info(&self) -> Option<BlockInfo> {
        let info = self.info.essentials()?;
        Some(BlockInfo {
            capacity: info.capacity,
            read_only: info.read_only,
            optimal_blocks: u32::from(info.block_size),
        })
    }

    fn alloc(&mut self, blocks: u32) -> Option<BufferId> {
        let want = blocks as usize;
        if want == 0 || want > self.cells || want > u16::MAX as usize {
            return None;
        }
        let mut run = 0;
        for cell in 0..self.cells {
            run = if self.is_used(cell) { 0 } else { run + 1 };
            if run == want {
                let start = cell + 1 - want;
                self.set(start, want, true);
                return Some(buffer_id(start, want));
            }
        }
        None
    }

    fn free(&mut self, buf: BufferId) {
        let (start, count) = cells_of(buf);
        self.set(start, count, false);
    }

    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let offset = self.cell_range(buf, at, dst.len())?;
        self.data.0.read(offset, dst).map_err(|_| BufferRange)
    }

    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        let offset = self.cell_range(buf, at, src.len())?;
        self.data.0.write(offset, src).map_err(|_| BufferRange)
    }

    fn shared_buffer(&self, buf: BufferId) -> Option<(&dyn SharedBuffer, usize, usize)> {
        let (_, count) = cells_of(buf);
        let offset = self.cell_range(buf, 0, count * BLK_TRANSFER_SIZE).ok()?;
        Some((&self.data, offset, count * BLK_TRANSFER_SIZE))
    }

    fn submit(
        &mut self,
        op: BlockOp,
        block: u64,
        count: u32,
        buf: Option<BufferId>,
        tag: u32,
    ) -> Result<(), BackendBusy> {
        let (code, offset, count) = match (op, buf) {
            (BlockOp::Flush, _) => (BlkReqCode::Flush, 0, 0),
            (BlockOp::Read, Some(b)) | (BlockOp::Write, Some(b)) => {
                let (start, cells) = cells_of(b);
                let count = (count as usize).min(cells) as u16;
                let code = if op == BlockOp::Read { BlkReqCode::Read } else { BlkReqCode::Write };
                (code, (start * BLK_TRANSFER_SIZE) as u64, count)
            }
            _ => return Err(BackendBusy),
        };
        self.queue
            .enqueue_req(BlkReq::new(code, offset, block, count, tag))
            .map_err(|_| BackendBusy)?;
        self.submitted = true;
        Ok(())
    }

    fn complete(&mut self) -> Option<(u32, bool)> {
        let resp = self.queue.dequeue_resp()?;
        Some((resp.id, resp.status() == Some(BlkRespStatus::Ok)))
    }

    fn notify(&mut self) {
        if core::mem::take(&mut self.submitted) {
            self.notifier.notify(self.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sddf::Recorder;
    use sddf_bindings::blk::{BlkResp, BlkStorageInfo};

    struct Peer {
        queue: BlkQueueHandle,
        info: StorageInfoHandle,
    }

    fn client(cells: usize) -> (SddfBlock<Recorder>, Peer) {
        let req = SharedRegion::leak_zeroed(16 + 32 * 8);
        let resp = SharedRegion::leak_zeroed(8 + 12 * 8);
        let info = SharedRegion::leak_zeroed(4096);
        let data = SharedRegion::leak_zeroed(cells * 4096);
        let ours = BlkQueueHandle::new(req.clone(), resp.clone(), 8).unwrap();
        let theirs = BlkQueueHandle::new(req, resp, 8).unwrap();
        let client = SddfBlock::new(
            ours,
            StorageInfoHandle::new(info.clone()).unwrap(),
            data,
            3,
            Recorder::default(),
        );
        (client, Peer { queue: theirs, info: StorageInfoHandle::new(info).unwrap() })
    }

    #[test]
    fn info_appears_when_the_virtualiser_sets_ready() {
        let (c, peer) = client(4);
        assert_eq!(c.info(), None);
        let mut info = BlkStorageInfo::zeroed();
        info.capacity = 1000;
        info.read_only = 1;
        peer.info.write(&info).unwrap();
        peer.info.set_ready(true);
        assert_eq!(
            c.info(),
            Some(BlockInfo { capacity: 1000, read_only: true, optimal_blocks: 0 })
        );
    }

    #[test]
    fn cells_are_allocated_first_fit_and_freed() {
        let (mut c, _) = client(4);
        let a = c.alloc(2).unwrap();
        let b = c.alloc(1).unwrap();
        assert_eq!(cells_of(a), (0, 2));
        assert_eq!(cells_of(b), (2, 1));
        assert_eq!(c.alloc(2), None, "only one cell left");
        c.free(a);
        assert_eq!(cells_of(c.alloc(2).unwrap()), (0, 2));
        assert_eq!(c.alloc(0), None);
        assert_eq!(c.alloc(9), None);
    }

    #[test]
    fn buffers_are_copied_in_and_out_inside_their_cells_only() {
        let (mut c, _) = client(4);
        let _ = c.alloc(1).unwrap();
        let b = c.alloc(2).unwrap();
        c.write_buffer(b, 8188, &[1, 2, 3, 4]).unwrap();
        let mut out = [0u8; 4];
        c.read_buffer(b, 8188, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        c.data.0.read(4096 + 8188, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4], "cell 1 is at 4096 in the data region");
        assert_eq!(c.write_buffer(b, 8192 - 3, &[0; 4]), Err(BufferRange), "past its cells");
        assert_eq!(c.read_buffer(b, usize::MAX, &mut out), Err(BufferRange), "wraps");
        let forged = BufferId(3 | (2 << 16));
        assert_eq!(c.read_buffer(forged, 0, &mut out), Err(BufferRange), "past the region");
    }

    #[test]
    fn requests_carry_offsets_and_tags_and_responses_match_by_id() {
        let (mut c, mut peer) = client(4);
        let _ = c.alloc(1).unwrap();
        let buf = c.alloc(2).unwrap();
        c.write_buffer(buf, 5, &[0xab]).unwrap();
        c.submit(BlockOp::Write, 77, 2, Some(buf), 41).unwrap();
        c.submit(BlockOp::Flush, 0, 0, None, 42).unwrap();
        c.notify();
        c.notify();
        assert_eq!(c.notifier().0, [3], "one notification per batch");
        let w = peer.queue.dequeue_req().unwrap();
        assert_eq!(
            (w.code(), w.io_or_offset, w.block_number, w.count, w.id),
            (Some(BlkReqCode::Write), 4096, 77, 2, 41)
        );
        let f = peer.queue.dequeue_req().unwrap();
        assert_eq!((f.code(), f.id), (Some(BlkReqCode::Flush), 42));
        peer.queue.enqueue_resp(BlkResp::new(BlkRespStatus::ErrIo, 0, 42)).unwrap();
        peer.queue.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 2, 41)).unwrap();
        assert_eq!(c.complete(), Some((42, false)));
        assert_eq!(c.complete(), Some((41, true)));
        assert_eq!(c.complete(), None);
    }

    #[test]
    fn a_full_queue_is_busy_not_lost() {
        let (mut c, _) = client(16);
        for tag in 0..8 {
            c.submit(BlockOp::Flush, 0, 0, None, tag).unwrap();
        }
        assert_eq!(c.submit(BlockOp::Flush, 0, 0, None, 8), Err(BackendBusy));
        assert_eq!(c.submit(BlockOp::Read, 0, 1, None, 9), Err(BackendBusy), "read needs a buffer");
    }
}
