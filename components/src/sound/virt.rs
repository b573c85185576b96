//! The sound virtualiser: several clients share one sound driver (sDDF 0.7
//! sound protocol, sddf-abi.md §4, docs/sound.md "The virtualiser").
//!
//! A stream belongs to one client at a time: the first TAKE of a free
//! stream makes the sender its owner; the owner loses it with a successful
//! RELEASE or a failed TAKE. Commands and buffers of anyone else get
//! `BUSY` (stream owned by another client) or `BAD_MSG` (stream not taken,
//! or an id past the driver's streams). A PCM buffer must name a whole
//! cell of the client's data region (4 KiB aligned offset, `1..=4096`
//! bytes, inside the region): else `BAD_MSG`.
//!
//! What passes is forwarded under the virtualiser's own cookie (a slot
//! remembering the client, its cookie, stream and offset), with the
//! buffer's offset turned into the I/O address of the client's data
//! region. Answers go back with the client's cookie, stream and offset,
//! whatever the driver wrote there. A client gets no more commands or
//! buffers forwarded, and no more errors answered, than its response rings
//! can take, so no answer is ever dropped; a request stays in the client's
//! ring while it waits. Before a command of a client is forwarded, every
//! PCM buffer of that client that is visible is forwarded first, so the
//! driver sees buffers and commands in the order the client sent them (the
//! sDDF rule about buffers sent before START depends on it).
//!
//! The driver's stream description is copied into each client's state
//! region once it is ready (at most [`MAX_STREAMS`] streams). Data is not
//! touched: on hardware without coherent DMA the cache maintenance sDDF's
//! C virtualiser does would have to be added.

use crate::Notify;
use sddf_bindings::sound::{
    SoundCmd, SoundCmdCode, SoundPcm, SoundQueues, SoundSharedStateHandle, SoundStatus,
    SOUND_PCM_BUFFER_SIZE,
};

/// Streams the virtualiser handles (ids `0..16`), as sDDF's C virtualiser.
pub const MAX_STREAMS: usize = 16;

/// One client, as the system description wires it.
pub struct Client {
    /// The client's rings (we consume requests, produce responses).
    pub queues: SoundQueues,
    /// The client's copy of the stream state (we publish it).
    pub state: SoundSharedStateHandle,
    /// I/O (physical) address of the client's data region.
    pub data_io: u64,
    /// Size of the client's data region in bytes.
    pub data_size: u64,
    /// Our channel to the client.
    pub channel: u8,
}

/// The driver's side.
pub struct Driver {
    /// The driver's rings (we produce requests, consume responses).
    pub queues: SoundQueues,
    /// The driver's stream state (we read it).
    pub state: SoundSharedStateHandle,
    /// Our channel to the driver.
    pub channel: u8,
}

struct ClientState {
    c: Client,
    /// Commands forwarded and not yet answered.
    cmds: u32,
    /// Buffers forwarded and not yet answered.
    pcms: u32,
}

#[derive(Clone, Copy)]
struct CmdSlot {
    client: u8,
    cookie: u32,
    stream: u32,
    code: SoundCmdCode,
}

#[derive(Clone, Copy)]
struct PcmSlot {
    client: u8,
    cookie: u32,
    stream: u32,
    offset: u64,
    len: u32,
}

/// What the virtualiser has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests refused (bad stream, not the owner, bad buffer, bad code).
    pub refused: u64,
    /// Driver answers with a cookie we never gave out (dropped).
    pub stray_answers: u64,
}

/// The virtualiser: up to `C` clients, `S` buffers in flight at the driver.
pub struct SoundVirt<const C: usize, const S: usize> {
    driver: Driver,
    clients: [Option<ClientState>; C],
    owners: [Option<u8>; MAX_STREAMS],
    streams: u32,
    ready: bool,
    cmd_slots: [Option<CmdSlot>; 64],
    pcm_slots: [Option<PcmSlot>; S],
    stats: Stats,
}

impl<const C: usize, const S: usize> SoundVirt<C, S> {
    /// A virtualiser for `clients` (client `i` is `clients[i]`).
    pub fn new(driver: Driver, clients: [Option<Client>; C]) -> Self {
        SoundVirt {
            driver,
            clients: clients.map(|c| c.map(|c| ClientState { c, cmds: 0, pcms: 0 })),
            owners: [None; MAX_STREAMS],
            streams: 0,
            ready: false,
            cmd_slots: [None; 64],
            pcm_slots: [None; S],
            stats: Stats::default(),
        }
    }

    /// What has been counted.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The owner of `stream`, if any.
    pub fn owner(&self, stream: u32) -> Option<u8> {
        self.owners.get(stream as usize).copied().flatten()
    }

    /// Handles everything pending on every ring (call on any notification);
    /// returns the channels to notify.
    pub fn handle(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        if !self.ready && !self.publish_state(&mut notify) {
            return notify;
        }
        self.driver_answers_in(&mut notify);
        for i in 0..C {
            self.client_requests(i, &mut notify);
        }
        // Answers to a client free room for more of its requests.
        self.driver_answers_in(&mut notify);
        notify
    }

    /// Copies the driver's stream state to every client once it is ready.
    fn publish_state(&mut self, notify: &mut Notify) -> bool {
        let Some(mut state) = self.driver.state.read() else { return false };
        let streams = state.stream_info().len().min(MAX_STREAMS);
        state.streams = streams as u32;
        for s in self.clients.iter().flatten() {
            if s.c.state.write(&state).is_ok() {
                s.c.state.set_ready(true);
                notify.add(s.c.channel);
            }
        }
        self.streams = streams as u32;
        self.ready = true;
        true
    }

    /// Routes the driver's answers back to their clients.
    fn driver_answers_in(&mut self, notify: &mut Notify) {
        let mut any = false;
        while let Some(res) = self.driver.queues.cmd_res.dequeue() {
            any = true;
            let Some(slot) = self.cmd_slots.get_mut(res.cookie as usize).and_then(Option::take)
            else {
                self.stray(res.cookie);
                continue;
            };
            let status = res.status().unwrap_or(SoundStatus::IoErr);
            match (slot.code, status) {
                (SoundCmdCode::Take, s) if s != SoundStatus::Ok => self.disown(slot),
                (SoundCmdCode::Release, SoundStatus::Ok) => self.disown(slot),
                _ => {}
            }
            let answer = SoundCmd::new(slot.code, slot.cookie, slot.stream).respond(status);
            if let Some(s) = self.clients[usize::from(slot.client)].as_mut() {
                s.cmds -= 1;
                // Room was kept for it when the command was forwarded.
                let _ = s.c.queues.cmd_res.enqueue(answer);
                notify.add(s.c.channel);
            }
        }
        while let Some(res) = self.driver.queues.pcm_res.dequeue() {
            any = true;
            let Some(slot) = self.pcm_slots.get_mut(res.cookie as usize).and_then(Option::take)
            else {
                self.stray(res.cookie);
                continue;
            };
            let status = res.status().unwrap_or(SoundStatus::IoErr);
            let mut answer =
                SoundPcm::new(slot.cookie, slot.stream, slot.offset, res.len.min(slot.len));
            answer = answer.respond(status, res.latency_bytes);
            if let Some(s) = self.clients[usize::from(slot.client)].as_mut() {
                s.pcms -= 1;
                let _ = s.c.queues.pcm_res.enqueue(answer);
                notify.add(s.c.channel);
            }
        }
        if any {
            notify.add(self.driver.channel);
        }
    }

    fn stray(&mut self, cookie: u32) {
        self.stats.stray_answers += 1;
        if self.stats.stray_answers.is_power_of_two() {
            log::warn!(target: "snd", "driver answered unknown cookie {cookie} ({} times)", self.stats.stray_answers);
        }
    }

    fn disown(&mut self, slot: CmdSlot) {
        if let Some(o) = self.owners.get_mut(slot.stream as usize) {
            if *o == Some(slot.client) {
                *o = None;
            }
        }
    }

    /// Takes a client's buffers, then its commands, each command only
    /// once every buffer sent before it is forwarded.
    fn client_requests(&mut self, i: usize, notify: &mut Notify) {
        loop {
            let blocked = self.client_pcms(i, notify);
            let Some(s) = self.clients[i].as_mut() else { return };
            let Some(cmd) = s.c.queues.cmd_req.peek() else { return };
            if blocked || s.c.queues.cmd_res.free() <= s.cmds {
                return;
            }
            match self.check_cmd(i as u8, &cmd) {
                Err(status) => self.answer_cmd(i, cmd, status, notify),
                Ok(code) => {
                    if !self.forward_cmd(i as u8, cmd, code) {
                        return;
                    }
                    notify.add(self.driver.channel);
                }
            }
            if let Some(s) = self.clients[i].as_mut() {
                s.c.queues.cmd_req.skip();
                notify.add(s.c.channel);
            }
        }
    }

    /// Forwards or refuses the client's buffers; true if some are left
    /// (no room at the driver or in the client's response ring).
    fn client_pcms(&mut self, i: usize, notify: &mut Notify) -> bool {
        loop {
            let Some(s) = self.clients[i].as_mut() else { return false };
            let Some(pcm) = s.c.queues.pcm_req.peek() else { return false };
            if s.c.queues.pcm_res.free() <= s.pcms {
                return true;
            }
            match self.check_pcm(i as u8, &pcm) {
                Err(status) => {
                    self.stats.refused += 1;
                    if let Some(s) = self.clients[i].as_mut() {
                        let _ = s.c.queues.pcm_res.enqueue(pcm.respond(status, 0));
                    }
                }
                Ok(io) => {
                    if !self.forward_pcm(i as u8, pcm, io) {
                        return true;
                    }
                    notify.add(self.driver.channel);
                }
            }
            if let Some(s) = self.clients[i].as_mut() {
                s.c.queues.pcm_req.skip();
                notify.add(s.c.channel);
            }
        }
    }

    /// The stream's owner rule for a request of `client` on `stream`.
    fn check_owner(&self, client: u8, stream: u32, take: bool) -> Result<(), SoundStatus> {
        if stream >= self.streams {
            return Err(SoundStatus::BadMsg);
        }
        match self.owners[stream as usize] {
            Some(o) if o == client => Ok(()),
            Some(_) => Err(SoundStatus::Busy),
            None if take => Ok(()),
            None => Err(SoundStatus::BadMsg),
        }
    }

    fn check_cmd(&mut self, client: u8, cmd: &SoundCmd) -> Result<SoundCmdCode, SoundStatus> {
        let result = match cmd.code() {
            None => Err(SoundStatus::BadMsg),
            Some(code) => {
                self.check_owner(client, cmd.stream_id, code == SoundCmdCode::Take).map(|_| code)
            }
        };
        if let Err(status) = result {
            self.stats.refused += 1;
            if self.stats.refused.is_power_of_two() {
                log::warn!(target: "snd", "client {client}: command {} on stream {} refused: {status:?} ({} refusals)",
                    cmd.code, cmd.stream_id, self.stats.refused);
            }
        }
        result
    }

    /// The I/O address of a buffer, if the client may send it.
    fn check_pcm(&self, client: u8, pcm: &SoundPcm) -> Result<u64, SoundStatus> {
        self.check_owner(client, pcm.stream_id, false)?;
        let s = self.clients[usize::from(client)].as_ref().ok_or(SoundStatus::BadMsg)?;
        let cell = SOUND_PCM_BUFFER_SIZE as u64;
        let fits = pcm
            .io_or_offset
            .checked_add(u64::from(pcm.len))
            .is_some_and(|end| end <= s.c.data_size);
        if pcm.io_or_offset % cell != 0
            || pcm.len == 0
            || pcm.len as usize > SOUND_PCM_BUFFER_SIZE
            || !fits
        {
            return Err(SoundStatus::BadMsg);
        }
        s.c.data_io.checked_add(pcm.io_or_offset).ok_or(SoundStatus::BadMsg)
    }

    fn answer_cmd(&mut self, i: usize, cmd: SoundCmd, status: SoundStatus, notify: &mut Notify) {
        if let Some(s) = self.clients[i].as_mut() {
            let code = cmd.code;
            let _ = s.c.queues.cmd_res.enqueue(SoundCmd { code, ..cmd }.respond(status));
            notify.add(s.c.channel);
        }
    }

    /// Sends a checked command to the driver; false if there is no room.
    fn forward_cmd(&mut self, client: u8, cmd: SoundCmd, code: SoundCmdCode) -> bool {
        let Some(free) = self.cmd_slots.iter().position(Option::is_none) else { return false };
        let out = SoundCmd { cookie: free as u32, ..cmd };
        if self.driver.queues.cmd_req.enqueue(out).is_err() {
            return false;
        }
        let stream = cmd.stream_id;
        self.cmd_slots[free] = Some(CmdSlot { client, cookie: cmd.cookie, stream, code });
        if code == SoundCmdCode::Take {
            self.owners[stream as usize] = Some(client);
        }
        if let Some(s) = self.clients[usize::from(client)].as_mut() {
            s.cmds += 1;
        }
        true
    }

    /// Sends a checked buffer to the driver; false if there is no room.
    fn forward_pcm(&mut self, client: u8, pcm: SoundPcm, io: u64) -> bool {
        let Some(free) = self.pcm_slots.iter().position(Option::is_none) else { return false };
        let out = SoundPcm::new(free as u32, pcm.stream_id, io, pcm.len);
        if self.driver.queues.pcm_req.enqueue(out).is_err() {
            return false;
        }
        self.pcm_slots[free] = Some(PcmSlot {
            client,
            cookie: pcm.cookie,
            stream: pcm.stream_id,
            offset: pcm.io_or_offset,
            len: pcm.len,
        });
        if let Some(s) = self.clients[usize::from(client)].as_mut() {
            s.pcms += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests;
