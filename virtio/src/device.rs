//! The seam between a transport and a device model.
//!
//! A device offers its id, feature bits, queue sizes and configuration bytes, and is told
//! when the driver is done setting it up ([`VirtioDevice::activate`]), when it is reset, when
//! a queue is notified and when it should look at its backend ([`VirtioDevice::poll`]). It
//! never sees register offsets or the device status: the transport owns those (virtio 1.2
//! §2.1, §3.1).

use core::fmt;

use crate::memory::GuestMemory;
use crate::queue::Queue;

/// Why a device refused DRIVER_OK.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ActivateError {
    /// The driver did not enable a queue the device needs.
    QueueNotReady(u16),
}

impl fmt::Display for ActivateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivateError::QueueNotReady(q) => write!(f, "queue {q} not ready"),
        }
    }
}

/// What a device may touch while it runs: guest memory and its queues.
pub struct DeviceContext<'a, M: GuestMemory + ?Sized> {
    /// Guest memory.
    pub mem: &'a mut M,
    /// The device's queues, indexed by queue number.
    pub queues: &'a mut [Queue],
    config_changed: bool,
}

impl<'a, M: GuestMemory + ?Sized> DeviceContext<'a, M> {
    /// A context over `mem` and `queues`.
    pub fn new(mem: &'a mut M, queues: &'a mut [Queue]) -> DeviceContext<'a, M> {
        DeviceContext { mem, queues, config_changed: false }
    }

    /// Queue `index` and guest memory, borrowed together.
    pub fn queue(&mut self, index: u16) -> Option<(&mut Queue, &mut M)> {
        let q = self.queues.get_mut(usize::from(index))?;
        Some((q, &mut *self.mem))
    }

    /// Tells the transport the configuration space changed (it bumps ConfigGeneration and
    /// raises a configuration change interrupt, virtio 1.2 §4.2.2).
    pub fn signal_config_change(&mut self) {
        self.config_changed = true;
    }

    /// Whether [`DeviceContext::signal_config_change`] was called.
    pub fn config_changed(&self) -> bool {
        self.config_changed
    }
}

/// A virtio device model, driven by a transport such as
/// [`MmioTransport`](crate::mmio::MmioTransport).
pub trait VirtioDevice {
    /// The virtio device id (virtio 1.2 §5: 2 = block, 3 = console).
    fn device_id(&self) -> u32;

    /// Device-specific feature bits offered. The transport adds VIRTIO_F_VERSION_1 and the
    /// ring features it implements (INDIRECT_DESC, EVENT_IDX).
    fn features(&self) -> u64;

    /// The maximum size of each queue; the slice length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];

    /// Fills `data` with configuration-space bytes starting at `offset`. Bytes past the end
    /// of the configuration space read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// A driver write to configuration space. The default ignores it (and logs it).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        guest_warn!("config write of {} bytes at {:#x} ignored", data.len(), offset);
    }

    /// The driver set DRIVER_OK: the device may start using its queues. `features` are the
    /// negotiated features. An error makes the transport set DEVICE_NEEDS_RESET.
    fn activate(&mut self, features: u64, queues: &[Queue]) -> Result<(), ActivateError>;

    /// Device reset (status 0 written, or the VMM reset the transport). In-flight backend work
    /// must not touch guest memory afterwards.
    fn reset(&mut self);

    /// The driver notified `queue` (only called while the device is active and the queue
    /// ready).
    fn queue_notify<M: GuestMemory + ?Sized>(&mut self, queue: u16, ctx: &mut DeviceContext<'_, M>);

    /// The driver notified the queues in `queues` (bit `i` for queue `i`) at once: the
    /// transport's doorbell path, which does not read which queue was meant
    /// ([`crate::MmioTransport::notify_all`]). Defaults to [`VirtioDevice::queue_notify`] for
    /// each, lowest first; a device that looks at all its queues on any notification
    /// overrides it to do so once.
    fn queues_notify<M: GuestMemory + ?Sized>(
        &mut self,
        queues: u64,
        ctx: &mut DeviceContext<'_, M>,
    ) {
        let mut left = queues;
        while left != 0 {
            // Below 64, so it fits in u16.
            let index = left.trailing_zeros() as u16;
            left &= left - 1;
            self.queue_notify(index, ctx);
        }
    }

    /// Make progress without a notification: backend completions, space or data arrived.
    /// Called by the transport's `process` in any state: a device that is not active (before
    /// [`VirtioDevice::activate`], after [`VirtioDevice::reset`]) only drains its backend
    /// and leaves the queues alone.
    fn poll<M: GuestMemory + ?Sized>(&mut self, ctx: &mut DeviceContext<'_, M>);
}

/// Copies `config[offset..]` into `data`, zero-filling what lies past the end of `config`.
/// A helper for [`VirtioDevice::read_config`].
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else { return };
    if let Some(src) = config.get(start..) {
        let n = core::cmp::min(src.len(), data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_past_the_end_read_as_zero() {
        let cfg = [1u8, 2, 3, 4];
        let mut d = [0xffu8; 4];
        read_config_bytes(&cfg, 2, &mut d);
        assert_eq!(d, [3, 4, 0, 0]);
        read_config_bytes(&cfg, 9, &mut d);
        assert_eq!(d, [0; 4]);
        read_config_bytes(&cfg, u64::MAX, &mut d);
        assert_eq!(d, [0; 4]);
    }
}
