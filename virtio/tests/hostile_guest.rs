//! A hostile guest never panics the device: random register accesses of every width, random
//! bytes scribbled over rings, descriptors and indirect tables, random notifications, and
//! backend completions interleaved, for the block and the console device.
//!
//! Runs in debug builds, so an arithmetic overflow or an out-of-bounds index would panic.

use std::cell::Cell;
use std::collections::VecDeque;

use fastrand::Rng;

use virtio::block::{
    BackendBusy, BlockBackend, BlockDevice, BlockInfo, BlockOp, BufferId, BufferRange,
};
use virtio::console::{Console, SerialBackend};
use virtio::features::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1};
use virtio::mmio::*;
use virtio::status::{ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK};
use virtio::{GuestMemory, SliceMemory, VirtioDevice};

const BASE: u64 = 0x4000_0000;
const RAM: usize = 0x10000;

thread_local! {
    /// Backend operations submitted on this test's thread.
    static SUBMITS: Cell<u64> = const { Cell::new(0) };
}

/// Mostly small, sometimes anything.
fn value(rng: &mut Rng) -> u64 {
    match rng.u64(..4) {
        0 => rng.u64(..),
        1 => BASE + rng.u64(..RAM as u64 + 64),
        _ => rng.u64(..64),
    }
}

/// A disk that completes whatever was submitted on the next `complete` calls.
struct Disk {
    buffers: Vec<Option<Vec<u8>>>,
    done: VecDeque<(u32, bool)>,
    flip: bool,
}

impl BlockBackend for Disk {
    fn info(&self) -> Option<BlockInfo> {
        Some(BlockInfo { capacity: 16, read_only: false, optimal_blocks: 0 })
    }
    fn alloc(&mut self, blocks: u32) -> Option<BufferId> {
        self.flip = !self.flip;
        if self.flip && self.buffers.iter().flatten().count() < 4 {
            self.buffers.push(Some(vec![0; blocks as usize * 4096]));
            return Some(BufferId(self.buffers.len() as u32 - 1));
        }
        None
    }
    fn free(&mut self, buf: BufferId) {
        self.buffers[buf.0 as usize].take().expect("double free");
    }
    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let cells = self.buffers[buf.0 as usize].as_ref().expect("use after free");
        dst.copy_from_slice(cells.get(at..at + dst.len()).ok_or(BufferRange)?);
        Ok(())
    }
    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        let cells = self.buffers[buf.0 as usize].as_mut().expect("use after free");
        cells.get_mut(at..at + src.len()).ok_or(BufferRange)?.copy_from_slice(src);
        Ok(())
    }
    fn submit(
        &mut self,
        op: BlockOp,
        block: u64,
        count: u32,
        _buf: Option<BufferId>,
        tag: u32,
    ) -> Result<(), BackendBusy> {
        if op != BlockOp::Flush {
            assert!(block + u64::from(count) <= 16, "device asked outside the disk");
        }
        self.done.push_back((tag, tag % 5 != 0));
        SUBMITS.with(|c| c.set(c.get() + 1));
        Ok(())
    }
    fn complete(&mut self) -> Option<(u32, bool)> {
        self.done.pop_front()
    }
    fn notify(&mut self) {}
}

#[derive(Default)]
struct Serial {
    input: VecDeque<u8>,
    room: usize,
}

impl SerialBackend for Serial {
    fn tx_space(&self) -> usize {
        self.room
    }
    fn tx(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room);
        self.room -= n;
        n
    }
    fn tx_flush(&mut self) {}
    fn rx(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.input.len());
        for b in &mut buf[..n] {
            *b = self.input.pop_front().unwrap_or(0);
        }
        n
    }
}

/// Initialises the device like a driver would, with queues of size 8 at valid addresses.
fn init<D: VirtioDevice>(t: &mut MmioTransport<D>, mem: &mut SliceMemory<'_>, queues: u32) {
    let features = VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC;
    let w = |t: &mut MmioTransport<D>, mem: &mut SliceMemory<'_>, off, v: u64| {
        t.write(mem, off, 4, v);
    };
    w(t, mem, STATUS, u64::from(ACKNOWLEDGE | DRIVER));
    w(t, mem, DRIVER_FEATURES_SEL, 0);
    w(t, mem, DRIVER_FEATURES, features & 0xffff_ffff);
    w(t, mem, DRIVER_FEATURES_SEL, 1);
    w(t, mem, DRIVER_FEATURES, features >> 32);
    w(t, mem, STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK));
    for q in 0..queues {
        let base = BASE + u64::from(q) * 0x400;
        w(t, mem, QUEUE_SEL, u64::from(q));
        w(t, mem, QUEUE_NUM, 8);
        w(t, mem, QUEUE_DESC_LOW, base);
        w(t, mem, QUEUE_DRIVER_LOW, base + 0x100);
        w(t, mem, QUEUE_DEVICE_LOW, base + 0x200);
        w(t, mem, QUEUE_READY, 1);
    }
    w(t, mem, STATUS, u64::from(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK));
}

/// Data area for buffers and indirect tables (the rings use the first 2 KiB).
const DATA: u64 = BASE + 0x800;

/// A guest that mostly follows the ring protocol but writes hostile descriptors, heads,
/// indirect tables and, now and then, garbage anywhere.
struct Guest {
    rng: Rng,
    queues: u32,
    avail_idx: [u16; 2],
}

impl Guest {
    fn ring(&self, q: u32) -> u64 {
        BASE + u64::from(q) * 0x400
    }

    /// A buffer address: usually in the data area, sometimes anywhere.
    fn addr(&mut self) -> u64 {
        match self.rng.u64(..8) {
            0 => value(&mut self.rng),
            1 => BASE + RAM as u64 - self.rng.u64(..32),
            _ => DATA + self.rng.u64(..0x4000),
        }
    }

    fn descriptor(&mut self) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&self.addr().to_le_bytes());
        let len = match self.rng.u64(..6) {
            0 => self.rng.u32(..),
            1 => 16 * self.rng.u64(..12) as u32,
            2 => 0,
            _ => self.rng.u64(..1100) as u32,
        };
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&(self.rng.u64(..8) as u16).to_le_bytes());
        d[14..].copy_from_slice(&(self.rng.u64(..10) as u16).to_le_bytes());
        d
    }

    /// Makes `head` available (rarely out of range, rarely with a wild index jump) and
    /// notifies.
    fn publish<D: VirtioDevice>(
        &mut self,
        t: &mut MmioTransport<D>,
        mem: &mut SliceMemory<'_>,
        q: u32,
        head: u16,
    ) {
        let ring = self.ring(q);
        let head = if self.rng.u64(..300) == 0 { 8 } else { head };
        let i = &mut self.avail_idx[q as usize];
        mem.write(ring + 0x104 + u64::from(*i % 8) * 2, &head.to_le_bytes()).unwrap();
        *i = match self.rng.u64(..300) {
            0 => self.rng.u16(..),
            _ => i.wrapping_add(1),
        };
        mem.write(ring + 0x102, &i.to_le_bytes()).unwrap();
        t.write(mem, QUEUE_NOTIFY, 4, u64::from(q));
    }

    /// Writes a request chain (header, data, status; sometimes through an indirect table)
    /// with mostly sensible values. Returns its head.
    fn plausible_request(&mut self, mem: &mut SliceMemory<'_>, ring: u64) -> u16 {
        let hdr = DATA + self.rng.u64(..0x100) * 16;
        let mut h = [0u8; 16];
        h[0] = [0, 1, 1, 0, 4, 8, 11][self.rng.u64(..7) as usize];
        h[8] = self.rng.u64(..140) as u8;
        mem.write(hdr, &h).unwrap();
        let len = [512, 1024, 1536, 100, 0, 4096][self.rng.u64(..6) as usize];
        let write = if h[0] == 1 { 0 } else { 2 };
        let parts = [
            (hdr, 16u32, 1u16),
            (DATA + 0x1000 + self.rng.u64(..0x2000), len, 1 | write),
            (DATA + 0x3000 + self.rng.u64(..0x800), 1, 2),
        ];
        let indirect = self.rng.u64(..3) == 0;
        let head = self.rng.u64(..8) as u16;
        for (k, &(addr, len, flags)) in parts.iter().enumerate() {
            let (table, index) = if indirect {
                (DATA + 0x3800, k as u64)
            } else {
                (ring, (u64::from(head) + k as u64) % 8)
            };
            let next = if indirect { k as u16 + 1 } else { ((index + 1) % 8) as u16 };
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&addr.to_le_bytes());
            d[8..12].copy_from_slice(&len.to_le_bytes());
            let flags = if k == 2 { flags } else { flags | 1 };
            d[12..14].copy_from_slice(&flags.to_le_bytes());
            d[14..].copy_from_slice(&next.to_le_bytes());
            mem.write(table + index * 16, &d).unwrap();
        }
        if indirect {
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&(DATA + 0x3800).to_le_bytes());
            d[8..12].copy_from_slice(&48u32.to_le_bytes());
            d[12..14].copy_from_slice(&4u16.to_le_bytes());
            mem.write(ring + u64::from(head) * 16, &d).unwrap();
        }
        head
    }

    fn act<D: VirtioDevice>(&mut self, t: &mut MmioTransport<D>, mem: &mut SliceMemory<'_>) {
        let q = self.rng.u64(..u64::from(self.queues)) as u32;
        let ring = self.ring(q);
        match self.rng.u64(..16) {
            0..=3 => {
                let d = self.descriptor();
                mem.write(ring + self.rng.u64(..8) * 16, &d).unwrap();
            }
            4 | 5 => {
                // An indirect table entry or a request header in the data area.
                let d = self.descriptor();
                mem.write(DATA + self.rng.u64(..0x100) * 16, &d).unwrap();
                let mut h = [0u8; 16];
                h[0] = [0, 1, 4, 8, 11][self.rng.u64(..5) as usize];
                h[8] = self.rng.u64(..140) as u8;
                mem.write(DATA + self.rng.u64(..0x100) * 16, &h).unwrap();
            }
            6 => {
                let head = self.rng.u64(..8) as u16;
                self.publish(t, mem, q, head);
            }
            7 | 8 => {
                let head = self.plausible_request(mem, ring);
                self.publish(t, mem, q, head);
            }
            9 => {
                // used_event / avail flags.
                let at = ring + 0x100 + [0, 0x14][self.rng.u64(..2) as usize];
                mem.write(at, &(self.rng.u64(..12) as u16).to_le_bytes()).unwrap();
            }
            10 | 11 => {
                t.process(mem);
            }
            12 => {
                let offset = self.rng.u64(..0x140) & !3;
                let width = [1, 2, 4, 8][self.rng.u64(..4) as usize];
                let value = value(&mut self.rng);
                t.write(mem, offset, width, value);
            }
            13 => {
                let offset = self.rng.u64(..0x140);
                t.read(offset, [1, 2, 3, 4, 8][self.rng.u64(..5) as usize]);
            }
            14 if self.rng.u64(..8) == 0 => {
                let at = BASE + self.rng.u64(..RAM as u64 - 8);
                let v = value(&mut self.rng).to_le_bytes();
                mem.write(at, &v[..1 + self.rng.u64(..8) as usize]).unwrap();
            }
            _ => {
                t.write(mem, QUEUE_NOTIFY, 4, self.rng.u64(..3));
            }
        }
    }
}

/// Counts of what the device did, to check the test reaches request execution.
#[derive(Default, Debug)]
struct Reached {
    used: u64,
    needs_reset: u64,
}

fn run<D: VirtioDevice>(
    seed: u64,
    make: impl Fn() -> D,
    queues: u32,
    each: impl Fn(&mut D),
    reached: &mut Reached,
) {
    let mut guest = Guest { rng: Rng::with_seed(seed), queues, avail_idx: [0; 2] };
    let mut ram = vec![0u8; RAM];
    for b in ram.iter_mut() {
        *b = guest.rng.u8(..);
    }
    let mut mem = SliceMemory::new(BASE, &mut ram);
    let mut t = MmioTransport::new(make());
    for _ in 0..10 {
        // The rings start zeroed, as a driver leaves them.
        for q in 0..queues {
            mem.write(guest.ring(q) + 0x100, &[0u8; 0x300]).unwrap();
        }
        guest.avail_idx = [0; 2];
        t.write(&mut mem, STATUS, 4, 0);
        init(&mut t, &mut mem, queues);
        for _ in 0..600 {
            guest.act(&mut t, &mut mem);
            each(t.device_mut());
            if t.status() & virtio::status::DEVICE_NEEDS_RESET != 0 {
                reached.needs_reset += 1;
                break;
            }
        }
        for q in 0..queues {
            let mut idx = [0u8; 2];
            mem.read(guest.ring(q) + 0x202, &mut idx).unwrap();
            reached.used += u64::from(u16::from_le_bytes(idx));
        }
    }
}

#[test]
fn hostile_guest_never_panics_the_block_device() {
    let mut reached = Reached::default();
    for seed in 0..100 {
        let disk = || Disk { buffers: Vec::new(), done: VecDeque::new(), flip: false };
        run(seed, || BlockDevice::<Disk, 4>::new(disk()), 1, |_| {}, &mut reached);
    }
    let submits = SUBMITS.with(|c| c.get());
    eprintln!("block: {reached:?}, {submits} backend operations");
    assert!(reached.used > 10_000 && submits > 1000 && reached.needs_reset > 10);
}

#[test]
fn hostile_guest_never_panics_the_console() {
    let mut reached = Reached::default();
    for seed in 100..200 {
        let feed = |c: &mut Console<Serial>| {
            let b = c.backend_mut();
            b.room = 5;
            if b.input.len() < 100 {
                b.input.extend(b"abc");
            }
        };
        run(seed, || Console::new(Serial::default()), 2, feed, &mut reached);
    }
    eprintln!("console: {reached:?}");
    assert!(reached.used > 10_000 && reached.needs_reset > 10);
}
