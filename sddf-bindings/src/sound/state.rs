//! The shared stream state (`sound_shared_state_t`, `SD include/sddf/sound/sound.h`): the
//! driver describes its streams and sets `ready`; clients copy it out once it is.

use core::mem::offset_of;
use core::sync::atomic::{AtomicU8, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{SoundDirection, SOUND_MAX_STREAM_COUNT};
use crate::{Error, SharedAtomic, SharedRegion};

/// One stream as the driver describes it (`sound_pcm_info_t`, 24 bytes); C's trailing
/// padding is spelled out (`pad0`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct SoundPcmInfo {
    /// `1 << format` for each supported [`format`].
    pub formats: u64,
    /// `1 << rate` for each supported [`SoundPcmRate`].
    pub rates: u64,
    /// A [`SoundDirection`] value (raw: the peer may write anything).
    pub direction: u8,
    /// Fewest channels.
    pub channels_min: u8,
    /// Most channels.
    pub channels_max: u8,
    /// Padding (C's trailing padding to the 8-byte alignment); zero.
    pub pad0: [u8; 5],
}

const _: () = assert!(size_of::<SoundPcmInfo>() == 24 && align_of::<SoundPcmInfo>() == 8);
const _: () = assert!(offset_of!(SoundPcmInfo, formats) == 0);
const _: () = assert!(offset_of!(SoundPcmInfo, rates) == 8);
const _: () = assert!(offset_of!(SoundPcmInfo, direction) == 16);
const _: () = assert!(offset_of!(SoundPcmInfo, channels_min) == 17);
const _: () = assert!(offset_of!(SoundPcmInfo, channels_max) == 18);
const _: () = assert!(offset_of!(SoundPcmInfo, pad0) == 19);

impl SoundPcmInfo {
    /// The direction, or `None` for a value outside the protocol.
    pub fn direction(&self) -> Option<SoundDirection> {
        SoundDirection::from_raw(self.direction)
    }
}

/// The driver's description of its streams (`sound_shared_state_t`, 776 bytes); C's
/// padding after `ready` is spelled out (`pad0`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct SoundSharedState {
    /// C `bool`: the other fields are filled in (release/acquire).
    pub ready: u8,
    /// Padding (C's implicit padding before `streams`); zero.
    pub pad0: [u8; 3],
    /// Streams in `stream_info` (the peer may write more than fit).
    pub streams: u32,
    /// One entry per stream, by stream id.
    pub stream_info: [SoundPcmInfo; SOUND_MAX_STREAM_COUNT],
}

const _: () = assert!(size_of::<SoundSharedState>() == 776);
const _: () = assert!(align_of::<SoundSharedState>() == 8);
const _: () = assert!(offset_of!(SoundSharedState, ready) == 0);
const _: () = assert!(offset_of!(SoundSharedState, pad0) == 1);
const _: () = assert!(offset_of!(SoundSharedState, streams) == 4);
const _: () = assert!(offset_of!(SoundSharedState, stream_info) == 8);

impl Default for SoundSharedState {
    fn default() -> Self {
        SoundSharedState {
            ready: 0,
            pad0: [0; 3],
            streams: 0,
            stream_info: [SoundPcmInfo::default(); SOUND_MAX_STREAM_COUNT],
        }
    }
}

impl SoundSharedState {
    /// The described streams: `streams` entries, at most the table's 32.
    pub fn stream_info(&self) -> &[SoundPcmInfo] {
        let n = usize::try_from(self.streams).unwrap_or(usize::MAX);
        &self.stream_info[..n.min(SOUND_MAX_STREAM_COUNT)]
    }
}

/// A handle on the shared-state region.
///
/// Clients wait for [`SoundSharedStateHandle::read`] to return `Some`; the
/// driver calls [`SoundSharedStateHandle::write`], then
/// [`SoundSharedStateHandle::set_ready`].
#[derive(Debug)]
pub struct SoundSharedStateHandle {
    region: SharedRegion,
    ready: SharedAtomic<AtomicU8>,
}

/// Offset of `ready`.
const READY: usize = offset_of!(SoundSharedState, ready);

impl SoundSharedStateHandle {
    /// A handle on `region`, which must hold a [`SoundSharedState`].
    pub fn new(region: SharedRegion) -> Result<Self, Error> {
        let region = region
            .subregion(0, size_of::<SoundSharedState>())
            .map_err(|_| Error::RegionTooSmall)?;
        let ready = region.atomic_u8(READY)?;
        Ok(SoundSharedStateHandle { region, ready })
    }

    /// Whether the driver has published its streams (acquire).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) != 0
    }

    /// A copy of the state once it is ready, else `None`. The copy is taken
    /// once; [`SoundSharedState::stream_info`] bounds the stream count.
    pub fn read(&self) -> Option<SoundSharedState> {
        if !self.is_ready() {
            return None;
        }
        let mut buf = [0u8; size_of::<SoundSharedState>()];
        self.region.read(0, &mut buf).ok()?;
        let state = SoundSharedState::read_from_bytes(&buf[..]).ok()?;
        Some(state.clean())
    }

    /// Driver: writes every field of `state` but `ready`.
    pub fn write(&self, state: &SoundSharedState) -> Result<(), Error> {
        let clean = state.clean();
        self.region.write(READY + 1, &clean.as_bytes()[READY + 1..])
    }

    /// Driver: publishes (or withdraws) the state (release).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(u8::from(ready), Ordering::Release);
    }
}

/// Offset of stream entry `i` in the state image.
#[cfg(test)]
const fn info_at(i: usize) -> usize {
    offset_of!(SoundSharedState, stream_info) + i * size_of::<SoundPcmInfo>()
}

impl SoundSharedState {
    /// The state with every padding byte zeroed (the peer may have set them).
    fn clean(mut self) -> Self {
        self.pad0 = [0; 3];
        for info in &mut self.stream_info {
            info.pad0 = [0; 5];
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::super::{format, SoundPcmRate};
    use super::*;

    #[test]
    fn stream_table_fills_the_state() {
        assert_eq!(info_at(0), 8);
        assert_eq!(info_at(SOUND_MAX_STREAM_COUNT - 1) + size_of::<SoundPcmInfo>(), 776);
    }

    #[test]
    fn shared_state_is_hidden_until_ready() {
        let region = SharedRegion::leak_zeroed(size_of::<SoundSharedState>());
        let (driver, client) = (
            SoundSharedStateHandle::new(region.clone()).unwrap(),
            SoundSharedStateHandle::new(region.clone()).unwrap(),
        );
        let mut state = SoundSharedState { streams: 2, ..SoundSharedState::default() };
        state.stream_info[0] = SoundPcmInfo {
            formats: 1 << format::S16,
            rates: 1 << SoundPcmRate::Hz48000 as u8,
            direction: SoundDirection::Output as u8,
            channels_min: 1,
            channels_max: 2,
            ..SoundPcmInfo::default()
        };
        state.stream_info[1] = SoundPcmInfo { direction: 1, ..state.stream_info[0] };
        driver.write(&state).unwrap();
        assert_eq!(client.read(), None);
        driver.set_ready(true);
        let got = client.read().unwrap();
        assert_eq!(got, SoundSharedState { ready: 1, ..state });
        assert_eq!(got.stream_info().len(), 2);
        assert_eq!(got.stream_info()[1].direction(), Some(SoundDirection::Input));
        let mut raw = [0u8; 8];
        region.read(8 + 24 + 8, &mut raw).unwrap();
        assert_eq!(u64::from_ne_bytes(raw), 1 << 7, "stream 1's rates at 40");
    }

    #[test]
    fn shared_state_tolerates_hostile_bytes() {
        let region = SharedRegion::leak_zeroed(776);
        region.write(0, &[0xff; 776]).unwrap();
        let state = SoundSharedStateHandle::new(region).unwrap().read().unwrap();
        assert_eq!(state.stream_info().len(), SOUND_MAX_STREAM_COUNT, "clamped to the table");
        assert_eq!(state.stream_info()[31].direction(), None);
        let short = SharedRegion::leak_zeroed(775);
        assert_eq!(SoundSharedStateHandle::new(short).err(), Some(Error::RegionTooSmall));
    }
}
