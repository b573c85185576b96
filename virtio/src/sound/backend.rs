//! The sound backend seam: streams, split-phase stream commands, and PCM data moved in
//! buffers of at most [`PCM_BUFFER_BYTES`] (the shape of the sDDF sound protocol).
//!
//! The device cuts each guest I/O message into pieces of at most one backend buffer, copies
//! playback data into buffers it allocated ([`SoundBackend::write_buffer`]) and submits them
//! in order, each tagged with a token; the backend answers each piece through
//! [`SoundBackend::complete`] once it has been played (or recorded into, for capture). A
//! stream command is submitted with [`SoundBackend::command`] and answered the same way; the
//! device has at most one command with the backend at a time. Nothing blocks: a backend
//! that is out of buffers or whose queue is full says so, and the device tries again at the
//! next [`VirtioDevice::poll`](crate::VirtioDevice::poll).
//!
//! An sDDF glue maps this one to one: `command` is a `sound_cmd_t` (SET_PARAMS is TAKE),
//! `alloc`/`free` hand out the 4 KiB cells of the data region, `submit` is a `sound_pcm_t`
//! with the token as its cookie, and `complete` dequeues the two response rings.

/// Largest piece of PCM data in one backend buffer (sDDF `SOUND_PCM_BUFFER_SIZE`).
pub const PCM_BUFFER_BYTES: usize = 4096;

/// The direction of a stream (virtio 1.2 §5.14.6: VIRTIO_SND_D_*).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Playback: the guest sends frames on the tx queue.
    Output,
    /// Capture: the guest receives frames on the rx queue.
    Input,
}

/// What a stream supports (the payload of `struct virtio_snd_pcm_info`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StreamInfo {
    /// Playback or capture.
    pub direction: Direction,
    /// `1 << VIRTIO_SND_PCM_FMT_*` of each sample format supported (bits 0 to 24).
    pub formats: u64,
    /// `1 << VIRTIO_SND_PCM_RATE_*` of each frame rate supported (bits 0 to 13).
    pub rates: u64,
    /// Fewest channels (at least 1).
    pub channels_min: u8,
    /// Most channels.
    pub channels_max: u8,
}

/// Parameters the guest chose for a stream (VIRTIO_SND_R_PCM_SET_PARAMS), already checked
/// against the stream's [`StreamInfo`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PcmParams {
    /// Size of the guest's ring buffer in bytes (a multiple of `period_bytes`).
    pub buffer_bytes: u32,
    /// Size of one period in bytes: the guest's I/O messages are at most this long.
    pub period_bytes: u32,
    /// Channels per frame.
    pub channels: u8,
    /// A VIRTIO_SND_PCM_FMT_* value (the same numbers as sDDF's `sound_pcm_fmt_t`).
    pub format: u8,
    /// A VIRTIO_SND_PCM_RATE_* value (the same numbers as sDDF's `sound_pcm_rate_t`).
    pub rate: u8,
}

/// A stream command (virtio 1.2 §5.14.6.6.1), in the order the stream's state machine
/// allows; the device never sends one out of order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PcmCommand {
    /// Take the stream with these parameters (sDDF TAKE). Also sent again before a PREPARE
    /// that follows a RELEASE, since a release gives the stream up.
    SetParams(PcmParams),
    /// Allocate resources; playback data may follow for pre-buffering.
    Prepare,
    /// Give the stream up. Every piece of the stream must have been answered by the time
    /// this command is (the device fails the guest's messages it still holds).
    Release,
    /// Start playing or recording.
    Start,
    /// Stop; pieces not yet played stay queued until START or RELEASE.
    Stop,
}

/// How the backend answers a command or a piece (mapped onto VIRTIO_SND_S_*).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BackendStatus {
    /// Done.
    Ok,
    /// The backend found the request malformed.
    BadMsg,
    /// The parameters or the operation are not supported.
    NotSupp,
    /// The operation failed (an sDDF BUSY answer is reported as this).
    IoErr,
}

/// One buffer of the backend's data region.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct BufferId(pub u32);

/// The backend cannot take a command or a piece now (its queue is full); try again later.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BackendBusy;

/// A copy to or from a buffer that does not fit in it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BufferRange;

/// A piece the backend is done with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PcmDone {
    /// The token it was submitted with.
    pub token: u32,
    /// Whether it was played (recorded).
    pub status: BackendStatus,
    /// Capture: bytes recorded into the buffer (at most the length submitted).
    pub len: u32,
    /// The device's latency when it finished, in bytes.
    pub latency_bytes: u32,
}

/// Something the backend finished.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Completion {
    /// The command submitted last.
    Command(BackendStatus),
    /// A piece of PCM data.
    Pcm(PcmDone),
}

/// Host side of a sound device, split-phase (the sDDF sound protocol).
pub trait SoundBackend {
    /// The streams, by stream id. The device reads them when it is activated; more than
    /// [`MAX_STREAMS`](super::MAX_STREAMS) are not offered.
    fn streams(&self) -> &[StreamInfo];
    /// Starts command `cmd` on `stream`; the answer comes back as
    /// [`Completion::Command`].
    fn command(&mut self, stream: u32, cmd: PcmCommand) -> Result<(), BackendBusy>;
    /// A free buffer of at least [`PCM_BUFFER_BYTES`] bytes; `None` if none is free now.
    fn alloc(&mut self) -> Option<BufferId>;
    /// Returns a buffer.
    fn free(&mut self, buf: BufferId);
    /// Copies `src` to `offset` into `buf`. The data region is shared with another party,
    /// so it is copied, never lent out as a Rust reference.
    fn write_buffer(&mut self, buf: BufferId, offset: usize, src: &[u8])
        -> Result<(), BufferRange>;
    /// Copies `dst.len()` bytes at `offset` in `buf` into `dst` (capture). The default, for
    /// a backend without capture streams, refuses.
    fn read_buffer(&self, buf: BufferId, offset: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let _ = (buf, offset, dst);
        Err(BufferRange)
    }
    /// Queues `len` bytes of `buf` for playback on `stream`, or `buf` to be filled with up to
    /// `len` bytes on a capture stream; `token` comes back in [`PcmDone`]. Pieces of a stream
    /// are submitted in order and must be answered in order.
    fn submit(
        &mut self,
        stream: u32,
        buf: BufferId,
        len: u32,
        token: u32,
    ) -> Result<(), BackendBusy>;
    /// The next finished command or piece.
    fn complete(&mut self) -> Option<Completion>;
    /// Tells the backend about a batch of commands and submits.
    fn notify(&mut self);
}
