//! `hello` client: notifies the server, then asks it a question by protected
//! procedure call and prints the answer.

#![no_std]
#![no_main]

use libvmm::logging::{self, Levels};
use libvmm::microkit::{Channel, ChannelSet, Handler};
use libvmm::sel4::{syscall, MessageInfo};
use log::{info, LevelFilter};

/// Channel 1 of this PD's end: see `system-files/hello.system`.
const SERVER: Channel = match Channel::new(1) {
    Some(ch) => ch,
    None => panic!("channel id"),
};

static LEVELS: Levels = Levels { default: LevelFilter::Info, overrides: &[] };

struct Client;

impl Handler for Client {
    fn init() -> Self {
        logging::init(&LEVELS);
        info!(target: "core", "hello from the client");
        SERVER.notify();
        info!(target: "core", "notified the server");
        syscall::set_mr(0, 20);
        syscall::set_mr(1, 22);
        match SERVER.ppcall(MessageInfo::new(1, 2)) {
            Ok(reply) => info!(
                target: "core",
                "protected call: 20 + 22 = {} (label {})",
                syscall::get_mr(0),
                reply.label()
            ),
            Err(e) => log::error!(target: "core", "protected call failed: {e}"),
        }
        Client
    }

    fn notified(&mut self, channels: ChannelSet) {
        if channels.contains(SERVER) {
            info!(target: "core", "server notified back: hello test passed");
        }
    }
}

libvmm::protection_domain!(Client);
