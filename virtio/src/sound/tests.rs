//! Host tests of the sound device against virtio 1.2 §5.14: every control request, the
//! stream lifecycle, playback timing and order, capture, a hostile driver, and resets.

use std::collections::VecDeque;

use super::control::*;
use super::*;
use crate::memory::{GuestMemoryExt, SliceMemory};
use crate::queue::VIRTQ_DESC_F_NEXT;
use crate::testing::DriverQueue;

const BASE: u64 = 0x4000_0000;
const RAM: usize = 4 << 20;
/// Guest buffers are bump-allocated from here.
const HEAP: u64 = BASE + 0x10000;

const S16: u8 = 5;
const R48000: u8 = 7;
const R44100: u8 = 6;

/// A backend that answers commands when told (or at once with `auto`), plays pieces when
/// the test says so, and records what it played.
struct Fake {
    streams: Vec<StreamInfo>,
    /// Commands received, in order.
    commands: Vec<(u32, PcmCommand)>,
    /// Answer commands at once with `status`.
    auto: bool,
    status: BackendStatus,
    /// Commands received and not answered yet (auto off).
    unanswered: usize,
    /// Buffers: `None` when free.
    buffers: Vec<Option<Vec<u8>>>,
    max_buffers: usize,
    /// Pieces queued: (stream, buffer, len, token).
    queue: VecDeque<(u32, BufferId, u32, u32)>,
    max_queue: usize,
    /// Bytes played, by stream.
    played: Vec<Vec<u8>>,
    done: VecDeque<Completion>,
    latency: u32,
    /// What capture records: byte `i` of the stream is `i as u8 ^ 0x5a`.
    recorded: u32,
    /// Capture pieces come back this much short.
    short_by: u32,
    notifies: usize,
    frees: usize,
}

fn output(channels: u8) -> StreamInfo {
    StreamInfo {
        direction: Direction::Output,
        formats: 1 << S16,
        rates: 1 << R48000 | 1 << R44100,
        channels_min: 1,
        channels_max: channels,
    }
}

fn input() -> StreamInfo {
    StreamInfo { direction: Direction::Input, ..output(2) }
}

impl Fake {
    fn new(streams: Vec<StreamInfo>) -> Fake {
        Fake {
            played: vec![Vec::new(); streams.len()],
            streams,
            commands: Vec::new(),
            auto: true,
            status: BackendStatus::Ok,
            unanswered: 0,
            buffers: Vec::new(),
            max_buffers: 16,
            queue: VecDeque::new(),
            max_queue: 64,
            done: VecDeque::new(),
            latency: 0,
            recorded: 0,
            short_by: 0,
            notifies: 0,
            frees: 0,
        }
    }

    fn live_buffers(&self) -> usize {
        self.buffers.iter().flatten().count()
    }

    /// Plays (or records) the `n` oldest queued pieces, answering each.
    fn play(&mut self, n: usize) {
        for _ in 0..n {
            let Some((stream, buf, len, token)) = self.queue.pop_front() else { return };
            let cells = self.buffers[buf.0 as usize].as_mut().expect("piece in a free buffer");
            let mut got = len;
            if self.streams[stream as usize].direction == Direction::Output {
                self.played[stream as usize].extend_from_slice(&cells[..len as usize]);
            } else {
                got = len.saturating_sub(self.short_by);
                for b in &mut cells[..got as usize] {
                    *b = self.recorded as u8 ^ 0x5a;
                    self.recorded += 1;
                }
            }
            self.latency += 1;
            let done =
                PcmDone { token, status: BackendStatus::Ok, len: got, latency_bytes: self.latency };
            self.done.push_back(Completion::Pcm(done));
        }
    }

    /// Answers the oldest unanswered command.
    fn answer(&mut self, status: BackendStatus) {
        assert!(self.unanswered > 0, "no command to answer");
        self.unanswered -= 1;
        self.done.push_back(Completion::Command(status));
    }
}

impl SoundBackend for Fake {
    fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }
    fn command(&mut self, stream: u32, cmd: PcmCommand) -> Result<(), BackendBusy> {
        assert_eq!(self.unanswered, 0, "a second command before the first was answered");
        self.commands.push((stream, cmd));
        self.unanswered += 1;
        if self.auto {
            self.answer(self.status);
        }
        Ok(())
    }
    fn alloc(&mut self) -> Option<BufferId> {
        if self.live_buffers() >= self.max_buffers {
            return None;
        }
        let free = self.buffers.iter().position(Option::is_none);
        let i = free.unwrap_or_else(|| {
            self.buffers.push(None);
            self.buffers.len() - 1
        });
        self.buffers[i] = Some(vec![0xcc; PCM_BUFFER_BYTES]);
        Some(BufferId(i as u32))
    }
    fn free(&mut self, buf: BufferId) {
        assert!(
            !self.queue.iter().any(|&(_, b, ..)| b == buf),
            "buffer {} freed while queued",
            buf.0
        );
        self.buffers[buf.0 as usize].take().expect("double free");
        self.frees += 1;
    }
    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        let cells = self.buffers[buf.0 as usize].as_mut().expect("write to a free buffer");
        cells.get_mut(at..at + src.len()).ok_or(BufferRange)?.copy_from_slice(src);
        Ok(())
    }
    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let cells = self.buffers[buf.0 as usize].as_ref().expect("read of a free buffer");
        dst.copy_from_slice(cells.get(at..at + dst.len()).ok_or(BufferRange)?);
        Ok(())
    }
    fn submit(
        &mut self,
        stream: u32,
        buf: BufferId,
        len: u32,
        token: u32,
    ) -> Result<(), BackendBusy> {
        assert!(len > 0 && len as usize <= PCM_BUFFER_BYTES, "piece of {len} bytes");
        assert!((stream as usize) < self.streams.len());
        if self.queue.len() >= self.max_queue {
            return Err(BackendBusy);
        }
        self.queue.push_back((stream, buf, len, token));
        Ok(())
    }
    fn complete(&mut self) -> Option<Completion> {
        self.done.pop_front()
    }
    fn notify(&mut self) {
        self.notifies += 1;
    }
}

/// The device, its queues, guest RAM and a driver-side view of each queue.
struct Rig {
    ram: Vec<u8>,
    queues: [Queue; 4],
    drv: [DriverQueue; 4],
    dev: SoundDevice<Fake, 8>,
    heap: u64,
}

impl Rig {
    fn new(streams: Vec<StreamInfo>) -> Rig {
        let mut ram = vec![0u8; RAM];
        let mem = SliceMemory::new(BASE, &mut ram);
        let drv: [DriverQueue; 4] =
            core::array::from_fn(|i| DriverQueue::at(BASE + 0x2000 * i as u64, 64));
        let mut queues: [Queue; 4] = core::array::from_fn(|_| Queue::new(QUEUE_SIZE));
        for (d, q) in drv.iter().zip(&mut queues) {
            d.configure(q);
            q.enable(&mem, 0).unwrap();
        }
        let mut dev = SoundDevice::new(Fake::new(streams));
        dev.activate(0, &queues).unwrap();
        Rig { ram, queues, drv, dev, heap: HEAP }
    }

    /// Playback stream 0 (stereo S16 at 44.1/48 kHz) and capture stream 1.
    fn standard() -> Rig {
        Rig::new(vec![output(2), input()])
    }

    fn mem(&mut self) -> SliceMemory<'_> {
        SliceMemory::new(BASE, &mut self.ram)
    }

    fn fake(&mut self) -> &mut Fake {
        self.dev.backend_mut()
    }

    /// Guest memory for `len` bytes.
    fn alloc(&mut self, len: usize) -> u64 {
        if self.heap + len as u64 > BASE + RAM as u64 {
            self.heap = HEAP;
        }
        let at = self.heap;
        self.heap = (at + len as u64 + 15) & !15;
        at
    }

    fn notify(&mut self, q: u16) {
        let mut mem = SliceMemory::new(BASE, &mut self.ram);
        let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
        self.dev.queue_notify(q, &mut ctx);
    }

    fn poll(&mut self) {
        let mut mem = SliceMemory::new(BASE, &mut self.ram);
        let mut ctx = DeviceContext::new(&mut mem, &mut self.queues);
        self.dev.poll(&mut ctx);
    }

    fn add(&mut self, q: u16, bufs: &[(u64, u32, bool)]) -> u16 {
        let mut mem = SliceMemory::new(BASE, &mut self.ram);
        self.drv[usize::from(q)].add_chain(&mut mem, bufs)
    }

    fn used(&mut self, q: u16) -> Option<(u32, u32)> {
        let mem = SliceMemory::new(BASE, &mut self.ram);
        self.drv[usize::from(q)].pop_used(&mem)
    }

    fn read_u32(&mut self, gpa: u64) -> u32 {
        self.mem().read_u32(gpa).unwrap()
    }

    /// Queues control request `req` with a `resp_len`-byte response buffer; returns the
    /// head and the response address.
    fn send_control(&mut self, req: &[u8], resp_len: u32) -> (u16, u64) {
        let at = self.alloc(req.len());
        self.mem().write(at, req).unwrap();
        let resp = self.alloc(resp_len as usize);
        self.mem().write(resp, &vec![0xee; resp_len as usize]).unwrap();
        let head = self.add(CONTROLQ, &[(at, req.len() as u32, false), (resp, resp_len, true)]);
        (head, resp)
    }

    /// A control request answered at once: (used length, status, response address).
    fn control(&mut self, req: &[u8], resp_len: u32) -> (u32, u32, u64) {
        let (head, resp) = self.send_control(req, resp_len);
        self.notify(CONTROLQ);
        let (id, len) = self.used(CONTROLQ).expect("control request answered");
        assert_eq!(id, u32::from(head));
        (len, self.read_u32(resp), resp)
    }

    fn pcm(&mut self, code: u32, stream: u32) -> u32 {
        let (len, status, _) = self.control(&pcm_req(code, stream), 4);
        assert_eq!(len, 4);
        status
    }

    fn set_params(&mut self, stream: u32, buffer: u32, period: u32) -> u32 {
        let (len, status, _) = self.control(&set_params(stream, buffer, period, 2, S16, R48000), 4);
        assert_eq!(len, 4);
        status
    }

    /// Stream 0 set up with `period`-byte periods and prepared.
    fn prepared(&mut self, period: u32) {
        assert_eq!(self.set_params(0, period * 4, period), VIRTIO_SND_S_OK);
        assert_eq!(self.pcm(VIRTIO_SND_R_PCM_PREPARE, 0), VIRTIO_SND_S_OK);
    }

    /// Queues a playback message; returns its head and status address.
    fn tx(&mut self, stream: u32, data: &[u8]) -> (u16, u64) {
        let hdr = self.alloc(4);
        self.mem().write(hdr, &stream.to_le_bytes()).unwrap();
        let buf = self.alloc(data.len());
        self.mem().write(buf, data).unwrap();
        let status = self.alloc(8);
        self.mem().write(status, &[0xee; 8]).unwrap();
        let head =
            self.add(TXQ, &[(hdr, 4, false), (buf, data.len() as u32, false), (status, 8, true)]);
        (head, status)
    }

    /// Queues a capture message of `len` bytes; returns head, data and status addresses.
    fn rx(&mut self, stream: u32, len: u32) -> (u16, u64, u64) {
        let hdr = self.alloc(4);
        self.mem().write(hdr, &stream.to_le_bytes()).unwrap();
        let buf = self.alloc(len as usize + 8);
        self.mem().write(buf, &vec![0xee; len as usize + 8]).unwrap();
        let head =
            self.add(RXQ, &[(hdr, 4, false), (buf, len, true), (buf + u64::from(len), 8, true)]);
        (head, buf, buf + u64::from(len))
    }

    /// The status and latency of a message.
    fn status(&mut self, at: u64) -> (u32, u32) {
        (self.read_u32(at), self.read_u32(at + 4))
    }
}

fn pcm_req(code: u32, stream: u32) -> Vec<u8> {
    [code.to_le_bytes(), stream.to_le_bytes()].concat()
}

fn set_params(stream: u32, buffer: u32, period: u32, ch: u8, fmt: u8, rate: u8) -> Vec<u8> {
    let mut b = pcm_req(VIRTIO_SND_R_PCM_SET_PARAMS, stream);
    b.extend_from_slice(&buffer.to_le_bytes());
    b.extend_from_slice(&period.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&[ch, fmt, rate, 0]);
    b
}

fn query(code: u32, start: u32, count: u32, size: u32) -> Vec<u8> {
    [code, start, count, size].iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(7).wrapping_add(seed) as u8).collect()
}

// ---------------------------------------------------------------------------------------
// Identification, configuration, item queries.

#[test]
fn identifies_as_a_sound_card_with_four_queues_and_no_features() {
    let rig = Rig::standard();
    assert_eq!(rig.dev.device_id(), 25);
    assert_eq!(rig.dev.features(), 0, "no VIRTIO_SND_F_CTLS");
    assert_eq!(rig.dev.queue_max_sizes(), &[QUEUE_SIZE; 4]);
    let mut c = [0xffu8; 16];
    rig.dev.read_config(0, &mut c);
    let words: Vec<u32> = c.chunks(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect();
    assert_eq!(words, [0, 2, 0, 0], "jacks, streams, chmaps (controls past the 1.2 layout)");
}

#[test]
fn config_offers_at_most_max_streams() {
    let dev = SoundDevice::<Fake, 2>::new(Fake::new(vec![output(2); 40]));
    let mut c = [0u8; 4];
    dev.read_config(4, &mut c);
    assert_eq!(u32::from_le_bytes(c), MAX_STREAMS as u32);
}

#[test]
fn pcm_info_describes_each_stream() {
    let mut rig = Rig::standard();
    let (len, status, resp) = rig.control(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 4 + 64);
    assert_eq!((len, status), (68, VIRTIO_SND_S_OK));
    let mut item = [0u8; 64];
    rig.mem().read(resp + 4, &mut item).unwrap();
    assert_eq!(&item[..8], &[0; 8], "hda_fn_nid and features");
    assert_eq!(u64::from_le_bytes(item[8..16].try_into().unwrap()), 1 << S16);
    assert_eq!(u64::from_le_bytes(item[16..24].try_into().unwrap()), 0xc0);
    assert_eq!(&item[24..32], &[VIRTIO_SND_D_OUTPUT, 1, 2, 0, 0, 0, 0, 0]);
    assert_eq!(&item[56..59], &[VIRTIO_SND_D_INPUT, 1, 2]);
    let (len, status, resp) = rig.control(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 32), 36);
    assert_eq!(
        (len, status, rig.mem().read_u32(resp + 4 + 24).unwrap() & 0xff),
        (36, VIRTIO_SND_S_OK, 1)
    );
}

#[test]
fn pcm_info_items_follow_the_drivers_size() {
    let mut rig = Rig::standard();
    let (len, status, resp) = rig.control(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 40), 84);
    assert_eq!((len, status), (84, VIRTIO_SND_S_OK));
    let mut items = [0u8; 80];
    rig.mem().read(resp + 4, &mut items).unwrap();
    assert_eq!(&items[32..40], &[0; 8], "padded with zeros");
    assert_eq!(items[40 + 24], VIRTIO_SND_D_INPUT, "second item at 40");
    let (len, status, resp) = rig.control(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 16), 24);
    assert_eq!((len, status), (20, VIRTIO_SND_S_OK));
    assert_eq!(rig.mem().read_u32(resp + 20).unwrap(), 0xeeee_eeee, "nothing past 16 bytes");
}

#[test]
fn queries_outside_the_items_or_the_buffer_are_bad_messages() {
    let mut rig = Rig::standard();
    for (req, resp_len) in [
        (query(VIRTIO_SND_R_PCM_INFO, 1, 2, 32), 100),
        (query(VIRTIO_SND_R_PCM_INFO, u32::MAX, 2, 32), 100),
        (query(VIRTIO_SND_R_PCM_INFO, 0, 2, 0), 100),
        (query(VIRTIO_SND_R_PCM_INFO, 0, 1, 4096), 5000),
        (query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 67),
        (query(VIRTIO_SND_R_JACK_INFO, 0, 1, 24), 100),
        (query(VIRTIO_SND_R_CHMAP_INFO, 0, 1, 24), 100),
        (query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32)[..15].to_vec(), 100),
    ] {
        let (len, status, resp) = rig.control(&req, resp_len);
        assert_eq!((len, status), (4, VIRTIO_SND_S_BAD_MSG), "{req:?}");
        assert_eq!(rig.read_u32(resp + 4), 0xeeee_eeee, "no payload written");
    }
    assert!(rig.fake().commands.is_empty());
}

#[test]
fn jacks_and_channel_maps_are_none() {
    let mut rig = Rig::standard();
    for code in [VIRTIO_SND_R_JACK_INFO, VIRTIO_SND_R_CHMAP_INFO] {
        let (len, status, _) = rig.control(&query(code, 0, 0, 24), 4);
        assert_eq!((len, status), (4, VIRTIO_SND_S_OK), "none asked, none given");
    }
    let (len, status, _) = rig.control(&query(VIRTIO_SND_R_PCM_INFO, 2, 0, 32), 4);
    assert_eq!((len, status), (4, VIRTIO_SND_S_OK), "an empty range at the end");
}

#[test]
fn jack_remap_and_unknown_requests_are_not_supported() {
    let mut rig = Rig::standard();
    let remap = query(VIRTIO_SND_R_JACK_REMAP, 0, 1, 2);
    assert_eq!(rig.control(&remap, 4).1, VIRTIO_SND_S_NOT_SUPP);
    assert_eq!(rig.control(&remap[..12], 4).1, VIRTIO_SND_S_BAD_MSG, "short remap");
    for code in [0x0300u32, 0x0306, 0x1000, 0x8000, 0xdead_beef] {
        assert_eq!(rig.control(&query(code, 0, 0, 0), 4).1, VIRTIO_SND_S_NOT_SUPP, "{code:#x}");
    }
}

#[test]
fn short_requests_and_missing_response_buffers() {
    let mut rig = Rig::standard();
    assert_eq!(rig.control(&[1, 0], 4).1, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(rig.control(&pcm_req(VIRTIO_SND_R_PCM_START, 0)[..6], 4).1, VIRTIO_SND_S_BAD_MSG);
    let mut sp = set_params(0, 4096, 1024, 2, S16, R48000);
    sp.truncate(23);
    assert_eq!(rig.control(&sp, 4).1, VIRTIO_SND_S_BAD_MSG);
    // No room for a response: returned with length 0.
    let (_, _resp) = rig.send_control(&pcm_req(VIRTIO_SND_R_PCM_START, 0), 2);
    rig.notify(CONTROLQ);
    assert_eq!(rig.used(CONTROLQ).map(|u| u.1), Some(0));
    // Only readable buffers.
    let at = rig.alloc(8);
    rig.add(CONTROLQ, &[(at, 8, false)]);
    rig.notify(CONTROLQ);
    assert_eq!(rig.used(CONTROLQ).map(|u| u.1), Some(0));
    assert!(rig.fake().commands.is_empty());
}

// ---------------------------------------------------------------------------------------
// PCM commands and the stream lifecycle.

#[test]
fn set_params_is_checked_before_the_backend_sees_it() {
    let mut rig = Rig::standard();
    let cases = [
        (set_params(2, 4096, 1024, 2, S16, R48000), VIRTIO_SND_S_BAD_MSG),
        (set_params(u32::MAX, 4096, 1024, 2, S16, R48000), VIRTIO_SND_S_BAD_MSG),
        (set_params(0, 4096, 0, 2, S16, R48000), VIRTIO_SND_S_BAD_MSG),
        (set_params(0, 0, 1024, 2, S16, R48000), VIRTIO_SND_S_BAD_MSG),
        (set_params(0, 4000, 1024, 2, S16, R48000), VIRTIO_SND_S_BAD_MSG),
        (set_params(0, 4096, 1024, 3, S16, R48000), VIRTIO_SND_S_NOT_SUPP),
        (set_params(0, 4096, 1024, 0, S16, R48000), VIRTIO_SND_S_NOT_SUPP),
        (set_params(0, 4096, 1024, 2, 17, R48000), VIRTIO_SND_S_NOT_SUPP),
        (set_params(0, 4096, 1024, 2, 255, R48000), VIRTIO_SND_S_NOT_SUPP),
        (set_params(0, 4096, 1024, 2, S16, 10), VIRTIO_SND_S_NOT_SUPP),
        (set_params(0, 4096, 1024, 2, S16, 99), VIRTIO_SND_S_NOT_SUPP),
        (set_params(0, 4 << 20, 2 << 20, 2, S16, R48000), VIRTIO_SND_S_NOT_SUPP),
    ];
    for (req, want) in &cases {
        assert_eq!(rig.control(req, 4).1, *want, "{req:?}");
    }
    let mut with_feature = set_params(0, 4096, 1024, 2, S16, R48000);
    with_feature[16] = 1 << 2; // VIRTIO_SND_PCM_F_MSG_POLLING, not offered
    assert_eq!(rig.control(&with_feature, 4).1, VIRTIO_SND_S_NOT_SUPP);
    assert!(rig.fake().commands.is_empty(), "nothing refused reaches the backend");
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Idle));
    assert_eq!(rig.control(&set_params(0, 4096, 1024, 1, S16, R44100), 4).1, VIRTIO_SND_S_OK);
    let want = PcmParams {
        buffer_bytes: 4096,
        period_bytes: 1024,
        channels: 1,
        format: S16,
        rate: R44100,
    };
    assert_eq!(rig.fake().commands, [(0, PcmCommand::SetParams(want))]);
}

const CODES: [u32; 5] = [
    VIRTIO_SND_R_PCM_SET_PARAMS,
    VIRTIO_SND_R_PCM_PREPARE,
    VIRTIO_SND_R_PCM_START,
    VIRTIO_SND_R_PCM_STOP,
    VIRTIO_SND_R_PCM_RELEASE,
];

/// Sends command `code` (by its index in [`CODES`]) to stream 0.
fn command(rig: &mut Rig, i: usize) -> u32 {
    match CODES[i] {
        VIRTIO_SND_R_PCM_SET_PARAMS => rig.set_params(0, 8192, 2048),
        code => rig.pcm(code, 0),
    }
}

#[test]
fn every_command_in_every_state_follows_the_lifecycle() {
    use StreamState::*;
    // How to reach each state from the start, as indices into CODES.
    let paths: [(StreamState, &[usize]); 6] = [
        (Idle, &[]),
        (ParamsSet, &[0]),
        (Prepared, &[0, 1]),
        (Running, &[0, 1, 2]),
        (Stopped, &[0, 1, 2, 3]),
        (Released, &[0, 1, 4]),
    ];
    for (state, path) in paths {
        for (c, _) in CODES.iter().enumerate() {
            let mut rig = Rig::standard();
            for &p in path {
                assert_eq!(command(&mut rig, p), VIRTIO_SND_S_OK);
            }
            assert_eq!(rig.dev.stream_state(0), Some(state));
            let before = rig.fake().commands.len();
            let params = PcmParams {
                buffer_bytes: 8192,
                period_bytes: 2048,
                channels: 2,
                format: S16,
                rate: R48000,
            };
            let cmd = [
                PcmCommand::SetParams(params),
                PcmCommand::Prepare,
                PcmCommand::Start,
                PcmCommand::Stop,
                PcmCommand::Release,
            ][c];
            let status = command(&mut rig, c);
            match state.after(&cmd) {
                Some(next) => {
                    assert_eq!(status, VIRTIO_SND_S_OK, "{cmd:?} from {state:?}");
                    assert_eq!(rig.dev.stream_state(0), Some(next));
                    let sent = &rig.fake().commands[before..];
                    assert_eq!(sent.last(), Some(&(0, cmd)));
                }
                None => {
                    assert_eq!(status, VIRTIO_SND_S_BAD_MSG, "{cmd:?} from {state:?}");
                    assert_eq!(rig.dev.stream_state(0), Some(state), "state unchanged");
                    assert_eq!(rig.fake().commands.len(), before, "backend not asked");
                }
            }
        }
    }
}

#[test]
fn prepare_after_release_takes_the_stream_again() {
    let mut rig = Rig::standard();
    rig.prepared(1024);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_RELEASE, 0), VIRTIO_SND_S_OK);
    rig.fake().commands.clear();
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_PREPARE, 0), VIRTIO_SND_S_OK);
    let p = PcmParams {
        buffer_bytes: 4096,
        period_bytes: 1024,
        channels: 2,
        format: S16,
        rate: R48000,
    };
    assert_eq!(rig.fake().commands, [(0, PcmCommand::SetParams(p)), (0, PcmCommand::Prepare)]);
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Prepared));
}

#[test]
fn backend_refusals_are_passed_on_and_keep_the_state() {
    let mut rig = Rig::standard();
    rig.fake().status = BackendStatus::NotSupp;
    assert_eq!(rig.set_params(0, 4096, 1024), VIRTIO_SND_S_NOT_SUPP);
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Idle));
    rig.fake().status = BackendStatus::Ok;
    rig.prepared(1024);
    for (status, want) in
        [(BackendStatus::IoErr, VIRTIO_SND_S_IO_ERR), (BackendStatus::BadMsg, VIRTIO_SND_S_BAD_MSG)]
    {
        rig.fake().status = status;
        assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), want);
        assert_eq!(rig.dev.stream_state(0), Some(StreamState::Prepared));
    }
}

#[test]
fn control_requests_wait_for_the_backend_one_at_a_time() {
    let mut rig = Rig::standard();
    rig.fake().auto = false;
    let (h1, r1) = rig.send_control(&set_params(0, 4096, 1024, 2, S16, R48000), 4);
    let (h2, r2) = rig.send_control(&pcm_req(VIRTIO_SND_R_PCM_PREPARE, 0), 4);
    let (h3, r3) = rig.send_control(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32), 36);
    rig.notify(CONTROLQ);
    assert_eq!(rig.used(CONTROLQ), None, "nothing answered before the backend");
    assert_eq!(rig.fake().commands.len(), 1);
    assert!(rig.dev.command_pending());
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    assert_eq!(rig.used(CONTROLQ), Some((u32::from(h1), 4)));
    assert_eq!(rig.used(CONTROLQ), None, "PREPARE waits for the backend");
    assert_eq!(rig.fake().commands.len(), 2);
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    assert_eq!(rig.used(CONTROLQ), Some((u32::from(h2), 4)));
    assert_eq!(rig.used(CONTROLQ), Some((u32::from(h3), 36)), "answered in order");
    for r in [r1, r2, r3] {
        assert_eq!(rig.read_u32(r), VIRTIO_SND_S_OK);
    }
}

#[test]
fn unexpected_backend_answers_are_ignored() {
    let mut rig = Rig::standard();
    rig.fake().done.push_back(Completion::Command(BackendStatus::Ok));
    let done = PcmDone { token: 0x1234_0005, status: BackendStatus::Ok, len: 9, latency_bytes: 1 };
    rig.fake().done.push_back(Completion::Pcm(done));
    rig.poll();
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Idle));
    assert_eq!(rig.fake().frees, 0);
    rig.prepared(1024);
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Prepared));
}

// ---------------------------------------------------------------------------------------
// Playback.

#[test]
fn periods_complete_in_order_once_played_with_the_backends_latency() {
    let mut rig = Rig::standard();
    rig.prepared(6000);
    let data: Vec<Vec<u8>> = (0..4).map(|i| pattern(i, 6000)).collect();
    let msgs: Vec<(u16, u64)> = data.iter().map(|d| rig.tx(0, d)).collect();
    rig.notify(TXQ);
    assert_eq!(rig.dev.in_flight(), 4, "pre-buffered before START");
    assert_eq!(rig.fake().queue.len(), 8, "two pieces of each period");
    assert!(rig.fake().notifies > 0);
    assert_eq!(rig.used(TXQ), None, "nothing completes before it is played");
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    for (i, &(head, status)) in msgs.iter().enumerate() {
        rig.fake().play(1);
        rig.poll();
        assert_eq!(rig.used(TXQ), None, "half a period played");
        rig.fake().play(1);
        rig.poll();
        assert_eq!(rig.used(TXQ), Some((u32::from(head), 8)), "period {i}");
        assert_eq!(rig.status(status), (VIRTIO_SND_S_OK, 2 * i as u32 + 2));
    }
    assert_eq!(rig.fake().played[0], data.concat(), "every byte played, in order");
    assert_eq!((rig.dev.in_flight(), rig.fake().live_buffers()), (0, 0));
}

#[test]
fn a_short_last_period_and_backend_buffer_shortage_lose_nothing() {
    let mut rig = Rig::standard();
    rig.prepared(10000);
    rig.fake().max_buffers = 1;
    rig.fake().max_queue = 1;
    let data: Vec<Vec<u8>> =
        [10000, 10000, 777].iter().enumerate().map(|(i, &n)| pattern(i as u32 + 9, n)).collect();
    let heads: Vec<u16> = data.iter().map(|d| rig.tx(0, d).0).collect();
    rig.notify(TXQ);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    let mut done = Vec::new();
    for _ in 0..100 {
        rig.fake().play(1);
        rig.poll();
        while let Some((id, _)) = rig.used(TXQ) {
            done.push(id as u16);
        }
    }
    assert_eq!(done, heads);
    assert_eq!(rig.fake().played[0], data.concat());
}

#[test]
fn completions_out_of_order_still_answer_periods_in_order() {
    let mut rig = Rig::standard();
    rig.prepared(4096);
    let (h0, _) = rig.tx(0, &pattern(1, 4096));
    let (h1, _) = rig.tx(0, &pattern(2, 4096));
    rig.notify(TXQ);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    // A misbehaving backend answers the second piece first.
    let second = rig.fake().queue.remove(1).unwrap();
    rig.fake().queue.push_front(second);
    rig.fake().play(1);
    rig.poll();
    assert_eq!(rig.used(TXQ), None, "the later period waits for the earlier one");
    rig.fake().play(1);
    rig.poll();
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(h0)));
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(h1)));
}

#[test]
fn a_failed_piece_fails_its_period_only() {
    let mut rig = Rig::standard();
    rig.prepared(8192);
    let (_, s0) = rig.tx(0, &pattern(1, 8192));
    let (_, s1) = rig.tx(0, &pattern(2, 100));
    rig.fake().max_queue = 1;
    rig.notify(TXQ);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    let (_, buf, _, token) = rig.fake().queue.pop_front().unwrap();
    assert_eq!(rig.fake().live_buffers(), 1, "buffer {} with the backend", buf.0);
    let failed = PcmDone { token, status: BackendStatus::IoErr, len: 0, latency_bytes: 0 };
    rig.fake().done.push_back(Completion::Pcm(failed));
    rig.poll();
    rig.fake().play(1);
    rig.poll();
    assert_eq!(rig.status(s0).0, VIRTIO_SND_S_IO_ERR);
    assert_eq!(rig.status(s1).0, VIRTIO_SND_S_OK);
    assert_eq!(rig.fake().played[0], pattern(2, 100), "the failed period's rest was never sent");
    assert_eq!(rig.fake().live_buffers(), 0);
}

#[test]
fn busy_backend_queue_is_retried_on_poll() {
    let mut rig = Rig::standard();
    rig.prepared(4096);
    rig.fake().max_queue = 0;
    let (head, _) = rig.tx(0, &pattern(5, 4096));
    rig.notify(TXQ);
    assert_eq!((rig.fake().queue.len(), rig.fake().live_buffers()), (0, 0), "buffer returned");
    rig.fake().max_queue = 8;
    rig.poll();
    assert_eq!(rig.fake().queue.len(), 1);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    rig.fake().play(1);
    rig.poll();
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(head)));
}

#[test]
fn stop_keeps_queued_periods_until_start() {
    let mut rig = Rig::standard();
    rig.prepared(1024);
    let (head, _) = rig.tx(0, &pattern(3, 1024));
    rig.notify(TXQ);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_STOP, 0), VIRTIO_SND_S_OK);
    let (head2, _) = rig.tx(0, &pattern(4, 1024));
    rig.notify(TXQ);
    assert_eq!((rig.used(TXQ), rig.dev.in_flight()), (None, 2), "held while stopped");
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    rig.fake().play(2);
    rig.poll();
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(head)));
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(head2)));
}

#[test]
fn release_fails_held_periods_before_it_is_answered() {
    let mut rig = Rig::standard();
    rig.prepared(4096);
    let played = rig.tx(0, &pattern(1, 4096));
    let held = rig.tx(0, &pattern(2, 4096));
    let waiting = rig.tx(0, &pattern(3, 4096));
    rig.fake().max_queue = 2;
    rig.notify(TXQ);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    rig.fake().play(1);
    rig.fake().max_queue = 1;
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_STOP, 0), VIRTIO_SND_S_OK);
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(played.0)));
    assert_eq!(rig.fake().queue.len(), 1, "the third period is not with the backend");
    rig.fake().auto = false;
    let (rel, _) = rig.send_control(&pcm_req(VIRTIO_SND_R_PCM_RELEASE, 0), 4);
    rig.notify(CONTROLQ);
    assert_eq!((rig.used(TXQ), rig.used(CONTROLQ)), (None, None));
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    // §5.14.6.6.5: every message is completed, then the RELEASE.
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(held.0)));
    assert_eq!(rig.used(TXQ).map(|u| u.0), Some(u32::from(waiting.0)));
    assert_eq!(rig.used(CONTROLQ).map(|u| u.0), Some(u32::from(rel)));
    assert_eq!(rig.status(held.1).0, VIRTIO_SND_S_IO_ERR);
    assert_eq!(rig.status(waiting.1).0, VIRTIO_SND_S_IO_ERR);
    assert_eq!(rig.dev.in_flight(), 1, "the piece the backend still holds is drained");
    let before = rig.ram.clone();
    rig.fake().play(1);
    rig.poll();
    assert!(rig.ram == before, "a late piece touches no guest memory");
    assert_eq!((rig.dev.in_flight(), rig.fake().live_buffers()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// Capture.

#[test]
fn capture_messages_are_filled_with_recorded_frames() {
    let mut rig = Rig::standard();
    assert_eq!(rig.set_params(1, 20000, 5000), VIRTIO_SND_S_OK);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_PREPARE, 1), VIRTIO_SND_S_OK);
    let a = rig.rx(1, 5000);
    let b = rig.rx(1, 5000);
    rig.notify(RXQ);
    assert_eq!(rig.fake().queue.len(), 4);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 1), VIRTIO_SND_S_OK);
    rig.fake().play(4);
    rig.poll();
    assert_eq!(rig.used(RXQ), Some((u32::from(a.0), 5008)), "frames + status");
    assert_eq!(rig.used(RXQ), Some((u32::from(b.0), 5008)));
    let want: Vec<u8> = (0..10000u32).map(|i| i as u8 ^ 0x5a).collect();
    let mut got = vec![0u8; 5000];
    rig.mem().read(a.1, &mut got).unwrap();
    assert!(got[..] == want[..5000]);
    rig.mem().read(b.1, &mut got).unwrap();
    assert!(got[..] == want[5000..]);
    assert_eq!(rig.status(a.2).0, VIRTIO_SND_S_OK);
}

#[test]
fn a_short_recording_counts_only_the_frames_recorded() {
    let mut rig = Rig::standard();
    assert_eq!(rig.set_params(1, 8192, 4096), VIRTIO_SND_S_OK);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_PREPARE, 1), VIRTIO_SND_S_OK);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 1), VIRTIO_SND_S_OK);
    let (head, buf, _) = rig.rx(1, 3000);
    rig.notify(RXQ);
    rig.fake().short_by = 1000;
    rig.fake().play(1);
    rig.poll();
    assert_eq!(rig.used(RXQ), Some((u32::from(head), 2008)));
    assert_eq!(rig.read_u32(buf + 2000), 0xeeee_eeee, "past the recording untouched");
}

#[test]
fn capture_needs_a_capture_stream() {
    let mut rig = Rig::new(vec![output(2)]);
    rig.prepared(1024);
    let (head, _, status) = rig.rx(0, 1024);
    rig.notify(RXQ);
    assert_eq!(rig.used(RXQ), Some((u32::from(head), 8)));
    assert_eq!(rig.status(status).0, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(rig.control(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 68).1, VIRTIO_SND_S_BAD_MSG);
}

// ---------------------------------------------------------------------------------------
// A hostile driver.

#[test]
fn malformed_messages_get_the_specs_status_and_never_reach_the_backend() {
    let mut rig = Rig::standard();
    rig.prepared(1024);
    let cases: [(u32, usize, u32); 6] = [
        (2, 100, VIRTIO_SND_S_BAD_MSG),        // no such stream
        (u32::MAX, 100, VIRTIO_SND_S_BAD_MSG), // no such stream
        (1, 100, VIRTIO_SND_S_BAD_MSG),        // a capture stream on the tx queue
        (0, 1025, VIRTIO_SND_S_BAD_MSG),       // longer than a period
        (0, 0, VIRTIO_SND_S_BAD_MSG),          // no data
        (0, 1024, VIRTIO_SND_S_OK),            // fine (played below)
    ];
    let msgs: Vec<_> = cases.iter().map(|&(s, n, _)| rig.tx(s, &pattern(s, n))).collect();
    rig.notify(TXQ);
    assert_eq!(rig.fake().queue.len(), 1, "only the valid message reaches the backend");
    rig.fake().play(1);
    rig.poll();
    for ((head, status), &(.., want)) in msgs.iter().zip(&cases) {
        assert_eq!(rig.status(*status).0, want, "message {head}");
    }
    let mut used = Vec::new();
    while let Some(u) = rig.used(TXQ) {
        used.push(u);
    }
    assert_eq!(used.len(), cases.len());
    assert!(used.iter().all(|&(_, len)| len == 8));
}

#[test]
fn messages_for_a_stream_that_takes_no_io_are_io_errors() {
    let mut rig = Rig::standard();
    let (_, s) = rig.tx(0, &pattern(0, 64));
    rig.notify(TXQ);
    assert_eq!(rig.status(s).0, VIRTIO_SND_S_IO_ERR, "before SET_PARAMS");
    assert_eq!(rig.set_params(0, 4096, 1024), VIRTIO_SND_S_OK);
    let (_, s) = rig.tx(0, &pattern(0, 64));
    rig.notify(TXQ);
    assert_eq!(rig.status(s).0, VIRTIO_SND_S_IO_ERR, "before PREPARE");
    assert!(rig.fake().queue.is_empty());
}

#[test]
fn broken_message_layouts() {
    let mut rig = Rig::standard();
    rig.prepared(1024);
    let hdr = rig.alloc(4);
    let data = rig.alloc(64);
    let status = rig.alloc(16);
    // Header of 2 bytes only: BAD_MSG.
    rig.add(TXQ, &[(hdr, 2, false), (status, 8, true)]);
    // No room for a status: length 0.
    rig.add(TXQ, &[(hdr, 4, false), (data, 64, false), (status, 4, true)]);
    // Writable data on the tx queue: BAD_MSG in the last 8 bytes.
    rig.add(TXQ, &[(hdr, 4, false), (status, 16, true)]);
    rig.notify(TXQ);
    let used: Vec<u32> = (0..3).map(|_| rig.used(TXQ).unwrap().1).collect();
    assert_eq!(used, [8, 0, 8]);
    assert_eq!(rig.read_u32(status + 8), VIRTIO_SND_S_BAD_MSG);
    // Readable data on the rx queue.
    assert_eq!(rig.set_params(1, 4096, 1024), VIRTIO_SND_S_OK);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_PREPARE, 1), VIRTIO_SND_S_OK);
    rig.mem().write_u32(hdr, 1).unwrap();
    rig.add(RXQ, &[(hdr, 4, false), (data, 64, false), (status, 16, true)]);
    rig.notify(RXQ);
    assert_eq!(rig.used(RXQ).map(|u| u.1), Some(8));
    assert_eq!(rig.read_u32(status + 8), VIRTIO_SND_S_BAD_MSG);
    assert!(rig.fake().queue.is_empty());
}

#[test]
fn descriptor_loops_end_and_the_queue_goes_on() {
    let mut rig = Rig::standard();
    rig.prepared(1024);
    for q in [CONTROLQ, TXQ] {
        let at = rig.alloc(16);
        let mut mem = SliceMemory::new(BASE, &mut rig.ram);
        rig.drv[usize::from(q)].set_desc(&mut mem, 7, at, 16, VIRTQ_DESC_F_NEXT, 7);
        rig.drv[usize::from(q)].publish(&mut mem, 7);
        rig.notify(q);
        assert_eq!(rig.used(q), Some((7, 0)), "queue {q}");
    }
    let (_, s) = rig.tx(0, &pattern(1, 10));
    rig.notify(TXQ);
    assert_eq!(rig.fake().queue.len(), 1);
    assert_eq!(rig.status(s).0, 0xeeee_eeee, "held until played");
}

#[test]
fn random_driver_traffic_never_panics_and_leaks_nothing() {
    let (mut played, mut recorded, mut started) = (0, 0, 0);
    for seed in 0..40 {
        let mut rig = Rig::standard();
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..400 {
            // Mostly well-formed traffic, so streams get to run; hostile values mixed in.
            let stream = [0, 0, 1, 1, 2][rng.u64(..5) as usize];
            match rng.u64(..20) {
                0..=2 => {
                    let p = 1 + rng.u64(..5000) as u32;
                    let b = p * (1 + rng.u64(..4) as u32) + u32::from(rng.u64(..8) == 0);
                    let ch = 1 + rng.u64(..3) as u8;
                    rig.send_control(&set_params(stream, b, p, ch, S16, R48000), 4);
                }
                3..=5 => {
                    let code = CODES[1 + rng.u64(..4) as usize];
                    rig.send_control(&pcm_req(code, stream), 4);
                }
                6..=8 => {
                    let n = rng.u64(..6000) as usize;
                    rig.tx(stream, &pattern(seed as u32, n));
                }
                9..=10 => {
                    rig.rx(stream, rng.u64(..6000) as u32);
                }
                11..=13 => {
                    let n = rng.u64(..8) as usize;
                    rig.fake().play(n);
                }
                14 => {
                    let status =
                        [BackendStatus::Ok, BackendStatus::IoErr][rng.u64(..4).min(1) as usize];
                    rig.fake().status = status;
                    rig.fake().max_buffers = rng.u64(..20) as usize;
                }
                15 if rng.u64(..8) == 0 => {
                    rig.dev.reset();
                    let queues = rig.queues.clone();
                    rig.dev.activate(0, &queues).unwrap();
                }
                _ => {
                    rig.notify([CONTROLQ, TXQ, RXQ][rng.u64(..3) as usize]);
                    rig.poll();
                }
            }
            for q in [CONTROLQ, TXQ, RXQ] {
                while rig.used(q).is_some() {}
            }
            assert!(rig.dev.pieces_out() <= MAX_PIECES && rig.dev.in_flight() <= 8);
            let answered =
                rig.fake().done.iter().filter(|c| matches!(c, Completion::Pcm(_))).count();
            let with_backend = rig.fake().queue.len() + answered;
            assert_eq!(rig.dev.pieces_out(), with_backend, "pieces and the backend agree");
        }
        // Wind down: reset, everything played, every buffer back.
        rig.dev.reset();
        for _ in 0..20 {
            rig.fake().play(usize::MAX);
            rig.poll();
        }
        assert_eq!((rig.dev.in_flight(), rig.dev.pieces_out()), (0, 0), "seed {seed}");
        assert_eq!(rig.fake().live_buffers(), 0, "seed {seed}");
        assert!(!rig.dev.command_pending(), "seed {seed}");
        let busy = rig.dev.streams.iter().filter(|s| s.state != StreamState::Idle || s.teardown);
        assert_eq!(busy.count(), 0, "seed {seed}: every stream back at its start");
        played += rig.fake().played[0].len();
        recorded += rig.fake().recorded;
        started += rig.fake().commands.iter().filter(|c| c.1 == PcmCommand::Start).count();
    }
    // The traffic got somewhere, not only refusals.
    assert!(played > 0 && recorded > 0 && started > 0, "{played} {recorded} {started}");
}

// ---------------------------------------------------------------------------------------
// Reset.

#[test]
fn reset_in_the_middle_of_playback_stops_and_releases_the_stream() {
    let mut rig = Rig::standard();
    rig.prepared(4096);
    for i in 0..4 {
        rig.tx(0, &pattern(i, 4096));
    }
    rig.notify(TXQ);
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_START, 0), VIRTIO_SND_S_OK);
    rig.fake().play(1);
    rig.poll();
    assert!(rig.used(TXQ).is_some());
    rig.fake().commands.clear();
    rig.dev.reset();
    let before = rig.ram.clone();
    rig.poll();
    assert_eq!(rig.fake().commands, [(0, PcmCommand::Stop), (0, PcmCommand::Release)]);
    rig.fake().play(usize::MAX);
    rig.poll();
    assert!(rig.ram == before, "nothing written to guest memory after the reset");
    assert_eq!((rig.dev.in_flight(), rig.fake().live_buffers()), (0, 0));
    // The driver starts again from scratch.
    let queues = rig.queues.clone();
    rig.dev.activate(0, &queues).unwrap();
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Idle));
    assert_eq!(rig.pcm(VIRTIO_SND_R_PCM_PREPARE, 0), VIRTIO_SND_S_BAD_MSG, "no parameters yet");
}

#[test]
fn reset_while_the_backend_holds_a_command() {
    let mut rig = Rig::standard();
    rig.prepared(4096);
    rig.fake().auto = false;
    rig.fake().commands.clear();
    let (_, resp) = rig.send_control(&pcm_req(VIRTIO_SND_R_PCM_START, 0), 4);
    rig.notify(CONTROLQ);
    rig.dev.reset();
    rig.poll();
    assert_eq!(rig.fake().commands, [(0, PcmCommand::Start)], "teardown waits for the answer");
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    assert_eq!(rig.read_u32(resp), 0xeeee_eeee, "the late answer is not written");
    for _ in 0..2 {
        rig.fake().answer(BackendStatus::Ok);
        rig.poll();
    }
    assert_eq!(rig.fake().commands[1..], [(0, PcmCommand::Stop), (0, PcmCommand::Release)]);
    assert!(!rig.dev.command_pending());
    assert_eq!(rig.dev.streams[0].state, StreamState::Idle);
}

#[test]
fn guest_commands_after_a_reset_wait_for_the_teardown() {
    let mut rig = Rig::standard();
    rig.prepared(4096);
    rig.fake().auto = false;
    rig.dev.reset();
    let queues = rig.queues.clone();
    rig.dev.activate(0, &queues).unwrap();
    rig.fake().commands.clear();
    let (tx, status) = rig.tx(0, &pattern(0, 64));
    rig.notify(TXQ);
    assert_eq!(
        (rig.used(TXQ).map(|u| u.0), rig.status(status).0),
        (Some(u32::from(tx)), VIRTIO_SND_S_IO_ERR)
    );
    let (head, _) = rig.send_control(&set_params(0, 4096, 1024, 2, S16, R48000), 4);
    rig.notify(CONTROLQ);
    assert_eq!(rig.fake().commands, [(0, PcmCommand::Release)]);
    rig.fake().answer(BackendStatus::IoErr);
    rig.poll();
    assert_eq!(rig.fake().commands.len(), 2, "the guest's SET_PARAMS after the teardown");
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    assert_eq!(rig.used(CONTROLQ), Some((u32::from(head), 4)));
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::ParamsSet));
}

#[test]
fn activation_needs_the_control_queue() {
    let mut dev = SoundDevice::<Fake, 2>::new(Fake::new(vec![output(2)]));
    let queues: [Queue; 4] = core::array::from_fn(|_| Queue::new(8));
    assert_eq!(dev.activate(0, &queues), Err(ActivateError::QueueNotReady(CONTROLQ)));
}

/// The first `virtio_snd` fuzz find: messages held while PREPARED kept feeding the backend
/// after SET_PARAMS took the stream back (the backend saw pieces for a stream it had not
/// prepared). Now no piece goes out while SET_PARAMS or RELEASE is with the backend, and
/// the held messages fail once the stream stops taking I/O.
#[test]
fn regression_set_params_after_prepare_ends_the_streams_io() {
    let mut rig = Rig::standard();
    rig.prepared(8192);
    rig.fake().max_buffers = 1;
    let (_, first) = rig.tx(0, &pattern(1, 8192));
    let (_, second) = rig.tx(0, &pattern(2, 100));
    rig.notify(TXQ);
    assert_eq!(rig.fake().queue.len(), 1);
    rig.fake().auto = false;
    let (head, _) = rig.send_control(&set_params(0, 4096, 1024, 2, S16, R48000), 4);
    rig.notify(CONTROLQ);
    rig.fake().play(1);
    rig.poll();
    assert!(rig.fake().queue.is_empty(), "no piece while SET_PARAMS is with the backend");
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    assert!(rig.fake().queue.is_empty(), "nor after it");
    assert_eq!(
        (rig.status(first).0, rig.status(second).0),
        (VIRTIO_SND_S_IO_ERR, VIRTIO_SND_S_IO_ERR)
    );
    let used: Vec<_> = std::iter::from_fn(|| rig.used(TXQ)).collect();
    assert_eq!(used.len(), 2);
    assert_eq!(rig.used(CONTROLQ), Some((u32::from(head), 4)));
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::ParamsSet));
    assert_eq!((rig.dev.in_flight(), rig.fake().live_buffers()), (0, 0));
}

#[test]
fn no_piece_goes_out_while_release_is_with_the_backend() {
    let mut rig = Rig::standard();
    rig.prepared(8192);
    rig.fake().max_buffers = 1;
    rig.tx(0, &pattern(1, 8192));
    rig.notify(TXQ);
    rig.fake().auto = false;
    rig.send_control(&pcm_req(VIRTIO_SND_R_PCM_RELEASE, 0), 4);
    rig.notify(CONTROLQ);
    rig.fake().play(1);
    rig.poll();
    assert!(rig.fake().queue.is_empty());
    rig.fake().answer(BackendStatus::Ok);
    rig.poll();
    assert_eq!(rig.dev.stream_state(0), Some(StreamState::Released));
    assert_eq!((rig.dev.in_flight(), rig.fake().live_buffers()), (0, 0));
}
