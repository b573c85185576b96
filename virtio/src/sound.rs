//! virtio-snd (device id 25, virtio 1.2 §5.14) over a split-phase sound backend.
//!
//! Queues: controlq 0, eventq 1, txq 2, rxq 3. No feature bit is offered
//! (VIRTIO_SND_F_CTLS is not needed); there are no jacks and no channel maps, and the event
//! queue is never used: the completion of a period-sized tx or rx message is the guest's
//! "period elapsed" (§5.14.6.8), and no stream offers VIRTIO_SND_PCM_F_EVT_XRUNS.
//!
//! - Control requests ([`control`]) are read once and answered in order, one at a time: the
//!   item queries (jacks, streams, channel maps) at once, JACK_REMAP with NOT_SUPP, the PCM
//!   commands once the backend has answered them. Each PCM command is checked against the
//!   stream's lifecycle (§5.14.6.6.1): out of order, or for a stream that does not exist, it
//!   is BAD_MSG; parameters the stream does not offer are NOT_SUPP.
//! - A tx (rx) message ([`pcm`]) is accepted from PREPARE (pre-buffering) until RELEASE, at
//!   most a period long. It is cut into pieces of at most one backend buffer, handed to the
//!   backend in order, and completed, with the backend's latency, only when the backend has
//!   answered all of its pieces and every earlier message of the stream: the guest's period
//!   clock is the real card's. Malformed messages are answered BAD_MSG at once, messages for
//!   a stream that takes no I/O IO_ERR.
//! - RELEASE fails the messages the stream still holds (IO_ERR) before it is answered
//!   (§5.14.6.6.5). A device reset forgets every message (pieces with the backend are
//!   drained, their buffers freed) and brings each stream back to its start with STOP and
//!   RELEASE commands to the backend, before any new command of the guest runs.

pub mod backend;
pub mod control;
mod pcm;

pub use backend::{
    BackendBusy, BackendStatus, BufferId, BufferRange, Completion, Direction, PcmCommand, PcmDone,
    PcmParams, SoundBackend, StreamInfo, PCM_BUFFER_BYTES,
};
pub use control::StreamState;

use control::{
    check_params, parse, pcm_info, requested_features, sanitize, Items, Malformed, Query, Request,
    HDR_SIZE, MAX_ITEM_SIZE, MAX_REQUEST, PCM_INFO_SIZE, VIRTIO_SND_S_BAD_MSG, VIRTIO_SND_S_IO_ERR,
    VIRTIO_SND_S_NOT_SUPP, VIRTIO_SND_S_OK,
};
use pcm::{Piece, Xfer};

use zerocopy::IntoBytes;

use crate::device::{read_config_bytes, ActivateError, DeviceContext, VirtioDevice};
use crate::layout::VirtioSndConfig;
use crate::memory::GuestMemory;
use crate::queue::{DescriptorChain, Queue};

/// virtio device id of a sound card (virtio 1.2 §5).
pub const SOUND_DEVICE_ID: u32 = 25;
/// controlq: control requests (virtio 1.2 §5.14.2).
pub const CONTROLQ: u16 = 0;
/// eventq: notifications to the driver (not used).
pub const EVENTQ: u16 = 1;
/// txq: playback messages.
pub const TXQ: u16 = 2;
/// rxq: capture messages.
pub const RXQ: u16 = 3;
/// QueueNumMax of every queue.
pub const QUEUE_SIZE: u16 = 64;
/// Most streams offered (sDDF's virtualiser handles stream ids below 16).
pub const MAX_STREAMS: usize = 16;
/// Most pieces with the backend at once (256 KiB of PCM data).
pub const MAX_PIECES: usize = 64;
/// Longest period accepted by SET_PARAMS (a longer one is NOT_SUPP): a message of a period
/// in 4 KiB pages, plus its header and status, stays within a chain's
/// [`MAX_SEGMENTS`](crate::queue::MAX_SEGMENTS).
pub const MAX_PERIOD_BYTES: u32 = 128 << 10;
// An unaligned period touches one page more; the header and status take one segment each.
const _: () = assert!(MAX_PERIOD_BYTES as usize / 4096 + 3 <= crate::queue::MAX_SEGMENTS);

/// One stream: what it offers and where it is.
#[derive(Clone, Copy, Debug)]
struct Stream {
    info: StreamInfo,
    state: StreamState,
    params: Option<PcmParams>,
    /// The device was reset while the stream was not at its start: STOP/RELEASE it in the
    /// backend before the guest may use it again.
    teardown: bool,
}

impl Stream {
    const NONE: Stream = Stream {
        info: StreamInfo {
            direction: Direction::Output,
            formats: 0,
            rates: 0,
            channels_min: 1,
            channels_max: 1,
        },
        state: StreamState::Idle,
        params: None,
        teardown: false,
    };

    /// The state the guest sees: a stream being torn down is at its start.
    fn guest_state(&self) -> StreamState {
        if self.teardown {
            StreamState::Idle
        } else {
            self.state
        }
    }
}

/// The command with the backend (or waiting for it to take one).
#[derive(Clone, Debug)]
struct Control {
    /// The guest's request; `None` after a reset or for a teardown step.
    chain: Option<DescriptorChain>,
    stream: usize,
    /// What the guest asked: the transition once every step succeeded.
    command: PcmCommand,
    /// Backend commands to run: the command, or SET_PARAMS then PREPARE after a release.
    steps: [Option<PcmCommand>; 2],
    step: usize,
    /// The current step is with the backend.
    sent: bool,
    /// A teardown step after a reset: its transition holds whatever the backend says.
    teardown: bool,
}

/// A virtio sound card over a [`SoundBackend`], with at most `N` tx and rx messages held.
///
/// Each held message keeps its parsed chain (about 1.1 KiB), so the device is about
/// `N × 1.1 KiB` (39 KiB for the default `N = 32`, enough for Linux's 16 periods of one
/// playback and one capture stream). On a small protection-domain stack, build it where it
/// will live (a static).
pub struct SoundDevice<B: SoundBackend, const N: usize = 32> {
    backend: B,
    streams: [Stream; MAX_STREAMS],
    /// Streams offered since the last activation.
    stream_count: usize,
    xfers: [Option<Xfer>; N],
    pieces: [Option<Piece>; MAX_PIECES],
    piece_gen: u16,
    next_seq: u64,
    next_gen: u16,
    control: Option<Control>,
    active: bool,
    /// Something was handed to the backend since its last notification.
    notify: bool,
}

impl<B: SoundBackend, const N: usize> SoundDevice<B, N> {
    /// A sound card over `backend`.
    pub fn new(backend: B) -> SoundDevice<B, N> {
        const { assert!(N > 0 && N < 1 << 16, "SoundDevice: N must be in 1..65536") };
        SoundDevice {
            backend,
            streams: [Stream::NONE; MAX_STREAMS],
            stream_count: 0,
            xfers: [const { None }; N],
            pieces: [None; MAX_PIECES],
            piece_gen: 0,
            next_seq: 0,
            next_gen: 0,
            control: None,
            active: false,
            notify: false,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Messages held (waiting for the backend, or drained after a reset).
    pub fn in_flight(&self) -> usize {
        self.xfers.iter().flatten().count()
    }

    /// Pieces with the backend.
    pub fn pieces_out(&self) -> usize {
        self.pieces.iter().flatten().count()
    }

    /// Whether a command is with the backend or waiting for it.
    pub fn command_pending(&self) -> bool {
        self.control.is_some()
    }

    /// Stream `stream`'s state as the guest sees it (`None` past the streams offered).
    pub fn stream_state(&self, stream: u32) -> Option<StreamState> {
        let i = usize::try_from(stream).ok().filter(|&i| i < self.stream_count)?;
        self.streams.get(i).map(Stream::guest_state)
    }

    /// Streams in the configuration space: those of the last activation, or the backend's
    /// now before the first.
    fn offered(&self) -> usize {
        if self.active {
            self.stream_count
        } else {
            self.backend.streams().len().min(MAX_STREAMS)
        }
    }

    /// Drains the backend, runs control requests, takes messages and hands their data to
    /// the backend until nothing moves (bounded).
    fn run<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        for _ in 0..8 {
            let mut progress = self.drain(ctx);
            progress |= self.step_control(ctx);
            if self.active {
                progress |= self.accept(ctx, TXQ);
                progress |= self.accept(ctx, RXQ);
                progress |= self.submit_pieces(ctx);
            }
            progress |= self.answer_ready(ctx);
            if !progress {
                break;
            }
        }
        if core::mem::take(&mut self.notify) {
            self.backend.notify();
        }
    }

    /// Handles backend completions. Returns whether there were any.
    fn drain<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) -> bool {
        let mut any = false;
        // Bounded: one completion per piece and command is expected.
        for _ in 0..MAX_PIECES + N + 2 {
            let Some(done) = self.backend.complete() else { break };
            any = true;
            match done {
                Completion::Command(status) => self.command_done(ctx, status),
                Completion::Pcm(done) => self.piece_done(ctx, done),
            }
        }
        any
    }

    /// Submits the pending backend command, runs a teardown step, or takes the next control
    /// request. Returns whether anything moved.
    fn step_control<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) -> bool {
        if let Some(c) = &mut self.control {
            let Some(cmd) = c.steps.get(c.step).copied().flatten() else {
                self.control = None;
                return true;
            };
            if c.sent || self.backend.command(c.stream as u32, cmd).is_err() {
                return false;
            }
            c.sent = true;
            self.notify = true;
            return true;
        }
        if let Some(i) = self.streams.iter().position(|s| s.teardown) {
            self.start_teardown(i);
            return true;
        }
        self.active && self.take_control(ctx)
    }

    /// The next teardown command for stream `i`, or the stream is at its start.
    fn start_teardown(&mut self, i: usize) {
        let Some(s) = self.streams.get_mut(i) else { return };
        let command = match s.state {
            StreamState::Running => PcmCommand::Stop,
            StreamState::Idle | StreamState::Released => {
                *s = Stream { state: StreamState::Idle, params: None, teardown: false, ..*s };
                return;
            }
            _ => PcmCommand::Release,
        };
        self.control = Some(Control {
            chain: None,
            stream: i,
            command,
            steps: [Some(command), None],
            step: 0,
            sent: false,
            teardown: true,
        });
    }

    /// The backend answered the command it was given.
    fn command_done<M: GuestMemory + ?Sized>(
        &mut self,
        ctx: &mut DeviceContext<'_, M>,
        status: BackendStatus,
    ) {
        let Some(mut c) = self.control.take_if(|c| c.sent) else {
            log::warn!(target: "virtio", "snd: backend answered a command it was not given");
            return;
        };
        let Some(stream) = self.streams.get_mut(c.stream) else { return };
        if c.teardown {
            // Whatever the answer: a teardown must end.
            stream.state = match c.command {
                PcmCommand::Stop => StreamState::Stopped,
                _ => StreamState::Idle,
            };
            return;
        }
        let more = c.steps.get(c.step + 1).copied().flatten().is_some();
        let ok = status == BackendStatus::Ok;
        if ok && more && c.chain.is_some() {
            c.step += 1;
            c.sent = false;
            self.control = Some(c);
            return;
        }
        if ok && !more {
            stream.state = stream.state.after(&c.command).unwrap_or(stream.state);
            if let PcmCommand::SetParams(p) = c.command {
                stream.params = Some(p);
            }
        } else if ok || c.step > 0 {
            // SET_PARAMS went through but not the PREPARE after it.
            stream.state = StreamState::ParamsSet;
        }
        let Some(chain) = c.chain else {
            // Orphaned by a reset: the backend moved, so bring it back to the start.
            stream.teardown = stream.state != StreamState::Idle;
            return;
        };
        if !stream.state.takes_io() {
            // RELEASE, or SET_PARAMS after PREPARE: the stream's messages end here.
            self.fail_held(ctx, c.stream);
        }
        let status = if ok && !more { VIRTIO_SND_S_OK } else { virtio_status(status) };
        if let Some((q, mem)) = ctx.queue(CONTROLQ) {
            respond(q, mem, &chain, status);
        }
    }

    /// Pops one control request and answers it or hands it to the backend. Returns whether
    /// one was popped.
    fn take_control<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) -> bool {
        let Some((q, mem)) = ctx.queue(CONTROLQ) else { return false };
        let Some(chain) = q.pop(mem) else { return false };
        if chain.writable_len() < HDR_SIZE as u64 {
            guest_warn!("snd: control request {} has no room for a response", chain.head());
            q.add_used(mem, chain.head(), 0);
            return true;
        }
        let mut req = [0u8; MAX_REQUEST];
        // At most MAX_REQUEST.
        let len = chain.readable_len().min(MAX_REQUEST as u64) as usize;
        let bytes = match chain.read_at(&*mem, 0, &mut req[..len]) {
            Ok(n) => &req[..n],
            Err(_) => &[][..],
        };
        let status = match parse(bytes) {
            Err(Malformed) => Err("short control request"),
            Ok(Request::Query(query)) => return self.query(q, mem, &chain, query),
            Ok(Request::JackRemap) => Ok(VIRTIO_SND_S_NOT_SUPP),
            Ok(Request::Unsupported(code)) => {
                guest_warn!("snd: control request {:#x} not supported", code);
                Ok(VIRTIO_SND_S_NOT_SUPP)
            }
            Ok(Request::Pcm { stream, command }) => {
                match self.check_command(stream, command, requested_features(bytes)) {
                    Ok(steps) => {
                        self.control = Some(Control {
                            chain: Some(chain),
                            stream: stream as usize,
                            command,
                            steps,
                            step: 0,
                            sent: false,
                            teardown: false,
                        });
                        return true;
                    }
                    Err(status) => Ok(status),
                }
            }
        };
        let status = status.unwrap_or_else(|why| {
            guest_warn!("snd: bad control request {}: {}", chain.head(), why);
            VIRTIO_SND_S_BAD_MSG
        });
        respond(q, mem, &chain, status);
        true
    }

    /// Checks a PCM command against its stream; returns the backend commands to run or the
    /// status to answer.
    fn check_command(
        &self,
        stream: u32,
        command: PcmCommand,
        features: u32,
    ) -> Result<[Option<PcmCommand>; 2], u32> {
        let Some(s) = self.stream(stream) else {
            guest_warn!("snd: {:?} for stream {} that does not exist", command, stream);
            return Err(VIRTIO_SND_S_BAD_MSG);
        };
        let state = s.guest_state();
        if state.after(&command).is_none() {
            guest_warn!("snd: {:?} on stream {} in state {:?}", command, stream, state);
            return Err(VIRTIO_SND_S_BAD_MSG);
        }
        if let PcmCommand::SetParams(p) = &command {
            check_params(&s.info, p, features, MAX_PERIOD_BYTES).inspect_err(|_| {
                guest_warn!("snd: parameters {:?} refused for stream {}", p, stream);
            })?;
        }
        match (command, state, s.params) {
            // A release gave the stream up: take it again with the same parameters.
            (PcmCommand::Prepare, StreamState::Released, Some(p)) => {
                Ok([Some(PcmCommand::SetParams(p)), Some(PcmCommand::Prepare)])
            }
            _ => Ok([Some(command), None]),
        }
    }

    /// Stream `stream` if it is offered.
    fn stream(&self, stream: u32) -> Option<&Stream> {
        let i = usize::try_from(stream).ok().filter(|&i| i < self.stream_count)?;
        self.streams.get(i)
    }

    /// Answers an item information request (§5.14.6.1). Returns true (a chain was used).
    fn query<M: GuestMemory + ?Sized>(
        &self,
        q: &mut Queue,
        mem: &mut M,
        chain: &DescriptorChain,
        query: Query,
    ) -> bool {
        let Query { items, start_id, count, size } = query;
        let total = match items {
            Items::Streams => self.stream_count as u64,
            Items::Jacks | Items::Chmaps => 0,
        };
        let need = HDR_SIZE as u64 + u64::from(count) * u64::from(size);
        let why = if u64::from(start_id) + u64::from(count) > total {
            Some("items past the end")
        } else if size == 0 || size > MAX_ITEM_SIZE {
            Some("bad item size")
        } else if chain.writable_len() < need {
            Some("response buffer too small")
        } else {
            None
        };
        if let Some(why) = why {
            guest_warn!("snd: {:?} query {}+{} size {}: {}", items, start_id, count, size, why);
            respond(q, mem, chain, VIRTIO_SND_S_BAD_MSG);
            return true;
        }
        let zeros = [0u8; MAX_ITEM_SIZE as usize];
        // `start_id + count <= total <= MAX_STREAMS` and `size <= MAX_ITEM_SIZE`.
        let size = size as usize;
        for i in 0..count as usize {
            let Some(s) = self.streams.get(start_id as usize + i) else { break };
            let pcm = pcm_info(&s.info);
            let info = pcm.as_bytes();
            let mut item = zeros;
            let n = size.min(PCM_INFO_SIZE);
            item[..n].copy_from_slice(&info[..n]);
            let at = (HDR_SIZE + i * size) as u64;
            if chain.write_at(mem, at, &item[..size]).is_err() {
                log::warn!(target: "virtio", "snd: query response lost");
            }
        }
        if chain.write_at(mem, 0, &VIRTIO_SND_S_OK.to_le_bytes()).is_err() {
            log::warn!(target: "virtio", "snd: query response lost");
        }
        // At most 4 + 16 * 256.
        q.add_used(mem, chain.head(), need as u32);
        true
    }
}

/// Writes a control response header and returns the chain.
fn respond<M: GuestMemory + ?Sized>(
    q: &mut Queue,
    mem: &mut M,
    chain: &DescriptorChain,
    status: u32,
) {
    let len = match chain.write_at(mem, 0, &status.to_le_bytes()) {
        Ok(4) => HDR_SIZE as u32,
        _ => {
            log::warn!(target: "virtio", "snd: control response {} lost", chain.head());
            0
        }
    };
    q.add_used(mem, chain.head(), len);
}

/// The virtio status for a backend status.
fn virtio_status(status: BackendStatus) -> u32 {
    match status {
        BackendStatus::Ok => VIRTIO_SND_S_OK,
        BackendStatus::BadMsg => VIRTIO_SND_S_BAD_MSG,
        BackendStatus::NotSupp => VIRTIO_SND_S_NOT_SUPP,
        BackendStatus::IoErr => VIRTIO_SND_S_IO_ERR,
    }
}

#[cfg(test)]
mod tests;

impl<B: SoundBackend, const N: usize> VirtioDevice for SoundDevice<B, N> {
    fn device_id(&self) -> u32 {
        SOUND_DEVICE_ID
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 4]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // No jacks, no channel maps; at most MAX_STREAMS streams.
        let c = VirtioSndConfig { streams: (self.offered() as u32).into(), ..Default::default() };
        read_config_bytes(c.as_bytes(), offset, data);
    }

    fn activate(&mut self, _features: u64, queues: &[Queue]) -> Result<(), ActivateError> {
        if !queues.get(usize::from(CONTROLQ)).is_some_and(Queue::ready) {
            return Err(ActivateError::QueueNotReady(CONTROLQ));
        }
        let infos = self.backend.streams();
        self.stream_count = infos.len().min(MAX_STREAMS);
        for (s, info) in self.streams.iter_mut().zip(infos) {
            s.info = sanitize(info);
        }
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = false;
        for entry in &mut self.xfers {
            match entry {
                // The backend still owns its buffers: wait for them, then drop the entry.
                Some(x) if x.out > 0 => x.orphan = true,
                _ => *entry = None,
            }
        }
        if let Some(c) = &mut self.control {
            if c.sent {
                c.chain = None;
            } else if !c.teardown {
                self.control = None;
            }
        }
        for s in &mut self.streams {
            s.teardown |= s.state != StreamState::Idle;
        }
    }

    fn queue_notify<M: GuestMemory + ?Sized>(
        &mut self,
        _queue: u16,
        ctx: &mut DeviceContext<'_, M>,
    ) {
        self.run(ctx);
    }

    /// Every queue is looked at on any notification: once for several.
    fn queues_notify<M: GuestMemory + ?Sized>(&mut self, _: u64, ctx: &mut DeviceContext<'_, M>) {
        self.run(ctx);
    }

    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>) {
        self.run(ctx);
    }
}
