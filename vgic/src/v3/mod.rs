//! GICv3 emulation: distributor with affinity routing, redistributors, SGIs.
//!
//! # Model
//!
//! The guest sees a GICv3 with one Security state (GICD_CTLR.DS = 1) and
//! affinity routing always on (ARE RAO/WI), no LPIs and no ITS. Its CPU
//! interface is the hardware virtual one (ICC_* system registers backed by
//! ICH_* at EL2); the VMM traps the distributor region (64 KiB) and the
//! redistributor region (128 KiB per vCPU) and forwards accesses to
//! [`GicV3::dist_read`]/[`GicV3::dist_write`] and
//! [`GicV3::redist_read`]/[`GicV3::redist_write`]. SGIs are sent with
//! ICC_SGI1R_EL1 writes, which trap as system-register faults: the VMM
//! hands the value to [`GicV3::send_sgi1r`].
//!
//! The interrupt state and the list-register path are those of
//! [`GicV2`](crate::GicV2), which [`GicV3`] wraps: SGIs and PPIs are the
//! banked state of the redistributor's vCPU, SPIs the shared state. An SPI
//! goes to the vCPU whose affinity its GICD_IROUTERn names (none: it stays
//! pending), or, in 1-of-N mode, to the lowest-numbered vCPU whose
//! redistributor is awake (GICR_WAKER). SGIs have a single pending bit per
//! target (no source CPU, IHI 0069H 3.1.2) and reach the LRs like any other
//! interrupt; [`lr`] shows the 64-bit ICH_LR_EL2 format the entries take.

mod access;
mod dist;
pub mod lr;
mod redist;
pub mod regs;
pub mod sgi;
#[cfg(test)]
mod testutil;

use crate::regs::SPI_BASE;
use crate::{GicV2, ListRegisters, VcpuMask, MAX_VCPUS, NUM_IRQS};
use regs::{GICR_STRIDE, IROUTER_IRM};
use sgi::{Affinity, SgiRequest};

/// Emulated GICv3 distributor and redistributors plus the shadow list
/// registers and overflow queues of every vCPU. Fixed size; no heap.
#[derive(Clone)]
pub struct GicV3 {
    /// The shared interrupt state and list-register path.
    core: GicV2,
    /// Affinity (MPIDR Aff3.Aff2.Aff1.Aff0) of each vCPU.
    affinity: [Affinity; MAX_VCPUS],
    /// GICD_IROUTERn of each SPI (entries below `SPI_BASE` unused).
    irouter: [u64; NUM_IRQS],
    /// Bit i: GICR_WAKER.ProcessorSleep of the redistributor of vCPU i.
    asleep: u8,
}

impl GicV3 {
    /// A GICv3 for `num_vcpus` vCPUs with `num_lrs` list registers each
    /// (clamped to `MAX_VCPUS` / `MAX_LRS`), vCPU i with affinity 0.0.0.i
    /// (MPIDR Aff0 = i), in the power-on state.
    pub fn new(num_vcpus: usize, num_lrs: usize) -> GicV3 {
        GicV3::with_affinities(num_vcpus, num_lrs, &[])
    }

    /// As [`GicV3::new`], with vCPU i at `affinities[i]` (vCPUs beyond the
    /// slice get 0.0.0.i). Affinities should be distinct: an SPI or SGI
    /// aimed at a shared affinity goes to the lowest such vCPU only.
    pub fn with_affinities(num_vcpus: usize, num_lrs: usize, affinities: &[Affinity]) -> GicV3 {
        let mut affinity = [Affinity(0); MAX_VCPUS];
        for (i, a) in affinity.iter_mut().enumerate() {
            *a = affinities.get(i).copied().unwrap_or(Affinity::of_index(i));
        }
        let core = GicV2::new(num_vcpus, num_lrs);
        let asleep = core.valid_vcpus();
        let mut g = GicV3 { core, affinity, irouter: [0; NUM_IRQS], asleep };
        g.reset_routes();
        g
    }

    /// Back to the power-on state (guest reboot): everything disabled,
    /// nothing pending, SPIs routed to affinity 0.0.0.0, redistributors
    /// asleep, shadows and queues empty. Affinities are kept. The VMM is
    /// responsible for clearing the hardware list registers themselves.
    pub fn reset(&mut self) {
        self.core.reset();
        self.irouter = [0; NUM_IRQS];
        self.asleep = self.core.valid_vcpus();
        self.reset_routes();
    }

    /// Number of vCPUs (after clamping).
    pub const fn num_vcpus(&self) -> usize {
        self.core.num_vcpus()
    }

    /// Number of list registers per vCPU (after clamping).
    pub const fn num_lrs(&self) -> usize {
        self.core.num_lrs()
    }

    /// The affinity of `vcpu`.
    pub fn affinity(&self, vcpu: usize) -> Option<Affinity> {
        self.affinity.get(vcpu).filter(|_| vcpu < self.num_vcpus()).copied()
    }

    /// The (lowest) vCPU with affinity `aff`.
    pub fn vcpu_of(&self, aff: Affinity) -> Option<usize> {
        self.affinity.iter().take(self.num_vcpus()).position(|&a| a == aff)
    }

    /// Size of the redistributor region: one 128 KiB redistributor per vCPU.
    pub const fn redist_region_size(&self) -> u64 {
        self.num_vcpus() as u64 * GICR_STRIDE
    }

    /// The vCPUs an ICC_SGI1R_EL1 (or ICC_SGI0R_EL1) `value` written by
    /// `vcpu` names (before the group check of [`GicV3::send_sgi1r`]).
    pub fn sgi_targets(&self, vcpu: usize, value: u64) -> VcpuMask {
        let Some(me) = self.affinity(vcpu) else { return VcpuMask::EMPTY };
        let targets = SgiRequest::decode(value).targets;
        let mut mask = VcpuMask::EMPTY;
        for v in 0..self.num_vcpus() {
            if self.affinity(v).is_some_and(|a| targets.names(a, me) && self.vcpu_of(a) == Some(v))
            {
                mask.insert(v);
            }
        }
        mask
    }

    /// Guest write of ICC_SGI1R_EL1 by `vcpu`: makes the SGI pending on the
    /// targets where it is Group 1 (IHI 0069H 12.2.23, table 12-14 with
    /// DS = 1). Returns the vCPUs that got a newly deliverable interrupt.
    pub fn send_sgi1r(
        &mut self,
        vcpu: usize,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        self.send_sgi(vcpu, value, true, lrs)
    }

    /// Guest write of ICC_SGI0R_EL1: as [`GicV3::send_sgi1r`], for the
    /// targets where the SGI is Group 0.
    pub fn send_sgi0r(
        &mut self,
        vcpu: usize,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        self.send_sgi(vcpu, value, false, lrs)
    }

    fn send_sgi(
        &mut self,
        vcpu: usize,
        value: u64,
        group1: bool,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let sgi = usize::from(SgiRequest::decode(value).intid);
        let mut woken = VcpuMask::EMPTY;
        for target in self.sgi_targets(vcpu, value).iter() {
            let grp = self.core.bit(target, crate::state::BitReg::Group, sgi);
            if grp == group1 {
                woken |= self.raise_sgi(target, sgi, lrs);
            } else {
                log::debug!(target: "irq", "vgic: SGI {sgi} to vcpu {target}: group mismatch");
            }
        }
        woken | self.core.settle(lrs)
    }

    /// A device/timer/passthrough interrupt `irq` is raised (SPI: routed by
    /// GICD_IROUTERn, `vcpu` is ignored; SGI/PPI: to `vcpu`). Sets it
    /// pending and delivers it, or queues it. Returns vCPUs woken.
    pub fn set_pending(&mut self, vcpu: usize, irq: u32, lrs: &mut impl ListRegisters) -> VcpuMask {
        let woken = match usize::try_from(irq) {
            Ok(sgi) if sgi < crate::regs::NUM_SGIS && vcpu < self.num_vcpus() => {
                self.raise_sgi(vcpu, sgi, lrs)
            }
            _ => self.core.raise(vcpu, irq, lrs),
        };
        woken | self.core.settle(lrs)
    }

    /// VGIC maintenance: LR `index` of `vcpu` was EOIed (None = unknown).
    /// As [`GicV2::maintenance`].
    pub fn maintenance(
        &mut self,
        vcpu: usize,
        index: Option<usize>,
        lrs: &mut impl ListRegisters,
    ) -> Option<u32> {
        self.core.maintenance(vcpu, index, lrs)
    }

    /// True if `vcpu` has an interrupt in an LR or queued (it must not sleep
    /// in WFI).
    pub fn has_pending(&self, vcpu: usize) -> bool {
        self.core.has_pending(vcpu)
    }

    /// Is the distributor enabled for the interrupt's group and `irq`
    /// enabled for `vcpu`?
    pub fn is_enabled(&self, vcpu: usize, irq: u32) -> bool {
        self.core.is_enabled(vcpu, irq)
    }

    /// Retries every vCPU whose queue waits although it has a free LR.
    pub fn retry(&mut self, lrs: &mut impl ListRegisters) -> VcpuMask {
        self.core.retry(lrs)
    }

    /// vCPUs that received an interrupt as a side effect of
    /// [`GicV3::maintenance`] on another vCPU since the last call.
    pub fn take_deferred_wakeups(&mut self) -> VcpuMask {
        self.core.take_deferred_wakeups()
    }

    /// One interrupt whose pending state the guest dropped without an EOI:
    /// `(vcpu, irq)` (vcpu 0 for an SPI). As [`GicV2::take_released`]; SGIs
    /// are never reported (they have no source to re-arm).
    pub fn take_released(&mut self) -> Option<(usize, u32)> {
        self.core.take_released()
    }

    /// The interrupt the shadow of LR `index` of `vcpu` holds, if any.
    pub fn lr_irq(&self, vcpu: usize, index: usize) -> Option<u32> {
        self.core.lr_irq(vcpu, index)
    }

    /// Number of interrupts waiting in the overflow queue of `vcpu`.
    pub fn queued(&self, vcpu: usize) -> usize {
        self.core.queued(vcpu)
    }

    /// The vCPUs an SPI with GICD_IROUTERn `router` may go to.
    fn router_targets(&self, router: u64) -> u8 {
        let valid = self.core.valid_vcpus();
        if router & IROUTER_IRM != 0 {
            let awake = !self.asleep & valid;
            if awake != 0 {
                awake
            } else {
                valid
            }
        } else {
            self.vcpu_of(Affinity::from_mpidr(router)).map_or(0, |v| 1 << v)
        }
    }

    /// Brings the SPI target sets of the shared state in line with
    /// GICD_IROUTERn (nothing is pending: no LR is touched).
    fn reset_routes(&mut self) {
        for irq in SPI_BASE..NUM_IRQS {
            let targets = self.router_targets(self.irouter[irq]);
            self.core.set_spi_targets(irq, targets);
        }
    }

    /// SPI `irq` may have a new target: moves it there.
    fn sync_route(&mut self, irq: usize, lrs: &mut impl ListRegisters) -> VcpuMask {
        let Some(&router) = self.irouter.get(irq) else { return VcpuMask::EMPTY };
        let targets = self.router_targets(router);
        if irq < SPI_BASE || targets == self.core.spi_targets(irq) {
            return VcpuMask::EMPTY;
        }
        self.core.set_spi_targets(irq, targets);
        self.core.retarget(irq, lrs)
    }

    /// A redistributor woke or slept: 1-of-N SPIs may move.
    fn sync_one_of_n_routes(&mut self, lrs: &mut impl ListRegisters) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        for irq in SPI_BASE..NUM_IRQS {
            if self.irouter[irq] & IROUTER_IRM != 0 {
                woken |= self.sync_route(irq, lrs);
            }
        }
        woken
    }
}
