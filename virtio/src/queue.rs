//! Split virtqueues (virtio 1.2 §2.7), device side.
//!
//! A [`Queue`] holds what the driver configured through the transport (size and the three
//! area addresses), validates it once when the queue is enabled, and then accesses the rings
//! in guest memory with every index taken modulo the queue size. Guest-written values are
//! read once into locals: the available index is cached in a shadow and only re-read when
//! the device has caught up with it.
//!
//! A chain that breaks a rule ([`ChainError`]) is completed at once with length 0 and logged;
//! the device never sees it. An available index that runs more than the queue size ahead is
//! not recoverable: the queue stops and reports [`Queue::needs_reset`], and the transport sets
//! DEVICE_NEEDS_RESET.

mod chain;

use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};

use zerocopy::IntoBytes;

pub use chain::{
    ChainError, Descriptor, DescriptorChain, Segment, DESCRIPTOR_SIZE, MAX_CHAIN_BYTES,
    MAX_SEGMENTS, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};

use crate::features::{VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};
use crate::layout::{VirtqAvailElem, VirtqRingHeader, VirtqUsedElem};
use crate::memory::{GuestMemory, GuestMemoryExt, MemoryError};
use chain::ChainSource;

/// Largest size of a split virtqueue (virtio 1.2 §2.7: "Queue Size ... maximum 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Required alignment of the descriptor table (virtio 1.2 §2.7, table "Virtqueue Part
/// Alignment").
pub const DESC_ALIGN: u64 = 16;
/// Required alignment of the available ring (driver area) (virtio 1.2 §2.7).
pub const AVAIL_ALIGN: u64 = 2;
/// Required alignment of the used ring (device area) (virtio 1.2 §2.7).
pub const USED_ALIGN: u64 = 4;

/// VIRTQ_AVAIL_F_NO_INTERRUPT: the driver asks for no used-buffer notifications
/// (virtio 1.2 §2.7.6, §2.7.7).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Offset of `idx` in both `struct virtq_avail` and `struct virtq_used` (virtio 1.2 §2.7.6,
/// §2.7.8).
const RING_IDX: u64 = offset_of!(VirtqRingHeader, idx) as u64;
/// Offset of `ring[0]` in both rings.
const RING_ENTRIES: u64 = size_of::<VirtqRingHeader>() as u64;
/// Size of one available-ring entry (a `le16` head index).
const AVAIL_ENTRY: u64 = size_of::<VirtqAvailElem>() as u64;
/// Size of one used-ring entry, `struct virtq_used_elem` (`le32 id; le32 len`).
const USED_ENTRY: u64 = size_of::<VirtqUsedElem>() as u64;

/// Bytes of the descriptor table for `size` entries.
pub const fn desc_table_size(size: u16) -> u64 {
    DESCRIPTOR_SIZE * size as u64
}

/// Bytes of the available ring for `size` entries, `used_event` included (virtio 1.2 §2.7.6).
pub const fn avail_ring_size(size: u16) -> u64 {
    RING_ENTRIES + AVAIL_ENTRY * size as u64 + 2
}

/// Bytes of the used ring for `size` entries, `avail_event` included (virtio 1.2 §2.7.8).
pub const fn used_ring_size(size: u16) -> u64 {
    RING_ENTRIES + USED_ENTRY * size as u64 + 2
}

/// One of the three areas of a virtqueue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Area {
    /// The descriptor table (QueueDesc).
    Descriptors,
    /// The available ring (QueueDriver, "driver area").
    Avail,
    /// The used ring (QueueDevice, "device area").
    Used,
}

/// Why the driver's queue configuration was refused when it set QueueReady.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SetupError {
    /// The size is 0, larger than the maximum, or not a power of two (virtio 1.2 §2.7).
    BadSize(u32),
    /// An area is not aligned as virtio 1.2 §2.7 requires.
    Misaligned(Area, u64),
    /// An area is not inside guest RAM.
    OutsideMemory(Area, MemoryError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::BadSize(s) => write!(f, "bad queue size {s}"),
            SetupError::Misaligned(a, gpa) => write!(f, "{a:?} area {gpa:#x} misaligned"),
            SetupError::OutsideMemory(a, e) => write!(f, "{a:?} area: {e}"),
        }
    }
}

/// The ring features a queue uses, from the negotiated feature bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct RingFeatures {
    event_idx: bool,
    indirect: bool,
}

/// One split virtqueue, device side.
#[derive(Clone, Debug)]
pub struct Queue {
    max_size: u16,
    /// The driver's QueueNum.
    size: u32,
    /// The size validated by [`Queue::enable`], used for all ring math (never 0).
    active_size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    ready: bool,
    features: RingFeatures,
    /// Next available-ring entry to take.
    next_avail: u16,
    /// Last available index read from guest memory.
    avail_shadow: u16,
    /// Used index the device has published.
    next_used: u16,
    /// Used index when [`Queue::needs_interrupt`] last ran.
    signalled_used: u16,
    /// The `avail_event` last published (EVENT_IDX), if any since `enable`: publishing the
    /// same value again (and the fence and second look that go with it) changes nothing.
    avail_event: Option<u16>,
    broken: bool,
}

impl Queue {
    /// A queue offering at most `max_size` entries (QueueNumMax). The driver's size starts at
    /// `max_size` too.
    pub const fn new(max_size: u16) -> Queue {
        Queue {
            max_size,
            size: max_size as u32,
            active_size: 1,
            desc: 0,
            avail: 0,
            used: 0,
            ready: false,
            features: RingFeatures { event_idx: false, indirect: false },
            next_avail: 0,
            avail_shadow: 0,
            next_used: 0,
            signalled_used: 0,
            avail_event: None,
            broken: false,
        }
    }

    /// Back to the state after [`Queue::new`] (device reset).
    pub fn reset(&mut self) {
        *self = Queue::new(self.max_size);
    }

    /// Largest size the device accepts (QueueNumMax).
    pub fn max_size(&self) -> u16 {
        self.max_size
    }

    /// The size the driver asked for (QueueNum); only meaningful once [`Queue::ready`].
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Records the driver's size (QueueNum); checked when the queue is enabled. An enabled
    /// queue keeps the size it was enabled with.
    pub fn set_size(&mut self, size: u32) {
        self.size = size;
    }

    /// Guest-physical address of the descriptor table.
    pub fn desc_table(&self) -> u64 {
        self.desc
    }

    /// Guest-physical address of the available ring (driver area).
    pub fn avail_ring(&self) -> u64 {
        self.avail
    }

    /// Guest-physical address of the used ring (device area).
    pub fn used_ring(&self) -> u64 {
        self.used
    }

    /// Sets the descriptor table address (QueueDescLow/High).
    pub fn set_desc_table(&mut self, gpa: u64) {
        self.desc = gpa;
    }

    /// Sets the available ring address (QueueDriverLow/High).
    pub fn set_avail_ring(&mut self, gpa: u64) {
        self.avail = gpa;
    }

    /// Sets the used ring address (QueueDeviceLow/High).
    pub fn set_used_ring(&mut self, gpa: u64) {
        self.used = gpa;
    }

    /// Whether the driver enabled the queue (QueueReady) and it passed validation.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// The used index the device has published (`idx` of the used ring, virtio 1.2 §2.7.8),
    /// from its own count: the guest cannot change it.
    pub fn used_index(&self) -> u16 {
        self.next_used
    }

    /// Whether the queue hit an unrecoverable guest error and stopped (the device must be
    /// reset).
    pub fn needs_reset(&self) -> bool {
        self.broken
    }

    /// Whether the driver made entries available that [`Queue::pop`] has not taken yet. The
    /// available index is read and checked as `pop` reads it (a bad one breaks the queue), so
    /// a `pop` that follows does not read it again.
    pub fn has_new_available<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> bool {
        self.ready
            && !self.broken
            && (self.next_avail != self.avail_shadow || self.refresh_avail(mem))
    }

    /// Validates the configuration and enables the queue (QueueReady = 1). `features` are the
    /// negotiated feature bits: they select EVENT_IDX and indirect descriptors.
    pub fn enable<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &M,
        features: u64,
    ) -> Result<(), SetupError> {
        let size = self.checked_size()?;
        let areas = [
            (Area::Descriptors, self.desc, DESC_ALIGN, desc_table_size(size)),
            (Area::Avail, self.avail, AVAIL_ALIGN, avail_ring_size(size)),
            (Area::Used, self.used, USED_ALIGN, used_ring_size(size)),
        ];
        for (area, gpa, align, len) in areas {
            if gpa % align != 0 {
                return Err(SetupError::Misaligned(area, gpa));
            }
            mem.check_range(gpa, len).map_err(|e| SetupError::OutsideMemory(area, e))?;
        }
        self.features = RingFeatures {
            event_idx: features & VIRTIO_F_EVENT_IDX != 0,
            indirect: features & VIRTIO_F_INDIRECT_DESC != 0,
        };
        self.active_size = size;
        self.next_avail = 0;
        self.avail_shadow = 0;
        self.next_used = 0;
        self.signalled_used = 0;
        self.avail_event = None;
        self.broken = false;
        self.ready = true;
        Ok(())
    }

    /// Disables the queue (QueueReady = 0); its configuration is kept.
    pub fn disable(&mut self) {
        self.ready = false;
    }

    fn checked_size(&self) -> Result<u16, SetupError> {
        let s = self.size;
        if s == 0 || s > u32::from(self.max_size) || !s.is_power_of_two() {
            return Err(SetupError::BadSize(s));
        }
        // `s <= max_size`, a u16.
        Ok(s as u16)
    }

    /// The validated size (1..=32768).
    fn qsize(&self) -> u16 {
        self.active_size
    }

    /// Takes the next available descriptor chain, parsed and validated.
    ///
    /// Chains that break a rule are completed here with length 0 (and logged); `None` means
    /// no chain is available, the queue is not ready, or it needs a reset. With EVENT_IDX,
    /// reaching the end of the available ring also publishes `avail_event` so the driver
    /// notifies for the next buffer.
    pub fn pop<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> Option<DescriptorChain> {
        let mut chain = DescriptorChain::empty(0);
        self.pop_into(mem, &mut chain).then_some(chain)
    }

    /// [`Queue::pop`] into `chain`, which is overwritten in place: for devices that keep
    /// the chains of requests in flight in a table of their own. Returns whether a chain
    /// was taken; when not, `chain` holds nothing of use.
    pub fn pop_into<M: GuestMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        chain: &mut DescriptorChain,
    ) -> bool {
        // Bounded: each round consumes one available entry, and at most a queue's worth.
        for _ in 0..=u32::from(self.max_size) {
            if !self.ready || self.broken {
                return false;
            }
            if self.next_avail == self.avail_shadow && !self.refresh_avail(mem) {
                return false;
            }
            let Some(head) = self.read_avail_entry(mem) else { return false };
            self.next_avail = self.next_avail.wrapping_add(1);
            let src = ChainSource {
                table: self.desc,
                size: self.qsize(),
                indirect: self.features.indirect,
            };
            match chain::walk_into(mem, &src, head, chain) {
                Ok(()) => return true,
                Err(ChainError::HeadOutOfRange(h)) => {
                    // No valid id to complete it with: the queue cannot continue.
                    guest_warn!("queue: head index {} out of range; device needs reset", h);
                    self.broken = true;
                }
                Err(e) => {
                    guest_warn!("queue: bad descriptor chain at head {}: {}", head, e);
                    self.add_used(mem, head, 0);
                }
            }
        }
        false
    }

    /// Puts back the chain most recently returned by [`Queue::pop`], so the next `pop`
    /// returns it again. Only valid before any other `pop`.
    pub fn undo_pop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    /// Re-reads the available index. Returns whether entries are available.
    fn refresh_avail<M: GuestMemory + ?Sized>(&mut self, mem: &mut M) -> bool {
        let Some(mut idx) = self.read_avail_idx(mem) else { return false };
        if idx == self.next_avail
            && self.features.event_idx
            && self.avail_event != Some(self.next_avail)
        {
            // virtio 1.2 §2.7.10: ask for a notification once the driver moves past this
            // entry, then look again in case it already did. Once published, a driver that
            // adds this entry notifies, so an empty ring needs no second publication.
            let at = self.used + RING_ENTRIES + USED_ENTRY * u64::from(self.qsize());
            if mem.write_u16(at, self.next_avail).is_err() {
                self.fail("cannot write avail_event");
                return false;
            }
            self.avail_event = Some(self.next_avail);
            fence(Ordering::SeqCst);
            let Some(again) = self.read_avail_idx(mem) else { return false };
            idx = again;
        }
        let ahead = idx.wrapping_sub(self.next_avail);
        if ahead > self.qsize() {
            guest_warn!(
                "queue: avail idx {} is {} entries ahead of {} (size {}); device needs reset",
                idx,
                ahead,
                self.next_avail,
                self.qsize()
            );
            self.broken = true;
            return false;
        }
        // The ring entries and descriptors are read after the index.
        fence(Ordering::Acquire);
        self.avail_shadow = idx;
        ahead != 0
    }

    fn read_avail_idx<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Option<u16> {
        match mem.read_u16(self.avail + RING_IDX) {
            Ok(v) => Some(v),
            Err(_) => {
                self.fail("cannot read avail idx");
                None
            }
        }
    }

    fn read_avail_entry<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> Option<u16> {
        let slot = self.next_avail % self.qsize();
        let at = self.avail + RING_ENTRIES + AVAIL_ENTRY * u64::from(slot);
        match mem.read_u16(at) {
            Ok(v) => Some(v),
            Err(_) => {
                self.fail("cannot read avail ring");
                None
            }
        }
    }

    /// Guest memory the queue validated became inaccessible: stop the queue.
    fn fail(&mut self, what: &str) {
        log::warn!(target: "virtio", "queue: {}; device needs reset", what);
        self.broken = true;
    }

    /// Returns the chain with head `head` to the driver, `len` bytes written to it
    /// (virtio 1.2 §2.7.8). The used index is published after the entry.
    pub fn add_used<M: GuestMemory + ?Sized>(&mut self, mem: &mut M, head: u16, len: u32) {
        if !self.ready {
            return;
        }
        let size = self.qsize();
        let slot = self.next_used % size;
        let at = self.used + RING_ENTRIES + USED_ENTRY * u64::from(slot);
        let elem = VirtqUsedElem { id: u32::from(head).into(), len: len.into() };
        if mem.write(at, elem.as_bytes()).is_err() {
            self.fail("cannot write used ring");
            return;
        }
        // The entry must be visible before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        if mem.write_u16(self.used + RING_IDX, self.next_used).is_err() {
            self.fail("cannot write used idx");
        }
    }

    /// Whether used buffers were added since the last call and the driver wants to hear about
    /// them: `used_event` with EVENT_IDX (virtio 1.2 §2.7.10), else the avail ring's
    /// VIRTQ_AVAIL_F_NO_INTERRUPT flag (§2.7.7).
    pub fn needs_interrupt<M: GuestMemory + ?Sized>(&mut self, mem: &M) -> bool {
        if !self.ready || self.next_used == self.signalled_used {
            return false;
        }
        // Our used idx write must be ordered before reading the driver's suppression state.
        fence(Ordering::SeqCst);
        let old = self.signalled_used;
        let new = self.next_used;
        self.signalled_used = new;
        if self.features.event_idx {
            let at = self.avail + RING_ENTRIES + AVAIL_ENTRY * u64::from(self.qsize());
            match mem.read_u16(at) {
                // vring_need_event: interrupt if used_event lies in [old, new).
                Ok(event) => new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old),
                Err(_) => true,
            }
        } else {
            match mem.read_u16(self.avail) {
                Ok(flags) => flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0,
                Err(_) => true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SliceMemory;
    use crate::testing::DriverQueue;

    const BASE: u64 = 0x4000_0000;
    const RAM: usize = 0x10000;
    const DATA: u64 = BASE + 0x8000;
    const ALL: u64 = VIRTIO_F_EVENT_IDX | VIRTIO_F_INDIRECT_DESC;

    fn setup(mem: &mut SliceMemory<'_>, size: u16, features: u64) -> (Queue, DriverQueue) {
        let drv = DriverQueue::at(BASE, size);
        let mut q = Queue::new(256);
        drv.configure(&mut q);
        q.enable(mem, features).unwrap();
        (q, drv)
    }

    #[test]
    fn rejects_bad_sizes() {
        let mut ram = vec![0u8; RAM];
        let mem = SliceMemory::new(BASE, &mut ram);
        let mut q = Queue::new(256);
        DriverQueue::at(BASE, 16).configure(&mut q);
        for bad in [0, 3, 24, 512] {
            q.set_size(bad);
            assert_eq!(q.enable(&mem, 0), Err(SetupError::BadSize(bad)));
            assert!(!q.ready());
        }
        q.set_size(1);
        assert!(q.enable(&mem, 0).is_ok());
    }

    #[test]
    fn rejects_misaligned_areas() {
        let mut ram = vec![0u8; RAM];
        let mem = SliceMemory::new(BASE, &mut ram);
        let mut q = Queue::new(16);
        DriverQueue::at(BASE, 16).configure(&mut q);
        q.set_desc_table(BASE + 8);
        assert_eq!(q.enable(&mem, 0), Err(SetupError::Misaligned(Area::Descriptors, BASE + 8)));
        q.set_desc_table(BASE);
        q.set_avail_ring(BASE + 0x1001);
        assert!(matches!(q.enable(&mem, 0), Err(SetupError::Misaligned(Area::Avail, _))));
        q.set_avail_ring(BASE + 0x1000);
        q.set_used_ring(BASE + 0x2002);
        assert!(matches!(q.enable(&mem, 0), Err(SetupError::Misaligned(Area::Used, _))));
    }

    #[test]
    fn rejects_areas_outside_ram() {
        let mut ram = vec![0u8; RAM];
        let mem = SliceMemory::new(BASE, &mut ram);
        let mut q = Queue::new(16);
        DriverQueue::at(BASE, 16).configure(&mut q);
        q.set_used_ring(BASE + RAM as u64 - 16);
        assert!(matches!(q.enable(&mem, 0), Err(SetupError::OutsideMemory(Area::Used, _))));
        q.set_used_ring(BASE + 0x2000);
        q.set_desc_table(0x1000);
        assert!(matches!(q.enable(&mem, 0), Err(SetupError::OutsideMemory(Area::Descriptors, _))));
        q.set_desc_table(!15);
        assert!(q.enable(&mem, 0).is_err());
    }

    #[test]
    fn pops_chains_and_publishes_used() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 4, 0);
        assert!(q.pop(&mut mem).is_none());
        let h = drv.add_chain(&mut mem, &[(DATA, 8, false), (DATA + 8, 4, true)]);
        let c = q.pop(&mut mem).unwrap();
        assert_eq!((c.head(), c.readable_len(), c.writable_len()), (h, 8, 4));
        assert!(q.pop(&mut mem).is_none());
        q.add_used(&mut mem, h, 4);
        assert_eq!(drv.pop_used(&mem), Some((u32::from(h), 4)));
        assert_eq!(q.used_index(), 1);
        assert!(q.needs_interrupt(&mem));
        assert!(!q.needs_interrupt(&mem), "nothing new since the last check");
    }

    #[test]
    fn ring_indices_wrap_modulo_size() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 2, 0);
        for round in 0..70_000u32 {
            let h = drv.add_chain(&mut mem, &[(DATA, 1, true)]);
            let c = q.pop(&mut mem).expect("chain");
            assert_eq!(c.head(), h);
            q.add_used(&mut mem, h, round & 0xff);
            assert_eq!(drv.pop_used(&mem), Some((u32::from(h), round & 0xff)));
        }
    }

    #[test]
    fn self_referencing_chain_is_completed_with_len_0() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 4, 0);
        drv.set_desc(&mut mem, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
        drv.publish(&mut mem, 1);
        let good = drv.add_chain(&mut mem, &[(DATA, 4, true)]);
        let c = q.pop(&mut mem).expect("the bad chain is skipped");
        assert_eq!(c.head(), good);
        assert_eq!(drv.pop_used(&mem), Some((1, 0)));
        assert!(!q.needs_reset());
    }

    #[test]
    fn chain_outside_ram_and_nested_indirect_are_completed_with_len_0() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 8, ALL);
        let h = drv.add_chain(&mut mem, &[(BASE + RAM as u64, 4, false)]);
        assert!(q.pop(&mut mem).is_none());
        assert_eq!(drv.pop_used(&mem), Some((u32::from(h), 0)));
        let table = DATA + 0x100;
        drv.set_desc(&mut mem, 5, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
        mem.write(table, &Descriptor { addr: table, len: 16, flags: 4, next: 0 }.to_bytes())
            .unwrap();
        drv.publish(&mut mem, 5);
        assert!(q.pop(&mut mem).is_none());
        assert_eq!(drv.pop_used(&mem), Some((5, 0)));
    }

    #[test]
    fn valid_indirect_chain_is_popped() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 8, ALL);
        let table = DATA + 0x100;
        let d0 = Descriptor { addr: DATA, len: 16, flags: VIRTQ_DESC_F_NEXT, next: 1 };
        let d1 = Descriptor { addr: DATA + 16, len: 1, flags: VIRTQ_DESC_F_WRITE, next: 0 };
        mem.write(table, &d0.to_bytes()).unwrap();
        mem.write(table + 16, &d1.to_bytes()).unwrap();
        drv.set_desc(&mut mem, 3, table, 32, VIRTQ_DESC_F_INDIRECT, 0);
        drv.publish(&mut mem, 3);
        let c = q.pop(&mut mem).unwrap();
        assert_eq!((c.head(), c.readable_len(), c.writable_len()), (3, 16, 1));
    }

    #[test]
    fn avail_idx_jump_stops_the_queue() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 4, 0);
        drv.set_avail_idx(&mut mem, 5);
        assert!(q.pop(&mut mem).is_none());
        assert!(q.needs_reset());
        drv.set_avail_idx(&mut mem, 1);
        assert!(q.pop(&mut mem).is_none(), "stays stopped until reset");
        q.reset();
        assert!(!q.needs_reset() && !q.ready());
    }

    #[test]
    fn head_out_of_range_stops_the_queue() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 4, 0);
        drv.publish(&mut mem, 4);
        assert!(q.pop(&mut mem).is_none());
        assert!(q.needs_reset());
    }

    #[test]
    fn event_idx_publishes_avail_event_and_honours_used_event() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 8, VIRTIO_F_EVENT_IDX);
        assert!(q.pop(&mut mem).is_none());
        assert_eq!(drv.avail_event(&mem), 0);
        for _ in 0..3 {
            drv.add_chain(&mut mem, &[(DATA, 1, true)]);
        }
        drv.set_used_event(&mut mem, 2); // interrupt when used idx passes 2
        for _ in 0..2 {
            let c = q.pop(&mut mem).unwrap();
            q.add_used(&mut mem, c.head(), 0);
        }
        assert!(!q.needs_interrupt(&mem), "used idx 2 has not passed used_event 2");
        let c = q.pop(&mut mem).unwrap();
        q.add_used(&mut mem, c.head(), 0);
        assert!(q.needs_interrupt(&mem));
        assert!(q.pop(&mut mem).is_none());
        assert_eq!(drv.avail_event(&mem), 3, "notify me when entry 3 is added");
        // Published once: looking at the empty ring again does not write it (a guest that
        // scribbles over it only loses its own notifications)...
        drv.set_avail_event_for_test(&mut mem, 77);
        assert!(q.pop(&mut mem).is_none());
        assert_eq!(drv.avail_event(&mem), 77);
        // ...but every new position is published, and an entry added after the first look is
        // still found by the second.
        drv.add_chain(&mut mem, &[(DATA, 1, true)]);
        let c = q.pop(&mut mem).unwrap();
        q.add_used(&mut mem, c.head(), 0);
        assert!(q.pop(&mut mem).is_none());
        assert_eq!(drv.avail_event(&mem), 4);
    }

    #[test]
    fn no_interrupt_flag_suppresses_without_event_idx() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 8, 0);
        drv.set_avail_flags(&mut mem, VIRTQ_AVAIL_F_NO_INTERRUPT);
        let h = drv.add_chain(&mut mem, &[(DATA, 1, true)]);
        q.pop(&mut mem).unwrap();
        q.add_used(&mut mem, h, 1);
        assert!(!q.needs_interrupt(&mem));
        drv.set_avail_flags(&mut mem, 0);
        let h = drv.add_chain(&mut mem, &[(DATA, 1, true)]);
        q.pop(&mut mem).unwrap();
        q.add_used(&mut mem, h, 1);
        assert!(q.needs_interrupt(&mem));
    }

    #[test]
    fn undo_pop_returns_the_same_chain() {
        let mut ram = vec![0u8; RAM];
        let mut mem = SliceMemory::new(BASE, &mut ram);
        let (mut q, mut drv) = setup(&mut mem, 8, 0);
        let h = drv.add_chain(&mut mem, &[(DATA, 1, true)]);
        assert_eq!(q.pop(&mut mem).unwrap().head(), h);
        q.undo_pop();
        assert_eq!(q.pop(&mut mem).unwrap().head(), h);
    }
}
