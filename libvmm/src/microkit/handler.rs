//! The `Handler` trait a PD implements, and the event decoding behind it.

use super::channel::{Channel, ChannelSet, Child};
use super::slots::{BADGE_FAULT, BADGE_PPC};
use crate::sel4::{Fault, MessageInfo};

/// What a PD does. The runtime calls `init` once, then one method per event.
pub trait Handler: Sized {
    /// Builds the PD's state; runs before the event loop.
    fn init() -> Self;

    /// Notifications (and IRQs) arrived on `channels`, all at once.
    fn notified(&mut self, channels: ChannelSet) {
        log::warn!(target: "core", "unexpected notification {:#x}", channels.0);
    }

    /// A protected procedure call on `channel`. The returned message is the
    /// reply; its registers are set with `set_mr` before returning.
    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        log::error!(target: "core", "protected call on channel {} (label {}) not handled", channel.id(), msg.label());
        MessageInfo::new(0, 0)
    }

    /// A fault from `child` (a child PD or a vCPU). `Some(reply)` replies
    /// and lets the child run on; `None` leaves it blocked.
    fn fault(&mut self, child: Child, fault: Fault) -> Option<MessageInfo> {
        log::error!(target: "core", "fault from child {} not handled: {:x?}", child.0, fault);
        None
    }
}

/// One event, decoded from the badge once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Bits of the bound notification.
    Notified(ChannelSet),
    /// A protected procedure call on a channel.
    Protected(Channel, MessageInfo),
    /// A fault message from a child or vCPU.
    Fault(Child, MessageInfo),
}

impl Event {
    /// Decodes a received badge and message info (libmicrokit's rules: bit
    /// 63 is a PPC with the channel in bits 5:0, bit 62 a fault with the
    /// child in bits 7:0, anything else notification bits).
    pub fn decode(badge: u64, info: MessageInfo) -> Event {
        if badge & BADGE_PPC != 0 {
            Event::Protected(Channel::from_badge(badge), info)
        } else if badge & BADGE_FAULT != 0 {
            Event::Fault(Child((badge & 0xff) as u8), info)
        } else {
            Event::Notified(ChannelSet(badge))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_three_badge_kinds() {
        let info = MessageInfo::new(6, 4);
        assert_eq!(Event::decode(BADGE_FAULT, info), Event::Fault(Child(0), info));
        assert_eq!(Event::decode(BADGE_FAULT | 3, info), Event::Fault(Child(3), info));
        assert_eq!(
            Event::decode(BADGE_PPC | 2, info),
            Event::Protected(Channel::new(2).unwrap(), info)
        );
        assert_eq!(Event::decode(0b1010, info), Event::Notified(ChannelSet(0b1010)));
    }
}
