//! Guest accesses to an emulated register region, shared by the GICv2
//! distributor, the GICv3 distributor and the GICv3 redistributors: the
//! checks every access passes (vCPU, width, alignment, region, reserved
//! offsets), byte packing for the byte-accessible registers, and the 32-bit
//! halves of 64-bit registers.
//!
//! An access that fails a check reads as zero and is ignored on write, with
//! a warning (IHI 0048B 4.1.4 and IHI 0069H 12.1.3 name the widths; the
//! rest is this model's rule for a hostile guest).

use crate::GicV2;

/// Which widths a register accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Widths {
    /// 32-bit only.
    Word,
    /// 32-bit or 8-bit (IPRIORITYR, ITARGETSR, GICv2 C/SPENDSGIR).
    WordOrByte,
    /// 64-bit, or 32-bit to either half (IROUTER, GICR_TYPER).
    DoubleOrWord,
}

impl Widths {
    /// Does the register accept an access of `width` bytes?
    #[inline]
    pub(crate) fn allows(self, width: u8) -> bool {
        match self {
            Widths::Word => width == 4,
            Widths::WordOrByte => width == 4 || width == 1,
            Widths::DoubleOrWord => width == 8 || width == 4,
        }
    }
}

/// The register map of a region: how its offsets decode.
pub(crate) trait RegMap: Sized {
    /// The region's name in warnings ("GICD", "GICR").
    const REGION: &'static str;
    /// The register the (naturally aligned) access at `offset` hits; None
    /// for a reserved offset.
    fn decode(offset: u64) -> Option<Self>;
    /// The access widths that register accepts.
    fn widths(&self) -> Widths;
}

/// A guest access that passed [`GicV2::check`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Access<R> {
    /// The accessing vCPU (it exists).
    pub(crate) vcpu: usize,
    /// The offset in the region (naturally aligned, inside it).
    pub(crate) offset: u64,
    /// The width in bytes (one the register accepts).
    pub(crate) width: u8,
    /// The register it hits.
    pub(crate) reg: R,
}

/// Is an access of `width` at `offset` naturally aligned and inside a
/// region of `size` bytes?
pub(crate) fn well_formed(offset: u64, width: u8, size: u64) -> bool {
    let in_region = offset.checked_add(u64::from(width)).is_some_and(|end| end <= size);
    matches!(width, 1 | 2 | 4 | 8) && in_region && offset % u64::from(width) == 0
}

impl GicV2 {
    /// Validates an access by `vcpu` of `width` bytes at `offset` of a
    /// region of `size` bytes with register map `R`; returns it with the
    /// register it hits, or None (with a warning) if it is to be ignored.
    #[inline]
    pub(crate) fn check<R: RegMap>(
        &self,
        vcpu: usize,
        offset: u64,
        width: u8,
        size: u64,
        what: &str,
    ) -> Option<Access<R>> {
        let region = R::REGION;
        if vcpu >= self.num_vcpus {
            log::warn!(target: "irq", "vgic: {what} at {region} {offset:#x} by absent vcpu {vcpu}");
            return None;
        }
        if !well_formed(offset, width, size) {
            log::warn!(target: "irq", "vgic: vcpu {vcpu} bad {what} at {region} {offset:#x} width {width}");
            return None;
        }
        let Some(reg) = R::decode(offset) else {
            log::warn!(target: "irq", "vgic: vcpu {vcpu} {what} of reserved {region} {offset:#x}");
            return None;
        };
        if !reg.widths().allows(width) {
            log::warn!(target: "irq", "vgic: vcpu {vcpu} {width}-byte {what} at {region} {offset:#x}");
            return None;
        }
        Some(Access { vcpu, offset, width, reg })
    }
}

/// Byte index of `offset` within a register range starting at `base`.
#[inline]
pub(crate) fn byte_index(offset: u64, base: u64) -> usize {
    usize::try_from(offset.saturating_sub(base)).unwrap_or(usize::MAX)
}

/// Word `(offset - base) / 4` of a table of read-only registers (the
/// identification registers), 0 beyond it.
pub(crate) fn table_word(table: &[u32], offset: u64, base: u64) -> u32 {
    table.get(byte_index(offset, base) / 4).copied().unwrap_or(0)
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

/// What a read of `width` (8 or 4) bytes at `offset` of a 64-bit register
/// holding `reg` returns: all of it, or the 32-bit half `offset` names.
pub(crate) fn read_half(reg: u64, offset: u64, width: u8) -> u64 {
    match (width, offset & 4 != 0) {
        (8, _) => reg,
        (_, false) => reg & 0xFFFF_FFFF,
        (_, true) => reg >> 32,
    }
}

/// The 64-bit register holding `old` after a write of `value` with
/// `width` (8 or 4) bytes at `offset`: all of it, or one 32-bit half.
pub(crate) fn write_half(old: u64, offset: u64, width: u8, value: u64) -> u64 {
    match (width, offset & 4 != 0) {
        (8, _) => value,
        (_, false) => (old & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF),
        (_, true) => (old & 0xFFFF_FFFF) | (value << 32),
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
