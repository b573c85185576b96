//! `serial_virt_tx`: the serial TX virtualiser PD, up to four clients
//! (`client0`..`client3` symbols; unmapped ones are absent).

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Handler, Patched};
use log::LevelFilter;
use sddf_components::serial::virt_tx::{Client, VirtTx};

libvmm::setvar! {
    static drv_ch; static drv_queue; static drv_queue_size; static drv_data; static drv_data_size;
    static client0_ch; static client0_queue; static client0_queue_size; static client0_data; static client0_data_size;
    static client1_ch; static client1_queue; static client1_queue_size; static client1_data; static client1_data_size;
    static client2_ch; static client2_queue; static client2_queue_size; static client2_data; static client2_data_size;
    static client3_ch; static client3_queue; static client3_queue_size; static client3_data; static client3_data_size;
}

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

fn client(ch: &'static Patched<u64>, queue: pd::Symbols, data: pd::Symbols) -> Option<Client> {
    let queue = pd::serial_queue("client TX queue", queue, data)?;
    Some(Client { queue, channel: pd::channel(ch) })
}

struct Virt(Option<VirtTx<4>>);

impl Handler for Virt {
    fn init() -> Self {
        logging::init(&LEVELS);
        let Some(drv) = pd::serial_queue(
            "driver TX queue",
            (&drv_queue, &drv_queue_size),
            (&drv_data, &drv_data_size),
        ) else {
            log::error!(target: "serial", "the driver's TX queue is not mapped");
            return Virt(None);
        };
        let clients = [
            client(
                &client0_ch,
                (&client0_queue, &client0_queue_size),
                (&client0_data, &client0_data_size),
            ),
            client(
                &client1_ch,
                (&client1_queue, &client1_queue_size),
                (&client1_data, &client1_data_size),
            ),
            client(
                &client2_ch,
                (&client2_queue, &client2_queue_size),
                (&client2_data, &client2_data_size),
            ),
            client(
                &client3_ch,
                (&client3_queue, &client3_queue_size),
                (&client3_data, &client3_data_size),
            ),
        ];
        Virt(Some(VirtTx::new(drv, pd::channel(&drv_ch), clients)))
    }

    fn notified(&mut self, _: ChannelSet) {
        if let Some(v) = self.0.as_mut() {
            pd::send(v.handle());
        }
    }
}

libvmm::protection_domain!(Virt);
