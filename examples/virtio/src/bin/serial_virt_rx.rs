//! `serial_virt_rx`: the serial RX virtualiser PD, up to four clients.
//!
//! Input goes to the first mapped client. `Ctrl-\`, the client's number
//! (the one in its `[vmN]` label from `serial_virt_tx`: client `i` is
//! `i + 1`), then Enter switches it; `Ctrl-\` twice types one `Ctrl-\`. A debug build logs each switch
//! (`input now goes to client N`) on the kernel's console; a release build
//! says nothing.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;
#[path = "../serial_virt.rs"]
mod serial_virt;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Handler};
use log::LevelFilter;
use sddf_components::serial::virt_rx::{Client, VirtRx};

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

/// The byte that starts a switch sequence: `Ctrl-\` (0x1c), as in sDDF.
const SWITCH: u8 = 0x1c;
/// The number of client 0 (`client0_*` symbols), as in its label `[vm1]`.
const FIRST_NUMBER: u32 = 1;

struct Virt(Option<VirtRx<4>>);

impl Handler for Virt {
    fn init() -> Self {
        logging::init(&LEVELS);
        let Some(drv) = serial_virt::driver_queue() else {
            log::error!(target: "serial", "the driver's RX queue is not mapped");
            return Virt(None);
        };
        let clients =
            serial_virt::clients().map(|c| c.map(|(queue, channel)| Client { queue, channel }));
        let virt = VirtRx::new(drv, pd::channel(&serial_virt::drv_ch), clients)
            .with_switch(SWITCH)
            .with_first_number(FIRST_NUMBER);
        Virt(Some(virt))
    }

    fn notified(&mut self, _: ChannelSet) {
        if let Some(v) = self.0.as_mut() {
            pd::send(v.handle());
        }
    }
}

libvmm::protection_domain!(Virt);
