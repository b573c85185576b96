//! Target `sddf_queues`: the sDDF queue bindings and the components built on them, with
//! hostile peers that write arbitrary indices and entries into shared memory.
//!
//! One arena stands in for the shared regions: a serial queue pair and a block queue pair
//! used directly, the serial TX and RX virtualisers (two clients each) and the block
//! virtualiser (two clients with disjoint partitions and data regions). The peers (clients,
//! drivers) act through their own handles on the same regions or scribble over them.
//!
//! Checks: no panic; lengths and free space never exceed the capacity; a batch never moves
//! more than asked for or than was there; virtualisers only notify channels they were given;
//! every read or write the block virtualiser passes to the driver lies inside one client's
//! partition and inside that client's data region.

use core::ptr::NonNull;

use arbitrary::{Arbitrary, Unstructured};
use sddf_bindings::blk::{
    BlkQueueHandle, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, BlkStorageInfo, StorageInfoHandle,
};
use sddf_bindings::serial::SerialQueueHandle;
use sddf_bindings::SharedRegion;
use sddf_components::blk::virt::{BlkVirt, Client as BlkClient, Driver, Partition};
use sddf_components::serial::label::{Colour, Label};
use sddf_components::serial::virt_rx::{Client as RxClient, VirtRx};
use sddf_components::serial::virt_tx::{Client as TxClient, VirtTx};
use sddf_components::Notify;

const PAGE: usize = 4096;
/// Region numbers in the arena (one page each).
const SERIAL_Q: usize = 0; // + 1 data
const BLK_REQ: usize = 2; // + 3 resp
const TX_C0: usize = 4; // client TX queues: 4..8 (queue, data) x2
const TX_DRV: usize = 8; // 8, 9
const RX_DRV: usize = 10; // 10, 11
const RX_C0: usize = 12; // 12..16
const BV_DRV: usize = 16; // 16 req, 17 resp, 18 info
const BV_C0: usize = 19; // per client: req, resp, info (19..25)
const REGIONS: usize = 25;
const SERIAL_CAP: u32 = 256;
const BLK_CAP: u32 = 16;

/// Channels the virtualisers were given.
const CHANNELS: [u8; 5] = [1, 2, 3, 10, 11];

/// One step.
#[derive(Arbitrary, Debug)]
pub enum Op {
    /// A peer writes a 32-bit word anywhere in the shared regions (indices, entries, flags).
    Scribble { region: u8, offset: u16, value: u32 },
    /// The peer producer of the direct serial queue enqueues bytes.
    SerialProduce(Vec<u8>),
    /// We consume up to `n` bytes.
    SerialConsume(u16),
    /// We produce bytes (the peer consumes later).
    SerialEnqueue(Vec<u8>),
    /// The peer of the direct block queue enqueues a request or a response.
    BlkPeer { req: bool, code: u32, io: u64, block: u64, count: u16, id: u32 },
    /// We drain requests and responses of the direct block queue.
    BlkDrain,
    /// A TX client (0/1) writes bytes to its queue; the virtualiser runs.
    TxClient { client: bool, bytes: Vec<u8> },
    /// The UART driver takes `n` bytes of TX; the virtualiser runs.
    TxDriver(u16),
    /// The UART driver receives bytes; the RX virtualiser runs.
    RxDriver(Vec<u8>),
    /// An RX client reads `n` bytes.
    RxClient { client: bool, n: u16 },
    /// A block client sends a request.
    BvClient { client: bool, code: u8, offset: u64, block: u64, count: u16, id: u32 },
    /// The block driver publishes its storage info.
    BvDriverInfo { capacity: u64, ready: bool },
    /// The block driver takes requests (checked) and answers some, with any id.
    BvDriver { answer: u8, id_noise: u32, status: u32 },
    /// A block client reads its responses.
    BvClientDrain(bool),
}

struct Arena {
    words: Vec<u64>,
}

impl Arena {
    fn region(&mut self, n: usize, pages: usize) -> SharedRegion {
        let base =
            NonNull::new(self.words[n * PAGE / 8..].as_mut_ptr().cast::<u8>()).expect("non-null");
        // SAFETY: `pages` pages from region `n` lie inside `words` (checked by the slice
        // above and `REGIONS`), which outlives every handle: `run` drops all handles before
        // the arena. All access goes through SharedRegion's volatile/atomic methods.
        assert!(n + pages <= REGIONS);
        unsafe { SharedRegion::new(base, pages * PAGE) }
    }
}

fn serial_pair(a: &mut Arena, q: usize) -> (SerialQueueHandle, SerialQueueHandle) {
    let (qr, dr) = (a.region(q, 1), a.region(q + 1, 1));
    (
        SerialQueueHandle::new(qr.clone(), dr.clone(), SERIAL_CAP).expect("serial queue"),
        SerialQueueHandle::new(qr, dr, SERIAL_CAP).expect("serial queue"),
    )
}

fn blk_pair(a: &mut Arena, req: usize, resp: usize) -> (BlkQueueHandle, BlkQueueHandle) {
    let (rq, rs) = (a.region(req, 1), a.region(resp, 1));
    (
        BlkQueueHandle::new(rq.clone(), rs.clone(), BLK_CAP).expect("blk queue"),
        BlkQueueHandle::new(rq, rs, BLK_CAP).expect("blk queue"),
    )
}

fn info_pair(a: &mut Arena, n: usize) -> (StorageInfoHandle, StorageInfoHandle) {
    let r = a.region(n, 1);
    (StorageInfoHandle::new(r.clone()).expect("info"), StorageInfoHandle::new(r).expect("info"))
}

/// Client `i`'s data region (I/O address, size) and partition (start, blocks).
const fn client_layout(i: usize) -> (u64, u64, u64, u64) {
    (0x1000_0000 + i as u64 * 0x10_0000, 0x4_0000, 100 * i as u64 + 8, 50)
}

fn check_notify(n: Notify) {
    for ch in n.channels() {
        assert!(CHANNELS.contains(&ch), "notifies channel {ch} it was not given");
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut arena = Arena { words: vec![0u64; REGIONS * PAGE / 8] };
    run_in(&mut arena, data);
}

fn run_in(a: &mut Arena, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (mut ser, mut ser_peer) = serial_pair(a, SERIAL_Q);
    let (mut blk, mut blk_peer) = blk_pair(a, BLK_REQ, BLK_REQ + 1);
    let (c0, c0_peer) = serial_pair(a, TX_C0);
    let (c1, c1_peer) = serial_pair(a, TX_C0 + 2);
    let mut tx_clients = [c0_peer, c1_peer];
    let (tx_drv, mut tx_drv_peer) = serial_pair(a, TX_DRV);
    // One labelled client (in colour) and one plain: labels and cut lines under hostile indices.
    let label = Label::new(b"[vm0] ", Some(Colour::Green));
    let clients = [
        Some(TxClient { queue: c0, channel: 1, label }),
        Some(TxClient { queue: c1, channel: 2, label: None }),
    ];
    let mut tx = VirtTx::<2>::new(tx_drv, 10, clients);
    let (rx_drv, mut rx_drv_peer) = serial_pair(a, RX_DRV);
    let (r0, r0_peer) = serial_pair(a, RX_C0);
    let (r1, r1_peer) = serial_pair(a, RX_C0 + 2);
    let mut rx_clients = [r0_peer, r1_peer];
    let clients =
        [Some(RxClient { queue: r0, channel: 1 }), Some(RxClient { queue: r1, channel: 2 })];
    let mut rx = VirtRx::<2>::new(rx_drv, 11, clients);
    let (drv_q, mut drv_peer) = blk_pair(a, BV_DRV, BV_DRV + 1);
    let (drv_info, drv_info_peer) = info_pair(a, BV_DRV + 2);
    let mut bv_clients: Vec<(BlkQueueHandle, StorageInfoHandle)> = Vec::new();
    let mut make_client = |a: &mut Arena, i: usize| {
        let (q, q_peer) = blk_pair(a, BV_C0 + 3 * i, BV_C0 + 3 * i + 1);
        let (info, info_peer) = info_pair(a, BV_C0 + 3 * i + 2);
        bv_clients.push((q_peer, info_peer));
        let (data_io, data_size, start, blocks) = client_layout(i);
        BlkClient {
            queue: q,
            info,
            data_io,
            data_size,
            channel: 1 + i as u8,
            partition: Partition::Blocks { start, blocks: Some(blocks) },
        }
    };
    let clients = [Some(make_client(a, 0)), Some(make_client(a, 1))];
    let driver = Driver { queue: drv_q, info: drv_info, channel: 3, table_buffer: None };
    let mut bv = BlkVirt::<2, 8>::new(driver, clients);

    let mut steps = 0;
    while !u.is_empty() {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        steps += 1;
        if steps > 200 {
            break;
        }
        match op {
            Op::Scribble { region, offset, value } => {
                // Not the block driver's request queue: what the driver finds there after we
                // enqueued is checked below (a driver scribbling on its own queue is its
                // business); every other queue and its indices are fair game.
                let r = match usize::from(region) % REGIONS {
                    BV_DRV => BV_DRV + 1,
                    r => r,
                };
                let at = usize::from(offset) % PAGE & !3;
                a.region(r, 1).store(at, value).expect("in bounds");
            }
            Op::SerialProduce(bytes) => {
                let free = ser_peer.free_space();
                assert!(free <= SERIAL_CAP);
                let n = ser_peer.enqueue_batch(&bytes);
                assert!(n <= bytes.len() && n as u32 <= free);
            }
            Op::SerialConsume(n) => {
                let len = ser.len();
                assert!(len <= SERIAL_CAP);
                let mut buf = vec![0u8; usize::from(n)];
                let got = ser.dequeue_batch(&mut buf);
                assert!(got <= buf.len() && got as u32 <= len.max(ser.capacity()));
                let _ = ser.require_producer_signal();
            }
            Op::SerialEnqueue(bytes) => {
                let n = ser.enqueue_batch(&bytes);
                assert!(n <= bytes.len() && n as u32 <= SERIAL_CAP);
                let _ = ser.request_consumer_signal();
            }
            Op::BlkPeer { req, code, io, block, count, id } => {
                if req {
                    let _ = blk_peer.enqueue_req(BlkReq {
                        code,
                        io_or_offset: io,
                        block_number: block,
                        count,
                        id,
                        ..BlkReq::default()
                    });
                } else {
                    let _ = blk_peer.enqueue_resp(BlkResp::new(BlkRespStatus::Ok, count, id));
                }
            }
            Op::BlkDrain => {
                assert!(blk.req_len() <= BLK_CAP && blk.resp_len() <= BLK_CAP);
                assert!(blk.req_free() <= BLK_CAP && blk.resp_free() <= BLK_CAP);
                let mut n = 0;
                while blk.dequeue_req().is_some() || blk.dequeue_resp().is_some() {
                    n += 1;
                    assert!(n <= 2 * BLK_CAP, "more entries than the queues hold");
                }
            }
            Op::TxClient { client, bytes } => {
                tx_clients[usize::from(client)].enqueue_batch(&bytes);
                check_notify(tx.handle());
            }
            Op::TxDriver(n) => {
                let mut buf = vec![0u8; usize::from(n)];
                let got = tx_drv_peer.dequeue_batch(&mut buf);
                assert!(got <= buf.len());
                check_notify(tx.handle());
            }
            Op::RxDriver(bytes) => {
                rx_drv_peer.enqueue_batch(&bytes);
                check_notify(rx.handle());
            }
            Op::RxClient { client, n } => {
                let mut buf = vec![0u8; usize::from(n)];
                let got = rx_clients[usize::from(client)].dequeue_batch(&mut buf);
                assert!(got <= buf.len());
                check_notify(rx.handle());
            }
            Op::BvClient { client, code, offset, block, count, id } => {
                let code = u32::from(code % 6);
                let req = BlkReq {
                    code,
                    io_or_offset: offset % 0x8_0000,
                    block_number: block % 128,
                    count: count % 80,
                    id,
                    ..BlkReq::default()
                };
                let _ = bv_clients[usize::from(client)].0.enqueue_req(req);
                // The client notifies (channel 1 + client): the virtualiser's per-channel path.
                check_notify(bv.handle_notified(1 << (1 + u8::from(client))));
            }
            Op::BvDriverInfo { capacity, ready } => {
                let mut info = BlkStorageInfo::zeroed();
                info.capacity = capacity % 512;
                info.block_size = 1;
                info.sector_size = 512;
                let _ = drv_info_peer.write(&info);
                drv_info_peer.set_ready(ready);
                check_notify(bv.handle());
            }
            Op::BvDriver { answer, id_noise, status } => {
                let mut answered = 0;
                while let Some(req) = drv_peer.dequeue_req() {
                    check_forwarded(&req);
                    if answered < answer {
                        let id = if id_noise & 1 == 0 { req.id } else { id_noise };
                        let st =
                            if status % 3 == 0 { BlkRespStatus::ErrIo } else { BlkRespStatus::Ok };
                        let _ = drv_peer.enqueue_resp(BlkResp::new(st, req.count, id));
                        answered += 1;
                    }
                }
                check_notify(bv.handle_notified(1 << 3)); // the driver notifies
            }
            Op::BvClientDrain(client) => {
                let q = &mut bv_clients[usize::from(client)].0;
                let mut n = 0;
                while q.dequeue_resp().is_some() {
                    n += 1;
                    assert!(n <= BLK_CAP);
                }
                check_notify(bv.handle());
            }
        }
    }
}

/// A request the block virtualiser hands the driver stays inside one client's partition and
/// data region.
fn check_forwarded(req: &BlkReq) {
    let Some(code) = req.code() else { panic!("forwarded unknown code {}", req.code) };
    if matches!(code, BlkReqCode::Flush | BlkReqCode::Barrier) {
        return;
    }
    assert!(req.count > 0, "forwarded a request of 0 blocks");
    let bytes = u64::from(req.count) * PAGE as u64;
    let inside = (0..2).any(|i| {
        let (io, size, start, blocks) = client_layout(i);
        req.io_or_offset >= io
            && req.io_or_offset + bytes <= io + size
            && req.block_number >= start
            && req.block_number + u64::from(req.count) <= start + blocks
    });
    assert!(inside, "forwarded request escapes its client: {req:?}");
}

#[cfg(test)]
mod tests {
    /// The first sddf_queues find (the harness): a scribble over the block driver's request
    /// queue, after the virtualiser enqueued, read back as a request with code 0x10101010.
    /// The driver's own queue contents are not the virtualiser's to vouch for; scribbles
    /// now leave that region alone.
    #[test]
    fn regression_driver_queue_scribble() {
        super::run(&[
            0xd5, 0xba, 0xba, 0xd5, 0xd5, 0x58, 0x58, 0x58, 0x58, 0x58, 0xd5, 0xd5, 0xd5, 0xc7,
            0xd5, 0xd5, 0xff, 0xff, 0xd5, 0x95, 0xd5, 0xc7, 0xd5, 0xd5, 0xd5, 0xd5, 0x3b, 0x60,
            0xba, 0x0a, 0xc7, 0x00, 0x00, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
            0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x00, 0xd5, 0xd5, 0xc7, 0x00, 0x3b,
            0x60, 0xba, 0x0a, 0xc7, 0x00, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xe9, 0xf5, 0xc8, 0x00,
            0xe9, 0xed, 0x00, 0x00, 0xd5, 0xd5, 0xd5, 0xd5, 0xc7, 0x00, 0x00, 0x00, 0xd5, 0xd5,
            0xd5, 0x8f,
        ]);
    }

    #[test]
    fn seeds_run() {
        for seed in crate::seeds::noise(11, 8, 1000) {
            super::run(&seed);
        }
    }
}
