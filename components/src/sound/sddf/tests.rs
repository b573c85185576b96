//! The sDDF side of the HDA driver against the controller model
//! (`hda/fake.rs`), with a client on the driver queues directly and, in the
//! end-to-end test, through the virtualiser.

use super::*;
use crate::sound::hda::fake::{FakeCodec, FakeHda, Shared};
use crate::sound::hda::{dma_bytes, Config, Dma, PcmFormat};
use crate::sound::virt::{self, SoundVirt};
use crate::sound::CounterSource;
use sddf_bindings::sound::{
    region_size, SoundPcmSetParams, SOUND_CMD_QUEUE_CAPACITY, SOUND_PCM_QUEUE_CAPACITY,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

const IO: u64 = 0x4000_0000;
const DATA_IO: u64 = 0x8000_0000;
const CELLS: u64 = 64;
const PERIOD: u32 = 1024;

fn config() -> Config {
    Config {
        format: PcmFormat::S16_STEREO_48K,
        periods: 4,
        period_bytes: PERIOD,
        // 8 periods of 256 frames: the 2048 frames QEMU's codec reads ahead.
        lead_periods: 1,
        drain_periods: 8,
        poll_budget: 100,
        stream_tag: 1,
    }
}

fn connection() -> (SoundQueues, SoundQueues) {
    let cmd = || SharedRegion::leak_zeroed(region_size(false, SOUND_CMD_QUEUE_CAPACITY));
    let pcm = || SharedRegion::leak_zeroed(region_size(true, SOUND_PCM_QUEUE_CAPACITY));
    let r = [cmd(), cmd(), pcm(), pcm()];
    let [a, b, c, d] = r.clone();
    let [e, f, g, h] = r;
    (SoundQueues::new(a, b, c, d).unwrap(), SoundQueues::new(e, f, g, h).unwrap())
}

fn state() -> (SoundSharedStateHandle, SoundSharedStateHandle) {
    let r = SharedRegion::leak_zeroed(size_of::<SoundSharedState>());
    (SoundSharedStateHandle::new(r.clone()).unwrap(), SoundSharedStateHandle::new(r).unwrap())
}

fn params() -> SoundPcmSetParams {
    SoundPcmSetParams { channels: 2, format: format::S16, rate: SoundPcmRate::Hz48000 as u8 }
}

struct Rig {
    model: Shared,
    hda: Hda<Shared>,
    sound: SddfSound<1>,
    /// The client's (or virtualiser's) ends.
    client: SoundQueues,
    data: SharedRegion,
    state: SoundSharedStateHandle,
}

fn rig() -> Rig {
    let region = SharedRegion::leak_zeroed(dma_bytes(&config()));
    let model = FakeHda::new(region.clone(), IO, vec![FakeCodec::qemu_output(0)]);
    let model = Shared(Rc::new(RefCell::new(model)));
    let hda = Hda::new(model.clone(), Dma { region, io_addr: IO }, config()).unwrap();
    let (client, driver) = connection();
    let data = SharedRegion::leak_zeroed(CELLS as usize * 4096);
    let (mine, theirs) = state();
    let regions = [DataRegion { region: data.clone(), io_addr: DATA_IO }];
    let sound = SddfSound::new(driver, &mine, regions, PERIOD);
    Rig { model, hda, sound, client, data, state: theirs }
}

impl Rig {
    fn cmd(&mut self, cmd: SoundCmd) -> Option<SoundStatus> {
        self.client.cmd_req.enqueue(cmd).unwrap();
        self.sound.handle(&mut self.hda);
        self.client.cmd_res.dequeue().map(|r| r.status().unwrap())
    }

    /// Writes counter frames `from..from + n` into cell `cell` and sends it.
    fn send(&mut self, cell: u64, from: u32, n: u32) {
        let bytes: Vec<u8> = (from..from + n).flat_map(CounterSource::frame).collect();
        self.data.write(cell as usize * 4096, &bytes).unwrap();
        let pcm = SoundPcm::new(from, 0, DATA_IO + cell * 4096, n * 4);
        self.client.pcm_req.enqueue(pcm).unwrap();
    }

    fn answers(&mut self) -> Vec<SoundPcm> {
        core::iter::from_fn(|| self.client.pcm_res.dequeue()).collect()
    }

    /// Lets the DMA run `bytes`, handling interrupts; the STOP answer if
    /// one came.
    fn run(&mut self, bytes: u32) -> Option<SoundStatus> {
        let mut stop = None;
        let mut left = bytes;
        while left > 0 {
            let moved = self.model.0.borrow_mut().play(left.min(256));
            left = left.saturating_sub(moved.max(256));
            if self.model.0.borrow().irq_line() {
                self.sound.irq(&mut self.hda);
                if let Some(r) = self.client.cmd_res.dequeue() {
                    stop = r.status();
                }
            }
        }
        stop
    }

    fn played(&self) -> Vec<u8> {
        self.model.0.borrow().played.clone()
    }
}

/// `played` holds, after silence, counter frames `0..frames` with only
/// silence (gaps) between them, each once and in order; then silence.
fn assert_counter(played: &[u8], frames: u32) {
    let audio: Vec<&[u8]> = played.chunks_exact(4).filter(|f| *f != [0; 4]).collect();
    assert_eq!(audio.len() as u32, frames, "frames played");
    for (n, f) in audio.iter().enumerate() {
        assert_eq!(*f, CounterSource::frame(n as u32), "frame {n}");
    }
}

#[test]
fn publishes_one_playback_stream() {
    let r = rig();
    let s = r.state.read().expect("ready at init");
    assert_eq!(s.stream_info(), [stream_info()]);
    assert_eq!(s.stream_info[0].direction(), Some(SoundDirection::Output));
}

#[test]
fn commands_follow_the_stream_states() {
    let mut r = rig();
    let (ok, bad) = (Some(SoundStatus::Ok), Some(SoundStatus::BadMsg));
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 1, 0)), bad);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0)), bad);
    let mono = SoundPcmSetParams { channels: 1, ..params() };
    assert_eq!(r.cmd(SoundCmd::take(1, 0, mono)), Some(SoundStatus::NotSupp));
    assert_eq!(r.cmd(SoundCmd::take(1, 1, params())), bad, "stream 1");
    assert_eq!(r.cmd(SoundCmd { code: 42, ..SoundCmd::take(1, 0, params()) }), bad);
    assert_eq!(r.cmd(SoundCmd::take(1, 0, params())), ok);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Stop, 1, 0)), bad);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0)), ok);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 1, 0)), ok);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 1, 0)), bad, "running");
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Stop, 1, 0)), ok, "no buffer: stops at once");
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 1, 0)), ok);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 1, 0)), bad);
}

#[test]
fn hostile_buffers_are_refused() {
    let mut r = rig();
    let pcm = |io, len| SoundPcm::new(9, 0, io, len);
    r.client.pcm_req.enqueue(pcm(DATA_IO, 4096)).unwrap(); // before PREPARE
    r.sound.handle(&mut r.hda);
    assert_eq!(r.answers()[0].status(), Some(SoundStatus::IoErr));
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    for p in [
        pcm(DATA_IO + CELLS * 4096 - 8, 16), // past the region
        pcm(DATA_IO - 4096, 4096),           // before it
        pcm(u64::MAX - 3, 8),
        pcm(DATA_IO, 0),
        pcm(DATA_IO, 4097),
        pcm(DATA_IO, 6), // not whole frames
        SoundPcm::new(9, 1, DATA_IO, 4096),
    ] {
        r.client.pcm_req.enqueue(p).unwrap();
    }
    r.sound.handle(&mut r.hda);
    let st: Vec<_> = r.answers().iter().map(|a| a.status()).collect();
    assert_eq!(st, [Some(SoundStatus::BadMsg); 7]);
    assert_eq!(r.sound.stats().refused, 8);
}

/// `pre` buffers before START, START, then (`replay`: those buffers again,
/// as after PREPARE) the rest of `frames`; STOP. Returns the answers in
/// order.
fn session(r: &mut Rig, first: u32, frames: u32, pre: u32, replay: bool) -> Vec<SoundPcm> {
    let per = 1024; // frames per 4 KiB buffer
    let cells = frames.div_ceil(per);
    let buffer = |i: u32| (u64::from(i) % CELLS, first + i * per, per.min(frames - i * per));
    for i in 0..pre.min(cells) {
        let (cell, from, n) = buffer(i);
        r.send(cell, from, n);
    }
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 2, 0)), Some(SoundStatus::Ok));
    let mut answers = Vec::new();
    let mut i = if replay { 0 } else { pre };
    while i < cells {
        while i < cells && r.client.pcm_req.free() > 0 && i < 40 + answers.len() as u32 {
            let (cell, from, n) = buffer(i);
            r.send(cell, from, n);
            i += 1;
        }
        r.sound.handle(&mut r.hda);
        r.run(PERIOD);
        answers.extend(r.answers());
    }
    r.client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Stop, 3, 0)).unwrap();
    r.sound.handle(&mut r.hda);
    let mut stopped = r.client.cmd_res.dequeue().and_then(|c| c.status());
    for _ in 0..1000 {
        answers.extend(r.answers());
        if stopped.is_some() {
            break;
        }
        stopped = r.run(PERIOD);
    }
    assert_eq!(stopped, Some(SoundStatus::Ok), "STOP answered once its buffers played");
    let sent = cells + if replay { pre.min(cells) } else { 0 };
    assert_eq!(answers.len() as u32, sent, "every buffer answered before the STOP");
    // The drain's silence plays on; then the DMA engine stops.
    for _ in 0..1000 {
        if !r.hda.running() {
            break;
        }
        assert_eq!(r.run(PERIOD), None);
    }
    assert!(!r.hda.running());
    answers
}

#[test]
fn plays_buffers_in_order_and_answers_each_once_played() {
    let mut r = rig();
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    let answers = session(&mut r, 0, 48_000, 4, true);
    // Held buffer k is answered with its replay, as the replay plays; then
    // the other 43.
    let cookies: Vec<u32> = answers.iter().map(|a| a.cookie).collect();
    let sent: Vec<u32> = (0..4).flat_map(|i| [i, i]).chain(4..47).map(|i| i * 1024).collect();
    assert_eq!(cookies, sent);
    assert!(answers.iter().all(|a| a.status() == Some(SoundStatus::Ok)));
    assert!(answers.iter().any(|a| a.latency_bytes > 0));
    assert_counter(&r.played(), 48_000);
    assert_eq!(r.hda.stats().underruns, 0);
    let tail = r.played().len() - r.played().iter().rposition(|&b| b != 0).unwrap();
    assert!(tail >= 2048 * 4, "at least 2048 frames of silence before the stop ({tail} bytes)");
    assert!(!r.hda.running());
}

/// sDDF 0.7 (replay): the `k`-th buffer sent before START is answered once
/// `k + 1` buffers have played, and so is its replay: the client hears of
/// the first buffer while the others still play, so it can send more in
/// time (answering all held buffers before the replays starved a client).
#[test]
fn a_held_buffer_and_its_replay_are_answered_as_the_replay_plays() {
    let mut r = rig();
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    for i in 0..4 {
        r.send(i, i as u32 * 1024, 1024);
    }
    r.sound.handle(&mut r.hda);
    assert!(r.answers().is_empty(), "held, not answered before START");
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 2, 0)), Some(SoundStatus::Ok));
    for i in 0..4 {
        r.send(i, i as u32 * 1024, 1024);
    }
    r.sound.handle(&mut r.hda);
    assert!(r.answers().is_empty(), "nothing played yet");
    let next = |r: &mut Rig| {
        for _ in 0..64 {
            r.run(PERIOD / 4);
            let a: Vec<u32> = r.answers().iter().map(|a| a.cookie).collect();
            if !a.is_empty() {
                let audio = r.played().chunks_exact(4).filter(|f| *f != [0; 4]).count();
                return (a, audio);
            }
        }
        panic!("no answer");
    };
    let (a, audio) = next(&mut r);
    assert_eq!(a, [0, 0], "the first held buffer and its replay come first, together");
    assert!(audio < 2 * 1024, "answered as the first buffer has played ({audio} frames)");
    r.send(4, 4096, 1024);
    r.sound.handle(&mut r.hda);
    let mut all = a;
    while all.len() < 9 {
        all.extend(next(&mut r).0);
    }
    assert_eq!(all, [0, 0, 1024, 1024, 2048, 2048, 3072, 3072, 4096]);
    assert_counter(&r.played(), 5 * 1024);
    // No silence between the replays and the buffer sent on the first
    // answer: it played in time.
    let p = r.played();
    let frames: Vec<&[u8]> = p.chunks_exact(4).skip_while(|f| *f == [0; 4]).collect();
    assert!(frames[..5 * 1024].iter().all(|f| *f != [0; 4]), "no gap before buffer 4");
}

/// STOP is answered once the buffers sent before it have played, not after
/// the drain's silence (Linux's drain times out waiting for that answer,
/// docs/sound.md); a command sent meanwhile waits for the DMA engine to stop.
#[test]
fn stop_is_answered_once_its_buffers_played_and_commands_wait_for_the_drain() {
    let mut r = rig();
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 2, 0)), Some(SoundStatus::Ok));
    r.send(0, 0, 1024);
    r.send(1, 1024, 1024);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Stop, 3, 0)), None, "not played yet");
    let mut stop = None;
    let mut answers = Vec::new();
    for _ in 0..100 {
        stop = r.run(PERIOD / 4);
        answers.extend(r.answers());
        if stop.is_some() {
            break;
        }
    }
    assert_eq!(stop, Some(SoundStatus::Ok));
    assert_eq!(answers.len(), 2, "both buffers answered before the STOP");
    assert_counter(&r.played(), 2048);
    assert!(r.hda.running(), "the drain's silence plays on");
    // RELEASE waits for the end of the drain.
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 4, 0)), None);
    let mut release = None;
    for _ in 0..1000 {
        release = release.or(r.run(PERIOD));
        if !r.hda.running() {
            break;
        }
        assert_eq!(release, None, "RELEASE answered while the DMA runs");
    }
    r.sound.handle(&mut r.hda);
    let release = release.or_else(|| r.client.cmd_res.dequeue().and_then(|c| c.status()));
    assert_eq!(release, Some(SoundStatus::Ok));
    let tail = r.played().len() - r.played().iter().rposition(|&b| b != 0).unwrap();
    assert!(tail >= 2048 * 4, "at least 2048 frames of silence before the stop ({tail} bytes)");
}

/// What a VMM's virtio-snd device does when its guest resets mid-playback
/// (docs/sound.md, Reset): STOP with buffers still queued, then RELEASE;
/// the rebooted guest then takes the stream again and plays a new session,
/// replays and all, from its start.
#[test]
fn a_stream_stopped_and_released_mid_playback_serves_a_new_session() {
    let mut r = rig();
    let ok = Some(SoundStatus::Ok);
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    for i in 0..4 {
        r.send(i, i as u32 * 1024, 1024); // held until START
    }
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 2, 0)), ok);
    for i in 0..8 {
        r.send(i, i as u32 * 1024, 1024); // the replays, then 4 more
    }
    r.sound.handle(&mut r.hda);
    r.run(2 * PERIOD);
    let mut answers = r.answers();
    assert!(answers.len() < 12, "still playing when the guest resets");
    r.client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Stop, 3, 0)).unwrap();
    r.sound.handle(&mut r.hda);
    let mut stop = r.client.cmd_res.dequeue().and_then(|c| c.status());
    for _ in 0..1000 {
        answers.extend(r.answers());
        if stop.is_some() {
            break;
        }
        stop = r.run(PERIOD / 4);
    }
    assert_eq!(stop, ok);
    assert_eq!(answers.len(), 12, "the buffers sent before the STOP played");
    assert!(answers.iter().all(|a| a.status() == ok));
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 4, 0)), None, "waits for the drain");
    let mut release = None;
    for _ in 0..1000 {
        release = release.or(r.run(PERIOD));
        if !r.hda.running() {
            break;
        }
    }
    assert_eq!(release, ok);
    // The rebooted guest's session.
    assert_eq!(r.cmd(SoundCmd::take(5, 0, params())), ok);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 6, 0)), ok);
    let b = session(&mut r, 8 * 1024, 8 * 1024, 4, true);
    assert_eq!(b.len(), 4 + 8);
    assert!(b.iter().all(|a| a.status() == ok));
    assert_counter(&r.played(), 16 * 1024);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 9, 0)), ok);
}

#[test]
fn start_stop_start_loses_nothing() {
    let mut r = rig();
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    let a = session(&mut r, 0, 24_000, 4, true);
    // Buffers sent after a STOP play at the next START (no replay).
    let b = session(&mut r, 24_000, 24_000, 4, false);
    assert_eq!((a.len(), b.len()), (4 + 24, 24));
    assert_counter(&r.played(), 48_000);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 9, 0)), Some(SoundStatus::Ok));
}

/// A client whose buffers do not divide the card's period (here 250
/// frames against 256; Linux with `-p 1000` against the example's 1024)
/// and that keeps a few more than the card's buffer in flight, sending the
/// next as each is answered: the driver fills a period only once it has a
/// whole period of audio, or when the DMA engine is about to need it, so no
/// silence is played between its buffers.
#[test]
fn buffers_that_do_not_divide_the_period_play_without_gaps() {
    let mut r = rig();
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Start, 2, 0)), Some(SoundStatus::Ok));
    let (per, buffers, in_flight) = (250, 200, 6);
    let mut sent = 0;
    let mut answered = 0;
    while answered < buffers {
        while sent < buffers && sent - answered < in_flight {
            r.send(u64::from(sent) % CELLS, sent * per, per);
            sent += 1;
            if sent == buffers {
                // As Linux's drain does: the periods after the last are silence, not underruns.
                r.client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Stop, 3, 0)).unwrap();
            }
        }
        r.sound.handle(&mut r.hda);
        r.run(64);
        let a = r.answers();
        assert!(a.iter().all(|a| a.status() == Some(SoundStatus::Ok)));
        answered += a.len() as u32;
    }
    let played = r.played();
    let first = played.iter().position(|&b| b != 0).unwrap() / 4;
    let audio = &played[first * 4..(first + (buffers * per) as usize) * 4];
    for (n, f) in audio.chunks_exact(4).enumerate() {
        assert_eq!(f, CounterSource::frame(n as u32), "frame {n} (a gap or a loss)");
    }
    assert_eq!(r.hda.stats().underruns, 0);
}

#[test]
fn late_buffers_underrun_on_silence_and_release_fails_held_ones() {
    let mut r = rig();
    r.cmd(SoundCmd::take(1, 0, params()));
    r.cmd(SoundCmd::new(SoundCmdCode::Prepare, 1, 0));
    r.cmd(SoundCmd::new(SoundCmdCode::Start, 2, 0));
    r.send(0, 0, 256);
    r.sound.handle(&mut r.hda);
    r.run(8 * PERIOD);
    assert!(r.hda.stats().underruns >= 3, "periods without a buffer play silence");
    assert_eq!(r.answers().len(), 1);
    let ok = Some(SoundStatus::Ok);
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Stop, 3, 0)), ok, "its buffer had played");
    assert!(r.hda.running(), "the drain's silence plays on");
    assert_eq!(r.run(16 * PERIOD), None);
    assert!(!r.hda.running());
    r.send(1, 256, 256); // while stopped: waits for the next START
    r.sound.handle(&mut r.hda);
    r.run(8 * PERIOD);
    assert!(r.answers().is_empty() && !r.hda.running(), "not played while stopped");
    assert_eq!(r.cmd(SoundCmd::new(SoundCmdCode::Release, 4, 0)), Some(SoundStatus::Ok));
    let a = r.answers();
    assert_eq!((a.len(), a[0].status()), (1, Some(SoundStatus::IoErr)));
    assert_counter(&r.played(), 256);
}

/// Client → virtualiser → driver → controller model, as the `sound`
/// example wires them.
#[test]
fn a_client_plays_through_the_virtualiser() {
    let mut r = rig();
    let (virt_drv, drv_for_test) = connection();
    // Re-plumb: the rig's client ends become the virtualiser's driver ends.
    let driver_ends = core::mem::replace(&mut r.client, drv_for_test);
    let _ = virt_drv;
    let (client, virt_client) = connection();
    let (client_state, virt_state) = state();
    let (drv_state_w, drv_state_r) = state();
    drv_state_w.write(&r.state.read().unwrap()).unwrap();
    drv_state_w.set_ready(true);
    let mut v: SoundVirt<1, 512> = SoundVirt::new(
        virt::Driver { queues: driver_ends, state: drv_state_r, channel: 0 },
        [Some(virt::Client {
            queues: virt_client,
            state: virt_state,
            data_io: DATA_IO,
            data_size: CELLS * 4096,
            channel: 1,
        })],
    );
    v.handle();
    assert!(client_state.read().is_some());
    r.client = client;
    // The rig's helpers now talk to the virtualiser: offsets, not addresses.
    let step = |r: &mut Rig, v: &mut SoundVirt<1, 512>| {
        for _ in 0..3 {
            v.handle();
            r.sound.handle(&mut r.hda);
        }
        v.handle();
    };
    r.client.cmd_req.enqueue(SoundCmd::take(1, 0, params())).unwrap();
    r.client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Prepare, 2, 0)).unwrap();
    step(&mut r, &mut v);
    let res: Vec<_> =
        core::iter::from_fn(|| r.client.cmd_res.dequeue()).map(|c| c.status()).collect();
    assert_eq!(res, [Some(SoundStatus::Ok); 2]);
    r.client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Start, 3, 0)).unwrap();
    step(&mut r, &mut v);
    for i in 0..12u32 {
        let bytes: Vec<u8> = (i * 1024..(i + 1) * 1024).flat_map(CounterSource::frame).collect();
        r.data.write(i as usize * 4096, &bytes).unwrap();
        r.client.pcm_req.enqueue(SoundPcm::new(i, 0, u64::from(i) * 4096, 4096)).unwrap();
    }
    r.client.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Stop, 4, 0)).unwrap();
    let mut done = Vec::new();
    for _ in 0..200 {
        step(&mut r, &mut v);
        r.model.0.borrow_mut().play(PERIOD);
        if r.model.0.borrow().irq_line() {
            r.sound.irq(&mut r.hda);
        }
        done.extend(core::iter::from_fn(|| r.client.pcm_res.dequeue()));
    }
    let offsets: Vec<u64> = done.iter().map(|p| p.io_or_offset).collect();
    assert_eq!(offsets, (0..12).map(|i| i * 4096).collect::<Vec<_>>(), "offsets, not addresses");
    let res: Vec<_> = core::iter::from_fn(|| r.client.cmd_res.dequeue())
        .map(|c| (c.cookie, c.status()))
        .collect();
    assert_eq!(res, [(3, Some(SoundStatus::Ok)), (4, Some(SoundStatus::Ok))]);
    assert_counter(&r.played(), 12 * 1024);
}
