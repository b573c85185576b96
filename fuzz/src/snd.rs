//! Target `virtio_snd`: the sound device behind the transport, driven by the hostile driver of
//! `virtio_ops` plus a driver that writes well-formed control requests and PCM messages
//! (with hostile values) into whatever queues were set up, over a backend that answers late,
//! out of order, with errors and with tokens it was never given.
//!
//! Checks, in the backend: at most one command at a time, only for streams that exist;
//! SET_PARAMS only with parameters the stream offers (format, rate, channels, period dividing
//! the buffer); PCM pieces of 1 to 4096 bytes, only for a stream the backend has prepared and
//! in a buffer the device owns and has not submitted yet, with a fresh token; no buffer read,
//! written or freed while the backend holds it. After every step: the device holds at most
//! its table's messages and `MAX_PIECES` pieces, and exactly the pieces the backend has not
//! answered yet. At the end, after a reset and every answer: no message, piece, buffer or
//! command left, and every stream back at its start.

use std::collections::HashSet;

use arbitrary::Arbitrary;
use virtio::mmio::{
    MmioTransport, DRIVER_FEATURES, DRIVER_FEATURES_SEL, QUEUE_DESC_HIGH, QUEUE_DESC_LOW,
    QUEUE_DEVICE_HIGH, QUEUE_DEVICE_LOW, QUEUE_DRIVER_HIGH, QUEUE_DRIVER_LOW, QUEUE_NOTIFY,
    QUEUE_NUM, QUEUE_READY, QUEUE_SEL, STATUS,
};
use virtio::sound::{
    BackendBusy, BackendStatus, BufferId, BufferRange, Completion, Direction, PcmCommand, PcmDone,
    SoundBackend, SoundDevice, StreamInfo, StreamState, MAX_PIECES, MAX_STREAMS, PCM_BUFFER_BYTES,
};
use virtio::{GuestMemory, SliceMemory};

use crate::virtio_ops::{self, BASE, RAM};

/// Messages the device may hold.
const SLOTS: usize = 4;

/// What the backend believes about a stream (it applies the commands it answered OK).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Held {
    #[default]
    Idle,
    Taken,
    Prepared,
    Running,
    Stopped,
}

/// The hostile sound backend.
#[derive(Default)]
pub struct Card {
    streams: Vec<StreamInfo>,
    held: Vec<Held>,
    /// The command not answered yet.
    command: Option<(u32, PcmCommand)>,
    /// Live buffers (`None` once freed).
    bufs: Vec<Option<()>>,
    /// Pieces submitted and not answered: (token, buffer, len, stream).
    queued: Vec<(u32, BufferId, u32, u32)>,
    /// Every token ever submitted.
    tokens: HashSet<u32>,
    /// Answers ready for `complete`.
    ready: Vec<Completion>,
    alloc_fails: bool,
    busy: bool,
    /// Pieces submitted for playback and for capture (how far an input got).
    submitted: [usize; 2],
}

impl Card {
    fn new() -> Card {
        let out = StreamInfo {
            direction: Direction::Output,
            formats: 1 << 5 | 1 << 17,
            rates: 1 << 7,
            channels_min: 1,
            channels_max: 2,
        };
        let inp = StreamInfo { direction: Direction::Input, ..out };
        Card { streams: vec![out, inp], held: vec![Held::Idle; 2], ..Card::default() }
    }

    fn live(&self, buf: BufferId) {
        assert!(
            self.bufs.get(buf.0 as usize).copied().flatten().is_some(),
            "device uses buffer {} that it does not own",
            buf.0
        );
        assert!(
            !self.queued.iter().any(|q| q.1 == buf),
            "device touches buffer {} the backend holds",
            buf.0
        );
    }

    fn answer_command(&mut self, status: BackendStatus) {
        let Some((stream, cmd)) = self.command.take() else { return };
        if status == BackendStatus::Ok {
            if let Some(h) = self.held.get_mut(stream as usize) {
                *h = match cmd {
                    PcmCommand::SetParams(_) => Held::Taken,
                    PcmCommand::Prepare => Held::Prepared,
                    PcmCommand::Start => Held::Running,
                    PcmCommand::Stop => Held::Stopped,
                    PcmCommand::Release => Held::Idle,
                };
            }
        }
        self.ready.insert(0, Completion::Command(status));
    }

    fn answer_piece(&mut self, i: usize, status: BackendStatus, len: u32, latency: u32) {
        if self.queued.is_empty() {
            return;
        }
        let (token, _, max, _) = self.queued.remove(i % self.queued.len());
        let done = PcmDone { token, status, len: len.min(max), latency_bytes: latency };
        self.ready.insert(0, Completion::Pcm(done));
    }
}

impl SoundBackend for Card {
    fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }
    fn command(&mut self, stream: u32, cmd: PcmCommand) -> Result<(), BackendBusy> {
        if self.busy {
            return Err(BackendBusy);
        }
        assert!(self.command.is_none(), "second command before the first was answered");
        let info =
            self.streams.get(stream as usize).expect("command for a stream that does not exist");
        if let PcmCommand::SetParams(p) = cmd {
            assert!(p.period_bytes > 0 && p.buffer_bytes % p.period_bytes == 0, "{p:?}");
            assert!(p.format < 64 && info.formats & 1 << p.format != 0, "format {p:?}");
            assert!(p.rate < 64 && info.rates & 1 << p.rate != 0, "rate {p:?}");
            assert!((info.channels_min..=info.channels_max).contains(&p.channels), "{p:?}");
        }
        self.command = Some((stream, cmd));
        Ok(())
    }
    fn alloc(&mut self) -> Option<BufferId> {
        if self.alloc_fails || self.bufs.iter().flatten().count() >= 6 {
            return None;
        }
        self.bufs.push(Some(()));
        Some(BufferId(self.bufs.len() as u32 - 1))
    }
    fn free(&mut self, buf: BufferId) {
        self.live(buf);
        self.bufs[buf.0 as usize] = None;
    }
    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        self.live(buf);
        assert!(at + src.len() <= PCM_BUFFER_BYTES, "write of {at}+{}", src.len());
        Ok(())
    }
    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        self.live(buf);
        assert!(at + dst.len() <= PCM_BUFFER_BYTES, "read of {at}+{}", dst.len());
        dst.fill(0x5a);
        Ok(())
    }
    fn submit(
        &mut self,
        stream: u32,
        buf: BufferId,
        len: u32,
        token: u32,
    ) -> Result<(), BackendBusy> {
        if self.busy {
            return Err(BackendBusy);
        }
        self.live(buf);
        assert!(len > 0 && len as usize <= PCM_BUFFER_BYTES, "piece of {len} bytes");
        let held = self.held.get(stream as usize).copied();
        assert!(
            matches!(held, Some(Held::Prepared | Held::Running | Held::Stopped)),
            "piece for stream {stream} in state {held:?}"
        );
        assert!(!self.queued.iter().any(|q| q.0 == token), "token {token:#x} in use");
        let capture =
            self.streams.get(stream as usize).is_some_and(|s| s.direction == Direction::Input);
        self.submitted[usize::from(capture)] += 1;
        self.queued.push((token, buf, len, stream));
        self.tokens.insert(token);
        Ok(())
    }
    fn complete(&mut self) -> Option<Completion> {
        self.ready.pop()
    }
    fn notify(&mut self) {}
}

/// A well-formed (if hostile) control request.
#[derive(Arbitrary, Debug)]
pub enum Control {
    /// An item query: jacks, streams or channel maps.
    Query { items: u8, start: u8, count: u8, size: u8 },
    /// SET_PARAMS.
    SetParams {
        stream: u8,
        periods: u8,
        period: u16,
        channels: u8,
        format: u8,
        rate: u8,
        features: u8,
    },
    /// PREPARE, RELEASE, START, STOP (or JACK_REMAP).
    Pcm { code: u8, stream: u8 },
    /// Any bytes.
    Raw(Vec<u8>),
}

/// What the backend or the well-formed driver does.
#[derive(Arbitrary, Debug)]
pub enum SndOp {
    /// The driver resets the device and sets it up properly: features (VERSION_1, and the
    /// ring features if `rings`), the four queues of 2^`size_log` entries side by side,
    /// DRIVER_OK.
    Init { rings: bool, size_log: u8 },
    /// Answers the pending command.
    Answer(u8),
    /// Answers piece `i` (modulo; out of order), with `len` recorded bytes.
    Piece { i: u8, ok: bool, len: u16, latency: u32 },
    /// Answers every queued piece in order.
    PlayAll,
    /// An answer with a token the device cannot have used, or a command answer nobody asked
    /// for.
    Bogus { token: u32, command: bool },
    /// Allocations fail / the backend's queues are full.
    Pressure { alloc_fails: bool, busy: bool },
    /// A control request on queue 0, with a response buffer of `resp` bytes.
    Control { req: Control, at: u16, resp: u16 },
    /// A PCM message: on txq (`input` false) `len` data bytes, on rxq room for them.
    Pcm { input: bool, stream: u8, len: u16, at: u16 },
}

fn status(b: u8) -> BackendStatus {
    [
        BackendStatus::Ok,
        BackendStatus::Ok,
        BackendStatus::IoErr,
        BackendStatus::NotSupp,
        BackendStatus::BadMsg,
    ][usize::from(b) % 5]
}

fn request(req: &Control) -> Vec<u8> {
    let w = |words: &[u32]| words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    match *req {
        Control::Query { items, start, count, size } => {
            let code = [1, 0x100, 0x200][usize::from(items) % 3];
            let size = [24, 32, 0, 16, 40, 300][usize::from(size) % 6];
            w(&[code, u32::from(start % 4), u32::from(count % 4), size])
        }
        Control::SetParams { stream, periods, period, channels, format, rate, features } => {
            let period = u32::from(period);
            let buffer = period * u32::from(periods % 5) + u32::from(periods >= 250);
            let mut b =
                w(&[0x101, u32::from(stream % 3), buffer, period, u32::from(features % 2) << 2]);
            b.extend_from_slice(&[
                channels % 4,
                [5, 17, format][usize::from(format) % 3],
                [7, rate][usize::from(rate) % 2],
                0,
            ]);
            b
        }
        Control::Pcm { code, stream } => {
            let code = [0x102, 0x103, 0x104, 0x105, 2][usize::from(code) % 5];
            w(&[code, u32::from(stream % 3)])
        }
        Control::Raw(ref bytes) => bytes.clone(),
    }
}

/// Writes a chain of `bufs` (address, length, writable) into queue `q` as set up by the
/// driver, makes it available and notifies.
fn add_chain(
    t: &mut MmioTransport<SoundDevice<Card, SLOTS>>,
    mem: &mut SliceMemory<'_>,
    q: u16,
    bufs: &[(u64, u32, bool)],
) {
    let Some(queue) = t.queue(usize::from(q)) else { return };
    let size = queue.size().clamp(1, 256) as u16;
    let (desc, avail) = (queue.desc_table(), queue.avail_ring());
    let mut idx = [0u8; 2];
    if mem.read(avail + 2, &mut idx).is_err() {
        return;
    }
    let idx = u16::from_le_bytes(idx);
    let head = idx.wrapping_mul(3) % size;
    for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
        let index = (head + i as u16) % size;
        let next = (index + 1) % size;
        let flags = (u16::from(writable) * 2) | u16::from(i + 1 < bufs.len());
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        let _ = mem.write(desc + 16 * u64::from(index), &d);
    }
    let _ = mem.write(avail + 4 + 2 * u64::from(idx % size), &head.to_le_bytes());
    let _ = mem.write(avail + 2, &idx.wrapping_add(1).to_le_bytes());
    t.write(mem, QUEUE_NOTIFY, 4, u64::from(q));
}

/// A guest address for `len` bytes at RAM offset `at` (wrapping inside RAM).
fn place(at: u16, len: usize) -> u64 {
    let room = RAM.saturating_sub(len).max(1);
    BASE + (usize::from(at) % room) as u64
}

/// Guest RAM offset of the rings [`SndOp::Init`] sets up (0x300 bytes per queue).
const RINGS: u64 = 0x2000;

/// A driver's initialisation (virtio 1.2 §3.1.1) with the four queues at `RINGS`.
fn init(
    t: &mut MmioTransport<SoundDevice<Card, SLOTS>>,
    mem: &mut SliceMemory<'_>,
    rings: bool,
    size_log: u8,
) {
    let features = 1u64 << 32 | if rings { 3 << 28 } else { 0 };
    let size = 1u64 << (size_log % 5);
    let _ = mem.write(BASE + RINGS, &[0u8; 0xc00]);
    let mut w = |reg, value| {
        t.write(mem, reg, 4, value);
    };
    w(STATUS, 0);
    w(STATUS, 3);
    w(DRIVER_FEATURES_SEL, 0);
    w(DRIVER_FEATURES, features & 0xffff_ffff);
    w(DRIVER_FEATURES_SEL, 1);
    w(DRIVER_FEATURES, features >> 32);
    w(STATUS, 11);
    for q in 0..4 {
        let base = BASE + RINGS + q * 0x300;
        w(QUEUE_SEL, q);
        w(QUEUE_NUM, size);
        w(QUEUE_DESC_LOW, base);
        w(QUEUE_DESC_HIGH, 0);
        w(QUEUE_DRIVER_LOW, base + 0x100);
        w(QUEUE_DRIVER_HIGH, 0);
        w(QUEUE_DEVICE_LOW, base + 0x180);
        w(QUEUE_DEVICE_HIGH, 0);
        w(QUEUE_READY, 1);
    }
    w(STATUS, 15);
}

fn snd_op(t: &mut MmioTransport<SoundDevice<Card, SLOTS>>, mem: &mut SliceMemory<'_>, op: SndOp) {
    if let SndOp::Init { rings, size_log } = op {
        return init(t, mem, rings, size_log);
    }
    let card = t.device_mut().backend_mut();
    match op {
        SndOp::Init { .. } => {}
        SndOp::Answer(s) => card.answer_command(status(s)),
        SndOp::Piece { i, ok, len, latency } => {
            let s = if ok { BackendStatus::Ok } else { BackendStatus::IoErr };
            card.answer_piece(usize::from(i), s, u32::from(len), latency);
        }
        SndOp::PlayAll => {
            while !card.queued.is_empty() {
                card.answer_piece(0, BackendStatus::Ok, 4096, 0);
            }
        }
        SndOp::Bogus { token, command } => {
            // Lies the device can tell apart: a command answer when none is out, a token
            // whose index is past the device's piece table.
            if command {
                if card.command.is_none() {
                    card.ready.insert(0, Completion::Command(BackendStatus::Ok));
                }
            } else {
                let token = (token & !0xffff) | (MAX_PIECES as u32 + (token & 0xfff));
                let done = PcmDone { token, status: BackendStatus::Ok, len: 1, latency_bytes: 0 };
                card.ready.insert(0, Completion::Pcm(done));
            }
        }
        SndOp::Pressure { alloc_fails, busy } => {
            card.alloc_fails = alloc_fails;
            card.busy = busy;
        }
        SndOp::Control { req, at, resp } => {
            let bytes = request(&req);
            let (rq, rs) = (place(at, bytes.len()), place(at.wrapping_add(64), usize::from(resp)));
            let _ = mem.write(rq, &bytes);
            add_chain(
                t,
                mem,
                0,
                &[(rq, bytes.len() as u32, false), (rs, u32::from(resp % 512), true)],
            );
        }
        SndOp::Pcm { input, stream, len, at } => {
            let len = u32::from(len % 9000);
            let hdr = place(at, 4);
            let _ = mem.write(hdr, &u32::from(stream % 3).to_le_bytes());
            let data = place(at.wrapping_add(8), len as usize + 8);
            let chain = if input {
                [(hdr, 4, false), (data, len, true), (data + u64::from(len), 8, true)]
            } else {
                [(hdr, 4, false), (data, len, false), (data + u64::from(len), 8, true)]
            };
            add_chain(t, mem, if input { 3 } else { 2 }, &chain);
        }
    }
}

/// Runs one `virtio_snd` input.
pub fn run(data: &[u8]) {
    run_counting(data);
}

/// Runs one input; returns the pieces submitted for playback and for capture.
pub fn run_counting(data: &[u8]) -> [usize; 2] {
    let mut submitted = [0; 2];
    virtio_ops::run_with_memory(
        data,
        SoundDevice::<Card, SLOTS>::new(Card::new()),
        snd_op,
        |t| {
            let dev = t.device();
            let card = dev.backend();
            assert!(dev.in_flight() <= SLOTS && dev.pieces_out() <= MAX_PIECES);
            let answered = card
                .ready
                .iter()
                .filter(|c| matches!(c, Completion::Pcm(d) if card.tokens.contains(&d.token)))
                .count();
            assert!(
                dev.pieces_out() <= card.queued.len() + answered,
                "device counts pieces the backend never had"
            );
            assert!(
                dev.pieces_out() >= card.queued.len(),
                "backend holds pieces the device forgot"
            );
        },
        |t, mem| {
            // Reset, then every answer: nothing may be left.
            t.write(mem, STATUS, 4, 0);
            t.device_mut().backend_mut().busy = false;
            for _ in 0..4 * MAX_STREAMS {
                let card = t.device_mut().backend_mut();
                card.answer_command(BackendStatus::Ok);
                while !card.queued.is_empty() {
                    card.answer_piece(0, BackendStatus::Ok, 0, 0);
                }
                t.process(mem);
            }
            let dev = t.device();
            submitted = dev.backend().submitted;
            assert_eq!((dev.in_flight(), dev.pieces_out()), (0, 0), "messages left after reset");
            assert!(!dev.command_pending(), "command left after reset");
            assert_eq!(dev.backend().bufs.iter().flatten().count(), 0, "buffers leaked");
            for s in 0..2 {
                let state = dev.stream_state(s);
                assert!(matches!(state, None | Some(StreamState::Idle)), "stream {s}: {state:?}");
            }
        },
    );
    submitted
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_run() {
        for seed in crate::seeds::virtio_snd() {
            super::run(&seed);
        }
    }

    #[test]
    fn structured_seeds_play_and_record() {
        let [playback, capture] = crate::seeds::snd_sessions();
        assert_eq!(super::run_counting(&playback), [2, 0], "two periods played");
        assert_eq!(super::run_counting(&capture), [0, 2], "two periods recorded");
    }
}
