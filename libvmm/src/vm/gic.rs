//! The guest's virtual GIC, version 2 or 3 as the board data says
//! ([`GicLayout`]), behind one type: the MMIO regions it claims, the trapped
//! GICv3 system registers, and the calls the rest of the VM makes.

use super::GicLayout;
use vgic::{GicV2, GicV3, ListRegisters, VcpuMask};

/// `ICC_SGI1R_EL1` (op0, op1, CRn, CRm, op2): Group 1 SGIs. Writes trap to
/// EL2 while HCR_EL2.IMO is set (IHI 0069H §12.2.22), as seL4 sets it.
pub const ICC_SGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 5);
/// `ICC_ASGI1R_EL1`: Group 1 SGIs for the other Security state; with one
/// Security state (GICD_CTLR.DS = 1) nothing to do.
pub const ICC_ASGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 6);
/// `ICC_SGI0R_EL1`: Group 0 SGIs (trap with HCR_EL2.FMO).
pub const ICC_SGI0R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 7);
/// `ICC_SRE_EL1`: seL4 sets ICC_SRE_EL2.Enable = 0, so EL1 accesses trap.
pub const ICC_SRE_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 12, 5);
/// What `ICC_SRE_EL1` reads: SRE, DFB and DIB set (system registers only,
/// no legacy bypass), as under KVM; writes are ignored.
pub const ICC_SRE_EL1_VALUE: u64 = 0b111;

/// A GIC register block a guest access falls in, with its offset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Region {
    /// The distributor.
    Dist(u64),
    /// The redistributors (GICv3).
    Redist(u64),
}

/// The emulated GIC. No heap, so no `Box`: a GICv2 VM carries the ~2 KiB
/// more that a GICv3 needs, once, in the VMM's static state.
#[allow(clippy::large_enum_variant)]
pub(super) enum Gic {
    V2(GicV2),
    V3(GicV3),
}

/// Runs `$e` with `$g` bound to the GIC, whichever version.
macro_rules! either {
    ($self:expr, $g:ident => $e:expr) => {
        match $self {
            Gic::V2($g) => $e,
            Gic::V3($g) => $e,
        }
    };
}

impl Gic {
    pub(super) fn new(layout: &GicLayout, num_vcpus: usize, num_lrs: usize) -> Gic {
        match layout {
            GicLayout::V2 { .. } => Gic::V2(GicV2::new(num_vcpus, num_lrs)),
            GicLayout::V3 { .. } => Gic::V3(GicV3::new(num_vcpus, num_lrs)),
        }
    }

    /// The register block `gpa` falls in, if any.
    pub(super) fn region(&self, layout: &GicLayout, gpa: u64) -> Option<Region> {
        let offset = |base: u64, size: u64| gpa.checked_sub(base).filter(|&o| o < size);
        match (self, *layout) {
            (Gic::V2(_), GicLayout::V2 { gicd, .. }) => {
                offset(gicd, vgic::GICD_SIZE).map(Region::Dist)
            }
            (Gic::V3(g), GicLayout::V3 { gicd, gicr }) => {
                offset(gicd, vgic::v3::regs::GICD_V3_SIZE)
                    .map(Region::Dist)
                    .or_else(|| offset(gicr, g.redist_region_size()).map(Region::Redist))
            }
            _ => None,
        }
    }

    pub(super) fn read(&mut self, vcpu: usize, region: Region, width: u8) -> u64 {
        match (self, region) {
            (Gic::V2(g), Region::Dist(o)) => g.dist_read(vcpu, o, width),
            (Gic::V3(g), Region::Dist(o)) => g.dist_read(vcpu, o, width),
            (Gic::V3(g), Region::Redist(o)) => g.redist_read(vcpu, o, width),
            (Gic::V2(_), Region::Redist(_)) => 0,
        }
    }

    pub(super) fn write(
        &mut self,
        vcpu: usize,
        region: Region,
        width: u8,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        match (self, region) {
            (Gic::V2(g), Region::Dist(o)) => g.dist_write(vcpu, o, width, value, lrs),
            (Gic::V3(g), Region::Dist(o)) => g.dist_write(vcpu, o, width, value, lrs),
            (Gic::V3(g), Region::Redist(o)) => g.redist_write(vcpu, o, width, value, lrs),
            (Gic::V2(_), Region::Redist(_)) => VcpuMask::EMPTY,
        }
    }

    /// A trapped write of an SGI register (GICv3): the vCPUs to wake, or
    /// `None` if `encoding` is no SGI register of this GIC.
    pub(super) fn send_sgi(
        &mut self,
        vcpu: usize,
        encoding: (u8, u8, u8, u8, u8),
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> Option<VcpuMask> {
        let Gic::V3(g) = self else { return None };
        match encoding {
            ICC_SGI1R_EL1 => Some(g.send_sgi1r(vcpu, value, lrs)),
            ICC_SGI0R_EL1 => Some(g.send_sgi0r(vcpu, value, lrs)),
            ICC_ASGI1R_EL1 => Some(VcpuMask::EMPTY),
            _ => None,
        }
    }

    /// What a trapped read of a GIC system register returns (GICv3), or
    /// `None` if it is none.
    pub(super) fn sysreg_read(&self, encoding: (u8, u8, u8, u8, u8)) -> Option<u64> {
        match (self, encoding) {
            (Gic::V3(_), ICC_SRE_EL1) => Some(ICC_SRE_EL1_VALUE),
            (Gic::V3(_), ICC_SGI1R_EL1 | ICC_SGI0R_EL1 | ICC_ASGI1R_EL1) => Some(0),
            _ => None,
        }
    }

    /// True if a trapped write of `encoding` is a GIC register that ignores
    /// writes (ICC_SRE_EL1 on GICv3).
    pub(super) fn sysreg_ignores_write(&self, encoding: (u8, u8, u8, u8, u8)) -> bool {
        matches!((self, encoding), (Gic::V3(_), ICC_SRE_EL1))
    }

    pub(super) fn reset(&mut self) {
        either!(self, g => g.reset())
    }

    pub(super) fn num_lrs(&self) -> usize {
        either!(self, g => g.num_lrs())
    }

    /// The interrupt the vGIC last put in LR `index` of `vcpu`, if any.
    pub(super) fn lr_irq(&self, vcpu: usize, index: usize) -> Option<u32> {
        either!(self, g => g.lr_irq(vcpu, index))
    }

    pub(super) fn set_pending(
        &mut self,
        vcpu: usize,
        irq: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        either!(self, g => g.set_pending(vcpu, irq, lrs))
    }

    pub(super) fn maintenance(
        &mut self,
        vcpu: usize,
        index: Option<usize>,
        lrs: &mut impl ListRegisters,
    ) -> Option<u32> {
        either!(self, g => g.maintenance(vcpu, index, lrs))
    }

    pub(super) fn has_pending(&self, vcpu: usize) -> bool {
        either!(self, g => g.has_pending(vcpu))
    }

    pub(super) fn is_enabled(&self, vcpu: usize, irq: u32) -> bool {
        either!(self, g => g.is_enabled(vcpu, irq))
    }

    pub(super) fn take_deferred_wakeups(&mut self) -> VcpuMask {
        either!(self, g => g.take_deferred_wakeups())
    }

    pub(super) fn take_released(&mut self) -> Option<(usize, u32)> {
        either!(self, g => g.take_released())
    }
}
