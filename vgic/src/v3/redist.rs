//! Decoding of guest accesses to the GICv3 redistributors (IHI 0069H 12.11).
//!
//! The redistributor region holds one redistributor per vCPU, vCPU i at
//! `i * GICR_STRIDE`: an RD_base frame (control, GICR_TYPER, GICR_WAKER)
//! and an SGI_base frame (the SGI and PPI registers of that vCPU). Any vCPU
//! may access any redistributor. There are no LPIs: GICR_CTLR.EnableLPIs is
//! RAZ/WI and the LPI registers are reserved. Registers are 32-bit;
//! GICR_IPRIORITYRn is also byte-accessible and GICR_TYPER is 64-bit with
//! 32-bit access to each half. Anything else reads as zero and is ignored
//! on write, with a warning.

use super::access::{byte_index, gather, well_formed, Op, Widths};
use super::regs::*;
use super::GicV3;
use crate::regs::{ICFGR_SGI_VALUE, ICFGR_WRITABLE};
use crate::state::BitReg;
use crate::{ListRegisters, VcpuMask};

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
    Bits(BitReg, Op),
    Priority,
    /// GICR_ICFGR0: SGIs, always edge-triggered, read-only.
    SgiConfig,
    /// GICR_ICFGR1: PPIs.
    PpiConfig,
    /// GICR_IGRPMODR0, GICR_NSACR: RAZ/WI with one Security state.
    RazWi,
    Reserved,
}

impl Reg {
    /// The register containing the word at `offset` (word-aligned) of a
    /// redistributor (RD_base frame, then SGI_base frame).
    fn decode(offset: u64) -> Reg {
        let Some(sgi) = offset.checked_sub(GICR_SGI_BASE) else {
            return match offset {
                GICR_CTLR => Reg::Ctlr,
                GICR_IIDR => Reg::Iidr,
                GICR_TYPER | 0x000C => Reg::Typer,
                GICR_STATUSR => Reg::Statusr,
                GICR_WAKER => Reg::Waker,
                GICR_PIDR4..GICR_ID_END => Reg::Id,
                _ => Reg::Reserved,
            };
        };
        match sgi {
            GICR_IGROUPR0 => Reg::Bits(BitReg::Group, Op::Store),
            GICR_ISENABLER0 => Reg::Bits(BitReg::Enable, Op::Set),
            GICR_ICENABLER0 => Reg::Bits(BitReg::Enable, Op::Clear),
            GICR_ISPENDR0 => Reg::Bits(BitReg::Pending, Op::Set),
            GICR_ICPENDR0 => Reg::Bits(BitReg::Pending, Op::Clear),
            GICR_ISACTIVER0 => Reg::Bits(BitReg::Active, Op::Set),
            GICR_ICACTIVER0 => Reg::Bits(BitReg::Active, Op::Clear),
            GICR_IPRIORITYR..GICR_IPRIORITYR_END => Reg::Priority,
            GICR_ICFGR0 => Reg::SgiConfig,
            GICR_ICFGR1 => Reg::PpiConfig,
            GICR_IGRPMODR0 | GICR_NSACR => Reg::RazWi,
            _ => Reg::Reserved,
        }
    }

    /// The access widths the register accepts.
    fn widths(self) -> Widths {
        match self {
            Reg::Priority => Widths::WordOrByte,
            Reg::Typer => Widths::DoubleOrWord,
            _ => Widths::Word,
        }
    }
}

impl GicV3 {
    /// Guest read of the redistributor region at `offset` (0 ..
    /// [`GicV3::redist_region_size`]) with `width` bytes by `vcpu`. Bad
    /// accesses read as zero.
    pub fn redist_read(&mut self, vcpu: usize, offset: u64, width: u8) -> u64 {
        let Some((rd, reg, off)) = self.check_redist(vcpu, offset, width, "read") else {
            return 0;
        };
        let value = match reg {
            Reg::Iidr => IIDR_V3_VALUE,
            Reg::Typer => {
                let typer = self.gicr_typer(rd);
                return match (width, off & 4 != 0) {
                    (8, _) => typer,
                    (_, false) => typer & 0xFFFF_FFFF,
                    (_, true) => typer >> 32,
                };
            }
            Reg::Waker if self.asleep & (1 << rd) != 0 => {
                WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
            }
            Reg::Id => ID_REGS_V3.get(byte_index(off, GICR_PIDR4) / 4).copied().unwrap_or(0),
            Reg::Bits(bits, _) => self.read_bits(rd, bits, 0),
            Reg::Priority => {
                let first = byte_index(off, GICR_SGI_BASE + GICR_IPRIORITYR);
                gather(first, width, |irq| self.core.priority(rd, irq))
            }
            Reg::SgiConfig => ICFGR_SGI_VALUE,
            Reg::PpiConfig => self.core.cfg_word(rd, 1),
            Reg::Ctlr | Reg::Statusr | Reg::Waker | Reg::RazWi | Reg::Reserved => 0,
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
        let woken = self.redist_write_access(vcpu, offset, width, value, lrs);
        woken | self.core.settle(lrs)
    }

    fn redist_write_access(
        &mut self,
        vcpu: usize,
        offset: u64,
        width: u8,
        value: u64,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let Some((rd, reg, off)) = self.check_redist(vcpu, offset, width, "write") else {
            return VcpuMask::EMPTY;
        };
        let word = value as u32;
        match reg {
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
            Reg::Bits(bits, op) => return self.write_bits(rd, bits, op, 0, word, lrs),
            Reg::Priority => {
                let first = byte_index(off, GICR_SGI_BASE + GICR_IPRIORITYR);
                return self.write_priorities(rd, first, 0, width, word, lrs);
            }
            Reg::SgiConfig if word != ICFGR_SGI_VALUE => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only GICR_ICFGR0");
            }
            Reg::PpiConfig => self.core.set_cfg_word(rd, 1, word & ICFGR_WRITABLE),
            Reg::Iidr | Reg::Typer | Reg::Id => {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only GICR {offset:#x}");
            }
            Reg::Ctlr | Reg::Statusr | Reg::SgiConfig | Reg::RazWi | Reg::Reserved => {}
        }
        VcpuMask::EMPTY
    }

    /// GICR_TYPER of the redistributor of vCPU `rd`.
    fn gicr_typer(&self, rd: usize) -> u64 {
        let aff = self.affinity(rd).map_or(0, |a| u64::from(a.0));
        let last = if rd + 1 == self.num_vcpus() { GICR_TYPER_LAST } else { 0 };
        (aff << GICR_TYPER_AFF_SHIFT) | ((rd as u64) << GICR_TYPER_PROC_SHIFT) | last
    }

    /// Validates a redistributor access; returns the redistributor's vCPU,
    /// the register and the offset within the redistributor.
    fn check_redist(
        &self,
        vcpu: usize,
        offset: u64,
        width: u8,
        what: &str,
    ) -> Option<(usize, Reg, u64)> {
        if vcpu >= self.num_vcpus() {
            log::warn!(target: "irq", "vgic: {what} at GICR {offset:#x} by absent vcpu {vcpu}");
            return None;
        }
        if !well_formed(offset, width, self.redist_region_size()) {
            log::warn!(target: "irq", "vgic: vcpu {vcpu} bad {what} at GICR {offset:#x} width {width}");
            return None;
        }
        let rd = usize::try_from(offset / GICR_STRIDE).ok()?;
        let off = offset % GICR_STRIDE;
        let reg = Reg::decode(off & !3);
        if reg == Reg::Reserved {
            log::warn!(target: "irq", "vgic: vcpu {vcpu} {what} of reserved GICR {offset:#x}");
            return None;
        }
        if !reg.widths().allows(width) {
            log::warn!(target: "irq", "vgic: vcpu {vcpu} {width}-byte {what} at GICR {offset:#x}");
            return None;
        }
        Some((rd, reg, off))
    }
}
