//! Helpers shared by the GICv3 distributor and redistributor decoders:
//! access-width checks, byte gathering and the one-bit-per-interrupt
//! register writes (with the GICv3 rule that SGIs have a single pending
//! bit, settable through GICR_ISPENDR0).

use super::GicV3;
use crate::regs::NUM_SGIS;
use crate::state::{BitReg, LOWEST_PRIORITY};
use crate::{ListRegisters, VcpuMask};

/// The source slot GICv3 SGIs are kept pending in. The shared state keeps
/// a set of sources per SGI (GICv2); GICv3 SGIs carry no source, so they all
/// use this one and a second send while pending merges with the first.
pub(crate) const V3_SGI_SOURCE: usize = 0;

/// Bits of the SGIs in word 0 of a bit register.
const SGI_BITS: u32 = (1 << NUM_SGIS) - 1;

/// How a one-bit-per-interrupt register is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    /// The value is stored (IGROUPR).
    Store,
    /// Ones set bits (IS*R).
    Set,
    /// Ones clear bits (IC*R).
    Clear,
}

/// Which widths a register accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Widths {
    /// 32-bit only.
    Word,
    /// 32-bit or 8-bit (IPRIORITYR, ITARGETSR).
    WordOrByte,
    /// 64-bit, or 32-bit to either half (IROUTER, GICR_TYPER).
    DoubleOrWord,
}

impl Widths {
    /// Does the register accept an access of `width` bytes?
    pub(crate) fn allows(self, width: u8) -> bool {
        match self {
            Widths::Word => width == 4,
            Widths::WordOrByte => width == 4 || width == 1,
            Widths::DoubleOrWord => width == 8 || width == 4,
        }
    }
}

/// Is an access of `width` at `offset` naturally aligned and inside a
/// region of `size` bytes?
pub(crate) fn well_formed(offset: u64, width: u8, size: u64) -> bool {
    let in_region = offset.checked_add(u64::from(width)).is_some_and(|end| end <= size);
    matches!(width, 1 | 2 | 4 | 8) && in_region && offset % u64::from(width) == 0
}

/// Byte index of `offset` within a register range starting at `base`.
pub(crate) fn byte_index(offset: u64, base: u64) -> usize {
    usize::try_from(offset.saturating_sub(base)).unwrap_or(usize::MAX)
}

/// The interrupt IDs named by the set bits of word `n` of a bit register.
pub(crate) fn set_bits(n: usize, mut value: u32) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if value == 0 {
            return None;
        }
        let bit = value.trailing_zeros() as usize;
        value &= value - 1;
        Some(n.saturating_mul(32).saturating_add(bit))
    })
}

/// Little-endian concatenation of `f(first + i)` for the accessed bytes.
pub(crate) fn gather(first: usize, width: u8, f: impl Fn(usize) -> u8) -> u32 {
    (0..usize::from(width).min(4))
        .fold(0, |acc, i| acc | u32::from(f(first.saturating_add(i))) << (8 * i))
}

/// The bytes of `value` paired with consecutive indices from `first`.
pub(crate) fn scatter(first: usize, width: u8, value: u32) -> impl Iterator<Item = (usize, u8)> {
    (0..usize::from(width).min(4)).map(move |i| (first.saturating_add(i), (value >> (8 * i)) as u8))
}

impl GicV3 {
    /// Reads word `n` of a bit register array as `vcpu` sees it. Interrupts
    /// held in an LR read as active (the LR owns their state).
    pub(crate) fn read_bits(&self, vcpu: usize, bits: BitReg, n: usize) -> u32 {
        let word = self.core.bit_word(vcpu, bits, n);
        match bits {
            BitReg::Active => word | self.core.lr_word(vcpu, n),
            _ => word,
        }
    }

    /// Writes word `n` of a bit register array as `vcpu` (the redistributor's
    /// vCPU for n = 0). Returns the vCPUs woken.
    pub(crate) fn write_bits(
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
            woken |= self.write_sgi_pending(vcpu, op, value & SGI_BITS, lrs);
            value &= !SGI_BITS;
        }
        let Some(word) = self.core.bit_word_mut(vcpu, bits, n) else { return woken };
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
            // Newly enabled, newly pending or regrouped: may be deliverable.
            (BitReg::Enable, Op::Set) | (BitReg::Pending, Op::Set) | (BitReg::Group, _) => {
                for irq in set_bits(n, changed) {
                    woken |= self.core.deliver(vcpu, irq, lrs);
                }
            }
            // The pending state goes, also from an LR the guest has not
            // acknowledged; its source is re-armed, as no EOI will come.
            (BitReg::Pending, Op::Clear) => {
                for irq in set_bits(n, changed) {
                    self.core.unqueue(vcpu, irq);
                    let withdrawn = self.core.withdraw(vcpu, irq, lrs);
                    if old & (1 << (irq % 32)) != 0 || withdrawn.is_some() {
                        self.core.release(vcpu, irq);
                    }
                    if let Some(v) = withdrawn {
                        woken |= self.core.refill(v, lrs);
                    }
                }
            }
            // No longer forwarded (or no longer active): out of the LR,
            // still pending (IHI 0069H 12.9.6, 12.9.5).
            (BitReg::Enable, Op::Clear) | (BitReg::Active, Op::Clear) => {
                for irq in set_bits(n, changed) {
                    woken |= self.withdraw_to_pending(vcpu, irq, lrs);
                }
            }
            _ => {}
        }
        woken
    }

    /// Takes `irq` out of its LR but leaves it pending (no longer forwarded,
    /// or at a priority never signalled). Unlike GICv2, an SGI can go back
    /// too: its pending state is one bit, not a source the LR holds.
    fn withdraw_to_pending(
        &mut self,
        vcpu: usize,
        irq: usize,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        if irq >= NUM_SGIS {
            return self.core.withdraw_to_pending(vcpu, irq, lrs);
        }
        match self.core.withdraw(vcpu, irq, lrs) {
            Some(v) => {
                self.core.make_pending(vcpu, irq, V3_SGI_SOURCE);
                self.core.refill(v, lrs) | self.core.deliver(vcpu, irq, lrs)
            }
            None => VcpuMask::EMPTY,
        }
    }

    /// GICR_IS/ICPENDR0 SGI bits: one pending bit per SGI (no source).
    fn write_sgi_pending(
        &mut self,
        vcpu: usize,
        op: Op,
        sgis: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        for sgi in set_bits(0, sgis) {
            match op {
                Op::Set => woken |= self.raise_sgi(vcpu, sgi, lrs),
                Op::Clear => {
                    if let Some(sources) = self.core.sgi_sources_mut(vcpu, sgi) {
                        *sources = 0;
                    }
                    self.core.unqueue(vcpu, sgi);
                    if let Some(v) = self.core.withdraw(vcpu, sgi, lrs) {
                        woken |= self.core.refill(v, lrs);
                    }
                }
                Op::Store => {}
            }
        }
        woken
    }

    /// Makes SGI `sgi` pending on `vcpu` and delivers it.
    pub(crate) fn raise_sgi(
        &mut self,
        vcpu: usize,
        sgi: usize,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        self.core.make_pending(vcpu, sgi, V3_SGI_SOURCE);
        self.core.deliver(vcpu, sgi, lrs)
    }

    /// Writes priority bytes from `first` (interrupts below `lowest` are
    /// RAZ/WI here); an LR holding a changed interrupt follows.
    pub(crate) fn write_priorities(
        &mut self,
        vcpu: usize,
        first: usize,
        lowest: usize,
        width: u8,
        value: u32,
        lrs: &mut impl ListRegisters,
    ) -> VcpuMask {
        let mut woken = VcpuMask::EMPTY;
        for (irq, prio) in scatter(first, width, value).filter(|&(irq, _)| irq >= lowest) {
            let old = self.core.priority(vcpu, irq);
            self.core.set_priority(vcpu, irq, prio);
            let new = self.core.priority(vcpu, irq);
            if new == old {
                continue;
            }
            woken |= if irq < NUM_SGIS && new == LOWEST_PRIORITY {
                self.withdraw_to_pending(vcpu, irq, lrs)
            } else {
                self.core.reprioritize(vcpu, irq, lrs)
            };
        }
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_register_kind() {
        assert!(Widths::Word.allows(4) && !Widths::Word.allows(1) && !Widths::Word.allows(8));
        assert!(Widths::WordOrByte.allows(1) && !Widths::WordOrByte.allows(2));
        assert!(Widths::DoubleOrWord.allows(8) && !Widths::DoubleOrWord.allows(1));
    }

    #[test]
    fn well_formed_rejects_unaligned_and_overflowing() {
        assert!(well_formed(0x10, 8, 0x20));
        assert!(!well_formed(0x14, 8, 0x20));
        assert!(!well_formed(0x1C, 8, 0x20));
        assert!(!well_formed(u64::MAX - 3, 4, u64::MAX));
        assert!(!well_formed(0, 3, 0x20));
    }
}
