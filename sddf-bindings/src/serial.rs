//! Serial byte queues: `serial_queue_t` and its handle
//! (`SD include/sddf/serial/queue.h`, sddf-abi.md §2).
//!
//! A connection is two regions: a 12-byte queue header ([`SerialQueue`]) and
//! a separate data region of `capacity` bytes, byte `i` living at
//! `data[i % capacity]`. The capacity is the data region's size from the
//! config (`serial_connection_resource_t.data.size`). Each side takes the
//! index it owns from shared memory when the handle is created and then keeps
//! a private copy; a peer index more than `capacity` away from it reads as a
//! full (producer) or empty (consumer) queue.
//!
//! Signalling protocol (sddf-abi.md §1.5, §2.2): the producer always notifies
//! the consumer after publishing. When the producer runs out of space it calls
//! [`SerialQueueHandle::request_consumer_signal`]; if that reports space, it
//! carries on (optionally cancelling the request), else it waits for the
//! consumer's notification. After consuming, the consumer notifies the
//! producer if [`SerialQueueHandle::require_producer_signal`] says so, calling
//! [`SerialQueueHandle::cancel_producer_signal`] first.

use core::mem::offset_of;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use crate::ring::{Capacity, Consumer, Producer};
use crate::{Error, SharedAtomic, SharedRegion};

/// Layout of `serial_queue_t` (12 bytes, in the queue region).
#[repr(C)]
#[derive(Debug, Default)]
pub struct SerialQueue {
    /// Next index to write; written by the producer only.
    pub tail: AtomicU32,
    /// Next index to read; written by the consumer only.
    pub head: AtomicU32,
    /// 0: the producer wants a signal when space frees up; 1: cancelled.
    pub producer_signalled: AtomicU32,
}

const _: () = assert!(size_of::<SerialQueue>() == 12);
const _: () = assert!(offset_of!(SerialQueue, tail) == 0);
const _: () = assert!(offset_of!(SerialQueue, head) == 4);
const _: () = assert!(offset_of!(SerialQueue, producer_signalled) == 8);

/// One side's handle on a serial queue (`serial_queue_handle_t`).
///
/// The same handle type serves the producer and the consumer; each side uses
/// its half of the methods. The capacity lives here, never in shared memory.
#[derive(Debug)]
pub struct SerialQueueHandle {
    producer: Producer,
    consumer: Consumer,
    producer_signalled: SharedAtomic<AtomicU32>,
    data: SharedRegion,
    capacity: Capacity,
}

impl SerialQueueHandle {
    /// A handle on the queue header `queue` and the byte ring `data`.
    ///
    /// `capacity` is the config's `data.size`: it must be a power of two
    /// ([`Error::BadCapacity`]) and fit in `data`, and `queue` must hold a
    /// 4-byte aligned [`SerialQueue`] ([`Error::RegionTooSmall`],
    /// [`Error::Misaligned`]).
    pub fn new(queue: SharedRegion, data: SharedRegion, capacity: u32) -> Result<Self, Error> {
        let capacity = Capacity::new(capacity)?;
        if queue.len() < size_of::<SerialQueue>() || data.len() < capacity.get() as usize {
            return Err(Error::RegionTooSmall);
        }
        let tail = || queue.atomic_u32(offset_of!(SerialQueue, tail));
        let head = || queue.atomic_u32(offset_of!(SerialQueue, head));
        Ok(SerialQueueHandle {
            producer: Producer::new(tail()?, head()?, capacity, "sDDF serial queue"),
            consumer: Consumer::new(head()?, tail()?, capacity, "sDDF serial queue"),
            producer_signalled: queue.atomic_u32(offset_of!(SerialQueue, producer_signalled))?,
            data: data.subregion(0, capacity.get() as usize)?,
            capacity,
        })
    }

    /// The number of bytes the ring holds.
    pub fn capacity(&self) -> u32 {
        self.capacity.get()
    }

    /// Producer: bytes that can be enqueued now (0 if `head` is corrupt).
    pub fn free_space(&self) -> u32 {
        self.producer.free()
    }

    /// Producer: whether no byte can be enqueued now.
    pub fn is_full(&self) -> bool {
        self.free_space() == 0
    }

    /// Producer: enqueues as much of `bytes` as fits, publishing `tail` once.
    ///
    /// Returns the number of bytes enqueued (a prefix of `bytes`). Corresponds
    /// to `serial_enqueue_batch`. Notify the consumer afterwards.
    pub fn enqueue_batch(&mut self, bytes: &[u8]) -> usize {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let count = len.min(self.producer.free());
        if count == 0 {
            return 0;
        }
        let bytes = &bytes[..count as usize];
        let start = self.producer.slot();
        let (first, second) = bytes.split_at(bytes.len().min(self.data.len() - start));
        if self.data.write(start, first).and_then(|()| self.data.write(0, second)).is_err() {
            return 0;
        }
        self.producer.publish(count);
        bytes.len()
    }

    /// Producer: asks the consumer for a signal once it has freed space.
    ///
    /// Stores 0 in `producer_signalled`, then a sequentially consistent fence,
    /// then re-checks the free space. Returns `true` if there is space now:
    /// the caller must then go on producing instead of waiting (it may call
    /// [`SerialQueueHandle::cancel_producer_signal`]); otherwise it can wait
    /// for the notification. Corresponds to `serial_request_consumer_signal`.
    pub fn request_consumer_signal(&self) -> bool {
        self.producer_signalled.store(0, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.free_space() > 0
    }

    /// Consumer: bytes ready to dequeue (0 if `tail` is corrupt).
    pub fn len(&self) -> u32 {
        self.consumer.available()
    }

    /// Consumer: whether no byte is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Consumer: dequeues up to `buf.len()` bytes, publishing `head` once.
    ///
    /// Returns the number of bytes written to the start of `buf`.
    pub fn dequeue_batch(&mut self, buf: &mut [u8]) -> usize {
        let count = self.peek_batch(buf);
        // `count <= available <= capacity`, a u32.
        self.consumer.release(count as u32);
        count
    }

    /// Consumer: copies up to `buf.len()` ready bytes into `buf` but leaves
    /// them in the queue; [`SerialQueueHandle::skip`] takes them. For a
    /// consumer that can only take bytes once it has somewhere to put them.
    ///
    /// Returns the number of bytes written to the start of `buf`.
    pub fn peek_batch(&self, buf: &mut [u8]) -> usize {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let count = len.min(self.consumer.available());
        if count == 0 {
            return 0;
        }
        let buf = &mut buf[..count as usize];
        let start = self.consumer.slot();
        let split = buf.len().min(self.data.len() - start);
        let (first, second) = buf.split_at_mut(split);
        if self.data.read(start, first).and_then(|()| self.data.read(0, second)).is_err() {
            return 0;
        }
        buf.len()
    }

    /// Consumer: takes `count` bytes (at most the ready ones), publishing
    /// `head` once.
    pub fn skip(&mut self, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX).min(self.consumer.available());
        if count > 0 {
            self.consumer.release(count);
        }
    }

    /// Consumer: whether the producer asked for a signal.
    ///
    /// A sequentially consistent fence, then a relaxed load of
    /// `producer_signalled`; `true` when it is 0. If so, call
    /// [`SerialQueueHandle::cancel_producer_signal`] and notify the producer.
    /// Corresponds to `serial_require_consumer_signal`.
    pub fn require_producer_signal(&self) -> bool {
        fence(Ordering::SeqCst);
        self.producer_signalled.load(Ordering::Relaxed) == 0
    }

    /// Marks the producer's signal request as served (stores 1).
    ///
    /// Corresponds to `serial_cancel_consumer_signal`.
    pub fn cancel_producer_signal(&self) {
        self.producer_signalled.store(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Notification;
    use std::sync::Arc;

    const TAIL: usize = offset_of!(SerialQueue, tail);
    const HEAD: usize = offset_of!(SerialQueue, head);
    const FLAG: usize = offset_of!(SerialQueue, producer_signalled);

    /// Shared memory for one queue; `producer`/`consumer` are two handles on it.
    struct Fixture {
        queue: SharedRegion,
        data: SharedRegion,
        capacity: u32,
    }

    impl Fixture {
        fn new(capacity: u32) -> Self {
            Fixture {
                queue: SharedRegion::leak_zeroed(12),
                data: SharedRegion::leak_zeroed(capacity as usize),
                capacity,
            }
        }

        /// Sets both indices, as if `start` bytes had passed already.
        fn starting_at(capacity: u32, start: u32) -> Self {
            let fixture = Fixture::new(capacity);
            fixture.set(TAIL, start);
            fixture.set(HEAD, start);
            fixture
        }

        fn handle(&self) -> SerialQueueHandle {
            SerialQueueHandle::new(self.queue.clone(), self.data.clone(), self.capacity).unwrap()
        }

        fn set(&self, field: usize, value: u32) {
            self.queue.atomic_u32(field).unwrap().store(value, Ordering::Relaxed);
        }

        fn get(&self, field: usize) -> u32 {
            self.queue.atomic_u32(field).unwrap().load(Ordering::Relaxed)
        }

        fn data(&self) -> Vec<u8> {
            let mut out = vec![0; self.data.len()];
            self.data.read(0, &mut out).unwrap();
            out
        }
    }

    #[test]
    fn peeked_bytes_stay_until_skipped_across_the_wrap() {
        let f = Fixture::starting_at(8, u32::MAX - 2);
        let (mut producer, mut consumer) = (f.handle(), f.handle());
        assert_eq!(producer.enqueue_batch(b"abcdef"), 6);
        let mut buf = [0u8; 4];
        assert_eq!(consumer.peek_batch(&mut buf), 4);
        assert_eq!(&buf, b"abcd");
        assert_eq!(consumer.len(), 6, "peeking takes nothing");
        consumer.skip(3);
        assert_eq!(consumer.len(), 3);
        consumer.skip(100);
        assert_eq!(consumer.len(), 0, "skip takes at most what is there");
        assert_eq!(producer.free_space(), 8);
    }

    #[test]
    fn layout_matches_serial_queue_t() {
        assert_eq!(size_of::<SerialQueue>(), 12);
        assert_eq!(align_of::<SerialQueue>(), 4);
        assert_eq!((TAIL, HEAD, FLAG), (0, 4, 8));
    }

    #[test]
    fn rejects_bad_capacity_and_small_regions() {
        let fixture = Fixture::new(64);
        let new = |queue: &SharedRegion, data: &SharedRegion, capacity| {
            SerialQueueHandle::new(queue.clone(), data.clone(), capacity).err()
        };
        assert_eq!(new(&fixture.queue, &fixture.data, 48), Some(Error::BadCapacity));
        assert_eq!(new(&fixture.queue, &fixture.data, 0), Some(Error::BadCapacity));
        assert_eq!(new(&fixture.queue, &fixture.data, 128), Some(Error::RegionTooSmall));
        let short = fixture.queue.subregion(0, 8).unwrap();
        assert_eq!(new(&short, &fixture.data, 64), Some(Error::RegionTooSmall));
        let odd = SharedRegion::leak_zeroed(16).subregion(2, 12).unwrap();
        assert_eq!(new(&odd, &fixture.data, 64), Some(Error::Misaligned));
    }

    #[test]
    fn empty_queue_has_all_space_and_nothing_to_read() {
        let fixture = Fixture::new(16);
        let mut handle = fixture.handle();
        assert_eq!((handle.free_space(), handle.len(), handle.capacity()), (16, 0, 16));
        assert!(handle.is_empty() && !handle.is_full());
        assert_eq!(handle.dequeue_batch(&mut [0; 4]), 0);
    }

    #[test]
    fn enqueue_then_dequeue_round_trips() {
        let fixture = Fixture::new(16);
        let (mut producer, mut consumer) = (fixture.handle(), fixture.handle());
        assert_eq!(producer.enqueue_batch(b"hello"), 5);
        assert_eq!((fixture.get(TAIL), consumer.len()), (5, 5));
        let mut buf = [0u8; 8];
        assert_eq!(consumer.dequeue_batch(&mut buf), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!((fixture.get(HEAD), producer.free_space()), (5, 16));
    }

    #[test]
    fn fills_to_capacity_then_refuses() {
        let fixture = Fixture::new(8);
        let (mut producer, mut consumer) = (fixture.handle(), fixture.handle());
        assert_eq!(producer.enqueue_batch(b"0123456789"), 8);
        assert!(producer.is_full());
        assert_eq!(producer.enqueue_batch(b"x"), 0);
        assert_eq!(fixture.get(TAIL), 8);
        let mut buf = [0u8; 3];
        assert_eq!(consumer.dequeue_batch(&mut buf), 3);
        assert_eq!(&buf, b"012");
        assert_eq!(producer.enqueue_batch(b"abcd"), 3);
        assert_eq!(fixture.data(), b"abc34567");
    }

    #[test]
    fn batch_wraps_the_data_region_with_two_copies() {
        let fixture = Fixture::starting_at(8, 6);
        let (mut producer, mut consumer) = (fixture.handle(), fixture.handle());
        assert_eq!(producer.enqueue_batch(b"ABCDE"), 5);
        assert_eq!(fixture.data(), b"CDE\0\0\0AB");
        let mut buf = [0u8; 8];
        assert_eq!(consumer.dequeue_batch(&mut buf), 5);
        assert_eq!(&buf[..5], b"ABCDE");
        assert_eq!((fixture.get(TAIL), fixture.get(HEAD)), (11, 11));
    }

    #[test]
    fn indices_wrap_around_u32_max() {
        let fixture = Fixture::starting_at(16, u32::MAX - 2);
        let (mut producer, mut consumer) = (fixture.handle(), fixture.handle());
        assert_eq!(producer.enqueue_batch(b"0123456789abcdefXYZ"), 16);
        assert_eq!(fixture.get(TAIL), 13);
        assert!(producer.is_full());
        assert_eq!(consumer.len(), 16);
        let mut buf = [0u8; 32];
        assert_eq!(consumer.dequeue_batch(&mut buf[..10]), 10);
        assert_eq!(fixture.get(HEAD), 7);
        assert_eq!(consumer.dequeue_batch(&mut buf[10..]), 6);
        assert_eq!(&buf[..16], b"0123456789abcdef");
        assert_eq!((producer.free_space(), consumer.len()), (16, 0));
    }

    #[test]
    fn hostile_head_makes_the_queue_look_full() {
        let fixture = Fixture::new(16);
        let mut producer = fixture.handle();
        producer.enqueue_batch(b"abc");
        for head in [4, 100, u32::MAX - 20, 0x8000_0003] {
            fixture.set(HEAD, head);
            assert_eq!(producer.free_space(), 0, "head {head}");
            assert_eq!(producer.enqueue_batch(b"zz"), 0);
            assert!(!producer.request_consumer_signal());
        }
        assert_eq!(fixture.get(TAIL), 3);
        fixture.set(HEAD, 1);
        assert_eq!(producer.free_space(), 14);
    }

    #[test]
    fn hostile_tail_makes_the_queue_look_empty() {
        let fixture = Fixture::new(16);
        let mut consumer = fixture.handle();
        let mut buf = [0u8; 64];
        for tail in [17, 1000, u32::MAX, 0x8000_0000] {
            fixture.set(TAIL, tail);
            assert_eq!(consumer.len(), 0, "tail {tail}");
            assert_eq!(consumer.dequeue_batch(&mut buf), 0);
        }
        assert_eq!(fixture.get(HEAD), 0);
        fixture.set(TAIL, 16);
        assert_eq!(consumer.dequeue_batch(&mut buf), 16);
    }

    #[test]
    fn random_hostile_indices_never_escape_the_ring() {
        let fixture = Fixture::new(8);
        let (mut producer, mut consumer) = (fixture.handle(), fixture.handle());
        let mut rng = fastrand::Rng::with_seed(0x1234_5678);
        let mut next = || rng.u32(..);
        let mut buf = [0u8; 32];
        for _ in 0..10_000 {
            let (field, value) = (if next() % 2 == 0 { TAIL } else { HEAD }, next());
            fixture.set(field, (value % 32) ^ (value & 0xffff_0000));
            assert!(producer.enqueue_batch(&[7; 20]) <= 8);
            assert!(consumer.dequeue_batch(&mut buf) <= 8);
            assert!(producer.free_space() <= 8 && consumer.len() <= 8);
        }
    }

    #[test]
    fn producer_republishes_its_own_tail_after_peer_tampering() {
        let fixture = Fixture::new(8);
        let mut producer = fixture.handle();
        producer.enqueue_batch(b"ab");
        fixture.set(TAIL, 1000);
        producer.enqueue_batch(b"c");
        assert_eq!(fixture.get(TAIL), 3);
        assert_eq!(&fixture.data()[..3], b"abc");
    }

    #[test]
    fn signal_flag_starts_as_wanted_and_cancel_clears_it() {
        let fixture = Fixture::new(8);
        let consumer = fixture.handle();
        assert!(consumer.require_producer_signal());
        consumer.cancel_producer_signal();
        assert_eq!(fixture.get(FLAG), 1);
        assert!(!consumer.require_producer_signal());
    }

    #[test]
    fn request_reports_whether_space_is_free_now() {
        let fixture = Fixture::new(4);
        let (mut producer, consumer) = (fixture.handle(), fixture.handle());
        consumer.cancel_producer_signal();
        assert!(producer.request_consumer_signal());
        assert_eq!(fixture.get(FLAG), 0);
        producer.enqueue_batch(b"full");
        consumer.cancel_producer_signal();
        assert!(!producer.request_consumer_signal());
        assert!(consumer.require_producer_signal());
    }

    #[test]
    fn recheck_after_request_catches_space_freed_in_between() {
        let fixture = Fixture::new(4);
        let (mut producer, mut consumer) = (fixture.handle(), fixture.handle());
        consumer.cancel_producer_signal();
        producer.enqueue_batch(b"full");
        assert_eq!(producer.enqueue_batch(b"more"), 0);
        // The consumer drains and checks the flag before the producer sets it.
        consumer.dequeue_batch(&mut [0; 4]);
        assert!(!consumer.require_producer_signal());
        // No notification will come: the re-check must see the space.
        assert!(producer.request_consumer_signal());
        producer.cancel_producer_signal();
        assert_eq!(producer.enqueue_batch(b"more"), 4);
    }

    fn pattern(i: usize) -> u8 {
        (i % 251) as u8
    }

    fn produce_all(
        mut queue: SerialQueueHandle,
        total: usize,
        me: &Notification,
        peer: &Notification,
    ) {
        let (mut sent, mut chunk) = (0, [0u8; 97]);
        while sent < total {
            let len = (1 + sent % 97).min(total - sent);
            for (i, byte) in chunk[..len].iter_mut().enumerate() {
                *byte = pattern(sent + i);
            }
            let n = queue.enqueue_batch(&chunk[..len]);
            sent += n;
            if n > 0 {
                peer.notify();
            } else if !queue.request_consumer_signal() {
                me.wait("producer");
            }
        }
    }

    fn consume_all(
        mut queue: SerialQueueHandle,
        total: usize,
        me: &Notification,
        peer: &Notification,
    ) {
        let (mut received, mut buf) = (0, [0u8; 61]);
        while received < total {
            let n = queue.dequeue_batch(&mut buf[..1 + received % 61]);
            for (i, byte) in buf[..n].iter().enumerate() {
                assert_eq!(*byte, pattern(received + i), "byte {}", received + i);
            }
            received += n;
            if queue.require_producer_signal() {
                queue.cancel_producer_signal();
                peer.notify();
            }
            if n == 0 {
                me.wait("consumer");
            }
        }
    }

    #[test]
    fn threads_stream_a_million_bytes_through_a_small_ring() {
        const TOTAL: usize = 1_000_000;
        let fixture = Fixture::starting_at(64, u32::MAX - 1000);
        let (producer, consumer) = (fixture.handle(), fixture.handle());
        let to_producer = Arc::new(Notification::default());
        let to_consumer = Arc::new(Notification::default());
        let (p_me, p_peer) = (to_producer.clone(), to_consumer.clone());
        let thread = std::thread::spawn(move || produce_all(producer, TOTAL, &p_me, &p_peer));
        consume_all(consumer, TOTAL, &to_consumer, &to_producer);
        thread.join().unwrap();
        assert_eq!(fixture.get(TAIL), fixture.get(HEAD));
        assert_eq!(fixture.get(TAIL), (u32::MAX - 1000).wrapping_add(TOTAL as u32));
    }
}
