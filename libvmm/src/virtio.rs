//! Virtio-MMIO devices in the guest-physical map: where a transport sits and
//! which SPI it raises. A [`MmioDevice`] is a [`Devices`] of its own, and a
//! pair of `Devices` is one too, so a VM's devices are a (nested) tuple:
//! `(console, block)`.

use crate::guest_memory::{Gpa, GuestRam};
use crate::vm::Devices;
use sddf_bindings::SharedRegion;
use virtio::mmio::{RegisterPage, REGION_SIZE};
use virtio::{MmioTransport, VirtioDevice};

/// Bytes of guest-physical space a virtio-MMIO transport takes (registers
/// 0x000..0x100, configuration space from 0x100).
pub const MMIO_SIZE: u64 = 0x200;

/// A virtio device behind a virtio-MMIO transport at `base`, raising `irq`.
pub struct MmioDevice<D: VirtioDevice> {
    base: u64,
    irq: u32,
    transport: MmioTransport<D>,
    page: Option<SharedPage>,
}

/// The guest's read-only view of the registers ([`MmioDevice::with_register_page`]).
struct SharedPage {
    region: SharedRegion,
    /// Where the transport's registers start in `region`.
    at: usize,
}

impl RegisterPage for SharedPage {
    fn store(&mut self, offset: u64, value: u32) {
        // In bounds by construction (checked in `with_register_page`); little-endian,
        // as virtio-MMIO registers are.
        let _ = self.region.store(self.at + offset as usize, u32::to_le(value));
    }
}

impl<D: VirtioDevice> MmioDevice<D> {
    /// `device` at guest-physical `base` (the device tree's `reg`), raising
    /// SPI `irq` (GIC interrupt id: the device tree's SPI number + 32).
    pub fn new(base: u64, irq: u32, device: D) -> Self {
        MmioDevice { base, irq, transport: MmioTransport::new(device), page: None }
    }

    /// Lets the guest read the registers without a trap: `page` is the 4 KiB page holding
    /// `base`, mapped read-only (and uncached) into the guest at `base & !0xfff` and
    /// writable (uncached) here; its stores still trap. The VMM keeps it equal to what a
    /// trapped read returns ([`MmioTransport::sync_registers`]). The rest of the page reads
    /// as zero. Without a page (or with one too small), reads trap as before.
    pub fn with_register_page(mut self, page: SharedRegion) -> Self {
        let at = (self.base & 0xfff) as usize;
        if page.len() < at + REGION_SIZE as usize {
            log::error!(target: "virtio", "register page of {:#x} bytes cannot hold the registers at {:#x}: reads will trap", page.len(), self.base);
            return self;
        }
        for off in (0..page.len()).step_by(4) {
            let _ = page.store(off, 0u32);
        }
        let mut page = SharedPage { region: page, at };
        self.transport.sync_registers(&mut page);
        self.page = Some(page);
        self
    }

    /// Brings the register page (if any) up to date after an access or device work.
    fn sync(&mut self) {
        if let Some(page) = self.page.as_mut() {
            self.transport.sync_registers(page);
        }
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
        let irq = self.transport.process(ram).is_raised().then_some(self.irq);
        self.sync();
        irq
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
        let irq = self.transport.write(ram, offset, width, value).is_raised();
        self.sync();
        Some(irq.then_some(self.irq))
    }

    /// QueueNotify (a 4-byte store): every usable queue is looked at, so the
    /// queue index written need not be read ([`MmioTransport::notify_all`]).
    fn doorbell(&mut self, ram: &mut GuestRam, gpa: Gpa, width: u8) -> Option<Option<u32>> {
        if self.offset(gpa)? != virtio::mmio::QUEUE_NOTIFY || width != 4 {
            return None;
        }
        let irq = self.transport.notify_all(ram)?.is_raised();
        self.sync();
        Some(irq.then_some(self.irq))
    }

    fn reset(&mut self) {
        self.transport.reset();
        self.sync();
    }

    fn poll(&mut self, ram: &mut GuestRam, raise: &mut dyn FnMut(u32)) {
        let irq = self.transport.process(ram).is_raised();
        self.sync();
        if irq {
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

    #[test]
    fn a_register_page_reads_like_the_trapped_registers() {
        let mut mem = vec![0u8; 0x1000];
        let mut ram = GuestRam::from_slice(0x4000_0000, &mut mem);
        let page = SharedRegion::leak_zeroed(0x1000);
        // The device's window starts 0x200 into its page.
        let mut dev =
            MmioDevice::new(0x13_0200, 42, Console::new(Sink)).with_register_page(page.clone());
        let check = |dev: &mut MmioDevice<Console<Sink>>, ram: &mut GuestRam, what: &str| {
            for off in (0..MMIO_SIZE).step_by(4) {
                let trapped = dev.read(ram, Gpa(0x13_0200 + off), 4).unwrap().0;
                let shown: u32 = page.load(0x200 + off as usize).unwrap();
                assert_eq!(u64::from(u32::from_le(shown)), trapped, "{what}: offset {off:#x}");
            }
            let other: u32 = page.load(0).unwrap();
            assert_eq!(other, 0, "{what}: outside the window");
        };
        check(&mut dev, &mut ram, "at reset");
        assert_eq!(page.load::<u32>(0x200).unwrap(), 0x7472_6976_u32.to_le());
        // The driver's steps: status, feature selection, queue selection.
        for (off, value, what) in [
            (0x070, 1, "ACKNOWLEDGE"),
            (0x014, 1, "features page 1"),
            (0x030, 1, "queue 1 selected"),
            (0x070, 3, "DRIVER"),
        ] {
            dev.write(&mut ram, Gpa(0x13_0200 + off), 4, value);
            check(&mut dev, &mut ram, what);
        }
        let _ = dev.write(&mut ram, Gpa(0x13_0200 + 0x064), 4, 1);
        dev.reset();
        check(&mut dev, &mut ram, "after a reset");
        // A window that runs past its page: no page, reads trap as before.
        let small = MmioDevice::new(0x13_0f00, 42, Console::new(Sink))
            .with_register_page(SharedRegion::leak_zeroed(0x1000));
        assert!(small.page.is_none());
    }
}
