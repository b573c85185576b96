//! A sound driver's sDDF side: serves the sDDF 0.7 sound driver queues
//! (from the virtualiser) with an [`Hda`] controller (docs/sound.md "The
//! driver's side").
//!
//! One stream, id 0: playback, 48 kHz, S16_LE, 2 channels, published once
//! in the shared state at [`SddfSound::new`]. Commands (sDDF 0.7 has TAKE,
//! PREPARE, START, STOP and RELEASE) move it through `idle → taken →
//! prepared → running → stopped`; a command the state does not allow, or
//! a stream other than 0, gets `BAD_MSG`, TAKE with other parameters
//! `NOT_SUPP`.
//!
//! PCM buffers (I/O address and length in one of the data regions the
//! driver maps) are accepted from PREPARE on; one outside every region, of
//! 0 or more than 4096 bytes or not whole frames gets `BAD_MSG`, one
//! before PREPARE `IO_ERR`. A buffer that arrives while the stream runs is
//! played: buffers are copied back to back into the card's periods, and
//! each is answered `OK`, with the bytes still in the card's buffer as its
//! latency, once the period holding its last byte has played. A buffer that
//! arrives between PREPARE and the first START is not played (sDDF: the
//! client sends it again after START): after that START the `k`-th such
//! buffer is answered once `k + 1` buffers have played (with its replay,
//! not after every held buffer). One that arrives after a STOP plays from
//! the next START, once. Played buffers are answered in the order of the
//! requests, held ones in theirs, and a request is taken only when its
//! answer will fit.
//!
//! The DMA engine starts with the first buffer after START (so a client
//! that sends its buffers once START is answered does not underrun at the
//! start). STOP lets the buffers sent before it play and is answered once
//! they have; the controller then plays its drain periods of silence (at
//! least 2048 frames: QEMU's codec reads that far ahead,
//! docs/sound-guest.md) and stops the DMA engine. Later commands wait for
//! that. (A STOP answered only after the silence came too late for Linux's
//! drain, docs/sound.md.) A freed period beyond the controller's lead
//! waits for a whole period of audio ([`Hda::top_up`] fills it when the
//! audio arrives), so buffers that do not divide the period play without
//! gaps. A period with no buffer ready by then plays
//! silence ([`Stats::underruns`] of the [`Hda`]). RELEASE answers every
//! buffer still held `IO_ERR`.

use super::hda::regs::HdaRegisters;
use super::hda::{Event, Hda, Stats};
use super::{Fill, PeriodSource, FRAME_BYTES_S16_STEREO};
use sddf_bindings::sound::{
    format, SoundCmd, SoundCmdCode, SoundDirection, SoundPcm, SoundPcmInfo, SoundPcmRate,
    SoundQueues, SoundSharedState, SoundSharedStateHandle, SoundStatus, SOUND_PCM_BUFFER_SIZE,
    SOUND_PCM_QUEUE_CAPACITY,
};
use sddf_bindings::SharedRegion;

/// A region the driver reads PCM data from, and its I/O address.
pub struct DataRegion {
    /// The region, mapped in this PD.
    pub region: SharedRegion,
    /// Its I/O (physical) address, as the virtualiser writes it.
    pub io_addr: u64,
}

/// Buffers held at once (the PCM ring's capacity).
const HELD: usize = SOUND_PCM_QUEUE_CAPACITY as usize;

/// A buffer to play.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pcm: SoundPcm,
    region: usize,
    /// Bytes copied into periods so far.
    copied: u32,
    /// The period (counted from START) holding its last byte, once all
    /// are copied.
    last: Option<u64>,
    /// Counted in `buffers_played`.
    counted: bool,
    /// Sent after a STOP: plays from the next START.
    wait: bool,
}

/// A buffer sent between PREPARE and the first START: not played (the
/// client sends it again after START), answered as the `rank`th buffer
/// after START plays (`None` until a START).
#[derive(Clone, Copy, Debug)]
struct Held {
    pcm: SoundPcm,
    rank: Option<u32>,
}

/// A FIFO of at most [`HELD`] items.
struct Fifo<T> {
    items: [Option<T>; HELD],
    head: usize,
    len: usize,
}

impl<T: Copy> Fifo<T> {
    const fn new() -> Self {
        Fifo { items: [None; HELD], head: 0, len: 0 }
    }

    fn at(&self, i: usize) -> Option<&T> {
        self.items[(self.head + i) % HELD].as_ref()
    }

    fn at_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items[(self.head + i) % HELD].as_mut()
    }

    fn push(&mut self, e: T) {
        self.items[(self.head + self.len) % HELD] = Some(e);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let e = self.items[self.head].take();
        self.head = (self.head + 1) % HELD;
        self.len -= 1;
        e
    }
}

/// The buffers in order of arrival, and the periods of the current run.
struct Queue<const D: usize> {
    data: [DataRegion; D],
    /// Buffers to play, in order of arrival.
    play: Fifo<Entry>,
    /// Buffers held (sent before the first START), in order of arrival.
    /// Kept apart from `play` so that their answers do not hold back the
    /// answers of the buffers played meanwhile (their replays among them).
    held: Fifo<Held>,
    /// Periods filled and played since START.
    filled: u64,
    played: u64,
    /// Buffers played since START.
    buffers_played: u32,
    /// STOP asked: play what is queued, then end.
    stopping: bool,
}

impl<const D: usize> Queue<D> {
    /// Buffers taken and not yet answered.
    fn len(&self) -> usize {
        self.play.len + self.held.len
    }

    /// The index of the region holding `io..io + len`.
    fn region_of(&self, io: u64, len: u32) -> Option<usize> {
        self.data.iter().position(|d| {
            io.checked_sub(d.io_addr)
                .and_then(|off| off.checked_add(u64::from(len)))
                .is_some_and(|end| end <= d.region.len() as u64)
        })
    }

    /// Whether a buffer is waiting to be copied into a period.
    fn has_audio(&self) -> bool {
        (0..self.play.len)
            .any(|i| matches!(self.play.at(i), Some(Entry { last: None, wait: false, .. })))
    }

    /// Whether a buffer of the run is still to play or be answered.
    fn has_pending(&self) -> bool {
        (0..self.play.len).any(|i| self.play.at(i).is_some_and(|e| !e.wait))
    }

    /// A new run: held buffers ranked, period counts back to zero.
    fn start(&mut self) {
        for i in 0..self.play.len {
            if let Some(e) = self.play.at_mut(i) {
                e.wait = false;
            }
        }
        for i in 0..self.held.len {
            if let Some(h) = self.held.at_mut(i) {
                h.rank = Some(i as u32);
            }
        }
        (self.filled, self.played, self.buffers_played, self.stopping) = (0, 0, 0, false);
    }

    fn latency(&self, period_bytes: u32) -> u32 {
        let latency = self.filled.saturating_sub(self.played) * u64::from(period_bytes);
        latency.min(u64::from(u32::MAX)) as u32
    }

    /// The first held buffer's answer, if it is due.
    fn held_due(&self, period_bytes: u32) -> Option<SoundPcm> {
        let h = self.held.at(0)?;
        let due = h.rank.is_some_and(|r| r < self.buffers_played);
        due.then(|| h.pcm.respond(SoundStatus::Ok, self.latency(period_bytes)))
    }

    /// The first buffer to play's answer, if it has played.
    fn play_due(&self, period_bytes: u32) -> Option<SoundPcm> {
        let e = self.play.at(0)?;
        let due = e.last.is_some_and(|p| p < self.played);
        due.then(|| e.pcm.respond(SoundStatus::Ok, self.latency(period_bytes)))
    }
}

impl<const D: usize> PeriodSource for Queue<D> {
    fn fill(&mut self, period: &mut [u8]) -> Fill {
        let mut at = 0;
        for i in 0..self.play.len {
            let filled = self.filled;
            let Some(e) = self.play.at_mut(i) else { continue };
            let (None, false) = (e.last, e.wait) else { continue };
            let copied = e.copied;
            let n = (e.pcm.len - copied).min((period.len() - at) as u32);
            let d = &self.data[e.region];
            let from = (e.pcm.io_or_offset - d.io_addr) as usize + copied as usize;
            if d.region.read(from, &mut period[at..at + n as usize]).is_err() {
                log::error!(target: "snd", "buffer outside its data region");
                period[at..at + n as usize].fill(0); // not what the last period held
            }
            at += n as usize;
            e.copied = copied + n;
            e.last = (e.copied == e.pcm.len).then_some(filled);
            if at == period.len() {
                break;
            }
        }
        period[at..].fill(0);
        self.filled += 1;
        match (at, self.stopping) {
            (0, true) => Fill::End,
            (0, false) => Fill::Silence,
            _ => Fill::Audio,
        }
    }

    fn ready(&self, bytes: usize) -> bool {
        let mut queued = 0usize;
        for i in 0..self.play.len {
            if let Some(Entry { pcm, copied, last: None, wait: false, .. }) = self.play.at(i) {
                queued += (pcm.len - copied) as usize;
            }
        }
        self.stopping || queued >= bytes
    }

    fn played(&mut self, count: u32) {
        self.played += u64::from(count);
        for i in 0..self.play.len {
            let played = self.played;
            if let Some(e) = self.play.at_mut(i) {
                if let (Some(p), false) = (e.last, e.counted) {
                    if p < played {
                        e.counted = true;
                        self.buffers_played += 1;
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Taken,
    Prepared,
    Running,
    Stopped,
}

/// What the driver side has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SddfStats {
    /// Commands and buffers refused.
    pub refused: u64,
    /// Buffers answered `OK` (played, or held and paired).
    pub answered: u64,
    /// STOPs carried out after the stream had played (drained: the DMA
    /// engine stopped; answered when their buffers had played).
    pub stops: u64,
}

/// The one stream the driver offers.
pub fn stream_info() -> SoundPcmInfo {
    SoundPcmInfo {
        formats: 1 << format::S16,
        rates: 1 << SoundPcmRate::Hz48000 as u8,
        direction: SoundDirection::Output as u8,
        channels_min: 2,
        channels_max: 2,
        pad0: [0; 5],
    }
}

/// An [`Hda`] driver's sDDF sound queues, with `D` data regions.
pub struct SddfSound<const D: usize> {
    queues: SoundQueues,
    queue: Queue<D>,
    state: State,
    /// The DMA engine runs.
    dma: bool,
    /// The STOP being carried out: the command, and whether it has been
    /// answered (the buffers sent before it have played).
    stop: Option<(SoundCmd, bool)>,
    period_bytes: u32,
    stats: SddfStats,
    /// The controller's counts when the DMA engine last stopped.
    last_run: Option<Stats>,
}

impl<const D: usize> SddfSound<D> {
    /// Serves `queues` (the driver's ends), reading PCM data from `data`
    /// regions; publishes the stream in `shared` and sets it ready.
    /// `period_bytes` is the controller's period (for the latency).
    pub fn new(
        queues: SoundQueues,
        shared: &SoundSharedStateHandle,
        data: [DataRegion; D],
        period_bytes: u32,
    ) -> Self {
        let mut state = SoundSharedState { streams: 1, ..SoundSharedState::default() };
        state.stream_info[0] = stream_info();
        if shared.write(&state).is_ok() {
            shared.set_ready(true);
        }
        SddfSound {
            queues,
            queue: Queue {
                data,
                play: Fifo::new(),
                held: Fifo::new(),
                filled: 0,
                played: 0,
                buffers_played: 0,
                stopping: false,
            },
            state: State::Idle,
            dma: false,
            stop: None,
            period_bytes,
            stats: SddfStats::default(),
            last_run: None,
        }
    }

    /// What has been counted.
    pub fn stats(&self) -> SddfStats {
        self.stats
    }

    /// The controller's counts ([`Hda::stats`]) when its DMA engine last
    /// stopped (a START waiting for the drain may already have begun the
    /// next run).
    pub fn last_run(&self) -> Option<Stats> {
        self.last_run
    }

    /// Handles the queues (on the virtualiser's notification); true if the
    /// virtualiser should be notified.
    pub fn handle<R: HdaRegisters>(&mut self, hda: &mut Hda<R>) -> bool {
        let mut progress = self.answer();
        progress |= self.commands(hda);
        self.start_dma(hda);
        if self.dma {
            hda.top_up(&mut self.queue);
        }
        progress | self.answer()
    }

    /// Handles the controller's interrupt; true if the virtualiser should
    /// be notified. Acknowledge the interrupt after.
    pub fn irq<R: HdaRegisters>(&mut self, hda: &mut Hda<R>) -> bool {
        let event = hda.handle_irq(&mut self.queue);
        let mut progress = false;
        match event {
            Event::Finished | Event::Failed(_) => {
                if let Event::Failed(e) = event {
                    log::error!(target: "snd", "stream failed: {e}");
                }
                self.dma = false;
                // Before a command waiting for the drain starts the next run.
                self.last_run = Some(hda.stats());
                if let Some((stop, answered)) = self.stop.take() {
                    let status =
                        if event == Event::Finished { SoundStatus::Ok } else { SoundStatus::IoErr };
                    self.stats.stops += 1;
                    if !answered {
                        let _ = self.queues.cmd_res.enqueue(stop.respond(status));
                    }
                    progress = true;
                }
                self.state = State::Stopped;
            }
            Event::Playing | Event::Idle => {}
        }
        progress | self.handle(hda)
    }

    /// Starts the DMA engine if the stream runs and a buffer is ready.
    fn start_dma<R: HdaRegisters>(&mut self, hda: &mut Hda<R>) {
        if self.state != State::Running
            || self.dma
            || self.stop.is_some()
            || !self.queue.has_audio()
        {
            return;
        }
        match hda.start(&mut self.queue) {
            Ok(()) => self.dma = true,
            Err(e) => {
                log::error!(target: "snd", "start: {e}");
                self.state = State::Stopped;
            }
        }
    }

    /// Enqueues the answers that are due: held buffers in their order,
    /// played ones in theirs (the `k`-th held buffer and its replay are
    /// both due once `k + 1` buffers have played).
    fn answer(&mut self) -> bool {
        let mut any = false;
        loop {
            if let Some(res) = self.queue.held_due(self.period_bytes) {
                if self.queues.pcm_res.enqueue(res).is_err() {
                    break;
                }
                self.queue.held.pop();
            } else if let Some(res) = self.queue.play_due(self.period_bytes) {
                if self.queues.pcm_res.enqueue(res).is_err() {
                    break;
                }
                self.queue.play.pop();
            } else {
                break;
            }
            self.stats.answered += 1;
            any = true;
        }
        any | self.answer_stop()
    }

    /// Answers a STOP `OK` once the buffers sent before it have played;
    /// the drain's silence goes on, and commands wait for its end.
    fn answer_stop(&mut self) -> bool {
        let Some((stop, answered @ false)) = &mut self.stop else { return false };
        if self.queue.has_pending() {
            return false;
        }
        *answered = self.queues.cmd_res.enqueue(stop.respond(SoundStatus::Ok)).is_ok();
        *answered
    }

    /// Takes every visible buffer whose answer will fit.
    fn take_buffers(&mut self) -> bool {
        let mut any = false;
        while let Some(pcm) = self.queues.pcm_req.peek() {
            let taken = self.queue.len();
            if taken + 1 > self.queues.pcm_res.free() as usize || taken == HELD {
                break;
            }
            self.queues.pcm_req.skip();
            any = true;
            match self.check_pcm(&pcm) {
                Ok(_) if self.state == State::Prepared => {
                    self.queue.held.push(Held { pcm, rank: None });
                }
                Ok(region) => {
                    let wait = !(self.state == State::Running && self.stop.is_none());
                    let e = Entry { pcm, region, copied: 0, last: None, counted: false, wait };
                    self.queue.play.push(e);
                }
                Err(status) => {
                    self.refused();
                    let _ = self.queues.pcm_res.enqueue(pcm.respond(status, 0));
                }
            }
        }
        any
    }

    /// Runs the commands, each once the buffers sent before it are taken;
    /// none while a STOP drains.
    fn commands<R: HdaRegisters>(&mut self, hda: &mut Hda<R>) -> bool {
        let mut any = false;
        while self.stop.is_none() {
            any |= self.take_buffers();
            self.start_dma(hda);
            let Some(cmd) = self.queues.cmd_req.peek() else { break };
            if self.queues.cmd_res.is_full() || !self.queues.pcm_req.is_empty() {
                break;
            }
            self.queues.cmd_req.skip();
            any = true;
            if let Some(status) = self.command(cmd) {
                let _ = self.queues.cmd_res.enqueue(cmd.respond(status));
            }
        }
        any
    }

    /// Carries out a command; its status, or `None` if it is answered later.
    fn command(&mut self, cmd: SoundCmd) -> Option<SoundStatus> {
        use SoundCmdCode::*;
        use State::*;
        let Some(code) = cmd.code() else {
            self.refused();
            return Some(SoundStatus::BadMsg);
        };
        if cmd.stream_id != 0 {
            self.refused();
            return Some(SoundStatus::BadMsg);
        }
        let p = cmd.set_params();
        let status = match (code, self.state) {
            (Take, Idle | Taken | Prepared) => {
                let ours = p.channels == 2
                    && p.format == format::S16
                    && p.rate == SoundPcmRate::Hz48000 as u8;
                if !ours {
                    return Some(SoundStatus::NotSupp);
                }
                self.state = Taken;
                SoundStatus::Ok
            }
            (Prepare, Taken | Prepared) => {
                self.state = Prepared;
                SoundStatus::Ok
            }
            (Start, Prepared | Stopped) => {
                self.queue.start();
                self.state = Running;
                SoundStatus::Ok
            }
            (Stop, Running) if self.dma => {
                self.queue.stopping = true;
                self.stop = Some((cmd, false));
                self.answer_stop();
                return None;
            }
            (Stop, Running) => {
                self.state = Stopped;
                SoundStatus::Ok
            }
            (Release, Taken | Prepared | Stopped) => {
                while let Some(h) = self.queue.held.pop() {
                    let _ = self.queues.pcm_res.enqueue(h.pcm.respond(SoundStatus::IoErr, 0));
                }
                while let Some(e) = self.queue.play.pop() {
                    let _ = self.queues.pcm_res.enqueue(e.pcm.respond(SoundStatus::IoErr, 0));
                }
                self.state = Idle;
                SoundStatus::Ok
            }
            _ => {
                self.refused();
                SoundStatus::BadMsg
            }
        };
        Some(status)
    }

    fn refused(&mut self) {
        self.stats.refused += 1;
        if self.stats.refused.is_power_of_two() {
            log::warn!(target: "snd", "request refused ({} times)", self.stats.refused);
        }
    }

    fn check_pcm(&self, pcm: &SoundPcm) -> Result<usize, SoundStatus> {
        let frame = FRAME_BYTES_S16_STEREO as u32;
        if pcm.stream_id != 0
            || pcm.len == 0
            || pcm.len as usize > SOUND_PCM_BUFFER_SIZE
            || pcm.len % frame != 0
        {
            return Err(SoundStatus::BadMsg);
        }
        let region = self.queue.region_of(pcm.io_or_offset, pcm.len).ok_or(SoundStatus::BadMsg)?;
        match self.state {
            State::Idle | State::Taken => Err(SoundStatus::IoErr),
            _ => Ok(region),
        }
    }
}

#[cfg(test)]
mod tests;
