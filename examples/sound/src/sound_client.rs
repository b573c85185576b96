//! `sound_client`: a native sDDF sound client that plays a 1-second test
//! counter through the virtualiser, as a VMM's virtio-snd glue would.
//!
//! It waits for the stream state, takes stream 0 (48 kHz, S16, stereo) and
//! prepares it, then plays the counter in two runs of 24000 frames: each
//! run sends its first 4 buffers, START, and once START is answered the
//! rest of the run's buffers, then STOP. After PREPARE (run 0) the first 4
//! are sent again after START (sDDF's rule for buffers sent between PREPARE
//! and START, as `libvmm::sddf::sound` does); after a STOP (run 1) they are
//! not. A run ends when STOP and all its buffers are answered. Then RELEASE, and `snd: done`. Frame `n` is left = `n as
//! i16`, right = `!n as i16` (`CounterSource`); a buffer is one 4 KiB cell
//! of the data region (1024 frames), cell `i` for buffer `i` of the run.

#![no_std]
#![no_main]

use libvmm::logging::{self, Levels};
use libvmm::microkit::{shared_region, Channel, ChannelSet, Handler, Patched};
use log::{error, info, LevelFilter};
use sddf_bindings::sound::{
    format, SoundCmd, SoundCmdCode, SoundPcm, SoundPcmRate, SoundPcmSetParams, SoundQueues,
    SoundSharedStateHandle, SoundStatus,
};
use sddf_bindings::SharedRegion;
use sddf_components::sound::CounterSource;

libvmm::setvar! {
    static snd_cmd_req; static snd_cmd_req_size; static snd_cmd_res; static snd_cmd_res_size;
    static snd_pcm_req; static snd_pcm_req_size; static snd_pcm_res; static snd_pcm_res_size;
    static snd_state; static snd_state_size; static snd_data; static snd_data_size;
    static snd_ch;
}

/// Frames of the whole counter, and of each run.
const FRAMES: u32 = 48_000;
const RUN: u32 = FRAMES / 2;
/// Frames per buffer (one 4 KiB cell).
const PER_BUFFER: u32 = 1024;
/// Buffers sent before START.
const PREFILL: u32 = 4;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for the stream state.
    State,
    /// TAKE and PREPARE sent.
    Setup,
    /// Run `n`: prefill and START sent, waiting for START's answer.
    Starting(u32),
    /// Run `n`: buffers and STOP sent; waiting for their answers.
    Playing(u32),
    /// RELEASE sent.
    Releasing,
    Done,
}

struct Client {
    q: SoundQueues,
    state: SoundSharedStateHandle,
    data: SharedRegion,
    virt: Channel,
    phase: Phase,
    /// Command answers awaited, buffer answers awaited.
    cmds: u32,
    pcms: u32,
    answered: u32,
    failed: u32,
}

fn params() -> SoundPcmSetParams {
    SoundPcmSetParams { channels: 2, format: format::S16, rate: SoundPcmRate::Hz48000 as u8 }
}

impl Client {
    fn cmd(&mut self, cmd: SoundCmd) {
        if self.q.cmd_req.enqueue(cmd).is_err() {
            error!(target: "snd", "command ring full");
        }
        self.cmds += 1;
    }

    /// Buffers of run `run`, `from..to`: written into their cells and sent.
    fn buffers(&mut self, run: u32, from: u32, to: u32) {
        let first = run * RUN;
        for i in from..to {
            let start = first + i * PER_BUFFER;
            let n = PER_BUFFER.min(first + RUN - start);
            let at = i as usize * 4096;
            for f in 0..n {
                let _ = self.data.write(at + f as usize * 4, &CounterSource::frame(start + f));
            }
            let pcm = SoundPcm::new(start, 0, at as u64, n * 4);
            if self.q.pcm_req.enqueue(pcm).is_err() {
                error!(target: "snd", "PCM ring full");
            }
            self.pcms += 1;
        }
    }

    fn step(&mut self) {
        while let Some(r) = self.q.cmd_res.dequeue() {
            self.cmds -= 1;
            if r.status() != Some(SoundStatus::Ok) {
                error!(target: "snd", "command {} (cookie {}) failed: {:?}", r.code, r.cookie, r.status());
                self.failed += 1;
            }
        }
        while let Some(r) = self.q.pcm_res.dequeue() {
            self.pcms -= 1;
            self.answered += 1;
            if r.status() != Some(SoundStatus::Ok) {
                self.failed += 1;
            }
        }
        let buffers = RUN.div_ceil(PER_BUFFER);
        let idle = self.cmds == 0 && self.pcms == 0;
        self.phase = match self.phase {
            Phase::State if self.state.read().is_some_and(|s| !s.stream_info().is_empty()) => {
                self.cmd(SoundCmd::take(1, 0, params()));
                self.cmd(SoundCmd::new(SoundCmdCode::Prepare, 2, 0));
                Phase::Setup
            }
            Phase::Setup if idle => self.start_run(0),
            Phase::Starting(n) if self.cmds == 0 => {
                let replay = if n == 0 { 0 } else { PREFILL };
                self.buffers(n, replay, buffers);
                self.cmd(SoundCmd::new(SoundCmdCode::Stop, 20 + n, 0));
                Phase::Playing(n)
            }
            Phase::Playing(0) if idle => self.start_run(1),
            Phase::Playing(_) if idle => {
                self.cmd(SoundCmd::new(SoundCmdCode::Release, 30, 0));
                Phase::Releasing
            }
            Phase::Releasing if idle => {
                info!(target: "snd", "done: {FRAMES} frames in 2 runs, {} buffers answered, {} failures",
                    self.answered, self.failed);
                Phase::Done
            }
            p => p,
        };
        self.virt.notify();
    }

    fn start_run(&mut self, n: u32) -> Phase {
        info!(target: "snd", "run {n}: counter {}..{}", n * RUN, (n + 1) * RUN);
        self.buffers(n, 0, PREFILL);
        self.cmd(SoundCmd::new(SoundCmdCode::Start, 10 + n, 0));
        Phase::Starting(n)
    }
}

fn region(what: &str, v: &'static Patched<u64>, n: &'static Patched<u64>) -> Option<SharedRegion> {
    let r = shared_region(v, n);
    if r.is_none() {
        error!(target: "snd", "{what} is not mapped");
    }
    r
}

fn start() -> Option<Client> {
    let q = SoundQueues::from_sddf_names(
        region("cmd_req", &snd_cmd_req, &snd_cmd_req_size)?,
        region("cmd_res", &snd_cmd_res, &snd_cmd_res_size)?,
        region("pcm_req", &snd_pcm_req, &snd_pcm_req_size)?,
        region("pcm_res", &snd_pcm_res, &snd_pcm_res_size)?,
    )
    .map_err(|e| error!(target: "snd", "queues: {e}"))
    .ok()?;
    let state = SoundSharedStateHandle::new(region("state", &snd_state, &snd_state_size)?).ok()?;
    let data = region("data", &snd_data, &snd_data_size)?;
    let virt = Channel::new(snd_ch.get() as u8)?;
    Some(Client {
        q,
        state,
        data,
        virt,
        phase: Phase::State,
        cmds: 0,
        pcms: 0,
        answered: 0,
        failed: 0,
    })
}

struct Pd(Option<Client>);

impl Handler for Pd {
    fn init() -> Self {
        logging::init(&LEVELS);
        let mut c = start();
        if let Some(c) = c.as_mut() {
            c.step();
        }
        Pd(c)
    }

    fn notified(&mut self, _channels: ChannelSet) {
        if let Some(c) = self.0.as_mut() {
            c.step();
        }
    }
}

libvmm::protection_domain!(Pd);
