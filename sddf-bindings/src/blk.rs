//! Block queues and the storage-info region
//! (`SD include/sddf/blk/queue.h`, `storage_info.h`, sddf-abi.md §3).
//!
//! A connection has a request ring (client → virtualiser → driver), a
//! response ring (back), both with `head` *before* `tail`, and a storage-info
//! region. Both rings have the same capacity, the config's `num_buffers`.
//! There are no signalling flags: notify the peer after every batch of work.
//! Every block number, count and capacity is in [`BLK_TRANSFER_SIZE`] units.
//!
//! Ordering (§3.4): write the slot, `Release`, bump the index; read the peer's
//! index with `Acquire` and copy the slot out once. Each side takes the index
//! it owns from shared memory when the handle is created and from then on
//! keeps a private copy, so a peer overwriting it changes nothing; a peer
//! index that is more than `capacity` away reads as a full or empty ring.
//! Enqueue and dequeue read the peer's index only when what it allowed at
//! the last read is used up (one read per batch; a peer only adds entries
//! or frees slots); the `*_len`/`*_free` queries read it every time.

use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::ring::{Capacity, Consumer, Producer};
use crate::{Error, SharedAtomic, SharedRegion};

/// Size of one block transfer; the unit of block numbers, counts, capacity.
pub const BLK_TRANSFER_SIZE: usize = 4096;
/// Size of the storage-info region (`BLK_STORAGE_INFO_REGION_SIZE`).
pub const BLK_STORAGE_INFO_REGION_SIZE: usize = 0x1000;
/// Longest device serial number, without its NUL (`BLK_MAX_SERIAL_NUMBER`).
pub const BLK_MAX_SERIAL_NUMBER: usize = 63;

/// Request codes (`blk_req_code_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkReqCode {
    /// `BLK_REQ_READ`: read `count` blocks into the buffer.
    Read = 0,
    /// `BLK_REQ_WRITE`: write `count` blocks from the buffer.
    Write = 1,
    /// `BLK_REQ_FLUSH`: make completed writes durable.
    Flush = 2,
    /// `BLK_REQ_BARRIER`: order the requests before and after it.
    Barrier = 3,
}

impl BlkReqCode {
    /// The code for a raw value from shared memory, if it is one.
    pub fn from_raw(raw: u32) -> Option<Self> {
        [Self::Read, Self::Write, Self::Flush, Self::Barrier].into_iter().find(|c| *c as u32 == raw)
    }
}

/// Response statuses (`blk_resp_status_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkRespStatus {
    /// `BLK_RESP_OK`: success.
    Ok = 0,
    /// `BLK_RESP_ERR_UNSPEC`: unspecified error.
    ErrUnspec = 1,
    /// `BLK_RESP_ERR_INVALID_PARAM`: invalid request parameters.
    ErrInvalidParam = 2,
    /// `BLK_RESP_ERR_IO`: the device failed to complete the request.
    ErrIo = 3,
    /// `BLK_RESP_ERR_NO_DEVICE`: no device is present.
    ErrNoDevice = 4,
}

impl BlkRespStatus {
    /// The status for a raw value from shared memory, if it is one.
    pub fn from_raw(raw: u32) -> Option<Self> {
        [Self::Ok, Self::ErrUnspec, Self::ErrInvalidParam, Self::ErrIo, Self::ErrNoDevice]
            .into_iter()
            .find(|s| *s as u32 == raw)
    }
}

/// A request (`blk_req_t`, 32 bytes).
///
/// C's implicit padding is spelled out (`pad0`, `pad1`) so the slot is copied byte for byte
/// (`zerocopy`'s `IntoBytes` proves there is no other padding); it is zero in every request
/// this crate writes or returns.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct BlkReq {
    /// A [`BlkReqCode`] value (raw: the peer may write anything).
    pub code: u32,
    /// Padding (C's implicit padding before the 8-byte field); zero.
    pub pad0: [u8; 4],
    /// Client → virt: byte offset into the client's data region.
    /// Virt → driver: IO (physical) address.
    pub io_or_offset: u64,
    /// First block, in [`BLK_TRANSFER_SIZE`] units.
    pub block_number: u64,
    /// Number of blocks.
    pub count: u16,
    /// Padding (C's implicit padding before `id`); zero.
    pub pad1: [u8; 2],
    /// Chosen by the requester, echoed in the response.
    pub id: u32,
}

const _: () = assert!(size_of::<BlkReq>() == 32);
const _: () = assert!(offset_of!(BlkReq, code) == 0);
const _: () = assert!(offset_of!(BlkReq, pad0) == 4);
const _: () = assert!(offset_of!(BlkReq, io_or_offset) == 8);
const _: () = assert!(offset_of!(BlkReq, block_number) == 16);
const _: () = assert!(offset_of!(BlkReq, count) == 24);
const _: () = assert!(offset_of!(BlkReq, pad1) == 26);
const _: () = assert!(offset_of!(BlkReq, id) == 28);

impl BlkReq {
    /// A request with a known code.
    pub fn new(
        code: BlkReqCode,
        io_or_offset: u64,
        block_number: u64,
        count: u16,
        id: u32,
    ) -> Self {
        BlkReq { code: code as u32, io_or_offset, block_number, count, id, ..BlkReq::default() }
    }

    /// The request code, or `None` for a value outside the protocol.
    pub fn code(&self) -> Option<BlkReqCode> {
        BlkReqCode::from_raw(self.code)
    }

    /// The request in a slot image, with the padding the peer may have set cleared.
    fn from_slot(slot: [u8; size_of::<BlkReq>()]) -> Self {
        let req: BlkReq = zerocopy::transmute!(slot);
        BlkReq { pad0: [0; 4], pad1: [0; 2], ..req }
    }
}

/// A response (`blk_resp_t`, 12 bytes); padding spelled out as in [`BlkReq`].
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct BlkResp {
    /// A [`BlkRespStatus`] value (raw: the peer may write anything).
    pub status: u32,
    /// Blocks completed before the first error.
    pub success_count: u16,
    /// Padding (C's implicit padding before `id`); zero.
    pub pad0: [u8; 2],
    /// The `id` of the request answered.
    pub id: u32,
}

const _: () = assert!(size_of::<BlkResp>() == 12);
const _: () = assert!(offset_of!(BlkResp, status) == 0);
const _: () = assert!(offset_of!(BlkResp, success_count) == 4);
const _: () = assert!(offset_of!(BlkResp, pad0) == 6);
const _: () = assert!(offset_of!(BlkResp, id) == 8);

impl BlkResp {
    /// A response with a known status.
    pub fn new(status: BlkRespStatus, success_count: u16, id: u32) -> Self {
        BlkResp { status: status as u32, success_count, id, ..BlkResp::default() }
    }

    /// The status, or `None` for a value outside the protocol.
    pub fn status(&self) -> Option<BlkRespStatus> {
        BlkRespStatus::from_raw(self.status)
    }

    /// The response in a slot image, with the padding the peer may have set cleared.
    fn from_slot(slot: [u8; size_of::<BlkResp>()]) -> Self {
        let resp: BlkResp = zerocopy::transmute!(slot);
        BlkResp { pad0: [0; 2], ..resp }
    }
}

/// Layout of the request region header (`blk_req_queue_t`); slots follow.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BlkReqQueue {
    /// Next index to read; written by the consumer only.
    pub head: AtomicU32,
    /// Next index to write; written by the producer only.
    pub tail: AtomicU32,
    /// C `bool`: while set, requests should not be started.
    pub plugged: AtomicU8,
    /// `capacity` request slots (a C flexible array member).
    pub buffers: [BlkReq; 0],
}

const _: () = assert!(size_of::<BlkReqQueue>() == 16 && align_of::<BlkReqQueue>() == 8);
const _: () = assert!(offset_of!(BlkReqQueue, head) == 0);
const _: () = assert!(offset_of!(BlkReqQueue, tail) == 4);
const _: () = assert!(offset_of!(BlkReqQueue, plugged) == 8);
const _: () = assert!(offset_of!(BlkReqQueue, buffers) == 16);

/// Layout of the response region header (`blk_resp_queue_t`); slots follow.
#[repr(C)]
#[derive(Debug, Default)]
pub struct BlkRespQueue {
    /// Next index to read; written by the consumer only.
    pub head: AtomicU32,
    /// Next index to write; written by the producer only.
    pub tail: AtomicU32,
    /// `capacity` response slots (a C flexible array member).
    pub buffers: [BlkResp; 0],
}

const _: () = assert!(size_of::<BlkRespQueue>() == 8 && align_of::<BlkRespQueue>() == 4);
const _: () = assert!(offset_of!(BlkRespQueue, head) == 0);
const _: () = assert!(offset_of!(BlkRespQueue, tail) == 4);
const _: () = assert!(offset_of!(BlkRespQueue, buffers) == 8);

/// The ring was full; nothing was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sDDF block queue is full")
    }
}

/// One side's handle on a block connection (`blk_queue_handle_t`).
///
/// A client produces requests and consumes responses; a virtualiser or
/// driver does the mirror image. Each side uses its half of the methods.
#[derive(Debug)]
pub struct BlkQueueHandle {
    req_producer: Producer,
    req_consumer: Consumer,
    resp_producer: Producer,
    resp_consumer: Consumer,
    plugged: SharedAtomic<AtomicU8>,
    req_slots: SharedRegion,
    resp_slots: SharedRegion,
    capacity: Capacity,
}

/// The sub-region of `capacity` slots of `slot_size` bytes at `offset`.
fn slots(
    region: &SharedRegion,
    offset: usize,
    slot_size: usize,
    capacity: Capacity,
) -> Result<SharedRegion, Error> {
    let len = (capacity.get() as usize).checked_mul(slot_size).ok_or(Error::RegionTooSmall)?;
    region.subregion(offset, len).map_err(|_| Error::RegionTooSmall)
}

/// The largest power-of-two queue capacity whose slots fit a request
/// region of `req_len` and a response region of `resp_len` bytes (0 if none
/// fits). Both ends of a connection map the same regions, so both derive the
/// same `num_buffers` from their mapping sizes.
pub fn capacity_for(req_len: usize, resp_len: usize) -> u32 {
    let req = req_len.saturating_sub(offset_of!(BlkReqQueue, buffers)) / size_of::<BlkReq>();
    let resp = resp_len.saturating_sub(offset_of!(BlkRespQueue, buffers)) / size_of::<BlkResp>();
    let slots = u32::try_from(req.min(resp)).unwrap_or(u32::MAX);
    if slots == 0 {
        0
    } else {
        1 << (31 - slots.leading_zeros())
    }
}

impl BlkQueueHandle {
    /// A handle on the request region `req` and the response region `resp`.
    ///
    /// `capacity` is the config's `num_buffers`: a power of two
    /// ([`Error::BadCapacity`]) whose slots must fit in the regions
    /// ([`Error::RegionTooSmall`]); the headers must be aligned
    /// ([`Error::Misaligned`]).
    pub fn new(req: SharedRegion, resp: SharedRegion, capacity: u32) -> Result<Self, Error> {
        let capacity = Capacity::new(capacity)?;
        let req_slots =
            slots(&req, offset_of!(BlkReqQueue, buffers), size_of::<BlkReq>(), capacity)?;
        // Request slots are copied a u64 at a time (the C header's alignment too).
        if req_slots.load::<u64>(0).is_err() {
            return Err(Error::Misaligned);
        }
        let resp_slots =
            slots(&resp, offset_of!(BlkRespQueue, buffers), size_of::<BlkResp>(), capacity)?;
        let index = |region: &SharedRegion, offset| region.atomic_u32(offset);
        let (req_head, req_tail) = (offset_of!(BlkReqQueue, head), offset_of!(BlkReqQueue, tail));
        let (resp_head, resp_tail) =
            (offset_of!(BlkRespQueue, head), offset_of!(BlkRespQueue, tail));
        Ok(BlkQueueHandle {
            req_producer: Producer::new(
                index(&req, req_tail)?,
                index(&req, req_head)?,
                capacity,
                "sDDF blk requests",
            ),
            req_consumer: Consumer::new(
                index(&req, req_head)?,
                index(&req, req_tail)?,
                capacity,
                "sDDF blk requests",
            ),
            resp_producer: Producer::new(
                index(&resp, resp_tail)?,
                index(&resp, resp_head)?,
                capacity,
                "sDDF blk responses",
            ),
            resp_consumer: Consumer::new(
                index(&resp, resp_head)?,
                index(&resp, resp_tail)?,
                capacity,
                "sDDF blk responses",
            ),
            plugged: req.atomic_u8(offset_of!(BlkReqQueue, plugged))?,
            req_slots,
            resp_slots,
            capacity,
        })
    }

    /// Slots per ring (`num_buffers`).
    pub fn capacity(&self) -> u32 {
        self.capacity.get()
    }

    /// Client: free request slots (0 if the peer's `head` is corrupt).
    pub fn req_free(&self) -> u32 {
        self.req_producer.free()
    }

    /// Client: whether no request can be enqueued (`blk_queue_full_req`).
    pub fn req_full(&self) -> bool {
        self.req_free() == 0
    }

    /// Client: enqueues a request (`blk_enqueue_req`). Notify the peer after.
    pub fn enqueue_req(&mut self, req: BlkReq) -> Result<(), Full> {
        if !self.req_producer.has_room() {
            return Err(Full);
        }
        let offset = self.req_producer.slot() * size_of::<BlkReq>();
        // Four volatile u64 stores (the slot is 8-aligned: checked in `new`).
        let words: [u64; 4] = zerocopy::transmute!(req);
        self.req_slots.store_array(offset, words).map_err(|_| Full)?;
        self.req_producer.publish(1);
        Ok(())
    }

    /// Client: responses ready (0 if the peer's `tail` is corrupt).
    pub fn resp_len(&self) -> u32 {
        self.resp_consumer.available()
    }

    /// Client: takes the next response (`blk_dequeue_resp`), copied out once.
    pub fn dequeue_resp(&mut self) -> Option<BlkResp> {
        if !self.resp_consumer.has_entry() {
            return None;
        }
        let offset = self.resp_consumer.slot() * size_of::<BlkResp>();
        let words: [u32; 3] = self.resp_slots.load_array(offset).ok()?;
        let buf: [u8; size_of::<BlkResp>()] = zerocopy::transmute!(words);
        self.resp_consumer.release(1);
        Some(BlkResp::from_slot(buf))
    }

    /// Client: sets or clears the request ring's `plugged` flag.
    ///
    /// Notify the peer after unplugging. No sDDF 0.7 component reads it.
    pub fn set_plugged(&self, plugged: bool) {
        self.plugged.store(u8::from(plugged), Ordering::Release);
    }

    /// Whether the request ring is plugged (any non-zero byte counts).
    pub fn is_plugged(&self) -> bool {
        self.plugged.load(Ordering::Acquire) != 0
    }

    /// Virtualiser/driver: requests ready (0 if the peer's `tail` is corrupt).
    pub fn req_len(&self) -> u32 {
        self.req_consumer.available()
    }

    /// Virtualiser/driver: takes the next request (`blk_dequeue_req`).
    ///
    /// The slot is copied out once; validate the copy, not shared memory.
    pub fn dequeue_req(&mut self) -> Option<BlkReq> {
        let req = self.peek_req()?;
        self.req_consumer.release(1);
        Some(req)
    }

    /// Virtualiser/driver: a copy of the next request, left in the queue.
    ///
    /// For a consumer that can only take a request once it has room for it
    /// further on: take it with [`BlkQueueHandle::skip_req`] then. Only the
    /// copy is valid; the peer may rewrite the slot meanwhile.
    pub fn peek_req(&self) -> Option<BlkReq> {
        if !self.req_consumer.has_entry() {
            return None;
        }
        let offset = self.req_consumer.slot() * size_of::<BlkReq>();
        let words: [u64; 4] = self.req_slots.load_array(offset).ok()?;
        let buf: [u8; size_of::<BlkReq>()] = zerocopy::transmute!(words);
        Some(BlkReq::from_slot(buf))
    }

    /// Virtualiser/driver: takes the request [`BlkQueueHandle::peek_req`]
    /// returned. Does nothing if no request is ready.
    pub fn skip_req(&mut self) {
        if self.req_consumer.has_entry() {
            self.req_consumer.release(1);
        }
    }

    /// Virtualiser/driver: free response slots (0 if `head` is corrupt).
    pub fn resp_free(&self) -> u32 {
        self.resp_producer.free()
    }

    /// Virtualiser/driver: whether no response can be enqueued.
    pub fn resp_full(&self) -> bool {
        self.resp_free() == 0
    }

    /// Virtualiser/driver: enqueues a response (`blk_enqueue_resp`).
    pub fn enqueue_resp(&mut self, resp: BlkResp) -> Result<(), Full> {
        if !self.resp_producer.has_room() {
            return Err(Full);
        }
        let offset = self.resp_producer.slot() * size_of::<BlkResp>();
        let words: [u32; 3] = zerocopy::transmute!(resp);
        self.resp_slots.store_array(offset, words).map_err(|_| Full)?;
        self.resp_producer.publish(1);
        Ok(())
    }
}

/// The device description (`blk_storage_info_t`, 88 bytes); padding spelled out as in
/// [`BlkReq`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct BlkStorageInfo {
    /// NUL-terminated serial number, at most 63 characters.
    pub serial_number: [u8; BLK_MAX_SERIAL_NUMBER + 1],
    /// C `bool`: the device refuses writes.
    pub read_only: u8,
    /// C `bool`: the other fields are filled in (release/acquire).
    pub ready: u8,
    /// Sector size in bytes.
    pub sector_size: u16,
    /// Optimal block size in [`BLK_TRANSFER_SIZE`] units (0 for clients).
    pub block_size: u16,
    /// Queue depth hint.
    pub queue_depth: u16,
    /// Geometry hint: cylinders.
    pub cylinders: u16,
    /// Geometry hint: heads.
    pub heads: u16,
    /// Geometry hint: blocks (sectors per track).
    pub blocks: u16,
    /// Padding (C's implicit padding before `capacity`); zero.
    pub pad0: [u8; 2],
    /// Device size in [`BLK_TRANSFER_SIZE`] units.
    pub capacity: u64,
}

const _: () = assert!(size_of::<BlkStorageInfo>() == 88);
const _: () = assert!(size_of::<BlkStorageInfo>() <= BLK_STORAGE_INFO_REGION_SIZE);
const _: () = assert!(offset_of!(BlkStorageInfo, serial_number) == 0);
const _: () = assert!(offset_of!(BlkStorageInfo, read_only) == 64);
const _: () = assert!(offset_of!(BlkStorageInfo, ready) == 65);
const _: () = assert!(offset_of!(BlkStorageInfo, sector_size) == 66);
const _: () = assert!(offset_of!(BlkStorageInfo, block_size) == 68);
const _: () = assert!(offset_of!(BlkStorageInfo, queue_depth) == 70);
const _: () = assert!(offset_of!(BlkStorageInfo, cylinders) == 72);
const _: () = assert!(offset_of!(BlkStorageInfo, heads) == 74);
const _: () = assert!(offset_of!(BlkStorageInfo, blocks) == 76);
const _: () = assert!(offset_of!(BlkStorageInfo, pad0) == 78);
const _: () = assert!(offset_of!(BlkStorageInfo, capacity) == 80);

impl Default for BlkStorageInfo {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl BlkStorageInfo {
    /// All fields zero (not ready).
    pub const fn zeroed() -> Self {
        BlkStorageInfo {
            serial_number: [0; BLK_MAX_SERIAL_NUMBER + 1],
            read_only: 0,
            ready: 0,
            sector_size: 0,
            block_size: 0,
            queue_depth: 0,
            cylinders: 0,
            heads: 0,
            blocks: 0,
            pad0: [0; 2],
            capacity: 0,
        }
    }

    /// Whether the device refuses writes (any non-zero byte counts).
    pub fn is_read_only(&self) -> bool {
        self.read_only != 0
    }

    /// The serial number up to its NUL, at most 63 bytes.
    pub fn serial_number(&self) -> &[u8] {
        let max = &self.serial_number[..BLK_MAX_SERIAL_NUMBER];
        let len = max.iter().position(|b| *b == 0).unwrap_or(max.len());
        &max[..len]
    }

    /// Sets the serial number, cut to 63 bytes, NUL-padded.
    pub fn set_serial_number(&mut self, serial: &[u8]) {
        let len = serial.len().min(BLK_MAX_SERIAL_NUMBER);
        self.serial_number = [0; BLK_MAX_SERIAL_NUMBER + 1];
        self.serial_number[..len].copy_from_slice(&serial[..len]);
    }
}

/// A handle on a storage-info region.
///
/// Clients wait for [`StorageInfoHandle::read`] to return `Some`; the side
/// that owns the region calls [`StorageInfoHandle::write`], then
/// [`StorageInfoHandle::set_ready`].
#[derive(Debug)]
pub struct StorageInfoHandle {
    region: SharedRegion,
    ready: SharedAtomic<AtomicU8>,
}

const READY: usize = offset_of!(BlkStorageInfo, ready);

/// The fields of [`BlkStorageInfo`] a client needs per request
/// ([`StorageInfoHandle::essentials`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkStorageEssentials {
    /// Device size in [`BLK_TRANSFER_SIZE`] units.
    pub capacity: u64,
    /// The device refuses writes.
    pub read_only: bool,
    /// Optimal block size in [`BLK_TRANSFER_SIZE`] units.
    pub block_size: u16,
}

impl StorageInfoHandle {
    /// A handle on `region`, which must hold a [`BlkStorageInfo`].
    pub fn new(region: SharedRegion) -> Result<Self, Error> {
        let region =
            region.subregion(0, size_of::<BlkStorageInfo>()).map_err(|_| Error::RegionTooSmall)?;
        let ready = region.atomic_u8(READY)?;
        Ok(StorageInfoHandle { region, ready })
    }

    /// Whether the owner has published the info (`blk_storage_is_ready`, acquire).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) != 0
    }

    /// A copy of the info once it is ready, else `None`.
    pub fn read(&self) -> Option<BlkStorageInfo> {
        if !self.is_ready() {
            return None;
        }
        let mut info = BlkStorageInfo::zeroed();
        self.region.read(0, info.as_mut_bytes()).ok()?;
        info.pad0 = [0; 2];
        Some(info)
    }

    /// What a client checks on every request, once the info is ready: three
    /// loads of their own fields instead of [`read`](Self::read)'s copy of
    /// the whole 88-byte record (the block device asks for these on each
    /// request and register update).
    pub fn essentials(&self) -> Option<BlkStorageEssentials> {
        if !self.is_ready() {
            return None;
        }
        Some(BlkStorageEssentials {
            capacity: self.region.load(offset_of!(BlkStorageInfo, capacity)).ok()?,
            read_only: self.region.load::<u8>(offset_of!(BlkStorageInfo, read_only)).ok()? != 0,
            block_size: self.region.load(offset_of!(BlkStorageInfo, block_size)).ok()?,
        })
    }

    /// Owner: writes every field of `info` but `ready`.
    pub fn write(&self, info: &BlkStorageInfo) -> Result<(), Error> {
        let buf = info.as_bytes();
        self.region.write(0, &buf[..READY])?;
        self.region.write(READY + 1, &buf[READY + 1..])
    }

    /// Owner: publishes (or withdraws) the info (`blk_storage_set_ready`, release).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(u8::from(ready), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn capacity_for_region_sizes() {
        assert_eq!(capacity_for(0x1000, 0x1000), 64); // 16 + 32 * 127 > 4096
                                                      // Requests: (8192 - 16) / 32 = 255 slots; responses: (4096 - 8) / 12 = 340.
        assert_eq!(capacity_for(0x2000, 0x1000), 128);
        assert_eq!(capacity_for(16 + 32, 8 + 12), 1);
        assert_eq!(capacity_for(16, 4096), 0);
    }

    use super::*;
    use crate::testing::Notification;
    use std::sync::Arc;

    const REQ_HEAD: usize = offset_of!(BlkReqQueue, head);
    const REQ_TAIL: usize = offset_of!(BlkReqQueue, tail);
    const RESP_HEAD: usize = offset_of!(BlkRespQueue, head);
    const RESP_TAIL: usize = offset_of!(BlkRespQueue, tail);

    struct Fixture {
        req: SharedRegion,
        resp: SharedRegion,
        capacity: u32,
    }

    impl Fixture {
        fn new(capacity: u32) -> Self {
            let cap = capacity as usize;
            Fixture {
                req: SharedRegion::leak_zeroed(16 + 32 * cap),
                resp: SharedRegion::leak_zeroed(8 + 12 * cap),
                capacity,
            }
        }

        fn starting_at(capacity: u32, start: u32) -> Self {
            let fixture = Fixture::new(capacity);
            for offset in [REQ_HEAD, REQ_TAIL] {
                fixture.req.atomic_u32(offset).unwrap().store(start, Ordering::Relaxed);
            }
            for offset in [RESP_HEAD, RESP_TAIL] {
                fixture.resp.atomic_u32(offset).unwrap().store(start, Ordering::Relaxed);
            }
            fixture
        }

        fn handle(&self) -> BlkQueueHandle {
            BlkQueueHandle::new(self.req.clone(), self.resp.clone(), self.capacity).unwrap()
        }

        fn index(region: &SharedRegion, offset: usize) -> u32 {
            region.atomic_u32(offset).unwrap().load(Ordering::Relaxed)
        }
    }

    fn req(id: u32) -> BlkReq {
        BlkReq::new(BlkReqCode::Write, 4096 * u64::from(id % 8), u64::from(id) * 3, 2, id)
    }

    #[test]
    fn a_peeked_request_stays_until_skipped() {
        let f = Fixture::new(4);
        let (mut client, mut virt) = (f.handle(), f.handle());
        virt.skip_req();
        assert_eq!(Fixture::index(&f.req, REQ_HEAD), 0, "skipping nothing does nothing");
        client.enqueue_req(req(1)).unwrap();
        client.enqueue_req(req(2)).unwrap();
        assert_eq!(virt.peek_req(), Some(req(1)));
        assert_eq!(virt.peek_req(), Some(req(1)), "still there");
        assert_eq!(virt.req_len(), 2);
        virt.skip_req();
        assert_eq!(Fixture::index(&f.req, REQ_HEAD), 1);
        assert_eq!(virt.dequeue_req(), Some(req(2)));
        assert_eq!(virt.peek_req(), None);
    }

    #[test]
    fn layouts_match_the_c_headers() {
        assert_eq!((size_of::<BlkReq>(), align_of::<BlkReq>()), (32, 8));
        assert_eq!((size_of::<BlkResp>(), align_of::<BlkResp>()), (12, 4));
        assert_eq!(size_of::<BlkStorageInfo>(), 88);
        assert_eq!(offset_of!(BlkReq, count), 24);
        assert_eq!(offset_of!(BlkReqQueue, buffers), 16);
        assert_eq!(offset_of!(BlkRespQueue, buffers), 8);
        assert_eq!((REQ_HEAD, REQ_TAIL, RESP_HEAD, RESP_TAIL), (0, 4, 0, 4));
        assert_eq!(offset_of!(BlkStorageInfo, capacity), 80);
    }

    #[test]
    fn slot_images_use_the_c_offsets_and_zero_padding() {
        let req = BlkReq::new(BlkReqCode::Write, 2, 3, 4, 5);
        let bytes = req.as_bytes();
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[4..8], &[0; 4]);
        assert_eq!(&bytes[26..28], &[0; 2]);
        assert_eq!((bytes[8], bytes[16], bytes[24], bytes[28]), (2, 3, 4, 5));
        let resp = BlkResp::new(BlkRespStatus::ErrIo, 7, 9);
        let bytes = resp.as_bytes();
        assert_eq!((bytes[0], bytes[4], bytes[8]), (3, 7, 9));
        assert_eq!(&bytes[6..8], &[0; 2]);
    }

    #[test]
    fn padding_a_peer_sets_is_cleared_in_the_copy() {
        let mut slot = [0xffu8; 32];
        slot[..4].copy_from_slice(&1u32.to_ne_bytes());
        let req = BlkReq::from_slot(slot);
        assert_eq!((req.code(), req.pad0, req.pad1), (Some(BlkReqCode::Write), [0; 4], [0; 2]));
        assert_eq!((req.count, req.id), (u16::MAX, u32::MAX));
        let resp = BlkResp::from_slot([0xff; 12]);
        assert_eq!((resp.pad0, resp.success_count), ([0; 2], u16::MAX));
    }

    #[test]
    fn codes_and_statuses_decode() {
        assert_eq!(BlkReqCode::from_raw(3), Some(BlkReqCode::Barrier));
        assert_eq!(BlkReqCode::from_raw(4), None);
        assert_eq!(BlkRespStatus::from_raw(4), Some(BlkRespStatus::ErrNoDevice));
        assert_eq!(BlkRespStatus::from_raw(u32::MAX), None);
        assert_eq!(BlkReq { code: 77, ..req(1) }.code(), None);
        assert_eq!(BlkResp::new(BlkRespStatus::Ok, 1, 2).status(), Some(BlkRespStatus::Ok));
    }

    #[test]
    fn rejects_bad_capacity_and_small_regions() {
        let fixture = Fixture::new(8);
        let new = |req: &SharedRegion, resp: &SharedRegion, capacity| {
            BlkQueueHandle::new(req.clone(), resp.clone(), capacity).err()
        };
        assert_eq!(new(&fixture.req, &fixture.resp, 6), Some(Error::BadCapacity));
        assert_eq!(new(&fixture.req, &fixture.resp, 16), Some(Error::RegionTooSmall));
        let short = fixture.resp.subregion(0, 8 + 12 * 7).unwrap();
        assert_eq!(new(&fixture.req, &short, 8), Some(Error::RegionTooSmall));
        let odd = SharedRegion::leak_zeroed(8 + 16 + 32 * 8).subregion(2, 16 + 32 * 8).unwrap();
        assert_eq!(new(&odd, &fixture.resp, 8), Some(Error::Misaligned));
    }

    #[test]
    fn request_and_response_round_trip() {
        let fixture = Fixture::new(4);
        let (mut client, mut virt) = (fixture.handle(), fixture.handle());
        client.enqueue_req(req(42)).unwrap();
        assert_eq!((virt.req_len(), client.req_free()), (1, 3));
        assert_eq!(virt.dequeue_req(), Some(req(42)));
        assert_eq!(virt.dequeue_req(), None);
        virt.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 2, 42)).unwrap();
        assert_eq!(client.resp_len(), 1);
        assert_eq!(client.dequeue_resp(), Some(BlkResp::new(BlkRespStatus::Ok, 2, 42)));
        assert_eq!(client.dequeue_resp(), None);
        assert_eq!(Fixture::index(&fixture.req, REQ_HEAD), 1);
        assert_eq!(Fixture::index(&fixture.resp, RESP_TAIL), 1);
    }

    #[test]
    fn full_queues_refuse_entries() {
        let fixture = Fixture::new(2);
        let (mut client, mut virt) = (fixture.handle(), fixture.handle());
        client.enqueue_req(req(1)).unwrap();
        client.enqueue_req(req(2)).unwrap();
        assert!(client.req_full());
        assert_eq!(client.enqueue_req(req(3)), Err(Full));
        assert_eq!(Fixture::index(&fixture.req, REQ_TAIL), 2);
        virt.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 0, 1)).unwrap();
        virt.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 0, 2)).unwrap();
        assert!(virt.resp_full());
        assert_eq!(virt.enqueue_resp(BlkResp::default()), Err(Full));
        assert_eq!(virt.dequeue_req().map(|r| r.id), Some(1));
        assert_eq!(client.enqueue_req(req(3)), Ok(()));
    }

    #[test]
    fn indices_wrap_around_u32_max() {
        let fixture = Fixture::starting_at(4, u32::MAX - 1);
        let (mut client, mut virt) = (fixture.handle(), fixture.handle());
        for round in 0..3u32 {
            for id in 0..4 {
                client.enqueue_req(req(round * 4 + id)).unwrap();
            }
            assert!(client.req_full());
            for id in 0..4 {
                let got = virt.dequeue_req().unwrap();
                assert_eq!(got, req(round * 4 + id));
                virt.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, got.count, got.id)).unwrap();
            }
            for id in 0..4 {
                assert_eq!(client.dequeue_resp().map(|r| r.id), Some(round * 4 + id));
            }
        }
        assert_eq!(Fixture::index(&fixture.req, REQ_TAIL), 10);
        assert_eq!(Fixture::index(&fixture.resp, RESP_HEAD), 10);
    }

    #[test]
    fn hostile_indices_read_as_full_or_empty() {
        let fixture = Fixture::new(4);
        let (mut client, mut virt) = (fixture.handle(), fixture.handle());
        fixture.req.atomic_u32(REQ_HEAD).unwrap().store(100, Ordering::Relaxed);
        fixture.req.atomic_u32(REQ_TAIL).unwrap().store(u32::MAX, Ordering::Relaxed);
        fixture.resp.atomic_u32(RESP_TAIL).unwrap().store(5, Ordering::Relaxed);
        assert_eq!((client.req_free(), client.enqueue_req(req(1))), (0, Err(Full)));
        assert_eq!((client.resp_len(), client.dequeue_resp()), (0, None));
        assert_eq!((virt.req_len(), virt.dequeue_req()), (0, None));
        assert_eq!(Fixture::index(&fixture.req, REQ_HEAD), 100);
        assert_eq!(Fixture::index(&fixture.resp, RESP_HEAD), 0);
    }

    #[test]
    fn random_hostile_indices_never_escape_the_rings() {
        let fixture = Fixture::new(4);
        let (mut client, mut virt) = (fixture.handle(), fixture.handle());
        let mut rng = fastrand::Rng::with_seed(0x2545_f491);
        let mut next = || rng.u32(..);
        let fields = [
            (&fixture.req, REQ_HEAD),
            (&fixture.req, REQ_TAIL),
            (&fixture.resp, RESP_HEAD),
            (&fixture.resp, RESP_TAIL),
        ];
        for _ in 0..10_000 {
            let (region, offset) = fields[next() as usize % 4];
            let value = next();
            region
                .atomic_u32(offset)
                .unwrap()
                .store((value % 8) ^ (value & 0xffff_0000), Ordering::Relaxed);
            let free = client.req_free();
            assert!(free <= 4);
            assert_eq!(client.enqueue_req(req(1)).is_ok(), free > 0);
            assert!(virt.req_len() <= 4 && virt.resp_free() <= 4 && client.resp_len() <= 4);
            let _ = (virt.dequeue_req(), client.dequeue_resp());
            let _ = virt.enqueue_resp(BlkResp::default());
        }
    }

    #[test]
    fn plugged_flag_round_trips() {
        let fixture = Fixture::new(2);
        let client = fixture.handle();
        assert!(!client.is_plugged());
        client.set_plugged(true);
        let mut byte = [0u8];
        fixture.req.read(8, &mut byte).unwrap();
        assert_eq!(byte, [1]);
        assert!(fixture.handle().is_plugged());
        client.set_plugged(false);
        assert!(!client.is_plugged());
    }

    #[test]
    fn storage_info_is_hidden_until_ready() {
        let region = SharedRegion::leak_zeroed(BLK_STORAGE_INFO_REGION_SIZE);
        let (owner, client) = (
            StorageInfoHandle::new(region.clone()).unwrap(),
            StorageInfoHandle::new(region.clone()).unwrap(),
        );
        let mut info = BlkStorageInfo {
            read_only: 1,
            sector_size: 512,
            capacity: 1 << 20,
            ..BlkStorageInfo::zeroed()
        };
        info.set_serial_number(b"sddf-test-disk");
        owner.write(&info).unwrap();
        assert!(!client.is_ready());
        assert_eq!(client.read(), None);
        assert_eq!(client.essentials(), None);
        owner.set_ready(true);
        let got = client.read().unwrap();
        let essentials = BlkStorageEssentials { capacity: 1 << 20, read_only: true, block_size: 0 };
        assert_eq!(client.essentials(), Some(essentials));
        assert_eq!(got, BlkStorageInfo { ready: 1, ..info });
        assert!(got.is_read_only());
        assert_eq!(got.serial_number(), b"sddf-test-disk");
        let mut raw = [0u8; 8];
        region.read(80, &mut raw).unwrap();
        assert_eq!(u64::from_ne_bytes(raw), 1 << 20);
    }

    #[test]
    fn storage_info_tolerates_hostile_bytes() {
        let region = SharedRegion::leak_zeroed(88);
        region.write(0, &[0xff; 88]).unwrap();
        let handle = StorageInfoHandle::new(region).unwrap();
        let info = handle.read().unwrap();
        assert_eq!(info.serial_number().len(), BLK_MAX_SERIAL_NUMBER);
        assert!(info.is_read_only());
        let essentials = handle.essentials().unwrap();
        assert_eq!((essentials.capacity, essentials.read_only), (u64::MAX, true));
        assert_eq!(essentials.block_size, info.block_size);
        assert_eq!(
            StorageInfoHandle::new(SharedRegion::leak_zeroed(87)).err(),
            Some(Error::RegionTooSmall)
        );
    }

    fn request_id(i: u32) -> u32 {
        i.wrapping_mul(0x9e37_79b9)
    }

    fn run_client(mut queue: BlkQueueHandle, total: u32, me: &Notification, virt: &Notification) {
        let (mut sent, mut received) = (0u32, 0u32);
        while received < total {
            let mut progress = false;
            while sent < total && sent - received < queue.capacity() {
                let id = request_id(sent);
                let count = (sent % 7) as u16;
                let req =
                    BlkReq::new(BlkReqCode::Read, u64::from(sent) * 4096, u64::from(id), count, id);
                queue.enqueue_req(req).unwrap();
                sent += 1;
                progress = true;
            }
            if progress {
                virt.notify();
            }
            while let Some(resp) = queue.dequeue_resp() {
                let want =
                    BlkResp::new(BlkRespStatus::Ok, (received % 7) as u16, request_id(received));
                assert_eq!(resp, want);
                received += 1;
                progress = true;
            }
            if !progress {
                me.wait("client");
            }
        }
    }

    fn run_virt(mut queue: BlkQueueHandle, total: u32, me: &Notification, client: &Notification) {
        let mut done = 0u32;
        while done < total {
            let mut progress = false;
            while let Some(req) = queue.dequeue_req() {
                assert_eq!(req.code(), Some(BlkReqCode::Read));
                assert_eq!(req.block_number, u64::from(req.id));
                queue.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, req.count, req.id)).unwrap();
                done += 1;
                progress = true;
            }
            if progress {
                client.notify();
            } else {
                me.wait("virt");
            }
        }
    }

    #[test]
    fn threads_exchange_requests_and_responses() {
        const TOTAL: u32 = 200_000;
        let fixture = Fixture::starting_at(16, u32::MAX - 100);
        let (client, virt) = (fixture.handle(), fixture.handle());
        let to_client = Arc::new(Notification::default());
        let to_virt = Arc::new(Notification::default());
        let (v_me, v_peer) = (to_virt.clone(), to_client.clone());
        let thread = std::thread::spawn(move || run_virt(virt, TOTAL, &v_me, &v_peer));
        run_client(client, TOTAL, &to_client, &to_virt);
        thread.join().unwrap();
        let end = (u32::MAX - 100).wrapping_add(TOTAL);
        assert_eq!(Fixture::index(&fixture.req, REQ_HEAD), end);
        assert_eq!(Fixture::index(&fixture.resp, RESP_HEAD), end);
    }
}
