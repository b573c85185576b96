//! virtio-snd control messages (virtio 1.2 §5.14.6): the wire constants, a request parsed
//! from the bytes the device read once, the item information structures, and the PCM stream
//! state machine (§5.14.6.6.1). Everything here is pure: no guest memory, no backend.

use zerocopy::little_endian::U32;
use zerocopy::FromBytes;

use super::backend::{Direction, PcmCommand, PcmParams, StreamInfo};
use crate::layout::{VirtioSndPcmHdr, VirtioSndPcmInfo, VirtioSndPcmSetParams, VirtioSndQueryInfo};

/// VIRTIO_SND_R_JACK_INFO: query jack information.
pub const VIRTIO_SND_R_JACK_INFO: u32 = 1;
/// VIRTIO_SND_R_JACK_REMAP: change a jack's association and sequence.
pub const VIRTIO_SND_R_JACK_REMAP: u32 = 2;
/// VIRTIO_SND_R_PCM_INFO: query stream information.
pub const VIRTIO_SND_R_PCM_INFO: u32 = 0x0100;
/// VIRTIO_SND_R_PCM_SET_PARAMS: set a stream's parameters.
pub const VIRTIO_SND_R_PCM_SET_PARAMS: u32 = 0x0101;
/// VIRTIO_SND_R_PCM_PREPARE: prepare a stream.
pub const VIRTIO_SND_R_PCM_PREPARE: u32 = 0x0102;
/// VIRTIO_SND_R_PCM_RELEASE: release a stream.
pub const VIRTIO_SND_R_PCM_RELEASE: u32 = 0x0103;
/// VIRTIO_SND_R_PCM_START: start a stream.
pub const VIRTIO_SND_R_PCM_START: u32 = 0x0104;
/// VIRTIO_SND_R_PCM_STOP: stop a stream.
pub const VIRTIO_SND_R_PCM_STOP: u32 = 0x0105;
/// VIRTIO_SND_R_CHMAP_INFO: query channel map information.
pub const VIRTIO_SND_R_CHMAP_INFO: u32 = 0x0200;

/// VIRTIO_SND_S_OK: success.
pub const VIRTIO_SND_S_OK: u32 = 0x8000;
/// VIRTIO_SND_S_BAD_MSG: a malformed message or invalid parameters.
pub const VIRTIO_SND_S_BAD_MSG: u32 = 0x8001;
/// VIRTIO_SND_S_NOT_SUPP: the operation or parameters are not supported.
pub const VIRTIO_SND_S_NOT_SUPP: u32 = 0x8002;
/// VIRTIO_SND_S_IO_ERR: an I/O error.
pub const VIRTIO_SND_S_IO_ERR: u32 = 0x8003;

/// VIRTIO_SND_D_OUTPUT.
pub const VIRTIO_SND_D_OUTPUT: u8 = 0;
/// VIRTIO_SND_D_INPUT.
pub const VIRTIO_SND_D_INPUT: u8 = 1;

/// `struct virtio_snd_hdr`: the request code or the response status.
pub const HDR_SIZE: usize = 4;
/// `struct virtio_snd_jack_remap`: jack hdr (code, jack_id), association, sequence.
pub const JACK_REMAP_SIZE: usize = 16;
/// `struct virtio_snd_pcm_info` ([`VirtioSndPcmInfo`]).
pub const PCM_INFO_SIZE: usize = size_of::<VirtioSndPcmInfo>();
/// Longest request the device reads (a SET_PARAMS).
pub const MAX_REQUEST: usize = size_of::<VirtioSndPcmSetParams>();
/// Largest item `size` a query may ask for (the spec's items are 24 and 32 bytes; the field
/// exists so that items can grow).
pub const MAX_ITEM_SIZE: u32 = 256;

/// Defined format bits: VIRTIO_SND_PCM_FMT_IMA_ADPCM (0) to _IEC958_SUBFRAME (24).
pub const FORMATS_MASK: u64 = (1 << 25) - 1;
/// Defined rate bits: VIRTIO_SND_PCM_RATE_5512 (0) to _384000 (13), virtio 1.2.
pub const RATES_MASK: u64 = (1 << 14) - 1;

/// Which item table a query reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Items {
    /// Jacks (`struct virtio_snd_jack_info`).
    Jacks,
    /// PCM streams (`struct virtio_snd_pcm_info`).
    Streams,
    /// Channel maps (`struct virtio_snd_chmap_info`).
    Chmaps,
}

/// An item information request (`struct virtio_snd_query_info`, §5.14.6.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Query {
    /// Which items.
    pub items: Items,
    /// The first item.
    pub start_id: u32,
    /// How many items.
    pub count: u32,
    /// Bytes the driver gives each item in the response.
    pub size: u32,
}

/// A control request, parsed from its device-readable bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Request {
    /// An item information request.
    Query(Query),
    /// VIRTIO_SND_R_JACK_REMAP.
    JackRemap,
    /// A PCM control request.
    Pcm {
        /// `stream_id` of `struct virtio_snd_pcm_hdr`.
        stream: u32,
        /// What to do.
        command: PcmCommand,
    },
    /// A code this device does not implement (controls, or anything unknown).
    Unsupported(u32),
}

/// The request is shorter than its type needs: VIRTIO_SND_S_BAD_MSG.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Malformed;

/// The `T` at the start of `bytes`, if they are long enough.
fn head<T: FromBytes>(bytes: &[u8]) -> Result<T, Malformed> {
    T::read_from_prefix(bytes).map(|(t, _)| t).map_err(|_| Malformed)
}

/// Parses the first bytes of a request (at most [`MAX_REQUEST`] are needed). Parameter
/// values are not judged here: see [`check_params`] and [`StreamState::after`].
pub fn parse(bytes: &[u8]) -> Result<Request, Malformed> {
    let code = head::<U32>(bytes)?.get();
    let items = match code {
        VIRTIO_SND_R_JACK_INFO => Some(Items::Jacks),
        VIRTIO_SND_R_PCM_INFO => Some(Items::Streams),
        VIRTIO_SND_R_CHMAP_INFO => Some(Items::Chmaps),
        _ => None,
    };
    if let Some(items) = items {
        let q: VirtioSndQueryInfo = head(bytes)?;
        let (start_id, count, size) = (q.start_id.get(), q.count.get(), q.size.get());
        return Ok(Request::Query(Query { items, start_id, count, size }));
    }
    let command = match code {
        VIRTIO_SND_R_JACK_REMAP if bytes.len() >= JACK_REMAP_SIZE => return Ok(Request::JackRemap),
        VIRTIO_SND_R_JACK_REMAP => return Err(Malformed),
        VIRTIO_SND_R_PCM_SET_PARAMS => {
            let p: VirtioSndPcmSetParams = head(bytes)?;
            PcmCommand::SetParams(PcmParams {
                buffer_bytes: p.buffer_bytes.get(),
                period_bytes: p.period_bytes.get(),
                channels: p.channels,
                format: p.format,
                rate: p.rate,
            })
        }
        VIRTIO_SND_R_PCM_PREPARE => PcmCommand::Prepare,
        VIRTIO_SND_R_PCM_RELEASE => PcmCommand::Release,
        VIRTIO_SND_R_PCM_START => PcmCommand::Start,
        VIRTIO_SND_R_PCM_STOP => PcmCommand::Stop,
        other => return Ok(Request::Unsupported(other)),
    };
    let hdr: VirtioSndPcmHdr = head(bytes)?;
    Ok(Request::Pcm { stream: hdr.stream_id.get(), command })
}

/// The feature bits (`1 << VIRTIO_SND_PCM_F_*`) a SET_PARAMS asked for: the device offers
/// none, so any is NOT_SUPP.
pub fn requested_features(bytes: &[u8]) -> u32 {
    head::<VirtioSndPcmSetParams>(bytes).map_or(0, |p| p.features.get())
}

/// Where a stream is in its command lifecycle (virtio 1.2 §5.14.6.6.1).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum StreamState {
    /// No parameters set since the device was reset.
    #[default]
    Idle,
    /// SET_PARAMS succeeded.
    ParamsSet,
    /// PREPARE succeeded: playback data may be queued for pre-buffering.
    Prepared,
    /// START succeeded.
    Running,
    /// STOP succeeded: queued data waits for START or RELEASE.
    Stopped,
    /// RELEASE succeeded: the parameters are kept for the next PREPARE.
    Released,
}

impl StreamState {
    /// The state `command` leads to, or `None` if the lifecycle does not allow it from
    /// here (VIRTIO_SND_S_BAD_MSG). The spec's transitions:
    ///
    /// - SET PARAMETERS: from the start, SET PARAMETERS, PREPARE or RELEASE;
    /// - PREPARE: from SET PARAMETERS, PREPARE or RELEASE;
    /// - START: from PREPARE or STOP;
    /// - STOP: from START;
    /// - RELEASE: from PREPARE or STOP.
    pub fn after(self, command: &PcmCommand) -> Option<StreamState> {
        use StreamState::*;
        match (command, self) {
            (PcmCommand::SetParams(_), Idle | ParamsSet | Prepared | Released) => Some(ParamsSet),
            (PcmCommand::Prepare, ParamsSet | Prepared | Released) => Some(Prepared),
            (PcmCommand::Start, Prepared | Stopped) => Some(Running),
            (PcmCommand::Stop, Running) => Some(Stopped),
            (PcmCommand::Release, Prepared | Stopped) => Some(Released),
            _ => None,
        }
    }

    /// Whether I/O messages are accepted: from PREPARE (pre-buffering) until RELEASE.
    pub fn takes_io(self) -> bool {
        matches!(self, StreamState::Prepared | StreamState::Running | StreamState::Stopped)
    }
}

/// Checks SET_PARAMS values against the stream: `Err` holds the status to answer.
///
/// - BAD_MSG: `period_bytes` or `buffer_bytes` is 0, or the period does not divide the
///   buffer (a driver requirement of §5.14.6.6.3);
/// - NOT_SUPP: a feature bit (none is offered), a format, rate or channel count the stream
///   does not offer, or a period longer than `max_period` bytes.
pub fn check_params(
    info: &StreamInfo,
    p: &PcmParams,
    features: u32,
    max_period: u32,
) -> Result<(), u32> {
    if p.period_bytes == 0 || p.buffer_bytes == 0 || p.buffer_bytes % p.period_bytes != 0 {
        return Err(VIRTIO_SND_S_BAD_MSG);
    }
    let offered = |mask: u64, bit: u8| bit < 64 && mask & (1 << bit) != 0;
    let supported = features == 0
        && offered(info.formats, p.format)
        && offered(info.rates, p.rate)
        && (info.channels_min..=info.channels_max).contains(&p.channels)
        && p.period_bytes <= max_period;
    if supported {
        Ok(())
    } else {
        Err(VIRTIO_SND_S_NOT_SUPP)
    }
}

/// A backend's stream description as the device may offer it: undefined format and rate
/// bits cleared, at least one channel, `channels_max >= channels_min` (§5.14.6.6.2: "The
/// device MUST NOT set undefined feature, format, rate and direction values").
pub fn sanitize(info: &StreamInfo) -> StreamInfo {
    let channels_min = info.channels_min.max(1);
    StreamInfo {
        direction: info.direction,
        formats: info.formats & FORMATS_MASK,
        rates: info.rates & RATES_MASK,
        channels_min,
        channels_max: info.channels_max.max(channels_min),
    }
}

/// `struct virtio_snd_pcm_info` for a stream: `hda_fn_nid` 0 (all streams in one function
/// group, so Linux makes one PCM device of them), no features, padding zeroed.
pub fn pcm_info(info: &StreamInfo) -> VirtioSndPcmInfo {
    VirtioSndPcmInfo {
        formats: info.formats.into(),
        rates: info.rates.into(),
        direction: match info.direction {
            Direction::Output => VIRTIO_SND_D_OUTPUT,
            Direction::Input => VIRTIO_SND_D_INPUT,
        },
        channels_min: info.channels_min,
        channels_max: info.channels_max,
        ..VirtioSndPcmInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PcmParams {
        PcmParams { buffer_bytes: 16384, period_bytes: 4096, channels: 2, format: 5, rate: 7 }
    }

    fn stereo() -> StreamInfo {
        StreamInfo {
            direction: Direction::Output,
            formats: 1 << 5,
            rates: 1 << 7 | 1 << 6,
            channels_min: 1,
            channels_max: 2,
        }
    }

    fn request(code: u32, words: &[u32], len: usize) -> Vec<u8> {
        let mut b: Vec<u8> = code.to_le_bytes().to_vec();
        for w in words {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.resize(len, 0);
        b
    }

    #[test]
    fn parses_every_request_type() {
        let q = request(VIRTIO_SND_R_PCM_INFO, &[1, 2, 32], 16);
        let want = Request::Query(Query { items: Items::Streams, start_id: 1, count: 2, size: 32 });
        assert_eq!(parse(&q), Ok(want));
        let q = request(VIRTIO_SND_R_CHMAP_INFO, &[0, 0, 24], 16);
        assert!(matches!(parse(&q), Ok(Request::Query(Query { items: Items::Chmaps, .. }))));
        let q = request(VIRTIO_SND_R_JACK_INFO, &[0, 0, 24], 16);
        assert!(matches!(parse(&q), Ok(Request::Query(Query { items: Items::Jacks, .. }))));
        assert_eq!(
            parse(&request(VIRTIO_SND_R_JACK_REMAP, &[0, 1, 2], 16)),
            Ok(Request::JackRemap)
        );
        let mut sp = request(VIRTIO_SND_R_PCM_SET_PARAMS, &[3, 16384, 4096, 0], 24);
        sp[20..23].copy_from_slice(&[2, 5, 7]);
        let cmd = PcmCommand::SetParams(params());
        assert_eq!(parse(&sp), Ok(Request::Pcm { stream: 3, command: cmd }));
        for (code, cmd) in [
            (VIRTIO_SND_R_PCM_PREPARE, PcmCommand::Prepare),
            (VIRTIO_SND_R_PCM_RELEASE, PcmCommand::Release),
            (VIRTIO_SND_R_PCM_START, PcmCommand::Start),
            (VIRTIO_SND_R_PCM_STOP, PcmCommand::Stop),
        ] {
            assert_eq!(
                parse(&request(code, &[9], 8)),
                Ok(Request::Pcm { stream: 9, command: cmd })
            );
        }
        assert_eq!(parse(&request(0x0300, &[], 4)), Ok(Request::Unsupported(0x0300)));
    }

    #[test]
    fn short_requests_are_malformed() {
        assert_eq!(parse(&[1, 0, 0]), Err(Malformed));
        assert_eq!(parse(&request(VIRTIO_SND_R_PCM_INFO, &[0, 1], 15)), Err(Malformed));
        assert_eq!(parse(&request(VIRTIO_SND_R_PCM_SET_PARAMS, &[0], 23)), Err(Malformed));
        assert_eq!(parse(&request(VIRTIO_SND_R_PCM_START, &[], 7)), Err(Malformed));
        assert_eq!(parse(&request(VIRTIO_SND_R_JACK_REMAP, &[0], 12)), Err(Malformed));
    }

    #[test]
    fn every_transition_of_the_lifecycle() {
        use StreamState::*;
        let sp = PcmCommand::SetParams(params());
        let commands =
            [sp, PcmCommand::Prepare, PcmCommand::Start, PcmCommand::Stop, PcmCommand::Release];
        let states = [Idle, ParamsSet, Prepared, Running, Stopped, Released];
        // Rows: states; columns: SET_PARAMS, PREPARE, START, STOP, RELEASE (None = BAD_MSG).
        let table = [
            [Some(ParamsSet), None, None, None, None],
            [Some(ParamsSet), Some(Prepared), None, None, None],
            [Some(ParamsSet), Some(Prepared), Some(Running), None, Some(Released)],
            [None, None, None, Some(Stopped), None],
            [None, None, Some(Running), None, Some(Released)],
            [Some(ParamsSet), Some(Prepared), None, None, None],
        ];
        for (state, row) in states.iter().zip(table) {
            for (cmd, want) in commands.iter().zip(row) {
                assert_eq!(state.after(cmd), want, "{cmd:?} from {state:?}");
            }
        }
        let io: Vec<_> = states.iter().map(|s| s.takes_io()).collect();
        assert_eq!(io, [false, false, true, true, true, false]);
    }

    #[test]
    fn parameters_are_checked_against_the_stream() {
        let info = stereo();
        let ok = params();
        assert_eq!(check_params(&info, &ok, 0, 1 << 20), Ok(()));
        let bad = |p: PcmParams| check_params(&info, &p, 0, 1 << 20);
        assert_eq!(bad(PcmParams { period_bytes: 0, ..ok }), Err(VIRTIO_SND_S_BAD_MSG));
        assert_eq!(bad(PcmParams { buffer_bytes: 0, ..ok }), Err(VIRTIO_SND_S_BAD_MSG));
        assert_eq!(bad(PcmParams { buffer_bytes: 10000, ..ok }), Err(VIRTIO_SND_S_BAD_MSG));
        assert_eq!(bad(PcmParams { format: 6, ..ok }), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(bad(PcmParams { format: 200, ..ok }), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(bad(PcmParams { rate: 8, ..ok }), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(bad(PcmParams { rate: 64, ..ok }), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(bad(PcmParams { channels: 0, ..ok }), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(bad(PcmParams { channels: 3, ..ok }), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(bad(PcmParams { channels: 1, rate: 6, ..ok }), Ok(()));
        assert_eq!(check_params(&info, &ok, 1 << 2, 1 << 20), Err(VIRTIO_SND_S_NOT_SUPP));
        assert_eq!(check_params(&info, &ok, 0, 2048), Err(VIRTIO_SND_S_NOT_SUPP));
    }

    #[test]
    fn stream_info_is_sanitized_and_encoded() {
        let raw = StreamInfo {
            direction: Direction::Input,
            formats: u64::MAX,
            rates: u64::MAX,
            channels_min: 0,
            channels_max: 0,
        };
        let s = sanitize(&raw);
        assert_eq!(
            (s.formats, s.rates, s.channels_min, s.channels_max),
            (FORMATS_MASK, RATES_MASK, 1, 1)
        );
        let info = pcm_info(&stereo());
        let b = zerocopy::IntoBytes::as_bytes(&info);
        assert_eq!(&b[0..8], &[0; 8], "hda_fn_nid 0, features 0");
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 1 << 5);
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0xc0);
        assert_eq!(&b[24..], &[VIRTIO_SND_D_OUTPUT, 1, 2, 0, 0, 0, 0, 0]);
        assert_eq!(pcm_info(&raw).direction, VIRTIO_SND_D_INPUT);
    }
}
