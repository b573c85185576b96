//! Virtual GIC: distributor emulation and list-register injection.
//!
//! Safe Rust only; tested on the host. The hardware list registers are
//! reached through a trait the VMM implements with seL4 invocations.
//!
//! # Model
//!
//! seL4 gives the guest a real GICv2 virtual CPU interface (GICC), so only
//! the distributor (GICD) is emulated: the VMM traps guest accesses to the
//! distributor page and forwards them to [`GicV2::dist_read`] and
//! [`GicV2::dist_write`]. Interrupts reach the guest through the hardware
//! list registers (LRs), written with [`ListRegisters::inject`]. Every
//! injected LR asks for an EOI maintenance interrupt, so the VMM learns when
//! the guest completed it and calls [`GicV2::maintenance`], which frees the
//! shadow copy of that LR and refills it from a per-vCPU FIFO queue.
//!
//! An interrupt is delivered to a vCPU when the distributor enables its group
//! (GICD_CTLR), the interrupt is enabled, it is pending, and it is not already
//! sitting in one of that vCPU's LRs. SPIs go to the lowest-numbered vCPU
//! named in their GICD_ITARGETSR byte.
//!
//! Nothing here panics on guest input and nothing allocates: all state lives
//! in fixed-size arrays inside [`GicV2`].

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod access;
mod dist;
mod fifo;
mod irq_regs;
mod lrs;
pub mod regs;
mod state;
#[cfg(test)]
mod testutil;
pub mod v3;

use lrs::{Released, VcpuLrs};
use state::{Banked, Spis};
pub use v3::sgi::Affinity;
pub use v3::GicV3;

/// Maximum vCPUs per VM.
pub const MAX_VCPUS: usize = 8;
/// Interrupt IDs emulated: SGIs 0-15, PPIs 16-31, SPIs 32..NUM_IRQS.
pub const NUM_IRQS: usize = 256;
/// Most list registers tracked per vCPU.
pub const MAX_LRS: usize = 16;
/// Size of the distributor MMIO region.
pub const GICD_SIZE: u64 = 0x1000;
/// Capacity of each vCPU's overflow queue (interrupts waiting for a free LR).
pub const QUEUE_LEN: usize = 64;

/// Bitmask of vCPUs (bit i = vCPU i).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VcpuMask(pub u64);

impl VcpuMask {
    /// The mask naming no vCPU.
    pub const EMPTY: VcpuMask = VcpuMask(0);

    /// The mask naming only `vcpu` (empty if `vcpu` >= 64).
    pub const fn single(vcpu: usize) -> VcpuMask {
        if vcpu < 64 {
            VcpuMask(1 << vcpu)
        } else {
            VcpuMask(0)
        }
    }

    /// Does the mask name `vcpu`?
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < 64 && (self.0 >> vcpu) & 1 != 0
    }

    /// Does the mask name no vCPU?
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds `vcpu` to the mask (ignored if `vcpu` >= 64).
    pub fn insert(&mut self, vcpu: usize) {
        self.0 |= VcpuMask::single(vcpu).0;
    }

    /// The vCPUs named, lowest first.
    pub fn iter(self) -> VcpuMaskIter {
        VcpuMaskIter(self.0)
    }
}

impl core::ops::BitOr for VcpuMask {
    type Output = VcpuMask;
    fn bitor(self, rhs: VcpuMask) -> VcpuMask {
        VcpuMask(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for VcpuMask {
    fn bitor_assign(&mut self, rhs: VcpuMask) {
        self.0 |= rhs.0;
    }
}

/// Iterator over the vCPU indices of a [`VcpuMask`], lowest first.
#[derive(Clone, Debug)]
pub struct VcpuMaskIter(u64);

impl Iterator for VcpuMaskIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let vcpu = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(vcpu)
    }
}

/// Priority field (5 bits, IHI 0048B 5.3.6 GICH_LRn) of the lowest
/// priority, 0xF8. The virtual CPU interface signals an interrupt only if
/// its priority is higher than GICV_PMR, whose lowest value is also 0xF8
/// (5.3.4 and 3.3.2), so an entry at this priority is never signalled.
pub const LOWEST_LR_PRIORITY: u8 = 31;

/// The interrupt ID of the inert entry [`ListRegisters::clear`] writes into
/// LR `index`: an ID the distributor does not implement (GICD_TYPER reports
/// `NUM_IRQS`), different for each LR.
pub const fn empty_lr_virq(index: usize) -> u16 {
    (1019 - (index % MAX_LRS)) as u16
}

/// The hardware side: writes a list register. Implemented by the VMM with
/// seL4 InjectIRQ, by a fake in tests.
pub trait ListRegisters {
    /// Writes pending `virq` into list register `index` of `vcpu`.
    fn inject(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError>;

    /// [`ListRegisters::inject`] into an LR the guest cannot hold: one this
    /// vGIC left empty or saw EOIed (maintenance). The kernel never refuses
    /// that, so an implementation may send it later (with its next wait), as
    /// long as later calls on the LRs come after it.
    fn fill(
        &mut self,
        vcpu: usize,
        index: usize,
        virq: u16,
        priority: u8,
        group: u8,
    ) -> Result<(), InjectError> {
        self.inject(vcpu, index, virq, priority, group)
    }

    /// Empties list register `index` of `vcpu`, unless the guest holds its
    /// interrupt active (`Busy`). seL4 can only write pending entries, so
    /// the default writes an inert one: pending at [`LOWEST_LR_PRIORITY`],
    /// never signalled, ID [`empty_lr_virq`]; the next inject replaces it.
    fn clear(&mut self, vcpu: usize, index: usize) -> Result<(), InjectError> {
        self.inject(vcpu, index, empty_lr_virq(index), LOWEST_LR_PRIORITY, 0)
    }
}

/// Why [`ListRegisters::inject`] failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InjectError {
    /// the LR is still active in hardware
    Busy,
    /// anything else (invocation failed)
    Failed,
}

/// Emulated GICv2 distributor plus the shadow list registers and overflow
/// queues of every vCPU. Fixed size; no heap.
#[derive(Clone)]
pub struct GicV2 {
    /// vCPUs in the VM (<= MAX_VCPUS).
    num_vcpus: usize,
    /// List registers per vCPU (<= MAX_LRS).
    num_lrs: usize,
    /// GICD_CTLR (EnableGrp0/EnableGrp1).
    ctlr: u32,
    /// Per-vCPU state of interrupts 0-31.
    banked: [Banked; MAX_VCPUS],
    /// Shared state of the SPIs.
    spis: Spis,
    /// Per-vCPU shadow LRs and overflow queue.
    lrs: [VcpuLrs; MAX_VCPUS],
    /// vCPUs that got an interrupt during `maintenance` of another vCPU.
    deferred_wake: VcpuMask,
    /// Interrupts whose pending state was dropped without an EOI, so the
    /// VMM must re-arm their source (see [`GicV2::take_released`]).
    released: Released,
}

impl GicV2 {
    /// A distributor for `num_vcpus` vCPUs with `num_lrs` list registers
    /// each (both clamped to `MAX_VCPUS` / `MAX_LRS`), in the power-on state.
    pub const fn new(num_vcpus: usize, num_lrs: usize) -> GicV2 {
        GicV2 {
            num_vcpus: if num_vcpus > MAX_VCPUS { MAX_VCPUS } else { num_vcpus },
            num_lrs: if num_lrs > MAX_LRS { MAX_LRS } else { num_lrs },
            ctlr: 0,
            banked: [Banked::RESET; MAX_VCPUS],
            spis: Spis::RESET,
            lrs: [VcpuLrs::EMPTY; MAX_VCPUS],
            deferred_wake: VcpuMask::EMPTY,
            released: Released::NONE,
        }
    }

    /// Back to the power-on state (guest reboot): everything disabled,
    /// nothing pending, shadows and queues empty. The VMM is responsible for
    /// clearing the hardware list registers themselves.
    pub fn reset(&mut self) {
        *self = GicV2::new(self.num_vcpus, self.num_lrs);
    }

    /// Number of vCPUs (after clamping).
    pub const fn num_vcpus(&self) -> usize {
        self.num_vcpus
    }

    /// Number of list registers per vCPU (after clamping).
    pub const fn num_lrs(&self) -> usize {
        self.num_lrs
    }

    /// A device/timer/passthrough interrupt `irq` is raised (SPI: routed by
    /// ITARGETSR, `vcpu` is ignored; SGI/PPI: to `vcpu`, an SGI with `vcpu`
    /// as its source). Sets it pending and delivers it to an LR if enabled
    /// and one is free, else queues it. Returns vCPUs woken.
    pub fn set_pending(&mut self, vcpu: usize, irq: u32, lrs: &mut impl ListRegisters) -> VcpuMask {
        let woken = self.raise(vcpu, irq, lrs);
        woken | self.settle(lrs)
    }

    /// VGIC maintenance: LR `index` of `vcpu` was EOIed (index None =
    /// unknown: then free nothing but still try to refill). Frees the shadow
    /// LR, returns the interrupt that completed (the VMM then acks its
    /// source: passthrough IRQ ack, vtimer AckVPPI), and refills the free LR
    /// from the vCPU's queue.
    ///
    /// If this moves a retargeted SPI to another vCPU, that vCPU is reported
    /// by [`GicV2::take_deferred_wakeups`].
    pub fn maintenance(
        &mut self,
        vcpu: usize,
        index: Option<usize>,
        lrs: &mut impl ListRegisters,
    ) -> Option<u32> {
        self.complete(vcpu, index, lrs)
    }

    /// True if `vcpu` has an interrupt in an LR or queued (it must not sleep
    /// in WFI). Queued interrupts that were disabled meanwhile do not count.
    pub fn has_pending(&self, vcpu: usize) -> bool {
        self.vcpu_has_pending(vcpu)
    }

    /// Is the distributor enabled (for the interrupt's group) and `irq`
    /// enabled for `vcpu`? (For SPIs the enable is shared by all vCPUs.)
    pub fn is_enabled(&self, vcpu: usize, irq: u32) -> bool {
        let Ok(irq) = usize::try_from(irq) else { return false };
        vcpu < self.num_vcpus && irq < NUM_IRQS && self.forwarded(vcpu, irq)
    }

    /// Retries every vCPU whose queue is waiting although it has a free LR
    /// (after [`ListRegisters::inject`] failed). Returns vCPUs woken.
    pub fn retry(&mut self, lrs: &mut impl ListRegisters) -> VcpuMask {
        self.settle(lrs)
    }

    /// The vCPUs that received an interrupt as a side effect of
    /// [`GicV2::maintenance`] on another vCPU since the last call; clears it.
    pub fn take_deferred_wakeups(&mut self) -> VcpuMask {
        core::mem::take(&mut self.deferred_wake)
    }

    /// One interrupt whose pending (or active) state the guest dropped
    /// through the distributor, without the EOI that would complete it:
    /// `(vcpu, irq)` (vcpu 0 for an SPI), or None. The VMM re-arms its
    /// source as after an EOI (seL4 IRQ ack, AckVPPI); a level-triggered
    /// source that is still asserted then simply fires again. Cheap when
    /// there is none.
    pub fn take_released(&mut self) -> Option<(usize, u32)> {
        self.released.take()
    }

    /// The interrupt the shadow of LR `index` of `vcpu` holds, if any.
    pub fn lr_irq(&self, vcpu: usize, index: usize) -> Option<u32> {
        let vl = self.lrs.get(vcpu).filter(|_| vcpu < self.num_vcpus)?;
        vl.shadow.get(index).filter(|_| index < self.num_lrs).copied().flatten().map(u32::from)
    }

    /// Number of interrupts waiting in the overflow queue of `vcpu`.
    pub fn queued(&self, vcpu: usize) -> usize {
        self.lrs.get(vcpu).filter(|_| vcpu < self.num_vcpus).map_or(0, |vl| vl.queue.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{enable_irq, on, FakeLrs};

    #[test]
    fn vcpu_mask_helpers() {
        let mut m = VcpuMask::EMPTY;
        assert!(m.is_empty());
        m.insert(0);
        m.insert(3);
        m.insert(64);
        assert_eq!(m, VcpuMask(0b1001));
        assert!(m.contains(3) && !m.contains(1) && !m.contains(200));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(VcpuMask::single(1) | VcpuMask::single(2), VcpuMask(0b110));
    }

    #[test]
    fn new_clamps_vcpus_and_lrs() {
        let g = GicV2::new(100, 100);
        assert_eq!((g.num_vcpus(), g.num_lrs()), (MAX_VCPUS, MAX_LRS));
    }

    #[test]
    fn new_is_usable_in_const_context() {
        static GIC: GicV2 = GicV2::new(2, 4);
        assert_eq!(GIC.num_vcpus(), 2);
    }

    #[test]
    fn reset_returns_to_power_on_state() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        for irq in 40..48 {
            enable_irq(&mut g, 0, irq, &mut f);
            g.set_pending(0, irq, &mut f);
        }
        assert!(g.has_pending(0));
        g.reset();
        assert!(!g.has_pending(0));
        assert_eq!(g.queued(0), 0);
        assert_eq!(g.lr_irq(0, 0), None);
        assert_eq!(g.dist_read(0, regs::GICD_CTLR, 4), 0);
        assert_eq!(g.dist_read(0, regs::GICD_ISENABLER + 4, 4), 0);
        assert_eq!(g.dist_read(0, regs::GICD_ISPENDR + 4, 4), 0);
        assert_eq!((g.num_vcpus(), g.num_lrs()), (2, 4));
    }

    #[test]
    fn is_enabled_needs_distributor_and_irq_enable() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        assert!(!g.is_enabled(0, 40));
        g.dist_write(0, regs::GICD_CTLR, 4, 1, &mut f);
        assert!(g.is_enabled(0, 40) && g.is_enabled(1, 40));
        assert!(!g.is_enabled(0, 41));
        assert!(!g.is_enabled(5, 40));
        assert!(!g.is_enabled(0, 9999));
    }

    /// The shared seeded test PRNG (docs/dependencies.md).
    use fastrand::Rng;

    /// Register bases the fuzzer aims at (plus fully random offsets).
    const FUZZ_BASES: [u64; 16] = [
        regs::GICD_CTLR,
        regs::GICD_TYPER,
        regs::GICD_IGROUPR,
        regs::GICD_ISENABLER,
        regs::GICD_ICENABLER,
        regs::GICD_ISPENDR,
        regs::GICD_ICPENDR,
        regs::GICD_ISACTIVER,
        regs::GICD_ICACTIVER,
        regs::GICD_IPRIORITYR,
        regs::GICD_ITARGETSR,
        regs::GICD_ICFGR,
        regs::GICD_SGIR,
        regs::GICD_CPENDSGIR,
        regs::GICD_SPENDSGIR,
        regs::GICD_PIDR4,
    ];

    /// Internal consistency: no duplicate queue entries, nothing both
    /// queued and in an LR, no SPI in two LRs.
    fn check_invariants(g: &GicV2) {
        for v in 0..g.num_vcpus() {
            let q = &g.lrs[v].queue;
            assert!(q.len() <= QUEUE_LEN);
            for i in 0..q.len() {
                let irq = q.get(i).unwrap();
                assert!(usize::from(irq) < NUM_IRQS);
                assert!((i + 1..q.len()).all(|j| q.get(j) != Some(irq)), "duplicate {irq}");
                assert!(!g.in_any_lr(v, usize::from(irq)), "irq {irq} queued and in an LR");
            }
        }
        let mut spis_in_lrs: Vec<u32> = (0..g.num_vcpus())
            .flat_map(|v| (0..g.num_lrs()).filter_map(move |i| g.lr_irq(v, i)))
            .filter(|&irq| irq >= regs::SPI_BASE as u32)
            .collect();
        let n = spis_in_lrs.len();
        spis_in_lrs.sort_unstable();
        spis_in_lrs.dedup();
        assert_eq!(n, spis_in_lrs.len(), "an SPI sits in two LRs");
    }

    /// Runs `steps` random guest/VMM operations (including out-of-range ones).
    fn fuzz(g: &mut GicV2, f: &mut FakeLrs, rng: &mut Rng, steps: usize) {
        for _ in 0..steps {
            let r = rng.u64(..);
            let value = rng.u64(..);
            let vcpu = (r >> 8) as usize % (g.num_vcpus() + 1); // one absent vCPU
            let width = [1u8, 4, 4, 1, 4, 2, 8, 3, 0][(r >> 16) as usize % 9];
            let offset = if r & (1 << 24) != 0 {
                (r >> 32) & 0x1FFF
            } else {
                let base = FUZZ_BASES[(r >> 25) as usize % FUZZ_BASES.len()];
                let span = if r & (1 << 31) != 0 { 0x40 } else { 0x8 };
                let offset = base + (r >> 32) % span;
                if r & (1 << 30) != 0 {
                    offset
                } else {
                    offset & !3
                }
            };
            match r % 8 {
                0 | 1 => {
                    g.dist_read(vcpu, offset, width);
                }
                2..=4 => {
                    g.dist_write(vcpu, offset, width, value, f);
                }
                5 => {
                    g.set_pending(vcpu, (value % 300) as u32, f);
                }
                6 => {
                    let index = if value & 7 == 0 { None } else { Some((value >> 3) as usize % 6) };
                    g.maintenance(vcpu, index, f);
                }
                _ => {
                    f.busy_all = value & 7 == 0;
                    f.fail = value & 0x70 == 0;
                    g.has_pending(vcpu);
                    g.retry(f);
                    g.take_deferred_wakeups();
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
        let mut g = on(3, 4);
        let mut f = FakeLrs::new();
        let mut rng = Rng::with_seed(0x2545_F491_4F6C_DD1D);
        fuzz(&mut g, &mut f, &mut rng, 100_000);
        assert!(f.total > 1000, "the fuzzer should reach delivery ({} injects)", f.total);
    }

    /// The hostile guest's `gicd_sweep` (guest/hostile/main.c): junk
    /// written to and read from every distributor offset at 32, 8, 16 and
    /// 64 bits, with its xorshift generator seeded by `seed`.
    fn hostile_sweep(g: &mut GicV2, f: &mut FakeLrs, seed: u32) {
        let mut state = seed;
        let mut junk = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for (width, step) in [(4u8, 4u64), (1, 1), (2, 2), (8, 8)] {
            for offset in (0..GICD_SIZE).step_by(step as usize) {
                let value = match width {
                    8 => (u64::from(junk()) << 32) | u64::from(junk()),
                    _ => u64::from(junk()),
                };
                g.dist_write(0, offset, width, value, f);
                g.dist_read(0, offset, width);
            }
        }
    }

    /// The hostile guest's `gic_sane` on a single vCPU: everything
    /// disabled, not pending, inactive, Group 0, then the distributor on.
    fn hostile_restore(g: &mut GicV2, f: &mut FakeLrs, saved_cfg: &[u64]) {
        use regs::*;
        let words = (g.dist_read(0, GICD_TYPER, 4) & 0x1f) + 1;
        g.dist_write(0, GICD_CTLR, 4, 0, f);
        for n in 0..words {
            g.dist_write(0, GICD_ICENABLER + 4 * n, 4, 0xffff_ffff, f);
            g.dist_write(0, GICD_ICPENDR + 4 * n, 4, 0xffff_ffff, f);
            g.dist_write(0, GICD_ICACTIVER + 4 * n, 4, 0xffff_ffff, f);
            g.dist_write(0, GICD_IGROUPR + 4 * n, 4, 0, f);
        }
        for i in (0..words * 32).step_by(4) {
            g.dist_write(0, GICD_IPRIORITYR + i, 4, 0xa0a0_a0a0, f);
            if i >= 32 {
                g.dist_write(0, GICD_ITARGETSR + i, 4, 0x0101_0101, f);
            }
        }
        for n in 2..(words * 2).min(64) {
            g.dist_write(0, GICD_ICFGR + 4 * n, 4, saved_cfg[n as usize], f);
        }
        for i in (0..16).step_by(4) {
            g.dist_write(0, GICD_CPENDSGIR + i, 4, 0xffff_ffff, f);
        }
        g.dist_write(0, GICD_CTLR, 4, 1, f);
    }

    /// What the hostile system test checks after its distributor sweep
    /// ("GICD restored"): once the guest has disabled, cleared and
    /// deactivated everything, no list register may still hold an
    /// interrupt (the guest never acknowledged any: IRQs are masked), and
    /// the distributor reads back clean. A GICv2 SGI the junk left in an LR
    /// used to survive ICENABLER, ICACTIVER and CPENDSGIR.
    #[test]
    fn hostile_sweep_then_restore_leaves_nothing_behind() {
        let mut rng = Rng::with_seed(0x5EED_05A1_E000);
        for _ in 0..200 {
            let seed = 0x2545_f491 ^ rng.u32(..);
            let (mut g, mut f) = (GicV2::new(1, 4), FakeLrs::new());
            let saved_cfg: Vec<u64> =
                (0..64).map(|n| g.dist_read(0, regs::GICD_ICFGR + 4 * n, 4)).collect();
            hostile_sweep(&mut g, &mut f, seed);
            hostile_restore(&mut g, &mut f, &saved_cfg);
            let held: Vec<u32> = (0..4).filter_map(|i| g.lr_irq(0, i)).collect();
            assert!(held.is_empty(), "seed {seed:#x}: LRs still hold {held:?}");
            for n in 0..NUM_IRQS as u64 / 32 {
                for reg in [regs::GICD_ISPENDR, regs::GICD_ISACTIVER] {
                    let word = g.dist_read(0, reg + 4 * n, 4);
                    assert_eq!(word, 0, "seed {seed:#x}: {reg:#x} word {n} reads {word:#x}");
                }
            }
            assert!(!g.has_pending(0), "seed {seed:#x}");
        }
    }

    #[test]
    fn random_accesses_never_lose_interrupts() {
        let mut rng = Rng::with_seed(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20 {
            let mut g = on(3, 4);
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
                    let stuck = g.route(v, irq) == Some(v) && g.deliverable(v, irq);
                    assert!(!stuck, "irq {irq} of vcpu {v} deliverable but never delivered");
                }
            }
        }
    }
}
