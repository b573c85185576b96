//! Decoding of guest accesses to the GICv3 distributor (IHI 0069H 12.9).
//!
//! Affinity routing is always enabled, so the registers of interrupts 0-31
//! (word 0 of the bit arrays, IPRIORITYR0-7, ICFGR0-1), ITARGETSR, SGIR and
//! the SGI pending registers are RAZ/WI here: those interrupts live in the
//! redistributors (IHI 0069H 12.9, "when affinity routing is enabled").
//! Registers are 32-bit; IPRIORITYR and ITARGETSR are also byte-accessible,
//! IROUTER is 64-bit with 32-bit access to each half (IHI 0069H 12.1.3).
//! Anything else (width, alignment, offset, reserved register, absent vCPU)
//! reads as zero and is ignored on write, with a warning. The per-interrupt
//! registers are those of [`crate::irq_regs`], reaching the SPIs.

use super::regs::*;
use super::GicV3;
use crate::access::{byte_index, read_half, table_word, write_half, Access, RegMap, Widths};
use crate::irq_regs::{IrqArray, IrqFrame, IrqReg, Sgis, View};
use crate::regs::SPI_BASE;
use crate::{ListRegisters, VcpuMask, NUM_IRQS};

/// The GICv3 distributor's view of the per-interrupt registers: the SPIs.
enum GicdV3 {}

impl IrqFrame for GicdV3 {
    const VIEW: View = View { first_id: SPI_BASE, end_id: NUM_IRQS, sgis: Sgis::SingleBit };
}

/// A decoded distributor register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reg {
    Ctlr,
    Typer,
    /// GICD_TYPER2 (GICv3.1): RAZ here, as in a GICv3.0 without it.
    Typer2,
    Iidr,
    /// IGROUPR, I[SC]ENABLER, I[SC]PENDR, I[SC]ACTIVER, IPRIORITYR, ICFGR.
    Irq(IrqReg),
    /// GICD_ITARGETSRn: RES0 under affinity routing, byte-accessible.
    Targets,
    /// GICD_IGRPMODRn: RAZ/WI with one Security state.
    GroupModifier,
    Router,
    Id,
}

impl RegMap for Reg {
    const REGION: &'static str = "GICD";

    fn decode(offset: u64) -> Option<Reg> {
        match IrqReg::decode(offset) {
            Some(IrqReg { array: IrqArray::Targets, .. }) => return Some(Reg::Targets),
            Some(irq) => return Some(Reg::Irq(irq)),
            None => {}
        }
        Some(match offset & !3 {
            GICD_CTLR => Reg::Ctlr,
            GICD_TYPER => Reg::Typer,
            GICD_TYPER2 => Reg::Typer2,
            GICD_IIDR => Reg::Iidr,
            GICD_IGRPMODR..GICD_IGRPMODR_END => Reg::GroupModifier,
            GICD_IROUTER..GICD_IROUTER_END => Reg::Router,
            GICD_PIDR4..GICD_ID_END => Reg::Id,
            _ => return None,
        })
    }

    fn widths(&self) -> Widths {
        match self {
            Reg::Irq(irq) => irq.widths(),
            Reg::Targets => Widths::WordOrByte,
            Reg::Router => Widths::DoubleOrWord,
            _ => Widths::Word,
        }
    }
}

/// The SPI a GICD_IROUTERn offset belongs to (0 for IDs 0-31, which have
/// no IROUTER, or beyond `NUM_IRQS`).
fn router_irq(offset: u64) -> usize {
    let irq = byte_index(offset, GICD_IROUTER) / 8;
    if (SPI_BASE..NUM_IRQS).contains(&irq) {
        irq
    } else {
        0
    }
}

impl GicV3 {
    /// Guest read of the distributor at `offset` (0..GICD_V3_SIZE) with
    /// `width` bytes (1, 2, 4 or 8) by `vcpu`. Bad accesses read as zero.
    pub fn dist_read(&mut self, vcpu: usize, offset: u64, width: u8) -> u64 {
        let Some(a) = self.core.check(vcpu, offset, width, GICD_V3_SIZE, "read") else {
            return 0;
        };
        let (vcpu, offset, width) = (a.vcpu, a.offset, a.width);
        let value = match a.reg {
            Reg::Ctlr => self.core.ctlr | CTLR_ARE | CTLR_DS,
            Reg::Typer => {
                let lines = (NUM_IRQS / 32 - 1) as u32;
                lines | (TYPER_IDBITS << TYPER_IDBITS_SHIFT) | TYPER_A3V
            }
            Reg::Iidr => IIDR_V3_VALUE,
            Reg::Irq(irq) => self.core.irq_read::<GicdV3>(vcpu, irq, width),
            Reg::Router => {
                let router = self.irouter.get(router_irq(offset)).copied().unwrap_or(0);
                return read_half(router, offset, width);
            }
            Reg::Id => table_word(&ID_REGS_V3, offset, GICD_PIDR4),
            Reg::Typer2 | Reg::Targets | Reg::GroupModifier => 0,
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
        let woken = match self.core.check(vcpu, offset, width, GICD_V3_SIZE, "write") {
            Some(a) => self.write_gicd(a, value, lrs),
            None => VcpuMask::EMPTY,
        };
        woken | self.core.settle(lrs)
    }

    /// Performs a checked distributor write.
    fn write_gicd(&mut self, a: Access<Reg>, value: u64, lrs: &mut impl ListRegisters) -> VcpuMask {
        let (vcpu, offset, width, word) = (a.vcpu, a.offset, a.width, value as u32);
        match a.reg {
            Reg::Ctlr => return self.core.write_ctlr(word, lrs),
            Reg::Typer | Reg::Typer2 | Reg::Iidr | Reg::Id => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only GICD {offset:#x}");
            }
            Reg::Irq(irq) => return self.core.irq_write::<GicdV3>(vcpu, irq, width, word, lrs),
            Reg::Router => return self.write_router(offset, width, value, lrs),
            Reg::Targets | Reg::GroupModifier => {}
        }
        VcpuMask::EMPTY
    }

    /// GICD_IROUTERn write (whole, or one 32-bit half): the SPI moves to
    /// the vCPU now named.
    fn write_router(
        &mut self,
        offset: u64,
        width: u8,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let irq = router_irq(offset);
        let Some(router) = self.irouter.get_mut(irq).filter(|_| irq >= SPI_BASE) else {
            return VcpuMask::EMPTY;
        };
        *router = write_half(*router, offset, width, value) & IROUTER_MASK;
        self.sync_route(irq, lrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeLrs;
    use crate::v3::sgi::Affinity;
    use crate::v3::testutil::{enable3, group1, on3, rd_frame};

    fn word(reg: u64, irq: u32) -> u64 {
        reg + u64::from(irq / 32) * 4
    }

    fn bit(irq: u32) -> u64 {
        1 << (irq % 32)
    }

    fn router(irq: u64) -> u64 {
        GICD_IROUTER + 8 * irq
    }

    // ---- GICD_CTLR ----

    #[test]
    fn ctlr_are_and_ds_read_as_one() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), u64::from(CTLR_ARE | CTLR_DS));
        g.dist_write(0, GICD_CTLR, 4, 0, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0x50, "ARE and DS are RAO/WI");
    }

    #[test]
    fn ctlr_keeps_group_enables_and_rwp_reads_zero() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0x53);
        // Linux: ARE_NS | EnableGrp1A | EnableGrp1.
        g.dist_write(0, GICD_CTLR, 4, 0x13, &mut f);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4) & u64::from(CTLR_RWP), 0);
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0x53);
    }

    #[test]
    fn ctlr_enable_delivers_pending_interrupts() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 0, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        enable3(&mut g, 1, 27, &mut f);
        g.set_pending(0, 40, &mut f);
        g.set_pending(1, 27, &mut f);
        assert!(f.injected.is_empty());
        assert_eq!(g.dist_write(0, GICD_CTLR, 4, 1, &mut f), VcpuMask(0b11));
        assert_eq!((f.virqs(0), f.virqs(1)), (vec![40], vec![27]));
    }

    #[test]
    fn ctlr_group1_enable_gates_group1_interrupts() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        group1(&mut g, 0, 40, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        g.dist_write(0, GICD_CTLR, 4, u64::from(CTLR_ENABLE_GRP0), &mut f);
        g.set_pending(0, 40, &mut f);
        assert!(f.injected.is_empty());
        g.dist_write(0, GICD_CTLR, 4, u64::from(CTLR_ENABLE_GRP1), &mut f);
        assert_eq!(f.injected, vec![(0, 0, 40, 0, 1)]);
    }

    // ---- GICD_TYPER, GICD_IIDR, identification ----

    #[test]
    fn typer_reports_lines_idbits_and_no_lpis() {
        let mut g = GicV3::new(4, 4);
        let typer = g.dist_read(0, GICD_TYPER, 4);
        assert_eq!(typer & 0x1F, (NUM_IRQS / 32 - 1) as u64, "ITLinesNumber");
        assert_eq!((typer >> 5) & 7, 0, "CPUNumber: ignored under ARE");
        assert_eq!((typer >> 19) & 0x1F, 9, "IDbits: 10 bits");
        assert_eq!(typer & u64::from(TYPER_LPIS | TYPER_MBIS | TYPER_NO1N), 0);
        assert_eq!(typer & (1 << 10), 0, "no SecurityExtn");
        assert_ne!(typer & u64::from(TYPER_A3V), 0);
    }

    #[test]
    fn typer2_reads_zero() {
        // Linux 6.1 reads it at boot: RAZ, as a GICv3.0 without it.
        let mut g = GicV3::new(1, 4);
        assert_eq!(g.dist_read(0, GICD_TYPER2, 4), 0);
    }

    #[test]
    fn iidr_and_pidr2_report_gicv3() {
        let mut g = GicV3::new(1, 4);
        assert_eq!(g.dist_read(0, GICD_IIDR, 4), 0x0300_043B);
        let pidr2 = g.dist_read(0, GICD_PIDR2, 4);
        assert_eq!((pidr2 >> 4) & 0xF, 3, "ArchRev");
        let cidr: Vec<u64> = (0..4).map(|i| g.dist_read(0, 0xFFF0 + i * 4, 4)).collect();
        assert_eq!(cidr, vec![0x0D, 0xF0, 0x05, 0xB1]);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        let before: Vec<u64> =
            [GICD_TYPER, GICD_IIDR, GICD_PIDR2].iter().map(|&o| g.dist_read(0, o, 4)).collect();
        for o in [GICD_TYPER, GICD_IIDR, GICD_PIDR2] {
            g.dist_write(0, o, 4, 0, &mut f);
        }
        let after: Vec<u64> =
            [GICD_TYPER, GICD_IIDR, GICD_PIDR2].iter().map(|&o| g.dist_read(0, o, 4)).collect();
        assert_eq!(before, after);
    }

    // ---- bit registers ----

    #[test]
    fn word_zero_of_bit_registers_is_raz_wi() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        for reg in [GICD_IGROUPR, GICD_ISENABLER, GICD_ISPENDR, GICD_ISACTIVER] {
            g.dist_write(0, reg, 4, !0, &mut f);
            assert_eq!(g.dist_read(0, reg, 4), 0, "reg {reg:#x}");
        }
        assert!(f.injected.is_empty());
        assert!(!g.is_enabled(0, 27));
    }

    #[test]
    fn igroupr_spis_are_stored_and_reach_the_lr() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(1, GICD_IGROUPR + 4, 4, 0x8000_0101, &mut f);
        assert_eq!(g.dist_read(0, GICD_IGROUPR + 4, 4), 0x8000_0101);
        enable3(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert_eq!(f.injected, vec![(0, 0, 40, 0, 1)]);
    }

    #[test]
    fn isenabler_and_icenabler_for_spis() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISENABLER + 4, 4, 0b101, &mut f);
        g.dist_write(0, GICD_ISENABLER + 4, 4, 0b010, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICENABLER + 4, 4), 0b111);
        g.dist_write(0, GICD_ICENABLER + 4, 4, 0b001, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISENABLER + 4, 4), 0b110);
    }

    #[test]
    fn isenabler_delivers_pending_spi() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        g.set_pending(0, 50, &mut f);
        let woken = g.dist_write(0, word(GICD_ISENABLER, 50), 4, bit(50), &mut f);
        assert_eq!(woken, VcpuMask::single(0));
        assert_eq!(f.virqs(0), vec![50]);
    }

    #[test]
    fn icenabler_empties_the_lr_and_keeps_the_spi_pending() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        g.dist_write(0, word(GICD_ICENABLER, 40), 4, bit(40), &mut f);
        assert_eq!(f.cleared, [(0, 0)]);
        assert_eq!(g.dist_read(0, word(GICD_ISPENDR, 40), 4), bit(40));
    }

    #[test]
    fn ispendr_delivers_and_icpendr_releases() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 0, 40, &mut f);
        g.dist_write(0, word(GICD_ISPENDR, 40), 4, bit(40), &mut f);
        assert_eq!(f.virqs(0), vec![40]);
        assert_eq!(g.dist_read(0, word(GICD_ISACTIVER, 40), 4), bit(40), "held in an LR");
        g.dist_write(0, word(GICD_ICPENDR, 40), 4, bit(40), &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
        assert_eq!(g.take_released(), Some((0, 40)));
    }

    #[test]
    fn isactiver_and_icactiver_for_spis() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ISACTIVER + 4, 4, 0b1001, &mut f);
        assert_eq!(g.dist_read(1, GICD_ICACTIVER + 4, 4), 0b1001);
        g.dist_write(0, GICD_ICACTIVER + 4, 4, 0b1000, &mut f);
        assert_eq!(g.dist_read(0, GICD_ISACTIVER + 4, 4), 0b0001);
    }

    // ---- GICD_IPRIORITYR, GICD_ITARGETSR ----

    #[test]
    fn ipriorityr_byte_and_word_access() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 41, 1, 0xA0, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 4), 0x0000_A000);
        g.dist_write(0, GICD_IPRIORITYR + 44, 4, 0x1020_30FF, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 44, 4), 0x1020_30F8);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 47, 1), 0x10);
    }

    #[test]
    fn ipriorityr_of_ids_0_31_is_raz_wi() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 24, 4, 0x8080_8080, &mut f);
        g.dist_write(0, GICD_IPRIORITYR + 28, 4, 0x8080_8080, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 24, 4), 0);
        assert_eq!(g.redist_read(0, crate::v3::testutil::sgi_frame(0, 0x41C), 4), 0);
    }

    #[test]
    fn ipriorityr_priority_reaches_lr() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IPRIORITYR + 40, 1, 0xA0, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        g.set_pending(0, 40, &mut f);
        assert_eq!(f.injected, vec![(0, 0, 40, 0xA0 >> 3, 0)]);
    }

    #[test]
    fn itargetsr_is_res0_under_affinity_routing() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ITARGETSR + 40, 4, 0x0202_0202, &mut f);
        g.dist_write(0, GICD_ITARGETSR + 45, 1, 0x02, &mut f);
        assert_eq!(g.dist_read(0, GICD_ITARGETSR + 40, 4), 0);
        assert_eq!(g.dist_read(0, GICD_ITARGETSR + 4, 1), 0);
        enable3(&mut g, 0, 45, &mut f);
        assert_eq!(g.set_pending(0, 45, &mut f), VcpuMask::single(0), "IROUTER still rules");
    }

    // ---- GICD_ICFGR, GICD_IGRPMODR, GICv2 SGI registers ----

    #[test]
    fn icfgr_0_and_1_are_raz_wi_spis_store_edge_bit() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_ICFGR + 4, 4, !0, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICFGR, 4), 0);
        assert_eq!(g.dist_read(0, GICD_ICFGR + 4, 4), 0);
        g.dist_write(0, GICD_ICFGR + 8, 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICFGR + 8, 4), 0xAAAA_AAAA);
        g.dist_write(0, GICD_ICFGR_END - 4, 4, !0, &mut f);
        assert_eq!(g.dist_read(0, GICD_ICFGR_END - 4, 4), 0, "beyond NUM_IRQS");
    }

    #[test]
    fn igrpmodr_is_raz_wi_with_one_security_state() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_IGRPMODR + 4, 4, !0, &mut f);
        assert_eq!(g.dist_read(0, GICD_IGRPMODR + 4, 4), 0);
        assert_eq!(g.dist_read(0, GICD_IGROUPR + 4, 4), 0, "groups untouched");
    }

    #[test]
    fn gicv2_sgi_registers_are_raz_wi() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 1, 5, &mut f);
        g.dist_write(0, GICD_SGIR, 4, (0b10 << 16) | 5, &mut f);
        g.dist_write(0, 0xF20, 4, !0, &mut f);
        assert!(f.injected.is_empty());
        assert_eq!(g.dist_read(0, 0xF20, 4), 0);
    }

    // ---- GICD_IROUTER ----

    #[test]
    fn irouter_resets_to_affinity_zero() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.dist_read(0, router(40), 8), 0);
        enable3(&mut g, 0, 40, &mut f);
        assert_eq!(g.set_pending(1, 40, &mut f), VcpuMask::single(0));
    }

    #[test]
    fn irouter_64_bit_write_routes_by_affinity() {
        let mut g = on3(3, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, router(40), 8, 2, &mut f);
        assert_eq!(g.dist_read(1, router(40), 8), 2);
        enable3(&mut g, 0, 40, &mut f);
        assert_eq!(g.set_pending(0, 40, &mut f), VcpuMask::single(2));
        assert_eq!(f.injected, vec![(2, 0, 40, 0, 0)]);
    }

    #[test]
    fn irouter_32_bit_halves() {
        let mut g = GicV3::with_affinities(2, 4, &[Affinity(0), Affinity::new(1, 0, 0, 0)]);
        let mut f = FakeLrs::new();
        g.dist_write(0, router(40) + 4, 4, 1, &mut f);
        assert_eq!(g.dist_read(0, router(40), 8), 1 << 32);
        assert_eq!(g.dist_read(0, router(40) + 4, 4), 1);
        assert_eq!(g.dist_read(0, router(40), 4), 0);
        g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        assert_eq!(g.set_pending(0, 40, &mut f), VcpuMask::single(1), "Aff3 = 1 is vCPU 1");
    }

    #[test]
    fn irouter_drops_res0_bits() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, router(40), 8, u64::MAX, &mut f);
        assert_eq!(g.dist_read(0, router(40), 8), 0xFF_80FF_FFFF);
    }

    #[test]
    fn irouter_to_unknown_affinity_keeps_spi_pending() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, router(40), 8, 0x0100, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        assert!(g.set_pending(0, 40, &mut f).is_empty());
        assert_eq!(g.dist_read(0, word(GICD_ISPENDR, 40), 4), bit(40));
        assert_eq!(g.dist_write(0, router(40), 8, 1, &mut f), VcpuMask::single(1));
        assert_eq!(f.virqs(1), vec![40]);
    }

    #[test]
    fn irouter_retarget_moves_queued_spi() {
        let mut g = on3(2, 1);
        let mut f = FakeLrs::new();
        for irq in [40, 41] {
            enable3(&mut g, 0, irq, &mut f);
            g.set_pending(0, irq, &mut f);
        }
        assert_eq!(g.queued(0), 1);
        assert_eq!(g.dist_write(0, router(41), 8, 1, &mut f), VcpuMask::single(1));
        assert_eq!(f.last(), Some((1, 0, 41)));
        assert_eq!(g.queued(0), 0);
    }

    #[test]
    fn irouter_one_of_n_picks_an_awake_vcpu() {
        let mut g = GicV3::new(3, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        g.redist_write(0, rd_frame(1, crate::v3::regs::GICR_WAKER), 4, 0, &mut f);
        g.dist_write(0, router(40), 8, IROUTER_IRM | 2, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        assert_eq!(g.set_pending(0, 40, &mut f), VcpuMask::single(1));
    }

    #[test]
    fn irouter_one_of_n_with_every_vcpu_asleep_still_delivers() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, GICD_CTLR, 4, 1, &mut f);
        g.dist_write(0, router(40), 4, IROUTER_IRM, &mut f);
        enable3(&mut g, 0, 40, &mut f);
        assert_eq!(g.set_pending(0, 40, &mut f), VcpuMask::single(0));
    }

    #[test]
    fn irouter_of_ids_0_31_and_beyond_num_irqs_is_raz_wi() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        for irq in [0, 31, NUM_IRQS as u64, 1019] {
            g.dist_write(0, router(irq), 8, 1, &mut f);
            assert_eq!(g.dist_read(0, router(irq), 8), 0, "IROUTER{irq}");
        }
    }

    #[test]
    fn irouter_byte_and_unaligned_access_is_raz_wi() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.dist_write(0, router(40), 1, 1, &mut f);
        g.dist_write(0, router(40) + 4, 8, 1, &mut f);
        assert_eq!(g.dist_read(0, router(40), 8), 0);
        assert_eq!(g.dist_read(0, router(40) + 4, 8), 0);
    }

    // ---- bad accesses ----

    #[test]
    fn wrong_widths_are_raz_wi() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        for width in [0, 1, 2, 3, 8, 16] {
            g.dist_write(0, GICD_CTLR, width, 3, &mut f);
            assert_eq!(g.dist_read(0, GICD_CTLR, width), 0, "width {width}");
        }
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0x50);
        g.dist_write(0, GICD_IPRIORITYR + 40, 2, 0xFFFF, &mut f);
        assert_eq!(g.dist_read(0, GICD_IPRIORITYR + 40, 4), 0);
    }

    #[test]
    fn out_of_range_reserved_and_absent_vcpu_are_raz_wi() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        for offset in [GICD_V3_SIZE, 0x1_0000 - 2, u64::MAX - 3, 0x000C, 0x0040, 0x0E00, 0x8000] {
            assert!(g.dist_write(0, offset, 4, !0, &mut f).is_empty());
            assert_eq!(g.dist_read(0, offset, 4), 0, "offset {offset:#x}");
        }
        assert!(g.dist_write(2, GICD_CTLR, 4, 3, &mut f).is_empty());
        assert_eq!(g.dist_read(0, GICD_CTLR, 4), 0x50);
        assert_eq!(g.dist_read(2, GICD_TYPER, 4), 0);
    }
}
