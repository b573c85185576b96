//! Channels, channel sets and children: the ids a Microkit PD talks with.

use super::slots::*;
use super::symbols::{microkit_irqs, microkit_notifications, microkit_pps};
use crate::sel4::{Endpoint, Error, IrqHandler, MessageInfo, Notification, Tcb, Vcpu};

/// A channel end of this PD (`<end pd=... id=...>` or `<irq id=...>`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Channel(u8);

impl Channel {
    /// Channel `id`; `None` if it is not below 62.
    pub const fn new(id: u8) -> Option<Channel> {
        if id < MAX_CHANNELS {
            Some(Channel(id))
        } else {
            None
        }
    }

    /// The channel in bits 5:0 of a PPC badge. Ids 62 and 63 cannot be
    /// configured; such a channel fails every right check.
    pub(crate) const fn from_badge(badge: u64) -> Channel {
        Channel((badge & 0x3f) as u8)
    }

    /// The id.
    pub const fn id(self) -> u8 {
        self.0
    }

    const fn bit(self) -> u64 {
        1 << self.0
    }

    /// Corresponds to `microkit_notify`. Logs an error and does nothing if
    /// the system description gives this end no `notify` right.
    pub fn notify(self) {
        if microkit_notifications.get() & self.bit() == 0 {
            log::error!(target: "core", "notify: channel {} cannot notify (see the .system file)", self.0);
            return;
        }
        Notification(BASE_OUTPUT_NOTIFICATION_CAP + self.0 as u64).signal();
    }

    /// Corresponds to `microkit_deferred_notify`: the notification goes out
    /// with the PD's next wait, in the same system call (`seL4_NBSendRecv`),
    /// so the PD is blocked before the notified PD runs: one kernel entry
    /// and, when that PD has the higher priority, two thread switches fewer
    /// than [`Channel::notify`]. One notification is held at a time: a
    /// second, to another channel, sends the held one at once. Before a
    /// reply (a fault or a protected call) the held one is sent first.
    pub fn notify_deferred(self) {
        if microkit_notifications.get() & self.bit() == 0 {
            log::error!(target: "core", "notify: channel {} cannot notify (see the .system file)", self.0);
            return;
        }
        super::runtime::defer_notify(BASE_OUTPUT_NOTIFICATION_CAP + self.0 as u64);
    }

    /// Corresponds to `microkit_irq_ack`: re-enables this IRQ channel.
    pub fn irq_ack(self) -> Result<(), Error> {
        if microkit_irqs.get() & self.bit() == 0 {
            log::error!(target: "core", "irq_ack: channel {} is not an IRQ", self.0);
            return Err(Error::InvalidCapability);
        }
        IrqHandler(BASE_IRQ_CAP + self.0 as u64).ack()
    }

    /// Corresponds to `microkit_deferred_irq_ack`: re-enables this IRQ
    /// channel with the PD's next wait, one system call fewer (something
    /// else held for that wait, e.g. a [`Channel::notify_deferred`], is
    /// done now instead).
    pub fn irq_ack_deferred(self) -> Result<(), Error> {
        if microkit_irqs.get() & self.bit() == 0 {
            log::error!(target: "core", "irq_ack: channel {} is not an IRQ", self.0);
            return Err(Error::InvalidCapability);
        }
        super::runtime::defer_irq_ack(BASE_IRQ_CAP + self.0 as u64);
        Ok(())
    }

    /// Corresponds to `microkit_ppcall`: a protected procedure call. The
    /// message registers are set with [`crate::sel4::syscall::set_mr`]
    /// before, and read with `get_mr` after.
    pub fn ppcall(self, info: MessageInfo) -> Result<MessageInfo, Error> {
        if microkit_pps.get() & self.bit() == 0 {
            log::error!(target: "core", "ppcall: channel {} has no pp right", self.0);
            return Err(Error::InvalidCapability);
        }
        Ok(Endpoint(BASE_ENDPOINT_CAP + self.0 as u64).call(info))
    }
}

/// The set of channels a notification badge names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChannelSet(pub u64);

impl ChannelSet {
    /// True if `channel` is in the set.
    pub const fn contains(self, channel: Channel) -> bool {
        self.0 & channel.bit() != 0
    }

    /// The channels, lowest id first.
    pub fn iter(self) -> impl Iterator<Item = Channel> {
        let mut bits = self.0 & ((1 << MAX_CHANNELS) - 1);
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let id = bits.trailing_zeros() as u8;
            bits &= bits - 1;
            Some(Channel(id))
        })
    }
}

/// A child of this PD: a child PD or a vCPU of its virtual machine (the
/// ids share one space).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Child(pub u8);

impl Child {
    /// TCB of the vCPU with this id.
    pub const fn vcpu_tcb(self) -> Tcb {
        Tcb(BASE_VM_TCB_CAP + self.0 as u64)
    }

    /// ARM VCPU object of the vCPU with this id.
    pub const fn vcpu(self) -> Vcpu {
        Vcpu(BASE_VCPU_CAP + self.0 as u64)
    }

    /// InjectIRQ into this vCPU's list register `index`, sent with the PD's
    /// next wait (NBSendRecv to the VCPU) when nothing else is held, else
    /// at once: one system call fewer per injection. The kernel's answer is
    /// lost, so only for an LR the guest cannot hold: one the VMM left empty
    /// or saw EOIed (maintenance), where InjectIRQ is never refused. Other
    /// VCPU invocations on LRs must call [`perform_held`](super::perform_held) first.
    pub fn inject_irq_deferred(self, virq: u16, priority: u8, group: u8, index: u8) {
        let word = crate::sel4::inject_irq_word(virq, priority, group, index);
        super::runtime::defer_inject(self.vcpu().0, word);
    }

    /// TCB of the child PD with this id.
    pub const fn pd_tcb(self) -> Tcb {
        Tcb(BASE_TCB_CAP + self.0 as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_set_iterates_lowest_first_and_ignores_badge_bits() {
        let set = ChannelSet((1 << 0) | (1 << 5) | (1 << 61) | BADGE_FAULT | BADGE_PPC);
        let ids: Vec<u8> = set.iter().map(Channel::id).collect();
        assert_eq!(ids, [0, 5, 61]);
        assert!(set.contains(Channel::new(5).unwrap()));
        assert!(!set.contains(Channel::new(6).unwrap()));
    }

    #[test]
    fn channel_ids_stop_at_61() {
        assert!(Channel::new(61).is_some());
        assert!(Channel::new(62).is_none());
    }

    #[test]
    fn child_caps_follow_the_microkit_layout() {
        assert_eq!(Child(0).vcpu_tcb(), Tcb(266));
        assert_eq!(Child(3).vcpu(), Vcpu(333));
        assert_eq!(Child(1).pd_tcb(), Tcb(203));
    }
}
