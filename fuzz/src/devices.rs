//! Targets `virtio_console` and `virtio_blk`: the devices behind the transport, over backends
//! that answer busy, late and out of order.
//!
//! Serial backend: the room for output and the input bytes come and go as the input says;
//! `tx` may take less than `tx_space` promised. Checks: `tx` is never handed more than one
//! call can take... nothing more than the device's own promises (`tx` called with
//! non-empty data, `rx` with a non-empty buffer).
//!
//! Block backend: allocations fail when told to, submits answer `BackendBusy`, completions
//! are held back and delivered in any order, sometimes failed, with unknown tags mixed in,
//! and the reported capacity and readiness change. Checks: the device never submits outside
//! the largest capacity reported, with a buffer it does not own or too small for the count;
//! never frees or touches (read/write) a buffer that is free or that an operation in flight
//! owns; and after a reset and every late completion it owns no buffer and no request.

use std::collections::HashSet;

use arbitrary::Arbitrary;
use virtio::block::{
    BackendBusy, BlockBackend, BlockDevice, BlockInfo, BlockOp, BufferId, BufferRange,
};
use virtio::console::{Console, SerialBackend};
use virtio::GuestMemory;

use crate::virtio_ops::{self, GuestOp};

/// The hostile serial backend.
#[derive(Default)]
pub struct Serial {
    room: usize,
    /// `tx` takes at most this much per call, whatever `tx_space` said.
    take: usize,
    input: Vec<u8>,
}

impl SerialBackend for Serial {
    fn tx_space(&self) -> usize {
        self.room
    }
    fn tx(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room).min(self.take);
        self.room -= n;
        n
    }
    fn tx_flush(&mut self) {}
    fn rx(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        n
    }
}

/// What the serial side does.
#[derive(Arbitrary, Debug)]
pub enum SerialOp {
    /// Room for output appears (or shrinks); `take` caps each `tx`.
    Room { room: u16, take: u16 },
    /// Input bytes arrive.
    Input(Vec<u8>),
}

/// Runs one `virtio_console` input.
pub fn run_console(data: &[u8]) {
    virtio_ops::run(
        data,
        Console::new(Serial::default()),
        |c: &mut Console<Serial>, op: SerialOp| {
            let b = c.backend_mut();
            match op {
                SerialOp::Room { room, take } => {
                    b.room = usize::from(room);
                    b.take = usize::from(take);
                }
                SerialOp::Input(bytes) => {
                    if b.input.len() < 4096 {
                        b.input.extend(bytes);
                    }
                }
            }
        },
        |_| {},
        |_, _| {},
    );
}

/// The hostile block backend.
#[derive(Default)]
pub struct Disk {
    info: Option<BlockInfo>,
    max_capacity: u64,
    /// Allocations: blocks of each live one (None once freed).
    bufs: Vec<Option<u32>>,
    /// Operations submitted and not completed: (tag, buffer).
    in_flight: Vec<(u32, Option<BufferId>, bool)>,
    /// Every tag ever submitted (unknown tags are drawn outside it).
    tags: HashSet<u32>,
    /// Completions ready to be collected by `complete`.
    ready: Vec<(u32, bool)>,
    alloc_fails: bool,
    busy: bool,
}

impl Disk {
    fn live(&self, buf: BufferId) -> u32 {
        let b = self.bufs.get(buf.0 as usize).copied().flatten();
        b.unwrap_or_else(|| panic!("device uses buffer {} that it does not own", buf.0))
    }

    fn owned_by_backend(&self, buf: BufferId) -> bool {
        self.in_flight.iter().any(|&(_, b, _)| b == Some(buf))
    }
}

impl BlockBackend for Disk {
    fn info(&self) -> Option<BlockInfo> {
        self.info
    }
    fn alloc(&mut self, blocks: u32) -> Option<BufferId> {
        assert!(blocks > 0, "allocation of 0 blocks");
        if self.alloc_fails || self.bufs.iter().flatten().count() >= 8 || blocks > 64 {
            return None;
        }
        self.bufs.push(Some(blocks));
        Some(BufferId(self.bufs.len() as u32 - 1))
    }
    fn free(&mut self, buf: BufferId) {
        self.live(buf);
        assert!(
            !self.owned_by_backend(buf),
            "device frees buffer {} of an operation in flight",
            buf.0
        );
        self.bufs[buf.0 as usize] = None;
    }
    fn read_buffer(&self, buf: BufferId, offset: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let blocks = self.live(buf);
        assert!(!self.owned_by_backend(buf), "device reads buffer {} in flight", buf.0);
        let end = offset.checked_add(dst.len()).ok_or(BufferRange)?;
        assert!(end <= blocks as usize * 4096, "read of {offset}+{} in {blocks} blocks", dst.len());
        dst.fill(0x5a);
        Ok(())
    }
    fn write_buffer(
        &mut self,
        buf: BufferId,
        offset: usize,
        src: &[u8],
    ) -> Result<(), BufferRange> {
        let blocks = self.live(buf);
        assert!(!self.owned_by_backend(buf), "device writes buffer {} in flight", buf.0);
        let end = offset.checked_add(src.len()).ok_or(BufferRange)?;
        assert!(
            end <= blocks as usize * 4096,
            "write of {offset}+{} in {blocks} blocks",
            src.len()
        );
        Ok(())
    }
    fn submit(
        &mut self,
        op: BlockOp,
        block: u64,
        count: u32,
        buf: Option<BufferId>,
        tag: u32,
    ) -> Result<(), BackendBusy> {
        if self.busy {
            return Err(BackendBusy);
        }
        assert!(!self.in_flight.iter().any(|&(t, ..)| t == tag), "tag {tag:#x} submitted twice");
        match op {
            BlockOp::Flush => assert!(buf.is_none() || count == 0),
            BlockOp::Read | BlockOp::Write => {
                let b = buf.expect("read or write without a buffer");
                let blocks = self.live(b);
                assert!(!self.owned_by_backend(b), "buffer {} submitted twice", b.0);
                assert!(count > 0 && count <= blocks, "{count} blocks in a buffer of {blocks}");
                let end = block.checked_add(u64::from(count)).expect("block range wraps");
                assert!(
                    end <= self.max_capacity,
                    "blocks {block}+{count} beyond {}",
                    self.max_capacity
                );
            }
        }
        self.in_flight.push((tag, buf, true));
        self.tags.insert(tag);
        Ok(())
    }
    fn complete(&mut self) -> Option<(u32, bool)> {
        self.ready.pop()
    }
    fn notify(&mut self) {}
}

/// What the block backend does.
#[derive(Arbitrary, Debug)]
pub enum DiskOp {
    /// The storage's state changes (capacity in blocks, None = not ready).
    Info(Option<(u16, bool)>),
    /// Allocations fail / submits are refused.
    Pressure { alloc_fails: bool, busy: bool },
    /// In-flight operation `i` (modulo) completes, `ok` or failed.
    Complete { i: u8, ok: bool },
    /// A completion with a tag the device never used.
    Bogus { tag: u32, ok: bool },
}

fn disk_op(d: &mut Disk, op: DiskOp) {
    match op {
        DiskOp::Info(i) => {
            d.info = i.map(|(c, ro)| BlockInfo {
                capacity: u64::from(c),
                read_only: ro,
                optimal_blocks: 0,
            });
            d.max_capacity = d.max_capacity.max(d.info.map_or(0, |i| i.capacity));
        }
        DiskOp::Pressure { alloc_fails, busy } => {
            d.alloc_fails = alloc_fails;
            d.busy = busy;
        }
        DiskOp::Complete { i, ok } => {
            if !d.in_flight.is_empty() {
                let (tag, ..) = d.in_flight.remove(usize::from(i) % d.in_flight.len());
                d.ready.insert(0, (tag, ok));
            }
        }
        DiskOp::Bogus { tag, ok } => {
            if !d.tags.contains(&tag) {
                d.ready.insert(0, (tag, ok));
            }
        }
    }
}

/// Runs one `virtio_blk` input.
pub fn run_blk(data: &[u8]) {
    let disk = Disk {
        info: Some(BlockInfo { capacity: 16, read_only: false, optimal_blocks: 0 }),
        max_capacity: 16,
        ..Disk::default()
    };
    virtio_ops::run(
        data,
        BlockDevice::<Disk, 4>::new(disk).with_chunk_blocks(2),
        |b: &mut BlockDevice<Disk, 4>, op: DiskOp| disk_op(b.backend_mut(), op),
        |t| assert!(t.device().in_flight() <= 4),
        |t, mem| {
            // Reset, then every late completion: nothing may stay allocated.
            t.write(mem, virtio::mmio::STATUS, 4, 0);
            let d = t.device_mut().backend_mut();
            d.busy = false;
            while !d.in_flight.is_empty() {
                disk_op(d, DiskOp::Complete { i: 0, ok: true });
            }
            t.process(mem);
            assert_eq!(t.device().in_flight(), 0, "requests left after reset and completions");
            let live = t.device().backend().bufs.iter().flatten().count();
            assert_eq!(live, 0, "{live} buffers leaked");
            let _ = mem.check_range(0, 0);
        },
    );
    let _ = GuestOp::Process;
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run() {
        for seed in crate::seeds::noise(5, 8, 800) {
            super::run_console(&seed);
            super::run_blk(&seed);
        }
    }
}
