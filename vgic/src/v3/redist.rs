//! Decoding of guest accesses to the GICv3 redistributors (IHI 0069H 12.11).
//!
//! The redistributor region holds one redistributor per vCPU, vCPU i at
//! `i * GICR_STRIDE`: an RD_base frame (control, GICR_TYPER, GICR_WAKER)
//! and an SGI_base frame (the SGI and PPI registers of that vCPU: those of
//! [`crate::irq_regs`] for IDs 0-31). Any vCPU may access any
//! redistributor. There are no LPIs: GICR_CTLR.EnableLPIs is RAZ/WI and the
//! LPI registers are reserved. Registers are 32-bit; GICR_IPRIORITYRn is
//! also byte-accessible and GICR_TYPER is 64-bit with 32-bit access to each
//! half. Anything else reads as zero and is ignored on write, with a
//! warning.

use super::regs::*;
use super::GicV3;
use crate::access::{read_half, table_word, Access, RegMap, Widths};
use crate::irq_regs::{IrqArray, IrqFrame, IrqReg, Sgis, View};
use crate::regs::SPI_BASE;
use crate::{ListRegisters, VcpuMask};

/// A redistributor's view of the per-interrupt registers: the SGIs and
/// PPIs of its vCPU, SGIs with a single pending bit.
enum GicrSgi {}

impl IrqFrame for GicrSgi {
    const VIEW: View = View { first_id: 0, end_id: SPI_BASE, sgis: Sgis::SingleBit };
}

/// A decoded redistributor register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reg {
    /// GICR_CTLR: no LPIs, writes complete at once: RAZ/WI.
    Ctlr,
    Iidr,
    Typer,
    /// GICR_STATUSR: no error reporting: RAZ/WI.
    Statusr,
    Waker,
    Id,
    /// SGI_base: IGROUPR0, I[SC]ENABLER0, I[SC]PENDR0, I[SC]ACTIVER0,
    /// IPRIORITYR0-7, ICFGR0-1.
    Irq(IrqReg),
    /// GICR_IGRPMODR0, GICR_NSACR: RAZ/WI with one Security state.
    RazWi,
}

impl RegMap for Reg {
    const REGION: &'static str = "GICR";

    /// The register at `offset` of the region (RD_base frame, then SGI_base
    /// frame of a redistributor).
    fn decode(offset: u64) -> Option<Reg> {
        let (_, off) = redistributor(offset);
        let Some(sgi) = off.checked_sub(GICR_SGI_BASE) else {
            return Some(match off & !3 {
                GICR_CTLR => Reg::Ctlr,
                GICR_IIDR => Reg::Iidr,
                GICR_TYPER | 0x000C => Reg::Typer,
                GICR_STATUSR => Reg::Statusr,
                GICR_WAKER => Reg::Waker,
                GICR_PIDR4..GICR_ID_END => Reg::Id,
                _ => return None,
            });
        };
        match IrqReg::decode(sgi) {
            // Only the words of IDs 0-31, and no ITARGETSR.
            Some(IrqReg { array: IrqArray::Targets, .. }) => None,
            Some(irq) if irq.first < SPI_BASE => Some(Reg::Irq(irq)),
            Some(_) => None,
            None => match sgi & !3 {
                GICR_IGRPMODR0 | GICR_NSACR => Some(Reg::RazWi),
                _ => None,
            },
        }
    }

    fn widths(&self) -> Widths {
        match self {
            Reg::Irq(irq) => irq.widths(),
            Reg::Typer => Widths::DoubleOrWord,
            _ => Widths::Word,
        }
    }
}

/// The redistributor (its vCPU) an offset of the region falls in, and the
/// offset within it.
fn redistributor(offset: u64) -> (usize, u64) {
    // The region is at most MAX_VCPUS redistributors: the index fits.
    ((offset / GICR_STRIDE) as usize, offset % GICR_STRIDE)
}

impl GicV3 {
    /// Guest read of the redistributor region at `offset` (0 ..
    /// [`GicV3::redist_region_size`]) with `width` bytes by `vcpu`. Bad
    /// accesses read as zero.
    pub fn redist_read(&mut self, vcpu: usize, offset: u64, width: u8) -> u64 {
        let size = self.redist_region_size();
        let Some(a) = self.core.check(vcpu, offset, width, size, "read") else { return 0 };
        let (rd, off) = redistributor(a.offset);
        let value = match a.reg {
            Reg::Iidr => IIDR_V3_VALUE,
            Reg::Typer => return read_half(self.gicr_typer(rd), off, width),
            Reg::Waker if self.asleep & (1 << rd) != 0 => {
                WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
            }
            Reg::Id => table_word(&ID_REGS_V3, off, GICR_PIDR4),
            Reg::Irq(irq) => self.core.irq_read::<GicrSgi>(rd, irq, width),
            Reg::Ctlr | Reg::Statusr | Reg::Waker | Reg::RazWi => 0,
        };
        u64::from(value)
    }

    /// Guest write of the redistributor region. Returns the vCPUs that got
    /// a newly deliverable interrupt. Bad accesses are ignored.
    pub fn redist_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        width: u8,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let size = self.redist_region_size();
        let woken = match self.core.check(vcpu, offset, width, size, "write") {
            Some(a) => self.write_gicr(a, value as u32, lrs),
            None => VcpuMask::EMPTY,
        };
        woken | self.core.settle(lrs)
    }

    /// Performs a checked redistributor write.
    fn write_gicr(&mut self, a: Access<Reg>, word: u32, lrs: &mut impl ListRegisters) -> VcpuMask {
        let (rd, _) = redistributor(a.offset);
        match a.reg {
            Reg::Waker => {
                let was = self.asleep;
                if word & WAKER_PROCESSOR_SLEEP != 0 {
                    self.asleep |= 1 << rd;
                } else {
                    self.asleep &= !(1 << rd);
                }
                if self.asleep != was {
                    return self.sync_one_of_n_routes(lrs);
                }
            }
            Reg::Irq(irq) => return self.core.irq_write::<GicrSgi>(rd, irq, a.width, word, lrs),
            Reg::Iidr | Reg::Typer | Reg::Id => {
                let (vcpu, offset) = (a.vcpu, a.offset);
                log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only GICR {offset:#x}");
            }
            Reg::Ctlr | Reg::Statusr | Reg::RazWi => {}
        }
        VcpuMask::EMPTY
    }

    /// GICR_TYPER of the redistributor of vCPU `rd`.
    fn gicr_typer(&self, rd: usize) -> u64 {
        let aff = self.affinity(rd).map_or(0, |a| u64::from(a.0));
        let last = if rd + 1 == self.num_vcpus() { GICR_TYPER_LAST } else { 0 };
        (aff << GICR_TYPER_AFF_SHIFT) | ((rd as u64) << GICR_TYPER_PROC_SHIFT) | last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeLrs;
    use crate::v3::sgi::Affinity;
    use crate::v3::testutil::{enable3, on3, rd_frame, sgi_frame};

    // ---- RD_base: GICR_TYPER, GICR_IIDR, identification, GICR_CTLR ----

    #[test]
    fn typer_names_affinity_processor_and_last() {
        let affs = [Affinity::new(0, 0, 1, 0), Affinity::new(2, 0, 1, 1)];
        let mut g = GicV3::with_affinities(2, 4, &affs);
        let t0 = g.redist_read(0, rd_frame(0, GICR_TYPER), 8);
        let t1 = g.redist_read(0, rd_frame(1, GICR_TYPER), 8);
        assert_eq!(t0, 0x0000_0100_0000_0000);
        assert_eq!(t1, 0x0200_0101_0000_0110, "Processor_Number 1, Last");
        assert_eq!(t0 & (GICR_TYPER_PLPIS | GICR_TYPER_LAST), 0);
    }

    #[test]
    fn typer_32_bit_halves() {
        let mut g = GicV3::new(3, 4);
        assert_eq!(g.redist_read(1, rd_frame(2, GICR_TYPER), 4), 0x210);
        assert_eq!(g.redist_read(1, rd_frame(2, GICR_TYPER + 4), 4), 2);
        assert_eq!(g.redist_read(1, rd_frame(2, GICR_TYPER + 4), 8), 0, "unaligned");
    }

    #[test]
    fn linux_finds_each_redistributor_by_affinity() {
        let mut g = GicV3::new(4, 4);
        let mut found = vec![];
        let mut rd = 0;
        loop {
            let typer = g.redist_read(0, rd_frame(rd, GICR_TYPER), 8);
            found.push(typer >> 32);
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
            rd += 1;
        }
        assert_eq!(found, vec![0, 1, 2, 3]);
    }

    #[test]
    fn iidr_and_pidr2_report_gicv3() {
        let mut g = GicV3::new(2, 4);
        assert_eq!(g.redist_read(0, rd_frame(1, GICR_IIDR), 4), u64::from(IIDR_V3_VALUE));
        assert_eq!((g.redist_read(0, rd_frame(1, GICR_PIDR2), 4) >> 4) & 0xF, 3);
    }

    #[test]
    fn ctlr_enable_lpis_is_raz_wi() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, GICR_CTLR, 4, 1, &mut f);
        assert_eq!(g.redist_read(0, GICR_CTLR, 4), 0, "EnableLPIs and RWP read 0");
    }

    // ---- GICR_WAKER ----

    #[test]
    fn waker_resets_asleep() {
        let mut g = GicV3::new(2, 4);
        assert_eq!(g.redist_read(0, rd_frame(1, GICR_WAKER), 4), 0b110);
    }

    #[test]
    fn waker_children_asleep_follows_processor_sleep() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, rd_frame(1, GICR_WAKER), 4, 0, &mut f);
        assert_eq!(g.redist_read(0, rd_frame(1, GICR_WAKER), 4), 0);
        assert_eq!(g.redist_read(0, rd_frame(0, GICR_WAKER), 4), 0b110, "per redistributor");
        g.redist_write(0, rd_frame(1, GICR_WAKER), 4, 0xFFFF_FFF9, &mut f);
        assert_eq!(g.redist_read(0, rd_frame(1, GICR_WAKER), 4), 0, "only bit 1 writable");
        g.redist_write(0, rd_frame(1, GICR_WAKER), 4, 0b010, &mut f);
        assert_eq!(g.redist_read(0, rd_frame(1, GICR_WAKER), 4), 0b110);
    }

    // ---- SGI_base: bit registers ----

    #[test]
    fn igroupr0_belongs_to_the_redistributor_not_the_accessor() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(1, GICR_IGROUPR0), 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.redist_read(1, sgi_frame(1, GICR_IGROUPR0), 4), 0xFFFF_FFFF);
        assert_eq!(g.redist_read(1, sgi_frame(0, GICR_IGROUPR0), 4), 0);
    }

    #[test]
    fn isenabler0_and_icenabler0() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(1, GICR_ISENABLER0), 4, 0x0800_0001, &mut f);
        assert!(!g.is_enabled(1, 27), "the distributor is still disabled");
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ICENABLER0), 4), 0x0800_0001);
        g.redist_write(0, sgi_frame(1, GICR_ICENABLER0), 4, 1, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISENABLER0), 4), 0x0800_0000);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_ISENABLER0), 4), 0);
    }

    #[test]
    fn ispendr0_sets_ppi_pending_and_delivers() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 1, 27, &mut f);
        let woken = g.redist_write(0, sgi_frame(1, GICR_ISPENDR0), 4, 1 << 27, &mut f);
        assert_eq!(woken, VcpuMask::single(1));
        assert_eq!(f.injected, vec![(1, 0, 27, 0, 0)]);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISACTIVER0), 4), 1 << 27);
    }

    #[test]
    fn ispendr0_sets_sgi_pending_unlike_gicv2() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(1, GICR_ISPENDR0), 4, 1 << 3, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISPENDR0), 4), 1 << 3);
        assert_eq!(enable3(&mut g, 1, 3, &mut f), VcpuMask::single(1));
        assert_eq!(f.virqs(1), vec![3]);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISPENDR0), 4), 0);
    }

    #[test]
    fn icpendr0_clears_sgi_without_release() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(0, GICR_ISPENDR0), 4, 0b11, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_ICPENDR0), 4, 0b01, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_ISPENDR0), 4), 0b10);
        assert_eq!(g.take_released(), None);
    }

    #[test]
    fn icpendr0_empties_an_unacknowledged_sgi_lr() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 0, 2, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_ISPENDR0), 4, 0b100, &mut f);
        assert_eq!(g.lr_irq(0, 0), Some(2));
        g.redist_write(0, sgi_frame(0, GICR_ICPENDR0), 4, 0b100, &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
        assert!(!g.has_pending(0));
    }

    #[test]
    fn icpendr0_of_a_pending_ppi_releases_it() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.set_pending(1, 27, &mut f);
        g.redist_write(0, sgi_frame(1, GICR_ICPENDR0), 4, 1 << 27, &mut f);
        assert_eq!(g.take_released(), Some((1, 27)));
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISPENDR0), 4), 0);
    }

    #[test]
    fn isactiver0_and_icactiver0() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(1, GICR_ISACTIVER0), 4, 1 << 20, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ICACTIVER0), 4), 1 << 20);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_ISACTIVER0), 4), 0);
        g.redist_write(0, sgi_frame(1, GICR_ICACTIVER0), 4, 1 << 20, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ISACTIVER0), 4), 0);
    }

    #[test]
    fn icenabler0_takes_an_unacknowledged_sgi_back_to_pending() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 0, 5, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_ISPENDR0), 4, 1 << 5, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_ICENABLER0), 4, 1 << 5, &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_ISPENDR0), 4), 1 << 5);
        assert!(!g.has_pending(0));
        assert_eq!(enable3(&mut g, 0, 5, &mut f), VcpuMask::single(0));
        assert_eq!(f.virqs(0), vec![5, 5]);
    }

    #[test]
    fn lowest_priority_takes_an_sgi_back_to_pending() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        enable3(&mut g, 0, 5, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_ISPENDR0), 4, 1 << 5, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_IPRIORITYR + 5), 1, 0xFF, &mut f);
        assert_eq!(g.lr_irq(0, 0), None);
        assert!(!g.has_pending(0), "never signalled: WFI may sleep");
        g.redist_write(0, sgi_frame(0, GICR_IPRIORITYR + 5), 1, 0x80, &mut f);
        assert_eq!(f.injected.last(), Some(&(0, 0, 5, 0x10, 0)));
    }

    // ---- SGI_base: priorities and configuration ----

    #[test]
    fn ipriorityr_byte_and_word_access() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(1, GICR_IPRIORITYR + 27), 1, 0xA7, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_IPRIORITYR + 24), 4), 0xA000_0000);
        g.redist_write(0, sgi_frame(1, GICR_IPRIORITYR), 4, 0x1020_3040, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_IPRIORITYR + 1), 1), 0x30);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_IPRIORITYR), 4), 0);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_IPRIORITYR), 2), 0, "halfword");
    }

    #[test]
    fn ipriorityr_reaches_the_lr() {
        let mut g = on3(1, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(0, GICR_IPRIORITYR + 27), 1, 0xA0, &mut f);
        enable3(&mut g, 0, 27, &mut f);
        g.set_pending(0, 27, &mut f);
        assert_eq!(f.injected, vec![(0, 0, 27, 0xA0 >> 3, 0)]);
        g.redist_write(0, sgi_frame(0, GICR_IPRIORITYR + 27), 1, 0x80, &mut f);
        assert_eq!(f.injected.last(), Some(&(0, 0, 27, 0x10, 0)), "LR rewritten");
    }

    #[test]
    fn icfgr0_is_edge_and_read_only_icfgr1_is_stored() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(1, GICR_ICFGR0), 4, 0, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ICFGR0), 4), 0xAAAA_AAAA);
        g.redist_write(0, sgi_frame(1, GICR_ICFGR1), 4, 0xFFFF_FFFF, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(1, GICR_ICFGR1), 4), 0xAAAA_AAAA);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_ICFGR1), 4), 0);
    }

    #[test]
    fn igrpmodr0_and_nsacr_are_raz_wi() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        for reg in [GICR_IGRPMODR0, GICR_NSACR] {
            g.redist_write(0, sgi_frame(0, reg), 4, !0, &mut f);
            assert_eq!(g.redist_read(0, sgi_frame(0, reg), 4), 0);
        }
    }

    // ---- bad accesses ----

    #[test]
    fn beyond_the_last_redistributor_is_raz_wi() {
        let mut g = GicV3::new(2, 4);
        let mut f = FakeLrs::new();
        assert_eq!(g.redist_region_size(), 0x4_0000);
        for offset in [rd_frame(2, GICR_TYPER), u64::MAX - 7, 0x4_0000 - 2] {
            assert!(g.redist_write(0, offset, 4, !0, &mut f).is_empty());
            assert_eq!(g.redist_read(0, offset, 4), 0);
        }
    }

    #[test]
    fn reserved_and_lpi_registers_are_raz_wi() {
        let mut g = GicV3::new(1, 4);
        let mut f = FakeLrs::new();
        let lpi = [0x40, 0x70, 0x78, 0xA0, 0xC0];
        for offset in lpi.into_iter().chain([0x1_0000, 0x1_0084, 0x1_0420, 0x1_FFFC]) {
            g.redist_write(0, offset, 4, !0, &mut f);
            g.redist_write(0, offset, 8, !0, &mut f);
            assert_eq!(g.redist_read(0, offset, 4), 0, "offset {offset:#x}");
        }
    }

    #[test]
    fn wrong_widths_and_absent_vcpu_are_raz_wi() {
        let mut g = on3(2, 4);
        let mut f = FakeLrs::new();
        g.redist_write(0, sgi_frame(0, GICR_ISENABLER0), 8, !0, &mut f);
        g.redist_write(0, sgi_frame(0, GICR_ISENABLER0), 1, !0, &mut f);
        g.redist_write(2, sgi_frame(0, GICR_ISENABLER0), 4, !0, &mut f);
        assert_eq!(g.redist_read(0, sgi_frame(0, GICR_ISENABLER0), 4), 0);
        assert_eq!(g.redist_read(0, rd_frame(0, GICR_WAKER), 8), 0);
        assert_eq!(g.redist_read(5, rd_frame(0, GICR_TYPER), 8), 0);
    }
}
