//! Distributor state storage: banked (per-vCPU, IDs 0-31) and shared (SPI)
//! registers, and the per-interrupt accessors the decoder and the delivery
//! logic share. Every accessor tolerates out-of-range vCPUs and IDs.

use crate::regs::{CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1, NUM_SGIS, SPI_BASE};
use crate::{GicV2, NUM_IRQS};

/// Number of 32-bit words in a one-bit-per-interrupt register array.
pub(crate) const IRQ_WORDS: usize = NUM_IRQS / 32;
/// Number of GICD_ICFGRn registers (two bits per interrupt).
pub(crate) const CFG_WORDS: usize = NUM_IRQS / 16;
/// Priority bits implemented (32 levels): the low three bits read as zero.
pub(crate) const PRIORITY_MASK: u8 = 0xF8;
/// The lowest priority. The virtual CPU interface never signals it (it
/// needs a priority higher than GICV_PMR, IHI 0048B 3.3.2, and the lowest
/// PMR is 0xF8 too), so such an interrupt stays pending in the distributor.
pub(crate) const LOWEST_PRIORITY: u8 = PRIORITY_MASK;

/// The one-bit-per-interrupt register arrays.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum BitReg {
    /// GICD_IGROUPRn.
    Group,
    /// GICD_IS/ICENABLERn.
    Enable,
    /// GICD_IS/ICPENDRn (for SGIs: derived from the per-source state).
    Pending,
    /// GICD_IS/ICACTIVERn (distributor copy; LR state is added on read).
    Active,
}

/// State of interrupts 0-31 as seen by one vCPU.
#[derive(Clone, Copy)]
pub(crate) struct Banked {
    group: u32,
    enable: u32,
    /// Pending bits of the PPIs (SGI bits unused: see `sgi_sources`).
    pending: u32,
    active: u32,
    priority: [u8; 32],
    /// GICD_ICFGR1 (PPI configuration).
    ppi_cfg: u32,
    /// For each SGI, the source vCPUs it is pending from.
    sgi_sources: [u8; NUM_SGIS],
}

impl Banked {
    /// Power-on state.
    pub(crate) const RESET: Banked = Banked {
        group: 0,
        enable: 0,
        pending: 0,
        active: 0,
        priority: [0; 32],
        ppi_cfg: 0,
        sgi_sources: [0; NUM_SGIS],
    };

    /// One bit per SGI that is pending from any source.
    fn sgi_pending(&self) -> u32 {
        self.sgi_sources
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != 0)
            .fold(0, |acc, (i, _)| acc | (1 << i))
    }

    fn bits_mut(&mut self, reg: BitReg) -> &mut u32 {
        match reg {
            BitReg::Group => &mut self.group,
            BitReg::Enable => &mut self.enable,
            BitReg::Pending => &mut self.pending,
            BitReg::Active => &mut self.active,
        }
    }
}

/// Shared state of the SPIs (entries below `SPI_BASE` are unused).
#[derive(Clone)]
pub(crate) struct Spis {
    group: [u32; IRQ_WORDS],
    enable: [u32; IRQ_WORDS],
    pending: [u32; IRQ_WORDS],
    active: [u32; IRQ_WORDS],
    priority: [u8; NUM_IRQS],
    targets: [u8; NUM_IRQS],
    cfg: [u32; CFG_WORDS],
}

impl Spis {
    /// Power-on state.
    pub(crate) const RESET: Spis = Spis {
        group: [0; IRQ_WORDS],
        enable: [0; IRQ_WORDS],
        pending: [0; IRQ_WORDS],
        active: [0; IRQ_WORDS],
        priority: [0; NUM_IRQS],
        targets: [0; NUM_IRQS],
        cfg: [0; CFG_WORDS],
    };

    fn bits(&self, reg: BitReg) -> &[u32; IRQ_WORDS] {
        match reg {
            BitReg::Group => &self.group,
            BitReg::Enable => &self.enable,
            BitReg::Pending => &self.pending,
            BitReg::Active => &self.active,
        }
    }

    fn bits_mut(&mut self, reg: BitReg) -> &mut [u32; IRQ_WORDS] {
        match reg {
            BitReg::Group => &mut self.group,
            BitReg::Enable => &mut self.enable,
            BitReg::Pending => &mut self.pending,
            BitReg::Active => &mut self.active,
        }
    }
}

impl GicV2 {
    /// Bit mask of the vCPUs that exist.
    pub(crate) fn valid_vcpus(&self) -> u8 {
        ((1u16 << self.num_vcpus) - 1) as u8
    }

    /// Word `n` of a bit register array as `vcpu` sees it (0 if out of range).
    /// Pending word 0 includes the SGIs pending from any source.
    pub(crate) fn bit_word(&self, vcpu: usize, reg: BitReg, n: usize) -> u32 {
        if n == 0 {
            let Some(b) = self.banked.get(vcpu) else { return 0 };
            match reg {
                BitReg::Group => b.group,
                BitReg::Enable => b.enable,
                BitReg::Pending => b.pending | b.sgi_pending(),
                BitReg::Active => b.active,
            }
        } else {
            self.spis.bits(reg).get(n).copied().unwrap_or(0)
        }
    }

    /// Mutable word `n` of a bit register array as `vcpu` sees it. For
    /// Pending word 0 only the PPI bits are meaningful (SGIs use sources).
    pub(crate) fn bit_word_mut(&mut self, vcpu: usize, reg: BitReg, n: usize) -> Option<&mut u32> {
        if n == 0 {
            self.banked.get_mut(vcpu).map(|b| b.bits_mut(reg))
        } else {
            self.spis.bits_mut(reg).get_mut(n)
        }
    }

    /// One bit of a bit register array.
    pub(crate) fn bit(&self, vcpu: usize, reg: BitReg, irq: usize) -> bool {
        irq < NUM_IRQS && (self.bit_word(vcpu, reg, irq / 32) >> (irq % 32)) & 1 != 0
    }

    /// Sets or clears one bit (not for SGI pending state).
    pub(crate) fn set_bit(&mut self, vcpu: usize, reg: BitReg, irq: usize, on: bool) {
        if irq >= NUM_IRQS {
            return;
        }
        if let Some(w) = self.bit_word_mut(vcpu, reg, irq / 32) {
            if on {
                *w |= 1 << (irq % 32);
            } else {
                *w &= !(1 << (irq % 32));
            }
        }
    }

    /// The source vCPUs an SGI of `vcpu` is pending from.
    pub(crate) fn sgi_sources(&self, vcpu: usize, sgi: usize) -> u8 {
        self.banked.get(vcpu).and_then(|b| b.sgi_sources.get(sgi)).copied().unwrap_or(0)
    }

    /// Mutable source set of an SGI of `vcpu`.
    pub(crate) fn sgi_sources_mut(&mut self, vcpu: usize, sgi: usize) -> Option<&mut u8> {
        self.banked.get_mut(vcpu).and_then(|b| b.sgi_sources.get_mut(sgi))
    }

    /// Is `irq` pending (in the distributor or queued) for `vcpu`?
    pub(crate) fn pending(&self, vcpu: usize, irq: usize) -> bool {
        self.bit(vcpu, BitReg::Pending, irq)
    }

    /// Makes `irq` pending for `vcpu`; an SGI is pending from source `src`.
    pub(crate) fn make_pending(&mut self, vcpu: usize, irq: usize, src: usize) {
        if irq < NUM_SGIS {
            if let Some(s) = self.sgi_sources_mut(vcpu, irq) {
                *s |= 1u8.checked_shl(src as u32).unwrap_or(0);
            }
        } else {
            self.set_bit(vcpu, BitReg::Pending, irq, true);
        }
    }

    /// Takes one pending instance of `irq` off the distributor (it moved to
    /// an LR): an SGI loses its lowest source, anything else its pending bit.
    /// Returns the source vCPU of the SGI instance taken (0 otherwise), so
    /// that it can be made pending again if the LR gives it back.
    pub(crate) fn consume_pending(&mut self, vcpu: usize, irq: usize) -> u8 {
        if irq < NUM_SGIS {
            if let Some(s) = self.sgi_sources_mut(vcpu, irq) {
                // 8 (no source) cannot happen: only pending SGIs are placed.
                let source = s.trailing_zeros() as u8;
                *s &= s.wrapping_sub(1);
                return source;
            }
        } else {
            self.set_bit(vcpu, BitReg::Pending, irq, false);
        }
        0
    }

    /// Priority byte of `irq` as `vcpu` sees it.
    pub(crate) fn priority(&self, vcpu: usize, irq: usize) -> u8 {
        if irq < SPI_BASE {
            self.banked.get(vcpu).and_then(|b| b.priority.get(irq)).copied().unwrap_or(0)
        } else {
            self.spis.priority.get(irq).copied().unwrap_or(0)
        }
    }

    /// Writes the priority byte of `irq` (unimplemented low bits dropped).
    pub(crate) fn set_priority(&mut self, vcpu: usize, irq: usize, value: u8) {
        let slot = if irq < SPI_BASE {
            self.banked.get_mut(vcpu).and_then(|b| b.priority.get_mut(irq))
        } else {
            self.spis.priority.get_mut(irq)
        };
        if let Some(p) = slot {
            *p = value & PRIORITY_MASK;
        }
    }

    /// Target byte of an SPI (0 for anything else or out of range).
    pub(crate) fn spi_targets(&self, irq: usize) -> u8 {
        if irq < SPI_BASE {
            return 0;
        }
        self.spis.targets.get(irq).copied().unwrap_or(0)
    }

    /// Sets the target byte of an SPI (bits of absent vCPUs dropped).
    pub(crate) fn set_spi_targets(&mut self, irq: usize, value: u8) {
        let valid = self.valid_vcpus();
        if irq >= SPI_BASE {
            if let Some(t) = self.spis.targets.get_mut(irq) {
                *t = value & valid;
            }
        }
    }

    /// GICD_ICFGRn `n` as `vcpu` sees it (n = 0 is answered by the decoder).
    pub(crate) fn cfg_word(&self, vcpu: usize, n: usize) -> u32 {
        if n == 1 {
            self.banked.get(vcpu).map_or(0, |b| b.ppi_cfg)
        } else {
            self.spis.cfg.get(n).copied().unwrap_or(0)
        }
    }

    /// Writes GICD_ICFGRn `n` (n >= 1) for `vcpu`.
    pub(crate) fn set_cfg_word(&mut self, vcpu: usize, n: usize, value: u32) {
        let slot = if n == 1 {
            self.banked.get_mut(vcpu).map(|b| &mut b.ppi_cfg)
        } else if n >= 2 {
            self.spis.cfg.get_mut(n)
        } else {
            None
        };
        if let Some(w) = slot {
            *w = value;
        }
    }

    /// The vCPU `irq` is delivered to: `vcpu` itself for IDs 0-31, the
    /// lowest targeted existing vCPU for an SPI. None if there is none.
    pub(crate) fn route(&self, vcpu: usize, irq: usize) -> Option<usize> {
        if irq < SPI_BASE {
            (vcpu < self.num_vcpus).then_some(vcpu)
        } else if irq < NUM_IRQS {
            let t = self.spi_targets(irq) & self.valid_vcpus();
            (t != 0).then(|| t.trailing_zeros() as usize)
        } else {
            None
        }
    }

    /// Is the group of `irq` enabled in GICD_CTLR and `irq` enabled?
    pub(crate) fn forwarded(&self, vcpu: usize, irq: usize) -> bool {
        let grp_enable =
            if self.bit(vcpu, BitReg::Group, irq) { CTLR_ENABLE_GRP1 } else { CTLR_ENABLE_GRP0 };
        self.ctlr & grp_enable != 0 && self.bit(vcpu, BitReg::Enable, irq)
    }

    /// May `irq` be put in an LR of `vcpu` (forwarded, pending, and at a
    /// priority the CPU interface can signal)?
    pub(crate) fn deliverable(&self, vcpu: usize, irq: usize) -> bool {
        vcpu < self.num_vcpus
            && self.forwarded(vcpu, irq)
            && self.pending(vcpu, irq)
            && self.priority(vcpu, irq) != LOWEST_PRIORITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi_pending_tracks_each_source() {
        let mut g = GicV2::new(4, 4);
        g.make_pending(1, 3, 0);
        g.make_pending(1, 3, 2);
        assert_eq!(g.sgi_sources(1, 3), 0b101);
        assert!(g.pending(1, 3) && !g.pending(0, 3));
        g.consume_pending(1, 3);
        assert_eq!(g.sgi_sources(1, 3), 0b100);
        g.consume_pending(1, 3);
        assert!(!g.pending(1, 3));
    }

    #[test]
    fn route_picks_lowest_existing_target() {
        let mut g = GicV2::new(2, 4);
        g.set_spi_targets(40, 0xFF);
        assert_eq!(g.spi_targets(40), 0b11);
        assert_eq!(g.route(1, 40), Some(0));
        g.set_spi_targets(40, 0b10);
        assert_eq!(g.route(0, 40), Some(1));
        g.set_spi_targets(40, 0b100);
        assert_eq!(g.route(0, 40), None);
        assert_eq!(g.route(1, 20), Some(1));
        assert_eq!(g.route(2, 20), None);
        assert_eq!(g.route(0, NUM_IRQS), None);
    }

    #[test]
    fn priority_drops_unimplemented_bits() {
        let mut g = GicV2::new(1, 4);
        g.set_priority(0, 40, 0xFF);
        assert_eq!(g.priority(0, 40), 0xF8);
        g.set_priority(0, NUM_IRQS + 5, 0xFF);
        assert_eq!(g.priority(0, NUM_IRQS + 5), 0);
    }

    #[test]
    fn forwarded_follows_group_enable_bits() {
        let mut g = GicV2::new(1, 4);
        g.set_bit(0, BitReg::Enable, 40, true);
        g.ctlr = CTLR_ENABLE_GRP0;
        assert!(g.forwarded(0, 40));
        g.set_bit(0, BitReg::Group, 40, true);
        assert!(!g.forwarded(0, 40));
        g.ctlr = CTLR_ENABLE_GRP1;
        assert!(g.forwarded(0, 40));
    }
}
