//! Decoding of guest accesses to the distributor page (IHI 0048B 4.3).
//!
//! Every register is word-accessible; IPRIORITYR, ITARGETSR, CPENDSGIR and
//! SPENDSGIR are also byte-accessible (IHI 0048B 4.1.4). Any other width, an
//! unaligned or out-of-page offset, a reserved register or an absent vCPU is
//! read as zero and ignored on write, with a warning. The per-interrupt
//! registers are those of [`crate::irq_regs`], reaching every interrupt.

use crate::access::{byte_index, gather, scatter, set_bits, table_word, Access, RegMap, Widths};
use crate::irq_regs::{IrqFrame, IrqReg, Sgis, View};
use crate::regs::*;
use crate::state::IRQ_WORDS;
use crate::{GicV2, ListRegisters, VcpuMask, GICD_SIZE, NUM_IRQS};

/// The GICv2 distributor's view of the per-interrupt registers: every
/// interrupt (IDs 0-31 banked per accessing vCPU), SGIs pending per source.
enum GicdV2 {}

impl IrqFrame for GicdV2 {
    const VIEW: View = View { first_id: 0, end_id: NUM_IRQS, sgis: Sgis::PerSource };
}

/// A decoded distributor register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reg {
    Ctlr,
    Typer,
    Iidr,
    /// IGROUPR to ICFGR.
    Irq(IrqReg),
    Sgir,
    ClearSgiPending,
    SetSgiPending,
    Id,
}

impl RegMap for Reg {
    const REGION: &'static str = "GICD";

    fn decode(offset: u64) -> Option<Reg> {
        if let Some(irq) = IrqReg::decode(offset) {
            return Some(Reg::Irq(irq));
        }
        Some(match offset & !3 {
            GICD_CTLR => Reg::Ctlr,
            GICD_TYPER => Reg::Typer,
            GICD_IIDR => Reg::Iidr,
            GICD_SGIR => Reg::Sgir,
            GICD_CPENDSGIR..GICD_SPENDSGIR => Reg::ClearSgiPending,
            GICD_SPENDSGIR..GICD_SPENDSGIR_END => Reg::SetSgiPending,
            GICD_PIDR4..GICD_ID_END => Reg::Id,
            _ => return None,
        })
    }

    fn widths(&self) -> Widths {
        match self {
            Reg::Irq(irq) => irq.widths(),
            Reg::ClearSgiPending | Reg::SetSgiPending => Widths::WordOrByte,
            _ => Widths::Word,
        }
    }
}

impl GicV2 {
    /// Guest read of the distributor at `offset` (0..GICD_SIZE) with `width`
    /// bytes (1, 2, 4 or 8) by `vcpu`. Bad accesses read as zero.
    pub fn dist_read(&mut self, vcpu: usize, offset: u64, width: u8) -> u64 {
        let Some(a) = self.check(vcpu, offset, width, GICD_SIZE, "read") else { return 0 };
        let (vcpu, offset, width) = (a.vcpu, a.offset, a.width);
        let value = match a.reg {
            Reg::Ctlr => self.ctlr,
            Reg::Typer => {
                let cpus = self.num_vcpus.saturating_sub(1) as u32;
                (IRQ_WORDS as u32 - 1) | (cpus << TYPER_CPU_NUMBER_SHIFT)
            }
            Reg::Iidr => IIDR_VALUE,
            Reg::Irq(irq) => self.irq_read::<GicdV2>(vcpu, irq, width),
            Reg::Sgir => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} read of write-only GICD_SGIR");
                0
            }
            // Both read the source sets, a byte per SGI.
            Reg::ClearSgiPending | Reg::SetSgiPending => {
                gather(byte_index(offset, GICD_CPENDSGIR) % NUM_SGIS, width, |s| {
                    self.sgi_sources(vcpu, s)
                })
            }
            Reg::Id => table_word(&ID_REGS, offset, GICD_PIDR4),
        };
        u64::from(value)
    }

    /// Guest write. Returns the vCPUs that got a newly deliverable interrupt
    /// (so the VMM can wake them from WFI). Bad accesses are ignored.
    pub fn dist_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        width: u8,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let woken = match self.check(vcpu, offset, width, GICD_SIZE, "write") {
            Some(a) => self.write_gicd(a, value as u32, lrs),
            None => VcpuMask::EMPTY,
        };
        woken | self.settle(lrs)
    }

    /// Performs a checked write.
    fn write_gicd(&mut self, a: Access<Reg>, value: u32, lrs: &mut impl ListRegisters) -> VcpuMask {
        let (vcpu, offset, width) = (a.vcpu, a.offset, a.width);
        match a.reg {
            Reg::Ctlr => return self.write_ctlr(value, lrs),
            Reg::Typer | Reg::Iidr | Reg::Id => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only GICD {offset:#x}");
            }
            Reg::Irq(irq) => return self.irq_write::<GicdV2>(vcpu, irq, width, value, lrs),
            Reg::Sgir => return self.send_sgi(vcpu, value, lrs),
            Reg::ClearSgiPending => {
                let mut woken = VcpuMask::EMPTY;
                for (sgi, clear) in scatter(byte_index(offset, GICD_CPENDSGIR), width, value) {
                    if let Some(sources) = self.sgi_sources_mut(vcpu, sgi) {
                        *sources &= !clear;
                        if *sources == 0 {
                            self.unqueue(vcpu, sgi);
                        }
                    }
                    // The instance an LR holds is pending from its source
                    // too: clearing that source empties the LR, unless the
                    // guest has acknowledged it (IHI 0048B 4.3.16).
                    let held = self.held_source(vcpu, sgi);
                    if held.is_some_and(|s| clear.checked_shr(s as u32).is_some_and(|c| c & 1 != 0))
                    {
                        if let Some(v) = self.withdraw(vcpu, sgi, lrs) {
                            woken |= self.refill(v, lrs) | self.deliver(vcpu, sgi, lrs);
                        }
                    }
                }
                return woken;
            }
            Reg::SetSgiPending => {
                let valid = self.valid_vcpus();
                let mut woken = VcpuMask::EMPTY;
                for (sgi, set) in scatter(byte_index(offset, GICD_SPENDSGIR), width, value) {
                    if let Some(sources) = self.sgi_sources_mut(vcpu, sgi) {
                        *sources |= set & valid;
                    }
                    woken |= self.deliver(vcpu, sgi, lrs);
                }
                return woken;
            }
        }
        VcpuMask::EMPTY
    }

    /// GICD_CTLR write (GICv2 and GICv3: the same two writable bits, the
    /// group enables): newly enabled groups deliver what is pending.
    pub(crate) fn write_ctlr(&mut self, value: u32, lrs: &mut impl ListRegisters) -> VcpuMask {
        let old = self.ctlr;
        self.ctlr = value & CTLR_MASK;
        if self.ctlr & !old != 0 {
            return self.deliver_all(lrs);
        }
        VcpuMask::EMPTY
    }

    /// GICD_SGIR write by `vcpu`: makes SGI pending on the targets.
    fn send_sgi(&mut self, vcpu: usize, value: u32, lrs: &mut impl ListRegisters) -> VcpuMask {
        let sgi = (value & SGIR_INTID_MASK) as usize;
        let valid = self.valid_vcpus();
        let me = 1u8.checked_shl(vcpu as u32).unwrap_or(0);
        let targets = match (value >> SGIR_FILTER_SHIFT) & 3 {
            SGIR_FILTER_LIST => (value >> SGIR_TARGET_LIST_SHIFT) as u8 & valid,
            SGIR_FILTER_OTHERS => valid & !me,
            SGIR_FILTER_SELF => me,
            _ => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} GICD_SGIR reserved filter {value:#x}");
                return VcpuMask::EMPTY;
            }
        };
        let mut woken = VcpuMask::EMPTY;
        for target in set_bits(0, u32::from(targets)) {
            self.make_pending(target, sgi, vcpu);
            woken |= self.deliver(target, sgi, lrs);
        }
        woken
    }
}

// GICv3's GICD_CTLR has the same writable bits (`write_ctlr` serves both).
const _: () = assert!(crate::v3::regs::CTLR_MASK == CTLR_MASK);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{enable_irq, on, FakeLrs};
    use crate::NUM_IRQS;

    fn word(reg: u64, irq: u32) -> u64 {
        reg + u64::from(irq / 32) * 4
    }

    fn bit(irq: u32) -> u64 {
        1 << (irq % 32)
    }

    // ---- GICD_CTLR ----

    #[test]
    fn ctlr_enable_and_disable() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0);
        g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 1);
        g.dist_write(0, GICD_CTLR, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0);
    }

    #[test]
    fn ctlr_keeps_only_bits_1_0() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 3);
    }

    #[test]
    fn ctlr_enable_delivers_pending_interrupts() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 0, &mut f);
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 1, 27, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(1, 27, &mut f);
        assert!(f.injected.is_empty());
        let woken = g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        assert_eq!(woken, VcpuMask(0b11));
        assert_eq!((f.virqs(0), f.virqs(1)), (vec![40], vec![27]));
    }

    #[test]
    fn ctlr_disabled_blocks_delivery() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.dist_write(0, GICD_CTLR, 4, 0, &mut f);
        assert!(g.set_pending(0, 40, &mut f).is_empty());
        assert!(f.injected.is_empty());
        assert_eq!(g.dist_read(0, word(GICD_ISPENDR, 40), 4), bit(40));
    }

    // ---- GICD_TYPER, GICD_IIDR ----

    #[test]
    fn typer_reports_it_lines_and_cpu_number() {
        let mut g = GicV2::new(4, 4);
        let typer = g.dist_read(0, GICD_TYPER, 4);
        assert_eq!(typer & 0x1F, (NUM_IRQS / 32 - 1) as u64);
        assert_eq!((typer >> 5) & 7, 3);
        assert_eq!(typer & (1 << 10), 0, "no security extensions");
        assert_eq!(GicV2::new(1, 4).dist_read(0, GICD_TYPER, 4), 7);
    }

    #[test]
    fn iidr_reports_arm_implementer() {
        let mut g = GicV2::new(1, 4);
        assert_eq!(g.dist_read(0, GICD_IIDR, 4), 0x0200_043B);
    }

    #[test]
    fn typer_and_iidr_are_read_only() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        let (typer, iidr) = (g.dist_read(0, GICD_TYPER, 4), g.dist_read(0, GICD_IIDR, 4));
        g.dist_write(0, GICD_TYPER, 4, 0, &mut f);
        g.dist_write(0, GICD_IIDR, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_TYPER, 4), typer);
        assert_eq!(g.dist_read(0, GICD_IIDR, 4), iidr);
    }

    // ---- GICD_IGROUPR ----

    #[test]
    fn igroupr0_is_banked_per_vcpu() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IGROUPR, 4, 0xF0F0_0001, &mut f);
        assert_eq!(g.dist_read(0, GICD_IGROUPR, 4), 0xF0F0_0001);
        assert_eq!(g.dist_read(1, GICD_IGROUPR, 4), 0);
    }

    #[test]
    fn igroupr_spis_are_shared() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(1, GICD_IGROUPR + 4, 4, 0x8000_0001, &mut f);
        assert_eq!(g.dist_read(0, GICD_IGROUPR + 4, 4), 0x8000_0001);
        g.dist_write(0, GICD_IGROUPR + 4, 4, 0, &mut f);
        assert_eq!(g.dist_read(1, GICD_IGROUPR + 4, 4), 0);
    }

    #[test]
    fn igroupr_group_reaches_lr_and_follows_ctlr() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        g.dist_write(0, word(GICD_IGROUPR, 40), 4, bit(40), &mut f);
        g.set_pending(0, 40, &mut f);
        assert!(f.injected.is_empty(), "group 1 disabled in GICD_CTLR");
        g.dist_write(0, GICD_CTLR, 4, 3, &mut f);
        assert_eq!(f.injected, vec![(0, 0, 40, 0, 1)]);
    }

    // ---- GICD_ISENABLER / GICD_ICENABLER ----

    #[test]
    fn isenabler_sets_and_icenabler_clears_single_bits() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISENABLER + 4, 4, 0b101, &mut f);
        g.dist_write(0, GICD_ISENABLER + 4, 4, 0b010, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER + 4, 4), 0b111);
        assert_eq!(g.dist_read(0, GICD_ICENABLER + 4, 4), 0b111);
        g.dist_write(0, GICD_ICENABLER + 4, 4, 0b001, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER + 4, 4), 0b110);
        g.dist_write(0, GICD_ISENABLER + 4, 4, 0, &mut f);
        g.dist_write(0, GICD_ICENABLER + 4, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICENABLER + 4, 4), 0b110);
    }

    #[test]
    fn enable_of_irqs_0_31_is_banked_per_vcpu() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISENABLER, 4, 0x0001_FFFF, &mut f);
        g.dist_write(1, GICD_ISENABLER, 4, 0x0800_0000, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER, 4), 0x0001_FFFF);
        assert_eq!(g.dist_read(1, GICD_ISENABLER, 4), 0x0800_0000);
        g.dist_write(1, GICD_ICENABLER, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER, 4), 0x0001_FFFF);
    }

    #[test]
    fn enable_of_spis_is_shared() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(1, GICD_ISENABLER + 8, 4, 1, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER + 8, 4), 1);
    }

    #[test]
    fn isenabler_delivers_pending_interrupt() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        g.set_pending(0, 50, &mut f);
        let woken = g.dist_write(0, word(GICD_ISENABLER, 50), 4, bit(50), &mut f);
        assert_eq!(woken, VcpuMask::single(0));
        assert_eq!(f.virqs(0), vec![50]);
    }

    // ---- GICD_ISPENDR / GICD_ICPENDR ----

    #[test]
    fn ispendr_write_delivers_enabled_interrupt() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        let woken = g.dist_write(0, word(GICD_ISPENDR, 40), 4, bit(40), &mut f);
        assert_eq!(woken, VcpuMask::single(0));
        assert_eq!(f.virqs(0), vec![40]);
        // The LR owns it now: no longer pending, but active.
        assert_eq!(g.dist_read(0, word(GICD_ISPENDR, 40), 4), 0);
        assert_eq!(g.dist_read(0, word(GICD_ISACTIVER, 40), 4), bit(40));
    }

    #[test]
    fn ispendr_sets_and_icpendr_clears_pending() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISPENDR + 4, 4, 0b11, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISPENDR + 4, 4), 0b11);
        assert_eq!(g.dist_read(0, GICD_ICPENDR + 4, 4), 0b11);
        g.dist_write(0, GICD_ICPENDR + 4, 4, 0b01, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISPENDR + 4, 4), 0b10);
        assert!(f.injected.is_empty());
    }

    #[test]
    fn pending_of_ppis_is_banked_per_vcpu() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(1, GICD_ISPENDR, 4, 1 << 27, &mut f);
        assert_eq!(g.dist_read(1, GICD_ISPENDR, 4), 1 << 27);
        assert_eq!(g.dist_read(0, GICD_ISPENDR, 4), 0);
    }

    #[test]
    fn ispendr_and_icpendr_ignore_sgi_bits() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISPENDR, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISPENDR, 4), 0xFFFF_0000);
        g.dist_write(0, GICD_SPENDSGIR, 1, 1, &mut f);
        g.dist_write(0, GICD_ICPENDR, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISPENDR, 4), 1);
    }

    #[test]
    fn pending_read_includes_queued_interrupts() {
        let mut g = on(1, 1);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 0, 41, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(0, 41, &mut f);
        assert_eq!(g.queued(0), 1);
        assert_eq!(g.dist_read(0, GICD_ISPENDR + 4, 4), bit(41));
        assert_eq!(g.dist_read(0, GICD_ISACTIVER + 4, 4), bit(40));
    }

    #[test]
    fn icpendr_removes_queued_interrupt() {
        let mut g = on(1, 1);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 0, 41, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(0, 41, &mut f);
        g.dist_write(0, GICD_ICPENDR + 4, 4, bit(41), &mut f);
        assert_eq!(g.queued(0), 0);
        assert_eq!(g.dist_read(0, GICD_ISPENDR + 4, 4), 0);
        g.maintenance(0, Some(0), &mut f);
        assert_eq!(f.virqs(0), vec![40]);
    }

    // ---- GICD_ISACTIVER / GICD_ICACTIVER ----

    #[test]
    fn isactiver_sets_and_icactiver_clears_active() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISACTIVER + 4, 4, 0b1001, &mut f);
        assert_eq!(g.dist_read(1, GICD_ICACTIVER + 4, 4), 0b1001);
        g.dist_write(0, GICD_ICACTIVER + 4, 4, 0b1000, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER + 4, 4), 0b0001);
        g.dist_write(0, GICD_ISACTIVER, 4, 1 << 20, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER, 4), 1 << 20);
        assert_eq!(g.dist_read(1, GICD_ISACTIVER, 4), 0);
    }

    #[test]
    fn active_read_clears_after_maintenance() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 27, &mut f);
        g.set_pending(0, 27, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER, 4), 1 << 27);
        g.maintenance(0, Some(0), &mut f);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER, 4), 0);
    }

    // ---- GICD_IPRIORITYR ----

    #[test]
    fn ipriorityr_byte_access() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 41, 1, 0xA0, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 41, 1), 0xA0);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 4), 0x0000_A000);
    }

    #[test]
    fn ipriorityr_word_access() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 40, 4, 0x1020_3040, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 4), 0x1020_3040);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 43, 1), 0x10);
    }

    #[test]
    fn ipriorityr_drops_low_three_bits() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 40, 1, 0xFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 1), 0xF8);
    }

    #[test]
    fn ipriorityr_banked_for_irqs_0_31() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(1, GICD_IPRIORITYR + 24, 4, 0x8080_8080, &mut f);
        assert_eq!(g.dist_read(1, GICD_IPRIORITYR + 24, 4), 0x8080_8080);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 24, 4), 0);
        g.dist_write(1, GICD_IPRIORITYR + 64, 4, 0x8080_8080, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 64, 4), 0x8080_8080);
    }

    #[test]
    fn ipriorityr_priority_reaches_lr_shifted() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 40, 1, 0xA0, &mut f);
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert_eq!(f.injected, vec![(0, 0, 40, 0xA0 >> 3, 0)]);
    }

    // ---- GICD_ITARGETSR ----

    #[test]
    fn itargetsr_0_31_read_own_vcpu_bit() {
        let mut g = GicV2::new(3, 4);
        assert_eq!(g.dist_read(0, GICD_ITARGETSR, 4), 0x0101_0101);
        assert_eq!(g.dist_read(2, GICD_ITARGETSR + 28, 4), 0x0404_0404);
        assert_eq!(g.dist_read(1, GICD_ITARGETSR + 5, 1), 0x02);
    }

    #[test]
    fn itargetsr_0_31_are_read_only() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ITARGETSR + 16, 4, 0x0202_0202, &mut f);
        assert_eq!(g.dist_read(0, GICD_ITARGETSR + 16, 4), 0x0101_0101);
    }

    #[test]
    fn itargetsr_routes_spi_to_vcpu_1() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ITARGETSR + 45, 1, 0x02, &mut f);
        assert_eq!(g.dist_read(1, GICD_ITARGETSR + 44, 4), 0x0101_0201);
        enable_irq(&mut g, 0, 45, &mut f);
        assert_eq!(g.set_pending(0, 45, &mut f), VcpuMask::single(1));
        assert_eq!(f.injected, vec![(1, 0, 45, 0, 0)]);
    }

    #[test]
    fn itargetsr_ignores_absent_vcpus() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ITARGETSR + 32, 4, 0xFFFC_0F04, &mut f);
        assert_eq!(g.dist_read(0, GICD_ITARGETSR + 32, 4), 0x0300_0300);
    }

    #[test]
    fn itargetsr_without_target_keeps_spi_pending() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        enable_irq(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert!(f.injected.is_empty());
        g.dist_write(0, GICD_ITARGETSR + 40, 1, 1, &mut f);
        assert_eq!(f.virqs(0), vec![40]);
    }

    // ---- GICD_ICFGR ----

    #[test]
    fn icfgr0_sgis_are_edge_and_read_only() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.dist_read(0, GICD_ICFGR, 4), 0xAAAA_AAAA);
        g.dist_write(0, GICD_ICFGR, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICFGR, 4), 0xAAAA_AAAA);
    }

    #[test]
    fn icfgr1_ppis_are_banked() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(1, GICD_ICFGR + 4, 4, 0x0080_0000, &mut f);
        assert_eq!(g.dist_read(1, GICD_ICFGR + 4, 4), 0x0080_0000);
        assert_eq!(g.dist_read(0, GICD_ICFGR + 4, 4), 0);
    }

    #[test]
    fn icfgr_spis_store_edge_bit_only() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ICFGR + 8, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(1, GICD_ICFGR + 8, 4), 0xAAAA_AAAA);
        g.dist_write(0, GICD_ICFGR + 8, 4, 0x0000_0002, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICFGR + 8, 4), 0x0000_0002);
    }

    #[test]
    fn icfgr_beyond_num_irqs_is_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        let last = GICD_ICFGR_END - 4;
        g.dist_write(0, last, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, last, 4), 0);
    }

    // ---- GICD_SGIR ----

    #[test]
    fn sgir_filter_target_list() {
        let mut g = on(4, 4);
        let mut f = FakeLrs::new();
        for v in 0..4 {
            enable_irq(&mut g, v, 5, &mut f);
        }
        let woken = g.dist_write(0, GICD_SGIR, 4, (0b0000_0110 << 16) | 5, &mut f);
        assert_eq!(woken, VcpuMask(0b0110));
        assert_eq!(f.injected, vec![(1, 0, 5, 0, 0), (2, 0, 5, 0, 0)]);
    }

    #[test]
    fn sgir_filter_all_but_self() {
        let mut g = on(3, 4);
        let mut f = FakeLrs::new();
        for v in 0..3 {
            enable_irq(&mut g, v, 1, &mut f);
        }
        let woken = g.dist_write(1, GICD_SGIR, 4, (1 << 24) | 1, &mut f);
        assert_eq!(woken, VcpuMask(0b101));
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR, 4), 0);
        assert_eq!((f.virqs(0), f.virqs(1), f.virqs(2)), (vec![1], vec![], vec![1]));
    }

    #[test]
    fn sgir_filter_self_only() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        let woken = g.dist_write(1, GICD_SGIR, 4, (2 << 24) | (0xFF << 16) | 9, &mut f);
        assert!(woken.is_empty(), "SGI 9 not enabled yet");
        assert_eq!(g.dist_read(1, GICD_SPENDSGIR + 9, 1), 0b10);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 9, 1), 0);
        assert_eq!(g.dist_read(1, GICD_ISPENDR, 4), 1 << 9);
    }

    #[test]
    fn sgir_reserved_filter_is_ignored() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_SGIR, 4, (3 << 24) | (0xFF << 16) | 2, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISPENDR, 4), 0);
        assert_eq!(g.dist_read(1, GICD_ISPENDR, 4), 0);
    }

    #[test]
    fn sgir_list_ignores_absent_vcpus() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_SGIR, 4, (0xFC << 16) | 3, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISPENDR, 4), 0);
        assert_eq!(g.dist_read(1, GICD_ISPENDR, 4), 0);
    }

    #[test]
    fn sgir_is_write_only() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_SGIR, 4, (2 << 24) | 4, &mut f);
        assert_eq!(g.dist_read(0, GICD_SGIR, 4), 0);
    }

    #[test]
    fn sgi_from_two_sources_is_delivered_twice() {
        let mut g = on(3, 4);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 2, 0, &mut f);
        g.dist_write(0, GICD_SGIR, 4, 0b100 << 16, &mut f);
        g.dist_write(1, GICD_SGIR, 4, 0b100 << 16, &mut f);
        assert_eq!(f.virqs(2), vec![0]);
        assert_eq!(g.dist_read(2, GICD_SPENDSGIR, 1), 0b10, "source 1 still pending");
        assert_eq!(g.maintenance(2, Some(0), &mut f), Some(0));
        assert_eq!(f.virqs(2), vec![0, 0]);
        assert_eq!(g.dist_read(2, GICD_SPENDSGIR, 1), 0);
    }

    // ---- GICD_CPENDSGIR / GICD_SPENDSGIR ----

    #[test]
    fn spendsgir_sets_sources_and_delivers() {
        let mut g = on(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_SPENDSGIR + 4, 4, 0x0000_FF03, &mut f);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 4, 4), 0x0000_0303);
        assert_eq!(g.dist_read(0, GICD_CPENDSGIR + 5, 1), 0x03);
        assert_eq!(g.dist_read(1, GICD_SPENDSGIR + 4, 4), 0);
        enable_irq(&mut g, 0, 4, &mut f);
        assert_eq!(f.virqs(0), vec![4]);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 4, 1), 0x02);
    }

    #[test]
    fn cpendsgir_clears_sources() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_SPENDSGIR + 12, 1, 0x03, &mut f);
        g.dist_write(0, GICD_CPENDSGIR + 12, 1, 0x01, &mut f);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 12, 1), 0x02);
        g.dist_write(0, GICD_CPENDSGIR + 12, 4, 0xFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_SPENDSGIR + 12, 4), 0);
        assert_eq!(g.dist_read(0, GICD_ISPENDR, 4), 0);
    }

    #[test]
    fn cpendsgir_removes_queued_sgi() {
        let mut g = on(1, 1);
        let mut f = FakeLrs::new();
        enable_irq(&mut g, 0, 40, &mut f);
        enable_irq(&mut g, 0, 7, &mut f);
        g.set_pending(0, 40, &mut f);
        g.dist_write(0, GICD_SPENDSGIR + 4, 4, 0x0100_0000, &mut f);
        assert_eq!(g.queued(0), 1);
        g.dist_write(0, GICD_CPENDSGIR + 7, 1, 0x01, &mut f);
        assert_eq!(g.queued(0), 0);
    }

    // ---- identification registers ----

    #[test]
    fn pidr2_reports_gicv2() {
        let mut g = GicV2::new(1, 4);
        let pidr2 = g.dist_read(0, GICD_PIDR2, 4);
        assert_eq!(pidr2, 0x2B);
        assert_eq!((pidr2 >> 4) & 0xF, 2);
    }

    #[test]
    fn cidr_reports_primecell_preamble() {
        let mut g = GicV2::new(1, 4);
        let cidr: Vec<u64> = (0..4).map(|i| g.dist_read(0, GICD_CIDR0 + i * 4, 4)).collect();
        assert_eq!(cidr, vec![0x0D, 0xF0, 0x05, 0xB1]);
    }

    #[test]
    fn id_registers_are_read_only() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_PIDR2, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_PIDR2, 4), 0x2B);
    }

    // ---- bad accesses ----

    #[test]
    fn eight_byte_access_is_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 8, 1, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0);
        g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 8), 0);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR, 8), 0);
    }

    #[test]
    fn byte_access_to_word_only_register_is_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 1, 1, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0);
        g.dist_write(0, GICD_ISENABLER + 4, 4, 0xFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER + 4, 1), 0);
        g.dist_write(0, GICD_ISENABLER + 5, 1, 0xFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER + 4, 4), 0xFF);
    }

    #[test]
    fn halfword_access_is_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 40, 2, 0xFFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 4), 0);
        g.dist_write(0, GICD_IPRIORITYR + 40, 4, 0x1111_1111, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 2), 0);
    }

    #[test]
    fn invalid_width_is_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        for width in [0, 3, 5, 16, 255] {
            g.dist_write(0, GICD_CTLR, width, 1, &mut f);
            assert_eq!(g.dist_read(0, GICD_CTLR, width), 0);
        }
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0);
    }

    #[test]
    fn unaligned_access_is_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 41, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 4), 0);
        g.dist_write(0, GICD_IPRIORITYR + 40, 4, 0x1020_3040, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 42, 4), 0);
        assert_eq!(g.dist_read(0, GICD_TYPER + 2, 4), 0);
    }

    #[test]
    fn out_of_range_offsets_are_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        for offset in [GICD_SIZE, GICD_SIZE - 2, 0x1_0000, u64::MAX - 3, u64::MAX] {
            assert!(g.dist_write(0, offset, 4, !0, &mut f).is_empty());
            assert_eq!(g.dist_read(0, offset, 4), 0);
            assert_eq!(g.dist_read(0, offset, 1), 0);
        }
        assert_eq!(g.dist_read(0, GICD_SIZE - 4, 4), 0xB1);
    }

    #[test]
    fn reserved_offsets_are_raz_wi() {
        let mut g = GicV2::new(1, 4);
        let mut f = FakeLrs::new();
        for offset in [0x00C, 0x040, 0x07C, 0xD00, 0xE00, 0xF04, 0xF30, 0xFCC] {
            g.dist_write(0, offset, 4, !0, &mut f);
            assert_eq!(g.dist_read(0, offset, 4), 0, "offset {offset:#x}");
        }
    }

    #[test]
    fn absent_vcpu_access_is_raz_wi() {
        let mut g = GicV2::new(2, 4);
        let mut f = FakeLrs::new();
        assert!(g.dist_write(2, GICD_CTLR, 4, 1, &mut f).is_empty());
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0);
        assert_eq!(g.dist_read(2, GICD_TYPER, 4), 0);
        assert_eq!(g.dist_read(usize::MAX, GICD_PIDR2, 4), 0);
    }

    #[test]
    fn registers_beyond_num_irqs_are_raz_wi() {
        let mut g = on(1, 4);
        let mut f = FakeLrs::new();
        let n = (NUM_IRQS / 32) as u64 * 4;
        for reg in [GICD_IGROUPR, GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER] {
            g.dist_write(0, reg + n, 4, !0, &mut f);
            assert_eq!(g.dist_read(0, reg + n, 4), 0);
        }
        let prio = GICD_IPRIORITYR + NUM_IRQS as u64;
        g.dist_write(0, prio, 4, !0, &mut f);
        assert_eq!(g.dist_read(0, prio, 4), 0);
        let targets = GICD_ITARGETSR + NUM_IRQS as u64;
        g.dist_write(0, targets, 4, !0, &mut f);
        assert_eq!(g.dist_read(0, targets, 4), 0);
        assert!(f.injected.is_empty());
    }
}
