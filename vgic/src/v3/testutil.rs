//! GICv3 test helpers: setup shortcuts on top of the crate's `FakeLrs`.

use super::regs::*;
use super::GicV3;
use crate::regs::SPI_BASE;
use crate::testutil::FakeLrs;
use crate::VcpuMask;

/// Offset of register `reg` in the SGI_base frame of vCPU `rd`.
pub(crate) fn sgi_frame(rd: usize, reg: u64) -> u64 {
    rd as u64 * GICR_STRIDE + GICR_SGI_BASE + reg
}

/// Offset of register `reg` in the RD_base frame of vCPU `rd`.
pub(crate) fn rd_frame(rd: usize, reg: u64) -> u64 {
    rd as u64 * GICR_STRIDE + reg
}

/// A GICv3 with both groups enabled and every redistributor awake (what
/// Linux sets up at boot); SPIs go to vCPU 0 (GICD_IROUTERn reset value).
pub(crate) fn on3(vcpus: usize, lrs: usize) -> GicV3 {
    let mut g = GicV3::new(vcpus, lrs);
    let mut f = FakeLrs::new();
    g.dist_write(0, GICD_CTLR, 4, u64::from(CTLR_MASK), &mut f);
    for rd in 0..vcpus {
        g.redist_write(0, rd_frame(rd, GICR_WAKER), 4, 0, &mut f);
    }
    g
}

/// Enables `irq` for `vcpu`: in its redistributor for IDs 0-31, in the
/// distributor for SPIs.
pub(crate) fn enable3(g: &mut GicV3, vcpu: usize, irq: u32, f: &mut FakeLrs) -> VcpuMask {
    let bit = 1 << (irq % 32);
    if (irq as usize) < SPI_BASE {
        g.redist_write(0, sgi_frame(vcpu, GICR_ISENABLER0), 4, bit, f)
    } else {
        g.dist_write(vcpu, GICD_ISENABLER + u64::from(irq / 32) * 4, 4, bit, f)
    }
}

/// Puts `irq` in Group 1, as Linux does with every interrupt.
pub(crate) fn group1(g: &mut GicV3, vcpu: usize, irq: u32, f: &mut FakeLrs) {
    let bit = 1 << (irq % 32);
    if (irq as usize) < SPI_BASE {
        let old = g.redist_read(0, sgi_frame(vcpu, GICR_IGROUPR0), 4);
        g.redist_write(0, sgi_frame(vcpu, GICR_IGROUPR0), 4, old | bit, f);
    } else {
        let off = GICD_IGROUPR + u64::from(irq / 32) * 4;
        let old = g.dist_read(0, off, 4);
        g.dist_write(0, off, 4, old | bit, f);
    }
}
