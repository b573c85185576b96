//! The virtualiser with two clients against a fake driver.

use super::*;
use sddf_bindings::sound::{
    format, region_size, SoundPcmInfo, SoundPcmRate, SoundPcmSetParams, SoundSharedState,
    SOUND_CMD_QUEUE_CAPACITY, SOUND_PCM_QUEUE_CAPACITY,
};
use sddf_bindings::SharedRegion;
use std::vec::Vec;

const DATA: u64 = 64 * 4096;
const IO: [u64; 2] = [0x4000_0000, 0x5000_0000];

/// Both ends of one connection.
fn connection() -> (SoundQueues, SoundQueues) {
    let cmd = || SharedRegion::leak_zeroed(region_size(false, SOUND_CMD_QUEUE_CAPACITY));
    let pcm = || SharedRegion::leak_zeroed(region_size(true, SOUND_PCM_QUEUE_CAPACITY));
    let r = [cmd(), cmd(), pcm(), pcm()];
    let [a, b, c, d] = r.clone();
    let [e, f, g, h] = r;
    (SoundQueues::new(a, b, c, d).unwrap(), SoundQueues::new(e, f, g, h).unwrap())
}

/// Two handles on one state region.
fn state() -> (SoundSharedStateHandle, SoundSharedStateHandle) {
    let r = SharedRegion::leak_zeroed(size_of::<SoundSharedState>());
    (SoundSharedStateHandle::new(r.clone()).unwrap(), SoundSharedStateHandle::new(r).unwrap())
}

struct Rig {
    virt: SoundVirt<2, 512>,
    /// The clients' ends and their state copies.
    clients: Vec<(SoundQueues, SoundSharedStateHandle)>,
    /// The driver's end.
    driver: SoundQueues,
}

fn rig(streams: u32) -> Rig {
    let (driver, virt_side) = connection();
    let (drv_state, drv_state_virt) = state();
    let mut info = SoundSharedState { streams, ..SoundSharedState::default() };
    for i in info.stream_info.iter_mut() {
        *i = SoundPcmInfo {
            formats: 1 << format::S16,
            rates: 1 << SoundPcmRate::Hz48000 as u8,
            direction: 0,
            channels_min: 2,
            channels_max: 2,
            pad0: [0; 5],
        };
    }
    let mut clients = Vec::new();
    let mut wired = [None, None];
    for (i, slot) in wired.iter_mut().enumerate() {
        let (mine, theirs) = connection();
        let (st, copy) = state();
        *slot = Some(Client {
            queues: theirs,
            state: st,
            data_io: IO[i],
            data_size: DATA,
            channel: 1 + i as u8,
        });
        clients.push((mine, copy));
    }
    let virt =
        SoundVirt::new(Driver { queues: virt_side, state: drv_state_virt, channel: 0 }, wired);
    drv_state.write(&info).unwrap();
    drv_state.set_ready(true);
    Rig { virt, clients, driver }
}

fn params() -> SoundPcmSetParams {
    SoundPcmSetParams { channels: 2, format: format::S16, rate: SoundPcmRate::Hz48000 as u8 }
}

impl Rig {
    fn send(&mut self, c: usize, cmd: SoundCmd) -> Notify {
        self.clients[c].0.cmd_req.enqueue(cmd).unwrap();
        self.virt.handle()
    }

    fn answers(&mut self, c: usize) -> Vec<(u32, Option<SoundStatus>)> {
        let q = &mut self.clients[c].0.cmd_res;
        core::iter::from_fn(|| q.dequeue()).map(|r| (r.cookie, r.status())).collect()
    }

    fn pcm_answers(&mut self, c: usize) -> Vec<SoundPcm> {
        let q = &mut self.clients[c].0.pcm_res;
        core::iter::from_fn(|| q.dequeue()).collect()
    }

    /// The fake driver answers every command with `status` and every
    /// buffer OK with latency 7.
    fn driver_answers(&mut self, status: SoundStatus) -> (Vec<SoundCmd>, Vec<SoundPcm>) {
        let (mut cmds, mut pcms) = (Vec::new(), Vec::new());
        while let Some(c) = self.driver.cmd_req.dequeue() {
            self.driver.cmd_res.enqueue(c.respond(status)).unwrap();
            cmds.push(c);
        }
        while let Some(p) = self.driver.pcm_req.dequeue() {
            self.driver.pcm_res.enqueue(p.respond(SoundStatus::Ok, 7)).unwrap();
            pcms.push(p);
        }
        self.virt.handle();
        (cmds, pcms)
    }

    fn take(&mut self, c: usize, stream: u32) {
        self.send(c, SoundCmd::take(100, stream, params()));
        self.driver_answers(SoundStatus::Ok);
        assert_eq!(self.answers(c), [(100, Some(SoundStatus::Ok))]);
    }
}

#[test]
fn publishes_the_driver_state_to_every_client() {
    let mut r = rig(40);
    let n = r.virt.handle();
    assert!(n.contains(1) && n.contains(2));
    for (_, st) in &r.clients {
        let s = st.read().expect("ready");
        assert_eq!(s.streams, MAX_STREAMS as u32, "clamped to the streams we route");
        assert_eq!(s.stream_info[0].channels_max, 2);
    }
}

#[test]
fn waits_for_the_driver_state() {
    let mut r = rig(1);
    r.virt.driver.state.set_ready(false);
    r.clients[0].0.cmd_req.enqueue(SoundCmd::take(1, 0, params())).unwrap();
    assert!(r.virt.handle().is_empty());
    assert!(r.driver.cmd_req.is_empty() && r.clients[0].1.read().is_none());
    r.virt.driver.state.set_ready(true);
    r.virt.handle();
    assert_eq!(r.driver.cmd_req.len(), 1);
}

#[test]
fn commands_go_through_with_translated_cookies() {
    let mut r = rig(2);
    r.send(0, SoundCmd::take(41, 1, params()));
    r.send(1, SoundCmd::take(41, 0, params()));
    let (cmds, _) = r.driver_answers(SoundStatus::Ok);
    assert_eq!(cmds.len(), 2);
    assert_ne!(cmds[0].cookie, cmds[1].cookie, "the driver sees our own cookies");
    assert_eq!((cmds[0].set_params(), cmds[0].stream_id), (params(), 1));
    assert_eq!(r.answers(0), [(41, Some(SoundStatus::Ok))]);
    assert_eq!(r.answers(1), [(41, Some(SoundStatus::Ok))]);
    assert_eq!((r.virt.owner(0), r.virt.owner(1)), (Some(1), Some(0)));
}

#[test]
fn a_stream_has_one_owner_until_released() {
    let mut r = rig(1);
    r.take(0, 0);
    r.send(1, SoundCmd::take(5, 0, params()));
    r.send(1, SoundCmd::new(SoundCmdCode::Start, 6, 0));
    assert_eq!(r.answers(1), [(5, Some(SoundStatus::Busy)), (6, Some(SoundStatus::Busy))]);
    assert!(r.driver.cmd_req.is_empty(), "nothing of client 1 reached the driver");
    r.send(0, SoundCmd::new(SoundCmdCode::Release, 7, 0));
    r.driver_answers(SoundStatus::Ok);
    assert_eq!(r.answers(0), [(7, Some(SoundStatus::Ok))]);
    assert_eq!(r.virt.owner(0), None);
    r.take(1, 0);
    assert_eq!(r.virt.owner(0), Some(1));
}

#[test]
fn a_failed_take_or_release_keeps_the_right_owner() {
    let mut r = rig(1);
    r.send(0, SoundCmd::take(1, 0, params()));
    assert_eq!(r.virt.owner(0), Some(0), "taken while the driver decides");
    r.driver_answers(SoundStatus::NotSupp);
    assert_eq!(r.answers(0), [(1, Some(SoundStatus::NotSupp))]);
    assert_eq!(r.virt.owner(0), None);
    r.take(0, 0);
    r.send(0, SoundCmd::new(SoundCmdCode::Release, 2, 0));
    r.driver_answers(SoundStatus::IoErr);
    assert_eq!(r.virt.owner(0), Some(0), "a failed RELEASE keeps the stream");
}

#[test]
fn hostile_commands_are_answered_with_errors() {
    let mut r = rig(2);
    r.send(0, SoundCmd::take(1, 2, params())); // past the driver's streams
    r.send(0, SoundCmd::take(2, u32::MAX, params()));
    r.send(0, SoundCmd::new(SoundCmdCode::Start, 3, 0)); // not taken
    r.send(0, SoundCmd { code: 99, cookie: 4, stream_id: 0, args: [0; 4] });
    let bad = Some(SoundStatus::BadMsg);
    assert_eq!(r.answers(0), [(1, bad), (2, bad), (3, bad), (4, bad)]);
    assert!(r.driver.cmd_req.is_empty());
    assert_eq!(r.virt.stats().refused, 4);
}

#[test]
fn buffers_are_translated_to_io_addresses_and_back() {
    let mut r = rig(1);
    r.take(1, 0);
    r.clients[1].0.pcm_req.enqueue(SoundPcm::new(9, 0, 3 * 4096, 4096)).unwrap();
    r.virt.handle();
    let out = r.driver.pcm_req.dequeue().unwrap();
    assert_eq!((out.io_or_offset, out.len, out.stream_id), (IO[1] + 3 * 4096, 4096, 0));
    // A driver that scribbles on the answer's address and stream.
    let answer = SoundPcm { io_or_offset: 0xdead, stream_id: 9, ..out };
    r.driver.pcm_res.enqueue(answer.respond(SoundStatus::Ok, 1234)).unwrap();
    r.virt.handle();
    let done = r.pcm_answers(1);
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].cookie, done[0].io_or_offset, done[0].stream_id), (9, 3 * 4096, 0));
    assert_eq!(
        (done[0].status(), done[0].latency_bytes, done[0].len),
        (Some(SoundStatus::Ok), 1234, 4096)
    );
}

#[test]
fn hostile_buffers_are_refused() {
    let mut r = rig(1);
    r.take(0, 0);
    let bad = [
        SoundPcm::new(1, 0, 4096 + 8, 100),     // unaligned
        SoundPcm::new(2, 0, DATA, 100),         // past the region
        SoundPcm::new(3, 0, DATA - 4096, 4097), // longer than a cell
        SoundPcm::new(4, 0, 0, 0),              // empty
        SoundPcm::new(5, 0, u64::MAX - 4095, 4096),
        SoundPcm::new(6, 3, 0, 4096), // no such stream
    ];
    for p in bad {
        r.clients[0].0.pcm_req.enqueue(p).unwrap();
    }
    r.clients[1].0.pcm_req.enqueue(SoundPcm::new(7, 0, 0, 4096)).unwrap(); // not the owner
    r.virt.handle();
    assert!(r.driver.pcm_req.is_empty());
    let st: Vec<_> = r.pcm_answers(0).iter().map(|p| (p.cookie, p.status())).collect();
    assert_eq!(st, (1..=6).map(|c| (c, Some(SoundStatus::BadMsg))).collect::<Vec<_>>());
    assert_eq!(r.pcm_answers(1)[0].status(), Some(SoundStatus::Busy));
}

#[test]
fn buffers_sent_before_a_command_reach_the_driver_first() {
    let mut r = rig(1);
    r.take(0, 0);
    r.clients[0].0.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Start, 1, 0)).unwrap();
    for i in 0..3 {
        r.clients[0].0.pcm_req.enqueue(SoundPcm::new(i, 0, u64::from(i) * 4096, 64)).unwrap();
    }
    r.virt.handle();
    // The driver sees all three buffers when it sees START.
    assert_eq!((r.driver.cmd_req.len(), r.driver.pcm_req.len()), (1, 3));
}

#[test]
fn a_full_response_ring_holds_requests_back_and_nothing_is_dropped() {
    let mut r = rig(1);
    r.take(0, 0);
    let cap = SOUND_PCM_QUEUE_CAPACITY;
    let send = |r: &mut Rig, from: u32| {
        for cookie in from..from + cap {
            let pcm = SoundPcm::new(cookie, 0, u64::from(cookie % 64) * 4096, 4);
            r.clients[0].0.pcm_req.enqueue(pcm).unwrap();
        }
        r.virt.handle();
    };
    let cookies = |v: Vec<SoundPcm>| v.iter().map(|p| p.cookie).collect::<Vec<_>>();
    send(&mut r, 0);
    assert_eq!(r.driver_answers(SoundStatus::Ok).1.len() as u32, cap);
    // The client reads no answers and sends a whole ring more: none of it
    // may reach the driver, whose answers would find no room.
    send(&mut r, cap);
    assert_eq!(r.driver_answers(SoundStatus::Ok).1.len(), 0);
    assert_eq!(cookies(r.pcm_answers(0)), (0..cap).collect::<Vec<_>>());
    r.virt.handle();
    assert_eq!(r.driver_answers(SoundStatus::Ok).1.len() as u32, cap);
    assert_eq!(cookies(r.pcm_answers(0)), (cap..2 * cap).collect::<Vec<_>>());
}

#[test]
fn errors_are_not_answered_into_a_full_ring() {
    let mut r = rig(1);
    for i in 0..SOUND_CMD_QUEUE_CAPACITY + 10 {
        if r.clients[0].0.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Start, i, 5)).is_err() {
            r.virt.handle();
            r.clients[0].0.cmd_req.enqueue(SoundCmd::new(SoundCmdCode::Start, i, 5)).unwrap();
        }
    }
    r.virt.handle();
    assert_eq!(r.clients[0].0.cmd_res.len(), SOUND_CMD_QUEUE_CAPACITY);
    assert_eq!(r.clients[0].0.cmd_req.free(), SOUND_CMD_QUEUE_CAPACITY - 10, "the rest wait");
    let got: Vec<_> = r.answers(0).iter().map(|a| a.0).collect();
    assert_eq!(got, (0..SOUND_CMD_QUEUE_CAPACITY).collect::<Vec<_>>());
    r.virt.handle();
    assert_eq!(r.answers(0).len(), 10);
}

#[test]
fn stray_driver_answers_are_dropped_and_counted() {
    let mut r = rig(1);
    r.driver
        .cmd_res
        .enqueue(SoundCmd::new(SoundCmdCode::Start, 63, 0).respond(SoundStatus::Ok))
        .unwrap();
    r.driver
        .cmd_res
        .enqueue(SoundCmd::new(SoundCmdCode::Start, 9999, 0).respond(SoundStatus::Ok))
        .unwrap();
    r.driver.pcm_res.enqueue(SoundPcm::new(u32::MAX, 0, 0, 0)).unwrap();
    r.virt.handle();
    assert_eq!(r.virt.stats().stray_answers, 3);
    assert!(r.clients.iter().all(|c| c.0.cmd_res.is_empty() && c.0.pcm_res.is_empty()));
}

#[test]
fn random_hostile_traffic_never_loses_an_answer() {
    let mut rng = fastrand::Rng::with_seed(0x50_7da);
    let mut r = rig(3);
    let (mut sent, mut got) = ([0u32; 2], [0u32; 2]);
    for _ in 0..20_000 {
        let c = rng.usize(..2);
        let q = &mut r.clients[c].0;
        match rng.u8(..4) {
            0 => {
                let code = rng.u32(..6);
                let cmd = SoundCmd {
                    code,
                    cookie: rng.u32(..),
                    stream_id: rng.u32(..5),
                    args: [2, 5, 7, 0],
                };
                sent[c] += u32::from(q.cmd_req.enqueue(cmd).is_ok());
            }
            1 => {
                let pcm = SoundPcm::new(
                    rng.u32(..),
                    rng.u32(..4),
                    rng.u64(..70) * 4096 + rng.u64(..2),
                    rng.u32(..4200),
                );
                sent[c] += u32::from(q.pcm_req.enqueue(pcm).is_ok());
            }
            2 => {
                got[c] += u32::from(q.cmd_res.dequeue().is_some())
                    + u32::from(q.pcm_res.dequeue().is_some());
            }
            _ => {
                let st = [SoundStatus::Ok, SoundStatus::IoErr][rng.usize(..2)];
                if let Some(cmd) = r.driver.cmd_req.dequeue() {
                    r.driver.cmd_res.enqueue(cmd.respond(st)).unwrap();
                }
                if let Some(p) = r.driver.pcm_req.dequeue() {
                    r.driver.pcm_res.enqueue(p.respond(st, 0)).unwrap();
                }
            }
        }
        r.virt.handle();
    }
    // Drain: the driver answers everything, the clients read everything.
    for _ in 0..20 {
        r.driver_answers(SoundStatus::Ok);
        for (c, got) in got.iter_mut().enumerate() {
            *got += r.answers(c).len() as u32 + r.pcm_answers(c).len() as u32;
        }
    }
    assert_eq!(got, sent, "every request answered exactly once");
}
