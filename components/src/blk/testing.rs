//! Host-test fixtures for the block components: this project's virtio-blk
//! device model (the `virtio` crate, which checks every ring access against
//! virtio 1.2) over a RAM disk, behind a register block the driver drives.

use crate::Registers;
use sddf_bindings::SharedRegion;
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;
use virtio::block::{
    BackendBusy, BlockBackend, BlockDevice, BlockInfo, BlockOp, BufferId, BufferRange,
};
use virtio::{GuestMemory, MemoryError, MmioTransport};

/// The device's view of memory: regions at their I/O addresses.
pub(crate) struct Bus {
    regions: Vec<(u64, SharedRegion)>,
}

impl Bus {
    fn locate(&self, io: u64, len: usize) -> Result<(&SharedRegion, usize), MemoryError> {
        let err = MemoryError::OutOfRange { gpa: io, len: len as u64 };
        for (base, region) in &self.regions {
            if io >= *base && io - base + len as u64 <= region.len() as u64 {
                return Ok((region, (io - base) as usize));
            }
        }
        Err(err)
    }
}

impl GuestMemory for Bus {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let (r, off) = self.locate(gpa, buf.len())?;
        r.read(off, buf).map_err(|_| MemoryError::OutOfRange { gpa, len: 0 })
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let (r, off) = self.locate(gpa, data.len())?;
        r.write(off, data).map_err(|_| MemoryError::OutOfRange { gpa, len: 0 })
    }
}

/// A RAM disk that completes requests in random order, a few at a time.
pub(crate) struct Disk {
    pub(crate) disk: Vec<u8>,
    bufs: Vec<Option<Vec<u8>>>,
    pending: Vec<(BlockOp, u64, u32, Option<BufferId>, u32)>,
    done: VecDeque<(u32, bool)>,
    rng: fastrand::Rng,
    pub(crate) flushes: usize,
    /// Reads fail (the device answers VIRTIO_BLK_S_IOERR).
    pub(crate) fail_reads: bool,
}

impl Disk {
    /// A disk holding `disk` (a whole number of 4 KiB blocks).
    pub(crate) fn new(disk: Vec<u8>) -> Self {
        Disk {
            disk,
            bufs: Vec::new(),
            pending: Vec::new(),
            done: VecDeque::new(),
            rng: fastrand::Rng::with_seed(7),
            flushes: 0,
            fail_reads: false,
        }
    }

    fn execute_one(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let i = self.rng.usize(..self.pending.len());
        let (op, block, count, buf, tag) = self.pending.swap_remove(i);
        let (start, len) = (block as usize * 4096, count as usize * 4096);
        let mut ok = true;
        match op {
            BlockOp::Read if self.fail_reads => ok = false,
            BlockOp::Read => self.bufs[buf.unwrap().0 as usize].as_mut().unwrap()[..len]
                .copy_from_slice(&self.disk[start..start + len]),
            BlockOp::Write => self.disk[start..start + len]
                .copy_from_slice(&self.bufs[buf.unwrap().0 as usize].as_ref().unwrap()[..len]),
            BlockOp::Flush => self.flushes += 1,
        }
        self.done.push_back((tag, ok));
        true
    }
}

impl BlockBackend for Disk {
    fn info(&self) -> Option<BlockInfo> {
        let capacity = (self.disk.len() / 4096) as u64;
        Some(BlockInfo { capacity, read_only: false, optimal_blocks: 1 })
    }
    fn alloc(&mut self, blocks: u32) -> Option<BufferId> {
        self.bufs.push(Some(vec![0; blocks as usize * 4096]));
        Some(BufferId(self.bufs.len() as u32 - 1))
    }
    fn free(&mut self, buf: BufferId) {
        self.bufs[buf.0 as usize] = None;
    }
    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let cells = self.bufs[buf.0 as usize].as_ref().unwrap();
        dst.copy_from_slice(cells.get(at..at + dst.len()).ok_or(BufferRange)?);
        Ok(())
    }
    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        let cells = self.bufs[buf.0 as usize].as_mut().unwrap();
        cells.get_mut(at..at + src.len()).ok_or(BufferRange)?.copy_from_slice(src);
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
        if self.pending.len() >= 6 {
            return Err(BackendBusy);
        }
        self.pending.push((op, block, count, buf, tag));
        Ok(())
    }
    fn complete(&mut self) -> Option<(u32, bool)> {
        self.done.pop_front()
    }
    fn notify(&mut self) {}
}

/// The device model behind the driver's registers.
pub(crate) struct Device {
    pub(crate) t: MmioTransport<BlockDevice<Disk, 8>>,
    bus: Bus,
    irq: bool,
}

impl Registers for Device {
    fn read(&mut self, offset: usize) -> u32 {
        self.t.read(offset as u64, 4) as u32
    }
    fn write(&mut self, offset: usize, value: u32) {
        let irq = self.t.write(&mut self.bus, offset as u64, 4, u64::from(value));
        self.irq |= irq.is_raised();
    }
}

impl Device {
    /// A virtio-blk device over `disk` that reaches `regions` (I/O address,
    /// region) by DMA.
    pub(crate) fn new(disk: Disk, regions: Vec<(u64, SharedRegion)>) -> Self {
        Device { t: MmioTransport::new(BlockDevice::new(disk)), bus: Bus { regions }, irq: false }
    }

    /// Runs the disk one operation; returns whether the interrupt fired.
    pub(crate) fn step(&mut self) -> bool {
        self.t.device_mut().backend_mut().execute_one();
        self.irq |= self.t.process(&mut self.bus).is_raised();
        core::mem::take(&mut self.irq)
    }
}
