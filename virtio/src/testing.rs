//! Test helpers: a driver-side view of a split virtqueue in guest memory, and ([`vsock`]) a
//! loopback joining two vsock devices.
//!
//! Available with `cfg(test)` and with the `test-utils` feature (for fuzzers and other
//! crates' tests). [`DriverQueue`] writes descriptors and the available ring the way a driver
//! would and reads back the used ring; it trusts its inputs and unwraps memory errors, being
//! test code.

pub mod vsock;

use crate::mmio::*;

/// The registers a driver writes (and the first configuration words): what a test or
/// fuzzer's driver may aim a write at.
pub const WRITABLE_REGISTERS: [u64; 18] = [
    DEVICE_FEATURES_SEL,
    DRIVER_FEATURES,
    DRIVER_FEATURES_SEL,
    QUEUE_SEL,
    QUEUE_NUM,
    QUEUE_READY,
    QUEUE_NOTIFY,
    INTERRUPT_ACK,
    STATUS,
    QUEUE_DESC_LOW,
    QUEUE_DESC_HIGH,
    QUEUE_DRIVER_LOW,
    QUEUE_DRIVER_HIGH,
    QUEUE_DEVICE_LOW,
    QUEUE_DEVICE_HIGH,
    SHM_SEL,
    CONFIG,
    CONFIG + 4,
];

use crate::memory::{GuestMemory, GuestMemoryExt};
use crate::queue::{
    avail_ring_size, desc_table_size, used_ring_size, Descriptor, Queue, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
};

/// The driver side of one split virtqueue.
#[derive(Clone, Debug)]
pub struct DriverQueue {
    /// Queue size.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
    avail_idx: u16,
    used_seen: u16,
    next_desc: u16,
}

impl DriverQueue {
    /// A queue of `size` entries laid out from `base`: descriptors, then the available ring,
    /// then the used ring (4-byte aligned).
    pub fn at(base: u64, size: u16) -> DriverQueue {
        let avail = base + desc_table_size(size);
        let used = (avail + avail_ring_size(size) + 3) & !3;
        DriverQueue { size, desc: base, avail, used, avail_idx: 0, used_seen: 0, next_desc: 0 }
    }

    /// Bytes from `base` that [`DriverQueue::at`] uses.
    pub fn footprint(&self) -> u64 {
        self.used + used_ring_size(self.size) - self.desc
    }

    /// Writes this queue's size and addresses into the device's `Queue` (what the transport
    /// does for QueueNum / QueueDesc / QueueDriver / QueueDevice).
    pub fn configure(&self, q: &mut Queue) {
        q.set_size(u32::from(self.size));
        q.set_desc_table(self.desc);
        q.set_avail_ring(self.avail);
        q.set_used_ring(self.used);
    }

    /// Writes descriptor `index`.
    pub fn set_desc<M: GuestMemory + ?Sized>(
        &self,
        mem: &mut M,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let d = Descriptor { addr, len, flags, next };
        mem.write(self.desc + u64::from(index) * 16, &d.to_bytes()).unwrap();
    }

    /// Writes a chain of `(addr, len, writable)` buffers into consecutive free descriptors
    /// and makes it available. Returns its head index.
    pub fn add_chain<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        bufs: &[(u64, u32, bool)],
    ) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let mut flags = if writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.set_desc(mem, index, addr, len, flags, self.next_desc);
        }
        self.publish(mem, head);
        head
    }

    /// Puts `head` in the next available-ring entry and publishes the new index.
    pub fn publish<M: GuestMemory + ?Sized>(&mut self, mem: &mut M, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_u16(self.avail + 4 + 2 * slot, head).unwrap();
        self.set_avail_idx(mem, self.avail_idx.wrapping_add(1));
    }

    /// Writes the available index (also to simulate a hostile driver).
    pub fn set_avail_idx<M: GuestMemory + ?Sized>(&mut self, mem: &mut M, idx: u16) {
        self.avail_idx = idx;
        mem.write_u16(self.avail + 2, idx).unwrap();
    }

    /// Writes the available ring's flags.
    pub fn set_avail_flags<M: GuestMemory + ?Sized>(&self, mem: &mut M, flags: u16) {
        mem.write_u16(self.avail, flags).unwrap();
    }

    /// Writes `used_event` (EVENT_IDX).
    pub fn set_used_event<M: GuestMemory + ?Sized>(&self, mem: &mut M, event: u16) {
        mem.write_u16(self.avail + 4 + 2 * u64::from(self.size), event).unwrap();
    }

    /// Reads `avail_event` (EVENT_IDX).
    pub fn avail_event<M: GuestMemory + ?Sized>(&self, mem: &M) -> u16 {
        mem.read_u16(self.used + 4 + 8 * u64::from(self.size)).unwrap()
    }

    /// Overwrites `avail_event`, as a hostile driver may (it lies in the device's area).
    pub fn set_avail_event_for_test<M: GuestMemory + ?Sized>(&self, mem: &mut M, value: u16) {
        mem.write_u16(self.used + 4 + 8 * u64::from(self.size), value).unwrap();
    }

    /// Reads the device's used index.
    pub fn used_idx<M: GuestMemory + ?Sized>(&self, mem: &M) -> u16 {
        mem.read_u16(self.used + 2).unwrap()
    }

    /// The next used element `(id, len)` not seen yet.
    pub fn pop_used<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Option<(u32, u32)> {
        if self.used_idx(mem) == self.used_seen {
            return None;
        }
        let slot = u64::from(self.used_seen % self.size);
        let at = self.used + 4 + 8 * slot;
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap()))
    }
}

/// A register page in memory ([`crate::MmioTransport::sync_registers`]): what the guest would
/// read at each 4-byte offset.
pub struct RegisterBuf(pub [u32; (REGION_SIZE / 4) as usize]);

impl RegisterBuf {
    /// A page of `fill` words.
    pub fn new(fill: u32) -> RegisterBuf {
        RegisterBuf([fill; (REGION_SIZE / 4) as usize])
    }

    /// The word at byte `offset`.
    pub fn at(&self, offset: u64) -> u32 {
        self.0[(offset / 4) as usize]
    }
}

impl RegisterPage for RegisterBuf {
    fn store(&mut self, offset: u64, value: u32) {
        self.0[(offset / 4) as usize] = value;
    }
}
