//! A VMM-to-VMM packet channel for virtio-vsock between two guests.
//!
//! This is our own ABI, not sDDF's (docs/vsock.md has the full layout and
//! the rules). Each direction is one shared region: a 256-byte control
//! header, producer fields and consumer fields on separate 128-byte lines
//! ([`RingHeader`]), then a byte ring whose capacity is the largest power of
//! two that fits in the rest of the region. The ring holds variable-length
//! records ([`RecordHeader`]: sizes, the two sides' epochs and the 44-byte
//! vsock header), each followed by its payload and padded to 16 bytes. A
//! record may wrap around the end of the ring; it is then copied in two
//! parts. `head` and `tail` are free-running `u32` byte counters.
//!
//! A [`VsockChannel`] is one VMM's end: producer of its outgoing ring,
//! consumer of its incoming one. Each side publishes its guest device's
//! state ([`SideState`]: `up` and a reset `epoch`) in its outgoing ring, and
//! stamps every record with its own epoch and the peer epoch it has
//! acknowledged. The receiver delivers a record only if both stamps are
//! current, and delivers nothing of the peer's while a new peer epoch is
//! unacknowledged ([`VsockChannel::poll_peer`]). So after either guest
//! reboots, no packet of an old incarnation reaches the new one, and nothing
//! is delivered twice.
//!
//! Notifications follow the sDDF signalling protocol with two flags per
//! ring: a consumer that finds its ring empty, or a producer that finds it
//! full, sets its flag, fences and re-checks; the other side notifies only
//! when the flag is set ([`VsockChannel::must_notify_peer`]).
//!
//! The peer is not trusted: an index more than a capacity away, or a record
//! whose lengths do not add up, is logged and skipped (the ring reads as
//! empty or full); nothing panics or touches memory outside the regions.

use core::mem::offset_of;
use core::sync::atomic::{fence, AtomicU32, Ordering};
use core::{fmt, mem};

use log::{info, warn};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::ring::{Capacity, Consumer, Producer};
use crate::{Error, SharedAtomic, SharedRegion};

/// Bytes of a virtio-vsock packet header (`struct virtio_vsock_hdr`, virtio
/// 1.2 §5.10.6), carried opaquely in each record.
pub const VSOCK_HDR_LEN: usize = 44;

/// Offset of the little-endian `len` field (payload bytes) in the vsock
/// header: after `src_cid`, `dst_cid` (u64) and `src_port`, `dst_port` (u32).
pub const VSOCK_HDR_LEN_OFFSET: usize = 24;

/// The largest payload of one packet: Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Bytes between the producer's and the consumer's control fields: the
/// cache-line padding crossbeam uses on aarch64, which covers 64-byte lines.
pub const CONTROL_LINE: usize = 128;

/// Offset of the byte ring in a region: after the two control lines.
pub const RING_OFFSET: usize = size_of::<RingHeader>();

/// Bytes of a record's own header; the payload follows it.
pub const RECORD_HEADER_LEN: usize = size_of::<RecordHeader>();

/// Records start and end on multiples of this many bytes.
pub const RECORD_ALIGN: u32 = 16;

/// The smallest ring capacity: the power of two that holds the largest record.
pub const MIN_CAPACITY: u32 = (RECORD_HEADER_LEN + MAX_PAYLOAD).next_power_of_two() as u32;

/// The largest ring capacity used (the counters are `u32`s).
const MAX_CAPACITY: u32 = 1 << 31;

/// The epoch bits of a [`SideState`] word (bit 0 is `up`).
const EPOCH_MASK: u32 = u32::MAX >> 1;

/// The control lines at the start of each region (256 bytes).
///
/// In the ring from side X to side Y, X writes the producer line (`tail` and
/// its `state`) and Y the consumer line (`head`); each signal flag is set by
/// the side that wants the notification and cleared by the side that sends
/// it. All fields are native-endian `u32`s.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingHeader {
    /// Bytes published so far (free-running); written by the producer.
    pub tail: AtomicU32,
    /// The producer side's [`SideState`] word: `epoch << 1 | up`.
    pub state: AtomicU32,
    /// Non-zero: the producer wants a notification when space frees up.
    /// Set by the producer, cleared by the consumer when it notifies.
    pub producer_signal_required: AtomicU32,
    /// Zero, reserved.
    pub producer_reserved: [u32; CONTROL_LINE / 4 - 3],
    /// Bytes consumed so far (free-running); written by the consumer.
    pub head: AtomicU32,
    /// Non-zero: the consumer wants a notification when records are
    /// published. Set by the consumer, cleared by the producer when it
    /// notifies.
    pub consumer_signal_required: AtomicU32,
    /// Zero, reserved.
    pub consumer_reserved: [u32; CONTROL_LINE / 4 - 2],
}

const _: () = assert!(size_of::<RingHeader>() == 256);
const _: () = assert!(offset_of!(RingHeader, tail) == 0);
const _: () = assert!(offset_of!(RingHeader, state) == 4);
const _: () = assert!(offset_of!(RingHeader, producer_signal_required) == 8);
const _: () = assert!(offset_of!(RingHeader, head) == CONTROL_LINE);
const _: () = assert!(offset_of!(RingHeader, consumer_signal_required) == CONTROL_LINE + 4);

/// The header of each record in the ring (64 bytes, no padding: `zerocopy`'s
/// `IntoBytes` proves it); the payload follows. Fields are native-endian.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct RecordHeader {
    /// Bytes the record takes in the ring: 64 + `payload_len`, rounded up
    /// to a multiple of 16.
    pub size: u32,
    /// Bytes of payload, at most [`MAX_PAYLOAD`].
    pub payload_len: u32,
    /// The sender's epoch when it wrote the record.
    pub src_epoch: u32,
    /// The receiver's epoch as the sender had acknowledged it.
    pub dst_epoch: u32,
    /// The virtio-vsock header, opaque here.
    pub hdr: [u8; VSOCK_HDR_LEN],
    /// Zero, reserved.
    pub reserved: u32,
}

const _: () = assert!(size_of::<RecordHeader>() == 64);
const _: () = assert!(offset_of!(RecordHeader, size) == 0);
const _: () = assert!(offset_of!(RecordHeader, payload_len) == 4);
const _: () = assert!(offset_of!(RecordHeader, src_epoch) == 8);
const _: () = assert!(offset_of!(RecordHeader, dst_epoch) == 12);
const _: () = assert!(offset_of!(RecordHeader, hdr) == 16);
const _: () = assert!(offset_of!(RecordHeader, reserved) == 60);
const _: () = assert!(MIN_CAPACITY == 128 * 1024);

impl RecordHeader {
    fn to_bytes(self) -> [u8; RECORD_HEADER_LEN] {
        zerocopy::transmute!(self)
    }

    fn from_bytes(image: [u8; RECORD_HEADER_LEN]) -> Self {
        zerocopy::transmute!(image)
    }
}

/// The `len` field of a vsock header.
pub fn hdr_len(hdr: &[u8; VSOCK_HDR_LEN]) -> u32 {
    let at = VSOCK_HDR_LEN_OFFSET;
    u32::from_le_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]])
}

/// Bytes a record with `payload_len` bytes of payload takes in the ring.
pub fn record_size(payload_len: u32) -> u32 {
    let unpadded = RECORD_HEADER_LEN as u32 + payload_len;
    unpadded.next_multiple_of(RECORD_ALIGN)
}

/// The ring capacity of a region of `region_len` bytes: the largest power of
/// two that fits after the control header, or `None` if that is below
/// [`MIN_CAPACITY`]. Both sides derive it from the same region, so they
/// agree; give regions 2^k bytes plus a page (e.g. 256 KiB + 4 KiB).
pub fn capacity_for(region_len: usize) -> Option<u32> {
    let room = region_len.checked_sub(RING_OFFSET)?;
    let room = u32::try_from(room).unwrap_or(u32::MAX).min(MAX_CAPACITY);
    let capacity = 1u32 << room.checked_ilog2()?;
    (capacity >= MIN_CAPACITY).then_some(capacity)
}

/// One side's guest device as it publishes it in its outgoing ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SideState {
    /// Incremented (modulo 2^31) each time the side's device is reset.
    pub epoch: u32,
    /// The side's guest has its vsock device active (DRIVER_OK).
    pub up: bool,
}

impl SideState {
    /// Decodes the shared word `epoch << 1 | up`; every value is valid.
    pub fn from_word(word: u32) -> Self {
        SideState { epoch: word >> 1, up: word & 1 != 0 }
    }

    /// The shared word `epoch << 1 | up`.
    pub fn to_word(self) -> u32 {
        (self.epoch & EPOCH_MASK) << 1 | u32::from(self.up)
    }
}

/// A packet at the front of the incoming ring ([`VsockChannel::recv_peek`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPacket {
    /// The virtio-vsock header as the peer wrote it (copied once).
    pub hdr: [u8; VSOCK_HDR_LEN],
    /// Bytes of payload ([`VsockChannel::recv_payload`]), at most
    /// [`MAX_PAYLOAD`]; the header's `len` field says the same (records
    /// where it does not are dropped as malformed).
    pub payload_len: usize,
}

/// Why a send or receive step was refused. None of these is the peer's
/// doing except [`PacketError::Full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    TooLarge,
    /// The outgoing ring has no room for the record now; the peer has been
    /// asked to notify us when it frees space.
    Full,
    /// No send was begun, or no packet is peeked.
    NoPacket,
    /// The vsock header's `len` is not the payload length given.
    LengthMismatch,
    /// A payload access runs past the packet's payload length.
    OutOfRange,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            PacketError::TooLarge => "vsock payload longer than 64 KiB",
            PacketError::Full => "vsock ring to the peer is full",
            PacketError::NoPacket => "no vsock packet begun or peeked",
            PacketError::LengthMismatch => "vsock header len differs from the payload length",
            PacketError::OutOfRange => "access past the vsock packet's payload",
        };
        f.write_str(text)
    }
}

/// Records the receiver skipped, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Records from an older epoch of either side, dropped unread.
    pub stale: u64,
    /// Times the ring's contents did not parse and were skipped up to
    /// `tail`, or one record's vsock header disagreed with its length.
    pub corrupt: u64,
}

/// A byte ring inside a region: split copies at the end.
#[derive(Debug)]
struct Ring {
    data: SharedRegion,
    capacity: Capacity,
}

impl Ring {
    fn write(&self, at: u32, bytes: &[u8]) -> Result<(), Error> {
        let start = self.capacity.slot(at);
        let (first, second) = bytes.split_at(bytes.len().min(self.data.len() - start));
        self.data.write(start, first)?;
        self.data.write(0, second)
    }

    fn read(&self, at: u32, buf: &mut [u8]) -> Result<(), Error> {
        let start = self.capacity.slot(at);
        let split = buf.len().min(self.data.len() - start);
        let (first, second) = buf.split_at_mut(split);
        self.data.read(start, first)?;
        self.data.read(0, second)
    }
}

/// The record being written: reserved, not yet published.
#[derive(Debug, Clone, Copy)]
struct Reservation {
    size: u32,
    payload_len: u32,
}

/// The record at `head`, validated and peeked.
#[derive(Debug, Clone, Copy)]
struct Peeked {
    packet: RxPacket,
    size: u32,
}

/// The fields of a region's control header, for atomic access.
struct Fields {
    tail: SharedAtomic<AtomicU32>,
    head: SharedAtomic<AtomicU32>,
    state: SharedAtomic<AtomicU32>,
    space_wanted: SharedAtomic<AtomicU32>,
    data_wanted: SharedAtomic<AtomicU32>,
}

impl Ring {
    /// The ring of `region` and its control fields.
    fn of(region: &SharedRegion) -> Result<(Ring, Fields), Error> {
        let capacity = Capacity::new(capacity_for(region.len()).ok_or(Error::RegionTooSmall)?)?;
        let data = region.subregion(RING_OFFSET, capacity.get() as usize)?;
        let field = |offset| region.atomic_u32(offset);
        let fields = Fields {
            tail: field(offset_of!(RingHeader, tail))?,
            head: field(offset_of!(RingHeader, head))?,
            state: field(offset_of!(RingHeader, state))?,
            space_wanted: field(offset_of!(RingHeader, producer_signal_required))?,
            data_wanted: field(offset_of!(RingHeader, consumer_signal_required))?,
        };
        Ok((Ring { data, capacity }, fields))
    }
}

/// The outgoing ring: we produce.
#[derive(Debug)]
struct Tx {
    ring: Ring,
    producer: Producer,
    state: SharedAtomic<AtomicU32>,
    /// Set by us when full, cleared by the peer.
    space_wanted: SharedAtomic<AtomicU32>,
    /// Set by the peer when empty, cleared by us.
    data_wanted: SharedAtomic<AtomicU32>,
}

impl Tx {
    fn new(region: &SharedRegion) -> Result<Self, Error> {
        let (ring, f) = Ring::of(region)?;
        let producer = Producer::new(f.tail, f.head, ring.capacity, "vsock ring to the peer");
        let (state, space_wanted, data_wanted) = (f.state, f.space_wanted, f.data_wanted);
        Ok(Tx { ring, producer, state, space_wanted, data_wanted })
    }
}

/// The incoming ring: we consume.
#[derive(Debug)]
struct Rx {
    ring: Ring,
    consumer: Consumer,
    peer_state: SharedAtomic<AtomicU32>,
    space_wanted: SharedAtomic<AtomicU32>,
    data_wanted: SharedAtomic<AtomicU32>,
}

impl Rx {
    fn new(region: &SharedRegion) -> Result<Self, Error> {
        let (ring, f) = Ring::of(region)?;
        let consumer = Consumer::new(f.head, f.tail, ring.capacity, "vsock ring from the peer");
        let (peer_state, space_wanted, data_wanted) = (f.state, f.space_wanted, f.data_wanted);
        Ok(Rx { ring, consumer, peer_state, space_wanted, data_wanted })
    }
}

/// One VMM's end of a vsock channel: producer of `tx`, consumer of `rx`.
///
/// Sending: [`send_begin`](Self::send_begin), any number of
/// [`send_payload`](Self::send_payload), [`send_commit`](Self::send_commit).
/// Receiving: [`poll_peer`](Self::poll_peer) on every notification from the
/// peer, then [`recv_peek`](Self::recv_peek),
/// [`recv_payload`](Self::recv_payload), [`recv_pop`](Self::recv_pop).
/// After a batch of either, notify the peer if
/// [`must_notify_peer`](Self::must_notify_peer) says so.
#[derive(Debug)]
pub struct VsockChannel {
    tx: Tx,
    rx: Rx,
    own: SideState,
    /// The peer epoch we acknowledged: records must carry it as `src_epoch`.
    peer_epoch: u32,
    reservation: Option<Reservation>,
    peeked: Option<Peeked>,
    published: bool,
    released: bool,
    state_changed: bool,
    /// A corruption was logged and no good record was seen since.
    corrupt_logged: bool,
    stats: Stats,
}

impl VsockChannel {
    /// Our end of the channel: `tx` is the region we write records into,
    /// `rx` the one the peer writes into (the peer passes them the other
    /// way round).
    ///
    /// Each region must give a capacity of at least [`MIN_CAPACITY`]
    /// ([`capacity_for`]; else [`Error::RegionTooSmall`]) and start 4-byte
    /// aligned ([`Error::Misaligned`]). Our state, our `tail` and `head` and
    /// the peer's epoch (taken as acknowledged) are read from the regions,
    /// which start zeroed: epoch 0, down, empty rings.
    pub fn new(tx: SharedRegion, rx: SharedRegion) -> Result<Self, Error> {
        let (tx, rx) = (Tx::new(&tx)?, Rx::new(&rx)?);
        let own = SideState::from_word(tx.state.load(Ordering::Relaxed));
        let peer_epoch = SideState::from_word(rx.peer_state.load(Ordering::Acquire)).epoch;
        Ok(VsockChannel {
            tx,
            rx,
            own,
            peer_epoch,
            reservation: None,
            peeked: None,
            published: false,
            released: false,
            state_changed: false,
            corrupt_logged: false,
            stats: Stats::default(),
        })
    }

    /// Bytes the outgoing ring holds.
    pub fn tx_capacity(&self) -> u32 {
        self.tx.ring.capacity.get()
    }

    /// Bytes the incoming ring holds.
    pub fn rx_capacity(&self) -> u32 {
        self.rx.ring.capacity.get()
    }

    /// Our state as we publish it.
    pub fn own_state(&self) -> SideState {
        self.own
    }

    /// Our guest's device became active: publishes `up` (same epoch).
    pub fn activate(&mut self) {
        self.set_own(SideState { up: true, ..self.own });
    }

    /// Our guest's device was reset: publishes the next epoch, down, and
    /// drops everything unread in the incoming ring, a half-written send
    /// and a peeked packet. Records the peer writes before it acknowledges
    /// the new epoch carry the old one and are dropped when read.
    pub fn reset(&mut self) {
        self.set_own(SideState { epoch: (self.own.epoch + 1) & EPOCH_MASK, up: false });
        self.reservation = None;
        self.peeked = None;
        let unread = self.rx.consumer.available();
        if unread > 0 {
            self.rx.consumer.release(unread);
            self.released = true;
        }
    }

    fn set_own(&mut self, state: SideState) {
        self.own = state;
        self.tx.state.store(state.to_word(), Ordering::Release);
        self.state_changed = true;
    }

    /// The peer's state as it publishes it now (not acknowledged).
    pub fn peer_state(&self) -> SideState {
        SideState::from_word(self.rx.peer_state.load(Ordering::Acquire))
    }

    /// Acknowledges a new peer epoch: `Some(state)` if the peer's device was
    /// reset since the last call (its guest rebooted or reloaded its
    /// driver), else `None`.
    ///
    /// On `Some`, send our guest `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET` (virtio
    /// 1.2 §5.10.6, "Device Events") if its device is up. Until this acknowledgement,
    /// [`recv_peek`](Self::recv_peek) delivers nothing; after it, records of
    /// the peer's older epochs are dropped and our records carry the new
    /// epoch. Call it on every notification from the peer, before receiving.
    pub fn poll_peer(&mut self) -> Option<SideState> {
        let peer = self.peer_state();
        if peer.epoch == self.peer_epoch {
            return None;
        }
        info!(target: "vsock", "peer device reset: epoch {} -> {}", self.peer_epoch, peer.epoch);
        self.peer_epoch = peer.epoch;
        self.peeked = None;
        Some(peer)
    }

    /// Reserves room for a packet with header `hdr` and `payload_len`
    /// bytes of payload, and writes the record header. The header's `len`
    /// must be `payload_len` ([`PacketError::LengthMismatch`]).
    ///
    /// [`PacketError::Full`] means the record does not fit now; the peer
    /// has been asked (flag set, fence, re-check) to notify us when it
    /// frees space, so the caller can wait for that. A second `send_begin`
    /// before [`send_commit`](Self::send_commit) replaces the first.
    pub fn send_begin(
        &mut self,
        hdr: &[u8; VSOCK_HDR_LEN],
        payload_len: usize,
    ) -> Result<(), PacketError> {
        self.reservation = None;
        let payload_len = u32::try_from(payload_len)
            .ok()
            .filter(|&len| len as usize <= MAX_PAYLOAD)
            .ok_or(PacketError::TooLarge)?;
        if hdr_len(hdr) != payload_len {
            return Err(PacketError::LengthMismatch);
        }
        let size = record_size(payload_len);
        if self.tx.producer.free() < size {
            self.tx.space_wanted.store(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.tx.producer.free() < size {
                return Err(PacketError::Full);
            }
            self.tx.space_wanted.store(0, Ordering::Relaxed);
        }
        let header = RecordHeader {
            size,
            payload_len,
            src_epoch: self.own.epoch,
            dst_epoch: self.peer_epoch,
            hdr: *hdr,
            reserved: 0,
        };
        let tail = self.tx.producer.index();
        self.tx.ring.write(tail, &header.to_bytes()).map_err(|_| PacketError::OutOfRange)?;
        self.reservation = Some(Reservation { size, payload_len });
        Ok(())
    }

    /// Writes `bytes` at `offset` of the begun packet's payload.
    ///
    /// Payload bytes never written are whatever the ring held there (bytes
    /// this side sent earlier): write all `payload_len` of them.
    pub fn send_payload(&mut self, offset: usize, bytes: &[u8]) -> Result<(), PacketError> {
        let reservation = self.reservation.ok_or(PacketError::NoPacket)?;
        let at = payload_index(offset, bytes.len(), reservation.payload_len)?;
        let index = self.tx.producer.index().wrapping_add(at);
        self.tx.ring.write(index, bytes).map_err(|_| PacketError::OutOfRange)
    }

    /// Publishes the begun packet (`tail`, Release).
    pub fn send_commit(&mut self) -> Result<(), PacketError> {
        let reservation = self.reservation.take().ok_or(PacketError::NoPacket)?;
        self.tx.producer.publish(reservation.size);
        self.published = true;
        Ok(())
    }

    /// The packet at the front of the incoming ring, if one is deliverable.
    ///
    /// Records of an older epoch (the peer's before the one acknowledged,
    /// or ours before our last reset) are dropped on the way. `None` means
    /// one of:
    /// - the ring is empty: the peer has been asked (flag, fence, re-check)
    ///   to notify us when it publishes;
    /// - the peer published a new epoch: call [`poll_peer`](Self::poll_peer)
    ///   (the peer notifies us after every state change);
    /// - the ring's contents are corrupt: they were skipped up to `tail`
    ///   and logged, or `tail` itself is more than a capacity away;
    /// - a ring's worth of records was dropped in this call (a bound on the
    ///   work a peer can cause); call again later.
    ///
    /// Peeking again returns the same packet until [`recv_pop`](Self::recv_pop).
    pub fn recv_peek(&mut self) -> Option<RxPacket> {
        if let Some(peeked) = self.peeked {
            return Some(peeked.packet);
        }
        let mut budget = self.rx_capacity() / RECORD_HEADER_LEN as u32;
        let mut asked = false;
        loop {
            // `tail` first (Acquire), then the state: a record is never
            // newer than the state read after it.
            let available = self.rx.consumer.available();
            if self.peer_state().epoch != self.peer_epoch {
                return None;
            }
            if available == 0 {
                if asked {
                    return None;
                }
                self.rx.data_wanted.store(1, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                asked = true;
                continue;
            }
            if mem::take(&mut asked) {
                // Data came after all: no notification needed for it.
                self.rx.data_wanted.store(0, Ordering::Relaxed);
            }
            if budget == 0 {
                self.rx.data_wanted.store(1, Ordering::Relaxed);
                return None;
            }
            budget -= 1;
            if let Some(packet) = self.take_front(available) {
                return Some(packet);
            }
        }
    }

    /// Peeks the record at `head` if it is deliverable, else drops it (or,
    /// if it does not parse, all `available` bytes).
    fn take_front(&mut self, available: u32) -> Option<RxPacket> {
        let Some(record) = self.read_record(available) else {
            self.skip_corrupt(available);
            return None;
        };
        if hdr_len(&record.hdr) != record.payload_len {
            self.drop_malformed(record.size);
            return None;
        }
        self.corrupt_logged = false;
        if record.src_epoch != self.peer_epoch || record.dst_epoch != self.own.epoch {
            self.stats.stale += 1;
            self.rx.consumer.release(record.size);
            self.released = true;
            return None;
        }
        let packet = RxPacket { hdr: record.hdr, payload_len: record.payload_len as usize };
        self.peeked = Some(Peeked { packet, size: record.size });
        Some(packet)
    }

    /// The record header at `head`, if it is well-formed and complete
    /// within the `available` published bytes.
    fn read_record(&self, available: u32) -> Option<RecordHeader> {
        if available < RECORD_HEADER_LEN as u32 {
            return None;
        }
        let mut image = [0u8; RECORD_HEADER_LEN];
        self.rx.ring.read(self.rx.consumer.index(), &mut image).ok()?;
        let record = RecordHeader::from_bytes(image);
        let sane = record.payload_len as usize <= MAX_PAYLOAD
            && record.size == record_size(record.payload_len)
            && record.size <= available;
        sane.then_some(record)
    }

    /// Drops the `available` bytes that do not parse, so that reading
    /// resumes at the peer's `tail`, a record boundary of an honest peer.
    fn skip_corrupt(&mut self, available: u32) {
        self.note_corrupt("a malformed record; dropping the ring up to its tail");
        self.rx.consumer.release(available);
        self.released = true;
    }

    /// Drops one well-framed record whose vsock header is inconsistent.
    fn drop_malformed(&mut self, size: u32) {
        self.note_corrupt("a vsock header whose len is not the payload length; dropping it");
        self.rx.consumer.release(size);
        self.released = true;
    }

    /// Counts a corruption and logs the first of each run of them.
    fn note_corrupt(&mut self, what: &str) {
        self.stats.corrupt += 1;
        if !mem::replace(&mut self.corrupt_logged, true) {
            warn!(target: "vsock", "peer wrote {what}");
        }
    }

    /// Copies `buf.len()` bytes at `offset` of the peeked packet's payload
    /// into `buf`. A peer that rewrites the payload meanwhile changes only
    /// the bytes copied.
    pub fn recv_payload(&self, offset: usize, buf: &mut [u8]) -> Result<(), PacketError> {
        let peeked = self.peeked.ok_or(PacketError::NoPacket)?;
        let payload_len = peeked.packet.payload_len as u32;
        let at = payload_index(offset, buf.len(), payload_len)?;
        let index = self.rx.consumer.index().wrapping_add(at);
        self.rx.ring.read(index, buf).map_err(|_| PacketError::OutOfRange)
    }

    /// Takes the peeked packet off the ring (`head`, Release).
    pub fn recv_pop(&mut self) -> Result<(), PacketError> {
        let peeked = self.peeked.take().ok_or(PacketError::NoPacket)?;
        self.rx.consumer.release(peeked.size);
        self.released = true;
        Ok(())
    }

    /// Whether to notify the peer now; call it once after a batch of sends,
    /// receives or a state change.
    ///
    /// `true` after [`activate`](Self::activate) or
    /// [`reset`](Self::reset); after publishing, if the peer asked for data
    /// (`consumer_signal_required`); after freeing space, if the peer asked
    /// for space (`producer_signal_required`). A flag it reports is cleared.
    /// A sequentially consistent fence comes before the flags are read, so
    /// a peer that set its flag and re-checked either saw our work or is
    /// notified.
    pub fn must_notify_peer(&mut self) -> bool {
        let mut notify = mem::take(&mut self.state_changed);
        let published = mem::take(&mut self.published);
        let released = mem::take(&mut self.released);
        if published || released {
            fence(Ordering::SeqCst);
        }
        if published && self.tx.data_wanted.load(Ordering::Relaxed) != 0 {
            self.tx.data_wanted.store(0, Ordering::Relaxed);
            notify = true;
        }
        if released && self.rx.space_wanted.load(Ordering::Relaxed) != 0 {
            self.rx.space_wanted.store(0, Ordering::Relaxed);
            notify = true;
        }
        notify
    }

    /// Records dropped on receipt so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// The ring index offset (from the record start) of `len` payload bytes at
/// `offset`, if they lie within `payload_len`.
fn payload_index(offset: usize, len: usize, payload_len: u32) -> Result<u32, PacketError> {
    match offset.checked_add(len) {
        Some(end) if end <= payload_len as usize => Ok(RECORD_HEADER_LEN as u32 + offset as u32),
        _ => Err(PacketError::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Notification;
    use fastrand::Rng;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    const TAIL: usize = offset_of!(RingHeader, tail);
    const HEAD: usize = offset_of!(RingHeader, head);
    const STATE: usize = offset_of!(RingHeader, state);
    const SPACE_WANTED: usize = offset_of!(RingHeader, producer_signal_required);
    const DATA_WANTED: usize = offset_of!(RingHeader, consumer_signal_required);
    const CAP: u32 = MIN_CAPACITY;

    /// The two regions of a channel between sides A and B.
    struct Fixture {
        ab: SharedRegion,
        ba: SharedRegion,
    }

    impl Fixture {
        fn new() -> Self {
            let region = || SharedRegion::leak_zeroed(RING_OFFSET + CAP as usize);
            Fixture { ab: region(), ba: region() }
        }

        /// Both rings' `head` and `tail` at `start`, as if that many bytes
        /// had passed already.
        fn starting_at(start: u32) -> Self {
            let fixture = Fixture::new();
            fixture.restart_at(start);
            fixture
        }

        fn restart_at(&self, start: u32) {
            for region in [&self.ab, &self.ba] {
                set(region, TAIL, start);
                set(region, HEAD, start);
            }
        }

        fn a(&self) -> VsockChannel {
            VsockChannel::new(self.ab.clone(), self.ba.clone()).unwrap()
        }

        fn b(&self) -> VsockChannel {
            VsockChannel::new(self.ba.clone(), self.ab.clone()).unwrap()
        }

        /// Writes `bytes` into A's outgoing ring at ring index `index`, as
        /// a hostile A would.
        fn poke_ab(&self, index: u32, bytes: &[u8]) {
            let ring = Ring {
                data: self.ab.subregion(RING_OFFSET, CAP as usize).unwrap(),
                capacity: Capacity::new(CAP).unwrap(),
            };
            ring.write(index, bytes).unwrap();
        }
    }

    fn set(region: &SharedRegion, field: usize, value: u32) {
        region.atomic_u32(field).unwrap().store(value, Ordering::Relaxed);
    }

    fn get(region: &SharedRegion, field: usize) -> u32 {
        region.atomic_u32(field).unwrap().load(Ordering::Relaxed)
    }

    /// A vsock header: `seq` in the first bytes, `len` in its place,
    /// a pattern elsewhere.
    fn header(seq: u32, len: usize) -> [u8; VSOCK_HDR_LEN] {
        let mut hdr: [u8; VSOCK_HDR_LEN] =
            core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ seq as u8);
        hdr[..4].copy_from_slice(&seq.to_le_bytes());
        hdr[VSOCK_HDR_LEN_OFFSET..][..4].copy_from_slice(&(len as u32).to_le_bytes());
        hdr
    }

    fn body(seq: u32, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seq) as u8 ^ (i >> 8) as u8)
            .collect()
    }

    fn send(ch: &mut VsockChannel, seq: u32, payload: &[u8]) -> Result<(), PacketError> {
        ch.send_begin(&header(seq, payload.len()), payload.len())?;
        ch.send_payload(0, payload)?;
        ch.send_commit()
    }

    /// The next packet's sequence number and payload; its header must be
    /// the one [`send`] made.
    fn recv(ch: &mut VsockChannel) -> Option<(u32, Vec<u8>)> {
        let packet = ch.recv_peek()?;
        let mut payload = vec![0; packet.payload_len];
        ch.recv_payload(0, &mut payload).unwrap();
        ch.recv_pop().unwrap();
        let seq = u32::from_le_bytes(packet.hdr[..4].try_into().unwrap());
        assert_eq!(packet.hdr, header(seq, payload.len()));
        Some((seq, payload))
    }

    /// A record header image as a hostile A writes it.
    fn record(size: u32, payload_len: u32, epochs: (u32, u32)) -> [u8; RECORD_HEADER_LEN] {
        let (src_epoch, dst_epoch) = epochs;
        let hdr = header(0, payload_len as usize);
        RecordHeader { size, payload_len, src_epoch, dst_epoch, hdr, reserved: 0 }.to_bytes()
    }

    #[test]
    fn layout_is_fixed() {
        assert_eq!((RING_OFFSET, RECORD_HEADER_LEN, CONTROL_LINE), (256, 64, 128));
        assert_eq!((TAIL, STATE, SPACE_WANTED), (0, 4, 8));
        assert_eq!((HEAD, DATA_WANTED), (128, 132));
        let image = RecordHeader {
            size: 0x1111_1111,
            payload_len: 0x2222_2222,
            src_epoch: 0x3333_3333,
            dst_epoch: 0x4444_4444,
            hdr: [0x55; VSOCK_HDR_LEN],
            reserved: 0x6666_6666,
        }
        .to_bytes();
        for (offset, byte) in [(0, 0x11), (4, 0x22), (8, 0x33), (12, 0x44), (16, 0x55), (59, 0x55)]
        {
            assert_eq!(image[offset], byte, "offset {offset}");
        }
        assert_eq!(image[60..], [0x66; 4]);
        assert_eq!(RecordHeader::from_bytes(image).to_bytes(), image);
    }

    #[test]
    fn records_are_padded_to_16_bytes() {
        assert_eq!(record_size(0), 64);
        assert_eq!(record_size(1), 80);
        assert_eq!(record_size(16), 80);
        assert_eq!(record_size(17), 96);
        assert_eq!(record_size(MAX_PAYLOAD as u32), 64 + 65536);
    }

    #[test]
    fn capacity_is_the_largest_power_of_two_after_the_header() {
        assert_eq!(capacity_for(256 + 128 * 1024), Some(128 * 1024));
        assert_eq!(capacity_for(255 + 128 * 1024), None);
        assert_eq!(capacity_for(256 * 1024), Some(128 * 1024));
        assert_eq!(capacity_for(256 * 1024 + 4096), Some(256 * 1024));
        assert_eq!(capacity_for(2 * 1024 * 1024 + 4096), Some(2 * 1024 * 1024));
        assert_eq!(capacity_for(usize::MAX), Some(1 << 31));
        assert_eq!(capacity_for(0), None);
    }

    #[test]
    fn rejects_small_or_misaligned_regions() {
        let good = SharedRegion::leak_zeroed(RING_OFFSET + CAP as usize);
        let small = SharedRegion::leak_zeroed(RING_OFFSET + CAP as usize - 1);
        let new =
            |tx: &SharedRegion, rx: &SharedRegion| VsockChannel::new(tx.clone(), rx.clone()).err();
        assert_eq!(new(&good, &small), Some(Error::RegionTooSmall));
        assert_eq!(new(&small, &good), Some(Error::RegionTooSmall));
        let big = SharedRegion::leak_zeroed(RING_OFFSET + CAP as usize + 8);
        let odd = big.subregion(2, RING_OFFSET + CAP as usize).unwrap();
        assert_eq!(new(&odd, &good), Some(Error::Misaligned));
        assert!(new(&good, &good.clone()).is_none());
    }

    #[test]
    fn packet_round_trips_with_header_and_payload() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        send(&mut a, 7, b"hello, vsock").unwrap();
        assert_eq!(get(&fixture.ab, TAIL), record_size(12));
        let packet = b.recv_peek().unwrap();
        assert_eq!(packet, RxPacket { hdr: header(7, 12), payload_len: 12 });
        assert_eq!(b.recv_peek(), Some(packet), "peeking again gives the same packet");
        let mut part = [0u8; 5];
        b.recv_payload(7, &mut part).unwrap();
        assert_eq!(&part, b"vsock");
        b.recv_pop().unwrap();
        assert_eq!(get(&fixture.ab, HEAD), record_size(12));
        assert_eq!(b.recv_peek(), None);
        assert_eq!(b.stats(), Stats::default());
    }

    #[test]
    fn zero_length_payloads_take_one_header() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        for seq in 0..3 {
            send(&mut a, seq, &[]).unwrap();
        }
        assert_eq!(get(&fixture.ab, TAIL), 3 * 64);
        for seq in 0..3 {
            assert_eq!(recv(&mut b), Some((seq, vec![])));
        }
        assert_eq!(b.recv_payload(0, &mut []), Err(PacketError::NoPacket));
    }

    #[test]
    fn max_payload_round_trips_and_larger_is_refused() {
        let fixture = Fixture::starting_at(CAP / 2 + 48);
        let (mut a, mut b) = (fixture.a(), fixture.b());
        let payload = body(3, MAX_PAYLOAD);
        send(&mut a, 3, &payload).unwrap();
        assert_eq!(recv(&mut b), Some((3, payload)));
        assert_eq!(a.send_begin(&header(4, 0), MAX_PAYLOAD + 1), Err(PacketError::TooLarge));
        assert_eq!(a.send_begin(&header(4, 0), usize::MAX), Err(PacketError::TooLarge));
        assert_eq!(a.send_commit(), Err(PacketError::NoPacket));
    }

    #[test]
    fn records_wrap_at_every_alignment_of_the_ring_end() {
        let fixture = Fixture::new();
        for base in [0, 0u32.wrapping_sub(CAP)] {
            for len in [0usize, 1, 15, 16, 17, 100, 1000] {
                let size = record_size(len as u32);
                for k in 1..=size / RECORD_ALIGN + 1 {
                    let start = base.wrapping_add(CAP - k * RECORD_ALIGN);
                    fixture.restart_at(start);
                    let (mut a, mut b) = (fixture.a(), fixture.b());
                    for seq in 0..3 {
                        let payload = body(seq + k, len);
                        a.send_begin(&header(seq, len), len).unwrap();
                        for (i, chunk) in payload.chunks(7).enumerate() {
                            a.send_payload(i * 7, chunk).unwrap();
                        }
                        a.send_commit().unwrap();
                    }
                    for seq in 0..3 {
                        let packet = b.recv_peek().unwrap();
                        assert_eq!(packet.hdr, header(seq, len), "len {len} start {start:#x}");
                        let mut got = vec![0u8; len];
                        for (i, chunk) in got.chunks_mut(5).enumerate() {
                            b.recv_payload(i * 5, chunk).unwrap();
                        }
                        assert_eq!(got, body(seq + k, len), "len {len} start {start:#x}");
                        b.recv_pop().unwrap();
                    }
                    let end = start.wrapping_add(3 * size);
                    assert_eq!((get(&fixture.ab, TAIL), get(&fixture.ab, HEAD)), (end, end));
                }
            }
        }
    }

    #[test]
    fn payload_accesses_stay_inside_the_packet() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        assert_eq!(a.send_payload(0, &[1]), Err(PacketError::NoPacket));
        a.send_begin(&header(1, 10), 10).unwrap();
        assert_eq!(a.send_payload(8, &[0; 3]), Err(PacketError::OutOfRange));
        assert_eq!(a.send_payload(usize::MAX, &[0; 2]), Err(PacketError::OutOfRange));
        a.send_payload(0, &[9; 10]).unwrap();
        a.send_commit().unwrap();
        assert_eq!(b.recv_pop(), Err(PacketError::NoPacket));
        b.recv_peek().unwrap();
        assert_eq!(b.recv_payload(10, &mut [0; 1]), Err(PacketError::OutOfRange));
        assert_eq!(b.recv_payload(usize::MAX, &mut [0; 1]), Err(PacketError::OutOfRange));
        let mut all = [0u8; 10];
        b.recv_payload(0, &mut all).unwrap();
        assert_eq!(all, [9; 10]);
    }

    #[test]
    fn a_second_begin_replaces_an_uncommitted_one() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        a.send_begin(&header(1, 100), 100).unwrap();
        a.send_payload(0, &[1; 100]).unwrap();
        send(&mut a, 2, b"second").unwrap();
        assert_eq!(recv(&mut b), Some((2, b"second".to_vec())));
        assert_eq!(b.recv_peek(), None);
    }

    #[test]
    fn full_ring_refuses_and_asks_for_space_then_resumes() {
        let fixture = Fixture::starting_at(u32::MAX - 1000);
        let (mut a, mut b) = (fixture.a(), fixture.b());
        let payload = body(0, 40_000);
        let mut sent = 0;
        while send(&mut a, sent, &payload).is_ok() {
            sent += 1;
        }
        assert_eq!(sent, CAP / record_size(40_000));
        assert_eq!(send(&mut a, sent, &payload), Err(PacketError::Full));
        assert_eq!(get(&fixture.ab, SPACE_WANTED), 1, "A asked for space");
        assert!(a.send_begin(&header(9, 100), 100).is_ok(), "a small record still fits");
        assert_eq!(recv(&mut b).unwrap().0, 0);
        assert!(b.must_notify_peer());
        assert_eq!(get(&fixture.ab, SPACE_WANTED), 0, "the request is served");
        assert!(!b.must_notify_peer(), "one notification per request");
        send(&mut a, sent, &payload).unwrap();
        for seq in 1..=sent {
            assert_eq!(recv(&mut b), Some((seq, payload.clone())));
        }
    }

    #[test]
    fn empty_ring_asks_for_data_and_the_next_publish_notifies_once() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        assert!(!a.must_notify_peer() && !b.must_notify_peer());
        send(&mut a, 0, b"x").unwrap();
        assert!(!a.must_notify_peer(), "B did not ask");
        assert!(recv(&mut b).is_some());
        assert!(!b.must_notify_peer(), "A did not ask for space");
        assert_eq!(b.recv_peek(), None);
        assert_eq!(get(&fixture.ab, DATA_WANTED), 1, "B asked for data");
        send(&mut a, 1, b"y").unwrap();
        send(&mut a, 2, b"z").unwrap();
        assert!(a.must_notify_peer());
        assert_eq!(get(&fixture.ab, DATA_WANTED), 0);
        send(&mut a, 3, b"w").unwrap();
        assert!(!a.must_notify_peer());
    }

    #[test]
    fn state_changes_are_published_and_notified() {
        let fixture = Fixture::new();
        let (mut a, b) = (fixture.a(), fixture.b());
        assert_eq!(b.peer_state(), SideState { epoch: 0, up: false });
        a.activate();
        assert!(a.must_notify_peer());
        assert!(!a.must_notify_peer());
        assert_eq!(b.peer_state(), SideState { epoch: 0, up: true });
        a.reset();
        assert!(a.must_notify_peer());
        assert_eq!(b.peer_state(), SideState { epoch: 1, up: false });
        assert_eq!(get(&fixture.ab, STATE), 2);
        assert_eq!(fixture.a().own_state(), SideState { epoch: 1, up: false });
    }

    #[test]
    fn epoch_wraps_at_31_bits() {
        let fixture = Fixture::new();
        set(&fixture.ab, STATE, SideState { epoch: EPOCH_MASK, up: true }.to_word());
        let mut a = fixture.a();
        assert_eq!(a.own_state(), SideState { epoch: EPOCH_MASK, up: true });
        a.reset();
        assert_eq!(a.own_state(), SideState { epoch: 0, up: false });
        assert_eq!(SideState::from_word(u32::MAX), SideState { epoch: EPOCH_MASK, up: true });
    }

    #[test]
    fn peer_reset_holds_delivery_until_acknowledged_then_drops_its_old_records() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        a.activate();
        send(&mut a, 1, b"old one").unwrap();
        send(&mut a, 2, b"old two").unwrap();
        a.reset();
        a.activate();
        send(&mut a, 3, b"new").unwrap();
        assert_eq!(b.recv_peek(), None, "held until B acknowledges epoch 1");
        assert_eq!(b.poll_peer(), Some(SideState { epoch: 1, up: true }));
        assert_eq!(b.poll_peer(), None);
        assert_eq!(recv(&mut b), Some((3, b"new".to_vec())));
        assert_eq!(b.stats(), Stats { stale: 2, corrupt: 0 });
        assert_eq!(b.recv_peek(), None);
    }

    #[test]
    fn a_peeked_packet_of_the_old_epoch_is_dropped_on_acknowledgement() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        send(&mut a, 1, b"old").unwrap();
        assert_eq!(b.recv_peek().unwrap().hdr, header(1, 3));
        a.reset();
        send(&mut a, 2, b"new").unwrap();
        assert!(b.poll_peer().is_some());
        assert_eq!(b.recv_payload(0, &mut [0; 3]), Err(PacketError::NoPacket));
        assert_eq!(recv(&mut b), Some((2, b"new".to_vec())));
        assert_eq!(b.stats().stale, 1);
    }

    #[test]
    fn records_sent_before_the_peer_saw_our_reset_are_dropped() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        send(&mut a, 1, b"to the old B, unread").unwrap();
        b.reset();
        assert_eq!(get(&fixture.ab, HEAD), get(&fixture.ab, TAIL), "unread records dropped");
        send(&mut a, 2, b"to the old B, sent late").unwrap();
        assert_eq!(a.poll_peer(), Some(SideState { epoch: 1, up: false }));
        send(&mut a, 3, b"to the new B").unwrap();
        assert_eq!(recv(&mut b), Some((3, b"to the new B".to_vec())));
        assert_eq!(b.recv_peek(), None);
        assert_eq!(b.stats().stale, 1);
    }

    #[test]
    fn own_reset_drops_a_half_written_send_and_a_peeked_packet() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        send(&mut b, 1, b"for A").unwrap();
        assert!(a.recv_peek().is_some());
        a.send_begin(&header(2, 4), 4).unwrap();
        a.reset();
        assert_eq!(a.send_commit(), Err(PacketError::NoPacket));
        assert_eq!(a.recv_pop(), Err(PacketError::NoPacket));
        assert_eq!(a.recv_peek(), None);
        assert_eq!(get(&fixture.ab, TAIL), 0, "nothing was published");
        assert!(a.must_notify_peer());
    }

    #[test]
    fn nothing_is_delivered_twice_across_resets() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        let mut seen = Vec::new();
        for round in 0..5u32 {
            for i in 0..4 {
                send(&mut a, round * 10 + i, &body(i, 33)).unwrap();
            }
            seen.extend(core::iter::from_fn(|| recv(&mut b)).take(2).map(|(seq, _)| seq));
            if round % 2 == 0 {
                a.reset();
                b.poll_peer().unwrap();
            } else {
                b.reset();
                a.poll_peer().unwrap();
            }
        }
        seen.extend(core::iter::from_fn(|| recv(&mut b)).map(|(seq, _)| seq));
        let want: Vec<u32> = (0..5).flat_map(|r| [r * 10, r * 10 + 1]).collect();
        assert_eq!(seen, want);
        assert_eq!(b.stats().stale, 6, "rounds 0, 2 and 4 each left two of A's old epoch");
    }

    #[test]
    fn hostile_tail_reads_as_empty() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        send(&mut a, 1, b"kept").unwrap();
        for tail in [CAP + 16, u32::MAX, 0x8000_0000, u32::MAX - 15] {
            set(&fixture.ab, TAIL, tail);
            assert_eq!(b.recv_peek(), None, "tail {tail:#x}");
            assert_eq!(get(&fixture.ab, HEAD), 0);
        }
        set(&fixture.ab, TAIL, record_size(4));
        assert_eq!(recv(&mut b), Some((1, b"kept".to_vec())));
        assert_eq!(b.stats(), Stats::default());
    }

    #[test]
    fn hostile_head_reads_as_full() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        send(&mut a, 1, b"x").unwrap();
        for head in [record_size(1) + 16, u32::MAX - CAP, 0x8000_0000] {
            set(&fixture.ab, HEAD, head);
            assert_eq!(send(&mut a, 2, b"y"), Err(PacketError::Full), "head {head:#x}");
        }
        set(&fixture.ab, HEAD, 0);
        send(&mut a, 2, b"y").unwrap();
        assert_eq!(get(&fixture.ab, TAIL), 2 * record_size(1));
        assert_eq!(recv(&mut b), Some((1, b"x".to_vec())));
        assert_eq!(recv(&mut b), Some((2, b"y".to_vec())));
    }

    #[test]
    fn malformed_records_are_skipped_up_to_tail_and_reading_resumes() {
        let fixture = Fixture::new();
        let mut b = fixture.b();
        let bad: [(u32, [u8; RECORD_HEADER_LEN]); 5] = [
            (64, record(80, 0, (0, 0))),        // size does not match
            (64, record(64, u32::MAX, (0, 0))), // payload over 64 KiB
            (record_size(100), record(record_size(200), 200, (0, 0))), // past tail
            (16, record(64, 0, (0, 0))),        // tail inside the header
            (CAP, record(0, 0, (0, 0))),        // zero size
        ];
        let mut tail = 0u32;
        for (i, (len, image)) in bad.into_iter().enumerate() {
            fixture.poke_ab(tail, &image);
            tail = tail.wrapping_add(len);
            set(&fixture.ab, TAIL, tail);
            assert_eq!(b.recv_peek(), None, "case {i}");
            assert_eq!(get(&fixture.ab, HEAD), tail, "case {i}: skipped to tail");
            assert_eq!(b.stats().corrupt, i as u64 + 1);
        }
        // A's own tail copy is behind; a well-behaved A resumes where the
        // shared tail is, as after a restart.
        let mut a2 = fixture.a();
        send(&mut a2, 5, b"good again").unwrap();
        assert_eq!(recv(&mut b), Some((5, b"good again".to_vec())));
    }

    #[test]
    fn stale_records_are_dropped_a_ring_at_a_time() {
        let fixture = Fixture::new();
        let mut b = fixture.b();
        // A hostile A claims a full ring of empty records of another epoch.
        for i in 0..CAP / 64 {
            fixture.poke_ab(i * 64, &record(64, 0, (5, 0)));
        }
        set(&fixture.ab, TAIL, CAP);
        assert_eq!(b.recv_peek(), None);
        assert_eq!(b.stats().stale, u64::from(CAP / 64));
        assert_eq!(get(&fixture.ab, HEAD), CAP);
        assert_eq!(get(&fixture.ab, DATA_WANTED), 1);
    }

    #[test]
    fn header_len_must_equal_the_payload_length() {
        let fixture = Fixture::new();
        let (mut a, mut b) = (fixture.a(), fixture.b());
        assert_eq!(a.send_begin(&header(1, 5), 4), Err(PacketError::LengthMismatch));
        assert_eq!(a.send_commit(), Err(PacketError::NoPacket));
        assert_eq!(hdr_len(&header(1, 5)), 5);
        // A hostile A: a well-framed record whose header claims 4000 bytes.
        let mut image = record(record_size(8), 8, (0, 0));
        image[16 + VSOCK_HDR_LEN_OFFSET..][..4].copy_from_slice(&4000u32.to_le_bytes());
        fixture.poke_ab(0, &image);
        set(&fixture.ab, TAIL, record_size(8));
        let mut a = fixture.a();
        send(&mut a, 2, b"fine").unwrap();
        assert_eq!(recv(&mut b), Some((2, b"fine".to_vec())), "only the bad record is dropped");
        assert_eq!(b.stats(), Stats { stale: 0, corrupt: 1 });
    }

    #[test]
    fn a_peer_flooding_stale_records_cannot_keep_the_receiver_busy() {
        let fixture = Fixture::new();
        let mut b = fixture.b();
        let stop = Arc::new(AtomicBool::new(false));
        let (ab, flooding) = (fixture.ab.clone(), stop.clone());
        // A hostile A refills the ring with records of a foreign epoch as
        // fast as B drops them.
        let flooder = std::thread::spawn(move || {
            let data = ab.subregion(RING_OFFSET, CAP as usize).unwrap();
            let ring = Ring { data, capacity: Capacity::new(CAP).unwrap() };
            let (image, mut tail) = (record(64, 0, (5, 0)), 0u32);
            while !flooding.load(Ordering::Relaxed) {
                let head = ab.atomic_u32(HEAD).unwrap().load(Ordering::Acquire);
                while tail.wrapping_sub(head) < CAP {
                    ring.write(tail, &image).unwrap();
                    tail = tail.wrapping_add(64);
                }
                ab.atomic_u32(TAIL).unwrap().store(tail, Ordering::Release);
            }
        });
        for _ in 0..100 {
            let before = b.stats().stale;
            assert_eq!(b.recv_peek(), None);
            assert!(b.stats().stale - before <= u64::from(CAP / 64), "one ring's worth per call");
        }
        stop.store(true, Ordering::Relaxed);
        flooder.join().unwrap();
        assert_eq!(b.stats().corrupt, 0);
    }

    #[test]
    fn random_hostile_writes_never_escape_the_regions() {
        // The channel's regions sit inside bigger ones whose edges must stay
        // untouched; A's control words and ring bytes are random.
        let guard = 4096;
        let len = RING_OFFSET + CAP as usize;
        let outer = [(); 2].map(|()| SharedRegion::leak_zeroed(len + 2 * guard));
        for region in &outer {
            region.write(0, &vec![0xa5; len + 2 * guard]).unwrap();
            region.write(guard, &vec![0; len]).unwrap();
        }
        let (ab, ba) =
            (outer[0].subregion(guard, len).unwrap(), outer[1].subregion(guard, len).unwrap());
        let mut b = VsockChannel::new(ba.clone(), ab.clone()).unwrap();
        let mut rng = Rng::with_seed(0x9e37_79b9);
        let mut buf = vec![0u8; MAX_PAYLOAD];
        let mut delivered = 0;
        for step in 0..20_000 {
            let value = rng.u32(..);
            match rng.u32(..) % 8 {
                0 => set(&ab, TAIL, value),
                1 => set(&ab, TAIL, get(&ab, HEAD).wrapping_add(value % (2 * CAP))),
                2 => set(&ab, STATE, value % 4),
                3 => set(&ba, HEAD, value),
                4 => {
                    let skew = rng.u32(..);
                    let at = get(&ab, HEAD).wrapping_add(if skew % 4 == 0 {
                        skew % 256 * 16
                    } else {
                        0
                    });
                    let payload_len = value % 3000;
                    let size = match value >> 30 {
                        0 => value % 200 * 16,
                        _ => record_size(payload_len),
                    };
                    let image = record(size, payload_len, (value >> 29 & 1, 0));
                    let ring = &ab.subregion(RING_OFFSET, CAP as usize).unwrap();
                    let ring = Ring { data: ring.clone(), capacity: Capacity::new(CAP).unwrap() };
                    ring.write(at, &image).unwrap();
                    set(&ab, TAIL, at.wrapping_add(size));
                }
                5 => {
                    b.poll_peer();
                }
                6 => {
                    let _ = send(&mut b, step, &buf[..value as usize % 2000]);
                }
                _ => {}
            }
            if let Some(packet) = b.recv_peek() {
                delivered += 1;
                assert!(packet.payload_len <= MAX_PAYLOAD);
                b.recv_payload(0, &mut buf[..packet.payload_len]).unwrap();
                b.recv_pop().unwrap();
            }
            let _ = b.must_notify_peer();
        }
        let stats = b.stats();
        assert!(
            stats.corrupt > 100 && stats.stale > 100 && delivered > 100,
            "{stats:?} {delivered}"
        );
        for region in &outer {
            let mut edges = vec![0u8; guard];
            region.read(0, &mut edges).unwrap();
            assert!(edges.iter().all(|&x| x == 0xa5));
            region.read(guard + len, &mut edges).unwrap();
            assert!(edges.iter().all(|&x| x == 0xa5));
        }
    }

    /// A payload length: mostly up to 32 bytes, one in fifty up to 4 KiB,
    /// one in five thousand the largest.
    fn packet_len(rng: &mut Rng) -> usize {
        let r = rng.u32(..);
        match r % 5000 {
            0 => MAX_PAYLOAD,
            1..=100 => (r >> 13) as usize % 4097,
            _ => (r >> 13) as usize % 33,
        }
    }

    /// Random bytes; packet `seq`'s payload starts at `seq % 251`.
    fn pattern() -> Vec<u8> {
        let mut rng = Rng::with_seed(0x5eed_5eed);
        (0..MAX_PAYLOAD + 251).map(|_| rng.u32(..) as u8).collect()
    }

    fn stream_payload(pattern: &[u8], seq: u32, len: usize) -> &[u8] {
        let start = (seq % 251) as usize;
        &pattern[start..start + len]
    }

    /// A checksum over 8-byte words (FNV-1a's constants, one word a step)
    /// and the length.
    fn checksum(bytes: &[u8]) -> u32 {
        let words = bytes.chunks(8).map(|c| {
            let mut word = [0u8; 8];
            word[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(word)
        });
        let sum = words.fold(0xcbf2_9ce4_8422_2325_u64 ^ bytes.len() as u64, |h, w| {
            (h ^ w).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (sum >> 32) as u32 ^ sum as u32
    }

    /// The header of stream packet `seq`: sequence number, length and
    /// payload checksum.
    fn stream_header(seq: u32, payload: &[u8]) -> [u8; VSOCK_HDR_LEN] {
        let mut hdr = [0u8; VSOCK_HDR_LEN];
        hdr[..4].copy_from_slice(&seq.to_le_bytes());
        hdr[VSOCK_HDR_LEN_OFFSET..][..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        hdr[8..12].copy_from_slice(&checksum(payload).to_le_bytes());
        hdr
    }

    fn word(hdr: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(hdr[at..at + 4].try_into().unwrap())
    }

    /// One side of the stream test: sends `send_total` packets whose
    /// lengths come from `seeds.0` and checks `recv_total` packets whose
    /// lengths come from `seeds.1`, notifying the peer only when the
    /// channel says so and sleeping only when it can do nothing.
    fn stream(
        mut ch: VsockChannel,
        (send_total, recv_total): (u32, u32),
        seeds: (u32, u32),
        me: &Notification,
        peer: &Notification,
    ) -> VsockChannel {
        let (mut tx_lens, mut rx_lens) =
            (Rng::with_seed(seeds.0.into()), Rng::with_seed(seeds.1.into()));
        let (mut sent, mut received) = (0u32, 0u32);
        let (pattern, mut inb) = (pattern(), vec![0u8; MAX_PAYLOAD]);
        let mut len = packet_len(&mut tx_lens);
        while sent < send_total || received < recv_total {
            let mut progress = false;
            while sent < send_total {
                let out = stream_payload(&pattern, sent, len);
                match ch.send_begin(&stream_header(sent, out), out.len()) {
                    Ok(()) => {}
                    Err(PacketError::Full) => break,
                    Err(e) => panic!("send {sent}: {e}"),
                }
                // Every fourth payload in two pieces, the second first.
                let half = if sent % 4 == 0 { out.len() / 2 } else { 0 };
                ch.send_payload(half, &out[half..]).unwrap();
                if half > 0 {
                    ch.send_payload(0, &out[..half]).unwrap();
                }
                ch.send_commit().unwrap();
                len = packet_len(&mut tx_lens);
                sent += 1;
                progress = true;
            }
            while let Some(packet) = ch.recv_peek() {
                let want = packet_len(&mut rx_lens);
                let n = packet.payload_len;
                assert_eq!(word(&packet.hdr, 0), received, "sequence");
                assert_eq!(
                    (n, word(&packet.hdr, VSOCK_HDR_LEN_OFFSET) as usize),
                    (want, want),
                    "length of {received}"
                );
                let third = if received % 4 == 1 { n / 3 } else { 0 };
                ch.recv_payload(third, &mut inb[third..n]).unwrap();
                if third > 0 {
                    ch.recv_payload(0, &mut inb[..third]).unwrap();
                }
                assert_eq!(checksum(&inb[..n]), word(&packet.hdr, 8), "checksum of {received}");
                assert_eq!(inb[..n.min(8)], stream_payload(&pattern, received, n)[..n.min(8)]);
                ch.recv_pop().unwrap();
                received += 1;
                progress = true;
            }
            if ch.must_notify_peer() {
                peer.notify();
            }
            if !progress {
                me.wait("stream");
            }
        }
        ch
    }

    #[test]
    fn threads_stream_a_million_packets_without_loss_duplication_or_reordering() {
        const A_TO_B: u32 = 1_000_000;
        const B_TO_A: u32 = 100_000;
        let start = u32::MAX - 5000;
        let fixture = Fixture::starting_at(start);
        let (a, b) = (fixture.a(), fixture.b());
        let (to_a, to_b) = (Arc::new(Notification::default()), Arc::new(Notification::default()));
        let (b_me, b_peer) = (to_b.clone(), to_a.clone());
        let thread = std::thread::spawn(move || {
            stream(b, (B_TO_A, A_TO_B), (0xbbbb_0001, 0xaaaa_0001), &b_me, &b_peer)
        });
        let a = stream(a, (A_TO_B, B_TO_A), (0xaaaa_0001, 0xbbbb_0001), &to_a, &to_b);
        let b = thread.join().unwrap();
        let mut lens = Rng::with_seed(0xaaaa_0001);
        let bytes: u32 = (0..A_TO_B)
            .fold(0u32, |sum, _| sum.wrapping_add(record_size(packet_len(&mut lens) as u32)));
        let end = start.wrapping_add(bytes);
        assert_eq!((get(&fixture.ab, TAIL), get(&fixture.ab, HEAD)), (end, end));
        assert_eq!(get(&fixture.ba, TAIL), get(&fixture.ba, HEAD));
        assert_eq!((a.stats(), b.stats()), (Stats::default(), Stats::default()));
    }

    /// The A side of the reset test: sends `total` packets, resetting its
    /// device every `every` packets; each header says which epochs A
    /// believed in when it sent.
    fn reset_sender(mut a: VsockChannel, total: u32, every: u32, sync: &ResetSync) -> u32 {
        let (mut seq, mut peer_epoch, mut resets) = (0u32, 0u32, 0u32);
        while seq < total {
            let mut progress = false;
            while seq < total {
                if let Some(peer) = a.poll_peer() {
                    peer_epoch = peer.epoch;
                }
                if seq % every == every - 1 {
                    a.reset();
                    a.activate();
                    resets += 1;
                }
                let mut hdr = [0u8; VSOCK_HDR_LEN];
                hdr[..4].copy_from_slice(&seq.to_le_bytes());
                hdr[4..8].copy_from_slice(&a.own_state().epoch.to_le_bytes());
                hdr[8..12].copy_from_slice(&peer_epoch.to_le_bytes());
                hdr[VSOCK_HDR_LEN_OFFSET..][..4].copy_from_slice(&(seq % 200).to_le_bytes());
                match a.send_begin(&hdr, (seq % 200) as usize) {
                    Ok(()) => {}
                    Err(PacketError::Full) => break,
                    Err(e) => panic!("send {seq}: {e}"),
                }
                a.send_payload(0, &body(seq, (seq % 200) as usize)).unwrap();
                a.send_commit().unwrap();
                seq += 1;
                progress = true;
            }
            if a.must_notify_peer() {
                sync.to_b.notify();
            }
            if !progress {
                sync.to_a.wait("sender");
            }
        }
        sync.done.store(true, Ordering::Release);
        sync.to_b.notify();
        resets
    }

    struct ResetSync {
        to_a: Notification,
        to_b: Notification,
        done: AtomicBool,
    }

    #[test]
    fn threads_deliver_no_stale_or_repeated_packet_across_resets_of_either_side() {
        const TOTAL: u32 = 200_000;
        let fixture = Fixture::starting_at(u32::MAX - 300);
        let (a, mut b) = (fixture.a(), fixture.b());
        let sync = Arc::new(ResetSync {
            to_a: Notification::default(),
            to_b: Notification::default(),
            done: AtomicBool::new(false),
        });
        let a_sync = sync.clone();
        let thread = std::thread::spawn(move || reset_sender(a, TOTAL, 20_011, &a_sync));
        let (mut peer_epoch, mut last, mut delivered, mut events, mut own_resets) =
            (0, None, 0u32, 0, 0);
        let mut payload = [0u8; 200];
        loop {
            let done = sync.done.load(Ordering::Acquire);
            let before = b.stats();
            let mut progress = false;
            if let Some(peer) = b.poll_peer() {
                (peer_epoch, events, progress) = (peer.epoch, events + 1, true);
            }
            while let Some(packet) = b.recv_peek() {
                let (seq, src, dst) =
                    (word(&packet.hdr, 0), word(&packet.hdr, 4), word(&packet.hdr, 8));
                assert_eq!(src, peer_epoch, "packet {seq} from an old epoch of A");
                assert_eq!(dst, b.own_state().epoch, "packet {seq} for an old epoch of B");
                assert!(last.is_none_or(|last| seq > last), "packet {seq} after {last:?}");
                b.recv_payload(0, &mut payload[..packet.payload_len]).unwrap();
                assert_eq!(&payload[..packet.payload_len], body(seq, (seq % 200) as usize));
                b.recv_pop().unwrap();
                (last, delivered, progress) = (Some(seq), delivered + 1, true);
                if delivered % 30_011 == 0 {
                    b.reset();
                    b.activate();
                    own_resets += 1;
                }
            }
            progress |= b.stats() != before;
            if b.must_notify_peer() {
                sync.to_a.notify();
            }
            if !progress {
                if done {
                    break;
                }
                sync.to_b.wait("receiver");
            }
        }
        let a_resets = thread.join().unwrap();
        assert_eq!(a_resets, TOTAL / 20_011);
        assert!(own_resets >= 3 && events >= 1, "{own_resets} {events}");
        assert!(delivered > TOTAL / 2, "only {delivered} delivered");
    }
}
