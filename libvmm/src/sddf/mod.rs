//! Backends of the virtio devices over sDDF queues: the VMM as an sDDF
//! client of the serial, block and sound virtualisers, and the vsock rings to a
//! peer VMM.

pub mod blk;
pub mod serial;
pub mod sound;
pub mod vsock;

/// Sends a Microkit notification; a fake records them in host tests.
pub trait Notifier {
    /// Notifies channel `channel`.
    fn notify(&mut self, channel: u8);
}

/// Notifications through Microkit channels.
#[derive(Clone, Copy, Debug, Default)]
pub struct Microkit;

impl Notifier for Microkit {
    fn notify(&mut self, channel: u8) {
        match crate::microkit::Channel::new(channel) {
            Some(ch) => ch.notify(),
            None => log::error!(target: "virtio", "no channel {channel}"),
        }
    }
}

/// Notifications that go out with the PD's next wait when it has no reply
/// to send (`Channel::notify_deferred`: `seL4_NBSendRecv`), else just
/// before the reply: one system call fewer per doorbell of a device whose
/// backend notifies from inside an MMIO exit (the block device). Not for a
/// console: its output would then reach the UART after whatever the VMM
/// logs in the same handler (a reset's "booting Linux" before the guest's
/// last line).
#[derive(Clone, Copy, Debug, Default)]
pub struct MicrokitDeferred;

impl Notifier for MicrokitDeferred {
    fn notify(&mut self, channel: u8) {
        match crate::microkit::Channel::new(channel) {
            Some(ch) => ch.notify_deferred(),
            None => log::error!(target: "virtio", "no channel {channel}"),
        }
    }
}

/// Records notifications, for the backends' host tests.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder(pub(crate) std::vec::Vec<u8>);

#[cfg(test)]
impl Notifier for Recorder {
    fn notify(&mut self, channel: u8) {
        self.0.push(channel);
    }
}
