//! Sound queues and the shared stream state
//! (`SD include/sddf/sound/queue.h`, `sound.h`, sddf-abi.md §4).
//!
//! A connection has four rings, all with `tail` *before* `head`: commands
//! (`cmd_req`, `cmd_res`, [`SoundCmd`] slots, capacity
//! [`SOUND_CMD_QUEUE_CAPACITY`]) and PCM buffers (`pcm_req`, `pcm_res`,
//! [`SoundPcm`] slots, capacity [`SOUND_PCM_QUEUE_CAPACITY`]). A PCM entry
//! names one cell of [`SOUND_PCM_BUFFER_SIZE`] bytes in a data region by its
//! offset. The driver describes its streams in a shared-state region
//! ([`SoundSharedState`]) and sets `ready` when it has.
//!
//! There are no signalling flags: notify the peer after every batch. Each
//! side takes the index it owns from shared memory when the handle is created
//! and then keeps a private copy; the peer's index is read with `Acquire`, a
//! slot is copied out once, and a peer index more than `capacity` away reads
//! as a full or empty ring (sddf-abi.md §1.1, §1.3).
//!
//! In sDDF 0.7 the capacities are fixed constants and the regions come from
//! `setvar` symbols, not an sdfgen config (§4.3). Every C component passes the
//! PCM regions to `sound_queues_init` swapped, so the region the system
//! description names `*_pcm_req` carries *responses*; build the handles with
//! [`SoundQueues::from_sddf_names`] to interoperate.

use core::marker::PhantomData;
use core::mem::offset_of;
use core::sync::atomic::AtomicU32;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::ring::{Capacity, Consumer, Producer};
use crate::{Error, SharedRegion};

mod state;

pub use state::{SoundPcmInfo, SoundSharedState, SoundSharedStateHandle};

/// Slots of each command ring (`SOUND_CMD_QUEUE_CAPACITY`).
pub const SOUND_CMD_QUEUE_CAPACITY: u32 = 64;
/// Slots of each PCM ring (`SOUND_PCM_QUEUE_CAPACITY`).
pub const SOUND_PCM_QUEUE_CAPACITY: u32 = 256;
/// Size of one PCM cell of the data region (`SOUND_PCM_BUFFER_SIZE`).
pub const SOUND_PCM_BUFFER_SIZE: usize = 4096;
/// Entries of the shared state's stream table (`SOUND_MAX_STREAM_COUNT`).
pub const SOUND_MAX_STREAM_COUNT: usize = 32;
/// Defined bits of [`SoundPcmInfo::formats`]: formats 0 to 24.
pub const SOUND_PCM_FORMATS_MASK: u64 = (1 << 25) - 1;
/// Defined bits of [`SoundPcmInfo::rates`]: rates 0 to 13.
pub const SOUND_PCM_RATES_MASK: u64 = (1 << 14) - 1;

/// Command codes (`sound_cmd_code_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundCmdCode {
    /// `SOUND_CMD_TAKE`: take the stream, with channels, format and rate.
    Take = 0,
    /// `SOUND_CMD_PREPARE`: allocate the stream's resources.
    Prepare = 1,
    /// `SOUND_CMD_RELEASE`: free them (and the stream's ownership).
    Release = 2,
    /// `SOUND_CMD_START`: start playing or recording.
    Start = 3,
    /// `SOUND_CMD_STOP`: stop.
    Stop = 4,
}

impl SoundCmdCode {
    /// The code for a raw value from shared memory, if it is one.
    pub fn from_raw(raw: u32) -> Option<Self> {
        [Self::Take, Self::Prepare, Self::Release, Self::Start, Self::Stop]
            .into_iter()
            .find(|c| *c as u32 == raw)
    }
}

/// Response statuses (`sound_status_t`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundStatus {
    /// `SOUND_S_OK`: success.
    Ok = 0,
    /// `SOUND_S_BAD_MSG`: malformed request or invalid parameters.
    BadMsg = 1,
    /// `SOUND_S_NOT_SUPP`: operation or parameters not supported.
    NotSupp = 2,
    /// `SOUND_S_IO_ERR`: the device failed.
    IoErr = 3,
    /// `SOUND_S_BUSY`: another client owns the stream (from the virtualiser).
    Busy = 4,
}

impl SoundStatus {
    /// The status for a raw value from shared memory, if it is one.
    pub fn from_raw(raw: u32) -> Option<Self> {
        [Self::Ok, Self::BadMsg, Self::NotSupp, Self::IoErr, Self::Busy]
            .into_iter()
            .find(|s| *s as u32 == raw)
    }
}

/// Stream directions (`sound_direction_t`).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundDirection {
    /// `SOUND_D_OUTPUT`: playback.
    Output = 0,
    /// `SOUND_D_INPUT`: capture.
    Input = 1,
}

impl SoundDirection {
    /// The direction for a raw value from shared memory, if it is one.
    pub fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::Output),
            1 => Some(Self::Input),
            _ => None,
        }
    }
}

/// Frame rates (`sound_pcm_rate_t`); `1 << rate` in [`SoundPcmInfo::rates`].
/// The values are virtio-snd's (virtio 1.2 §5.14.6.6.2).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundPcmRate {
    /// 5512 frames per second.
    Hz5512 = 0,
    /// 8000 frames per second.
    Hz8000,
    /// 11025 frames per second.
    Hz11025,
    /// 16000 frames per second.
    Hz16000,
    /// 22050 frames per second.
    Hz22050,
    /// 32000 frames per second.
    Hz32000,
    /// 44100 frames per second.
    Hz44100,
    /// 48000 frames per second.
    Hz48000,
    /// 64000 frames per second.
    Hz64000,
    /// 88200 frames per second.
    Hz88200,
    /// 96000 frames per second.
    Hz96000,
    /// 176400 frames per second.
    Hz176400,
    /// 192000 frames per second.
    Hz192000,
    /// 384000 frames per second.
    Hz384000,
}

/// Frames per second of each rate, by value.
const RATE_HZ: [u32; 14] = [
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000,
    384000,
];

impl SoundPcmRate {
    /// The rate for a raw value, if it is one (0 to 13).
    pub fn from_raw(raw: u8) -> Option<Self> {
        use SoundPcmRate::*;
        let all = [
            Hz5512, Hz8000, Hz11025, Hz16000, Hz22050, Hz32000, Hz44100, Hz48000, Hz64000, Hz88200,
            Hz96000, Hz176400, Hz192000, Hz384000,
        ];
        all.get(usize::from(raw)).copied()
    }

    /// Frames per second.
    pub fn hz(self) -> u32 {
        RATE_HZ[self as usize]
    }
}

/// Sample formats (`sound_pcm_fmt_t`, values 0 to 24 in virtio-snd's order); the
/// only ones named here are those a driver commonly offers. `1 << format` in
/// [`SoundPcmInfo::formats`].
pub mod format {
    /// `SOUND_PCM_FMT_IMA_ADPCM` (4 bits).
    pub const IMA_ADPCM: u8 = 0;
    /// `SOUND_PCM_FMT_S8`.
    pub const S8: u8 = 3;
    /// `SOUND_PCM_FMT_U8`.
    pub const U8: u8 = 4;
    /// `SOUND_PCM_FMT_S16`.
    pub const S16: u8 = 5;
    /// `SOUND_PCM_FMT_S24_3` (24 bits in 3 bytes).
    pub const S24_3: u8 = 11;
    /// `SOUND_PCM_FMT_S24` (24 bits in 4 bytes).
    pub const S24: u8 = 15;
    /// `SOUND_PCM_FMT_S32`.
    pub const S32: u8 = 17;
    /// `SOUND_PCM_FMT_FLOAT`.
    pub const FLOAT: u8 = 19;
    /// `SOUND_PCM_FMT_FLOAT64`.
    pub const FLOAT64: u8 = 20;
    /// `SOUND_PCM_FMT_IEC958_SUBFRAME`, the last one.
    pub const IEC958_SUBFRAME: u8 = 24;
}

/// The parameters of a TAKE command (`sound_pcm_set_params_t`, 3 bytes).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct SoundPcmSetParams {
    /// Channels per frame.
    pub channels: u8,
    /// A [`format`] value.
    pub format: u8,
    /// A [`SoundPcmRate`] value.
    pub rate: u8,
}

const _: () = assert!(size_of::<SoundPcmSetParams>() == 3);

/// A command or its response (`sound_cmd_t`, 16 bytes).
///
/// Bytes 12..16 are a C union: the TAKE parameters in a request (`channels`,
/// `format`, `rate` at 12, 13, 14), a [`SoundStatus`] in a response. They are
/// kept as raw bytes; read them with [`SoundCmd::set_params`] or
/// [`SoundCmd::status`].
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct SoundCmd {
    /// A [`SoundCmdCode`] value (raw: the peer may write anything).
    pub code: u32,
    /// Chosen by the requester, echoed in the response.
    pub cookie: u32,
    /// The stream the command is for.
    pub stream_id: u32,
    /// The union: `set_params` or `status`, in memory order.
    pub args: [u8; 4],
}

const _: () = assert!(size_of::<SoundCmd>() == 16 && align_of::<SoundCmd>() == 4);
const _: () = assert!(offset_of!(SoundCmd, code) == 0);
const _: () = assert!(offset_of!(SoundCmd, cookie) == 4);
const _: () = assert!(offset_of!(SoundCmd, stream_id) == 8);
const _: () = assert!(offset_of!(SoundCmd, args) == 12);

impl SoundCmd {
    /// A command without parameters (PREPARE, RELEASE, START, STOP).
    pub fn new(code: SoundCmdCode, cookie: u32, stream_id: u32) -> Self {
        SoundCmd { code: code as u32, cookie, stream_id, args: [0; 4] }
    }

    /// A TAKE command with its stream parameters.
    pub fn take(cookie: u32, stream_id: u32, params: SoundPcmSetParams) -> Self {
        let args = [params.channels, params.format, params.rate, 0];
        SoundCmd { code: SoundCmdCode::Take as u32, cookie, stream_id, args }
    }

    /// The response to this command: the same code, cookie and stream, with
    /// `status` in the union.
    pub fn respond(self, status: SoundStatus) -> Self {
        SoundCmd { args: (status as u32).to_ne_bytes(), ..self }
    }

    /// The command code, or `None` for a value outside the protocol.
    pub fn code(&self) -> Option<SoundCmdCode> {
        SoundCmdCode::from_raw(self.code)
    }

    /// The union read as TAKE parameters.
    pub fn set_params(&self) -> SoundPcmSetParams {
        let [channels, format, rate, _] = self.args;
        SoundPcmSetParams { channels, format, rate }
    }

    /// The union read as a response status, or `None` for a value outside the
    /// protocol.
    pub fn status(&self) -> Option<SoundStatus> {
        SoundStatus::from_raw(u32::from_ne_bytes(self.args))
    }
}

/// A PCM request or response (`sound_pcm_t`, 32 bytes).
///
/// C's trailing padding is spelled out (`pad0`) so the slot is copied byte for byte
/// (`zerocopy`'s `IntoBytes` proves there is no other padding); it is zero in every entry
/// this crate writes or returns.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct SoundPcm {
    /// Chosen by the requester, echoed in the response.
    pub cookie: u32,
    /// The stream the buffer is for.
    pub stream_id: u32,
    /// Client ↔ virtualiser: offset of the cell in the data region.
    /// Virtualiser ↔ driver: IO (physical) address.
    pub io_or_offset: u64,
    /// Bytes of PCM data (playback) or room for them (capture); at most
    /// [`SOUND_PCM_BUFFER_SIZE`].
    pub len: u32,
    /// A [`SoundStatus`] value (responses only).
    pub status: u32,
    /// Play or record latency in bytes (responses only).
    pub latency_bytes: u32,
    /// Padding (C's trailing padding to the 8-byte alignment); zero.
    pub pad0: [u8; 4],
}

const _: () = assert!(size_of::<SoundPcm>() == 32 && align_of::<SoundPcm>() == 8);
const _: () = assert!(offset_of!(SoundPcm, cookie) == 0);
const _: () = assert!(offset_of!(SoundPcm, stream_id) == 4);
const _: () = assert!(offset_of!(SoundPcm, io_or_offset) == 8);
const _: () = assert!(offset_of!(SoundPcm, len) == 16);
const _: () = assert!(offset_of!(SoundPcm, status) == 20);
const _: () = assert!(offset_of!(SoundPcm, latency_bytes) == 24);
const _: () = assert!(offset_of!(SoundPcm, pad0) == 28);

impl SoundPcm {
    /// A request for the cell at `offset` holding (or with room for) `len` bytes.
    pub fn new(cookie: u32, stream_id: u32, offset: u64, len: u32) -> Self {
        SoundPcm { cookie, stream_id, io_or_offset: offset, len, ..SoundPcm::default() }
    }

    /// The response to this request: `status` and `latency_bytes` filled in.
    pub fn respond(self, status: SoundStatus, latency_bytes: u32) -> Self {
        SoundPcm { status: status as u32, latency_bytes, ..self }
    }

    /// The status, or `None` for a value outside the protocol.
    pub fn status(&self) -> Option<SoundStatus> {
        SoundStatus::from_raw(self.status)
    }

    /// Whether `io_or_offset` and `len` name a whole cell of a data region of
    /// `cells` cells: a multiple of [`SOUND_PCM_BUFFER_SIZE`] below `cells`
    /// cells, and at most one cell long (the sDDF virtualiser's check).
    pub fn in_data_region(&self, cells: u32) -> bool {
        let cell = SOUND_PCM_BUFFER_SIZE as u64;
        self.io_or_offset % cell == 0
            && self.io_or_offset / cell < u64::from(cells)
            && self.len as usize <= SOUND_PCM_BUFFER_SIZE
    }
}

/// Layout of a command ring's header (`sound_cmd_queue_t`); slots follow.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SoundCmdQueue {
    /// Next index to write; written by the producer only.
    pub tail: AtomicU32,
    /// Next index to read; written by the consumer only.
    pub head: AtomicU32,
    /// `capacity` command slots (a C flexible array member).
    pub buffers: [SoundCmd; 0],
}

const _: () = assert!(size_of::<SoundCmdQueue>() == 8 && align_of::<SoundCmdQueue>() == 4);
const _: () = assert!(offset_of!(SoundCmdQueue, tail) == 0);
const _: () = assert!(offset_of!(SoundCmdQueue, head) == 4);
const _: () = assert!(offset_of!(SoundCmdQueue, buffers) == 8);

/// Layout of a PCM ring's header (`sound_pcm_queue_t`); slots follow.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SoundPcmQueue {
    /// Next index to write; written by the producer only.
    pub tail: AtomicU32,
    /// Next index to read; written by the consumer only.
    pub head: AtomicU32,
    /// `capacity` PCM slots (a C flexible array member).
    pub buffers: [SoundPcm; 0],
}

const _: () = assert!(size_of::<SoundPcmQueue>() == 8 && align_of::<SoundPcmQueue>() == 8);
const _: () = assert!(offset_of!(SoundPcmQueue, tail) == 0);
const _: () = assert!(offset_of!(SoundPcmQueue, head) == 4);
const _: () = assert!(offset_of!(SoundPcmQueue, buffers) == 8);

/// The ring was full; nothing was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl core::fmt::Display for Full {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("sDDF sound queue is full")
    }
}

/// A slot type: a plain C struct whose padding, if any, is cleared after a copy out of
/// shared memory (the peer may have set it).
trait Slot: Copy + FromBytes + IntoBytes + Immutable + KnownLayout {
    /// The entry with its padding zeroed.
    fn clean(self) -> Self {
        self
    }
}

impl Slot for SoundCmd {}

impl Slot for SoundPcm {
    fn clean(self) -> Self {
        SoundPcm { pad0: [0; 4], ..self }
    }
}

/// Bytes of the largest slot (a [`SoundPcm`]).
const MAX_SLOT: usize = size_of::<SoundPcm>();

/// Offset of the first slot: both ring headers are 8 bytes.
const SLOTS: usize = 8;
/// Offsets of the indices in both ring headers.
const TAIL: usize = 0;
const HEAD: usize = 4;

/// One ring of `T` slots: a producer and a consumer view; each side uses one.
#[derive(Debug)]
struct Ring<T> {
    producer: Producer,
    consumer: Consumer,
    slots: SharedRegion,
    capacity: Capacity,
    _slot: PhantomData<T>,
}

impl<T: Slot> Ring<T> {
    fn new(region: SharedRegion, capacity: u32, name: &'static str) -> Result<Self, Error> {
        let capacity = Capacity::new(capacity)?;
        let len =
            (capacity.get() as usize).checked_mul(size_of::<T>()).ok_or(Error::RegionTooSmall)?;
        let slots = region.subregion(SLOTS, len).map_err(|_| Error::RegionTooSmall)?;
        let index = |offset| region.atomic_u32(offset);
        Ok(Ring {
            producer: Producer::new(index(TAIL)?, index(HEAD)?, capacity, name),
            consumer: Consumer::new(index(HEAD)?, index(TAIL)?, capacity, name),
            slots,
            capacity,
            _slot: PhantomData,
        })
    }

    fn enqueue(&mut self, entry: &T) -> Result<(), Full> {
        if self.producer.free() == 0 {
            return Err(Full);
        }
        let offset = self.producer.slot() * size_of::<T>();
        self.slots.write(offset, entry.as_bytes()).map_err(|_| Full)?;
        self.producer.publish(1);
        Ok(())
    }

    fn peek(&self) -> Option<T> {
        if self.consumer.available() == 0 {
            return None;
        }
        let mut buf = [0u8; MAX_SLOT];
        let image = buf.get_mut(..size_of::<T>())?;
        let offset = self.consumer.slot() * size_of::<T>();
        self.slots.read(offset, image).ok()?;
        T::read_from_bytes(image).ok().map(T::clean)
    }

    fn skip(&mut self) {
        if self.consumer.available() > 0 {
            self.consumer.release(1);
        }
    }
}

macro_rules! queue_handle {
    ($(#[$doc:meta])* $name:ident, $slot:ty, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(Ring<$slot>);

        impl $name {
            #[doc = concat!("A handle on the ", $what, " ring in `region` (header, then slots).")]
            ///
            /// `capacity` must be a power of two ([`Error::BadCapacity`]) whose
            /// slots fit in `region` ([`Error::RegionTooSmall`]), and the header
            /// must be aligned ([`Error::Misaligned`]).
            pub fn new(region: SharedRegion, capacity: u32) -> Result<Self, Error> {
                Ring::new(region, capacity, concat!("sound ", $what)).map($name)
            }

            /// Slots in the ring.
            pub fn capacity(&self) -> u32 {
                self.0.capacity.get()
            }

            /// Producer: free slots (0 if the peer's `head` is corrupt).
            pub fn free(&self) -> u32 {
                self.0.producer.free()
            }

            /// Producer: whether nothing can be enqueued.
            pub fn is_full(&self) -> bool {
                self.free() == 0
            }

            /// Producer: enqueues `entry` (slot, `Release`, then `tail`). Notify
            /// the peer after a batch.
            pub fn enqueue(&mut self, entry: $slot) -> Result<(), Full> {
                self.0.enqueue(&entry)
            }

            /// Consumer: entries ready (0 if the peer's `tail` is corrupt).
            pub fn len(&self) -> u32 {
                self.0.consumer.available()
            }

            /// Consumer: whether no entry is ready.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Consumer: takes the next entry, copied out once. Validate the
            /// copy, not shared memory.
            pub fn dequeue(&mut self) -> Option<$slot> {
                let entry = self.0.peek()?;
                self.0.skip();
                Some(entry)
            }

            /// Consumer: a copy of the next entry, left in the ring; take it
            /// with `skip` once it is handled.
            pub fn peek(&self) -> Option<$slot> {
                self.0.peek()
            }

            /// Consumer: takes the entry `peek` returned (nothing if empty).
            pub fn skip(&mut self) {
                self.0.skip()
            }
        }
    };
}

queue_handle!(
    /// One side's handle on a command ring (`sound_cmd_queue_handle_t`).
    SoundCmdQueueHandle,
    SoundCmd,
    "command"
);

queue_handle!(
    /// One side's handle on a PCM ring (`sound_pcm_queue_handle_t`).
    SoundPcmQueueHandle,
    SoundPcm,
    "PCM"
);

/// The four rings of a connection (`sound_queues_t`).
///
/// A client enqueues on `cmd_req` and `pcm_req` and dequeues from `cmd_res`
/// and `pcm_res`; a driver or virtualiser does the opposite.
#[derive(Debug)]
pub struct SoundQueues {
    /// Commands, client to driver.
    pub cmd_req: SoundCmdQueueHandle,
    /// Command responses, driver to client.
    pub cmd_res: SoundCmdQueueHandle,
    /// PCM buffers, client to driver.
    pub pcm_req: SoundPcmQueueHandle,
    /// PCM buffers answered, driver to client.
    pub pcm_res: SoundPcmQueueHandle,
}

impl SoundQueues {
    /// Handles on regions in the roles they play, with sDDF 0.7's fixed
    /// capacities ([`SOUND_CMD_QUEUE_CAPACITY`], [`SOUND_PCM_QUEUE_CAPACITY`]).
    pub fn new(
        cmd_req: SharedRegion,
        cmd_res: SharedRegion,
        pcm_req: SharedRegion,
        pcm_res: SharedRegion,
    ) -> Result<Self, Error> {
        Ok(SoundQueues {
            cmd_req: SoundCmdQueueHandle::new(cmd_req, SOUND_CMD_QUEUE_CAPACITY)?,
            cmd_res: SoundCmdQueueHandle::new(cmd_res, SOUND_CMD_QUEUE_CAPACITY)?,
            pcm_req: SoundPcmQueueHandle::new(pcm_req, SOUND_PCM_QUEUE_CAPACITY)?,
            pcm_res: SoundPcmQueueHandle::new(pcm_res, SOUND_PCM_QUEUE_CAPACITY)?,
        })
    }

    /// Handles on the regions a 0.7 system description names `cmd_req`,
    /// `cmd_res`, `pcm_req` and `pcm_res`, used the way the C components use
    /// them: `sound_queues_init` takes the PCM response ring before the
    /// request ring, and every caller passes them the other way round, so the
    /// region named `pcm_req` carries responses and `pcm_res` requests
    /// (sddf-abi.md §4.3).
    pub fn from_sddf_names(
        cmd_req: SharedRegion,
        cmd_res: SharedRegion,
        named_pcm_req: SharedRegion,
        named_pcm_res: SharedRegion,
    ) -> Result<Self, Error> {
        SoundQueues::new(cmd_req, cmd_res, named_pcm_res, named_pcm_req)
    }
}

/// Bytes each ring region needs for `capacity` slots of a command (`pcm` false)
/// or PCM ring.
pub const fn region_size(pcm: bool, capacity: u32) -> usize {
    let slot = if pcm { size_of::<SoundPcm>() } else { size_of::<SoundCmd>() };
    SLOTS + slot * capacity as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Notification;
    use core::sync::atomic::Ordering;
    use std::sync::Arc;

    /// Shared memory for one connection's four rings.
    struct Fixture {
        regions: [SharedRegion; 4],
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                regions: [
                    SharedRegion::leak_zeroed(region_size(false, SOUND_CMD_QUEUE_CAPACITY)),
                    SharedRegion::leak_zeroed(region_size(false, SOUND_CMD_QUEUE_CAPACITY)),
                    SharedRegion::leak_zeroed(region_size(true, SOUND_PCM_QUEUE_CAPACITY)),
                    SharedRegion::leak_zeroed(region_size(true, SOUND_PCM_QUEUE_CAPACITY)),
                ],
            }
        }

        /// Every ring's indices at `start`, as if `start` entries had passed.
        fn starting_at(start: u32) -> Self {
            let fixture = Fixture::new();
            for region in &fixture.regions {
                fixture.set(region, TAIL, start);
                fixture.set(region, HEAD, start);
            }
            fixture
        }

        fn queues(&self) -> SoundQueues {
            let [a, b, c, d] = self.regions.clone();
            SoundQueues::new(a, b, c, d).unwrap()
        }

        fn set(&self, region: &SharedRegion, field: usize, value: u32) {
            region.atomic_u32(field).unwrap().store(value, Ordering::Relaxed);
        }

        fn get(&self, ring: usize, field: usize) -> u32 {
            self.regions[ring].atomic_u32(field).unwrap().load(Ordering::Relaxed)
        }
    }

    fn params() -> SoundPcmSetParams {
        SoundPcmSetParams { channels: 2, format: format::S16, rate: SoundPcmRate::Hz48000 as u8 }
    }

    #[test]
    fn layouts_match_the_c_headers() {
        assert_eq!((size_of::<SoundCmd>(), align_of::<SoundCmd>()), (16, 4));
        assert_eq!((size_of::<SoundPcm>(), align_of::<SoundPcm>()), (32, 8));
        assert_eq!((size_of::<SoundPcmInfo>(), align_of::<SoundPcmInfo>()), (24, 8));
        assert_eq!(size_of::<SoundSharedState>(), 776);
        assert_eq!(offset_of!(SoundCmd, args), 12);
        assert_eq!(offset_of!(SoundPcm, latency_bytes), 24);
        assert_eq!(offset_of!(SoundCmdQueue, buffers), 8);
        assert_eq!(offset_of!(SoundPcmQueue, buffers), 8);
        assert_eq!(
            (TAIL, HEAD),
            (offset_of!(SoundCmdQueue, tail), offset_of!(SoundCmdQueue, head))
        );
        assert_eq!(offset_of!(SoundSharedState, stream_info), 8);
        assert_eq!(region_size(false, 64), 1032);
        assert_eq!(region_size(true, 256), 8200);
    }

    #[test]
    fn slot_images_use_the_c_offsets_and_zero_padding() {
        let take = SoundCmd::take(7, 3, params());
        let buf = take.as_bytes();
        assert_eq!((buf[0], buf[4], buf[8]), (0, 7, 3));
        assert_eq!(&buf[12..16], &[2, 5, 7, 0], "channels, format, rate, zero");
        let res = SoundCmd::new(SoundCmdCode::Stop, 1, 2).respond(SoundStatus::NotSupp);
        assert_eq!(u32::from_ne_bytes(res.as_bytes()[12..16].try_into().unwrap()), 2);
        let pcm = SoundPcm::new(1, 2, 0x3000, 4096).respond(SoundStatus::IoErr, 99);
        let buf = pcm.as_bytes();
        assert_eq!((buf[0], buf[4], buf[9], buf[17], buf[20], buf[24]), (1, 2, 0x30, 16, 3, 99));
        assert_eq!(&buf[28..32], &[0; 4], "padding zero");
        let mut dirty = [0u8; 32];
        dirty.copy_from_slice(buf);
        dirty[28..].fill(0xee);
        assert_eq!(
            SoundPcm::read_from_bytes(&dirty[..]).unwrap().clean(),
            pcm,
            "peer padding cleared"
        );
    }

    #[test]
    fn codes_statuses_directions_and_rates_decode() {
        assert_eq!(SoundCmdCode::from_raw(4), Some(SoundCmdCode::Stop));
        assert_eq!(SoundCmdCode::from_raw(5), None);
        assert_eq!(SoundStatus::from_raw(4), Some(SoundStatus::Busy));
        assert_eq!(SoundStatus::from_raw(u32::MAX), None);
        assert_eq!(SoundDirection::from_raw(1), Some(SoundDirection::Input));
        assert_eq!(SoundDirection::from_raw(2), None);
        assert_eq!(SoundPcmRate::from_raw(7).map(SoundPcmRate::hz), Some(48000));
        assert_eq!(SoundPcmRate::from_raw(13).map(SoundPcmRate::hz), Some(384000));
        assert_eq!(SoundPcmRate::from_raw(14), None);
        let cmd = SoundCmd::take(1, 2, params());
        assert_eq!((cmd.code(), cmd.set_params()), (Some(SoundCmdCode::Take), params()));
        assert_eq!(cmd.respond(SoundStatus::Ok).status(), Some(SoundStatus::Ok));
        assert_eq!(SoundCmd { args: [9, 9, 9, 9], ..cmd }.status(), None);
        assert_eq!(SoundCmd { code: 77, ..cmd }.code(), None);
    }

    #[test]
    fn pcm_cells_must_lie_in_the_data_region() {
        let cell = SOUND_PCM_BUFFER_SIZE as u64;
        assert!(SoundPcm::new(0, 0, 3 * cell, 4096).in_data_region(4));
        assert!(!SoundPcm::new(0, 0, 4 * cell, 1).in_data_region(4), "past the last cell");
        assert!(!SoundPcm::new(0, 0, cell + 8, 1).in_data_region(4), "not a cell start");
        assert!(!SoundPcm::new(0, 0, 0, 4097).in_data_region(4), "longer than a cell");
        assert!(!SoundPcm::new(0, 0, u64::MAX - 4095, 1).in_data_region(u32::MAX));
    }

    #[test]
    fn rejects_bad_capacity_and_small_regions() {
        let f = Fixture::new();
        let cmd = |region: &SharedRegion, capacity| {
            SoundCmdQueueHandle::new(region.clone(), capacity).err()
        };
        assert_eq!(cmd(&f.regions[0], 48), Some(Error::BadCapacity));
        assert_eq!(cmd(&f.regions[0], 128), Some(Error::RegionTooSmall));
        let short = f.regions[2].subregion(0, region_size(true, 256) - 1).unwrap();
        assert_eq!(SoundPcmQueueHandle::new(short, 256).err(), Some(Error::RegionTooSmall));
        let odd = SharedRegion::leak_zeroed(2 + 1032).subregion(2, 1032).unwrap();
        assert_eq!(cmd(&odd, 64), Some(Error::Misaligned));
    }

    #[test]
    fn commands_and_pcm_buffers_round_trip() {
        let f = Fixture::new();
        let (mut client, mut driver) = (f.queues(), f.queues());
        client.cmd_req.enqueue(SoundCmd::take(10, 1, params())).unwrap();
        client.pcm_req.enqueue(SoundPcm::new(11, 1, 4096, 512)).unwrap();
        assert_eq!((driver.cmd_req.len(), driver.pcm_req.len()), (1, 1));
        let cmd = driver.cmd_req.dequeue().unwrap();
        assert_eq!(cmd, SoundCmd::take(10, 1, params()));
        driver.cmd_res.enqueue(cmd.respond(SoundStatus::Ok)).unwrap();
        let pcm = driver.pcm_req.dequeue().unwrap();
        driver.pcm_res.enqueue(pcm.respond(SoundStatus::Ok, 2048)).unwrap();
        let res = client.cmd_res.dequeue().unwrap();
        assert_eq!((res.cookie, res.status()), (10, Some(SoundStatus::Ok)));
        let done = client.pcm_res.dequeue().unwrap();
        assert_eq!(
            (done.cookie, done.latency_bytes, done.status()),
            (11, 2048, Some(SoundStatus::Ok))
        );
        assert!(client.cmd_res.is_empty() && client.pcm_res.dequeue().is_none());
        assert_eq!((f.get(0, HEAD), f.get(3, TAIL)), (1, 1));
    }

    #[test]
    fn sddf_names_swap_the_pcm_rings() {
        let f = Fixture::new();
        let [a, b, c, d] = f.regions.clone();
        let mut client = SoundQueues::from_sddf_names(a, b, c, d).unwrap();
        client.pcm_req.enqueue(SoundPcm::new(1, 0, 0, 1)).unwrap();
        assert_eq!(
            (f.get(2, TAIL), f.get(3, TAIL)),
            (0, 1),
            "requests go to the region named pcm_res"
        );
    }

    #[test]
    fn peeked_entries_stay_until_skipped() {
        let f = Fixture::new();
        let (mut client, mut driver) = (f.queues(), f.queues());
        driver.cmd_req.skip();
        assert_eq!(f.get(0, HEAD), 0, "skipping nothing does nothing");
        client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Start, 1, 0)).unwrap();
        assert_eq!(driver.cmd_req.peek().map(|c| c.cookie), Some(1));
        assert_eq!(driver.cmd_req.len(), 1, "still there");
        driver.cmd_req.skip();
        assert!(driver.cmd_req.peek().is_none());
    }

    #[test]
    fn full_rings_refuse_entries() {
        let f = Fixture::new();
        let (mut client, mut driver) = (f.queues(), f.queues());
        for i in 0..SOUND_CMD_QUEUE_CAPACITY {
            client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Prepare, i, 0)).unwrap();
        }
        assert!(client.cmd_req.is_full());
        assert_eq!(client.cmd_req.enqueue(SoundCmd::default()), Err(Full));
        assert_eq!(f.get(0, TAIL), SOUND_CMD_QUEUE_CAPACITY);
        assert_eq!(driver.cmd_req.dequeue().map(|c| c.cookie), Some(0));
        assert_eq!(client.cmd_req.free(), 1);
        client.cmd_req.enqueue(SoundCmd::default()).unwrap();
        for i in 0..SOUND_PCM_QUEUE_CAPACITY {
            driver.pcm_res.enqueue(SoundPcm::new(i, 0, 0, 0)).unwrap();
        }
        assert_eq!(driver.pcm_res.enqueue(SoundPcm::default()), Err(Full));
    }

    #[test]
    fn indices_wrap_around_u32_max() {
        let f = Fixture::starting_at(u32::MAX - 100);
        let (mut client, mut driver) = (f.queues(), f.queues());
        for round in 0..3u32 {
            for i in 0..SOUND_PCM_QUEUE_CAPACITY {
                let cookie = round * 1000 + i;
                client
                    .pcm_req
                    .enqueue(SoundPcm::new(cookie, 0, u64::from(i % 8) * 4096, i))
                    .unwrap();
            }
            assert!(client.pcm_req.is_full());
            while let Some(pcm) = driver.pcm_req.dequeue() {
                driver.pcm_res.enqueue(pcm.respond(SoundStatus::Ok, pcm.len)).unwrap();
            }
            for i in 0..SOUND_PCM_QUEUE_CAPACITY {
                let done = client.pcm_res.dequeue().unwrap();
                assert_eq!((done.cookie, done.latency_bytes), (round * 1000 + i, i));
            }
        }
        assert_eq!(f.get(2, TAIL), (u32::MAX - 100).wrapping_add(3 * 256));
        assert_eq!(f.get(3, HEAD), f.get(2, TAIL));
    }

    #[test]
    fn hostile_indices_read_as_full_or_empty() {
        let f = Fixture::new();
        let (mut client, mut driver) = (f.queues(), f.queues());
        f.set(&f.regions[0], HEAD, 1000);
        f.set(&f.regions[2], TAIL, u32::MAX);
        f.set(&f.regions[1], TAIL, 65);
        assert_eq!(client.cmd_req.enqueue(SoundCmd::default()), Err(Full));
        assert_eq!((driver.pcm_req.len(), driver.pcm_req.dequeue()), (0, None));
        assert_eq!((client.cmd_res.len(), client.cmd_res.dequeue()), (0, None));
        assert_eq!((f.get(0, TAIL), f.get(2, HEAD), f.get(1, HEAD)), (0, 0, 0));
        f.set(&f.regions[1], TAIL, 64);
        assert_eq!(client.cmd_res.len(), 64, "a full ring is sane again");
    }

    #[test]
    fn random_hostile_indices_never_escape_the_rings() {
        let f = Fixture::new();
        let (mut client, mut driver) = (f.queues(), f.queues());
        let mut rng = fastrand::Rng::with_seed(0x5eed_50d0);
        for _ in 0..20_000 {
            let (ring, field) =
                ((rng.u32(..) % 4) as usize, if rng.u32(..) % 2 == 0 { TAIL } else { HEAD });
            let value = rng.u32(..);
            f.set(&f.regions[ring], field, (value % 600) ^ (value & 0xffff_0000));
            assert!(client.cmd_req.free() <= 64 && driver.cmd_req.len() <= 64);
            assert!(client.pcm_req.free() <= 256 && client.pcm_res.len() <= 256);
            let free = client.pcm_req.free();
            assert_eq!(client.pcm_req.enqueue(SoundPcm::default()).is_ok(), free > 0);
            let _ = (driver.cmd_req.dequeue(), driver.pcm_req.dequeue(), client.pcm_res.dequeue());
            let _ = (driver.cmd_res.enqueue(SoundCmd::default()), client.cmd_res.dequeue());
            let _ = driver.pcm_res.enqueue(SoundPcm::default());
        }
    }

    /// Client: TAKE, PREPARE, START, then `total` PCM buffers through the
    /// 256-slot rings, checking that answers come back in order.
    fn run_client(mut q: SoundQueues, total: u32, me: &Notification, driver: &Notification) {
        let codes = [SoundCmdCode::Take, SoundCmdCode::Prepare, SoundCmdCode::Start];
        for (i, code) in codes.into_iter().enumerate() {
            let cmd = match code {
                SoundCmdCode::Take => SoundCmd::take(i as u32, 0, params()),
                _ => SoundCmd::new(code, i as u32, 0),
            };
            q.cmd_req.enqueue(cmd).unwrap();
        }
        driver.notify();
        let (mut answered, mut sent, mut done) = (0, 0u32, 0u32);
        while answered < codes.len() || done < total {
            let mut progress = false;
            while let Some(res) = q.cmd_res.dequeue() {
                assert_eq!((res.cookie, res.status()), (answered as u32, Some(SoundStatus::Ok)));
                answered += 1;
                progress = true;
            }
            while sent < total && !q.pcm_req.is_full() {
                let offset = u64::from(sent % 256) * 4096;
                q.pcm_req.enqueue(SoundPcm::new(sent, 0, offset, 1 + sent % 4096)).unwrap();
                sent += 1;
                progress = true;
            }
            while let Some(pcm) = q.pcm_res.dequeue() {
                assert_eq!((pcm.cookie, pcm.latency_bytes), (done, done.wrapping_mul(3)));
                assert_eq!(pcm.len, 1 + done % 4096);
                done += 1;
                progress = true;
            }
            // Sent requests or freed response slots: either may unblock the driver.
            if progress {
                driver.notify();
            } else {
                me.wait("client");
            }
        }
    }

    /// Driver: answers commands and plays buffers in order.
    fn run_driver(mut q: SoundQueues, total: u32, me: &Notification, client: &Notification) {
        let (mut commands, mut played) = (0, 0u32);
        while commands < 3 || played < total {
            let mut progress = false;
            while let Some(cmd) = q.cmd_req.dequeue() {
                assert_eq!(
                    cmd.code(),
                    Some(
                        [SoundCmdCode::Take, SoundCmdCode::Prepare, SoundCmdCode::Start][commands]
                    )
                );
                q.cmd_res.enqueue(cmd.respond(SoundStatus::Ok)).unwrap();
                commands += 1;
                progress = true;
            }
            while let Some(pcm) = q.pcm_req.peek() {
                assert!(pcm.in_data_region(256));
                if q.pcm_res.enqueue(pcm.respond(SoundStatus::Ok, played.wrapping_mul(3))).is_err()
                {
                    break;
                }
                q.pcm_req.skip();
                played += 1;
                progress = true;
            }
            if progress {
                client.notify();
            } else {
                me.wait("driver");
            }
        }
    }

    #[test]
    fn threads_play_buffers_in_order() {
        const TOTAL: u32 = 100_000;
        let f = Fixture::starting_at(u32::MAX - 300);
        let (client, driver) = (f.queues(), f.queues());
        let to_client = Arc::new(Notification::default());
        let to_driver = Arc::new(Notification::default());
        let (d_me, d_peer) = (to_driver.clone(), to_client.clone());
        let thread = std::thread::spawn(move || run_driver(driver, TOTAL, &d_me, &d_peer));
        run_client(client, TOTAL, &to_client, &to_driver);
        thread.join().unwrap();
        let end = (u32::MAX - 300).wrapping_add(TOTAL);
        assert_eq!((f.get(2, HEAD), f.get(3, HEAD)), (end, end));
    }
}
