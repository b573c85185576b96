//! The controller's registers (Intel HDA specification 1.0a §3.3) and the
//! trait the driver reaches them through.
//!
//! Registers are 8, 16 or 32 bits wide and must be accessed at their own
//! width: QEMU's `intel-hda` decodes each register by its offset, so a
//! 32-bit write at CORBCTL (0x4c) does not reach CORBSTS or CORBSIZE.

use sddf_bindings::SharedRegion;

/// The controller's memory-mapped registers (BAR0), by byte offset.
/// On hardware a [`SharedRegion`] over the uncached BAR mapping; in host
/// tests a model of the controller.
pub trait HdaRegisters {
    /// Reads the 8-bit register at `offset`.
    fn read8(&mut self, offset: usize) -> u8;
    /// Reads the 16-bit register at `offset`.
    fn read16(&mut self, offset: usize) -> u16;
    /// Reads the 32-bit register at `offset`.
    fn read32(&mut self, offset: usize) -> u32;
    /// Writes the 8-bit register at `offset`.
    fn write8(&mut self, offset: usize, value: u8);
    /// Writes the 16-bit register at `offset`.
    fn write16(&mut self, offset: usize, value: u16);
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
}

/// Accesses outside the mapping (a driver bug) read as 0 and are dropped,
/// with an error logged.
impl HdaRegisters for SharedRegion {
    fn read8(&mut self, offset: usize) -> u8 {
        self.load(offset).unwrap_or_else(|e| bad(offset, e))
    }
    fn read16(&mut self, offset: usize) -> u16 {
        self.load(offset).unwrap_or_else(|e| bad(offset, e))
    }
    fn read32(&mut self, offset: usize) -> u32 {
        self.load(offset).unwrap_or_else(|e| bad(offset, e))
    }
    fn write8(&mut self, offset: usize, value: u8) {
        self.store(offset, value).unwrap_or_else(|e| bad(offset, e))
    }
    fn write16(&mut self, offset: usize, value: u16) {
        self.store(offset, value).unwrap_or_else(|e| bad(offset, e))
    }
    fn write32(&mut self, offset: usize, value: u32) {
        self.store(offset, value).unwrap_or_else(|e| bad(offset, e))
    }
}

fn bad<T: Default>(offset: usize, e: sddf_bindings::Error) -> T {
    log::error!(target: "hda", "register access at {offset:#x}: {e}");
    T::default()
}

// Global registers (§3.3.2 - §3.3.8).
/// 0x00 GCAP (16): global capabilities.
pub const GCAP: usize = 0x00;
/// 0x02 VMIN (8): minor version.
pub const VMIN: usize = 0x02;
/// 0x03 VMAJ (8): major version.
pub const VMAJ: usize = 0x03;
/// 0x08 GCTL (32): global control.
pub const GCTL: usize = 0x08;
/// 0x0c WAKEEN (16): wake enable, one bit per SDIN (codec address).
pub const WAKEEN: usize = 0x0c;
/// 0x0e STATESTS (16): state change status, one bit per SDIN, RW1C.
pub const STATESTS: usize = 0x0e;
/// 0x20 INTCTL (32): interrupt control.
pub const INTCTL: usize = 0x20;
/// 0x24 INTSTS (32): interrupt status.
pub const INTSTS: usize = 0x24;
/// 0x30 WALCLK (32): wall clock counter, 24 MHz.
pub const WALCLK: usize = 0x30;

// Command Outbound Ring Buffer (§3.3.18 - §3.3.24).
/// 0x40 CORBLBASE (32): CORB lower base address (128-byte aligned).
pub const CORBLBASE: usize = 0x40;
/// 0x44 CORBUBASE (32): CORB upper base address.
pub const CORBUBASE: usize = 0x44;
/// 0x48 CORBWP (16): CORB write pointer.
pub const CORBWP: usize = 0x48;
/// 0x4a CORBRP (16): CORB read pointer; bit 15 resets it.
pub const CORBRP: usize = 0x4a;
/// 0x4c CORBCTL (8): CORB control.
pub const CORBCTL: usize = 0x4c;
/// 0x4d CORBSTS (8): CORB status.
pub const CORBSTS: usize = 0x4d;
/// 0x4e CORBSIZE (8): CORB size and size capability.
pub const CORBSIZE: usize = 0x4e;

// Response Inbound Ring Buffer (§3.3.25 - §3.3.31).
/// 0x50 RIRBLBASE (32): RIRB lower base address (128-byte aligned).
pub const RIRBLBASE: usize = 0x50;
/// 0x54 RIRBUBASE (32): RIRB upper base address.
pub const RIRBUBASE: usize = 0x54;
/// 0x58 RIRBWP (16): RIRB write pointer; bit 15 resets it.
pub const RIRBWP: usize = 0x58;
/// 0x5a RINTCNT (16): responses before a response interrupt.
pub const RINTCNT: usize = 0x5a;
/// 0x5c RIRBCTL (8): RIRB control.
pub const RIRBCTL: usize = 0x5c;
/// 0x5d RIRBSTS (8): RIRB status, RW1C.
pub const RIRBSTS: usize = 0x5d;
/// 0x5e RIRBSIZE (8): RIRB size and size capability.
pub const RIRBSIZE: usize = 0x5e;

// Stream descriptors (§3.3.35 - §3.3.43): input streams first, then
// output, then bidirectional, 0x20 bytes each from 0x80.
/// 0x80: stream descriptor 0.
pub const SD_BASE: usize = 0x80;
/// Bytes between stream descriptors.
pub const SD_STRIDE: usize = 0x20;
/// +0x00 SDnCTL (24 bits, accessed as 32 with SDnSTS above it).
pub const SD_CTL: usize = 0x00;
/// +0x03 SDnSTS (8): stream status, RW1C.
pub const SD_STS: usize = 0x03;
/// +0x04 SDnLPIB (32): link position in the cyclic buffer.
pub const SD_LPIB: usize = 0x04;
/// +0x08 SDnCBL (32): cyclic buffer length in bytes.
pub const SD_CBL: usize = 0x08;
/// +0x0c SDnLVI (16): last valid index of the BDL.
pub const SD_LVI: usize = 0x0c;
/// +0x12 SDnFMT (16): stream format.
pub const SD_FMT: usize = 0x12;
/// +0x18 SDnBDPL (32): BDL lower base address (128-byte aligned).
pub const SD_BDPL: usize = 0x18;
/// +0x1c SDnBDPU (32): BDL upper base address.
pub const SD_BDPU: usize = 0x1c;

/// Offset of stream descriptor `index`'s register `reg`.
pub const fn sd(index: u8, reg: usize) -> usize {
    SD_BASE + index as usize * SD_STRIDE + reg
}

// GCAP fields (§3.3.2).
/// GCAP bit 0: 64-bit addresses supported.
pub const GCAP_64OK: u16 = 1 << 0;
/// GCAP: number of output streams, bits 15:12.
pub const fn gcap_oss(gcap: u16) -> u8 {
    (gcap >> 12) as u8
}
/// GCAP: number of input streams, bits 11:8.
pub const fn gcap_iss(gcap: u16) -> u8 {
    (gcap >> 8) as u8 & 0xf
}
/// GCAP: number of bidirectional streams, bits 7:3.
pub const fn gcap_bss(gcap: u16) -> u8 {
    (gcap >> 3) as u8 & 0x1f
}

/// GCTL bit 0: controller reset (0 = in reset).
pub const GCTL_CRST: u32 = 1 << 0;
/// INTCTL bit 31: global interrupt enable.
pub const INTCTL_GIE: u32 = 1 << 31;
/// INTCTL bit 30: controller interrupt enable (RIRB, wake).
pub const INTCTL_CIE: u32 = 1 << 30;
/// INTSTS bit 31: global interrupt status.
pub const INTSTS_GIS: u32 = 1 << 31;
/// INTSTS bit 30: controller interrupt status.
pub const INTSTS_CIS: u32 = 1 << 30;

/// CORBCTL bit 1: CORB DMA engine run.
pub const CORBCTL_RUN: u8 = 1 << 1;
/// CORBRP bit 15: CORB read pointer reset.
pub const CORBRP_RST: u16 = 1 << 15;
/// RIRBWP bit 15: RIRB write pointer reset.
pub const RIRBWP_RST: u16 = 1 << 15;
/// RIRBCTL bit 0: response interrupt control (RINTFL after RINTCNT
/// responses).
pub const RIRBCTL_RINTCTL: u8 = 1 << 0;
/// RIRBCTL bit 1: RIRB DMA enable.
pub const RIRBCTL_DMAEN: u8 = 1 << 1;
/// RIRBSTS bit 0: response interrupt flag.
pub const RIRBSTS_RINTFL: u8 = 1 << 0;
/// RIRBSTS bit 2: response overrun interrupt status.
pub const RIRBSTS_RIRBOIS: u8 = 1 << 2;

/// SDnCTL bit 0: stream reset.
pub const SD_CTL_SRST: u32 = 1 << 0;
/// SDnCTL bit 1: stream run.
pub const SD_CTL_RUN: u32 = 1 << 1;
/// SDnCTL bit 2: interrupt on completion enable.
pub const SD_CTL_IOCE: u32 = 1 << 2;
/// SDnCTL bit 3: FIFO error interrupt enable.
pub const SD_CTL_FEIE: u32 = 1 << 3;
/// SDnCTL bit 4: descriptor error interrupt enable.
pub const SD_CTL_DEIE: u32 = 1 << 4;
/// SDnCTL bits 23:20: stream number (tag), 1..15.
pub const SD_CTL_STRM_SHIFT: u32 = 20;
/// SDnSTS bit 2: buffer completion interrupt status.
pub const SD_STS_BCIS: u8 = 1 << 2;
/// SDnSTS bit 3: FIFO error.
pub const SD_STS_FIFOE: u8 = 1 << 3;
/// SDnSTS bit 4: descriptor error.
pub const SD_STS_DESE: u8 = 1 << 4;
