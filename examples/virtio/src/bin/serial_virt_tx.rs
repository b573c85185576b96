//! `serial_virt_tx`: the serial TX virtualiser PD, up to four clients.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;
#[path = "../serial_virt.rs"]
mod serial_virt;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Handler};
use log::LevelFilter;
use sddf_components::serial::virt_tx::{Client, VirtTx};

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Virt(Option<VirtTx<4>>);

impl Handler for Virt {
    fn init() -> Self {
        logging::init(&LEVELS);
        let Some(drv) = serial_virt::driver_queue() else {
            log::error!(target: "serial", "the driver's TX queue is not mapped");
            return Virt(None);
        };
        let clients =
            serial_virt::clients().map(|c| c.map(|(queue, channel)| Client { queue, channel }));
        Virt(Some(VirtTx::new(drv, pd::channel(&serial_virt::drv_ch), clients)))
    }

    fn notified(&mut self, _: ChannelSet) {
        if let Some(v) = self.0.as_mut() {
            pd::send(v.handle());
        }
    }
}

libvmm::protection_domain!(Virt);
