//! The block virtualiser: several clients on one disk, each in its own
//! range of blocks: an explicit range, or a partition of the disk's MBR or
//! GPT (the virtualiser reads the table itself).
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
//! clients' queues. Then, if a client was given a [`Partition::Table`]
//! partition, the virtualiser reads the table into its own buffer (block 0,
//! then a GPT's entry array; [`super::partition`]) with requests of its own
//! (id [`TABLE_REQUEST`]), which take no client's slot or response room.
//! Then each client's info is published: its range's size, or 0 blocks
//! (with an error line naming the reason) when its partition is missing,
//! unaligned, or the table unreadable or invalid. A client never gets the
//! whole disk by accident. If the driver never answers a table read, the
//! clients wait. Data is not touched here: on non-coherent hardware the
//! cache maintenance sDDF's C virtualiser does (and an invalidate of the
//! table buffer before parsing) would have to be added.

use super::partition::{self, BlockRead, GptHeader, PartitionTable, HEAD_BYTES};
use super::Dma;
use crate::Notify;
use sddf_bindings::blk::{
    BlkQueueHandle, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo, StorageInfoHandle,
    BLK_TRANSFER_SIZE,
};

/// The id of the virtualiser's own partition-table reads (client requests
/// go to the driver under slot numbers, which are smaller).
pub const TABLE_REQUEST: u32 = u32::MAX;

/// Which part of the disk a client gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    /// An explicit range of 4 KiB blocks; no table is read for it.
    Blocks {
        /// First disk block.
        start: u64,
        /// Length; `None`: to the end of the disk.
        blocks: Option<u64>,
    },
    /// Partition `n` of the disk's MBR or GPT, numbered from 1 as Linux
    /// numbers them (`/dev/vda<n>`: MBR slot or GPT entry `n`). It must
    /// start and end on a 4 KiB boundary.
    Table(u32),
}

impl Partition {
    /// The whole disk, without reading any table.
    pub const WHOLE_DISK: Partition = Partition::Blocks { start: 0, blocks: None };
    /// No storage at all (a client slot the system wires but should not use).
    pub const NONE: Partition = Partition::Blocks { start: 0, blocks: Some(0) };

    /// Client `i` gets table partition `i + 1`, for each of `C` clients:
    /// the first partition to client 0, the second to client 1, ...
    pub fn in_table_order<const C: usize>() -> [Partition; C] {
        core::array::from_fn(|i| Partition::Table(i as u32 + 1))
    }
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
    /// The client's part of the disk.
    pub partition: Partition,
}

struct State {
    c: Client,
    /// First disk block of the client's range, once known.
    start: u64,
    /// Blocks in the client's range, once known.
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
    /// Our buffer for the partition table, which the device writes (its
    /// I/O address): 4 KiB at least; 64 KiB holds any usual GPT. Only
    /// needed when a client has a [`Partition::Table`].
    pub table_buffer: Option<Dma>,
}

/// Where the start-up is.
enum Phase {
    /// Waiting for the driver's storage info.
    Disk,
    /// Reading the partition table: `step`'s read is sent or to send.
    Table { disk: BlkStorageInfo, step: Step, sent: bool },
    /// The clients' infos are published.
    Ready,
}

#[derive(Clone, Copy)]
enum Step {
    /// Block 0: the MBR and the GPT header.
    Head,
    /// The GPT entry array.
    Entries(GptHeader, BlockRead),
}

impl Step {
    fn read(&self) -> (u64, u16) {
        match self {
            Step::Head => (0, 1),
            Step::Entries(_, r) => (r.block, r.count),
        }
    }
}

/// The block virtualiser: up to `C` clients, up to `S` requests in flight.
pub struct BlkVirt<const C: usize, const S: usize> {
    driver: Driver,
    clients: [Option<State>; C],
    /// Per request id sent to the driver: the client and its own id.
    slots: [Option<(u8, u32)>; S],
    /// The free entries of `slots`, a stack (`free[..free_len]`), lowest on top.
    free: [u32; S],
    free_len: usize,
    /// The client channels, as bits of a notification badge.
    client_bits: u64,
    /// Whether [`BlkVirt::requests`] left a request it could not take yet
    /// (no slot, no response room, the driver's queue full).
    waiting: bool,
    phase: Phase,
    next: usize,
}

/// Channel `ch` as a badge bit (none for ids Microkit does not have).
fn bit(ch: u8) -> u64 {
    1u64.checked_shl(u32::from(ch)).unwrap_or(0)
}

impl<const C: usize, const S: usize> BlkVirt<C, S> {
    /// A virtualiser between `driver` and `clients`.
    pub fn new(driver: Driver, clients: [Option<Client>; C]) -> Self {
        let client_bits = clients.iter().flatten().fold(0, |bits, c| bits | bit(c.channel));
        BlkVirt {
            driver,
            clients: clients.map(|c| c.map(|c| State { c, start: 0, blocks: 0, in_flight: 0 })),
            slots: [None; S],
            free: core::array::from_fn(|k| (S - 1 - k) as u32),
            free_len: S,
            client_bits,
            waiting: false,
            phase: Phase::Disk,
            next: 0,
        }
    }

    /// Whether the clients' infos are published.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Does all there is to do; call it on every notification.
    pub fn handle(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        if !self.is_ready() {
            notify.merge(self.start_up());
            if !self.is_ready() {
                return notify;
            }
        }
        notify.merge(self.responses());
        notify.merge(self.requests());
        notify
    }

    /// [`BlkVirt::handle`] for a wakeup by the channels whose bits are set in
    /// `notified` (the notification badge). Once ready, the driver's queue is
    /// only looked at when the driver notified, and the clients' queues when
    /// a client notified or a request waits for room that a response may
    /// have freed: sDDF peers notify after every batch, so nothing is missed,
    /// and a wakeup costs one queue's work, not every queue's.
    pub fn handle_notified(&mut self, notified: u64) -> Notify {
        if !self.is_ready() {
            return self.handle();
        }
        let mut notify = Notify::NONE;
        if notified & bit(self.driver.channel) != 0 {
            notify.merge(self.responses());
        }
        if self.waiting || notified & self.client_bits != 0 {
            notify.merge(self.requests());
        }
        notify
    }

    /// Waits for the driver's info, reads the table if a client needs it,
    /// then publishes the clients' infos. Kept out of line: its frame (the
    /// partition table) is not the request path's.
    #[cold]
    #[inline(never)]
    fn start_up(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        loop {
            match self.phase {
                Phase::Ready => return notify,
                Phase::Disk => {
                    let Some(disk) = self.driver.info.read() else { return notify };
                    let wants_table = self
                        .clients
                        .iter()
                        .flatten()
                        .any(|s| matches!(s.c.partition, Partition::Table(_)));
                    if !wants_table {
                        notify.merge(self.publish(&disk, None));
                        return notify;
                    }
                    let buffer = self.driver.table_buffer.as_ref().map_or(0, |b| b.region.len());
                    let usable = partition::check_sector_size(disk.sector_size).and(match buffer {
                        n if n < BLK_TRANSFER_SIZE => Err(partition::Error::BufferTooSmall(n)),
                        _ => Ok(()),
                    });
                    if let Err(e) = usable {
                        notify.merge(self.publish(&disk, Some(Err(e))));
                        return notify;
                    }
                    self.phase = Phase::Table { disk, step: Step::Head, sent: false };
                }
                Phase::Table { disk, step, sent } => {
                    if !sent {
                        if !self.send_table_read(step) {
                            return notify; // the driver's queue is full: next time
                        }
                        self.phase = Phase::Table { disk, step, sent: true };
                        notify.add(self.driver.channel);
                    }
                    let Some(resp) = self.table_response() else { return notify };
                    let mut table = PartitionTable::new();
                    match self.advance(&disk, step, resp, &mut table) {
                        Ok(Some(step)) => self.phase = Phase::Table { disk, step, sent: false },
                        Ok(None) => {
                            notify.merge(self.publish(&disk, Some(Ok(&table))));
                            return notify;
                        }
                        Err(e) => {
                            notify.merge(self.publish(&disk, Some(Err(e))));
                            return notify;
                        }
                    }
                }
            }
        }
    }

    /// Asks the driver for `step`'s blocks, into the table buffer.
    fn send_table_read(&mut self, step: Step) -> bool {
        let Some(buffer) = &self.driver.table_buffer else { return false };
        let (block, count) = step.read();
        let req = BlkReq::new(BlkReqCode::Read, buffer.io_addr, block, count, TABLE_REQUEST);
        self.driver.queue.enqueue_req(req).is_ok()
    }

    /// The driver's answer to our table read, if it came.
    fn table_response(&mut self) -> Option<BlkResp> {
        while let Some(resp) = self.driver.queue.dequeue_resp() {
            if resp.id == TABLE_REQUEST {
                return Some(resp);
            }
            unknown_response(resp.id);
        }
        None
    }

    /// Takes in the answer to `step`'s read: the next read, or `None` when
    /// `table` is complete.
    fn advance(
        &self,
        disk: &BlkStorageInfo,
        step: Step,
        resp: BlkResp,
        table: &mut PartitionTable,
    ) -> Result<Option<Step>, partition::Error> {
        let (block, _) = step.read();
        if resp.status() != Some(BlkRespStatus::Ok) {
            log::error!(target: "blk", "the driver answered the partition-table read of block {block} with status {}", resp.status);
            return Err(partition::Error::ReadFailed { block });
        }
        let buffer =
            self.driver.table_buffer.as_ref().ok_or(partition::Error::BufferTooSmall(0))?;
        let disk_sectors = disk.capacity.saturating_mul(partition::SECTORS_PER_BLOCK);
        match step {
            Step::Head => {
                // Copied out once; the buffer is the device's to write.
                let mut head = [0u8; HEAD_BYTES];
                buffer
                    .region
                    .read(0, &mut head)
                    .map_err(|_| partition::Error::ReadFailed { block })?;
                match table.read_head(&head, disk_sectors)? {
                    None => Ok(None),
                    Some(h) => Ok(Some(Step::Entries(h, h.entries_read(buffer.region.len())?))),
                }
            }
            Step::Entries(h, r) => {
                let array =
                    |at: usize, out: &mut [u8]| buffer.region.read(r.offset + at, out).is_ok();
                table.read_gpt_entries(&h, disk_sectors, array).map(|()| None)
            }
        }
    }

    /// Publishes the clients' infos: each client's range from its
    /// [`Partition`] (and `table`, if read).
    fn publish(
        &mut self,
        disk: &BlkStorageInfo,
        table: Option<Result<&PartitionTable, partition::Error>>,
    ) -> Notify {
        match &table {
            Some(Ok(t)) => log_table(t),
            Some(Err(e)) => log::error!(target: "blk", "partition table: {e}"),
            None => {}
        }
        let mut notify = Notify::NONE;
        for s in self.clients.iter_mut().flatten() {
            let range = match (s.c.partition, &table) {
                (Partition::Blocks { start, blocks }, _) => {
                    let left = disk.capacity.saturating_sub(start);
                    let wanted = blocks;
                    let blocks = blocks.map_or(left, |b| b.min(left));
                    if blocks == 0 && wanted != Some(0) {
                        log::error!(target: "blk", "client on channel {}: its range starts past the disk's {} blocks", s.c.channel, disk.capacity);
                    }
                    Ok((start, blocks))
                }
                (Partition::Table(n), Some(Ok(t))) => t.blocks(n).map(|r| (r.start, r.blocks)),
                (Partition::Table(_), Some(Err(e))) => Err(*e),
                (Partition::Table(n), None) => Err(partition::Error::NoSuchPartition(n)),
            };
            (s.start, s.blocks) = range.unwrap_or_else(|e| {
                log::error!(target: "blk", "client on channel {}: no storage: {e}", s.c.channel);
                (0, 0)
            });
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
        self.phase = Phase::Ready;
        notify
    }
    /// Driver responses back to their clients.
    fn responses(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        while let Some(resp) = self.driver.queue.dequeue_resp() {
            let Some((client, id)) = self.slots.get_mut(resp.id as usize).and_then(Option::take)
            else {
                unknown_response(resp.id);
                continue;
            };
            // The slot was taken, so its id is not on the stack: there is room.
            if let Some(top) = self.free.get_mut(self.free_len) {
                *top = resp.id;
                self.free_len += 1;
            }
            let Some(s) = self.clients.get_mut(usize::from(client)).and_then(Option::as_mut) else {
                continue;
            };
            s.in_flight = s.in_flight.saturating_sub(1);
            let status = resp.status().unwrap_or(BlkRespStatus::ErrUnspec);
            if s.c.queue.enqueue_resp(BlkResp::new(status, resp.success_count, id)).is_err() {
                response_lost(client, id);
            }
            notify.add(s.c.channel);
        }
        notify
    }

    /// Client requests to the driver, clients taken round-robin.
    fn requests(&mut self) -> Notify {
        let mut notify = Notify::NONE;
        let mut forwarded = false;
        let mut waiting = false;
        for k in 0..C {
            let i = if C == 1 { 0 } else { (self.next + k) % C };
            let Some(s) = self.clients[i].as_mut() else { continue };
            // One read of the client's tail (here) and head (below) per batch.
            let Some(mut req) = s.c.queue.peek_req() else { continue };
            // Room for the answers: the client only ever frees more of it.
            let mut room = s.c.queue.resp_free().saturating_sub(s.in_flight);
            // Whether `req` has to wait. A request leaves the client's queue only once it is
            // answered or in the driver's queue: when the driver's queue is full (or its peer
            // index corrupt) it waits there.
            waiting |= loop {
                // Room for the answer, and a slot.
                if room == 0 {
                    break true;
                }
                match check(s, &req) {
                    Ok(fwd) => {
                        let Some(slot) = self.free_len.checked_sub(1) else { break true };
                        let id = self.free[slot];
                        if self.driver.queue.enqueue_req(BlkReq { id, ..fwd }).is_err() {
                            break true;
                        }
                        self.free_len = slot;
                        s.c.queue.skip_req();
                        if let Some(entry) = self.slots.get_mut(id as usize) {
                            *entry = Some((i as u8, req.id));
                        }
                        s.in_flight += 1;
                        forwarded = true;
                    }
                    Err(status) => {
                        if s.c.queue.enqueue_resp(BlkResp::new(status, 0, req.id)).is_err() {
                            break true;
                        }
                        s.c.queue.skip_req();
                        notify.add(s.c.channel);
                    }
                }
                room -= 1;
                match s.c.queue.peek_req() {
                    Some(next) => req = next,
                    None => break false,
                }
            };
        }
        self.waiting = waiting;
        if C > 1 {
            self.next = (self.next + 1) % C;
        }
        if forwarded {
            notify.add(self.driver.channel);
        }
        notify
    }
}

/// Why a request is refused (its log line's words: see [`refused`]).
#[derive(Clone, Copy)]
enum Why {
    UnknownCode,
    ZeroBlocks,
    Misaligned,
    OutsideData,
    OutsideRange,
}

/// Checks a client request and translates it for the driver.
fn check(s: &State, req: &BlkReq) -> Result<BlkReq, BlkRespStatus> {
    let bad = |why: Why| refused(s.c.channel, req.id, why);
    let code = req.code().ok_or_else(|| bad(Why::UnknownCode))?;
    if matches!(code, BlkReqCode::Flush | BlkReqCode::Barrier) {
        return Ok(BlkReq::new(code, 0, 0, 0, req.id));
    }
    if req.count == 0 {
        return Err(bad(Why::ZeroBlocks));
    }
    let bytes = u64::from(req.count) * BLK_TRANSFER_SIZE as u64;
    if req.io_or_offset % BLK_TRANSFER_SIZE as u64 != 0 {
        return Err(bad(Why::Misaligned));
    }
    if req.io_or_offset.checked_add(bytes).is_none_or(|end| end > s.c.data_size) {
        return Err(bad(Why::OutsideData));
    }
    if req.block_number.checked_add(u64::from(req.count)).is_none_or(|end| end > s.blocks) {
        return Err(bad(Why::OutsideRange));
    }
    Ok(BlkReq::new(
        code,
        s.c.data_io + req.io_or_offset,
        s.start + req.block_number,
        req.count,
        req.id,
    ))
}

// The log lines of the request path, out of line so that the hot code does
// not set up their arguments.

/// Logs a refused request; its answer's status.
#[cold]
#[inline(never)]
fn refused(channel: u8, id: u32, why: Why) -> BlkRespStatus {
    let why = match why {
        Why::UnknownCode => "unknown code",
        Why::ZeroBlocks => "zero blocks",
        Why::Misaligned => "data offset not 4 KiB aligned",
        Why::OutsideData => "data outside the data region",
        Why::OutsideRange => "blocks outside the client's range",
    };
    log::warn!(target: "blk", "client on channel {channel}: request {id} refused: {why}");
    BlkRespStatus::ErrInvalidParam
}

#[cold]
#[inline(never)]
fn unknown_response(id: u32) {
    log::error!(target: "blk", "driver answered unknown request {id}");
}

#[cold]
#[inline(never)]
fn response_lost(client: u8, id: u32) {
    log::error!(target: "blk", "client {client}: response queue full, response {id} lost");
}

/// Logs the table found, one line per partition.
fn log_table(t: &PartitionTable) {
    log::info!(target: "blk", "partition table: {:?}, {} partitions", t.scheme(), t.entries().len());
    for e in t.entries() {
        log::info!(target: "blk", "  partition {}: LBA {}, {} sectors, {}", e.number, e.first_lba, e.sectors, e.kind);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::blk::partition::image;
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
        drv_req: SharedRegion,
        drv_info: StorageInfoHandle,
        clients: Vec<(BlkQueueHandle, StorageInfoHandle)>,
        /// The virtualiser's partition-table buffer, at [`BUF_IO`].
        buf: Option<SharedRegion>,
    }

    const BUF_IO: u64 = 0x9000_0000;

    fn rig(client_cap: u32) -> Rig {
        let parts = [
            Partition::Blocks { start: 0, blocks: Some(100) },
            Partition::Blocks { start: 100, blocks: None },
        ];
        rig_with(client_cap, parts, 0)
    }

    /// Two clients on `parts`, a table buffer of `buffer` bytes (0: none).
    fn rig_with(client_cap: u32, parts: [Partition; 2], buffer: usize) -> Rig {
        let (dreq, dresp) = (SharedRegion::leak_zeroed(8192), SharedRegion::leak_zeroed(8192));
        let dq = BlkQueueHandle::new(dreq.clone(), dresp.clone(), 16).unwrap();
        let drv = BlkQueueHandle::new(dreq.clone(), dresp, 16).unwrap();
        let (di, drv_info) = info();
        let mut clients = Vec::new();
        let mut cs: [Option<Client>; 2] = [None, None];
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
        let buf = (buffer > 0).then(|| SharedRegion::leak_zeroed(buffer));
        let table_buffer = buf.clone().map(|region| Dma { region, io_addr: BUF_IO });
        let virt = BlkVirt::new(Driver { queue: dq, info: di, channel: 0, table_buffer }, cs);
        Rig { virt, drv, drv_req: dreq, drv_info, clients, buf }
    }

    fn publish_disk(r: &mut Rig, blocks: u64) -> Notify {
        let mut d = BlkStorageInfo::zeroed();
        d.capacity = blocks;
        d.sector_size = 512;
        r.drv_info.write(&d).unwrap();
        r.drv_info.set_ready(true);
        r.virt.handle()
    }

    /// A 1 MiB disk (256 blocks) with a GPT: partition 1 at blocks 8..72,
    /// partition 2 at 72..136.
    fn gpt_disk() -> Vec<u8> {
        let mut d = std::vec![0u8; 1 << 20];
        let g = image::Gpt::standard(2048);
        image::gpt(&mut d, &g, &[Some((64, 575)), Some((576, 1087))]);
        d
    }

    /// Answers the virtualiser's next table read from `disk`.
    fn serve_table_read(r: &mut Rig, disk: &[u8]) -> (u64, u16) {
        let req = r.drv.dequeue_req().expect("a table read");
        assert_eq!(req.code(), Some(BlkReqCode::Read));
        assert_eq!((req.id, req.io_or_offset), (TABLE_REQUEST, BUF_IO));
        let (at, len) = (req.block_number as usize * 4096, usize::from(req.count) * 4096);
        r.buf.as_ref().unwrap().write(0, &disk[at..at + len]).unwrap();
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, req.count, req.id)).unwrap();
        (req.block_number, req.count)
    }

    /// Serves table reads until the clients' infos are published.
    fn serve_table(r: &mut Rig, disk: &[u8]) {
        for _ in 0..3 {
            if r.virt.is_ready() {
                return;
            }
            serve_table_read(r, disk);
            r.virt.handle();
        }
        assert!(r.virt.is_ready());
    }

    fn capacities(r: &Rig) -> [Option<u64>; 2] {
        [0, 1].map(|k| r.clients[k].1.read().map(|i| i.capacity))
    }

    #[test]
    fn reads_a_gpt_then_gives_each_client_its_partition() {
        let mut r = rig_with(4, Partition::in_table_order(), 64 * 1024);
        for id in 0..4 {
            r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, id.into(), 1, id)).unwrap();
        }
        r.clients[1].0.enqueue_req(BlkReq::new(BlkReqCode::Write, 0, 63, 1, 9)).unwrap();
        assert!(publish_disk(&mut r, 256).contains(0), "the driver is asked for block 0");
        assert_eq!(serve_table_read(&mut r, &gpt_disk()), (0, 1));
        assert!(r.virt.handle().contains(0), "then for the entry array");
        assert_eq!(capacities(&r), [None, None], "nothing is published while reading");
        assert!(r.virt.slots.iter().all(Option::is_none), "no client slot is used");
        assert_eq!(r.clients[0].0.req_free(), 0, "the client's requests wait in its queue");
        assert_eq!(serve_table_read(&mut r, &gpt_disk()), (0, 5), "16 KiB from LBA 2");
        let n = r.virt.handle();
        assert!(n.contains(1) && n.contains(2) && n.contains(0));
        assert_eq!(capacities(&r), [Some(64), Some(64)]);
        let fwd: Vec<_> = core::iter::from_fn(|| r.drv.dequeue_req()).collect();
        let blocks: Vec<_> = fwd.iter().map(|q| q.block_number).collect();
        assert_eq!(blocks, [8, 9, 10, 11, 72 + 63], "all four of client 0, then client 1");
    }

    #[test]
    fn reads_an_mbr_in_one_request() {
        let mut d = std::vec![0u8; 1 << 20];
        image::mbr(&mut d, &[(0x83, 2040, 8), (0x83, 8, 800)]);
        let mut r = rig_with(8, Partition::in_table_order(), 4096);
        publish_disk(&mut r, 256);
        assert_eq!(serve_table_read(&mut r, &d), (0, 1));
        r.virt.handle();
        assert!(r.virt.is_ready());
        assert_eq!(capacities(&r), [Some(1), Some(100)]);
        r.clients[1].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 99, 1, 1)).unwrap();
        r.clients[1].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 100, 1, 2)).unwrap();
        r.virt.handle();
        assert_eq!(r.drv.dequeue_req().map(|q| q.block_number), Some(1 + 99));
        assert!(r.drv.dequeue_req().is_none());
        let past = r.clients[1].0.dequeue_resp().unwrap();
        assert_eq!((past.id, past.status()), (2, Some(BlkRespStatus::ErrInvalidParam)));
    }

    #[test]
    fn a_driver_error_leaves_table_clients_without_storage() {
        let mut r = rig_with(8, [Partition::Table(1), Partition::WHOLE_DISK], 64 * 1024);
        publish_disk(&mut r, 256);
        let req = r.drv.dequeue_req().unwrap();
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::ErrIo, 0, req.id)).unwrap();
        r.virt.handle();
        assert!(r.virt.is_ready());
        assert_eq!(capacities(&r), [Some(0), Some(256)], "the explicit range is unaffected");
        r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 0, 1, 5)).unwrap();
        r.virt.handle();
        assert!(r.drv.dequeue_req().is_none());
        let resp = r.clients[0].0.dequeue_resp().unwrap();
        assert_eq!(resp.status(), Some(BlkRespStatus::ErrInvalidParam));
    }

    #[test]
    fn bad_or_missing_tables_and_partitions_give_zero_blocks_never_the_disk() {
        let blank = std::vec![0u8; 1 << 20];
        let mut mbr_gap = blank.clone();
        image::mbr(&mut mbr_gap, &[(0x83, 63, 800)]); // 1: unaligned; 2: none
        let mut bad_crc = gpt_disk();
        bad_crc[1024 + 100] ^= 1;
        let mut past_end = blank.clone();
        image::mbr(&mut past_end, &[(0x83, 8, 8), (0x83, 2040, 16)]);
        for disk in [blank, mbr_gap, bad_crc, past_end] {
            let mut r = rig_with(8, Partition::in_table_order(), 64 * 1024);
            publish_disk(&mut r, 256);
            serve_table(&mut r, &disk);
            assert_eq!(capacities(&r), [Some(0), Some(0)]);
            r.clients[1].0.enqueue_req(BlkReq::new(BlkReqCode::Write, 0, 0, 1, 1)).unwrap();
            r.virt.handle();
            assert!(r.drv.dequeue_req().is_none(), "nothing reaches the disk");
        }
    }

    #[test]
    fn without_a_buffer_or_with_4k_sectors_no_table_is_read() {
        for (buffer, sector_size) in [(0, 512), (2048, 512), (64 * 1024, 4096)] {
            let mut r = rig_with(
                8,
                [Partition::Table(1), Partition::Blocks { start: 8, blocks: Some(8) }],
                buffer,
            );
            let mut d = BlkStorageInfo::zeroed();
            d.capacity = 256;
            d.sector_size = sector_size;
            r.drv_info.write(&d).unwrap();
            r.drv_info.set_ready(true);
            r.virt.handle();
            assert!(r.virt.is_ready() && r.drv.dequeue_req().is_none());
            assert_eq!(capacities(&r), [Some(0), Some(8)]);
        }
    }

    #[test]
    fn explicit_ranges_need_no_table_read() {
        let mut r = rig_with(8, [Partition::WHOLE_DISK, Partition::NONE], 64 * 1024);
        publish_disk(&mut r, 256);
        assert!(r.virt.is_ready() && r.drv.dequeue_req().is_none());
        assert_eq!(capacities(&r), [Some(256), Some(0)]);
    }

    #[test]
    fn a_full_driver_queue_delays_the_table_read() {
        let mut r = rig_with(8, Partition::in_table_order(), 64 * 1024);
        let head = r.drv_req.atomic_u32(0).unwrap();
        head.store(100, core::sync::atomic::Ordering::Relaxed); // reads as full
        assert!(publish_disk(&mut r, 256).is_empty());
        head.store(0, core::sync::atomic::Ordering::Relaxed);
        assert!(r.virt.handle().contains(0));
        serve_table(&mut r, &gpt_disk());
        assert_eq!(capacities(&r), [Some(64), Some(64)]);
    }

    #[test]
    fn stray_driver_responses_during_the_table_read_are_dropped() {
        let mut r = rig_with(8, Partition::in_table_order(), 64 * 1024);
        publish_disk(&mut r, 256);
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, 3)).unwrap();
        r.virt.handle();
        assert!(!r.virt.is_ready());
        serve_table(&mut r, &gpt_disk());
        assert_eq!(capacities(&r), [Some(64), Some(64)]);
        // A late answer under our id once ready is logged and dropped.
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, TABLE_REQUEST)).unwrap();
        assert!(r.virt.handle().is_empty());
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

    #[test]
    fn a_wakeup_looks_at_the_queues_of_the_channels_that_notified() {
        let mut r = rig(16);
        publish_disk(&mut r, 1000);
        let (drv, c0) = (1 << 0, 1 << 1);
        for id in 0..10 {
            r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, id.into(), 1, id)).unwrap();
        }
        assert!(r.virt.handle_notified(drv).is_empty(), "the client did not notify");
        assert!(r.virt.handle_notified(c0).contains(0));
        let fwd: Vec<_> = core::iter::from_fn(|| r.drv.dequeue_req()).collect();
        assert_eq!(fwd.len(), 8, "all 8 slots used, 2 requests wait");
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, fwd[0].id)).unwrap();
        assert!(r.virt.handle_notified(c0).is_empty(), "a client wakeup forwards no response");
        assert_eq!(r.clients[0].0.resp_len(), 0);
        let n = r.virt.handle_notified(drv);
        assert!(n.contains(1) && n.contains(0), "the response, and a waiting request");
        assert_eq!(r.clients[0].0.dequeue_resp().map(|x| x.id), Some(0));
        assert_eq!(r.drv.dequeue_req().map(|q| q.block_number), Some(8));
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, fwd[1].id)).unwrap();
        r.virt.handle_notified(drv);
        assert_eq!(r.drv.dequeue_req().map(|q| q.block_number), Some(9));
        // Nothing waits now: a driver wakeup leaves the clients' queues alone.
        r.clients[0].0.enqueue_req(BlkReq::new(BlkReqCode::Read, 0, 10, 1, 10)).unwrap();
        r.drv.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, 1, fwd[2].id)).unwrap();
        assert_eq!(r.virt.handle_notified(drv), {
            let mut n = Notify::NONE;
            n.add(1);
            n
        });
        assert!(r.drv.dequeue_req().is_none());
        assert!(r.virt.handle_notified(c0 | drv).contains(0));
        assert_eq!(r.drv.dequeue_req().map(|q| q.block_number), Some(10));
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
        let mut virt = BlkVirt::<1, 4>::new(
            Driver { queue: dq, info: di, channel: 0, table_buffer: None },
            [Some(c)],
        );
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
