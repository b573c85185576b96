//! The virtualiser, the virtio-blk driver and the virtio crate's device
//! model together, on a RAM disk with a partition table: the virtualiser
//! reads the table through the driver and the device, then each client's
//! writes land in its own partition and nowhere else.

use super::partition::image::{self, Gpt};
use super::testing::{Device, Disk};
use super::virt::{BlkVirt, Client, Driver, Partition};
use super::virtio::{VirtioBlk, DMA_SIZE};
use super::Dma;
use sddf_bindings::blk::{
    BlkQueueHandle, BlkReq, BlkReqCode, BlkResp, BlkRespStatus, StorageInfoHandle,
};
use sddf_bindings::SharedRegion;
use std::vec;
use std::vec::Vec;

const DMA_IO: u64 = 0x1000_0000;
const TABLE_IO: u64 = 0x1800_0000;
const DATA_IO: [u64; 2] = [0x2000_0000, 0x2100_0000];
const DATA_SIZE: usize = 16 * 4096;
const DISK_BLOCKS: usize = 256;
const VIRT_CH: u8 = 5; // the driver's channel to the virtualiser
const DRV_CH: u8 = 0; // the virtualiser's channel to the driver

struct System {
    drv: VirtioBlk<Device>,
    virt: BlkVirt<2, 16>,
    clients: Vec<(BlkQueueHandle, StorageInfoHandle, SharedRegion)>,
}

fn queue_pair(cap: u32) -> (BlkQueueHandle, BlkQueueHandle) {
    let (req, resp) = (SharedRegion::leak_zeroed(8192), SharedRegion::leak_zeroed(4096));
    (
        BlkQueueHandle::new(req.clone(), resp.clone(), cap).unwrap(),
        BlkQueueHandle::new(req, resp, cap).unwrap(),
    )
}

fn info_pair() -> (StorageInfoHandle, StorageInfoHandle) {
    let r = SharedRegion::leak_zeroed(4096);
    (StorageInfoHandle::new(r.clone()).unwrap(), StorageInfoHandle::new(r).unwrap())
}

/// Driver and virtualiser on `disk`; client `k` gets `parts[k]`.
fn system(disk: Disk, parts: [Partition; 2]) -> System {
    let dma = SharedRegion::leak_zeroed(DMA_SIZE);
    let table = SharedRegion::leak_zeroed(64 * 1024);
    let data = [0, 1].map(|_| SharedRegion::leak_zeroed(DATA_SIZE));
    let regions = vec![
        (DMA_IO, dma.clone()),
        (TABLE_IO, table.clone()),
        (DATA_IO[0], data[0].clone()),
        (DATA_IO[1], data[1].clone()),
    ];
    let (drv_side, virt_side) = queue_pair(64);
    let (drv_info, virt_info) = info_pair();
    let dma = Dma { region: dma, io_addr: DMA_IO };
    let drv = VirtioBlk::new(Device::new(disk, regions), dma, drv_side, &drv_info, VIRT_CH)
        .expect("the device comes up");
    let mut clients = Vec::new();
    let mut cs: [Option<Client>; 2] = [None, None];
    for k in 0..2 {
        let (ours, theirs) = queue_pair(8);
        let (info, their_info) = info_pair();
        cs[k] = Some(Client {
            queue: ours,
            info,
            data_io: DATA_IO[k],
            data_size: DATA_SIZE as u64,
            channel: 1 + k as u8,
            partition: parts[k],
        });
        clients.push((theirs, their_info, data[k].clone()));
    }
    let table_buffer = Some(Dma { region: table, io_addr: TABLE_IO });
    let driver = Driver { queue: virt_side, info: virt_info, channel: DRV_CH, table_buffer };
    System { drv, virt: BlkVirt::new(driver, cs), clients }
}

impl System {
    /// Delivers notifications and runs the device one operation at a time
    /// until `done` holds (at most 10 000 rounds).
    fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        let mut to_virt = true;
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            if core::mem::take(&mut to_virt) && self.virt.handle().contains(DRV_CH) {
                to_virt |= self.drv.handle_notified().contains(VIRT_CH);
            }
            if self.drv.regs().step() {
                to_virt |= self.drv.handle_irq().contains(VIRT_CH);
            }
            to_virt |= self.clients.iter().any(|c| c.0.req_free() < c.0.capacity());
        }
        panic!("the system did not get there");
    }

    fn capacities(&self) -> [u64; 2] {
        [0, 1].map(|k| self.clients[k].1.read().expect("published").capacity)
    }

    /// Client `k` writes one block of `byte` at its block `block`; the status.
    fn write(&mut self, k: usize, block: u64, count: u16, byte: u8) -> BlkRespStatus {
        let len = usize::from(count) * 4096;
        self.clients[k].2.write(0, &vec![byte; len]).unwrap();
        self.request(k, BlkReq::new(BlkReqCode::Write, 0, block, count, 77))
    }

    fn request(&mut self, k: usize, req: BlkReq) -> BlkRespStatus {
        self.clients[k].0.enqueue_req(req).unwrap();
        let mut resp = None;
        self.run_until(|s| {
            resp = resp.or_else(|| s.clients[k].0.dequeue_resp());
            resp.is_some()
        });
        let resp: BlkResp = resp.unwrap();
        assert_eq!(resp.id, req.id);
        resp.status().unwrap()
    }

    fn disk(&mut self) -> Vec<u8> {
        self.drv.regs().t.device().backend().disk.clone()
    }
}

/// A GPT disk: partition 1 at blocks 8..72, partition 2 at 72..136.
fn gpt_disk() -> Vec<u8> {
    let mut d = vec![0u8; DISK_BLOCKS * 4096];
    let g = Gpt::standard(DISK_BLOCKS as u64 * 8);
    image::gpt(&mut d, &g, &[Some((64, 575)), Some((576, 1087))]);
    d
}

/// The same partitions in an MBR.
fn mbr_disk() -> Vec<u8> {
    let mut d = vec![0u8; DISK_BLOCKS * 4096];
    image::mbr(&mut d, &[(0x83, 64, 512), (0x83, 576, 512)]);
    d
}

#[test]
fn client_writes_land_in_their_own_partitions_only() {
    for table in [gpt_disk(), mbr_disk()] {
        let mut s = system(Disk::new(table.clone()), Partition::in_table_order());
        s.run_until(|s| s.virt.is_ready());
        assert_eq!(s.capacities(), [64, 64]);
        use BlkRespStatus::{ErrInvalidParam, Ok};
        assert_eq!(s.write(0, 0, 1, 0xa0), Ok);
        assert_eq!(s.write(0, 63, 1, 0xa1), Ok);
        assert_eq!(s.write(1, 0, 2, 0xb0), Ok);
        assert_eq!(s.write(1, 63, 1, 0xb1), Ok);
        assert_eq!(s.write(0, 64, 1, 0xee), ErrInvalidParam, "past partition 1's end");
        assert_eq!(s.write(1, 60, 8, 0xee), ErrInvalidParam, "across partition 2's end");
        let mut want = table;
        for (block, blocks, byte) in [(8, 1, 0xa0), (71, 1, 0xa1), (72, 2, 0xb0), (135, 1, 0xb1)] {
            want[block * 4096..(block + blocks) * 4096].fill(byte);
        }
        assert!(s.disk() == want, "every other block, the table's too, is unchanged");
        // And reads come from the client's own partition.
        let read = BlkReq::new(BlkReqCode::Read, 4096, 63, 1, 5);
        assert_eq!(s.request(0, read), Ok);
        let mut got = vec![0u8; 4096];
        s.clients[0].2.read(4096, &mut got).unwrap();
        assert!(got.iter().all(|&b| b == 0xa1));
    }
}

#[test]
fn a_disk_that_fails_reads_gives_table_clients_no_storage() {
    let mut disk = Disk::new(gpt_disk());
    disk.fail_reads = true;
    let mut s = system(disk, [Partition::Table(1), Partition::Blocks { start: 200, blocks: None }]);
    s.run_until(|s| s.virt.is_ready());
    assert_eq!(s.capacities(), [0, 56], "the explicit range still works");
    assert_eq!(s.write(0, 0, 1, 0xee), BlkRespStatus::ErrInvalidParam);
    assert_eq!(s.write(1, 0, 1, 0x11), BlkRespStatus::Ok);
    let disk = s.disk();
    assert!(disk[200 * 4096..201 * 4096].iter().all(|&b| b == 0x11));
    assert_eq!(disk[..200 * 4096], gpt_disk()[..200 * 4096]);
}

#[test]
fn a_blank_disk_gives_table_clients_no_storage_and_whole_disk_clients_all_of_it() {
    let blank = vec![0u8; DISK_BLOCKS * 4096];
    let mut s = system(Disk::new(blank.clone()), [Partition::Table(1), Partition::Table(2)]);
    s.run_until(|s| s.virt.is_ready());
    assert_eq!(s.capacities(), [0, 0]);
    assert_eq!(s.write(1, 0, 1, 0xee), BlkRespStatus::ErrInvalidParam);
    assert!(s.disk() == blank);
    let mut s = system(Disk::new(blank), [Partition::WHOLE_DISK, Partition::NONE]);
    s.run_until(|s| s.virt.is_ready());
    assert_eq!(s.capacities(), [256, 0]);
    assert_eq!(s.write(0, 255, 1, 0x22), BlkRespStatus::Ok);
    assert_eq!(s.write(0, 256, 1, 0x22), BlkRespStatus::ErrInvalidParam);
}
