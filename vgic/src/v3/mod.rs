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
//! [`GicV2`], which [`GicV3`] wraps: SGIs and PPIs are the
//! banked state of the redistributor's vCPU, SPIs the shared state. An SPI
//! goes to the vCPU whose affinity its GICD_IROUTERn names (none: it stays
//! pending), or, in 1-of-N mode, to the lowest-numbered vCPU whose
//! redistributor is awake (GICR_WAKER). SGIs have a single pending bit per
//! target (no source CPU, IHI 0069H 3.1.2) and reach the LRs like any other
//! interrupt; [`lr`] shows the 64-bit ICH_LR_EL2 format the entries take.

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
                woken |= self.core.raise_sgi(target, sgi, lrs);
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
                self.core.raise_sgi(vcpu, sgi, lrs)
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

#[cfg(test)]
mod tests {
    use super::regs::*;
    use super::testutil::{enable3, group1, on3, rd_frame, sgi_frame};
    use super::*;
    use crate::regs::NUM_SGIS;
    use crate::testutil::FakeLrs;
    use crate::{MAX_LRS, QUEUE_LEN};
    use lr::LrEntry;

    /// ICC_SGI1R_EL1 value naming `list` in cluster 0.0.`aff1`, range `rs`.
    fn sgi1r(intid: u64, aff1: u64, rs: u64, list: u64) -> u64 {
        (rs << 44) | (intid << 24) | (aff1 << 16) | list
    }

    /// `on3` with `sgi` Group 1 and enabled on every vCPU.
    fn sgi_ready(vcpus: usize, sgi: u32) -> (GicV3, FakeLrs) {
        let mut g = on3(vcpus, 4);
        let mut f = FakeLrs::new();
        for v in 0..vcpus {
            group1(&mut g, v, sgi, &mut f);
            enable3(&mut g, v, sgi, &mut f);
        }
        (g, f)
    }

    #[test]
    fn new_clamps_and_keeps_default_affinities() {
        let g = GicV3::new(100, 100);
        assert_eq!((g.num_vcpus(), g.num_lrs()), (MAX_VCPUS, MAX_LRS));
        assert_eq!(g.affinity(3), Some(Affinity::of_index(3)));
        assert_eq!(g.affinity(MAX_VCPUS), None);
        assert_eq!(g.vcpu_of(Affinity::of_index(5)), Some(5));
    }

    #[test]
    fn reset_returns_to_power_on_state_and_keeps_affinities() {
        let mut g = GicV3::with_affinities(2, 4, &[Affinity(0x100), Affinity(0x101)]);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 3, &mut f);
        g.dist_write(0, GICD_IROUTER + 8 * 40, 8, 0x101, &mut f);
        g.redist_write(0, rd_frame(1, GICR_WAKER), 4, 0, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert!(g.has_pending(1));
        g.reset();
        assert!(!g.has_pending(1));
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0x50);
        assert_eq!(g.dist_read(0, GICD_IROUTER + 8 * 40, 8), 0);
        assert_eq!(g.redist_read(0, rd_frame(1, GICR_WAKER), 4), 0b110);
        assert_eq!(g.affinity(1), Some(Affinity(0x101)));
    }

    // ---- SGIs (ICC_SGI1R_EL1) ----

    #[test]
    fn sgi1r_target_list() {
        let (mut g, mut f) = sgi_ready(4, 5);
        let woken = g.send_sgi1r(0, sgi1r(5, 0, 0, 0b0110), &mut f);
        assert_eq!(woken, VcpuMask(0b0110));
        assert_eq!(f.injected, vec![(1, 0, 5, 0, 1), (2, 0, 5, 0, 1)]);
    }

    #[test]
    fn sgi1r_irm_goes_to_all_but_self() {
        let (mut g, mut f) = sgi_ready(3, 1);
        let woken = g.send_sgi1r(1, sgi::SGI1R_IRM | sgi1r(1, 0, 0, 0), &mut f);
        assert_eq!(woken, VcpuMask(0b101));
        assert_eq!((f.virqs(0), f.virqs(1), f.virqs(2)), (vec![1], vec![], vec![1]));
    }

    #[test]
    fn sgi1r_may_target_the_sender() {
        let (mut g, mut f) = sgi_ready(2, 9);
        assert_eq!(g.send_sgi1r(1, sgi1r(9, 0, 0, 0b10), &mut f), VcpuMask::single(1));
    }

    #[test]
    fn sgi1r_matches_aff1_and_range_selector() {
        let affs =
            [Affinity::new(0, 0, 1, 0), Affinity::new(0, 0, 1, 17), Affinity::new(0, 0, 2, 1)];
        let g = GicV3::with_affinities(3, 4, &affs);
        assert_eq!(g.sgi_targets(0, sgi1r(0, 1, 1, 0b10)), VcpuMask::single(1));
        assert_eq!(g.sgi_targets(0, sgi1r(0, 1, 0, 0xFFFF)), VcpuMask::single(0));
        assert_eq!(g.sgi_targets(0, sgi1r(0, 2, 0, 0b10)), VcpuMask::single(2));
        assert_eq!(g.sgi_targets(0, sgi1r(0, 3, 0, 0xFFFF)), VcpuMask::EMPTY);
        assert_eq!(g.sgi_targets(0, (1 << 48) | sgi1r(0, 1, 0, 1)), VcpuMask::EMPTY, "Aff3");
        assert_eq!(g.sgi_targets(0, (1 << 32) | sgi1r(0, 1, 0, 1)), VcpuMask::EMPTY, "Aff2");
    }

    #[test]
    fn sgi_targets_of_absent_sender_is_empty() {
        let g = GicV3::new(2, 4);
        assert_eq!(g.sgi_targets(2, sgi::SGI1R_IRM), VcpuMask::EMPTY);
        assert_eq!(g.sgi_targets(0, sgi::SGI1R_IRM), VcpuMask::single(1));
    }

    #[test]
    fn sgi1r_skips_targets_where_the_sgi_is_group_0() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        for v in 0..2 {
            enable3(&mut g, v, 4, &mut f);
        }
        group1(&mut g, 1, 4, &mut f);
        assert_eq!(g.send_sgi1r(0, sgi1r(4, 0, 0, 0b11), &mut f), VcpuMask::single(1));
        assert_eq!(g.send_sgi0r(1, sgi1r(4, 0, 0, 0b11), &mut f), VcpuMask::single(0));
        assert_eq!(f.injected, vec![(1, 0, 4, 0, 1), (0, 0, 4, 0, 0)]);
    }

    #[test]
    fn sgis_from_two_senders_merge_into_one_pending_state() {
        let (mut g, mut f) = sgi_ready(3, 0);
        g.send_sgi1r(0, sgi1r(0, 0, 0, 0b100), &mut f);
        g.send_sgi1r(1, sgi1r(0, 0, 0, 0b100), &mut f);
        g.send_sgi1r(0, sgi1r(0, 0, 0, 0b100), &mut f);
        assert_eq!(f.virqs(2), vec![0]);
        assert_eq!(g.redist_read(0, sgi_frame(2, GICR_ISPENDR0), 4), 1, "pending once more");
        assert_eq!(g.maintenance(2, Some(0), &mut f), Some(0));
        assert_eq!(f.virqs(2), vec![0, 0]);
        assert_eq!(g.maintenance(2, Some(0), &mut f), Some(0));
        assert!(!g.has_pending(2));
    }

    #[test]
    fn disabled_sgi_stays_pending_until_enabled() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        group1(&mut g, 1, 7, &mut f);
        assert!(g.send_sgi1r(0, sgi1r(7, 0, 0, 0b10), &mut f).is_empty());
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISPENDR0), 4), 1 << 7);
        assert_eq!(enable3(&mut g, 1, 7, &mut f), VcpuMask::single(1));
    }

    #[test]
    fn set_pending_of_an_sgi_uses_the_single_pending_bit() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.set_pending(1, 2, &mut f);
        g.set_pending(1, 2, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISPENDR0), 4), 0b100);
        assert!(g.set_pending(2, 2, &mut f).is_empty(), "absent vCPU");
    }

    #[test]
    fn injected_sgi_has_no_source_in_the_gicv3_lr() {
        let (mut g, mut f) = sgi_ready(2, 6);
        g.redist_write(0, sgi_frame(1, GICR_IPRIORITYR + 6), 1, 0xA0, &mut f);
        g.send_sgi1r(0, sgi1r(6, 0, 0, 0b10), &mut f);
        let &(_, _, virq, prio, group) = f.injected.last().unwrap();
        let lr = LrEntry::injected(virq, prio, group).to_gicv3();
        assert_eq!(lr, (1 << 62) | (1 << 60) | (0xA0 << 48) | (1 << 41) | 6);
    }

    // ---- a Linux boot, as drivers/irqchip/irq-gic-v3.c does it ----

    #[test]
    fn linux_style_bring_up_then_ipi() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.dist_read(0, GICD_PIDR2, 4) & 0xF0, 0x30);
        g.dist_write(0, GICD_CTLR, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4) & u64::from(CTLR_RWP), 0);
        for n in 1..NUM_IRQS as u64 / 32 {
            g.dist_write(0, GICD_IGROUPR + 4 * n, 4, 0xFFFF_FFFF, &mut f);
            g.dist_write(0, GICD_ICENABLER + 4 * n, 4, 0xFFFF_FFFF, &mut f);
        }
        g.dist_write(0, GICD_CTLR, 4, 0x13, &mut f);
        for rd in 0..2 {
            g.redist_write(rd, rd_frame(rd, GICR_WAKER), 4, 0, &mut f);
            assert_eq!(g.redist_read(rd, rd_frame(rd, GICR_WAKER), 4) & 0b100, 0);
            g.redist_write(rd, sgi_frame(rd, GICR_IGROUPR0), 4, 0xFFFF_FFFF, &mut f);
            g.redist_write(rd, sgi_frame(rd, GICR_ISENABLER0), 4, 0xFFFF, &mut f);
            for i in 0..8 {
                g.redist_write(rd, sgi_frame(rd, GICR_IPRIORITYR + 4 * i), 4, 0xA0A0_A0A0, &mut f);
            }
        }
        // An IPI (Linux uses SGIs 0-7) from vCPU 0 to vCPU 1.
        assert_eq!(g.send_sgi1r(0, sgi1r(1, 0, 0, 0b10), &mut f), VcpuMask::single(1));
        assert_eq!(f.injected, vec![(1, 0, 1, 0xA0 >> 3, 1)]);
        // A device SPI routed to vCPU 1.
        g.dist_write(0, GICD_IROUTER + 8 * 48, 8, 1, &mut f);
        g.dist_write(0, GICD_ISENABLER + 4, 4, 1 << 16, &mut f);
        assert_eq!(g.set_pending(0, 48, &mut f), VcpuMask::single(1));
    }

    // ---- random accesses ----

    /// The shared seeded test PRNG (docs/dependencies.md).
    use fastrand::Rng;

    /// Distributor register bases the fuzzer aims at.
    const DIST_BASES: [u64; 12] = [
        GICD_CTLR,
        GICD_IGROUPR,
        GICD_ISENABLER,
        GICD_ICENABLER,
        GICD_ISPENDR,
        GICD_ICPENDR,
        GICD_ISACTIVER,
        GICD_ICACTIVER,
        GICD_IPRIORITYR + 32,
        GICD_ICFGR,
        GICD_IROUTER_SPI,
        GICD_PIDR4,
    ];

    /// Redistributor register offsets (within one redistributor).
    const REDIST_BASES: [u64; 11] = [
        GICR_CTLR,
        GICR_TYPER,
        GICR_WAKER,
        GICR_SGI_BASE + GICR_IGROUPR0,
        GICR_SGI_BASE + GICR_ISENABLER0,
        GICR_SGI_BASE + GICR_ICENABLER0,
        GICR_SGI_BASE + GICR_ISPENDR0,
        GICR_SGI_BASE + GICR_ICPENDR0,
        GICR_SGI_BASE + GICR_ICACTIVER0,
        GICR_SGI_BASE + GICR_IPRIORITYR,
        GICR_SGI_BASE + GICR_ICFGR1,
    ];

    /// Internal consistency: no duplicate queue entries, nothing both
    /// queued and in an LR, no SPI in two LRs.
    fn check_invariants(g: &GicV3) {
        let c = &g.core;
        for v in 0..g.num_vcpus() {
            let q = &c.lrs[v].queue;
            assert!(q.len() <= QUEUE_LEN);
            for i in 0..q.len() {
                let irq = q.get(i).unwrap();
                assert!(usize::from(irq) < NUM_IRQS);
                assert!((i + 1..q.len()).all(|j| q.get(j) != Some(irq)), "duplicate {irq}");
                assert!(!c.in_any_lr(v, usize::from(irq)), "irq {irq} queued and in an LR");
            }
        }
        let mut spis: Vec<u32> = (0..g.num_vcpus())
            .flat_map(|v| (0..g.num_lrs()).filter_map(move |i| g.lr_irq(v, i)))
            .filter(|&irq| irq >= SPI_BASE as u32)
            .collect();
        let n = spis.len();
        spis.sort_unstable();
        spis.dedup();
        assert_eq!(n, spis.len(), "an SPI sits in two LRs");
    }

    /// A register offset: near a known base (maybe unaligned) or anywhere.
    fn pick_offset(r: u64, bases: &[u64], anywhere: u64) -> u64 {
        if r & (1 << 24) != 0 {
            return (r >> 32) % anywhere;
        }
        let base = bases[(r >> 25) as usize % bases.len()];
        let offset = base + (r >> 32) % if r & (1 << 31) != 0 { 0x40 } else { 0x8 };
        if r & (1 << 30) != 0 {
            offset
        } else {
            offset & !3
        }
    }

    /// Runs `steps` random guest/VMM operations (including out-of-range ones).
    fn fuzz(g: &mut GicV3, f: &mut FakeLrs, rng: &mut Rng, steps: usize) {
        for _ in 0..steps {
            let (r, value) = (rng.u64(..), rng.u64(..));
            let vcpu = (r >> 8) as usize % (g.num_vcpus() + 1); // one absent vCPU
            let width = [1u8, 4, 4, 8, 4, 2, 8, 3, 0][(r >> 16) as usize % 9];
            let rd = (value >> 40) % (g.num_vcpus() as u64 + 1) * GICR_STRIDE;
            match r % 10 {
                0 => {
                    g.dist_read(vcpu, pick_offset(r, &DIST_BASES, 0x1_2000), width);
                    g.redist_read(vcpu, rd + pick_offset(r, &REDIST_BASES, 0x2_0000), width);
                }
                1 | 2 => {
                    g.dist_write(vcpu, pick_offset(r, &DIST_BASES, 0x1_2000), width, value, f);
                }
                3 | 4 => {
                    let offset = rd + pick_offset(r, &REDIST_BASES, 0x2_0000);
                    g.redist_write(vcpu, offset, width, value, f);
                }
                5 => {
                    // Half of them aimed at cluster 0.0.0, RS 0, so that they hit.
                    let value = if r & (1 << 20) != 0 { value & 0x100_0F00_FFFF } else { value };
                    g.send_sgi1r(vcpu, value, f);
                }
                6 => {
                    g.set_pending(vcpu, (value % 300) as u32, f);
                }
                7 => {
                    let index = if value & 7 == 0 { None } else { Some((value >> 3) as usize % 6) };
                    g.maintenance(vcpu, index, f);
                }
                _ => {
                    f.busy_all = value & 7 == 0;
                    f.fail = value & 0x70 == 0;
                    g.has_pending(vcpu);
                    g.retry(f);
                    g.take_deferred_wakeups();
                    g.take_released();
                    if value & 0xFFFF_0000 == 0 {
                        g.reset();
                    }
                }
            }
            check_invariants(g);
        }
    }

    #[test]
    fn random_accesses_never_panic() {
        let mut g = on3(3, 4);
        let mut f = FakeLrs::new();
        let mut rng = Rng::with_seed(0x2545_F491_4F6C_DD1D);
        fuzz(&mut g, &mut f, &mut rng, 100_000);
        assert!(f.total > 1000, "the fuzzer should reach delivery ({} injects)", f.total);
        let sgis = f.injected.iter().filter(|i| usize::from(i.2) < NUM_SGIS).count();
        assert!(sgis > 0, "the fuzzer should deliver SGIs");
    }

    #[test]
    fn random_accesses_never_lose_interrupts() {
        let mut rng = Rng::with_seed(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20 {
            let mut g = on3(3, 4);
            let mut f = FakeLrs::new();
            fuzz(&mut g, &mut f, &mut rng, 2_000);
            // Let the guest EOI everything, with the hardware behaving.
            f.fail = false;
            f.busy_all = false;
            for _ in 0..NUM_IRQS * 4 {
                for v in 0..3 {
                    for i in 0..4 {
                        g.maintenance(v, Some(i), &mut f);
                    }
                }
            }
            for v in 0..3 {
                assert!(!g.has_pending(v), "vcpu {v} still busy");
                for irq in 0..NUM_IRQS {
                    let stuck = g.core.route(v, irq) == Some(v) && g.core.deliverable(v, irq);
                    assert!(!stuck, "irq {irq} of vcpu {v} deliverable but never delivered");
                }
            }
        }
    }
}
