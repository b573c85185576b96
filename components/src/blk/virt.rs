//! The block virtualiser: several clients on one disk, each in its own
//! range of blocks.
//!
//! A client's request names an offset into its data region and a block
//! relative to its range; the virtualiser checks both and forwards the
//! request with the data's I/O address and the disk block, under an id of
//! its own (the slot that remembers the client and its id). Bad requests are
//! answered at once with `ERR_INVALID_PARAM` (sDDF's checks: known code,
//! `count != 0`, a 4 KiB aligned offset, data inside the region, blocks
//! inside the range). A client gets no more requests forwarded than its
//! response queue can answer, so no response is ever dropped, and a request
//! leaves the client's queue only once it is answered or in the driver's
//! queue: while the driver's queue is full it waits where it is.
//!
//! Until the driver publishes its storage info, requests wait in the
//! clients' queues; then each client's info (its range's size) is published.
//! Data is not touched here: on non-coherent hardware the cache maintenance
//! sDDF's C virtualiser does would have to be added.

use crate::Notify;
use sddf_bindings::blk::{
    BlkQueueHandle, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo, StorageInfoHandle,
    BLK_TRANSFER_SIZE,
};

/// A client's range of the disk, in 4 KiB blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// First disk block.
    pub start: u64,
    /// Length; `None`: to the end of the disk.
    pub blocks: Option<u64>,
}

impl Partition {
    /// The whole disk.
    pub const WHOLE_DISK: Partition = Partition { start: 0, blocks: None };
}

/// One client, as the system description wires it.
pub struct Client {
    /// The client's queues (we consume requests, produce responses).
    pub queue: BlkQueueHandle,
    /// The client's storage-info region (we publish it).
    pub info: StorageInfoHandle,
    /// I/O (physical) address of the client's data region.
    pub data_io: u64,
    /// Size of the client's data region in bytes.
    pub data_size: u64,
    /// Our channel to the client.
    pub channel: u8,
    /// The client's range of the disk.
    pub partition: Partition,
}

struct State {
    c: Client,
    /// Blocks in the client's range, once the disk size is known.
    blocks: u64,
    in_flight: u32,
}

/// The driver's side of the virtualiser.
pub struct Driver {
    /// The driver's queues (we produce requests, consume responses).
    pub queue: BlkQueueHandle,
    /// The driver's storage info (we read it).
    pub info: StorageInfoHandle,
    /// Our channel to the driver.
    pub channel: u8,
}

/// The block virtualiser: up to `C` clients, up to `S` requests in flight.
pub struct BlkVirt<const C: usize, const S: usize> {
    driver: Driver,
    clients: [Option<State>; C],
    slots: [Option<(u8, u32)>; S],
    ready: bool,
    next: usize,
}

impl<const C: usize, const S: usize> BlkVirt<C, S> {
    /// A virtualiser between `driver` and `clients`.
    pub fn new(driver: Driver, clients: [Option<Client>; C]) -> Self {
        BlkVirt {
            driver,
            clients: clients.map(|c| c.map(|c| State { c, blocks: 0, in_flight: 0 })),
            slots: [None; S],
            ready: false,
            next: 0,
        }
    }

    /// Whether the clients' infos are published.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Does all there is to do; call it on every notification.
    pub fn handle(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        if !self.ready {
            notify.merge(self.start());
            if !self.ready {
                return notify;
            }
        }
        notify.merge(self.responses());
        notify.merge(self.requests());
        notify
    }

    /// Publishes the clients' infos once the driver's is there.
    fn start(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let Some(disk) = self.driver.info.read() else { return notify };
        for s in self.clients.iter_mut().flatten() {
            let p = s.c.partition;
            let left = disk.capacity.saturating_sub(p.start);
            s.blocks = p.blocks.map_or(left, |b| b.min(left));
            if s.blocks == 0 {
                log::error!(target: "blk", "client on channel {}: its range starts past the disk's {} blocks", s.c.channel, disk.capacity);
            }
            let mut info = BlkStorageInfo::zeroed();
            info.read_only = disk.read_only;
            info.sector_size = disk.sector_size;
            info.block_size = disk.block_size;
            info.queue_depth = disk.queue_depth;
            info.capacity = s.blocks;
            if s.c.info.write(&info).is_ok() {
                s.c.info.set_ready(true);
                notify.add(s.c.channel);
            }
        }
        self.ready = true;
        notify
    }

    /// Driver responses back to their clients.
    fn responses(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        while let Some(resp) = self.driver.queue.dequeue_resp() {
            let Some((client, id)) = self.slots.get_mut(resp.id as usize).and_then(Option::take)
            else {
                log::error!(target: "blk", "driver answered unknown request {}", resp.id);
                continue;
            };
            let Some(s) = self.clients.get_mut(usize::from(client)).and_then(Option::as_mut) else {
                continue;
            };
            s.in_flight = s.in_flight.saturating_sub(1);
            let status = resp.status().unwrap_or(BlkRespStatus::ErrUnspec);
            if s.c.queue.enqueue_resp(BlkResp::new(status, resp.success_count, id)).is_err() {
                log::error!(target: "blk", "client {client}: response queue full, response {id} lost");
            }
            notify.add(s.c.channel);
        }
        notify
    }

    /// Client requests to the driver, clients taken round-robin.
    fn requests(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let mut forwarded = false;
        for k in 0..C {
            let i = (self.next + k) % C;
            let Some(s) = self.clients[i].as_mut() else { continue };
            loop {
                // Room for the answer, and a slot. A request leaves the client's queue only
                // once it is answered or in the driver's queue: when the driver's queue is
                // full (or its peer index corrupt) it waits there.
                if s.c.queue.resp_free() <= s.in_flight {
                    break;
                }
                let Some(slot) = self.slots.iter().position(Option::is_none) else { break };
                let Some(req) = s.c.queue.peek_req() else { break };
                match check(s, &req) {
                    Ok(fwd) => {
                        let fwd = BlkReq { id: slot as u32, ..fwd };
                        if self.driver.queue.enqueue_req(fwd).is_err() {
                            break;
                        }
                        s.c.queue.skip_req();
                        self.slots[slot] = Some((i as u8, req.id));
                        s.in_flight += 1;
                        forwarded = true;
                    }
                    Err(status) => {
                        if s.c.queue.enqueue_resp(BlkResp::new(status, 0, req.id)).is_err() {
                            break;
                        }
                        s.c.queue.skip_req();
                        notify.add(s.c.channel);
                    }
                }
            }
        }
        self.next = (self.next + 1) % C.max(1);
        if forwarded {
            notify.add(self.driver.channel);
        }
        notify
    }
}

/// Checks a client request and translates it for the driver.
fn check(s: &State, req: &BlkReq) -> Result<BlkReq, BlkRespStatus> {
    let bad = |why: &str| {
        log::warn!(target: "blk", "client on channel {}: request {} refused: {why}", s.c.channel, req.id);
        BlkRespStatus::ErrInvalidParam
    };
    let code = req.code().ok_or_else(|| bad("unknown code"))?;
    if matches!(code, BlkReqCode::Flush | BlkReqCode::Barrier) {
        return Ok(BlkReq::new(code, 0, 0, 0, req.id));
    }
    if req.count == 0 {
        return Err(bad("zero blocks"));
    }
    let bytes = u64::from(req.count) * BLK_TRANSFER_SIZE as u64;
    if req.io_or_offset % BLK_TRANSFER_SIZE as u64 != 0 {
        return Err(bad("data offset not 4 KiB aligned"));
    }
    if req.io_or_offset.checked_add(bytes).is_none_or(|end| end > s.c.data_size) {
        return Err(bad("data outside the data region"));
    }
    if req.block_number.checked_add(u64::from(req.count)).is_none_or(|end| end > s.blocks) {
        return Err(bad("blocks outside the client's range"));
    }
    Ok(BlkReq::new(
        code,
        s.c.data_io + req.io_or_offset,
        s.c.partition.start + req.block_number,
        req.count,
        req.id,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sddf_bindings::SharedRegion;
    use std::vec::Vec;

    fn queue(cap: u32) -> (BlkQueueHandle, BlkQueueHandle) {
        let (req, resp) = (SharedRegion::leak_zeroed(8192), SharedRegion::leak_zeroed(8192));
        (
            BlkQueueHandle::new(req.clone(), resp.clone(), cap).unwrap(),
            BlkQueueHandle::new(req, resp, cap).unwrap(),
        )
    }

    fn info() -> (StorageInfoHandle, StorageInfoHandle) {
        let r = SharedRegion::leak_zeroed(4096);
        (StorageInfoHandle::new(r.clone()).unwrap(), StorageInfoHandle::new(r).unwrap())
    }

    struct Rig {
        virt: BlkVirt<2, 8>,
        drv: BlkQueueHandle,
        drv_info: StorageInfoHandle,
        clients: Vec<(BlkQueueHandle, StorageInfoHandle)>,
    }

    fn rig(client_cap: u32) -> Rig {
        let (dq, drv) = queue(16);
        let (di, drv_info) = info();
        let mut clients = Vec::new();
        let mut cs: [Option<Client>; 2] = [None, None];
        let parts =
            [Partition { start: 0, blocks: Some(100) }, Partition { start: 100, blocks: None }];
        for (k, part) in parts.into_iter().enumerate() {
            let (q, theirs) = queue(client_cap);
            let (i, their_info) = info();
            cs[k] = Some(Client {
                queue: q,
                info: i,
                data_io: 0x8000_0000 + k as u64 * 0x10_0000,
                data_size: 16 * 4096,
                channel: 1 + k as u8,
                partition: part,
            });
            clients.push((theirs, their_info));
        }
        let virt = BlkVirt::new(Driver { queue: dq, info: di, channel: 0 }, cs);
        Rig { virt, drv, drv_info, clients }
    }

    fn publish_disk(r: &mut Rig, blocks: u64) -> Notify {
        let mut d = BlkStorageInfo::zeroed();
        d.capacity = blocks;
        d.sector_size = 512;
        r.drv_info.write(&d).unwrap();
        r.drv_info.set_ready(true);
        r.virt.handle()
    }

    #[test]
    fn clients_wait_for_the_disk_then_see_their_ranges() {
        let mut r = rig(8);
        r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 0, 1, 7)).unwrap();
        assert!(r.virt.handle().is_empty(), "nothing before the driver is ready");
        assert!(r.drv.dequeue_req().is_none());
        let n = publish_disk(&mut r, 1000);
        assert!(n.contains(1) && n.contains(2) && n.contains(0));
        assert_eq!(r.clients[0].1.read().unwrap().capacity, 100);
        assert_eq!(r.clients[1].1.read().unwrap().capacity, 900);
        let fwd = r.drv.dequeue_req().expect("the waiting request went on");
        assert_eq!((fwd.io_or_offset, fwd.block_number, fwd.count), (0x8000_0000, 0, 1));
    }

    #[test]
    fn requests_are_translated_and_responses_find_their_clients() {
        let mut r = rig(8);
        publish_disk(&mut r, 1000);
        r.clients[1].0.enqueue_req(BlkReq::new(BlkReqCode::Write, 3 * 4096, 10, 2, 42)).unwrap();
        r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 99, 1, 43)).unwrap();
        r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Flush, 0, 0, 0, 44)).unwrap();
        let n = r.virt.handle();
        assert!(n.contains(0));
        let mut fwd = Vec::new();
        while let Some(q) = r.drv.dequeue_req() {
            fwd.push(q);
        }
        assert_eq!(fwd.len(), 3);
        let w = fwd.iter().find(|q| q.code() == Some(BlkReqCode::Write)).unwrap();
        assert_eq!((w.io_or_offset, w.block_number, w.count), (0x8010_0000 + 3 * 4096, 110, 2));
        // Answer in reverse order.
        for q in fwd.iter().rev() {
            r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, q.count, q.id)).unwrap();
        }
        let n = r.virt.handle();
        assert!(n.contains(1) && n.contains(2));
        let ids0: Vec<u32> =
            core::iter::from_fn(|| r.clients[0].0.dequeue_resp()).map(|x| x.id).collect();
        let r1 = r.clients[1].0.dequeue_resp().unwrap();
        assert_eq!(ids0, [44, 43]);
        assert_eq!((r1.id, r1.success_count, r1.status()), (42, 2, Some(BlkRespStatus::Ok)));
    }

    #[test]
    fn bad_requests_are_refused_at_once() {
        let mut r = rig(8);
        publish_disk(&mut r, 1000);
        let c = &mut r.clients[0].0;
        c.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 100, 1, 1)).unwrap(); // past its range
        c.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, u64::MAX, 1, 2)).unwrap();
        c.enqueue_req(BlkReq::new(BlkReqCode::Read, 15 * 4096, 0, 2, 3)).unwrap(); // data past region
        c.enqueue_req(BlkReq::new(BlkReqCode::Read, 100, 0, 1, 4)).unwrap(); // misaligned
        c.enqueue_req(BlkReq::new(BlkReqCode::Write, 0, 0, 0, 5)).unwrap(); // zero blocks
        c.enqueue_req(BlkReq { code: 77, id: 6, ..BlkReq::default() }).unwrap();
        c.enqueue_req(BlkReq::new(BlkReqCode::Read, u64::MAX - 4095, 0, 1, 7)).unwrap();
        r.virt.handle();
        assert!(r.drv.dequeue_req().is_none(), "nothing reached the driver");
        let resps: Vec<_> = core::iter::from_fn(|| r.clients[0].0.dequeue_resp()).collect();
        assert_eq!(resps.iter().map(|x| x.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
        assert!(resps.iter().all(|x| x.status() == Some(BlkRespStatus::ErrInvalidParam)));
    }

    #[test]
    fn a_client_never_has_more_in_flight_than_it_can_be_answered() {
        let mut r = rig(4);
        publish_disk(&mut r, 1000);
        for id in 0..4 {
            r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, id.into(), 1, id)).unwrap();
        }
        r.virt.handle();
        let mut fwd = Vec::new();
        while let Some(q) = r.drv.dequeue_req() {
            fwd.push(q);
        }
        assert_eq!(fwd.len(), 4);
        // The client queues 4 more without reading any response.
        for id in 4..8 {
            r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, id.into(), 1, id)).unwrap();
        }
        for q in &fwd {
            r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, q.id)).unwrap();
        }
        r.virt.handle();
        assert!(r.drv.dequeue_req().is_none(), "held: the 4 responses fill the client's queue");
        let got: Vec<_> = core::iter::from_fn(|| r.clients[0].0.dequeue_resp()).collect();
        assert_eq!(got.len(), 4);
        r.virt.handle();
        assert_eq!(core::iter::from_fn(|| r.drv.dequeue_req()).count(), 4);
    }

    /// Flips the `head` of the ring at `region` between "empty" and "full" as fast as it can
    /// until `stop`: a hostile consumer whose free space changes between two reads.
    pub(crate) fn flip_head(
        region: SharedRegion,
        head: usize,
        tail: usize,
        cap: u32,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        use core::sync::atomic::Ordering::{Relaxed, Release};
        std::thread::spawn(move || {
            let (h, t) = (region.atomic_u32(head).unwrap(), region.atomic_u32(tail).unwrap());
            while !stop.load(Relaxed) {
                let tail = t.load(Relaxed);
                h.store(tail, Release);
                h.store(tail.wrapping_sub(cap), Release);
            }
        })
    }

    #[test]
    fn a_driver_queue_that_fills_under_us_loses_no_client_request() {
        use core::sync::atomic::Ordering::Relaxed;
        let (dreq, dresp) = (SharedRegion::leak_zeroed(8192), SharedRegion::leak_zeroed(8192));
        let dq = BlkQueueHandle::new(dreq.clone(), dresp.clone(), 16).unwrap();
        let mut drv = BlkQueueHandle::new(dreq.clone(), dresp, 16).unwrap();
        let (creq, cresp) = (SharedRegion::leak_zeroed(8192), SharedRegion::leak_zeroed(8192));
        let ours = BlkQueueHandle::new(creq.clone(), cresp.clone(), 8).unwrap();
        let mut client = BlkQueueHandle::new(creq.clone(), cresp, 8).unwrap();
        let (di, drv_info) = info();
        let (ci, _) = info();
        let c = Client {
            queue: ours,
            info: ci,
            data_io: 0,
            data_size: 4096,
            channel: 1,
            partition: Partition::WHOLE_DISK,
        };
        let mut virt = BlkVirt::<1, 4>::new(Driver { queue: dq, info: di, channel: 0 }, [Some(c)]);
        let mut d = BlkStorageInfo::zeroed();
        d.capacity = 10;
        drv_info.write(&d).unwrap();
        drv_info.set_ready(true);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = flip_head(dreq, 0, 4, 16, stop.clone());
        let (cq_head, cq_tail) = (creq.atomic_u32(0).unwrap(), creq.atomic_u32(4).unwrap());
        let (mut sent, mut answered) = (0u32, 0u32);
        for id in 0..20_000 {
            if client.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 0, 1, id)).is_ok() {
                sent += 1;
            }
            virt.handle();
            let waiting = cq_tail.load(Relaxed).wrapping_sub(cq_head.load(Relaxed));
            let held = virt.slots.iter().flatten().count() as u32;
            if sent - answered != waiting + held {
                break;
            }
            // The driver answers whatever the virtualiser holds.
            for slot in virt.slots.iter().enumerate().filter(|s| s.1.is_some()).map(|s| s.0) {
                drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, slot as u32)).unwrap();
            }
            virt.handle();
            answered += core::iter::from_fn(|| client.dequeue_resp()).count() as u32;
        }
        stop.store(true, Relaxed);
        flipper.join().unwrap();
        let waiting = cq_tail.load(Relaxed).wrapping_sub(cq_head.load(Relaxed));
        let held = virt.slots.iter().flatten().count() as u32;
        assert_eq!(sent - answered, waiting + held, "a request vanished");
    }
}
