//! virtio-snd PCM I/O messages (virtio 1.2 §5.14.6.8): parsing a tx or rx chain, the
//! in-flight table entry of a message and of each piece the backend holds, the copies
//! between guest memory and backend buffers, and the device's PCM path (take messages, feed
//! the backend in order, answer them in order).
//!
//! A message is a device-readable `struct virtio_snd_pcm_xfer` (`le32 stream_id`), then the
//! PCM data (device-readable on the tx queue, device-writable on the rx queue), then a
//! device-writable `struct virtio_snd_pcm_status` (`le32 status; le32 latency_bytes`), the
//! last 8 writable bytes. Segment boundaries carry no meaning (§2.7.4.3).

use zerocopy::IntoBytes;

use super::backend::{BackendStatus, BufferId, Direction, PcmCommand, PcmDone, SoundBackend};
use super::control::{VIRTIO_SND_S_BAD_MSG, VIRTIO_SND_S_IO_ERR, VIRTIO_SND_S_OK};
use super::{SoundDevice, MAX_STREAMS, PCM_BUFFER_BYTES, RXQ, TXQ};
use crate::device::DeviceContext;
use crate::layout::{VirtioSndPcmStatus, VirtioSndPcmXfer};
use crate::memory::{GuestMemory, MemoryError};
use crate::queue::{DescriptorChain, Queue};

/// `struct virtio_snd_pcm_xfer` ([`VirtioSndPcmXfer`]).
pub const XFER_HDR_SIZE: u64 = size_of::<VirtioSndPcmXfer>() as u64;
/// `struct virtio_snd_pcm_status` ([`VirtioSndPcmStatus`]).
pub const PCM_STATUS_SIZE: u64 = size_of::<VirtioSndPcmStatus>() as u64;
/// Bytes moved per step between guest memory and a backend buffer (a stack bounce buffer:
/// neither side may be borrowed as a Rust slice, both change under us).
const BOUNCE: usize = 512;

/// Why a message is answered at once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum XferError {
    /// No room for the status: the chain is returned with length 0.
    NoStatus,
    /// Answered with this status (BAD_MSG or IO_ERR), for this reason.
    Status(u32, &'static str),
}

/// What a message asks for, before the stream is looked at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Message {
    /// `stream_id` from the header.
    pub stream: u32,
    /// Bytes of PCM data (tx: after the header; rx: before the status).
    pub data_len: u64,
    /// Offset of the status in the writable bytes.
    pub status_at: u64,
}

/// Parses a tx (`input` false) or rx message: reads the header once and locates the data
/// and the status. The data length is checked by the device (against the period).
pub fn parse<M: GuestMemory + ?Sized>(
    chain: &DescriptorChain,
    mem: &M,
    input: bool,
) -> Result<Message, XferError> {
    let writable = chain.writable_len();
    if writable < PCM_STATUS_SIZE {
        return Err(XferError::NoStatus);
    }
    let status_at = writable - PCM_STATUS_SIZE;
    let bad = |why| XferError::Status(VIRTIO_SND_S_BAD_MSG, why);
    let mut hdr = VirtioSndPcmXfer::default();
    match chain.read_at(mem, 0, hdr.as_mut_bytes()) {
        Ok(n) if n as u64 == XFER_HDR_SIZE => {}
        Ok(_) => return Err(bad("short header")),
        Err(_) => return Err(bad("header unreadable")),
    }
    let stream = hdr.stream_id.get();
    let data_len = if input {
        if chain.readable_len() != XFER_HDR_SIZE {
            return Err(bad("readable data on the rx queue"));
        }
        status_at
    } else {
        if status_at != 0 {
            return Err(bad("writable data on the tx queue"));
        }
        chain.readable_len() - XFER_HDR_SIZE
    };
    Ok(Message { stream, data_len, status_at })
}

/// One guest message in the in-flight table.
#[derive(Clone, Debug)]
pub struct Xfer {
    pub chain: DescriptorChain,
    pub stream: u32,
    pub input: bool,
    /// Bytes of PCM data (at most a period, so it fits in u32).
    pub data_len: u32,
    pub status_at: u64,
    /// Data bytes handed to the backend so far.
    pub next: u32,
    /// Pieces with the backend.
    pub out: u32,
    /// VIRTIO_SND_S_OK until something fails.
    pub status: u32,
    /// `latency_bytes` of the last piece answered.
    pub latency: u32,
    /// Capture: bytes recorded from the start of the data without a gap.
    pub filled: u32,
    /// Capture: a piece came back short, so later bytes do not count.
    pub short: bool,
    pub seq: u64,
    pub gen: u16,
    /// The guest no longer owns the chain (reset, or failed by a RELEASE): the entry only
    /// waits for its pieces to come back.
    pub orphan: bool,
}

impl Xfer {
    /// A message accepted for `stream`.
    pub fn new(chain: DescriptorChain, msg: &Message, input: bool, seq: u64, gen: u16) -> Self {
        Xfer {
            chain,
            stream: msg.stream,
            input,
            // The device checked `data_len <= period_bytes`, a u32.
            data_len: u32::try_from(msg.data_len).unwrap_or(u32::MAX),
            status_at: msg.status_at,
            next: 0,
            out: 0,
            status: VIRTIO_SND_S_OK,
            latency: 0,
            filled: 0,
            short: false,
            seq,
            gen,
            orphan: false,
        }
    }

    /// Whether every byte went to the backend and came back.
    pub fn done(&self) -> bool {
        self.next >= self.data_len && self.out == 0
    }

    /// Stops handing data to the backend and answers `status` (unless already failed).
    pub fn fail(&mut self, status: u32) {
        if self.status == VIRTIO_SND_S_OK {
            self.status = status;
        }
        self.next = self.data_len;
    }
}

/// A piece of a message with the backend.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Piece {
    /// In-flight table index of the message.
    pub slot: usize,
    /// Its generation (a stale piece never touches a newer message).
    pub xfer_gen: u16,
    /// Offset of the piece in the message's data.
    pub offset: u32,
    pub len: u32,
    pub buf: BufferId,
    /// This entry's generation, the high half of the token.
    pub gen: u16,
}

/// The bounce buffer, aligned like the words the volatile copies move.
#[repr(C, align(16))]
struct Bounce([u8; BOUNCE]);

/// Copies playback data `[offset, offset + len)` of `x` into `buf`.
pub fn copy_in<B: SoundBackend, M: GuestMemory + ?Sized>(
    backend: &mut B,
    mem: &M,
    x: &Xfer,
    buf: BufferId,
    offset: u32,
    len: u32,
) -> Result<(), &'static str> {
    let mut bounce = Bounce([0; BOUNCE]);
    let mut at = 0usize;
    let len = len as usize;
    while at < len {
        let part = &mut bounce.0[..core::cmp::min(BOUNCE, len - at)];
        let src = XFER_HDR_SIZE + u64::from(offset) + at as u64;
        match x.chain.read_at(mem, src, part) {
            Ok(n) if n == part.len() => {}
            _ => return Err("playback data unreadable"),
        }
        backend.write_buffer(buf, at, part).map_err(|_| "backend buffer too small")?;
        at += part.len();
    }
    Ok(())
}

/// Copies `len` recorded bytes of `buf` into `x`'s data at `offset`.
pub fn copy_out<B: SoundBackend, M: GuestMemory + ?Sized>(
    backend: &B,
    mem: &mut M,
    x: &Xfer,
    buf: BufferId,
    offset: u32,
    len: u32,
) -> Result<(), &'static str> {
    let mut bounce = Bounce([0; BOUNCE]);
    let mut at = 0usize;
    let len = len as usize;
    while at < len {
        let part = &mut bounce.0[..core::cmp::min(BOUNCE, len - at)];
        backend.read_buffer(buf, at, part).map_err(|_| "backend buffer too small")?;
        match x.chain.write_at(mem, u64::from(offset) + at as u64, part) {
            Ok(n) if n == part.len() => {}
            _ => return Err("capture buffer unwritable"),
        }
        at += part.len();
    }
    Ok(())
}

/// Writes the status of a message that is answered now and returns its chain: for capture,
/// the used length counts the recorded bytes and the status (§5.14.6.8.2).
pub fn answer<M: GuestMemory + ?Sized>(
    q: &mut Queue,
    mem: &mut M,
    chain: &DescriptorChain,
    status_at: u64,
    status: u32,
    latency: u32,
    recorded: u32,
) {
    let s = VirtioSndPcmStatus { status: status.into(), latency_bytes: latency.into() };
    let written: Result<usize, MemoryError> = chain.write_at(mem, status_at, s.as_bytes());
    let len = match written {
        Ok(n) if n as u64 == PCM_STATUS_SIZE => recorded.saturating_add(PCM_STATUS_SIZE as u32),
        _ => {
            // The chain was checked against guest RAM when popped.
            log::warn!(target: "virtio", "snd: status of message {} lost", chain.head());
            0
        }
    };
    q.add_used(mem, chain.head(), len);
}

/// The device's PCM path: taking messages, feeding the backend, answering in order.
impl<B: SoundBackend, const N: usize> SoundDevice<B, N> {
    /// Takes messages from `queue` (txq or rxq) while the table has room. Returns whether
    /// any was taken.
    pub(super) fn accept<M: GuestMemory + ?Sized>(
        &mut self,
        ctx: &mut DeviceContext<'_, M>,
        queue: u16,
    ) -> bool {
        let input = queue == RXQ;
        let mut any = false;
        while let Some(free) = self.xfers.iter().position(Option::is_none) {
            let Some((q, mem)) = ctx.queue(queue) else { break };
            let Some(chain) = q.pop(mem) else { break };
            any = true;
            let msg = parse(&chain, &*mem, input).and_then(|m| self.check_xfer(m, input));
            match msg {
                Ok(m) => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let gen = self.next_gen;
                    self.next_gen = gen.wrapping_add(1);
                    if let Some(slot) = self.xfers.get_mut(free) {
                        *slot = Some(Xfer::new(chain, &m, input, seq, gen));
                    }
                }
                Err(XferError::NoStatus) => {
                    guest_warn!("snd: message {} has no room for a status", chain.head());
                    q.add_used(mem, chain.head(), 0);
                }
                Err(XferError::Status(status, why)) => {
                    guest_warn!("snd: message {} refused: {}", chain.head(), why);
                    let at = chain.writable_len() - PCM_STATUS_SIZE;
                    answer(q, mem, &chain, at, status, 0, 0);
                }
            }
        }
        any
    }

    /// Checks a parsed message against its stream.
    pub(super) fn check_xfer(&self, m: Message, input: bool) -> Result<Message, XferError> {
        let bad = |why| Err(XferError::Status(VIRTIO_SND_S_BAD_MSG, why));
        let Some(s) = self.stream(m.stream) else { return bad("no such stream") };
        if (s.info.direction == Direction::Input) != input {
            return bad("stream of the other direction");
        }
        if !s.guest_state().takes_io() {
            return Err(XferError::Status(VIRTIO_SND_S_IO_ERR, "stream not prepared"));
        }
        if m.data_len == 0 {
            return bad("no PCM data");
        }
        match s.params {
            Some(p) if m.data_len <= u64::from(p.period_bytes) => Ok(m),
            _ => bad("longer than a period"),
        }
    }

    /// Hands message data to the backend, oldest message first, in order within each
    /// stream. Returns whether any piece was submitted.
    pub(super) fn submit_pieces<M: GuestMemory + ?Sized>(
        &mut self,
        ctx: &mut DeviceContext<'_, M>,
    ) -> bool {
        let mut order = [(u64::MAX, 0usize); N];
        let mut n = 0;
        for (i, x) in self.xfers.iter().enumerate() {
            if let (Some(x), Some(o)) = (x, order.get_mut(n)) {
                if !x.orphan && x.next < x.data_len {
                    *o = (x.seq, i);
                    n += 1;
                }
            }
        }
        let order = order.get_mut(..n).unwrap_or(&mut []);
        order.sort_unstable();
        // Pieces only go to a stream that takes I/O, and not while a command that ends its
        // I/O (SET_PARAMS, RELEASE, a teardown) is with the backend.
        let mut blocked: [bool; MAX_STREAMS] =
            core::array::from_fn(|i| self.streams.get(i).is_none_or(|s| !s.state.takes_io()));
        if let Some(c) = &self.control {
            let ends_io = matches!(c.command, PcmCommand::SetParams(_) | PcmCommand::Release);
            if let Some(b) = blocked.get_mut(c.stream).filter(|_| ends_io || c.teardown) {
                *b = true;
            }
        }
        let mut progress = false;
        for &(_, i) in order.iter() {
            let Some(Some(x)) = self.xfers.get(i) else { continue };
            let stream = x.stream as usize;
            if blocked.get(stream).copied().unwrap_or(true) {
                continue;
            }
            while self.submit_piece(&mut *ctx.mem, i) {
                progress = true;
            }
            let Some(Some(x)) = self.xfers.get(i) else { continue };
            if x.next < x.data_len {
                // Later messages of the stream must not overtake this one.
                if let Some(b) = blocked.get_mut(stream) {
                    *b = true;
                }
            }
        }
        progress
    }

    /// Submits the next piece of message `i`. Returns whether one went to the backend.
    pub(super) fn submit_piece<M: GuestMemory + ?Sized>(&mut self, mem: &mut M, i: usize) -> bool {
        let Some(Some(x)) = self.xfers.get_mut(i) else { return false };
        if x.next >= x.data_len {
            return false;
        }
        let Some(p) = self.pieces.iter().position(Option::is_none) else { return false };
        let Some(buf) = self.backend.alloc() else { return false };
        // At most PCM_BUFFER_BYTES.
        let len = (x.data_len - x.next).min(PCM_BUFFER_BYTES as u32);
        if !x.input {
            if let Err(why) = copy_in(&mut self.backend, &*mem, x, buf, x.next, len) {
                log::warn!(target: "virtio", "snd: message {}: {}", x.chain.head(), why);
                self.backend.free(buf);
                x.fail(VIRTIO_SND_S_IO_ERR);
                return false;
            }
        }
        let gen = self.piece_gen;
        let token = u32::from(gen) << 16 | p as u32;
        if self.backend.submit(x.stream, buf, len, token).is_err() {
            self.backend.free(buf);
            return false;
        }
        self.piece_gen = gen.wrapping_add(1);
        if let Some(entry) = self.pieces.get_mut(p) {
            *entry = Some(Piece { slot: i, xfer_gen: x.gen, offset: x.next, len, buf, gen });
        }
        x.next += len;
        x.out += 1;
        self.notify = true;
        true
    }

    /// The backend is done with a piece.
    pub(super) fn piece_done<M: GuestMemory + ?Sized>(
        &mut self,
        ctx: &mut DeviceContext<'_, M>,
        done: PcmDone,
    ) {
        let index = (done.token & 0xffff) as usize;
        let gen = (done.token >> 16) as u16;
        let Some(p) = self.pieces.get_mut(index).and_then(|e| e.take_if(|p| p.gen == gen)) else {
            log::warn!(target: "virtio", "snd: backend completed unknown token {:#x}", done.token);
            return;
        };
        let x = self.xfers.get_mut(p.slot).and_then(Option::as_mut).filter(|x| x.gen == p.xfer_gen);
        if let Some(x) = x {
            x.out = x.out.saturating_sub(1);
            if !x.orphan {
                if done.status != BackendStatus::Ok {
                    log::warn!(target: "virtio", "snd: backend failed a piece of stream {}", x.stream);
                    x.fail(VIRTIO_SND_S_IO_ERR);
                } else if x.input {
                    let got = done.len.min(p.len);
                    match copy_out(&self.backend, &mut *ctx.mem, x, p.buf, p.offset, got) {
                        Err(why) => {
                            log::warn!(target: "virtio", "snd: message {}: {}", x.chain.head(), why);
                            x.fail(VIRTIO_SND_S_IO_ERR);
                        }
                        Ok(()) if p.offset == x.filled && !x.short => {
                            x.filled += got;
                            x.short = got < p.len;
                        }
                        Ok(()) => {}
                    }
                }
                x.latency = done.latency_bytes;
            }
        }
        self.backend.free(p.buf);
    }

    /// Frees orphans whose pieces are back and answers finished messages, in order within
    /// each stream. Returns whether any entry was freed.
    pub(super) fn answer_ready<M: GuestMemory + ?Sized>(
        &mut self,
        ctx: &mut DeviceContext<'_, M>,
    ) -> bool {
        let mut progress = false;
        for entry in &mut self.xfers {
            if entry.as_ref().is_some_and(|x| x.orphan && x.out == 0) {
                *entry = None;
                progress = true;
            }
        }
        if !self.active {
            return progress;
        }
        for stream in 0..self.stream_count as u32 {
            // Bounded: each round answers one message or stops.
            for _ in 0..N {
                let Some(i) = self.oldest(stream) else { break };
                if !self.xfers.get(i).and_then(Option::as_ref).is_some_and(Xfer::done) {
                    break;
                }
                if let Some(x) = self.xfers.get_mut(i).and_then(Option::take) {
                    finish(ctx, &x);
                    progress = true;
                }
            }
        }
        progress
    }

    /// The oldest message of `stream` the guest still owns.
    pub(super) fn oldest(&self, stream: u32) -> Option<usize> {
        let live = self.xfers.iter().enumerate().filter_map(|(i, x)| Some((i, x.as_ref()?)));
        live.filter(|(_, x)| x.stream == stream && !x.orphan)
            .min_by_key(|(_, x)| x.seq)
            .map(|(i, _)| i)
    }

    /// The stream stopped taking I/O (RELEASE, or SET_PARAMS after PREPARE): answer every
    /// message of `stream` now, in order; those not played (recorded) whole fail with IO_ERR
    /// (§5.14.6.6.5). Pieces the backend still holds are drained in the background.
    pub(super) fn fail_held<M: GuestMemory + ?Sized>(
        &mut self,
        ctx: &mut DeviceContext<'_, M>,
        stream: usize,
    ) {
        // Bounded: each round answers one message.
        for _ in 0..N {
            let Some(i) = self.oldest(stream as u32) else { break };
            let Some(Some(x)) = self.xfers.get_mut(i) else { break };
            if !x.done() {
                x.fail(VIRTIO_SND_S_IO_ERR);
            }
            finish(ctx, x);
            if x.out > 0 {
                x.orphan = true;
            } else if let Some(entry) = self.xfers.get_mut(i) {
                *entry = None;
            }
        }
    }
}

/// Answers message `x` on its queue.
fn finish<M: GuestMemory + ?Sized>(ctx: &mut DeviceContext<'_, M>, x: &Xfer) {
    let queue = if x.input { RXQ } else { TXQ };
    let recorded = if x.input { x.filled } else { 0 };
    if let Some((q, mem)) = ctx.queue(queue) {
        answer(q, mem, &x.chain, x.status_at, x.status, x.latency, recorded);
    }
}
