//! ICC_SGI1R_EL1 / ICC_SGI0R_EL1 decoding (IHI 0069H 12.2.21, 12.2.23).
//!
//! A GICv3 guest sends SGIs with a system-register write that traps to the
//! VMM; the VMM decodes the MSR and hands the 64-bit value here. Targets are
//! named by affinity: `Aff3.Aff2.Aff1` plus a 16-bit list of Aff0 values
//! `RS * 16 + bit`, or every PE but the sender (IRM). Unlike GICv2, the SGI
//! carries no source CPU: its pending state is one bit per target.

/// ICC_SGI1R_EL1 TargetList field mask (bits \[15:0\]).
pub const SGI1R_TARGET_LIST_MASK: u64 = 0xFFFF;
/// ICC_SGI1R_EL1 Aff1 field shift (bits \[23:16\]).
pub const SGI1R_AFF1_SHIFT: u32 = 16;
/// ICC_SGI1R_EL1 INTID field shift (bits \[27:24\]).
pub const SGI1R_INTID_SHIFT: u32 = 24;
/// ICC_SGI1R_EL1 Aff2 field shift (bits \[39:32\]).
pub const SGI1R_AFF2_SHIFT: u32 = 32;
/// ICC_SGI1R_EL1 bit 40: IRM (1 = every PE but the sender).
pub const SGI1R_IRM: u64 = 1 << 40;
/// ICC_SGI1R_EL1 RS field shift (bits \[47:44\], range selector).
pub const SGI1R_RS_SHIFT: u32 = 44;
/// ICC_SGI1R_EL1 Aff3 field shift (bits \[55:48\]).
pub const SGI1R_AFF3_SHIFT: u32 = 48;

/// An affinity value `Aff3.Aff2.Aff1.Aff0`, laid out as in GICR_TYPER
/// \[63:32\]: Aff3 in bits \[31:24\] down to Aff0 in bits \[7:0\].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Affinity(pub u32);

impl Affinity {
    /// The affinity with the given fields.
    pub const fn new(aff3: u8, aff2: u8, aff1: u8, aff0: u8) -> Affinity {
        Affinity(u32::from_be_bytes([aff3, aff2, aff1, aff0]))
    }

    /// The affinity fields of an MPIDR_EL1 value (or of a GICD_IROUTERn,
    /// which has the same layout): Aff0-2 in bits \[23:0\], Aff3 in \[39:32\].
    pub const fn from_mpidr(mpidr: u64) -> Affinity {
        Affinity((mpidr & 0xFF_FFFF) as u32 | (((mpidr >> 32) & 0xFF) as u32) << 24)
    }

    /// The MPIDR_EL1 / GICD_IROUTERn layout of this affinity (bit 31 clear).
    pub const fn to_mpidr(self) -> u64 {
        (self.0 & 0xFF_FFFF) as u64 | ((self.0 >> 24) as u64) << 32
    }

    /// The Aff0 field.
    pub const fn aff0(self) -> u8 {
        self.0 as u8
    }

    /// The affinity of vCPU `index` when the VMM sets MPIDR Aff0 = index.
    pub const fn of_index(index: usize) -> Affinity {
        Affinity((index & 0xFF) as u32)
    }
}

/// Which PEs an SGI register write names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SgiTargets {
    /// IRM = 1: every PE but the sender.
    AllButSelf,
    /// IRM = 0: the PEs `Aff3.Aff2.Aff1.(first_aff0 + bit)` for each set
    /// bit of `list`, where `first_aff0 = RS * 16`.
    List {
        /// Aff3.Aff2.Aff1 of the targets, Aff0 = 0.
        cluster: Affinity,
        /// RS * 16: the Aff0 of bit 0 of `list`.
        first_aff0: u16,
        /// TargetList.
        list: u16,
    },
}

impl SgiTargets {
    /// Does this name the PE with affinity `aff` (sent by `sender`)?
    pub fn names(self, aff: Affinity, sender: Affinity) -> bool {
        match self {
            SgiTargets::AllButSelf => aff != sender,
            SgiTargets::List { cluster, first_aff0, list } => {
                let bit = u16::from(aff.aff0()).wrapping_sub(first_aff0);
                aff.0 & !0xFF == cluster.0 && bit < 16 && (list >> bit) & 1 != 0
            }
        }
    }
}

/// A decoded ICC_SGI1R_EL1 (or ICC_SGI0R_EL1, same layout) value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SgiRequest {
    /// The SGI, 0-15.
    pub intid: u8,
    /// The PEs it goes to.
    pub targets: SgiTargets,
}

impl SgiRequest {
    /// Decodes the 64-bit register value (RES0 bits are ignored).
    pub const fn decode(value: u64) -> SgiRequest {
        let intid = ((value >> SGI1R_INTID_SHIFT) & 0xF) as u8;
        let targets = if value & SGI1R_IRM != 0 {
            SgiTargets::AllButSelf
        } else {
            let aff1 = (value >> SGI1R_AFF1_SHIFT) as u8;
            let aff2 = (value >> SGI1R_AFF2_SHIFT) as u8;
            let aff3 = (value >> SGI1R_AFF3_SHIFT) as u8;
            SgiTargets::List {
                cluster: Affinity::new(aff3, aff2, aff1, 0),
                first_aff0: ((value >> SGI1R_RS_SHIFT) & 0xF) as u16 * 16,
                list: (value & SGI1R_TARGET_LIST_MASK) as u16,
            }
        };
        SgiRequest { intid, targets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgi1r(aff3: u64, aff2: u64, aff1: u64, rs: u64, intid: u64, list: u64) -> u64 {
        (aff3 << 48) | (rs << 44) | (aff2 << 32) | (intid << 24) | (aff1 << 16) | list
    }

    #[test]
    fn affinity_round_trips_through_mpidr() {
        let a = Affinity::new(1, 2, 3, 4);
        assert_eq!(a.0, 0x0102_0304);
        assert_eq!(a.to_mpidr(), 0x01_0002_0304);
        assert_eq!(Affinity::from_mpidr((1 << 31) | 0x01_0002_0304), a);
        assert_eq!(Affinity::of_index(5), Affinity::new(0, 0, 0, 5));
    }

    #[test]
    fn decode_reads_every_field() {
        let r = SgiRequest::decode(sgi1r(0xA3, 0xA2, 0xA1, 0x5, 0xB, 0x8001));
        assert_eq!(r.intid, 0xB);
        let cluster = Affinity::new(0xA3, 0xA2, 0xA1, 0);
        assert_eq!(r.targets, SgiTargets::List { cluster, first_aff0: 80, list: 0x8001 });
    }

    #[test]
    fn decode_irm_means_all_but_self() {
        let r = SgiRequest::decode(SGI1R_IRM | sgi1r(1, 1, 1, 1, 3, 0xFFFF));
        assert_eq!(r, SgiRequest { intid: 3, targets: SgiTargets::AllButSelf });
        let me = Affinity::of_index(1);
        assert!(r.targets.names(Affinity::of_index(0), me));
        assert!(!r.targets.names(me, me));
    }

    #[test]
    fn list_names_aff0_from_range_selector() {
        let t = SgiRequest::decode(sgi1r(0, 0, 2, 1, 0, 0b101)).targets;
        let me = Affinity::of_index(0);
        assert!(t.names(Affinity::new(0, 0, 2, 16), me));
        assert!(t.names(Affinity::new(0, 0, 2, 18), me));
        assert!(!t.names(Affinity::new(0, 0, 2, 17), me));
        assert!(!t.names(Affinity::new(0, 0, 2, 0), me), "RS = 1 starts at Aff0 16");
        assert!(!t.names(Affinity::new(0, 0, 1, 16), me), "other Aff1");
        assert!(!t.names(Affinity::new(1, 0, 2, 16), me), "other Aff3");
    }

    #[test]
    fn list_can_name_the_sender() {
        let t = SgiRequest::decode(sgi1r(0, 0, 0, 0, 0, 0b1)).targets;
        assert!(t.names(Affinity::of_index(0), Affinity::of_index(0)));
    }

    #[test]
    fn high_range_selector_never_overflows() {
        let t = SgiRequest::decode(sgi1r(0, 0, 0, 15, 0, 0xFFFF)).targets;
        assert!(t.names(Affinity::new(0, 0, 0, 255), Affinity(0)));
        assert!(t.names(Affinity::new(0, 0, 0, 240), Affinity(0)));
        assert!(!t.names(Affinity::new(0, 0, 0, 239), Affinity(0)));
    }
}
