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

    /// QueueNotify (a 4-byte store): every usable queue is looked at, so the
    /// queue index written need not be read ([`MmioTransport::notify_all`]).
    fn doorbell(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8) -> Option<Option<u32>> {
        if self.offset(gpa)? != virtio::mmio::QUEUE_NOTIFY || width != 4 {
            return None;
        }
        Some(self.transport.notify_all(ram)?.is_raised().then_some(self.irq))
    }

    fn reset(&mut self) {
        self.transport.reset();
    }

    fn poll(&mut self, ram: &mut GuestRam, raise: &mut dyn FnMut(u32)) {
        if self.transport.process(ram).is_raised() {
            raise(self.irq);
        }
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

    fn doorbell(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8) -> Option<Option<u32>> {
        match self.0.doorbell(ram, gpa, width) {
            Some(r) => Some(r),
            None => self.1.doorbell(ram, gpa, width),
        }
    }

    fn poll(&mut self, ram: &mut GuestRam, raise: &mut dyn FnMut(u32)) {
        self.0.poll(ram, raise);
        self.1.poll(ram, raise);
    }

    fn reset(&mut self) {
        self.0.reset();
        self.1.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use virtio::console::{Console, SerialBackend};

    #[derive(Default)]
    struct Sink;

    impl SerialBackend for Sink {
        fn tx_space(&self) -> usize {
            usize::MAX
        }
        fn tx(&mut self, data: &[u8]) -> usize {
            data.len()
        }
        fn tx_flush(&mut self) {}
        fn rx(&mut self, _: &mut [u8]) -> usize {
            0
        }
    }

    #[test]
    fn a_pair_of_devices_routes_by_address_and_misses_elsewhere() {
        let mut mem = vec![0u8; 0x1000];
        let mut ram = GuestRam::from_slice(0x4000_0000, &mut mem);
        let mut devs = (
            MmioDevice::new(0x13_0000, 42, Console::new(Sink)),
            MmioDevice::new(0x15_0000, 43, Console::new(Sink)),
        );
        // Magic and device id at both places, nothing just past either.
        for base in [0x13_0000, 0x15_0000] {
            assert_eq!(devs.read(&mut ram, Gpa(base), 4), Some((0x7472_6976, None)));
            assert_eq!(devs.read(&mut ram, Gpa(base + 8), 4), Some((3, None)));
            assert_eq!(devs.read(&mut ram, Gpa(base + MMIO_SIZE), 4), None);
            assert_eq!(devs.write(&mut ram, Gpa(base + MMIO_SIZE), 4, 0), None);
        }
        assert_eq!(devs.read(&mut ram, Gpa(0x12_ffff), 1), None);
        // A status write reaches the right device only.
        assert_eq!(devs.write(&mut ram, Gpa(0x15_0070), 4, 1), Some(None));
        assert_eq!(devs.1.transport().status(), 1);
        assert_eq!(devs.0.transport().status(), 0);
        devs.reset();
        assert_eq!(devs.1.transport().status(), 0);
        assert_eq!(devs.1.irq(), 43);
    }
}
