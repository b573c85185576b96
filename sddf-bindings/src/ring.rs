//! Index arithmetic of an sDDF single-producer/single-consumer ring.
//!
//! Indices count entries (sDDF queues) or bytes (the vsock byte ring,
//! [`crate::vsock`]) and are free-running `u32`s: length = `tail - head` (wrapping), slot =
//! `index % capacity` (a mask, capacity being a power of two). Each side keeps
//! a private shadow of the index it owns and publishes it with `Release`; it
//! reads the peer's index with `Acquire` (sddf-abi.md §1.1, §1.3). A peer
//! index that puts the length above the capacity is corrupt: the queue is
//! then treated as full (producer) or empty (consumer), and logged once.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

use log::warn;

use crate::{Error, SharedAtomic};

/// A queue capacity checked to be a non-zero power of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capacity(u32);

impl Capacity {
    pub(crate) fn new(capacity: u32) -> Result<Self, Error> {
        if capacity.is_power_of_two() {
            Ok(Capacity(capacity))
        } else {
            Err(Error::BadCapacity)
        }
    }

    pub(crate) fn get(self) -> u32 {
        self.0
    }

    /// The slot of a free-running index (`index % capacity`).
    pub(crate) fn slot(self, index: u32) -> usize {
        (index & (self.0 - 1)) as usize
    }
}

/// Whether a corrupt peer index has been logged, to log once per episode.
#[derive(Debug, Default)]
struct CorruptionLog(Cell<bool>);

impl CorruptionLog {
    /// `len` if it is a possible length, else `None` (logged once).
    #[inline]
    fn check(&self, len: u32, capacity: Capacity, queue: &str) -> Option<u32> {
        if len <= capacity.get() {
            self.0.set(false);
            return Some(len);
        }
        self.corrupt(len, capacity, queue);
        None
    }

    /// The slow path of [`CorruptionLog::check`], kept out of the hot one.
    #[cold]
    #[inline(never)]
    fn corrupt(&self, len: u32, capacity: Capacity, queue: &str) {
        if !self.0.replace(true) {
            warn!("{queue}: peer index is {len} away from ours (capacity {}), ignoring the queue until it is sane", capacity.get());
        }
    }
}

/// The producer's view: owns `tail`, reads `head`.
#[derive(Debug)]
pub(crate) struct Producer {
    tail: u32,
    tail_index: SharedAtomic<AtomicU32>,
    head_index: SharedAtomic<AtomicU32>,
    capacity: Capacity,
    log: CorruptionLog,
    /// Free entries as last read from the peer's `head`, less those
    /// published since: a lower bound (the consumer only frees more).
    room: Cell<u32>,
    queue: &'static str,
}

impl Producer {
    /// Starts from the `tail` currently in shared memory.
    pub(crate) fn new(
        tail_index: SharedAtomic<AtomicU32>,
        head_index: SharedAtomic<AtomicU32>,
        capacity: Capacity,
        queue: &'static str,
    ) -> Self {
        let tail = tail_index.load(Ordering::Relaxed);
        let log = CorruptionLog::default();
        Producer { tail, tail_index, head_index, capacity, log, room: Cell::new(0), queue }
    }

    /// Free entries; 0 when the peer's `head` is corrupt.
    pub(crate) fn free(&self) -> u32 {
        let head = self.head_index.load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        let free = match self.log.check(used, self.capacity, self.queue) {
            Some(used) => self.capacity.get() - used,
            None => 0,
        };
        self.room.set(free);
        free
    }

    /// Whether one entry fits: reads the peer's `head` only when the room
    /// seen last time is used up.
    pub(crate) fn has_room(&self) -> bool {
        self.room.get() > 0 || self.free() > 0
    }

    /// The slot the next entry goes to.
    pub(crate) fn slot(&self) -> usize {
        self.capacity.slot(self.tail)
    }

    /// Our `tail`: the free-running index the next entry goes to.
    pub(crate) fn index(&self) -> u32 {
        self.tail
    }

    /// Publishes `count` entries written after the current tail (`Release`).
    pub(crate) fn publish(&mut self, count: u32) {
        self.room.set(self.room.get().saturating_sub(count));
        self.tail = self.tail.wrapping_add(count);
        self.tail_index.store(self.tail, Ordering::Release);
    }
}

/// The consumer's view: owns `head`, reads `tail`.
#[derive(Debug)]
pub(crate) struct Consumer {
    head: u32,
    head_index: SharedAtomic<AtomicU32>,
    tail_index: SharedAtomic<AtomicU32>,
    capacity: Capacity,
    log: CorruptionLog,
    /// Entries as last read from the peer's `tail`, less those released
    /// since: a lower bound (the producer only adds more).
    seen: Cell<u32>,
    queue: &'static str,
}

impl Consumer {
    /// Starts from the `head` currently in shared memory.
    pub(crate) fn new(
        head_index: SharedAtomic<AtomicU32>,
        tail_index: SharedAtomic<AtomicU32>,
        capacity: Capacity,
        queue: &'static str,
    ) -> Self {
        let head = head_index.load(Ordering::Relaxed);
        let log = CorruptionLog::default();
        Consumer { head, head_index, tail_index, capacity, log, seen: Cell::new(0), queue }
    }

    /// Entries ready to read; 0 when the peer's `tail` is corrupt.
    pub(crate) fn available(&self) -> u32 {
        let tail = self.tail_index.load(Ordering::Acquire);
        let len =
            self.log.check(tail.wrapping_sub(self.head), self.capacity, self.queue).unwrap_or(0);
        self.seen.set(len);
        len
    }

    /// Whether an entry is ready: reads the peer's `tail` only when the
    /// entries seen last time are used up, so a batch costs one read.
    pub(crate) fn has_entry(&self) -> bool {
        self.seen.get() > 0 || self.available() > 0
    }

    /// The slot of the next entry to read.
    pub(crate) fn slot(&self) -> usize {
        self.capacity.slot(self.head)
    }

    /// Our `head`: the free-running index of the next entry to read.
    pub(crate) fn index(&self) -> u32 {
        self.head
    }

    /// Releases `count` entries read from the current head (`Release`).
    pub(crate) fn release(&mut self, count: u32) {
        self.seen.set(self.seen.get().saturating_sub(count));
        self.head = self.head.wrapping_add(count);
        self.head_index.store(self.head, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SharedRegion;

    fn pair(capacity: u32) -> (Producer, Consumer, SharedRegion) {
        let region = SharedRegion::leak_zeroed(8);
        let cap = Capacity::new(capacity).unwrap();
        let tail = || region.atomic_u32(0).unwrap();
        let head = || region.atomic_u32(4).unwrap();
        let producer = Producer::new(tail(), head(), cap, "test");
        let consumer = Consumer::new(head(), tail(), cap, "test");
        (producer, consumer, region)
    }

    #[test]
    fn capacity_must_be_a_power_of_two() {
        assert_eq!(Capacity::new(0), Err(Error::BadCapacity));
        assert_eq!(Capacity::new(12), Err(Error::BadCapacity));
        assert_eq!(Capacity::new(1 << 31).map(Capacity::get), Ok(1 << 31));
        assert_eq!(Capacity::new(8).unwrap().slot(u32::MAX), 7);
    }

    #[test]
    fn publish_and_release_move_the_shared_indices() {
        let (mut producer, mut consumer, region) = pair(4);
        producer.publish(3);
        assert_eq!(region.atomic_u32(0).unwrap().load(Ordering::Relaxed), 3);
        assert_eq!((producer.free(), consumer.available()), (1, 3));
        consumer.release(2);
        assert_eq!(region.atomic_u32(4).unwrap().load(Ordering::Relaxed), 2);
        assert_eq!((producer.free(), consumer.available(), consumer.slot()), (3, 1, 2));
    }

    #[test]
    fn seen_entries_and_room_are_lower_bounds_read_once_per_batch() {
        let (mut producer, mut consumer, region) = pair(4);
        assert!(!consumer.has_entry() && producer.has_room());
        producer.publish(2);
        assert!(consumer.has_entry());
        // A peer that moves its index back after we read it changes nothing
        // we already counted; we re-read once those are used.
        region.atomic_u32(0).unwrap().store(0, Ordering::Relaxed);
        assert!(consumer.has_entry());
        consumer.release(2);
        assert!(!consumer.has_entry(), "re-read: the tail now says empty");
        region.atomic_u32(0).unwrap().store(2, Ordering::Relaxed);
        assert_eq!(producer.free(), 4);
        producer.publish(4);
        assert!(!producer.has_room(), "re-read: the consumer freed nothing");
        consumer.release(1);
        assert!(producer.has_room());
    }

    #[test]
    fn corrupt_peer_index_reads_as_full_or_empty() {
        let (producer, consumer, region) = pair(4);
        region.atomic_u32(4).unwrap().store(100, Ordering::Relaxed);
        assert_eq!(producer.free(), 0);
        region.atomic_u32(4).unwrap().store(0, Ordering::Relaxed);
        region.atomic_u32(0).unwrap().store(5, Ordering::Relaxed);
        assert_eq!(consumer.available(), 0);
        region.atomic_u32(0).unwrap().store(4, Ordering::Relaxed);
        assert_eq!(consumer.available(), 4);
    }
}
