//! `blk_virt`: the sDDF block virtualiser PD, for up to two clients
//! (`client0_*`, `client1_*` symbols).
//!
//! What each client gets depends on whether the system description maps a
//! partition-table buffer (`part_buf`, with `part_buf_paddr`):
//! - no (`system-files/virtio.system`): client 0 gets the whole disk and
//!   client 1 nothing; no table is read, so a blank disk works;
//! - yes: the virtualiser reads the disk's MBR or GPT into it, and client
//!   `i` gets partition `i + 1` (client 0: `/dev/vda1` as Linux names it).

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Handler, Patched};
use log::LevelFilter;
use sddf_components::blk::virt::{BlkVirt, Client, Driver, Partition};
use sddf_components::blk::Dma;

libvmm::setvar! {
    static drv_ch; static drv_req; static drv_req_size; static drv_resp; static drv_resp_size;
    static drv_info; static drv_info_size;
    static client0_ch; static client0_req; static client0_req_size; static client0_resp;
    static client0_resp_size; static client0_info; static client0_info_size;
    static client0_data_paddr; static client0_data_size;
    static client1_ch; static client1_req; static client1_req_size; static client1_resp;
    static client1_resp_size; static client1_info; static client1_info_size;
    static client1_data_paddr; static client1_data_size;
    static part_buf; static part_buf_size; static part_buf_paddr;
}

/// The clients' parts of the disk when no table buffer is mapped.
const WITHOUT_TABLE: [Partition; 2] = [Partition::WHOLE_DISK, Partition::NONE];

/// Requests in flight through the virtualiser at most.
const SLOTS: usize = 128;

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct ClientSymbols {
    ch: &'static Patched<u64>,
    req: pd::Symbols,
    resp: pd::Symbols,
    info: pd::Symbols,
    data_paddr: &'static Patched<u64>,
    data_size: &'static Patched<u64>,
}

fn client(s: ClientSymbols, partition: Partition) -> Option<Client> {
    let queue = pd::blk_queue("client queue", s.req, s.resp)?;
    let info = pd::storage_info("client storage info", s.info)?;
    Some(Client {
        queue,
        info,
        data_io: s.data_paddr.get(),
        data_size: s.data_size.get(),
        channel: pd::channel(s.ch),
        partition,
    })
}

struct Virt(Option<BlkVirt<2, SLOTS>>);

impl Handler for Virt {
    fn init() -> Self {
        logging::init(&LEVELS);
        let queue =
            pd::blk_queue("driver queue", (&drv_req, &drv_req_size), (&drv_resp, &drv_resp_size));
        let info = pd::storage_info("driver storage info", (&drv_info, &drv_info_size));
        let (Some(queue), Some(info)) = (queue, info) else {
            log::error!(target: "blk", "the driver's queues and storage info must be mapped");
            return Virt(None);
        };
        let table_buffer = pd::region("partition-table buffer", (&part_buf, &part_buf_size))
            .map(|region| Dma { region, io_addr: part_buf_paddr.get() });
        let partitions = match table_buffer {
            Some(_) => Partition::in_table_order(),
            None => WITHOUT_TABLE,
        };
        let clients = [
            client(
                ClientSymbols {
                    ch: &client0_ch,
                    req: (&client0_req, &client0_req_size),
                    resp: (&client0_resp, &client0_resp_size),
                    info: (&client0_info, &client0_info_size),
                    data_paddr: &client0_data_paddr,
                    data_size: &client0_data_size,
                },
                partitions[0],
            ),
            client(
                ClientSymbols {
                    ch: &client1_ch,
                    req: (&client1_req, &client1_req_size),
                    resp: (&client1_resp, &client1_resp_size),
                    info: (&client1_info, &client1_info_size),
                    data_paddr: &client1_data_paddr,
                    data_size: &client1_data_size,
                },
                partitions[1],
            ),
        ];
        let driver = Driver { queue, info, channel: pd::channel(&drv_ch), table_buffer };
        let mut virt = BlkVirt::new(driver, clients);
        // The driver may have published its storage info already (then the
        // table read, if any, starts here).
        pd::send(virt.handle());
        Virt(Some(virt))
    }

    fn notified(&mut self, channels: ChannelSet) {
        if let Some(v) = self.0.as_mut() {
            pd::send(v.handle_notified(channels.0));
        }
    }
}

libvmm::protection_domain!(Virt);
