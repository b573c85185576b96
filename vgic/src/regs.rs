//! GICv2 distributor register map.
//!
//! Offsets are relative to the GICD base and come from the GIC Architecture
//! Specification v2 (ARM IHI 0048B), section 4.1.2 "Distributor register map"
//! and the register descriptions of section 4.3. Ranges are given as a start
//! offset and an exclusive end offset (`*_END`).

/// GICD_CTLR, Distributor Control Register (RW). IHI 0048B 4.3.1.
pub const GICD_CTLR: u64 = 0x000;
/// GICD_TYPER, Interrupt Controller Type Register (RO). IHI 0048B 4.3.2.
pub const GICD_TYPER: u64 = 0x004;
/// GICD_IIDR, Distributor Implementer Identification Register (RO). IHI 0048B 4.3.3.
pub const GICD_IIDR: u64 = 0x008;
/// GICD_IGROUPRn, Interrupt Group Registers (RW), 0x080-0x0FC. IHI 0048B 4.3.4.
pub const GICD_IGROUPR: u64 = 0x080;
/// GICD_ISENABLERn, Interrupt Set-Enable Registers (RW), 0x100-0x17C. IHI 0048B 4.3.5.
pub const GICD_ISENABLER: u64 = 0x100;
/// GICD_ICENABLERn, Interrupt Clear-Enable Registers (RW), 0x180-0x1FC. IHI 0048B 4.3.6.
pub const GICD_ICENABLER: u64 = 0x180;
/// GICD_ISPENDRn, Interrupt Set-Pending Registers (RW), 0x200-0x27C. IHI 0048B 4.3.7.
pub const GICD_ISPENDR: u64 = 0x200;
/// GICD_ICPENDRn, Interrupt Clear-Pending Registers (RW), 0x280-0x2FC. IHI 0048B 4.3.8.
pub const GICD_ICPENDR: u64 = 0x280;
/// GICD_ISACTIVERn, Interrupt Set-Active Registers (RW), 0x300-0x37C. IHI 0048B 4.3.9.
pub const GICD_ISACTIVER: u64 = 0x300;
/// GICD_ICACTIVERn, Interrupt Clear-Active Registers (RW), 0x380-0x3FC. IHI 0048B 4.3.10.
pub const GICD_ICACTIVER: u64 = 0x380;
/// End of the GICD_ICACTIVERn range (exclusive).
pub const GICD_ICACTIVER_END: u64 = 0x400;
/// GICD_IPRIORITYRn, Interrupt Priority Registers (RW, byte-accessible),
/// 0x400-0x7F8. IHI 0048B 4.3.11.
pub const GICD_IPRIORITYR: u64 = 0x400;
/// End of the GICD_IPRIORITYRn range (exclusive).
pub const GICD_IPRIORITYR_END: u64 = 0x800;
/// GICD_ITARGETSRn, Interrupt Processor Targets Registers (RO for 0-31, RW
/// for SPIs, byte-accessible), 0x800-0xBF8. IHI 0048B 4.3.12.
pub const GICD_ITARGETSR: u64 = 0x800;
/// End of the GICD_ITARGETSRn range (exclusive).
pub const GICD_ITARGETSR_END: u64 = 0xC00;
/// GICD_ICFGRn, Interrupt Configuration Registers (RW), 0xC00-0xCFC. IHI 0048B 4.3.13.
pub const GICD_ICFGR: u64 = 0xC00;
/// End of the GICD_ICFGRn range (exclusive).
pub const GICD_ICFGR_END: u64 = 0xD00;
/// GICD_SGIR, Software Generated Interrupt Register (WO). IHI 0048B 4.3.15.
pub const GICD_SGIR: u64 = 0xF00;
/// GICD_CPENDSGIRn, SGI Clear-Pending Registers (RW, byte-accessible),
/// 0xF10-0xF1C. IHI 0048B 4.3.16.
pub const GICD_CPENDSGIR: u64 = 0xF10;
/// GICD_SPENDSGIRn, SGI Set-Pending Registers (RW, byte-accessible),
/// 0xF20-0xF2C. IHI 0048B 4.3.17.
pub const GICD_SPENDSGIR: u64 = 0xF20;
/// End of the GICD_SPENDSGIRn range (exclusive).
pub const GICD_SPENDSGIR_END: u64 = 0xF30;
/// First identification register (GICD_PIDR4). IHI 0048B 4.3.18 and table 4-2.
pub const GICD_PIDR4: u64 = 0xFD0;
/// GICD_PIDR2, Peripheral ID2 Register (RO): ArchRev in bits \[7:4\]. IHI 0048B 4.3.18.
pub const GICD_PIDR2: u64 = 0xFE8;
/// GICD_CIDR0, first Component ID Register (RO). IHI 0048B 4.3.18.
pub const GICD_CIDR0: u64 = 0xFF0;
/// End of the identification registers and of the distributor page (exclusive).
pub const GICD_ID_END: u64 = 0x1000;

/// GICD_CTLR bit 0: EnableGrp0 (the "Enable" bit of a GIC without Security Extensions).
pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// GICD_CTLR bit 1: EnableGrp1.
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_CTLR bits that are writable.
pub const CTLR_MASK: u32 = CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1;

/// GICD_TYPER CPUNumber field shift (bits \[7:5\]).
pub const TYPER_CPU_NUMBER_SHIFT: u32 = 5;

/// Value reported in GICD_IIDR: ProductID 0x02, implementer 0x43B (ARM), revision 0.
pub const IIDR_VALUE: u32 = 0x0200_043B;

/// GICD_ICFGR0 value: every SGI is edge-triggered (0b10 per field), read-only.
pub const ICFGR_SGI_VALUE: u32 = 0xAAAA_AAAA;
/// Writable bits of a GICD_ICFGRn (bit 1 of each 2-bit field; bit 0 is reserved).
pub const ICFGR_WRITABLE: u32 = 0xAAAA_AAAA;

/// GICD_SGIR SGIINTID field mask (bits \[3:0\]).
pub const SGIR_INTID_MASK: u32 = 0xF;
/// GICD_SGIR CPUTargetList field shift (bits \[23:16\]).
pub const SGIR_TARGET_LIST_SHIFT: u32 = 16;
/// GICD_SGIR TargetListFilter field shift (bits \[25:24\]).
pub const SGIR_FILTER_SHIFT: u32 = 24;
/// TargetListFilter 0b00: forward to the CPUs in CPUTargetList.
pub const SGIR_FILTER_LIST: u32 = 0;
/// TargetListFilter 0b01: forward to every CPU but the requesting one.
pub const SGIR_FILTER_OTHERS: u32 = 1;
/// TargetListFilter 0b10: forward to the requesting CPU only.
pub const SGIR_FILTER_SELF: u32 = 2;

/// Values of the twelve identification registers from GICD_PIDR4 (0xFD0) to
/// GICD_CIDR3 (0xFFC), one per word: PIDR4-7, PIDR0-3, CIDR0-3. PIDR2 = 0x2B
/// reports ArchRev 2 (GICv2); CIDR0-3 are the standard PrimeCell preamble.
pub const ID_REGS: [u32; 12] =
    [0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

/// First SGI interrupt ID.
pub const SGI_BASE: usize = 0;
/// Number of SGIs (IDs 0-15).
pub const NUM_SGIS: usize = 16;
/// First PPI interrupt ID (PPIs are IDs 16-31).
pub const PPI_BASE: usize = 16;
/// First SPI interrupt ID; IDs below it are banked per vCPU.
pub const SPI_BASE: usize = 32;
