//! The virtio sound device's backend: an sDDF sound client.
//!
//! Stream commands go to the sound virtualiser on `cmd_req` (SET_PARAMS is TAKE), one at a
//! time, with a fresh cookie each; PCM pieces go on `pcm_req` in 4 KiB cells of this client's
//! data region (`io_or_offset` is the cell's offset). Answers come back on `cmd_res` and
//! `pcm_res` and are matched by cookie: an answer for nothing we sent, for an answer already
//! received, or with another stream is logged and dropped. sDDF's BUSY, and any status
//! outside the protocol, becomes `IoErr`.
//!
//! sDDF 0.7's replay rule (sddf-abi.md §4.3): playback buffers sent between PREPARE and the
//! first START are sent again after START, and the driver answers both sends. A cell sent
//! before START is kept until both answers are in and reported to the device once, with the
//! worse status and the later latency. Replays go out in the order the pieces were first
//! sent, before any piece submitted after START ([`SoundBackend::submit`] is busy for the
//! stream until they are out). [`SddfSound::without_replay`] turns the rule off for a driver
//! that plays pre-START buffers once.
//!
//! The streams come from the shared state region, copied once when the driver has set
//! `ready` ([`SddfSound::refresh`]); entries that break the protocol end the list.

use super::Notifier;
use sddf_bindings::sound::{
    SoundCmd, SoundCmdCode, SoundDirection, SoundPcm, SoundPcmSetParams, SoundQueues,
    SoundSharedStateHandle, SoundStatus, SOUND_PCM_BUFFER_SIZE, SOUND_PCM_FORMATS_MASK,
    SOUND_PCM_QUEUE_CAPACITY, SOUND_PCM_RATES_MASK,
};
use sddf_bindings::SharedRegion;
use virtio::sound::{
    BackendBusy, BackendStatus, BufferId, BufferRange, Completion, Direction, PcmCommand, PcmDone,
    SoundBackend, StreamInfo, MAX_STREAMS,
};

/// Most cells a client uses: the sound virtualiser refuses offsets at or past
/// `SOUND_PCM_BUFFER_SIZE * SOUND_PCM_QUEUE_CAPACITY` (1 MiB).
pub const MAX_CELLS: usize = SOUND_PCM_QUEUE_CAPACITY as usize;

/// Cookie bit of a replayed send.
const REPLAY: u32 = 1 << 31;

/// Where one answer of a cell is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// Not needed (no replay), or already received.
    None,
    /// Sent, not answered.
    Pending,
    /// A replay to send at START.
    Waiting,
    /// START went through: to be sent.
    Due,
}

/// A cell of the data region.
#[derive(Clone, Copy, Debug)]
struct Cell {
    allocated: bool,
    /// Submitted and not yet reported to the device.
    in_flight: bool,
    stream: u32,
    token: u32,
    len: u32,
    epoch: u16,
    /// Submission order (replays go out in it).
    seq: u32,
    first: Answer,
    replay: Answer,
    status: BackendStatus,
    latency: u32,
    recorded: u32,
}

impl Cell {
    const FREE: Cell = Cell {
        allocated: false,
        in_flight: false,
        stream: 0,
        token: 0,
        len: 0,
        epoch: 0,
        seq: 0,
        first: Answer::None,
        replay: Answer::None,
        status: BackendStatus::Ok,
        latency: 0,
        recorded: 0,
    };

    /// Both sends answered (or not needed): report it.
    fn finished(&self) -> bool {
        self.in_flight && self.first == Answer::None && self.replay == Answer::None
    }
}

/// The command with the virtualiser.
#[derive(Clone, Copy, Debug)]
struct Pending {
    cookie: u32,
    stream: u32,
    cmd: PcmCommand,
}

/// An sDDF sound client connection.
pub struct SddfSound<N: Notifier> {
    queues: SoundQueues,
    state: SoundSharedStateHandle,
    data: SharedRegion,
    cells: [Cell; MAX_CELLS],
    cell_count: usize,
    infos: [StreamInfo; MAX_STREAMS],
    stream_count: usize,
    have_state: bool,
    /// Per stream: prepared and not started since, so playback pieces will be replayed.
    prestart: [bool; MAX_STREAMS],
    replay: bool,
    /// A command ended replays: cells may be finished with no answer still to come.
    orphans: bool,
    command: Option<Pending>,
    next_cookie: u32,
    next_seq: u32,
    channel: u8,
    notifier: N,
    sent: bool,
}

impl<N: Notifier> SddfSound<N> {
    /// A client over `queues` (build them with
    /// [`SoundQueues::from_sddf_names`] for the C components' naming), the shared `state`
    /// region and its `data` region, notifying the virtualiser on `channel`.
    pub fn new(
        queues: SoundQueues,
        state: SoundSharedStateHandle,
        data: SharedRegion,
        channel: u8,
        notifier: N,
    ) -> Self {
        let cell_count = (data.len() / SOUND_PCM_BUFFER_SIZE).min(MAX_CELLS);
        let mut client = SddfSound {
            queues,
            state,
            data,
            cells: [Cell::FREE; MAX_CELLS],
            cell_count,
            infos: [StreamInfo {
                direction: Direction::Output,
                formats: 0,
                rates: 0,
                channels_min: 1,
                channels_max: 1,
            }; MAX_STREAMS],
            stream_count: 0,
            have_state: false,
            prestart: [false; MAX_STREAMS],
            replay: true,
            orphans: false,
            command: None,
            next_cookie: 0,
            next_seq: 0,
            channel,
            notifier,
            sent: false,
        };
        client.refresh();
        client
    }

    /// A client for a driver that plays buffers sent before START once, answering each
    /// once: nothing is sent again.
    pub fn without_replay(mut self) -> Self {
        self.replay = false;
        self
    }

    /// The notifier (tests inspect their fake through it).
    pub fn notifier(&mut self) -> &mut N {
        &mut self.notifier
    }

    /// Takes the streams from the shared state once the driver has set `ready`. Returns
    /// whether they are known. Call it when the virtualiser notifies; the device reads the
    /// streams when the guest looks at its configuration and when it is activated.
    pub fn refresh(&mut self) -> bool {
        if self.have_state {
            return true;
        }
        let Some(state) = self.state.read() else { return false };
        let mut n = 0;
        for (info, slot) in state.stream_info().iter().zip(self.infos.iter_mut()) {
            let direction = match info.direction() {
                Some(SoundDirection::Output) => Direction::Output,
                Some(SoundDirection::Input) => Direction::Input,
                None => break,
            };
            let formats = info.formats & SOUND_PCM_FORMATS_MASK;
            let rates = info.rates & SOUND_PCM_RATES_MASK;
            let (lo, hi) = (info.channels_min, info.channels_max);
            if formats == 0 || rates == 0 || lo == 0 || hi < lo {
                break;
            }
            *slot = StreamInfo { direction, formats, rates, channels_min: lo, channels_max: hi };
            n += 1;
        }
        if n < state.stream_info().len().min(MAX_STREAMS) {
            log::warn!(target: "snd", "sound state: stream {n} breaks the protocol, {n} offered");
        }
        self.stream_count = n;
        self.have_state = true;
        true
    }

    /// Cells submitted and not yet reported to the device.
    pub fn in_flight(&self) -> usize {
        self.cells.iter().filter(|c| c.in_flight).count()
    }

    fn cell_of(&self, buf: BufferId) -> Option<usize> {
        let i = buf.0 as usize;
        (i < self.cell_count && self.cells[i].allocated).then_some(i)
    }

    fn cell_range(&self, buf: BufferId, at: usize, len: usize) -> Result<usize, BufferRange> {
        let i = self.cell_of(buf).ok_or(BufferRange)?;
        let end = at.checked_add(len).ok_or(BufferRange)?;
        if end > SOUND_PCM_BUFFER_SIZE {
            return Err(BufferRange);
        }
        Ok(i * SOUND_PCM_BUFFER_SIZE + at)
    }

    fn is_output(&self, stream: u32) -> bool {
        let i = stream as usize;
        i < self.stream_count && self.infos[i].direction == Direction::Output
    }

    /// Whether stream `stream` has replays not yet sent.
    fn replays_due(&self, stream: u32) -> bool {
        self.cells.iter().any(|c| c.in_flight && c.stream == stream && c.replay == Answer::Due)
    }

    /// Sends due replays in first-send order, as far as `pcm_req` has room; notifies the
    /// virtualiser if any went out.
    fn send_replays(&mut self) {
        let mut any = false;
        loop {
            let next = (0..self.cell_count)
                .filter(|&i| self.cells[i].in_flight && self.cells[i].replay == Answer::Due)
                .min_by_key(|&i| self.cells[i].seq);
            let Some(i) = next else { break };
            let c = self.cells[i];
            let cookie = REPLAY | cookie_of(i, c.epoch);
            let offset = (i * SOUND_PCM_BUFFER_SIZE) as u64;
            if self.queues.pcm_req.enqueue(SoundPcm::new(cookie, c.stream, offset, c.len)).is_err()
            {
                break;
            }
            self.cells[i].replay = Answer::Pending;
            any = true;
        }
        if any {
            self.notifier.notify(self.channel);
        }
    }

    /// A command's answer moves the client's view of its stream.
    fn command_answered(&mut self, p: Pending, ok: bool) {
        let s = p.stream as usize;
        if !ok || s >= MAX_STREAMS {
            return;
        }
        match p.cmd {
            PcmCommand::Prepare => self.prestart[s] = self.replay && self.is_output(p.stream),
            PcmCommand::Start => {
                self.prestart[s] = false;
                for c in self.cells.iter_mut().filter(|c| c.in_flight && c.stream == p.stream) {
                    if c.replay == Answer::Waiting {
                        c.replay = Answer::Due;
                    }
                }
                self.send_replays();
            }
            PcmCommand::SetParams(_) | PcmCommand::Release => {
                // The stream ends without START: what waited for a replay gets none.
                self.prestart[s] = false;
                for c in self.cells.iter_mut().filter(|c| c.in_flight && c.stream == p.stream) {
                    if matches!(c.replay, Answer::Waiting | Answer::Due) {
                        c.replay = Answer::None;
                        self.orphans = true;
                    }
                }
            }
            PcmCommand::Stop => {}
        }
    }

    /// The next command answer for the command in flight (others are dropped).
    fn command_answer(&mut self) -> Option<Completion> {
        while let Some(res) = self.queues.cmd_res.dequeue() {
            let Some(p) =
                self.command.filter(|p| p.cookie == res.cookie && p.stream == res.stream_id)
            else {
                log::warn!(target: "snd", "sound: answer {:#x} to no command in flight", res.cookie);
                continue;
            };
            self.command = None;
            let status = backend_status(res.status());
            self.command_answered(p, status == BackendStatus::Ok);
            return Some(Completion::Command(status));
        }
        None
    }

    /// Applies one PCM answer to its cell; the index of the cell if it is now finished.
    fn pcm_answer(&mut self, res: SoundPcm) -> Option<usize> {
        let i = (res.cookie & 0xffff) as usize;
        let epoch = ((res.cookie >> 16) & 0x7fff) as u16;
        let replay = res.cookie & REPLAY != 0;
        let Some(c) = self.cells.get_mut(i).filter(|c| {
            i < self.cell_count
                && c.in_flight
                && c.epoch & 0x7fff == epoch
                && c.stream == res.stream_id
        }) else {
            log::warn!(target: "snd", "sound: PCM answer {:#x} for nothing sent", res.cookie);
            return None;
        };
        let answer = if replay { &mut c.replay } else { &mut c.first };
        if *answer != Answer::Pending {
            log::warn!(target: "snd", "sound: PCM answer {:#x} not expected", res.cookie);
            return None;
        }
        *answer = Answer::None;
        let status = backend_status(res.status());
        if status != BackendStatus::Ok {
            c.status = status;
        }
        c.latency = res.latency_bytes;
        c.recorded = res.len.min(c.len);
        c.finished().then_some(i)
    }

    /// Reports a finished cell (it stays allocated until the device frees it).
    fn report(&mut self, i: usize) -> Completion {
        let c = &mut self.cells[i];
        c.in_flight = false;
        Completion::Pcm(PcmDone {
            token: c.token,
            status: c.status,
            len: c.recorded,
            latency_bytes: c.latency,
        })
    }
}

/// A PCM cookie: the cell in the low 16 bits, its epoch in the next 15.
fn cookie_of(cell: usize, epoch: u16) -> u32 {
    (cell as u32 & 0xffff) | (u32::from(epoch & 0x7fff) << 16)
}

/// sDDF's status as the device's; BUSY and unknown values are I/O errors.
fn backend_status(status: Option<SoundStatus>) -> BackendStatus {
    match status {
        Some(SoundStatus::Ok) => BackendStatus::Ok,
        Some(SoundStatus::BadMsg) => BackendStatus::BadMsg,
        Some(SoundStatus::NotSupp) => BackendStatus::NotSupp,
        Some(SoundStatus::IoErr) | Some(SoundStatus::Busy) | None => BackendStatus::IoErr,
    }
}

impl<N: Notifier> SoundBackend for SddfSound<N> {
    fn streams(&self) -> &[StreamInfo] {
        &self.infos[..self.stream_count]
    }

    fn command(&mut self, stream: u32, cmd: PcmCommand) -> Result<(), BackendBusy> {
        if self.command.is_some() {
            return Err(BackendBusy);
        }
        let cookie = self.next_cookie;
        let entry = match cmd {
            PcmCommand::SetParams(p) => {
                let params =
                    SoundPcmSetParams { channels: p.channels, format: p.format, rate: p.rate };
                SoundCmd::take(cookie, stream, params)
            }
            PcmCommand::Prepare => SoundCmd::new(SoundCmdCode::Prepare, cookie, stream),
            PcmCommand::Release => SoundCmd::new(SoundCmdCode::Release, cookie, stream),
            PcmCommand::Start => SoundCmd::new(SoundCmdCode::Start, cookie, stream),
            PcmCommand::Stop => SoundCmd::new(SoundCmdCode::Stop, cookie, stream),
        };
        self.queues.cmd_req.enqueue(entry).map_err(|_| BackendBusy)?;
        self.next_cookie = cookie.wrapping_add(1);
        self.command = Some(Pending { cookie, stream, cmd });
        self.sent = true;
        Ok(())
    }

    fn alloc(&mut self) -> Option<BufferId> {
        let i = self.cells[..self.cell_count].iter().position(|c| !c.allocated)?;
        self.cells[i].allocated = true;
        Some(BufferId(i as u32))
    }

    fn free(&mut self, buf: BufferId) {
        let Some(i) = self.cell_of(buf) else { return };
        if self.cells[i].in_flight {
            // The device frees a cell only once it is answered; keep it out of use.
            log::error!(target: "snd", "sound: cell {i} freed while with the virtualiser");
            return;
        }
        self.cells[i].allocated = false;
    }

    fn write_buffer(&mut self, buf: BufferId, at: usize, src: &[u8]) -> Result<(), BufferRange> {
        let offset = self.cell_range(buf, at, src.len())?;
        self.data.write(offset, src).map_err(|_| BufferRange)
    }

    fn read_buffer(&self, buf: BufferId, at: usize, dst: &mut [u8]) -> Result<(), BufferRange> {
        let offset = self.cell_range(buf, at, dst.len())?;
        self.data.read(offset, dst).map_err(|_| BufferRange)
    }

    fn submit(
        &mut self,
        stream: u32,
        buf: BufferId,
        len: u32,
        token: u32,
    ) -> Result<(), BackendBusy> {
        let Some(i) = self.cell_of(buf) else { return Err(BackendBusy) };
        if self.cells[i].in_flight || len as usize > SOUND_PCM_BUFFER_SIZE {
            return Err(BackendBusy);
        }
        if self.replays_due(stream) {
            self.send_replays();
            if self.replays_due(stream) {
                return Err(BackendBusy);
            }
        }
        let epoch = self.cells[i].epoch.wrapping_add(1) & 0x7fff;
        let offset = (i * SOUND_PCM_BUFFER_SIZE) as u64;
        let entry = SoundPcm::new(cookie_of(i, epoch), stream, offset, len);
        self.queues.pcm_req.enqueue(entry).map_err(|_| BackendBusy)?;
        let prestart = self.prestart.get(stream as usize).copied().unwrap_or(false);
        self.cells[i] = Cell {
            allocated: true,
            in_flight: true,
            stream,
            token,
            len,
            epoch,
            seq: self.next_seq,
            first: Answer::Pending,
            replay: if prestart { Answer::Waiting } else { Answer::None },
            status: BackendStatus::Ok,
            latency: 0,
            recorded: 0,
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        self.sent = true;
        Ok(())
    }

    fn complete(&mut self) -> Option<Completion> {
        if let Some(done) = self.command_answer() {
            return Some(done);
        }
        if self.orphans {
            match (0..self.cell_count).find(|&i| self.cells[i].finished()) {
                Some(i) => return Some(self.report(i)),
                None => self.orphans = false,
            }
        }
        // Bounded: a ring holds at most its capacity.
        for _ in 0..SOUND_PCM_QUEUE_CAPACITY {
            let res = self.queues.pcm_res.dequeue()?;
            if let Some(i) = self.pcm_answer(res) {
                return Some(self.report(i));
            }
        }
        None
    }

    fn notify(&mut self) {
        if core::mem::take(&mut self.sent) {
            self.notifier.notify(self.channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sddf::Recorder;
    use sddf_bindings::sound::{
        format, region_size, SoundPcmInfo, SoundSharedState, SOUND_CMD_QUEUE_CAPACITY,
    };
    use virtio::sound::PcmParams;

    const CH: u8 = 5;

    /// The sound virtualiser's end of the connection.
    struct Virt {
        q: SoundQueues,
        state: SoundSharedStateHandle,
        data: SharedRegion,
    }

    impl Virt {
        fn take_cmd(&mut self) -> SoundCmd {
            self.q.cmd_req.dequeue().expect("a command")
        }
        fn answer_cmd(&mut self, cmd: SoundCmd, status: SoundStatus) {
            self.q.cmd_res.enqueue(cmd.respond(status)).unwrap();
        }
        fn take_pcm(&mut self) -> SoundPcm {
            self.q.pcm_req.dequeue().expect("a PCM buffer")
        }
        fn answer_pcm(&mut self, pcm: SoundPcm, status: SoundStatus, latency: u32) {
            self.q.pcm_res.enqueue(pcm.respond(status, latency)).unwrap();
        }
        /// Runs `cmd` through: the virtualiser takes it and answers OK.
        fn ok(&mut self, c: &mut SddfSound<Recorder>, stream: u32, cmd: PcmCommand) {
            c.command(stream, cmd).unwrap();
            let req = self.take_cmd();
            self.answer_cmd(req, SoundStatus::Ok);
            assert_eq!(c.complete(), Some(Completion::Command(BackendStatus::Ok)));
        }
    }

    fn info(direction: SoundDirection) -> SoundPcmInfo {
        SoundPcmInfo {
            formats: 1 << format::S16,
            rates: 1 << 7,
            direction: direction as u8,
            channels_min: 2,
            channels_max: 2,
            pad0: [0; 5],
        }
    }

    /// A client of 8 cells and its virtualiser; stream 0 plays, stream 1 records.
    fn connect() -> (SddfSound<Recorder>, Virt) {
        let cmd = || SharedRegion::leak_zeroed(region_size(false, SOUND_CMD_QUEUE_CAPACITY));
        let pcm = || SharedRegion::leak_zeroed(region_size(true, SOUND_PCM_QUEUE_CAPACITY));
        let (a, b, c, d) = (cmd(), cmd(), pcm(), pcm());
        let state = SharedRegion::leak_zeroed(4096);
        let data = SharedRegion::leak_zeroed(8 * 4096);
        let ours = SoundQueues::from_sddf_names(a.clone(), b.clone(), c.clone(), d.clone());
        let theirs = SoundQueues::from_sddf_names(a, b, c, d).unwrap();
        let virt = Virt {
            q: theirs,
            state: SoundSharedStateHandle::new(state.clone()).unwrap(),
            data: data.clone(),
        };
        let mut s = SoundSharedState { streams: 2, ..Default::default() };
        s.stream_info[0] = info(SoundDirection::Output);
        s.stream_info[1] = info(SoundDirection::Input);
        virt.state.write(&s).unwrap();
        virt.state.set_ready(true);
        let state = SoundSharedStateHandle::new(state).unwrap();
        let client = SddfSound::new(ours.unwrap(), state, data, CH, Recorder::default());
        (client, virt)
    }

    fn params() -> PcmParams {
        PcmParams { buffer_bytes: 8192, period_bytes: 4096, channels: 2, format: 5, rate: 7 }
    }

    /// Stream 0 taken and prepared.
    fn prepared() -> (SddfSound<Recorder>, Virt) {
        let (mut c, mut v) = connect();
        v.ok(&mut c, 0, PcmCommand::SetParams(params()));
        v.ok(&mut c, 0, PcmCommand::Prepare);
        (c, v)
    }

    /// Allocates a cell, fills it with `byte` and submits `len` bytes of it with `token`.
    fn piece(c: &mut SddfSound<Recorder>, stream: u32, byte: u8, token: u32) -> BufferId {
        let b = c.alloc().unwrap();
        c.write_buffer(b, 0, &[byte; 64]).unwrap();
        c.submit(stream, b, 64, token).unwrap();
        b
    }

    fn done(token: u32, status: BackendStatus, len: u32, latency: u32) -> Option<Completion> {
        Some(Completion::Pcm(PcmDone { token, status, len, latency_bytes: latency }))
    }

    #[test]
    fn streams_come_from_the_shared_state_once_ready() {
        let (c, _) = connect();
        assert_eq!(c.streams().len(), 2);
        assert_eq!(c.streams()[0].direction, Direction::Output);
        assert_eq!(c.streams()[1].direction, Direction::Input);
        assert_eq!((c.streams()[0].formats, c.streams()[0].rates), (1 << 5, 1 << 7));
    }

    #[test]
    fn streams_wait_for_ready_and_a_bad_entry_ends_the_list() {
        let (mut c, v) = connect();
        v.state.set_ready(false);
        c.have_state = false;
        assert!(!c.refresh() || c.streams().is_empty());
        let mut s = SoundSharedState { streams: 1000, ..Default::default() };
        s.stream_info[0] = info(SoundDirection::Output);
        s.stream_info[1] = SoundPcmInfo { direction: 7, ..info(SoundDirection::Output) };
        v.state.write(&s).unwrap();
        assert!(!c.refresh());
        v.state.set_ready(true);
        assert!(c.refresh());
        assert_eq!(c.streams().len(), 1, "entry 1 has no direction");
        s.stream_info[0] = SoundPcmInfo { channels_min: 3, ..info(SoundDirection::Output) };
        v.state.write(&s).unwrap();
        assert!(c.refresh());
        assert_eq!(c.streams().len(), 1, "copied once");
    }

    #[test]
    fn commands_map_to_sddf_codes_one_at_a_time() {
        let (mut c, mut v) = connect();
        c.command(0, PcmCommand::SetParams(params())).unwrap();
        assert_eq!(c.command(0, PcmCommand::Prepare), Err(BackendBusy), "one at a time");
        c.notify();
        c.notify();
        assert_eq!(c.notifier().0, [CH], "one notification per batch");
        let take = v.take_cmd();
        assert_eq!((take.code(), take.stream_id), (Some(SoundCmdCode::Take), 0));
        assert_eq!(take.set_params(), SoundPcmSetParams { channels: 2, format: 5, rate: 7 });
        v.answer_cmd(take, SoundStatus::Busy);
        assert_eq!(c.complete(), Some(Completion::Command(BackendStatus::IoErr)), "BUSY");
        for (cmd, code) in [
            (PcmCommand::Prepare, SoundCmdCode::Prepare),
            (PcmCommand::Start, SoundCmdCode::Start),
            (PcmCommand::Stop, SoundCmdCode::Stop),
            (PcmCommand::Release, SoundCmdCode::Release),
        ] {
            c.command(3, cmd).unwrap();
            let req = v.take_cmd();
            assert_eq!((req.code(), req.stream_id), (Some(code), 3));
            assert_ne!(req.cookie, take.cookie, "fresh cookie");
            v.answer_cmd(req, SoundStatus::NotSupp);
            assert_eq!(c.complete(), Some(Completion::Command(BackendStatus::NotSupp)));
        }
    }

    #[test]
    fn command_answers_for_nothing_in_flight_are_dropped() {
        let (mut c, mut v) = connect();
        v.answer_cmd(SoundCmd::new(SoundCmdCode::Start, 0, 0), SoundStatus::Ok);
        assert_eq!(c.complete(), None, "nothing sent");
        c.command(0, PcmCommand::Prepare).unwrap();
        let req = v.take_cmd();
        v.answer_cmd(SoundCmd { cookie: req.cookie + 1, ..req }, SoundStatus::Ok);
        v.answer_cmd(SoundCmd { stream_id: 1, ..req }, SoundStatus::Ok);
        v.q.cmd_res.enqueue(SoundCmd { args: [9, 9, 9, 9], ..req }).unwrap();
        assert_eq!(c.complete(), Some(Completion::Command(BackendStatus::IoErr)), "bad status");
        v.answer_cmd(req, SoundStatus::Ok);
        assert_eq!(c.complete(), None, "answered already");
    }

    #[test]
    fn running_pieces_name_their_cell_and_complete_out_of_order() {
        let (mut c, mut v) = prepared();
        v.ok(&mut c, 0, PcmCommand::Start);
        let a = piece(&mut c, 0, 0xa1, 10);
        let b = piece(&mut c, 0, 0xb2, 11);
        let (pa, pb) = (v.take_pcm(), v.take_pcm());
        assert_eq!((pa.io_or_offset, pa.len, pa.stream_id), (0, 64, 0));
        assert_eq!(pb.io_or_offset, 4096);
        let mut byte = [0u8; 1];
        v.data.read(pb.io_or_offset as usize, &mut byte).unwrap();
        assert_eq!(byte, [0xb2]);
        assert!(v.q.pcm_req.is_empty(), "no replay once running");
        v.answer_pcm(pb, SoundStatus::Ok, 300);
        v.answer_pcm(pa, SoundStatus::IoErr, 200);
        assert_eq!(c.complete(), done(11, BackendStatus::Ok, 64, 300));
        assert_eq!(c.complete(), done(10, BackendStatus::IoErr, 64, 200));
        assert_eq!(c.complete(), None);
        c.free(a);
        c.free(b);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn pieces_before_start_are_sent_again_after_it_and_reported_once() {
        let (mut c, mut v) = prepared();
        piece(&mut c, 0, 1, 20);
        piece(&mut c, 0, 2, 21);
        let firsts = [v.take_pcm(), v.take_pcm()];
        // The driver answers the first sends as playback begins...
        v.ok(&mut c, 0, PcmCommand::Start);
        v.answer_pcm(firsts[0], SoundStatus::Ok, 1);
        assert_eq!(c.complete(), None, "the replay is still to be answered");
        // ... and the replays went out in order right after START.
        let replays = [v.take_pcm(), v.take_pcm()];
        assert_eq!(replays.map(|r| r.io_or_offset), [0, 4096]);
        assert_ne!(replays[0].cookie, firsts[0].cookie);
        // Pieces after START follow the replays.
        piece(&mut c, 0, 3, 22);
        assert_eq!(v.take_pcm().io_or_offset, 8192);
        v.answer_pcm(firsts[1], SoundStatus::Ok, 2);
        v.answer_pcm(replays[0], SoundStatus::Ok, 7);
        v.answer_pcm(replays[1], SoundStatus::Ok, 8);
        assert_eq!(c.complete(), done(20, BackendStatus::Ok, 64, 7));
        assert_eq!(c.complete(), done(21, BackendStatus::Ok, 64, 8));
        assert_eq!(c.complete(), None);
        assert_eq!(c.in_flight(), 1, "the piece after START");
    }

    #[test]
    fn replays_wait_for_room_and_later_pieces_wait_for_replays() {
        let (mut c, mut v) = prepared();
        piece(&mut c, 0, 1, 30);
        let first = v.take_pcm();
        // Fill the request ring so that the replay cannot go out at START.
        let filler = SoundPcm::new(0xdead, 9, 0, 0);
        let mut n = 0;
        while c.queues.pcm_req.enqueue(filler).is_ok() {
            n += 1;
        }
        assert_eq!(n, SOUND_PCM_QUEUE_CAPACITY);
        v.ok(&mut c, 0, PcmCommand::Start);
        let b = c.alloc().unwrap();
        assert_eq!(c.submit(0, b, 64, 31), Err(BackendBusy), "full ring");
        v.take_pcm();
        assert_eq!(c.submit(0, b, 64, 31), Err(BackendBusy), "the replay took the room");
        while v.q.pcm_req.dequeue().is_some_and(|p| p.cookie == 0xdead) {}
        c.submit(0, b, 64, 31).unwrap();
        v.answer_pcm(first, SoundStatus::Ok, 0);
        assert_eq!(c.complete(), None);
        assert_eq!(c.in_flight(), 2);
    }

    #[test]
    fn release_before_start_drops_the_replays() {
        let (mut c, mut v) = prepared();
        piece(&mut c, 0, 1, 40);
        piece(&mut c, 0, 2, 41);
        let first = v.take_pcm();
        v.answer_pcm(first, SoundStatus::Ok, 3);
        assert_eq!(c.complete(), None, "a replay is owed");
        v.ok(&mut c, 0, PcmCommand::Release);
        assert_eq!(c.complete(), done(40, BackendStatus::Ok, 64, 3));
        assert_eq!(c.complete(), None);
        let second = v.take_pcm();
        v.answer_pcm(second, SoundStatus::IoErr, 0);
        assert_eq!(c.complete(), done(41, BackendStatus::IoErr, 64, 0));
        assert!(v.q.pcm_req.is_empty(), "nothing replayed");
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn without_replay_a_piece_before_start_is_sent_once() {
        let (c, mut v) = connect();
        let mut c = c.without_replay();
        v.ok(&mut c, 0, PcmCommand::SetParams(params()));
        v.ok(&mut c, 0, PcmCommand::Prepare);
        piece(&mut c, 0, 1, 50);
        v.ok(&mut c, 0, PcmCommand::Start);
        let first = v.take_pcm();
        assert!(v.q.pcm_req.is_empty());
        v.answer_pcm(first, SoundStatus::Ok, 4);
        assert_eq!(c.complete(), done(50, BackendStatus::Ok, 64, 4));
    }

    #[test]
    fn capture_is_not_replayed_and_reports_what_was_recorded() {
        let (mut c, mut v) = connect();
        v.ok(&mut c, 1, PcmCommand::SetParams(params()));
        v.ok(&mut c, 1, PcmCommand::Prepare);
        let b = c.alloc().unwrap();
        c.submit(1, b, 4096, 60).unwrap();
        v.ok(&mut c, 1, PcmCommand::Start);
        let req = v.take_pcm();
        assert!(v.q.pcm_req.is_empty(), "no replay for capture");
        v.data.write(req.io_or_offset as usize + 5, &[0x77]).unwrap();
        v.answer_pcm(SoundPcm { len: 9000, ..req }, SoundStatus::Ok, 1);
        assert_eq!(c.complete(), done(60, BackendStatus::Ok, 4096, 1), "len clamped");
        let mut byte = [0u8; 1];
        c.read_buffer(b, 5, &mut byte).unwrap();
        assert_eq!(byte, [0x77]);
    }

    #[test]
    fn hostile_pcm_answers_are_dropped() {
        let (mut c, mut v) = prepared();
        v.ok(&mut c, 0, PcmCommand::Start);
        let b = piece(&mut c, 0, 1, 70);
        let req = v.take_pcm();
        for bad in [
            SoundPcm { cookie: req.cookie ^ 0x1_0000, ..req }, // stale epoch
            SoundPcm { cookie: 0xffff, ..req },                // no such cell
            SoundPcm { cookie: req.cookie + 1, ..req },        // a cell not sent
            SoundPcm { cookie: req.cookie | REPLAY, ..req },   // no replay owed
            SoundPcm { stream_id: 1, ..req },                  // another stream
        ] {
            v.answer_pcm(bad, SoundStatus::Ok, 0);
        }
        assert_eq!(c.complete(), None);
        v.q.pcm_res.enqueue(SoundPcm { status: 99, ..req }).unwrap();
        v.answer_pcm(req, SoundStatus::Ok, 0);
        assert_eq!(c.complete(), done(70, BackendStatus::IoErr, 64, 0), "unknown status");
        assert_eq!(c.complete(), None, "answered once only");
        c.free(b);
        // The cell is used again with a new epoch: the old cookie is stale.
        let b2 = piece(&mut c, 0, 2, 71);
        assert_eq!(b2, b);
        v.answer_pcm(req, SoundStatus::Ok, 0);
        assert_eq!(c.complete(), None);
    }

    #[test]
    fn cells_stay_inside_the_region_and_are_not_freed_in_flight() {
        let (mut c, _v) = prepared();
        let cells: Vec<_> = (0..8).map(|_| c.alloc().unwrap()).collect();
        assert_eq!(c.alloc(), None, "8 cells");
        assert_eq!(c.write_buffer(cells[7], 4095, &[0; 2]), Err(BufferRange));
        assert_eq!(c.write_buffer(BufferId(8), 0, &[0]), Err(BufferRange));
        assert_eq!(c.read_buffer(cells[0], usize::MAX, &mut [0]), Err(BufferRange));
        assert_eq!(c.submit(0, cells[0], 4097, 1), Err(BackendBusy), "longer than a cell");
        c.submit(0, cells[0], 16, 1).unwrap();
        assert_eq!(c.submit(0, cells[0], 16, 2), Err(BackendBusy), "already sent");
        c.free(cells[0]);
        c.free(cells[1]);
        assert_eq!(c.alloc(), Some(cells[1]), "cell 0 is still with the virtualiser");
    }

    #[test]
    fn a_full_pcm_ring_is_busy_and_loses_nothing() {
        let (c, mut v) = connect();
        let mut c = c.without_replay();
        v.ok(&mut c, 0, PcmCommand::SetParams(params()));
        v.ok(&mut c, 0, PcmCommand::Prepare);
        v.ok(&mut c, 0, PcmCommand::Start);
        let filler = SoundPcm::new(0xdead, 9, 0, 0);
        while c.queues.pcm_req.enqueue(filler).is_ok() {}
        let b = c.alloc().unwrap();
        assert_eq!(c.submit(0, b, 64, 80), Err(BackendBusy));
        assert_eq!(c.in_flight(), 0);
        v.take_pcm();
        c.submit(0, b, 64, 80).unwrap();
    }

    /// The device's teardown after a reset mid-playback: STOP and RELEASE while pieces are
    /// out; the virtualiser fails what it did not play; nothing is left behind.
    #[test]
    fn reset_mid_playback_leaves_nothing_behind() {
        let (mut c, mut v) = prepared();
        let pre = piece(&mut c, 0, 1, 90);
        v.ok(&mut c, 0, PcmCommand::Start);
        let later = piece(&mut c, 0, 2, 91);
        let sent: Vec<_> = std::iter::from_fn(|| v.q.pcm_req.dequeue()).collect();
        assert_eq!(sent.len(), 3, "first send, replay, later piece");
        v.answer_pcm(sent[0], SoundStatus::Ok, 1);
        v.ok(&mut c, 0, PcmCommand::Stop);
        for p in &sent[1..] {
            v.answer_pcm(*p, SoundStatus::IoErr, 0);
        }
        v.ok(&mut c, 0, PcmCommand::Release);
        let mut tokens = Vec::new();
        while let Some(Completion::Pcm(d)) = c.complete() {
            assert_eq!(d.status, BackendStatus::IoErr);
            tokens.push(d.token);
        }
        tokens.sort();
        assert_eq!(tokens, [90, 91]);
        c.free(pre);
        c.free(later);
        assert_eq!((c.in_flight(), c.command.is_some()), (0, false));
        assert_eq!((0..8).filter_map(|_| c.alloc()).count(), 8, "every cell free");
    }
}
