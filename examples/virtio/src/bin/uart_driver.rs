//! `uart_driver`: the PL011 driver PD (sDDF serial driver), on
//! `sddf_components::serial::pl011`.

#![no_std]
#![no_main]

#[path = "../pd.rs"]
mod pd;

use libvmm::logging::{self, Levels};
use libvmm::microkit::{ChannelSet, Handler};
use log::LevelFilter;
use sddf_bindings::SharedRegion;
use sddf_components::serial::pl011::{Pl011, Queues};

libvmm::setvar! {
    static regs; static regs_size;
    static irq_ch; static tx_ch; static rx_ch;
    static tx_queue; static tx_queue_size; static tx_data; static tx_data_size;
    static rx_queue; static rx_queue_size; static rx_data; static rx_data_size;
}

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Driver(Option<Pl011<SharedRegion>>);

impl Handler for Driver {
    fn init() -> Self {
        logging::init(&LEVELS);
        let tx =
            pd::serial_queue("TX queue", (&tx_queue, &tx_queue_size), (&tx_data, &tx_data_size));
        let rx =
            pd::serial_queue("RX queue", (&rx_queue, &rx_queue_size), (&rx_data, &rx_data_size));
        let (Some(uart), Some(tx)) = (pd::region("registers", (&regs, &regs_size)), tx) else {
            log::error!(target: "serial", "the PL011 registers and the TX queue must be mapped");
            return Driver(None);
        };
        let q = Queues { tx, rx, tx_channel: pd::channel(&tx_ch), rx_channel: pd::channel(&rx_ch) };
        Driver(Some(Pl011::new(uart, q)))
    }

    fn notified(&mut self, channels: ChannelSet) {
        let Some(d) = self.0.as_mut() else { return };
        for ch in channels.iter() {
            if ch.id() == pd::channel(&irq_ch) {
                pd::send(d.handle_irq());
                let _ = ch.irq_ack();
            } else {
                pd::send(d.handle_notified(ch.id()));
            }
        }
    }
}

libvmm::protection_domain!(Driver);
