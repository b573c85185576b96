//! Cross-check against an independent guest driver: the `virtio-drivers` crate drives our
//! virtio-MMIO devices (console, block, sound).
//!
//! - Its `Hal` allocates DMA memory from a fake guest RAM (a page-aligned host allocation
//!   standing at guest-physical `RAM_BASE`), and `share` copies driver buffers into bounce
//!   pages of that RAM, so the device only ever sees guest-physical addresses inside it.
//! - Its `Transport` is implemented here by forwarding every register access to our
//!   `MmioTransport::read` / `write`. After a QueueNotify write the device and the fake
//!   backend are serviced synchronously, so the driver's busy-wait finds the used buffer.
//! - vsock: two of its socket drivers, each on its own device, the devices joined by
//!   `virtio::testing::vsock`'s loopback wire, talk to each other.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr::{self, NonNull};
use std::rc::Rc;

use virtio::block::{
    BackendBusy, BlockBackend, BlockDevice, BlockInfo, BlockOp, BufferId, BufferRange,
};
use virtio::block::{BACKEND_BLOCK, SECTORS_PER_BLOCK};
use virtio::console::{Console, SerialBackend};
use virtio::features::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};
use virtio::mmio::*;
use virtio::sound::{
    BackendBusy as SoundBusy, BackendStatus, BufferId as SoundBufferId,
    BufferRange as SoundBufferRange, Completion, Direction, PcmCommand, PcmDone, PcmParams,
    SoundBackend, SoundDevice, StreamInfo, PCM_BUFFER_BYTES,
};
use virtio::testing::vsock::{VsockWire, WireEnd};
use virtio::vsock::VsockDevice;
use virtio::{GuestMemory, MemoryError, VirtioDevice};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::device::socket::{
    DisconnectReason, SocketError, VirtIOSocket, VsockAddr, VsockConnectionManager, VsockEvent,
    VsockEventType,
};
use virtio_drivers::device::sound::{
    PcmFeatures, PcmFormat, PcmFormats, PcmRate, PcmRates, VirtIOSound,
};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes};

// ---------------------------------------------------------------------------------------
// Fake guest RAM (one per test thread) and the driver's Hal over it.

const RAM_BASE: u64 = 0x4000_0000;
const RAM_PAGES: usize = 4096;

struct Ram {
    ptr: NonNull<u8>,
    layout: Layout,
    used: Vec<bool>,
}

impl Ram {
    fn new() -> Ram {
        let layout = Layout::from_size_align(RAM_PAGES * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).expect("fake guest RAM allocation");
        Ram { ptr, layout, used: vec![false; RAM_PAGES] }
    }

    /// First fit of `n` free pages; returns the first page index.
    fn alloc(&mut self, n: usize) -> usize {
        let n = n.max(1);
        let first = (0..=RAM_PAGES - n)
            .find(|&p| self.used[p..p + n].iter().all(|u| !u))
            .expect("fake guest RAM exhausted");
        self.used[first..first + n].fill(true);
        first
    }

    fn free(&mut self, first: usize, n: usize) {
        let n = n.max(1);
        assert!(self.used[first..first + n].iter().all(|&u| u), "freeing free pages");
        self.used[first..first + n].fill(false);
    }

    /// Byte offset of `[gpa, gpa + len)` in the RAM, if it is inside.
    fn offset(&self, gpa: u64, len: usize) -> Option<usize> {
        let off = usize::try_from(gpa.checked_sub(RAM_BASE)?).ok()?;
        (off.checked_add(len)? <= self.layout.size()).then_some(off)
    }

    fn page_of(paddr: PhysAddr) -> usize {
        ((paddr - RAM_BASE) / PAGE_SIZE as u64) as usize
    }

    fn host(&self, page: usize) -> NonNull<u8> {
        // SAFETY: `page < RAM_PAGES`, so the offset stays inside the allocation.
        unsafe { self.ptr.add(page * PAGE_SIZE) }
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        // SAFETY: allocated in `Ram::new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

thread_local! {
    static RAM: RefCell<Option<Ram>> = const { RefCell::new(None) };
}

fn with_ram<R>(f: impl FnOnce(&mut Ram) -> R) -> R {
    RAM.with(|r| f(r.borrow_mut().get_or_insert_with(Ram::new)))
}

/// Starts a test with empty guest RAM.
fn fresh_ram() {
    RAM.with(|r| *r.borrow_mut() = Some(Ram::new()));
}

/// The device's view of the fake RAM.
struct RamView;

impl GuestMemory for RamView {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        with_ram(|r| {
            let err = MemoryError::OutOfRange { gpa, len: buf.len() as u64 };
            let off = r.offset(gpa, buf.len()).ok_or(err)?;
            // SAFETY: `[off, off + len)` is inside the RAM allocation; this thread is the only
            // user and the driver holds only raw pointers into it, so no reference aliases.
            unsafe {
                ptr::copy_nonoverlapping(r.ptr.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
            };
            Ok(())
        })
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        with_ram(|r| {
            let err = MemoryError::OutOfRange { gpa, len: data.len() as u64 };
            let off = r.offset(gpa, data.len()).ok_or(err)?;
            // SAFETY: as in `read`.
            unsafe { ptr::copy_nonoverlapping(data.as_ptr(), r.ptr.as_ptr().add(off), data.len()) };
            Ok(())
        })
    }
}

struct TestHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned pages of the fake RAM that no other
// allocation overlaps until `dma_dealloc`; `share` gives the device a bounce copy inside the
// fake RAM and `unshare` copies it back and frees it.
unsafe impl Hal for TestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        with_ram(|r| {
            let first = r.alloc(pages);
            let host = r.host(first);
            // SAFETY: the pages are inside the allocation and now owned by this allocation.
            unsafe { ptr::write_bytes(host.as_ptr(), 0, pages * PAGE_SIZE) };
            (RAM_BASE + (first * PAGE_SIZE) as u64, host)
        })
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        with_ram(|r| r.free(Ram::page_of(paddr), pages));
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the test transport forwards register accesses; nothing is mapped")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        with_ram(|r| {
            let first = r.alloc(len.div_ceil(PAGE_SIZE));
            let host = r.host(first);
            // SAFETY: the bounce pages are inside the RAM and owned by this share; `buffer` is
            // valid for `len` bytes (the caller's promise) and does not overlap them.
            unsafe {
                ptr::write_bytes(host.as_ptr(), 0, len);
                if direction != BufferDirection::DeviceToDriver {
                    ptr::copy_nonoverlapping(buffer.as_ptr().cast::<u8>(), host.as_ptr(), len);
                }
            }
            RAM_BASE + (first * PAGE_SIZE) as u64
        })
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let len = buffer.len();
        with_ram(|r| {
            let first = Ram::page_of(paddr);
            if direction != BufferDirection::DriverToDevice {
                // SAFETY: `paddr` came from `share` for this buffer, so the bounce pages hold
                // `len` bytes; `buffer` is valid for writes (the caller's promise).
                unsafe {
                    ptr::copy_nonoverlapping(r.host(first).as_ptr(), buffer.as_ptr().cast(), len)
                };
            }
            r.free(first, len.div_ceil(PAGE_SIZE));
        });
    }
}

// ---------------------------------------------------------------------------------------
// The driver's Transport, forwarding to our MmioTransport.

type Shared<D> = Rc<RefCell<MmioTransport<D>>>;

struct TestTransport<D: VirtioDevice> {
    mmio: Shared<D>,
    /// Runs the device and its backend until idle; returns the interrupts raised.
    service: fn(&mut MmioTransport<D>) -> Interrupt,
    /// Service the device synchronously on QueueNotify (shared so a test can turn it off
    /// after the driver took the transport).
    auto: Rc<Cell<bool>>,
    /// Device features hidden from the driver.
    hidden: u64,
    interrupts: Rc<RefCell<u32>>,
}

impl<D: VirtioDevice> TestTransport<D> {
    fn new(mmio: &Shared<D>, service: fn(&mut MmioTransport<D>) -> Interrupt) -> Self {
        TestTransport {
            mmio: mmio.clone(),
            service,
            auto: Rc::new(Cell::new(true)),
            hidden: 0,
            interrupts: Rc::default(),
        }
    }

    fn r(&self, offset: u64) -> u32 {
        self.mmio.borrow().read(offset, 4) as u32
    }

    fn w(&mut self, offset: u64, value: u32) {
        let irq = self.mmio.borrow_mut().write(&mut RamView, offset, 4, u64::from(value));
        self.count(irq);
    }

    fn count(&self, irq: Interrupt) {
        if irq.is_raised() {
            *self.interrupts.borrow_mut() += 1;
        }
    }

    fn w64(&mut self, low: u64, value: u64) {
        self.w(low, value as u32);
        self.w(low + 4, (value >> 32) as u32);
    }
}

impl<D: VirtioDevice> Transport for TestTransport<D> {
    fn device_type(&self) -> DeviceType {
        DeviceType::try_from(self.r(DEVICE_ID)).unwrap()
    }

    fn read_device_features(&mut self) -> u64 {
        self.w(DEVICE_FEATURES_SEL, 0);
        let low = u64::from(self.r(DEVICE_FEATURES));
        self.w(DEVICE_FEATURES_SEL, 1);
        let high = u64::from(self.r(DEVICE_FEATURES));
        (high << 32 | low) & !self.hidden
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.w(DRIVER_FEATURES_SEL, 0);
        self.w(DRIVER_FEATURES, driver_features as u32);
        self.w(DRIVER_FEATURES_SEL, 1);
        self.w(DRIVER_FEATURES, (driver_features >> 32) as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.w(QUEUE_SEL, u32::from(queue));
        self.r(QUEUE_NUM_MAX)
    }

    fn notify(&mut self, queue: u16) {
        self.w(QUEUE_NOTIFY, u32::from(queue));
        if self.auto.get() {
            let irq = (self.service)(&mut self.mmio.borrow_mut());
            self.count(irq);
        }
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.r(STATUS))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.w(STATUS, status.bits());
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}

    fn requires_legacy_layout(&self) -> bool {
        false
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.w(QUEUE_SEL, u32::from(queue));
        self.w(QUEUE_NUM, size);
        self.w64(QUEUE_DESC_LOW, descriptors);
        self.w64(QUEUE_DRIVER_LOW, driver_area);
        self.w64(QUEUE_DEVICE_LOW, device_area);
        self.w(QUEUE_READY, 1);
        assert_eq!(self.r(QUEUE_READY), 1, "queue {queue} refused");
    }

    fn queue_unset(&mut self, queue: u16) {
        // Dropping the driver: a real one would reset the device first.
        self.w(QUEUE_SEL, u32::from(queue));
        self.w(STATUS, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.w(QUEUE_SEL, u32::from(queue));
        self.r(QUEUE_READY) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let status = self.r(INTERRUPT_STATUS);
        self.w(INTERRUPT_ACK, status);
        InterruptStatus::from_bits_retain(status)
    }

    fn read_config_generation(&self) -> u32 {
        self.r(CONFIG_GENERATION)
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        let size = size_of::<T>();
        assert!(matches!(size, 1 | 2 | 4 | 8), "config field of {size} bytes");
        let v = self.mmio.borrow().read(CONFIG + offset as u64, size as u8);
        Ok(T::read_from_bytes(&v.to_le_bytes()[..size]).unwrap())
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        let mut bytes = [0u8; 8];
        let b = value.as_bytes();
        bytes[..b.len()].copy_from_slice(b);
        let v = u64::from_le_bytes(bytes);
        self.mmio.borrow_mut().write(&mut RamView, CONFIG + offset as u64, b.len() as u8, v);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Console over a loopback backend that takes 3 bytes per wake-up.

#[derive(Default)]
struct Loopback {
    wire: VecDeque<u8>,
    budget: usize,
    sent: Vec<u8>,
    flushes: usize,
}

impl SerialBackend for Loopback {
    fn tx_space(&self) -> usize {
        self.budget
    }
    fn tx(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.budget);
        self.wire.extend(&data[..n]);
        self.sent.extend_from_slice(&data[..n]);
        self.budget -= n;
        n
    }
    fn tx_flush(&mut self) {
        self.flushes += 1;
    }
    fn rx(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.wire.len());
        for (b, w) in buf.iter_mut().zip(self.wire.drain(..n)) {
            *b = w;
        }
        n
    }
}

type ConsoleT = MmioTransport<Console<Loopback>>;

/// The backend frees 3 bytes of space per wake-up; the VMM calls `process` each time.
fn service_console(t: &mut ConsoleT) -> Interrupt {
    let mut irq = Interrupt::NONE;
    for _ in 0..1_000_000 {
        t.device_mut().backend_mut().budget = 3;
        irq |= t.process(&mut RamView);
        if !t.device().tx_pending() {
            break;
        }
    }
    irq
}

fn console_round_trip(hidden: u64) {
    fresh_ram();
    let dev = Console::new(Loopback::default());
    let mmio: Shared<_> = Rc::new(RefCell::new(MmioTransport::new(dev)));
    let mut transport = TestTransport::new(&mmio, service_console);
    transport.hidden = hidden;
    let interrupts = transport.interrupts.clone();
    let mut console = VirtIOConsole::<TestHal, _>::new(transport).unwrap();
    let msg: Vec<u8> = (0..9000u32).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
    console.send_bytes(&msg[..1]).unwrap();
    console.send_bytes(&msg[1..5000]).unwrap();
    for &b in &msg[5000..5010] {
        console.send(b).unwrap();
    }
    console.send_bytes(&msg[5010..]).unwrap();
    assert!(mmio.borrow().device().backend().sent == msg, "TX exact, in order");
    assert!(mmio.borrow().device().backend().flushes > 3000, "3 bytes per backend wake-up");
    assert_ring_features(mmio.borrow().driver_features(), hidden);
    let mut got = Vec::new();
    for _ in 0..100_000 {
        if got.len() == msg.len() {
            break;
        }
        match console.recv(true).unwrap() {
            Some(b) => got.push(b),
            None => {
                let irq = mmio.borrow_mut().process(&mut RamView);
                if irq.is_raised() {
                    console.ack_interrupt().unwrap();
                }
            }
        }
    }
    assert!(got == msg, "RX exact: {} of {} bytes", got.len(), msg.len());
    assert!(console.recv(true).unwrap().is_none());
    assert!(*interrupts.borrow() > 0, "used buffers were signalled");
}

/// The driver negotiated exactly the ring features that were not hidden from it.
fn assert_ring_features(negotiated: u64, hidden: u64) {
    let ring = VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC;
    assert_eq!(negotiated & ring, ring & !hidden);
}

#[test]
fn console_round_trip_with_event_idx_and_indirect() {
    console_round_trip(0);
}

#[test]
fn console_round_trip_without_ring_features() {
    console_round_trip(VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC);
}

// ---------------------------------------------------------------------------------------
// Block device over a fake 4 KiB-block backend holding a Vec disk.

type Op = (BlockOp, u64, u32, Option<BufferId>, u32);

struct FakeDisk {
    disk: Vec<u8>,
    read_only: bool,
    buffers: Vec<Option<Vec<u8>>>,
    pending: Vec<Op>,
    max_pending: usize,
    done: VecDeque<(u32, bool)>,
    rng: fastrand::Rng,
}

impl FakeDisk {
    fn new(blocks: u64) -> FakeDisk {
        let disk = (0..blocks * BACKEND_BLOCK).map(|i| (i % 253) as u8).collect();
        FakeDisk {
            disk,
            read_only: false,
            buffers: Vec::new(),
            pending: Vec::new(),
            max_pending: 0,
            done: VecDeque::new(),
            rng: fastrand::Rng::with_seed(7),
        }
    }

    /// Executes one pending operation, picked at random (completions come out of order).
    fn execute_one(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let i = self.rng.usize(..self.pending.len());
        let (op, block, count, buf, tag) = self.pending.swap_remove(i);
        let (start, len) = ((block * BACKEND_BLOCK) as usize, count as usize * 4096);
        if op != BlockOp::Flush {
            let cells = self.buffers[buf.unwrap().0 as usize].as_mut().unwrap();
            match op {
                BlockOp::Read => cells[..len].copy_from_slice(&self.disk[start..start + len]),
                _ => self.disk[start..start + len].copy_from_slice(&cells[..len]),
            }
        }
        self.done.push_back((tag, true));
    }
}

impl BlockBackend for FakeDisk {
    fn info(&self) -> Option<BlockInfo> {
        let capacity = self.disk.len() as u64 / BACKEND_BLOCK;
        Some(BlockInfo { capacity, read_only: self.read_only, optimal_blocks: 1 })
    }
    fn alloc(&mut self, blocks: u32) -> Option<BufferId> {
        let live = self.buffers.iter().flatten().count();
        if live >= 8 {
            return None;
        }
        self.buffers.push(Some(vec![0; blocks as usize * 4096]));
        Some(BufferId(self.buffers.len() as u32 - 1))
    }
    fn free(&mut self, buf: BufferId) {
        self.buffers[buf.0 as usize].take().expect("double free");
    }
    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let cells = self.buffers[buf.0 as usize].as_ref().unwrap();
        dst.copy_from_slice(cells.get(at..at + dst.len()).ok_or(BufferRange)?);
        Ok(())
    }
    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        let cells = self.buffers[buf.0 as usize].as_mut().unwrap();
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
        if self.pending.len() >= 4 {
            return Err(BackendBusy);
        }
        self.pending.push((op, block, count, buf, tag));
        self.max_pending = self.max_pending.max(self.pending.len());
        Ok(())
    }
    fn complete(&mut self) -> Option<(u32, bool)> {
        self.done.pop_front()
    }
    fn notify(&mut self) {}
}

type BlockT = MmioTransport<BlockDevice<FakeDisk>>;

/// Runs the backend (a random operation at a time) and the device until both are idle.
fn service_block(t: &mut BlockT) -> Interrupt {
    let mut irq = Interrupt::NONE;
    for _ in 0..100_000 {
        irq |= t.process(&mut RamView);
        let dev = t.device_mut();
        if dev.in_flight() == 0 && dev.backend().pending.is_empty() {
            break;
        }
        dev.backend_mut().execute_one();
    }
    irq
}

const DISK_BLOCKS: u64 = 64;

type Blk = VirtIOBlk<TestHal, TestTransport<BlockDevice<FakeDisk>>>;

/// A driven block device: the driver, our transport, and the auto-service switch.
fn block_device(hidden: u64) -> (Blk, Shared<BlockDevice<FakeDisk>>, Rc<Cell<bool>>) {
    fresh_ram();
    let dev = BlockDevice::new(FakeDisk::new(DISK_BLOCKS));
    let mmio: Shared<_> = Rc::new(RefCell::new(MmioTransport::new(dev)));
    let mut transport = TestTransport::new(&mmio, service_block);
    transport.hidden = hidden;
    let auto = transport.auto.clone();
    (VirtIOBlk::new(transport).unwrap(), mmio, auto)
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
}

fn block_round_trip(hidden: u64) {
    let (mut blk, mmio, _) = block_device(hidden);
    assert_eq!(blk.capacity(), DISK_BLOCKS * SECTORS_PER_BLOCK);
    assert!(!blk.readonly());
    let mut reference = mmio.borrow().device().backend().disk.clone();
    let writes: [(usize, usize); 6] = [(0, 1), (3, 5), (8, 8), (13, 130), (511, 1), (200, 3)];
    for (i, &(sector, count)) in writes.iter().enumerate() {
        let data = pattern(i as u8, count * SECTOR_SIZE);
        blk.write_blocks(sector, &data).unwrap();
        reference[sector * SECTOR_SIZE..(sector + count) * SECTOR_SIZE].copy_from_slice(&data);
        let mut back = vec![0u8; data.len()];
        blk.read_blocks(sector, &mut back).unwrap();
        assert!(back == data, "write then read of {count} sectors at {sector}");
    }
    for &(sector, count) in &[(0usize, 16usize), (1, 1), (7, 9), (2, 200), (505, 7)] {
        let mut buf = vec![0u8; count * SECTOR_SIZE];
        blk.read_blocks(sector, &mut buf).unwrap();
        assert!(buf[..] == reference[sector * SECTOR_SIZE..(sector + count) * SECTOR_SIZE]);
    }
    blk.flush().unwrap();
    let mut id = [0u8; 20];
    let n = blk.device_id(&mut id).unwrap();
    assert_eq!(&id[..n], b"mkvm-virtio-blk");
    let mut past = [0u8; 1024];
    assert!(blk.read_blocks(511, &mut past).is_err(), "past the end");
    assert!(mmio.borrow().device().backend().disk == reference, "backend disk matches");
    assert_ring_features(mmio.borrow().driver_features(), hidden);
}

#[test]
fn block_round_trip_with_event_idx_and_indirect() {
    block_round_trip(0);
}

#[test]
fn block_round_trip_without_ring_features() {
    block_round_trip(VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC);
}

#[test]
fn block_requests_in_flight_complete_out_of_order() {
    let (mut blk, mmio, auto) = block_device(0);
    let mut reference = mmio.borrow().device().backend().disk.clone();
    // Overlapping, unaligned writes plus some far apart, all submitted before the backend
    // runs anything.
    let layout = [(1usize, 3usize), (2, 9), (40, 8), (9, 1), (0, 16), (100, 3), (15, 2), (6, 4)];
    let writes: Vec<(usize, Vec<u8>)> = layout
        .iter()
        .enumerate()
        .map(|(i, &(s, c))| (s, pattern(100 + i as u8, c * SECTOR_SIZE)))
        .collect();
    let mut reqs: Vec<BlkReq> = (0..writes.len()).map(|_| BlkReq::default()).collect();
    let mut resps: Vec<BlkResp> = (0..writes.len()).map(|_| BlkResp::new_zeroed()).collect();
    let mut tokens = Vec::new();
    auto.set(false);
    for (i, (sector, data)) in writes.iter().enumerate() {
        reference[sector * SECTOR_SIZE..sector * SECTOR_SIZE + data.len()].copy_from_slice(data);
        // SAFETY: `reqs[i]`, `data` and `resps[i]` are not touched again until the request
        // is completed below, and they outlive it.
        let token = unsafe { blk.write_blocks_nb(*sector, &mut reqs[i], data, &mut resps[i]) };
        tokens.push(token.unwrap());
    }
    assert!(blk.peek_used().is_none(), "nothing completes before the backend runs");
    assert!(mmio.borrow().device().in_flight() > 1, "several requests in flight");
    service_block(&mut mmio.borrow_mut());
    assert!(mmio.borrow().device().backend().max_pending > 1);
    for _ in 0..writes.len() {
        let token = blk.peek_used().expect("all requests completed");
        let i = tokens.iter().position(|&t| t == token).unwrap();
        // SAFETY: the same buffers as passed to `write_blocks_nb` for this token.
        let r = unsafe { blk.complete_write_blocks(token, &reqs[i], &writes[i].1, &mut resps[i]) };
        r.unwrap();
        assert_eq!(resps[i].status(), RespStatus::OK);
    }
    auto.set(true);
    let mut back = vec![0u8; 20 * SECTOR_SIZE];
    blk.read_blocks(0, &mut back).unwrap();
    assert!(back[..] == reference[..back.len()], "overlapping writes applied in order");
    assert!(mmio.borrow().device().backend().disk == reference);
}

#[test]
fn block_read_only_disk_refuses_writes() {
    fresh_ram();
    let mut disk = FakeDisk::new(8);
    disk.read_only = true;
    let mmio: Shared<_> = Rc::new(RefCell::new(MmioTransport::new(BlockDevice::new(disk))));
    let mut blk = VirtIOBlk::<TestHal, _>::new(TestTransport::new(&mmio, service_block)).unwrap();
    assert!(blk.readonly());
    assert!(blk.write_blocks(0, &[1u8; 512]).is_err());
    let mut buf = [0u8; 512];
    blk.read_blocks(0, &mut buf).unwrap();
    assert!(buf[..] == mmio.borrow().device().backend().disk[..512]);
}

// ---------------------------------------------------------------------------------------
// vsock: two virtio-drivers socket drivers, each with its own device, joined by a wire.

type VsockDev = VsockDevice<WireEnd<'static>>;
type Manager = VsockConnectionManager<TestHal, TestTransport<VsockDev>>;

const CID_A: u64 = 3;
const CID_B: u64 = 4;
/// Receive space each connection offers its peer (`buf_alloc`).
const CREDIT: u32 = 16 * 1024;

/// The VMM's poll of a vsock device after a notification.
fn service_vsock(t: &mut MmioTransport<VsockDev>) -> Interrupt {
    t.process(&mut RamView)
}

/// A socket driver on side `side` of `wire`, as guest `cid` whose peer is `peer`.
fn vsock_guest(
    wire: &'static RefCell<VsockWire>,
    side: usize,
    cid: u64,
    peer: u64,
) -> (Manager, Shared<VsockDev>) {
    let dev = VsockDevice::new(cid, peer, WireEnd::new(wire, side));
    let mmio: Shared<_> = Rc::new(RefCell::new(MmioTransport::new(dev)));
    let driver = VirtIOSocket::<TestHal, _>::new(TestTransport::new(&mmio, service_vsock)).unwrap();
    assert_eq!(driver.guest_cid(), cid, "guest_cid read from config space");
    (VsockConnectionManager::new_with_capacity(driver, CREDIT), mmio)
}

/// Both VMMs poll their devices (the wire's notifications), then both guests poll their
/// drivers once; events are appended to `ea` / `eb`.
fn pump(
    a: (&mut Manager, &Shared<VsockDev>, &mut Vec<VsockEvent>),
    b: (&mut Manager, &Shared<VsockDev>, &mut Vec<VsockEvent>),
) {
    a.1.borrow_mut().process(&mut RamView);
    b.1.borrow_mut().process(&mut RamView);
    a.2.extend(a.0.poll().unwrap());
    b.2.extend(b.0.poll().unwrap());
}

fn has(events: &[VsockEvent], kind: &VsockEventType) -> bool {
    events.iter().any(|e| e.event_type == *kind)
}

/// Sends `data` from `tx` (local port `tx_port`) to `rx`, in random-sized pieces within the
/// peer's credit; `rx` reads it, returning credit as it goes. Returns what `rx` read.
#[allow(clippy::too_many_arguments)]
fn stream(
    tx: (&mut Manager, &Shared<VsockDev>, VsockAddr, u32),
    rx: (&mut Manager, &Shared<VsockDev>, VsockAddr, u32),
    data: &[u8],
    rng: &mut fastrand::Rng,
) -> Vec<u8> {
    let (tx, tx_dev, rx_addr, tx_port) = tx;
    let (rx, rx_dev, tx_addr, rx_port) = rx;
    let (mut sent, mut got, mut buf) = (0, Vec::new(), vec![0u8; CREDIT as usize]);
    let (mut etx, mut erx) = (Vec::new(), Vec::new());
    for _ in 0..100_000 {
        if got.len() == data.len() {
            break;
        }
        if sent < data.len() {
            let n = (1 + rng.usize(..4000)).min(data.len() - sent);
            match tx.send(rx_addr, tx_port, &data[sent..sent + n]) {
                Ok(()) => sent += n,
                Err(virtio_drivers::Error::SocketDeviceError(
                    SocketError::InsufficientBufferSpaceInPeer,
                )) => {}
                Err(e) => panic!("send: {e:?}"),
            }
        }
        pump((tx, tx_dev, &mut etx), (rx, rx_dev, &mut erx));
        let n = rx.recv(tx_addr, rx_port, &mut buf).unwrap();
        if n > 0 {
            got.extend_from_slice(&buf[..n]);
            rx.update_credit(tx_addr, rx_port).unwrap();
        }
    }
    got
}

fn checksum(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn vsock_drivers_connect_stream_both_ways_and_shut_down() {
    fresh_ram();
    let wire: &'static RefCell<VsockWire> = Box::leak(Box::new(RefCell::new(VsockWire::new())));
    let (mut a, ma) = vsock_guest(wire, 0, CID_A, CID_B);
    let (mut b, mb) = vsock_guest(wire, 1, CID_B, CID_A);
    let (a_addr, b_addr) =
        (VsockAddr { cid: CID_A, port: 5000 }, VsockAddr { cid: CID_B, port: 1234 });
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    b.listen(b_addr.port);
    a.connect(b_addr, a_addr.port).unwrap();
    for _ in 0..100 {
        pump((&mut a, &ma, &mut ea), (&mut b, &mb, &mut eb));
    }
    assert!(has(&eb, &VsockEventType::ConnectionRequest), "B saw the request: {eb:?}");
    assert!(has(&ea, &VsockEventType::Connected), "A connected: {ea:?}");
    assert_eq!(ea[0].source, b_addr);

    // 200 KiB A -> B and 40 KiB B -> A, in pieces up to 4000 bytes: the drivers' 512-byte rx
    // buffers make the devices split every RW packet longer than 468 bytes.
    let mut rng = fastrand::Rng::with_seed(77);
    let ab: Vec<u8> = (0..200 * 1024).map(|_| rng.u8(..)).collect();
    let got = stream(
        (&mut a, &ma, b_addr, a_addr.port),
        (&mut b, &mb, a_addr, b_addr.port),
        &ab,
        &mut rng,
    );
    assert_eq!((got.len(), checksum(&got)), (ab.len(), checksum(&ab)));
    assert!(got == ab, "A -> B exact");
    let ba: Vec<u8> = (0..40 * 1024).map(|_| rng.u8(..)).collect();
    let got = stream(
        (&mut b, &mb, a_addr, b_addr.port),
        (&mut a, &ma, b_addr, a_addr.port),
        &ba,
        &mut rng,
    );
    assert_eq!((got.len(), checksum(&got)), (ba.len(), checksum(&ba)));
    assert!(got == ba, "B -> A exact");

    // Clean shutdown: A's SHUTDOWN, B's manager answers with RST.
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    a.shutdown(b_addr, a_addr.port).unwrap();
    for _ in 0..100 {
        pump((&mut a, &ma, &mut ea), (&mut b, &mb, &mut eb));
    }
    let shutdown = VsockEventType::Disconnected { reason: DisconnectReason::Shutdown };
    let reset = VsockEventType::Disconnected { reason: DisconnectReason::Reset };
    assert!(has(&eb, &shutdown), "B saw the shutdown: {eb:?}");
    assert!(has(&ea, &reset), "A got B's RST: {ea:?}");
    assert!(a.send(b_addr, a_addr.port, b"late").is_err(), "connection gone");
    assert_eq!(wire.borrow().queued(0) + wire.borrow().queued(1), 0, "wire drained");
}

#[test]
fn vsock_driver_gets_rst_from_the_device_for_an_unknown_cid_and_a_peer_that_is_down() {
    fresh_ram();
    let wire: &'static RefCell<VsockWire> = Box::leak(Box::new(RefCell::new(VsockWire::new())));
    let (mut a, ma) = vsock_guest(wire, 0, CID_A, CID_B);
    let (b, mb) = vsock_guest(wire, 1, CID_B, CID_A);
    let reset = VsockEventType::Disconnected { reason: DisconnectReason::Reset };
    let host = VsockAddr { cid: 2, port: 22 };
    a.connect(host, 4000).unwrap();
    let event = a.poll().unwrap().expect("the device's RST is already in the rx queue");
    assert_eq!((event.source, event.event_type.clone()), (host, reset.clone()));
    assert_eq!(wire.borrow().queued(1), 0, "nothing sent to the peer");

    // B's guest goes away: dropping the driver resets its device.
    drop(b);
    assert!(!mb.borrow().device().backend().wire().borrow().is_up(1));
    a.connect(VsockAddr { cid: CID_B, port: 1234 }, 4001).unwrap();
    let event = a.poll().unwrap().expect("RST for a peer that is down");
    assert_eq!((event.source.cid, event.event_type), (CID_B, reset));
    ma.borrow_mut().process(&mut RamView);
    assert!(
        ma.borrow().device().event_pending(),
        "TRANSPORT_RESET waits: virtio-drivers posts no event buffers"
    );
}

// ---------------------------------------------------------------------------------------
// Sound card over a fake backend that plays what it is given when the VMM services it.

/// One playback stream (stereo S16 at 44.1 or 48 kHz) and one capture stream; pieces are
/// played in order, each answered with the bytes played so far as its latency.
struct Speaker {
    streams: Vec<StreamInfo>,
    commands: Vec<(u32, PcmCommand)>,
    answers: VecDeque<Completion>,
    buffers: Vec<Option<Vec<u8>>>,
    queue: VecDeque<(u32, SoundBufferId, u32, u32)>,
    /// Pieces are played only while set (the test holds them back to see ordering).
    playing: bool,
    played: Vec<u8>,
}

impl Speaker {
    fn new() -> Speaker {
        let out = StreamInfo {
            direction: Direction::Output,
            formats: 1 << 5,
            rates: 1 << 6 | 1 << 7,
            channels_min: 1,
            channels_max: 2,
        };
        Speaker {
            streams: vec![out, StreamInfo { direction: Direction::Input, ..out }],
            commands: Vec::new(),
            answers: VecDeque::new(),
            buffers: Vec::new(),
            queue: VecDeque::new(),
            playing: true,
            played: Vec::new(),
        }
    }

    /// Plays one queued piece. Returns whether there was one.
    fn play_one(&mut self) -> bool {
        let Some((_, buf, len, token)) = self.queue.pop_front() else { return false };
        let cells = self.buffers[buf.0 as usize].as_ref().unwrap();
        self.played.extend_from_slice(&cells[..len as usize]);
        let done = PcmDone {
            token,
            status: BackendStatus::Ok,
            len,
            latency_bytes: self.played.len() as u32,
        };
        self.answers.push_back(Completion::Pcm(done));
        true
    }
}

impl SoundBackend for Speaker {
    fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }
    fn command(&mut self, stream: u32, cmd: PcmCommand) -> Result<(), SoundBusy> {
        self.commands.push((stream, cmd));
        self.answers.push_back(Completion::Command(BackendStatus::Ok));
        Ok(())
    }
    fn alloc(&mut self) -> Option<SoundBufferId> {
        if self.buffers.iter().flatten().count() >= 8 {
            return None;
        }
        self.buffers.push(Some(vec![0; PCM_BUFFER_BYTES]));
        Some(SoundBufferId(self.buffers.len() as u32 - 1))
    }
    fn free(&mut self, buf: SoundBufferId) {
        self.buffers[buf.0 as usize].take().expect("double free");
    }
    fn write_buffer(
        &mut self,
        buf: SoundBufferId,
        at: usize,
        src: &[u8],
    ) -> Result<(), SoundBufferRange> {
        let cells = self.buffers[buf.0 as usize].as_mut().unwrap();
        cells.get_mut(at..at + src.len()).ok_or(SoundBufferRange)?.copy_from_slice(src);
        Ok(())
    }
    fn submit(
        &mut self,
        stream: u32,
        buf: SoundBufferId,
        len: u32,
        token: u32,
    ) -> Result<(), SoundBusy> {
        self.queue.push_back((stream, buf, len, token));
        Ok(())
    }
    fn complete(&mut self) -> Option<Completion> {
        self.answers.pop_front()
    }
    fn notify(&mut self) {}
}

type SoundT = MmioTransport<SoundDevice<Speaker>>;

/// Runs the device, the backend playing a piece at a time, until both are idle.
fn service_sound(t: &mut SoundT) -> Interrupt {
    let mut irq = Interrupt::NONE;
    for _ in 0..100_000 {
        irq |= t.process(&mut RamView);
        let backend = t.device_mut().backend_mut();
        if !backend.playing || !backend.play_one() {
            irq |= t.process(&mut RamView);
            break;
        }
    }
    irq
}

type Snd = VirtIOSound<TestHal, TestTransport<SoundDevice<Speaker>>>;

fn sound_card(hidden: u64) -> (Snd, Shared<SoundDevice<Speaker>>) {
    fresh_ram();
    let mmio: Shared<_> =
        Rc::new(RefCell::new(MmioTransport::new(SoundDevice::new(Speaker::new()))));
    let mut transport = TestTransport::new(&mmio, service_sound);
    transport.hidden = hidden;
    (VirtIOSound::new(transport).unwrap(), mmio)
}

fn playback(hidden: u64) {
    let (mut snd, mmio) = sound_card(hidden);
    assert_eq!((snd.jacks(), snd.streams(), snd.chmaps()), (0, 2, 0));
    assert_eq!(snd.output_streams().unwrap(), [0]);
    assert_eq!(snd.input_streams().unwrap(), [1]);
    assert_eq!(snd.formats_supported(0).unwrap(), PcmFormats::S16);
    assert_eq!(snd.rates_supported(0).unwrap(), PcmRates::RATE_44100 | PcmRates::RATE_48000);
    assert_eq!(snd.channel_range_supported(0).unwrap(), 1..=2);
    assert_eq!(snd.features_supported(0).unwrap(), PcmFeatures::empty());
    let (period, features) = (6000, PcmFeatures::empty());
    snd.pcm_set_params(0, 4 * period, period, features, 2, PcmFormat::S16, PcmRate::Rate48000)
        .unwrap();
    snd.pcm_prepare(0).unwrap();
    snd.pcm_start(0).unwrap();
    // Five periods and a short one: 11 pieces of at most 4 KiB through 8 backend buffers.
    let frames = pattern(77, 5 * period as usize + 1234);
    snd.pcm_xfer(0, &frames).unwrap();
    assert!(mmio.borrow().device().backend().played == frames, "every frame played, in order");
    snd.pcm_stop(0).unwrap();
    snd.pcm_release(0).unwrap();
    let sent: Vec<PcmCommand> =
        mmio.borrow().device().backend().commands.iter().map(|c| c.1).collect();
    let params =
        PcmParams { buffer_bytes: 24000, period_bytes: 6000, channels: 2, format: 5, rate: 7 };
    let want = [
        PcmCommand::SetParams(params),
        PcmCommand::Prepare,
        PcmCommand::Start,
        PcmCommand::Stop,
        PcmCommand::Release,
    ];
    assert_eq!(sent, want);
    // Out-of-order commands and parameters the stream does not offer are refused.
    assert!(snd.pcm_start(0).is_err(), "START after RELEASE");
    assert!(snd
        .pcm_set_params(0, 8000, 4000, features, 4, PcmFormat::S16, PcmRate::Rate48000)
        .is_err());
    assert!(snd
        .pcm_set_params(0, 8000, 4000, features, 2, PcmFormat::U8, PcmRate::Rate48000)
        .is_err());
    assert!(snd
        .pcm_set_params(0, 8000, 4000, features, 2, PcmFormat::S16, PcmRate::Rate8000)
        .is_err());
    assert!(snd.pcm_prepare(7).is_err(), "no stream 7");
    assert_eq!(
        mmio.borrow().device().backend().commands.len(),
        want.len(),
        "none reached the backend"
    );
    let dev = mmio.borrow();
    assert_eq!(
        (dev.device().in_flight(), dev.device().backend().buffers.iter().flatten().count()),
        (0, 0)
    );
}

#[test]
fn sound_playback_with_event_idx_and_indirect() {
    playback(0);
}

#[test]
fn sound_playback_without_ring_features() {
    playback(VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC);
}

#[test]
fn sound_periods_complete_in_order_when_played() {
    let (mut snd, mmio) = sound_card(0);
    let period = 4096;
    snd.pcm_set_params(
        0,
        4 * period,
        period,
        PcmFeatures::empty(),
        2,
        PcmFormat::S16,
        PcmRate::Rate44100,
    )
    .unwrap();
    snd.pcm_prepare(0).unwrap();
    mmio.borrow_mut().device_mut().backend_mut().playing = false;
    let periods: Vec<Vec<u8>> = (0..3).map(|i| pattern(i, period as usize)).collect();
    // Pre-buffering before START, as Linux does.
    let tokens: Vec<u16> = periods.iter().map(|p| snd.pcm_xfer_nb(0, p).unwrap()).collect();
    assert_eq!(mmio.borrow().device().backend().queue.len(), 3, "all handed to the backend");
    snd.pcm_start(0).unwrap();
    for (i, token) in tokens.into_iter().enumerate() {
        assert!(mmio.borrow().device().backend().played.len() == i * period as usize);
        service_sound(&mut mmio.borrow_mut());
        assert!(snd.pcm_xfer_ok(token).is_err(), "period {i} not done before it is played");
        mmio.borrow_mut().device_mut().backend_mut().play_one();
        service_sound(&mut mmio.borrow_mut());
        // Completes only the period just played: popping any other token would fail.
        snd.pcm_xfer_ok(token).unwrap();
    }
    assert!(mmio.borrow().device().backend().played == periods.concat());
}
