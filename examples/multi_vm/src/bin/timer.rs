//! `timer`: the timer driver PD. It owns the EL1 physical timer (PPI 30)
//! and serves timeouts to its clients (the VMMs) with sDDF's timer
//! protocol, one timeout per client (`sddf_components::timer`). Microkit
//! gives an IRQ to one PD only, so two VMMs on one core share it this way.

#![no_std]
#![no_main]

use libvmm::logging::{self, Levels};
use libvmm::microkit::{Channel, ChannelSet, Handler};
use libvmm::sel4::generic_timer;
use libvmm::sel4::{syscall, MessageInfo};
use log::LevelFilter;
use sddf_bindings::timer::{GET_TIME, SET_TIMEOUT};
use sddf_components::timer::TimerService;

libvmm::setvar! {
    static irq_ch;
}

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

/// Clients by channel id (Microkit has 63).
struct Timer(TimerService<64>);

impl Timer {
    fn program(deadline: Option<u64>) {
        generic_timer::set_deadline(deadline);
    }
}

impl Handler for Timer {
    fn init() -> Self {
        logging::init(&LEVELS);
        Self::program(None);
        log::info!(target: "timer", "timer: {} Hz counter, IRQ channel {}", generic_timer::frequency(), irq_ch.get());
        Timer(TimerService::new(generic_timer::frequency()))
    }

    fn notified(&mut self, channels: ChannelSet) {
        let irq = irq_ch.get() as u8;
        if channels.0 & (1 << irq) == 0 {
            return;
        }
        // Disable first: the level interrupt would fire again at once.
        Self::program(None);
        let next = self.0.expire(generic_timer::now());
        Self::program(next.deadline);
        if let Some(ch) = Channel::new(irq) {
            if let Err(e) = ch.irq_ack() {
                log::error!(target: "timer", "IRQ ack: {e}");
            }
        }
        for ch in next.notify.channels().filter_map(Channel::new) {
            ch.notify();
        }
    }

    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        match msg.label() {
            GET_TIME => {
                syscall::set_mr(0, self.0.ns(generic_timer::now()));
                MessageInfo::new(0, 1)
            }
            SET_TIMEOUT => {
                let timeout = syscall::get_mr(0);
                let next = self.0.set_timeout(channel.id(), generic_timer::now(), timeout);
                Self::program(next);
                MessageInfo::new(0, 0)
            }
            other => {
                log::warn!(target: "timer", "channel {}: unknown request {other}", channel.id());
                MessageInfo::new(u64::MAX, 0)
            }
        }
    }
}

libvmm::protection_domain!(Timer);
