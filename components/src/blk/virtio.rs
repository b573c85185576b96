//! Driver for a virtio block device over the virtio-MMIO transport, modern
//! (version 2) only: QEMU's `virtio-blk-device` with
//! `-global virtio-mmio.force-legacy=false`. Virtio 1.2 §4.2 (MMIO), §2.7
//! (split virtqueues), §5.2 (block).
//!
//! One request queue of up to 64 descriptors in a DMA region the driver
//! owns, and a request header and status byte per slot in the same region.
//! Each sDDF request becomes one chain of three descriptors (header, data,
//! status); FLUSH and BARRIER wait until nothing is in flight, then send a
//! virtio FLUSH (or complete at once if the device has no write cache to
//! flush). A request is only taken from the sDDF queue when a slot is free
//! and its response is sure to fit, so nothing waits inside the driver
//! except one flush.

use crate::{Notify, Registers};
use core::sync::atomic::{fence, Ordering};
use sddf_bindings::blk::{
    BlkQueueHandle, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo, StorageInfoHandle,
    BLK_TRANSFER_SIZE,
};

// Virtio-MMIO registers (virtio 1.2 §4.2.2).
const MAGIC: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;
const DEVICE_FEATURES: usize = 0x010;
const DEVICE_FEATURES_SEL: usize = 0x014;
const DRIVER_FEATURES: usize = 0x020;
const DRIVER_FEATURES_SEL: usize = 0x024;
const QUEUE_SEL: usize = 0x030;
const QUEUE_NUM_MAX: usize = 0x034;
const QUEUE_NUM: usize = 0x038;
const QUEUE_READY: usize = 0x044;
const QUEUE_NOTIFY: usize = 0x050;
const INTERRUPT_STATUS: usize = 0x060;
const INTERRUPT_ACK: usize = 0x064;
const STATUS: usize = 0x070;
const QUEUE_DESC: usize = 0x080;
const QUEUE_DRIVER: usize = 0x090;
const QUEUE_DEVICE: usize = 0x0a0;
const CONFIG_GENERATION: usize = 0x0fc;
const CONFIG: usize = 0x100;

const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const BLOCK_DEVICE: u32 = 2;

// Device status bits (§2.1).
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;

// Feature bits.
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_VERSION_1: u64 = 1 << 32;

// Request types and statuses (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const USED_F_NO_NOTIFY: u16 = 1;

const SECTORS_PER_BLOCK: u64 = (BLK_TRANSFER_SIZE / 512) as u64;

/// Largest queue the driver sets up.
pub const MAX_QUEUE: u16 = 64;
/// Descriptors per request.
const CHAIN: u16 = 3;
/// Requests in flight at most.
pub const MAX_SLOTS: usize = (MAX_QUEUE / CHAIN) as usize;

// Layout of the DMA region: descriptors, available ring, used ring (own
// page), then a 32-byte header + status cell per slot.
const DESC_AT: usize = 0;
const AVAIL_AT: usize = 16 * MAX_QUEUE as usize;
const USED_AT: usize = 0x1000;
const CELLS_AT: usize = 0x2000;
const CELL: usize = 32;
/// Bytes of DMA memory the driver needs.
pub const DMA_SIZE: usize = CELLS_AT + CELL * MAX_SLOTS;

pub use super::Dma;

/// Why the device could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// No virtio-MMIO device there (the magic value read).
    NotVirtio(u32),
    /// A legacy (version 1) transport: start QEMU with
    /// `-global virtio-mmio.force-legacy=false`.
    Legacy,
    /// A virtio device, but not a block device (its id; 0 = empty slot).
    NotBlock(u32),
    /// The device does not offer VIRTIO_F_VERSION_1.
    NoVersion1,
    /// The device refused our features (FEATURES_OK did not stick).
    FeaturesRefused,
    /// Queue 0 is missing or already in use.
    NoQueue,
    /// The DMA region is smaller than [`DMA_SIZE`] or not 4 KiB aligned.
    Dma,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NotVirtio(m) => write!(f, "no virtio-mmio device (magic {m:#x})"),
            InitError::Legacy => f.write_str(
                "legacy virtio-mmio transport: run QEMU with -global virtio-mmio.force-legacy=false",
            ),
            InitError::NotBlock(0) => f.write_str("the virtio-mmio slot is empty (device id 0)"),
            InitError::NotBlock(id) => write!(f, "virtio device {id} is not a block device"),
            InitError::NoVersion1 => f.write_str("the device does not offer VIRTIO_F_VERSION_1"),
            InitError::FeaturesRefused => f.write_str("the device refused the features"),
            InitError::NoQueue => f.write_str("request queue 0 is unavailable"),
            InitError::Dma => write!(f, "the DMA region must be 4 KiB aligned and {DMA_SIZE} bytes"),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    busy: bool,
    id: u32,
    count: u16,
}

/// The driver: a device, its queue, and the sDDF queue from the virtualiser.
pub struct VirtioBlk<R: Registers> {
    regs: R,
    dma: Dma,
    qsize: u16,
    slots: [Slot; MAX_SLOTS],
    /// Slots usable with this queue size (`qsize / CHAIN`, at most `MAX_SLOTS`).
    usable: usize,
    /// The free slots, a stack (`free[..free_len]`), lowest on top.
    free: [u8; MAX_SLOTS],
    free_len: usize,
    in_flight: usize,
    avail_idx: u16,
    last_used: u16,
    /// A FLUSH or BARRIER waiting for the requests before it.
    held: Option<BlkReq>,
    /// Whether `submit` left a request it could not take yet (no slot, no
    /// response room, a flush waiting): the next interrupt retries.
    waiting: bool,
    queue: BlkQueueHandle,
    virt_channel: u8,
    capacity: u64,
    features: u64,
}

impl<R: Registers> VirtioBlk<R> {
    /// Initialises the device (virtio 1.2 §3.1.1), sets up queue 0, and
    /// publishes the storage info to the virtualiser.
    pub fn new(
        mut regs: R,
        dma: Dma,
        queue: BlkQueueHandle,
        info: &StorageInfoHandle,
        virt_channel: u8,
    ) -> Result<Self, InitError> {
        let magic = regs.read(MAGIC);
        if magic != MAGIC_VALUE {
            return Err(InitError::NotVirtio(magic));
        }
        if regs.read(VERSION) != 2 {
            return Err(InitError::Legacy);
        }
        let id = regs.read(DEVICE_ID);
        if id != BLOCK_DEVICE {
            return Err(InitError::NotBlock(id));
        }
        if dma.region.len() < DMA_SIZE || dma.io_addr % 4096 != 0 {
            return Err(InitError::Dma);
        }
        regs.write(STATUS, 0);
        regs.write(STATUS, ACKNOWLEDGE);
        regs.write(STATUS, ACKNOWLEDGE | DRIVER);
        regs.write(DEVICE_FEATURES_SEL, 0);
        let mut offered = u64::from(regs.read(DEVICE_FEATURES));
        regs.write(DEVICE_FEATURES_SEL, 1);
        offered |= u64::from(regs.read(DEVICE_FEATURES)) << 32;
        if offered & F_VERSION_1 == 0 {
            return Err(InitError::NoVersion1);
        }
        let features = offered & (F_VERSION_1 | F_FLUSH | F_RO);
        regs.write(DRIVER_FEATURES_SEL, 0);
        regs.write(DRIVER_FEATURES, features as u32);
        regs.write(DRIVER_FEATURES_SEL, 1);
        regs.write(DRIVER_FEATURES, (features >> 32) as u32);
        regs.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if regs.read(STATUS) & FEATURES_OK == 0 {
            return Err(InitError::FeaturesRefused);
        }

        regs.write(QUEUE_SEL, 0);
        let max = regs.read(QUEUE_NUM_MAX).min(u32::from(MAX_QUEUE)) as u16;
        if max < CHAIN || regs.read(QUEUE_READY) != 0 {
            return Err(InitError::NoQueue);
        }
        // A power of two (split queues need not, but it keeps the maths easy).
        let qsize = 1u16 << (15 - max.leading_zeros());
        // Fresh rings: zero them (the region may hold a previous run's).
        let zeros = [0u8; 256];
        let mut at = 0;
        while at < DMA_SIZE {
            let n = (DMA_SIZE - at).min(zeros.len());
            let _ = dma.region.write(at, &zeros[..n]);
            at += n;
        }
        regs.write(QUEUE_NUM, u32::from(qsize));
        for (reg, offset) in
            [(QUEUE_DESC, DESC_AT), (QUEUE_DRIVER, AVAIL_AT), (QUEUE_DEVICE, USED_AT)]
        {
            let addr = dma.io_addr + offset as u64;
            regs.write(reg, addr as u32);
            regs.write(reg + 4, (addr >> 32) as u32);
        }
        regs.write(QUEUE_READY, 1);
        regs.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);

        let sectors = loop {
            let generation = regs.read(CONFIG_GENERATION);
            let low = u64::from(regs.read(CONFIG));
            let high = u64::from(regs.read(CONFIG + 4));
            if regs.read(CONFIG_GENERATION) == generation {
                break low | high << 32;
            }
        };
        let capacity = sectors / SECTORS_PER_BLOCK;
        let slots = usize::from(qsize / CHAIN).min(MAX_SLOTS);
        let mut storage = BlkStorageInfo::zeroed();
        storage.read_only = u8::from(features & F_RO != 0);
        storage.sector_size = 512;
        storage.block_size = 1;
        storage.queue_depth = slots as u16;
        storage.capacity = capacity;
        if info.write(&storage).is_ok() {
            info.set_ready(true);
        }
        log::info!(
            target: "blk",
            "virtio-blk: {} MiB{}{}, queue {qsize}",
            (capacity * BLK_TRANSFER_SIZE as u64) >> 20,
            if features & F_RO != 0 { ", read-only" } else { "" },
            if features & F_FLUSH != 0 { ", write cache (flush)" } else { "" },
        );
        Ok(VirtioBlk {
            regs,
            dma,
            qsize,
            slots: [Slot::default(); MAX_SLOTS],
            usable: slots,
            free: core::array::from_fn(|k| (slots.saturating_sub(1 + k)) as u8),
            free_len: slots,
            in_flight: 0,
            avail_idx: 0,
            last_used: 0,
            held: None,
            waiting: false,
            queue,
            virt_channel,
            capacity,
            features,
        })
    }

    /// Disk size in 4 KiB blocks.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The register block (tests drive their device model through it).
    pub fn regs(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Requests in flight on the device.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The virtualiser notified: take new requests.
    pub fn handle_notified(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let responded = self.submit();
        if responded {
            notify.add(self.virt_channel);
        }
        notify
    }

    /// The device interrupt: complete requests, then take more.
    pub fn handle_irq(&mut self) -> Notify {
        let status = self.regs.read(INTERRUPT_STATUS);
        self.regs.write(INTERRUPT_ACK, status);
        let mut responded = self.complete();
        // New requests come with a notification (handle_notified): here only
        // those that waited for what the completions freed.
        if self.waiting {
            responded |= self.submit();
        }
        let mut notify = Notify::NONE;
        if responded {
            notify.add(self.virt_channel);
        }
        notify
    }

    /// Responses waiting to be sent, counting those owed for work in flight.
    fn owed(&self) -> u32 {
        self.in_flight as u32 + u32::from(self.held.is_some())
    }

    /// Moves requests from the sDDF queue to the device. Returns whether any
    /// response was sent.
    fn submit(&mut self) -> bool {
        let mut responded = false;
        let mut added = false;
        // Responses that fit beyond those owed, read once (the virtualiser only frees more):
        // each request taken uses one, whether answered at once, held or started.
        let mut room: Option<u32> = None;
        self.waiting = loop {
            if let Some(held) = self.held {
                if self.in_flight > 0 {
                    break true; // the flush waits for the requests before it
                }
                self.held = None;
                if self.features & F_FLUSH == 0 {
                    responded |= self.respond(BlkResp::new(BlkRespStatus::Ok, 0, held.id));
                    continue;
                }
                self.start(held, T_FLUSH, 0);
                added = true;
                continue;
            }
            // Take a request only if a slot is free and its response will fit.
            if self.in_flight >= self.usable {
                break true;
            }
            let Some(req) = self.queue.peek_req() else { break false };
            let fits = room.unwrap_or_else(|| self.queue.resp_free().saturating_sub(self.owed()));
            let Some(left) = fits.checked_sub(1) else { break true };
            room = Some(left);
            self.queue.skip_req();
            match self.check(&req) {
                Err(status) => {
                    responded |= self.respond(BlkResp::new(status, 0, req.id));
                }
                Ok(BlkReqCode::Flush | BlkReqCode::Barrier) => self.held = Some(req),
                Ok(code) => {
                    let kind = if code == BlkReqCode::Read { T_IN } else { T_OUT };
                    self.start(req, kind, req.block_number * SECTORS_PER_BLOCK);
                    added = true;
                }
            }
        };
        if added {
            fence(Ordering::SeqCst);
            let flags = self.dma.region.load::<u16>(USED_AT).unwrap_or(0);
            if flags & USED_F_NO_NOTIFY == 0 {
                self.regs.write(QUEUE_NOTIFY, 0);
            }
        }
        responded
    }

    fn check(&self, req: &BlkReq) -> Result<BlkReqCode, BlkRespStatus> {
        let code = req.code().ok_or(BlkRespStatus::ErrInvalidParam)?;
        if matches!(code, BlkReqCode::Read | BlkReqCode::Write) {
            let end = req.block_number.checked_add(u64::from(req.count));
            if req.count == 0 || end.is_none_or(|end| end > self.capacity) {
                return Err(out_of_range(req));
            }
        }
        Ok(code)
    }

    /// Puts a request on the device queue (a free slot exists).
    fn start(&mut self, req: BlkReq, kind: u32, sector: u64) {
        let Some(top) = self.free_len.checked_sub(1) else { return };
        let slot = usize::from(self.free[top]);
        if slot >= self.usable {
            return; // cannot happen: only usable slots are on the stack
        }
        self.free_len = top;
        let cell = CELLS_AT + slot * CELL;
        let r = &self.dma.region;
        let cell_io = self.dma.io_addr + cell as u64;
        // Header: type, reserved (0), sector; then the status byte the device
        // overwrites (0xff until it does) and the cell's padding.
        let cell_words = [u64::from(kind).to_le(), sector.to_le(), 0xffu64.to_le()];
        let mut ok = r.store_array(cell, cell_words).is_ok();
        let head = slot as u16 * CHAIN;
        let header = desc(head, cell_io, 16, DESC_F_NEXT);
        let status_io = cell_io + 16;
        let d = DESC_AT + 16 * usize::from(head);
        if kind == T_FLUSH {
            let status = desc(head + 1, status_io, 1, DESC_F_WRITE);
            ok &= r.store_array(d, [header[0], header[1], status[0], status[1]]).is_ok();
        } else {
            let data_len = u32::from(req.count) * BLK_TRANSFER_SIZE as u32;
            let data_flags = if kind == T_IN { DESC_F_WRITE } else { 0 };
            let data = desc(head + 1, req.io_or_offset, data_len, data_flags | DESC_F_NEXT);
            let status = desc(head + 2, status_io, 1, DESC_F_WRITE);
            let chain = [header[0], header[1], data[0], data[1], status[0], status[1]];
            ok &= r.store_array(d, chain).is_ok();
        }
        let ring = AVAIL_AT + 4 + 2 * usize::from(self.avail_idx & (self.qsize - 1));
        ok &= r.store(ring, head.to_le()).is_ok();
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        ok &= r.store(AVAIL_AT + 2, self.avail_idx.to_le()).is_ok();
        debug_assert!(ok, "the DMA layout fits DMA_SIZE");
        self.slots[slot] = Slot { busy: true, id: req.id, count: req.count };
        self.in_flight += 1;
    }

    /// Takes finished requests off the used ring. Returns whether any
    /// response was sent.
    fn complete(&mut self) -> bool {
        let mut responded = false;
        let used_idx = self.dma.region.load::<u16>(USED_AT + 2).unwrap_or(self.last_used);
        fence(Ordering::Acquire);
        while self.last_used != used_idx {
            let elem = USED_AT + 4 + 8 * usize::from(self.last_used & (self.qsize - 1));
            self.last_used = self.last_used.wrapping_add(1);
            let head = self.dma.region.load::<u32>(elem).unwrap_or(u32::MAX);
            let slot = (head / u32::from(CHAIN)) as usize;
            if head % u32::from(CHAIN) != 0 || !self.slots.get(slot).is_some_and(|s| s.busy) {
                unknown_descriptor(head);
                continue;
            }
            let s = core::mem::take(&mut self.slots[slot]);
            self.in_flight -= 1;
            // It was busy, so it is not on the stack: there is room.
            if let Some(top) = self.free.get_mut(self.free_len) {
                *top = slot as u8;
                self.free_len += 1;
            }
            let status = self.dma.region.load::<u8>(CELLS_AT + slot * CELL + 16).unwrap_or(S_IOERR);
            let resp = match status {
                S_OK => BlkResp::new(BlkRespStatus::Ok, s.count, s.id),
                S_UNSUPP => BlkResp::new(BlkRespStatus::ErrUnspec, 0, s.id),
                // IOERR, or a status the device never wrote (a chain it
                // could not use).
                _ => BlkResp::new(BlkRespStatus::ErrIo, 0, s.id),
            };
            responded |= self.respond(resp);
        }
        responded
    }

    fn respond(&mut self, resp: BlkResp) -> bool {
        if self.queue.enqueue_resp(resp).is_err() {
            // Cannot happen: requests are only taken with room for their
            // responses. Say so rather than lose it silently.
            response_lost(resp.id);
            return false;
        }
        true
    }
}

/// Descriptor `index` (virtio 1.2 §2.7.5) as two little-endian words: `addr`,
/// then `len | flags << 32 | next << 48` with `next = index + 1` (used only
/// with `DESC_F_NEXT`).
fn desc(index: u16, addr: u64, len: u32, flags: u16) -> [u64; 2] {
    let rest = u64::from(len) | u64::from(flags) << 32 | u64::from(index + 1) << 48;
    [addr.to_le(), rest.to_le()]
}

// The log lines of the request path, out of line so that the hot code does
// not set up their arguments.

/// Logs a request outside the disk; its answer's status.
#[cold]
#[inline(never)]
fn out_of_range(req: &BlkReq) -> BlkRespStatus {
    log::warn!(target: "blk", "request {} out of range: {} blocks at {}", req.id, req.count, req.block_number);
    BlkRespStatus::ErrInvalidParam
}

#[cold]
#[inline(never)]
fn unknown_descriptor(head: u32) {
    log::error!(target: "blk", "device returned unknown descriptor {head}");
}

#[cold]
#[inline(never)]
fn response_lost(id: u32) {
    log::error!(target: "blk", "response queue full: response {id} lost");
}

#[cfg(test)]
mod tests {
    //! The driver against this project's virtio-blk device model (the
    //! `virtio` crate), which checks every ring access against virtio 1.2.
    use super::*;
    use crate::blk::testing::{Device, Disk};
    use sddf_bindings::SharedRegion;
    use std::vec;
    use std::vec::Vec;

    const DMA_IO: u64 = 0x1000_0000;
    const DATA_IO: u64 = 0x2000_0000;
    const DATA_SIZE: usize = 64 * 4096;
    const DISK_BLOCKS: u64 = 256;

    struct Rig {
        drv: VirtioBlk<Device>,
        virt: BlkQueueHandle,
        data: SharedRegion,
        info: StorageInfoHandle,
    }

    fn rig() -> Rig {
        let dma = SharedRegion::leak_zeroed(DMA_SIZE);
        let data = SharedRegion::leak_zeroed(DATA_SIZE);
        let disk = Disk::new(vec![0; DISK_BLOCKS as usize * 4096]);
        let device = Device::new(disk, vec![(DMA_IO, dma.clone()), (DATA_IO, data.clone())]);
        let (req, resp) = (SharedRegion::leak_zeroed(4096), SharedRegion::leak_zeroed(4096));
        let ours = BlkQueueHandle::new(req.clone(), resp.clone(), 64).unwrap();
        let virt = BlkQueueHandle::new(req, resp, 64).unwrap();
        let info_region = SharedRegion::leak_zeroed(4096);
        let info = StorageInfoHandle::new(info_region.clone()).unwrap();
        let drv = VirtioBlk::new(device, Dma { region: dma, io_addr: DMA_IO }, ours, &info, 5)
            .expect("the device comes up");
        Rig { drv, virt, data, info: StorageInfoHandle::new(info_region).unwrap() }
    }

    impl Rig {
        /// Runs device and driver until `n` responses arrived.
        fn responses(&mut self, n: usize) -> Vec<BlkResp> {
            let mut out = Vec::new();
            let notify = self.drv.handle_notified();
            assert!(notify.is_empty() || notify.contains(5));
            for _ in 0..10_000 {
                while let Some(r) = self.virt.dequeue_resp() {
                    out.push(r);
                }
                if out.len() >= n {
                    return out;
                }
                if self.drv.regs().step() {
                    let notify = self.drv.handle_irq();
                    assert!(notify.is_empty() || notify.contains(5));
                }
            }
            panic!("only {} of {n} responses", out.len());
        }
    }

    #[test]
    fn publishes_storage_info() {
        let r = rig();
        let info = r.info.read().expect("ready");
        assert_eq!(info.capacity, DISK_BLOCKS);
        assert_eq!(info.sector_size, 512);
        assert!(!info.is_read_only());
        assert_eq!(r.drv.capacity(), DISK_BLOCKS);
    }

    #[test]
    fn writes_then_reads_back_exactly_with_many_in_flight() {
        let mut r = rig();
        // 40 writes of 1..=3 blocks at scattered places: more than the
        // driver's slots, so some wait in the sDDF queue.
        let mut expected = vec![0u8; DISK_BLOCKS as usize * 4096];
        let mut offset = 0usize;
        let mut reqs = Vec::new();
        for i in 0..40u32 {
            let count = 1 + (i % 3) as u16;
            let block = u64::from(i * 6 % 240);
            let len = usize::from(count) * 4096;
            if offset + len > DATA_SIZE {
                offset = 0;
            }
            let bytes: Vec<u8> = (0..len).map(|k| (k as u32 * 7 + i * 13) as u8).collect();
            reqs.push((block, count, offset, bytes));
            offset += len;
        }
        // Writes are issued in batches whose data cells do not overlap.
        for batch in reqs.chunks(8) {
            let mut used = 0;
            for (k, (block, count, _, bytes)) in batch.iter().enumerate() {
                r.data.write(used, bytes).unwrap();
                let req =
                    BlkReq::new(BlkReqCode::Write, DATA_IO + used as u64, *block, *count, k as u32);
                r.virt.enqueue_req(req).unwrap();
                used += bytes.len();
            }
            let resps = r.responses(batch.len());
            assert!(resps.iter().all(|x| x.status() == Some(BlkRespStatus::Ok)));
            for (block, _, _, bytes) in batch {
                let at = *block as usize * 4096;
                expected[at..at + bytes.len()].copy_from_slice(bytes);
            }
            // Read every written range back into the data region and compare.
            for (k, (block, count, _, _)) in batch.iter().enumerate() {
                let req = BlkReq::new(BlkReqCode::Read, DATA_IO, *block, *count, 100 + k as u32);
                r.virt.enqueue_req(req).unwrap();
                let resp = r.responses(1);
                assert_eq!(resp[0].status(), Some(BlkRespStatus::Ok));
                assert_eq!(resp[0].success_count, *count);
                let at = *block as usize * 4096;
                let mut got = vec![0u8; usize::from(*count) * 4096];
                r.data.read(0, &mut got).unwrap();
                assert_eq!(got, expected[at..at + got.len()]);
            }
        }
        assert_eq!(r.drv.in_flight(), 0);
        assert_eq!(r.drv.regs().t.device().backend().disk, expected);
    }

    #[test]
    fn flush_waits_for_earlier_writes_and_reaches_the_device() {
        let mut r = rig();
        r.data.write(0, &[0xaa; 4096]).unwrap();
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Write, DATA_IO, 3, 1, 1)).unwrap();
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Flush, 0, 0, 0, 2)).unwrap();
        let resps = r.responses(2);
        assert_eq!(resps.iter().map(|x| x.id).collect::<Vec<_>>(), [1, 2], "flush after write");
        assert!(resps.iter().all(|x| x.status() == Some(BlkRespStatus::Ok)));
        assert_eq!(r.drv.regs().t.device().backend().flushes, 1);
    }

    #[test]
    fn bad_requests_get_errors_and_the_driver_goes_on() {
        let mut r = rig();
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Read, DATA_IO, DISK_BLOCKS, 1, 1)).unwrap();
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Read, DATA_IO, u64::MAX, 2, 2)).unwrap();
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Write, DATA_IO, 0, 0, 3)).unwrap();
        r.virt.enqueue_req(BlkReq { code: 9, id: 4, ..BlkReq::default() }).unwrap();
        // An address the device cannot reach: the device reports an error.
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Read, 0xdead_0000, 0, 1, 5)).unwrap();
        r.virt.enqueue_req(BlkReq::new(BlkReqCode::Read, DATA_IO, 0, 1, 6)).unwrap();
        let mut resps = r.responses(6);
        resps.sort_by_key(|x| x.id);
        let statuses: Vec<_> = resps.iter().map(|x| x.status().unwrap()).collect();
        use BlkRespStatus::*;
        assert_eq!(
            statuses,
            [ErrInvalidParam, ErrInvalidParam, ErrInvalidParam, ErrInvalidParam, ErrIo, Ok]
        );
    }

    #[test]
    fn refuses_what_is_not_a_modern_block_device() {
        let dma = || Dma { region: SharedRegion::leak_zeroed(DMA_SIZE), io_addr: DMA_IO };
        let queue = || {
            BlkQueueHandle::new(
                SharedRegion::leak_zeroed(4096),
                SharedRegion::leak_zeroed(4096),
                64,
            )
            .unwrap()
        };
        let info = StorageInfoHandle::new(SharedRegion::leak_zeroed(4096)).unwrap();
        let empty = SharedRegion::leak_zeroed(0x200);
        assert_eq!(
            VirtioBlk::new(empty.clone(), dma(), queue(), &info, 0).err(),
            Some(InitError::NotVirtio(0))
        );
        empty.store(0, MAGIC_VALUE).unwrap();
        empty.store(4, 1u32).unwrap();
        assert_eq!(
            VirtioBlk::new(empty.clone(), dma(), queue(), &info, 0).err(),
            Some(InitError::Legacy)
        );
        empty.store(4, 2u32).unwrap();
        assert_eq!(
            VirtioBlk::new(empty, dma(), queue(), &info, 0).err(),
            Some(InitError::NotBlock(0))
        );
        assert!(!info.is_ready());
    }
}
