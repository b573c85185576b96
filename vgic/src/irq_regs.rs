//! The per-interrupt registers, written once for every frame that has them:
//! IGROUPR, I[SC]ENABLER, I[SC]PENDR, I[SC]ACTIVER (a bit per interrupt),
//! IPRIORITYR, ITARGETSR (a byte) and ICFGR (two bits).
//!
//! The GICv2 distributor (IHI 0048B 4.1.2), the GICv3 distributor (IHI
//! 0069H table 12-25) and the SGI_base frame of a GICv3 redistributor
//! (table 12-28) lay them out at the same offsets, 0x080-0xCFF. A frame
//! differs only in the interrupt IDs it reaches ([`IrqFrame`]): the GICv2
//! distributor all of them (banked per vCPU for 0-31), the GICv3
//! distributor the SPIs (IDs 0-31 are RAZ/WI there under affinity routing,
//! IHI 0069H 12.9), a redistributor IDs 0-31 of its vCPU; and in how SGIs
//! are pending ([`Sgis`]). [`IrqReg::decode`] maps an offset to an array and
//! the first interrupt ID the access covers; [`GicV2::irq_read`] and
//! [`GicV2::irq_write`] apply it to the shared interrupt state.

use crate::access::{gather, scatter, set_bits, Widths};
use crate::regs::*;
use crate::state::{BitReg, CFG_WORDS};
use crate::{GicV2, ListRegisters, VcpuMask};

/// How a one-bit-per-interrupt register is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    /// The value is stored (IGROUPRn).
    Store,
    /// Ones set bits (IS*Rn).
    Set,
    /// Ones clear bits (IC*Rn).
    Clear,
}

/// A per-interrupt register array.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IrqArray {
    /// A bit per interrupt, written as `Op` says.
    Bits(BitReg, Op),
    /// IPRIORITYRn: a byte per interrupt.
    Priority,
    /// ITARGETSRn: a byte per interrupt (GICv2 only: the GICv3 frames
    /// answer it themselves).
    Targets,
    /// ICFGRn: two bits per interrupt.
    Config,
}

/// A decoded access to a per-interrupt register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct IrqReg {
    /// The array the access hits.
    pub(crate) array: IrqArray,
    /// The interrupt ID of its lowest bit or byte.
    pub(crate) first: usize,
}

impl IrqReg {
    /// The per-interrupt register at `offset` (relative to a distributor or
    /// to an SGI_base frame), if `offset` is in 0x080-0xCFF.
    #[inline]
    pub(crate) fn decode(offset: u64) -> Option<IrqReg> {
        use BitReg::*;
        let (array, base, bits_per_irq) = match offset {
            GICD_IGROUPR..GICD_ISENABLER => (IrqArray::Bits(Group, Op::Store), GICD_IGROUPR, 1),
            GICD_ISENABLER..GICD_ICENABLER => (IrqArray::Bits(Enable, Op::Set), GICD_ISENABLER, 1),
            GICD_ICENABLER..GICD_ISPENDR => (IrqArray::Bits(Enable, Op::Clear), GICD_ICENABLER, 1),
            GICD_ISPENDR..GICD_ICPENDR => (IrqArray::Bits(Pending, Op::Set), GICD_ISPENDR, 1),
            GICD_ICPENDR..GICD_ISACTIVER => (IrqArray::Bits(Pending, Op::Clear), GICD_ICPENDR, 1),
            GICD_ISACTIVER..GICD_ICACTIVER => (IrqArray::Bits(Active, Op::Set), GICD_ISACTIVER, 1),
            GICD_ICACTIVER..GICD_ICACTIVER_END => {
                (IrqArray::Bits(Active, Op::Clear), GICD_ICACTIVER, 1)
            }
            GICD_IPRIORITYR..GICD_IPRIORITYR_END => (IrqArray::Priority, GICD_IPRIORITYR, 8),
            GICD_ITARGETSR..GICD_ITARGETSR_END => (IrqArray::Targets, GICD_ITARGETSR, 8),
            GICD_ICFGR..GICD_ICFGR_END => (IrqArray::Config, GICD_ICFGR, 2),
            _ => return None,
        };
        // Below 0xD00: the ID fits any usize.
        let first = ((offset - base) * 8 / bits_per_irq) as usize;
        Some(IrqReg { array, first })
    }

    /// The access widths the register accepts (IHI 0048B 4.1.4, IHI 0069H
    /// 12.1.3): bytes too for IPRIORITYR and ITARGETSR.
    #[inline]
    pub(crate) fn widths(self) -> Widths {
        match self.array {
            IrqArray::Priority | IrqArray::Targets => Widths::WordOrByte,
            _ => Widths::Word,
        }
    }
}

// The GICv3 frames use the GICv2 layout (checked here, once).
const _: () = {
    use crate::v3::regs as v3;
    assert!(v3::GICD_IGROUPR == GICD_IGROUPR && v3::GICR_IGROUPR0 == GICD_IGROUPR);
    assert!(v3::GICD_ISENABLER == GICD_ISENABLER && v3::GICR_ISENABLER0 == GICD_ISENABLER);
    assert!(v3::GICD_ICENABLER == GICD_ICENABLER && v3::GICR_ICENABLER0 == GICD_ICENABLER);
    assert!(v3::GICD_ISPENDR == GICD_ISPENDR && v3::GICR_ISPENDR0 == GICD_ISPENDR);
    assert!(v3::GICD_ICPENDR == GICD_ICPENDR && v3::GICR_ICPENDR0 == GICD_ICPENDR);
    assert!(v3::GICD_ISACTIVER == GICD_ISACTIVER && v3::GICR_ISACTIVER0 == GICD_ISACTIVER);
    assert!(v3::GICD_ICACTIVER == GICD_ICACTIVER && v3::GICR_ICACTIVER0 == GICD_ICACTIVER);
    assert!(v3::GICD_ICACTIVER_END == GICD_ICACTIVER_END);
    assert!(v3::GICD_IPRIORITYR == GICD_IPRIORITYR && v3::GICR_IPRIORITYR == GICD_IPRIORITYR);
    assert!(v3::GICD_IPRIORITYR_END == GICD_IPRIORITYR_END);
    assert!(v3::GICD_ITARGETSR == GICD_ITARGETSR);
    assert!(v3::GICD_ICFGR == GICD_ICFGR && v3::GICR_ICFGR0 == GICD_ICFGR);
    assert!(v3::GICR_ICFGR1 == GICD_ICFGR + 4 && v3::GICD_ICFGR_END == GICD_ICFGR_END);
};

/// How SGIs are pending: the rule that differs between the versions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Sgis {
    /// GICv2: a pending state per source vCPU, changed only through
    /// GICD_S/CPENDSGIRn (GICD_IS/ICPENDR0 ignore the SGI bits, IHI 0048B
    /// 4.3.7, 4.3.8). An SGI in an LR holds its source there, so it is
    /// never taken back to pending.
    PerSource,
    /// GICv3: one pending bit per target (IHI 0069H 3.1.2, kept in source
    /// slot [`V3_SGI_SOURCE`]), set and cleared through GICR_IS/ICPENDR0; an
    /// SGI taken out of its LR is pending again, like any interrupt.
    SingleBit,
}

/// The source slot GICv3 SGIs are kept pending in. The shared state keeps
/// a set of sources per SGI (GICv2); GICv3 SGIs carry no source, so they all
/// use this one and a second send while pending merges with the first.
pub(crate) const V3_SGI_SOURCE: usize = 0;

/// Bits of the SGIs in word 0 of a bit register.
const SGI_BITS: u32 = (1 << NUM_SGIS) - 1;

/// What a frame's per-interrupt registers reach.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct View {
    /// The first interrupt ID it reaches (the registers of the others are
    /// RAZ/WI in it).
    pub(crate) first_id: usize,
    /// End of the IDs it reaches (exclusive). Both bounds are multiples of
    /// 32, so an access never straddles one.
    pub(crate) end_id: usize,
    /// The SGI rule.
    pub(crate) sgis: Sgis,
}

/// A frame with per-interrupt registers. A frame is a type and its view a
/// constant, so the checks fold away and nothing is dispatched at run time.
pub(crate) trait IrqFrame {
    /// What it reaches.
    const VIEW: View;
}

/// Does frame `F` reach the interrupts of an access whose lowest is `first`?
#[inline]
fn reaches<F: IrqFrame>(first: usize) -> bool {
    F::VIEW.first_id <= first && first < F::VIEW.end_id
}

impl GicV2 {
    /// Guest read of `width` bytes of per-interrupt register `reg` through
    /// frame `F`, as `vcpu` (the accessor, or a redistributor's vCPU) sees
    /// it. Interrupts held in an LR read as active (the LR owns their
    /// pending and active state).
    #[inline]
    pub(crate) fn irq_read<F: IrqFrame>(&self, vcpu: usize, reg: IrqReg, width: u8) -> u32 {
        if !reaches::<F>(reg.first) {
            return 0;
        }
        match reg.array {
            IrqArray::Bits(bits, _) => {
                let n = reg.first / 32;
                let word = self.bit_word(vcpu, bits, n);
                if bits == BitReg::Active {
                    word | self.lr_word(vcpu, n)
                } else {
                    word
                }
            }
            IrqArray::Priority => gather(reg.first, width, |irq| self.priority(vcpu, irq)),
            IrqArray::Targets => gather(reg.first, width, |irq| self.read_target(vcpu, irq)),
            IrqArray::Config => match reg.first / 16 {
                0 => ICFGR_SGI_VALUE,
                n if n < CFG_WORDS => self.cfg_word(vcpu, n),
                _ => 0,
            },
        }
    }

    /// Guest write of `width` bytes of per-interrupt register `reg` through
    /// frame `F`, as `vcpu` sees it. Returns the vCPUs woken.
    #[inline]
    pub(crate) fn irq_write<F: IrqFrame>(
        &mut self,
        vcpu: usize,
        reg: IrqReg,
        width: u8,
        value: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        if !reaches::<F>(reg.first) {
            return VcpuMask::EMPTY;
        }
        let first = reg.first;
        match reg.array {
            IrqArray::Bits(bits, op) => {
                self.write_bits::<F>(vcpu, bits, op, first / 32, value, lrs)
            }
            IrqArray::Priority | IrqArray::Targets => {
                let mut woken = VcpuMask::EMPTY;
                for (irq, byte) in scatter(first, width, value) {
                    woken |= if reg.array == IrqArray::Priority {
                        self.write_priority::<F>(vcpu, irq, byte, lrs)
                    } else {
                        self.write_target(vcpu, irq, byte, lrs)
                    };
                }
                woken
            }
            IrqArray::Config => {
                match first / 16 {
                    0 if value != ICFGR_SGI_VALUE => {
                        log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only ICFGR0");
                    }
                    0 => {}
                    n if n < CFG_WORDS => self.set_cfg_word(vcpu, n, value & ICFGR_WRITABLE),
                    _ => {}
                }
                VcpuMask::EMPTY
            }
        }
    }

    /// Writes word `n` of a bit register array as `vcpu`.
    fn write_bits<F: IrqFrame>(
        &mut self,
        vcpu: usize,
        bits: BitReg,
        op: Op,
        n: usize,
        value: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        let mut value = value;
        if bits == BitReg::Pending && n == 0 {
            if matches!(F::VIEW.sgis, Sgis::SingleBit) {
                woken |= self.write_sgi_pending(vcpu, op, value & SGI_BITS, lrs);
            }
            value &= !SGI_BITS;
        }
        let Some(word) = self.bit_word_mut(vcpu, bits, n) else { return woken };
        let old = *word;
        let changed = match op {
            Op::Store => {
                let changed = *word ^ value;
                *word = value;
                changed
            }
            Op::Set => {
                *word |= value;
                value
            }
            Op::Clear => {
                *word &= !value;
                value
            }
        };
        match (bits, op) {
            // Newly enabled or newly pending: may be deliverable.
            (BitReg::Enable, Op::Set) | (BitReg::Pending, Op::Set) => {
                for irq in set_bits(n, changed) {
                    woken |= self.deliver(vcpu, irq, lrs);
                }
            }
            // Regrouped: an LR holding it is rewritten with its new group
            // (the CPU interface signals each group as GICV_CTLR says, so a
            // stale one would be taken by the wrong IAR or not at all);
            // otherwise it may be deliverable now.
            (BitReg::Group, _) => {
                for irq in set_bits(n, changed) {
                    woken |= self.reprioritize::<F>(vcpu, irq, lrs);
                }
            }
            // The pending state goes, also from an LR the guest has not
            // acknowledged; its source is re-armed, as no EOI will come.
            (BitReg::Pending, Op::Clear) => {
                for irq in set_bits(n, changed) {
                    self.unqueue(vcpu, irq);
                    let withdrawn = self.withdraw(vcpu, irq, lrs);
                    if old & (1 << (irq % 32)) != 0 || withdrawn.is_some() {
                        self.release(vcpu, irq);
                    }
                    if let Some(v) = withdrawn {
                        woken |= self.refill(v, lrs);
                    }
                }
            }
            // No longer forwarded (or no longer active): out of the LR,
            // still pending (IHI 0048B 4.3.6, 4.3.10; IHI 0069H 12.9.6, 12.9.5).
            (BitReg::Enable, Op::Clear) | (BitReg::Active, Op::Clear) => {
                for irq in set_bits(n, changed) {
                    woken |= self.withdraw_to_pending::<F>(vcpu, irq, lrs);
                }
            }
            _ => {}
        }
        woken
    }

    /// GICR_IS/ICPENDR0 SGI bits (GICv3): one pending bit per SGI, no source.
    fn write_sgi_pending(
        &mut self,
        vcpu: usize,
        op: Op,
        bits: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        for sgi in set_bits(0, bits) {
            match op {
                Op::Set => woken |= self.raise_sgi(vcpu, sgi, lrs),
                Op::Clear => {
                    if let Some(sources) = self.sgi_sources_mut(vcpu, sgi) {
                        *sources = 0;
                    }
                    self.unqueue(vcpu, sgi);
                    if let Some(v) = self.withdraw(vcpu, sgi, lrs) {
                        woken |= self.refill(v, lrs);
                    }
                }
                Op::Store => {}
            }
        }
        woken
    }

    /// Makes GICv3 SGI `sgi` pending on `vcpu` (its single pending bit) and
    /// delivers it.
    pub(crate) fn raise_sgi(
        &mut self,
        vcpu: usize,
        sgi: usize,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        self.make_pending(vcpu, sgi, V3_SGI_SOURCE);
        self.deliver(vcpu, sgi, lrs)
    }

    /// Writes the priority byte of `irq`; an LR holding it follows a change.
    fn write_priority<F: IrqFrame>(
        &mut self,
        vcpu: usize,
        irq: usize,
        prio: u8,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let old = self.priority(vcpu, irq);
        self.set_priority(vcpu, irq, prio);
        if self.priority(vcpu, irq) == old {
            return VcpuMask::EMPTY;
        }
        self.reprioritize::<F>(vcpu, irq, lrs)
    }

    /// One byte of GICD_ITARGETSR: IDs 0-31 name the reading vCPU.
    fn read_target(&self, vcpu: usize, irq: usize) -> u8 {
        if irq < SPI_BASE {
            1u8.checked_shl(vcpu as u32).unwrap_or(0)
        } else {
            self.spi_targets(irq)
        }
    }

    /// Writes the GICD_ITARGETSR byte of `irq`; those of IDs 0-31 are
    /// read-only.
    fn write_target(
        &mut self,
        vcpu: usize,
        irq: usize,
        targets: u8,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        if irq < SPI_BASE {
            if targets != self.read_target(vcpu, irq) {
                log::warn!(target: "irq", "vgic: vcpu {vcpu} write to read-only ITARGETSR {irq}");
            }
        } else if targets & self.valid_vcpus() != self.spi_targets(irq) {
            self.set_spi_targets(irq, targets);
            return self.retarget(irq, lrs);
        }
        VcpuMask::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NUM_IRQS;

    #[test]
    fn decode_maps_offsets_to_first_interrupt_ids() {
        let bits = |reg, first| Some(IrqReg { array: IrqArray::Bits(reg, Op::Set), first });
        assert_eq!(IrqReg::decode(GICD_ISENABLER + 4), bits(BitReg::Enable, 32));
        assert_eq!(IrqReg::decode(GICD_ISPENDR + 0x7C), bits(BitReg::Pending, 992));
        let prio = IrqReg::decode(GICD_IPRIORITYR + 41).unwrap();
        assert_eq!(
            (prio.array, prio.first, prio.widths()),
            (IrqArray::Priority, 41, Widths::WordOrByte)
        );
        let cfg = IrqReg::decode(GICD_ICFGR + 8).unwrap();
        assert_eq!((cfg.array, cfg.first, cfg.widths()), (IrqArray::Config, 32, Widths::Word));
        assert_eq!(IrqReg::decode(GICD_ITARGETSR_END - 1).map(|r| r.first), Some(1023));
        assert_eq!(IrqReg::decode(GICD_IGROUPR - 4), None);
        assert_eq!(IrqReg::decode(GICD_ICFGR_END), None);
    }

    #[test]
    fn a_frame_reaches_only_its_interrupts() {
        enum Spis {}
        impl IrqFrame for Spis {
            const VIEW: View = View { first_id: SPI_BASE, end_id: NUM_IRQS, sgis: Sgis::SingleBit };
        }
        assert!(!reaches::<Spis>(0) && !reaches::<Spis>(28) && reaches::<Spis>(32));
        assert!(reaches::<Spis>(NUM_IRQS - 1) && !reaches::<Spis>(NUM_IRQS));
    }
}
