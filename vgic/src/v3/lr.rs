//! List-register encodings: GICv2 GICH_LRn and GICv3 ICH_LR\<n\>_EL2.
//!
//! The delivery path hands [`ListRegisters::inject`](crate::ListRegisters)
//! the fields of an entry (virtual ID, 5-bit priority, group); on seL4 the
//! kernel builds the register. [`LrEntry`] is the same entry as data, with
//! the two hardware layouts, for a backend that writes the registers itself
//! and for checking what a backend wrote. The layouts differ for SGIs: a
//! GICv2 entry carries the source CPU in bits \[12:10\], a GICv3 entry has no
//! source (IHI 0069H 11.2.1 "SGIs have no CPUID in the list registers").
//!
//! GICv2 GICH_LRn (IHI 0048B 5.3.6): VirtualID \[9:0\], PhysicalID \[19:10\]
//! (HW = 1) or EOI \[19\] and CPUID \[12:10\] (HW = 0), Priority \[27:23\],
//! State \[29:28\], Grp1 \[30\], HW \[31\].
//!
//! GICv3 ICH_LR\<n\>_EL2 (IHI 0069H 12.4.6): vINTID \[31:0\], pINTID \[44:32\]
//! (HW = 1) or EOI \[41\] (HW = 0), Priority \[55:48\], Group \[60\], HW \[61\],
//! State \[63:62\].

/// The state field of a list register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LrState {
    /// 0b00: the entry is free.
    Invalid,
    /// 0b01.
    Pending,
    /// 0b10.
    Active,
    /// 0b11.
    PendingActive,
}

impl LrState {
    const fn bits(self) -> u64 {
        match self {
            LrState::Invalid => 0,
            LrState::Pending => 1,
            LrState::Active => 2,
            LrState::PendingActive => 3,
        }
    }

    const fn from_bits(bits: u64) -> LrState {
        match bits & 3 {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }
}

/// What backs a list-register entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LrBacking {
    /// A purely virtual interrupt; `eoi` asks for a maintenance interrupt
    /// when the guest EOIs it. `source` is the GICv2 SGI source CPU (bits
    /// \[12:10\]); the GICv3 encoding has no such field and ignores it.
    Virtual {
        /// Maintenance interrupt on EOI.
        eoi: bool,
        /// GICv2 only: the source CPU of an SGI (0-7).
        source: u8,
    },
    /// Linked to physical interrupt `pintid`, deactivated with the guest's.
    Hardware {
        /// The physical interrupt ID.
        pintid: u16,
    },
}

/// One list-register entry, independent of the GIC version.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LrEntry {
    /// The virtual interrupt ID.
    pub vintid: u32,
    /// The 8-bit priority (GICv2 keeps its top 5 bits).
    pub priority: u8,
    /// Group 1 (else Group 0).
    pub group1: bool,
    /// Pending / active.
    pub state: LrState,
    /// Virtual or hardware-linked.
    pub backing: LrBacking,
}

const V3_PINTID_SHIFT: u32 = 32;
const V3_EOI: u64 = 1 << 41;
const V3_PRIORITY_SHIFT: u32 = 48;
const V3_GROUP: u64 = 1 << 60;
const V3_HW: u64 = 1 << 61;
const V3_STATE_SHIFT: u32 = 62;

const V2_ID_MASK: u32 = 0x3FF;
const V2_PHYS_SHIFT: u32 = 10;
const V2_EOI: u32 = 1 << 19;
const V2_PRIORITY_SHIFT: u32 = 23;
const V2_STATE_SHIFT: u32 = 28;
const V2_GROUP: u32 = 1 << 30;
const V2_HW: u32 = 1 << 31;

impl LrEntry {
    /// The entry the delivery path asks [`ListRegisters::inject`] for:
    /// `virq` pending, `priority` the 5-bit LR priority field, `group` 0 or
    /// 1, with an EOI maintenance interrupt.
    ///
    /// [`ListRegisters::inject`]: crate::ListRegisters::inject
    pub const fn injected(virq: u16, priority: u8, group: u8) -> LrEntry {
        LrEntry {
            vintid: virq as u32,
            priority: (priority & 0x1F) << 3,
            group1: group & 1 != 0,
            state: LrState::Pending,
            backing: LrBacking::Virtual { eoi: true, source: 0 },
        }
    }

    /// The 64-bit GICv3 ICH_LR\<n\>_EL2 value (no SGI source field).
    pub const fn to_gicv3(self) -> u64 {
        let backing = match self.backing {
            LrBacking::Virtual { eoi: true, .. } => V3_EOI,
            LrBacking::Virtual { eoi: false, .. } => 0,
            LrBacking::Hardware { pintid } => V3_HW | ((pintid as u64 & 0x1FFF) << V3_PINTID_SHIFT),
        };
        let group = if self.group1 { V3_GROUP } else { 0 };
        (self.state.bits() << V3_STATE_SHIFT)
            | group
            | ((self.priority as u64) << V3_PRIORITY_SHIFT)
            | backing
            | self.vintid as u64
    }

    /// Decodes an ICH_LR\<n\>_EL2 value.
    pub const fn from_gicv3(lr: u64) -> LrEntry {
        let backing = if lr & V3_HW != 0 {
            LrBacking::Hardware { pintid: ((lr >> V3_PINTID_SHIFT) & 0x1FFF) as u16 }
        } else {
            LrBacking::Virtual { eoi: lr & V3_EOI != 0, source: 0 }
        };
        LrEntry {
            vintid: lr as u32,
            priority: (lr >> V3_PRIORITY_SHIFT) as u8,
            group1: lr & V3_GROUP != 0,
            state: LrState::from_bits(lr >> V3_STATE_SHIFT),
            backing,
        }
    }

    /// The 32-bit GICv2 GICH_LRn value (IDs above 1023 are truncated).
    pub const fn to_gicv2(self) -> u32 {
        let backing = match self.backing {
            LrBacking::Virtual { eoi, source } => {
                let eoi = if eoi { V2_EOI } else { 0 };
                eoi | ((source as u32 & 7) << V2_PHYS_SHIFT)
            }
            LrBacking::Hardware { pintid } => {
                V2_HW | ((pintid as u32 & V2_ID_MASK) << V2_PHYS_SHIFT)
            }
        };
        let group = if self.group1 { V2_GROUP } else { 0 };
        ((self.state.bits() as u32) << V2_STATE_SHIFT)
            | group
            | (((self.priority >> 3) as u32) << V2_PRIORITY_SHIFT)
            | backing
            | (self.vintid & V2_ID_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_entry_in_gicv3_layout() {
        let lr = LrEntry::injected(27, 0xA0 >> 3, 1).to_gicv3();
        assert_eq!(lr & 0xFFFF_FFFF, 27, "vINTID");
        assert_eq!((lr >> 48) & 0xFF, 0xA0, "priority");
        assert_eq!(lr >> 60, 0b0101, "state pending, HW 0, group 1");
        assert_ne!(lr & (1 << 41), 0, "EOI maintenance");
        assert_eq!(lr & (0xF << 56), 0);
    }

    #[test]
    fn gicv3_sgi_entry_has_no_source_field() {
        let mut e = LrEntry::injected(3, 0, 1);
        e.backing = LrBacking::Virtual { eoi: true, source: 5 };
        assert_eq!(e.to_gicv3(), LrEntry::injected(3, 0, 1).to_gicv3());
        assert_eq!(e.to_gicv2() >> 10 & 7, 5, "GICv2 keeps the CPUID");
    }

    #[test]
    fn gicv3_hardware_entry_carries_pintid() {
        let e = LrEntry {
            vintid: 40,
            priority: 0x80,
            group1: false,
            state: LrState::Active,
            backing: LrBacking::Hardware { pintid: 1019 },
        };
        let lr = e.to_gicv3();
        assert_eq!(lr, (2 << 62) | (1 << 61) | (0x80 << 48) | (1019 << 32) | 40);
        assert_eq!(LrEntry::from_gicv3(lr), e);
    }

    #[test]
    fn gicv3_round_trips() {
        for state in [LrState::Invalid, LrState::Pending, LrState::Active, LrState::PendingActive] {
            let e = LrEntry { state, ..LrEntry::injected(1019, 31, 0) };
            assert_eq!(LrEntry::from_gicv3(e.to_gicv3()), e);
        }
    }

    #[test]
    fn injected_entry_in_gicv2_layout() {
        let lr = LrEntry::injected(45, 0x14, 1).to_gicv2();
        assert_eq!(lr, (1 << 30) | (1 << 28) | (0x14 << 23) | (1 << 19) | 45);
        let hw =
            LrEntry { backing: LrBacking::Hardware { pintid: 77 }, ..LrEntry::injected(45, 0, 0) };
        assert_eq!(hw.to_gicv2(), (1 << 31) | (1 << 28) | (77 << 10) | 45);
    }
}
