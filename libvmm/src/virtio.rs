//! Virtio-MMIO devices in the guest-physical map: where a transport sits and
//! which SPI it raises. A [`MmioDevice`] is a [`Devices`] of its own, and a
//! pair of `Devices` is one too, so a VM's devices are a (nested) tuple:
//! `(console, block)`.

use crate::guest_memory::{Gpa, GuestRam};
use crate::vm::Devices;
use virtio::{MmioTransport, VirtioDevice};

/// Bytes of guest-physical space a virtio-MMIO transport takes (registers
/// 0x000..0x100, configuration space from 0x100).
pub const MMIO_SIZE: u64 = 0x200;

/// A virtio device behind a virtio-MMIO transport at `base`, raising `irq`.
pub struct MmioDevice<D: VirtioDevice> {
    base: u64,
    irq: u32,
    transport: MmioTransport<D>,
}

impl<D: VirtioDevice> MmioDevice<D> {
    /// `device` at guest-physical `base` (the device tree's `reg`), raising
    /// SPI `irq` (GIC interrupt id: the device tree's SPI number + 32).
    pub fn new(base: u64, irq: u32, device: D) -> Self {
        MmioDevice { base, irq, transport: MmioTransport::new(device) }
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut MmioTransport<D> {
        &mut self.transport
    }

    /// The device model.
    pub fn device(&mut self) -> &mut D {
        self.transport.device_mut()
    }

    /// The interrupt it raises.
    pub fn irq(&self) -> u32 {
        self.irq
    }

    /// Lets the device make progress without a guest access (its backend
    /// signalled): returns the interrupt to raise, if any.
    pub fn process(&mut self, ram: &mut GuestRam) -> Option<u32> {
        self.transport.process(ram).is_raised().then_some(self.irq)
    }

    fn offset(&self, gpa: Gpa) -> Option<u64> {
        gpa.0.checked_sub(self.base).filter(|&o| o < MMIO_SIZE)
    }
}

impl<D: VirtioDevice> Devices for MmioDevice<D> {
    fn read(&mut self, _: &mut GuestRam, gpa: Gpa, width: u8) -> Option<(u64, Option<u32>)> {
        let offset = self.offset(gpa)?;
        Some((self.transport.read(offset, width), None))
    }

    fn write(
        &mut self,
        ram: &mut GuestRam,
        gpa: Gpa,
        width: u8,
        value: u64,
    ) -> Option<Option<u32>> {
        let offset = self.offset(gpa)?;
        Some(self.transport.write(ram, offset, width, value).is_raised().then_some(self.irq))
    }

    fn reset(&mut self) {
        self.transport.reset();
    }
}

/// Two sets of devices: the first that claims an address serves it.
impl<A: Devices, B: Devices> Devices for (A, B) {
    fn read(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8) -> Option<(u64, Option<u32>)> {
        match self.0.read(ram, gpa, width) {
            Some(r) => Some(r),
            None => self.1.read(ram, gpa, width),
        }
    }

    fn write(
        &mut self,
        ram: &mut GuestRam,
        gpa: Gpa,
        width: u8,
        value: u64,
    ) -> Option<Option<u32>> {
        match self.0.write(ram, gpa, width, value) {
            Some(r) => Some(r),
            None => self.1.write(ram, gpa, width, value),
        }
    }

    fn reset(&mut self) {
        self.0.reset();
        self.1.reset();
    }
}
