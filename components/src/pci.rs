//! PCI on a generic ECAM host bridge: enumeration, BAR sizing and
//! assignment, command register, INTx routing.
//!
//! This is the small part of a PCI bus driver a native device driver needs
//! when nothing (no firmware, no OS) has set the bus up: QEMU's `virt`
//! machine leaves every BAR unassigned and every function with memory
//! decoding off. References: PCI Local Bus Specification 3.0 §6.1 (the
//! type 0 header), §6.2.2 (command register), §6.2.5.1 (BARs and sizing);
//! PCI Express Base Specification 4.0 §7.2.2 (ECAM: 4 KiB of configuration
//! space per function at `bus << 20 | device << 15 | function << 12`).
//!
//! Configuration space is reached through [`ConfigSpace`] (on hardware an
//! [`Ecam`] over the mapped ECAM window; in host tests a model), BARs are
//! placed in a [`Window`] of the host bridge's memory range, and an INTx
//! pin becomes a GIC SPI through an [`IntxMap`], the device tree's
//! `interrupt-map` given as configuration data.

use sddf_bindings::SharedRegion;

// Type 0 configuration header fields (PCI 3.0 §6.1).
/// 0x00 Vendor ID (16 bits) and Device ID (16 bits).
pub const VENDOR_DEVICE: u16 = 0x00;
/// 0x04 Command (16 bits) and Status (16 bits).
pub const COMMAND: u16 = 0x04;
/// 0x08 Revision ID (8 bits) and Class Code (24 bits).
pub const CLASS_REVISION: u16 = 0x08;
/// 0x0c Cache Line Size, Latency Timer, Header Type, BIST.
pub const HEADER: u16 = 0x0c;
/// 0x10 Base Address Register 0 (six of them, 4 bytes apart).
pub const BAR0: u16 = 0x10;
/// 0x3c Interrupt Line (8 bits), Interrupt Pin (8 bits), Min_Gnt, Max_Lat.
pub const INTERRUPT: u16 = 0x3c;

/// Command register: respond to memory space accesses (§6.2.2).
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: may master the bus (DMA).
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Command register: INTx assertion disabled.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;

/// Devices per bus.
pub const DEVICES: u8 = 32;
/// Functions per device.
pub const FUNCTIONS: u8 = 8;
/// BARs in a type 0 header.
pub const BARS: usize = 6;
/// Bytes of ECAM space per bus.
pub const ECAM_BUS_SIZE: usize = 1 << 20;

/// A function's address: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl Bdf {
    /// The function's address, or `None` if device or function is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device < DEVICES && function < FUNCTIONS {
            Some(Bdf { bus, device, function })
        } else {
            None
        }
    }

    /// Offset of the function's configuration space in an ECAM window that
    /// starts at bus `first_bus` (PCIe 4.0 §7.2.2).
    pub fn ecam_offset(self, first_bus: u8) -> Option<usize> {
        let bus = usize::from(self.bus.checked_sub(first_bus)?);
        Some(bus << 20 | usize::from(self.device) << 15 | usize::from(self.function) << 12)
    }
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Configuration space access. Offsets are byte offsets into the
/// function's 4 KiB; `read32`/`write32` offsets are 4-byte aligned and
/// `write16` offsets 2-byte aligned. A function that does not exist reads as
/// all ones (PCI 3.0 §6.1: Vendor ID 0xffff).
pub trait ConfigSpace {
    /// Reads the 32-bit register at `offset`.
    fn read32(&mut self, f: Bdf, offset: u16) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, f: Bdf, offset: u16, value: u32);
    /// Writes the 16-bit register at `offset` (the command register, without
    /// touching the status register's write-1-to-clear bits beside it).
    fn write16(&mut self, f: Bdf, offset: u16, value: u16);
}

/// The ECAM window of a host bridge, mapped (uncached) from bus `first_bus`
/// on. Functions outside the mapped buses read as all ones and ignore
/// writes.
pub struct Ecam {
    region: SharedRegion,
    first_bus: u8,
}

impl Ecam {
    /// ECAM access over `region`, whose first byte is bus `first_bus`.
    pub fn new(region: SharedRegion, first_bus: u8) -> Ecam {
        Ecam { region, first_bus }
    }

    fn at(&self, f: Bdf, offset: u16) -> Option<usize> {
        let base = f.ecam_offset(self.first_bus)?;
        (offset < 0x1000).then_some(base + usize::from(offset))
    }
}

impl ConfigSpace for Ecam {
    fn read32(&mut self, f: Bdf, offset: u16) -> u32 {
        self.at(f, offset).and_then(|at| self.region.load::<u32>(at).ok()).unwrap_or(u32::MAX)
    }

    fn write32(&mut self, f: Bdf, offset: u16, value: u32) {
        if let Some(at) = self.at(f, offset) {
            let _ = self.region.store::<u32>(at, value);
        }
    }

    fn write16(&mut self, f: Bdf, offset: u16, value: u16) {
        if let Some(at) = self.at(f, offset) {
            let _ = self.region.store::<u16>(at, value);
        }
    }
}

/// A present function, from its configuration header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code: base class, subclass, programming interface (24 bits).
    pub class: u32,
    /// Header type (bits 6:0): 0 for an endpoint, 1 for a PCI-PCI bridge.
    pub header_type: u8,
    /// INTx pin it uses: 1 = INTA .. 4 = INTD, 0 = none.
    pub interrupt_pin: u8,
}

impl Function {
    /// The base class and subclass (e.g. 0x0403, a High Definition Audio
    /// controller).
    pub fn class_subclass(&self) -> u16 {
        (self.class >> 8) as u16
    }
}

/// Reads a function's header; `None` if nothing answers there.
pub fn probe(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Option<Function> {
    let id = cfg.read32(bdf, VENDOR_DEVICE);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let header = cfg.read32(bdf, HEADER);
    Some(Function {
        bdf,
        vendor,
        device: (id >> 16) as u16,
        class: cfg.read32(bdf, CLASS_REVISION) >> 8,
        header_type: (header >> 16) as u8 & 0x7f,
        interrupt_pin: (cfg.read32(bdf, INTERRUPT) >> 8) as u8,
    })
}

/// Every function on `bus`, device by device. Functions 1-7 are only
/// probed where function 0 exists and says it is multi-function (header
/// type bit 7, PCI 3.0 §6.2.1).
pub fn scan(cfg: &mut impl ConfigSpace, bus: u8) -> impl Iterator<Item = Function> + '_ {
    (0..DEVICES)
        .flat_map(move |d| (0..FUNCTIONS).map(move |f| (d, f)))
        .scan(false, move |multi, (d, f)| {
            let bdf = Bdf { bus, device: d, function: f };
            if f == 0 {
                let found = probe(cfg, bdf);
                *multi = found.is_some() && cfg.read32(bdf, HEADER) & (1 << 23) != 0;
                return Some(found);
            }
            Some(if *multi { probe(cfg, bdf) } else { None })
        })
        .flatten()
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory space.
    Memory32,
    /// 64-bit memory space (this BAR and the next one).
    Memory64,
    /// I/O space.
    Io,
}

/// A BAR the function implements, sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Its index, 0..6 (a 64-bit BAR also uses index + 1).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Size in bytes, a power of two.
    pub size: u64,
}

/// Why BARs could not be sized or placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// A BAR's size mask is not of the form 1..10..0 (the function is
    /// broken, or nothing answers).
    BadBar(u8),
    /// A 64-bit BAR in the last BAR slot, which has no upper half.
    Bar64AtEnd,
    /// The window has no room for a BAR of this index (or it cannot be
    /// reached: a 32-bit BAR above 4 GiB).
    NoRoom(u8),
}

impl core::fmt::Display for PciError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PciError::BadBar(i) => write!(f, "BAR{i} has an invalid size mask"),
            PciError::Bar64AtEnd => f.write_str("a 64-bit BAR in the last BAR slot"),
            PciError::NoRoom(i) => write!(f, "no room for BAR{i} in the memory window"),
        }
    }
}

fn bar_offset(index: u8) -> u16 {
    BAR0 + 4 * u16::from(index)
}

/// Sizes the function's BARs (PCI 3.0 §6.2.5.1): with decoding off, each
/// BAR is written with all ones and read back; the original values and the
/// command register are restored after. Unimplemented BARs are `None`. A
/// type 0 header has six BARs, a type 1 (PCI-PCI bridge) header two (its
/// later dwords are bus numbers and windows), other types none.
pub fn size_bars(cfg: &mut impl ConfigSpace, bdf: Bdf) -> Result<[Option<Bar>; BARS], PciError> {
    let count = match cfg.read32(bdf, HEADER) >> 16 & 0x7f {
        0 => BARS as u8,
        1 => 2,
        _ => 0,
    };
    let command = cfg.read32(bdf, COMMAND) as u16;
    cfg.write16(bdf, COMMAND, command & !(CMD_MEMORY | 1));
    let result = size_bars_decoding_off(cfg, bdf, count);
    cfg.write16(bdf, COMMAND, command);
    result
}

fn size_bars_decoding_off(
    cfg: &mut impl ConfigSpace,
    bdf: Bdf,
    count: u8,
) -> Result<[Option<Bar>; BARS], PciError> {
    let mut bars = [None; BARS];
    let mut index = 0u8;
    while index < count {
        let at = bar_offset(index);
        let original = cfg.read32(bdf, at);
        cfg.write32(bdf, at, u32::MAX);
        let mask = cfg.read32(bdf, at);
        cfg.write32(bdf, at, original);
        let (kind, mut size_mask) = if original & 1 == 1 {
            // A 16-bit I/O decoder may read 0 in the upper half (§6.2.5.1).
            let mask = if mask & 0xffff_0000 == 0 && mask != 0 { mask | 0xffff_0000 } else { mask };
            (BarKind::Io, u64::from(mask & !0x3) | 0xffff_ffff_0000_0000)
        } else if (original >> 1) & 3 == 2 {
            (BarKind::Memory64, u64::from(mask & !0xf))
        } else {
            (BarKind::Memory32, u64::from(mask & !0xf) | 0xffff_ffff_0000_0000)
        };
        if kind == BarKind::Memory64 {
            if index + 1 >= count {
                return Err(PciError::Bar64AtEnd);
            }
            let high_at = bar_offset(index + 1);
            let high = cfg.read32(bdf, high_at);
            cfg.write32(bdf, high_at, u32::MAX);
            size_mask |= u64::from(cfg.read32(bdf, high_at)) << 32;
            cfg.write32(bdf, high_at, high);
        }
        let low_bits = if kind == BarKind::Io { 0x3 } else { 0xf };
        if u64::from(mask) & !low_bits != 0 || kind == BarKind::Memory64 {
            let size = (!size_mask).wrapping_add(1);
            // A valid mask is ones down to the size bit, zeros below it.
            if size == 0 || !size.is_power_of_two() || size_mask != !(size - 1) {
                return Err(PciError::BadBar(index));
            }
            bars[usize::from(index)] =
                Some(Bar { index, kind, prefetchable: original & 0x8 != 0, size });
        }
        index += if kind == BarKind::Memory64 { 2 } else { 1 };
    }
    Ok(bars)
}

/// A range of bus addresses to place memory BARs in: a host bridge's
/// memory window, or the part of it a driver was given. Addresses are
/// handed out upwards, each aligned to the BAR's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    next: u64,
    end: u64,
}

impl Window {
    /// The window `base..base + size`.
    pub fn new(base: u64, size: u64) -> Window {
        Window { next: base, end: base.saturating_add(size) }
    }

    /// Takes `size` bytes aligned to `size` (a power of two), below
    /// `limit` (exclusive); `None` if they do not fit.
    pub fn take(&mut self, size: u64, limit: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        let at = self.next.checked_add(size - 1)? & !(size - 1);
        let end = at.checked_add(size)?;
        if end > self.end || end > limit {
            return None;
        }
        self.next = end;
        Some(at)
    }
}

/// A memory BAR with the bus address it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// The BAR.
    pub bar: Bar,
    /// Its bus address (in QEMU virt's 32-bit window, also the CPU's
    /// physical address: that window is mapped 1:1).
    pub address: u64,
}

/// Sizes the function's BARs and places its memory BARs in `window`,
/// largest first (so alignment wastes least), then turns on memory decoding
/// and bus mastering (and clears INTx disable). I/O BARs are left
/// unassigned and I/O decoding off. 32-bit BARs must land below 4 GiB.
pub fn assign_memory_bars(
    cfg: &mut impl ConfigSpace,
    bdf: Bdf,
    window: &mut Window,
) -> Result<[Option<Assigned>; BARS], PciError> {
    let bars = size_bars(cfg, bdf)?;
    let mut order: [Option<Bar>; BARS] = bars;
    // Unimplemented BARs (None) sort first and are skipped below.
    order.sort_unstable_by_key(|b| b.map(|b| (core::cmp::Reverse(b.size), b.index)));
    let mut assigned = [None; BARS];
    for bar in order.into_iter().flatten().filter(|b| b.kind != BarKind::Io) {
        let limit = if bar.kind == BarKind::Memory32 { 1 << 32 } else { u64::MAX };
        let address = window.take(bar.size, limit).ok_or(PciError::NoRoom(bar.index))?;
        let at = bar_offset(bar.index);
        let flags = cfg.read32(bdf, at) & 0xf;
        cfg.write32(bdf, at, address as u32 | flags);
        if bar.kind == BarKind::Memory64 {
            cfg.write32(bdf, bar_offset(bar.index + 1), (address >> 32) as u32);
        }
        assigned[usize::from(bar.index)] = Some(Assigned { bar, address });
    }
    let command = cfg.read32(bdf, COMMAND) as u16;
    cfg.write16(bdf, COMMAND, (command | CMD_MEMORY | CMD_BUS_MASTER) & !CMD_INTX_DISABLE & !1);
    Ok(assigned)
}

/// How a host bridge routes INTx pins to GIC SPIs, read from its device
/// tree's `interrupt-map`. QEMU virt (and the common "generic ECAM" host
/// bridges) use the standard swizzle: device `d`'s pin `p` (1 = INTA)
/// raises SPI `first_spi + (d + p - 1) % 4` (PCI-to-PCI Bridge
/// Architecture 1.2 §9.1, applied at the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntxMap {
    /// The SPI that device 0's INTA raises (QEMU virt: SPI 3).
    pub first_spi: u32,
}

impl IntxMap {
    /// The SPI number (GIC interrupt ID minus 32) for `pin` of `device` on
    /// the root bus; `None` for pin 0 (no interrupt) or a pin above 4.
    pub fn spi(&self, device: u8, pin: u8) -> Option<u32> {
        if !(1..=4).contains(&pin) {
            return None;
        }
        Some(self.first_spi + (u32::from(device) + u32::from(pin) - 1) % 4)
    }

    /// The GIC interrupt ID (the number a Microkit `<irq irq=...>` takes).
    pub fn interrupt_id(&self, device: u8, pin: u8) -> Option<u32> {
        self.spi(device, pin).map(|spi| spi + 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// One modelled function: a 256-byte header with BARs of given sizes.
    struct FakeFunction {
        bdf: Bdf,
        regs: [u32; 64],
        /// Per BAR dword: the bits software can write (0 = unimplemented).
        writable: [u32; BARS],
        /// A BAR was written with all ones while memory decoding was on.
        sized_while_decoding: bool,
    }

    /// A bus of modelled functions behind an ECAM; absent slots read as ones.
    #[derive(Default)]
    struct FakeBus {
        functions: Vec<FakeFunction>,
        writes: usize,
    }

    /// A BAR for `FakeBus::add`: kind and size.
    #[derive(Clone, Copy)]
    enum B {
        M32(u32),
        M32Pref(u32),
        M64(u64),
        Io(u32),
    }

    impl FakeBus {
        fn add(&mut self, dev: u8, func: u8, id: u32, class: u32, multi: bool, bars: &[B]) {
            let mut f = FakeFunction {
                bdf: Bdf::new(0, dev, func).unwrap(),
                regs: [0; 64],
                writable: [0; BARS],
                sized_while_decoding: false,
            };
            f.regs[0] = id;
            f.regs[2] = class << 8 | 1;
            f.regs[3] = if multi { 0x80 << 16 } else { 0 };
            f.regs[15] = 1 << 8; // INTA
            let mut i = 0;
            for bar in bars {
                match *bar {
                    B::M32(size) | B::M32Pref(size) => {
                        let pref = matches!(bar, B::M32Pref(_));
                        f.regs[4 + i] = if pref { 0x8 } else { 0 };
                        f.writable[i] = !(size - 1);
                        i += 1;
                    }
                    B::M64(size) => {
                        let mask = !(size - 1);
                        f.regs[4 + i] = 0x4;
                        f.writable[i] = mask as u32 & !0xf;
                        f.writable[i + 1] = (mask >> 32) as u32;
                        i += 2;
                    }
                    B::Io(size) => {
                        f.regs[4 + i] = 0x1;
                        f.writable[i] = !(size - 1) & !0x3;
                        i += 1;
                    }
                }
            }
            self.functions.push(f);
        }

        fn get(&mut self, bdf: Bdf) -> Option<&mut FakeFunction> {
            self.functions.iter_mut().find(|f| f.bdf == bdf)
        }

        fn reg(&mut self, bdf: Bdf, offset: u16) -> u32 {
            self.get(bdf).unwrap().regs[usize::from(offset / 4)]
        }
    }

    impl ConfigSpace for FakeBus {
        fn read32(&mut self, f: Bdf, offset: u16) -> u32 {
            assert_eq!(offset % 4, 0, "unaligned read32");
            match self.get(f) {
                Some(func) if offset < 256 => func.regs[usize::from(offset / 4)],
                Some(_) => 0,
                None => u32::MAX,
            }
        }

        fn write32(&mut self, f: Bdf, offset: u16, value: u32) {
            assert_eq!(offset % 4, 0, "unaligned write32");
            self.writes += 1;
            let Some(func) = self.get(f) else { return };
            let i = usize::from(offset / 4);
            if (4..10).contains(&i) {
                let bar = i - 4;
                if value == u32::MAX && func.regs[1] & u32::from(CMD_MEMORY) != 0 {
                    func.sized_while_decoding = true;
                }
                let w = func.writable[bar];
                func.regs[i] = (func.regs[i] & !w) | (value & w);
            } else if i == 15 {
                func.regs[i] = (func.regs[i] & !0xff) | (value & 0xff);
            }
        }

        fn write16(&mut self, f: Bdf, offset: u16, value: u16) {
            assert_eq!(offset, COMMAND, "only the command register is written 16 bits wide");
            self.writes += 1;
            if let Some(func) = self.get(f) {
                func.regs[1] = (func.regs[1] & 0xffff_0000) | u32::from(value & 0x0407);
            }
        }
    }

    fn bdf(d: u8, f: u8) -> Bdf {
        Bdf::new(0, d, f).unwrap()
    }

    #[test]
    fn ecam_offsets_follow_bus_device_function() {
        assert_eq!(bdf(0, 0).ecam_offset(0), Some(0));
        assert_eq!(bdf(1, 0).ecam_offset(0), Some(0x8000));
        assert_eq!(bdf(31, 7).ecam_offset(0), Some(0xff000));
        assert_eq!(Bdf::new(2, 3, 1).unwrap().ecam_offset(1), Some(0x100000 | 0x18000 | 0x1000));
        assert_eq!(Bdf::new(0, 0, 0).unwrap().ecam_offset(1), None);
        assert_eq!(Bdf::new(0, 32, 0), None);
        assert_eq!(Bdf::new(0, 0, 8), None);
    }

    #[test]
    fn ecam_reads_a_mapped_function_and_ones_outside_the_window() {
        let region = SharedRegion::leak_zeroed(ECAM_BUS_SIZE);
        region.store::<u32>(0x8000, 0x2668_8086).unwrap();
        let mut ecam = Ecam::new(region.clone(), 0);
        assert_eq!(ecam.read32(bdf(1, 0), VENDOR_DEVICE), 0x2668_8086);
        assert_eq!(ecam.read32(Bdf::new(1, 0, 0).unwrap(), VENDOR_DEVICE), u32::MAX);
        ecam.write16(bdf(1, 0), COMMAND, 0x6);
        assert_eq!(region.load::<u32>(0x8004).unwrap(), 6);
        ecam.write32(bdf(1, 0), 0x1000, 1); // past the function's 4 KiB: dropped
        assert_eq!(region.load::<u32>(0x9000).unwrap(), 0);
    }

    #[test]
    fn scan_finds_present_functions_and_skips_empty_slots() {
        let mut bus = FakeBus::default();
        bus.add(0, 0, 0x0008_1b36, 0x060000, false, &[]);
        bus.add(1, 0, 0x2668_8086, 0x040300, false, &[B::M32(0x4000)]);
        // Function 1 of a single-function device is not looked at.
        bus.add(1, 1, 0x1111_1af4, 0x020000, false, &[]);
        bus.add(3, 0, 0x1000_1af4, 0x020000, true, &[]);
        bus.add(3, 2, 0x1001_1af4, 0x010000, false, &[]);
        let found: Vec<_> = scan(&mut bus, 0).map(|f| (f.bdf, f.vendor, f.device)).collect();
        assert_eq!(
            found,
            [
                (bdf(0, 0), 0x1b36, 0x0008),
                (bdf(1, 0), 0x8086, 0x2668),
                (bdf(3, 0), 0x1af4, 0x1000),
                (bdf(3, 2), 0x1af4, 0x1001)
            ]
        );
        let hda = probe(&mut bus, bdf(1, 0)).unwrap();
        assert_eq!((hda.class_subclass(), hda.interrupt_pin, hda.header_type), (0x0403, 1, 0));
        assert_eq!(probe(&mut bus, bdf(2, 0)), None);
    }

    #[test]
    fn sizes_32_and_64_bit_and_io_bars_with_decoding_off() {
        let mut bus = FakeBus::default();
        let bars = [B::M32(0x4000), B::M64(0x10_0000_0000), B::Io(0x20), B::M32Pref(0x1000)];
        bus.add(2, 0, 0x1234_5678, 0x040300, false, &bars);
        bus.get(bdf(2, 0)).unwrap().regs[1] = u32::from(CMD_MEMORY);
        let sized = size_bars(&mut bus, bdf(2, 0)).unwrap();
        let f = bus.get(bdf(2, 0)).unwrap();
        assert!(!f.sized_while_decoding, "a BAR was sized with memory decoding on");
        assert_eq!(f.regs[1], u32::from(CMD_MEMORY), "command register not restored");
        assert_eq!(f.regs[4..10], [0, 0x4, 0, 0x1, 0x8, 0], "BARs not restored");
        let m = |index, kind, prefetchable, size| Some(Bar { index, kind, prefetchable, size });
        assert_eq!(
            sized,
            [
                m(0, BarKind::Memory32, false, 0x4000),
                m(1, BarKind::Memory64, false, 0x10_0000_0000),
                None,
                m(3, BarKind::Io, false, 0x20),
                m(4, BarKind::Memory32, true, 0x1000),
                None
            ]
        );
    }

    #[test]
    fn assigns_aligned_non_overlapping_bars_and_enables_decoding() {
        let mut bus = FakeBus::default();
        let bars = [B::M32(0x1000), B::M64(0x10_0000), B::Io(0x100), B::M32(0x4000)];
        bus.add(1, 0, 0x2668_8086, 0x040300, false, &bars);
        bus.get(bdf(1, 0)).unwrap().regs[1] = u32::from(CMD_INTX_DISABLE | 1);
        let mut window = Window::new(0x1000_0000, 0x20_0000);
        let a = assign_memory_bars(&mut bus, bdf(1, 0), &mut window).unwrap();
        let placed: Vec<_> = a.iter().flatten().map(|a| (a.bar.index, a.address)).collect();
        // Largest first: the 1 MiB BAR, then 16 KiB, then 4 KiB.
        assert_eq!(placed, [(0, 0x1010_4000), (1, 0x1000_0000), (4, 0x1010_0000)]);
        for p in a.iter().flatten() {
            assert_eq!(p.address % p.bar.size, 0, "BAR{} misaligned", p.bar.index);
        }
        assert_eq!(bus.reg(bdf(1, 0), BAR0), 0x1010_4000);
        assert_eq!(bus.reg(bdf(1, 0), BAR0 + 4), 0x1000_0004);
        assert_eq!(bus.reg(bdf(1, 0), BAR0 + 8), 0, "upper half of the 64-bit BAR");
        assert_eq!(bus.reg(bdf(1, 0), BAR0 + 12) & !3, 0, "I/O BAR left alone");
        let command = bus.reg(bdf(1, 0), COMMAND) as u16;
        assert_eq!(command, CMD_MEMORY | CMD_BUS_MASTER, "memory + bus master, no I/O, INTx on");
    }

    #[test]
    fn a_64_bit_bar_may_go_above_4_gib_but_a_32_bit_bar_may_not() {
        let mut bus = FakeBus::default();
        bus.add(1, 0, 0x1_8086, 0x040300, false, &[B::M64(0x1000)]);
        bus.add(2, 0, 0x2_8086, 0x040300, false, &[B::M32(0x1000)]);
        let mut high = Window::new(0x80_0000_0000, 0x80_0000_0000);
        let a = assign_memory_bars(&mut bus, bdf(1, 0), &mut high).unwrap();
        assert_eq!(a[0].unwrap().address, 0x80_0000_0000);
        assert_eq!((bus.reg(bdf(1, 0), BAR0), bus.reg(bdf(1, 0), BAR0 + 4)), (0x4, 0x80));
        assert_eq!(assign_memory_bars(&mut bus, bdf(2, 0), &mut high), Err(PciError::NoRoom(0)));
    }

    #[test]
    fn a_bar_larger_than_the_window_is_refused() {
        let mut bus = FakeBus::default();
        bus.add(1, 0, 0x2668_8086, 0x040300, false, &[B::M32(0x4000)]);
        let mut window = Window::new(0x1000_0000, 0x2000);
        assert_eq!(assign_memory_bars(&mut bus, bdf(1, 0), &mut window), Err(PciError::NoRoom(0)));
        assert_eq!(bus.reg(bdf(1, 0), COMMAND) as u16 & CMD_MEMORY, 0, "decoding stays off");
    }

    #[test]
    fn broken_bar_masks_are_errors() {
        let mut bus = FakeBus::default();
        bus.add(1, 0, 0x2668_8086, 0x040300, false, &[B::M32(0x4000)]);
        bus.get(bdf(1, 0)).unwrap().writable[0] = 0xff00_f000; // a hole in the mask
        assert_eq!(size_bars(&mut bus, bdf(1, 0)), Err(PciError::BadBar(0)));
        let mut bus = FakeBus::default();
        bus.add(1, 0, 0x2668_8086, 0x040300, false, &[]);
        bus.get(bdf(1, 0)).unwrap().regs[9] = 0x4; // 64-bit type in BAR5
        assert_eq!(size_bars(&mut bus, bdf(1, 0)), Err(PciError::Bar64AtEnd));
    }

    #[test]
    fn a_bridge_has_two_bars_and_its_bus_numbers_are_left_alone() {
        let mut bus = FakeBus::default();
        bus.add(
            4,
            0,
            0x0001_1b36,
            0x060400,
            false,
            &[B::M32(0x1000), B::M32(0x1000), B::M32(0x1000)],
        );
        let f = bus.get(bdf(4, 0)).unwrap();
        f.regs[3] = 1 << 16; // header type 1
        f.regs[6] = 0x00_02_01_00; // primary 0, secondary 1, subordinate 2
        let sized = size_bars(&mut bus, bdf(4, 0)).unwrap();
        assert_eq!(sized.iter().flatten().count(), 2);
        assert_eq!(bus.reg(bdf(4, 0), BAR0 + 8), 0x00_02_01_00);
        assert_eq!(bus.writes, 2 * 2 + 2, "two BARs sized, the command register twice");
    }

    #[test]
    fn window_alignment_and_overflow() {
        let mut w = Window::new(0x1000, 0x10000);
        assert_eq!(w.take(0x4000, u64::MAX), Some(0x4000));
        assert_eq!(w.take(0x1000, u64::MAX), Some(0x8000));
        assert_eq!(w.take(0x3000, u64::MAX), None, "not a power of two");
        assert_eq!(w.take(0x10000, u64::MAX), None, "past the end");
        let mut top = Window::new(u64::MAX - 0xfff, 0x1000);
        assert_eq!(top.take(0x2000, u64::MAX), None, "address overflow");
    }

    #[test]
    fn intx_pins_swizzle_by_slot_as_in_qemu_virt_interrupt_map() {
        // QEMU virt's interrupt-map: slot 0 INTA..INTD -> SPI 3..6, slot 1
        // INTA -> SPI 4, slot 2 INTC -> SPI 3, slot 3 INTB -> SPI 3 ...
        let map = IntxMap { first_spi: 3 };
        assert_eq!([1, 2, 3, 4].map(|p| map.spi(0, p).unwrap()), [3, 4, 5, 6]);
        assert_eq!([1, 2, 3, 4].map(|p| map.spi(1, p).unwrap()), [4, 5, 6, 3]);
        assert_eq!([1, 2, 3, 4].map(|p| map.spi(2, p).unwrap()), [5, 6, 3, 4]);
        assert_eq!([1, 2, 3, 4].map(|p| map.spi(3, p).unwrap()), [6, 3, 4, 5]);
        assert_eq!(map.spi(4, 1), Some(3), "the mask 0x1800 keeps the slot's low 2 bits");
        assert_eq!(map.interrupt_id(1, 1), Some(36));
        assert_eq!((map.spi(1, 0), map.spi(1, 5)), (None, None));
    }
}
