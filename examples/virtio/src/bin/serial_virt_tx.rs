//! `serial_virt_tx`: the serial TX virtualiser PD, up to four clients.
//!
//! With one client mapped, its output reaches the UART unchanged. With more,
//! each line of the output of client `i` (its `client<i>_*` symbols, 0 to 3)
//! starts with the label `[vm<i+1>] `, the number `serial_virt_rx` takes to
//! switch input to it, in a colour per client; build with `SERIAL_COLOUR=0`
//! in the environment for plain labels.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;
#[path = "../serial_virt.rs"]
mod serial_virt;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Handler};
use log::LevelFilter;
use sddf_components::serial::label::{Colour, Label};
use sddf_components::serial::virt_tx::{Client, VirtTx};

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

/// Client `i`'s label, used when more than one client is mapped.
const LABELS: [&[u8]; 4] = [b"[vm1] ", b"[vm2] ", b"[vm3] ", b"[vm4] "];
/// Client `i`'s label colour.
const COLOURS: [Colour; 4] = [Colour::Green, Colour::Cyan, Colour::Yellow, Colour::Magenta];
/// Whether labels are coloured: `SERIAL_COLOUR=0` at build time turns it off.
fn colour() -> bool {
    option_env!("SERIAL_COLOUR") != Some("0")
}

struct Virt(Option<VirtTx<4>>);

impl Handler for Virt {
    fn init() -> Self {
        logging::init(&LEVELS);
        let Some(drv) = serial_virt::driver_queue() else {
            log::error!(target: "serial", "the driver's TX queue is not mapped");
            return Virt(None);
        };
        let mut found = serial_virt::clients();
        let mapped = found.iter().flatten().count();
        let clients = core::array::from_fn(|i| {
            let (queue, channel) = found[i].take()?;
            let label = (mapped > 1).then(|| Label::new(LABELS[i], colour().then_some(COLOURS[i])));
            Some(Client { queue, channel, label: label.flatten() })
        });
        if mapped > 1 {
            log::info!(target: "serial", "{mapped} clients: lines labelled [vm1] to [vm4] by client slot");
        }
        Virt(Some(VirtTx::new(drv, pd::channel(&serial_virt::drv_ch), clients)))
    }

    fn notified(&mut self, _: ChannelSet) {
        if let Some(v) = self.0.as_mut() {
            pd::send(v.handle());
        }
    }
}

libvmm::protection_domain!(Virt);
