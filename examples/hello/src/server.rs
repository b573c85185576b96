//! `hello` server: answers the client's protected calls (it adds the two
//! numbers it is given) and notifies it back after the first notification.

#![no_std]
#![no_main]

use libvmm::logging::{self, Levels};
use libvmm::microkit::{Channel, ChannelSet, Handler};
use libvmm::sel4::{syscall, MessageInfo};
use log::{info, LevelFilter};

const CLIENT: Channel = match Channel::new(1) {
    Some(ch) => ch,
    None => panic!("channel id"),
};

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Server {
    calls: u64,
}

impl Handler for Server {
    fn init() -> Self {
        logging::init(&LEVELS);
        info!(target: "core", "server ready");
        Server { calls: 0 }
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(CLIENT) {
            info!(target: "core", "notification from the client");
        }
    }

    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        self.calls += 1;
        let sum = syscall::get_mr(0).wrapping_add(syscall::get_mr(1));
        info!(
            target: "core",
            "protected call {} on channel {} (label {}, {} words)",
            self.calls,
            channel.id(),
            msg.label(),
            msg.length()
        );
        syscall::set_mr(0, sum);
        // Tell the client we are done once the call is answered.
        CLIENT.notify();
        MessageInfo::new(0, 1)
    }
}

libvmm::protection_domain!(Server);
