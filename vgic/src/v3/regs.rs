//! GICv3 distributor and redistributor register maps.
//!
//! Offsets come from the GIC Architecture Specification v3/v4 (ARM IHI 0069H),
//! chapter 12: "The GIC Distributor register map" (table 12-25), "The GIC
//! Redistributor register map" (tables 12-27, 12-28) and the register
//! descriptions of sections 12.9 (GICD_*) and 12.11 (GICR_*). Distributor
//! offsets are relative to the GICD base, `GICR_*` offsets to the RD_base
//! frame, `GICR_SGI_*` offsets to the SGI_base frame (RD_base + 0x10000).
//! Ranges are a start offset and an exclusive end offset (`*_END`).

/// Size of the GICv3 distributor region (64 KiB). IHI 0069H 12.8.
pub const GICD_V3_SIZE: u64 = 0x1_0000;
/// Size of one redistributor: RD_base and SGI_base, 64 KiB each. IHI 0069H 12.10.
pub const GICR_STRIDE: u64 = 0x2_0000;
/// Offset of the SGI_base frame within a redistributor.
pub const GICR_SGI_BASE: u64 = 0x1_0000;

// ---- Distributor (IHI 0069H 12.9) ----

/// GICD_CTLR, Distributor Control Register (RW). IHI 0069H 12.9.4.
pub const GICD_CTLR: u64 = 0x0000;
/// GICD_TYPER, Interrupt Controller Type Register (RO). IHI 0069H 12.9.38.
pub const GICD_TYPER: u64 = 0x0004;
/// GICD_TYPER2 (RO, GICv3.1; RAZ here: no extended IDs, no vPE). IHI 0069H 12.9.39.
pub const GICD_TYPER2: u64 = 0x000C;
/// GICD_IIDR, Distributor Implementer Identification Register (RO). IHI 0069H 12.9.24.
pub const GICD_IIDR: u64 = 0x0008;
/// GICD_IGROUPRn, Interrupt Group Registers (RW), 0x0080-0x00FC. IHI 0069H 12.9.9.
pub const GICD_IGROUPR: u64 = 0x0080;
/// GICD_ISENABLERn, Set-Enable (RW), 0x0100-0x017C. IHI 0069H 12.9.28.
pub const GICD_ISENABLER: u64 = 0x0100;
/// GICD_ICENABLERn, Clear-Enable (RW), 0x0180-0x01FC. IHI 0069H 12.9.6.
pub const GICD_ICENABLER: u64 = 0x0180;
/// GICD_ISPENDRn, Set-Pending (RW), 0x0200-0x027C. IHI 0069H 12.9.30.
pub const GICD_ISPENDR: u64 = 0x0200;
/// GICD_ICPENDRn, Clear-Pending (RW), 0x0280-0x02FC. IHI 0069H 12.9.8.
pub const GICD_ICPENDR: u64 = 0x0280;
/// GICD_ISACTIVERn, Set-Active (RW), 0x0300-0x037C. IHI 0069H 12.9.26.
pub const GICD_ISACTIVER: u64 = 0x0300;
/// GICD_ICACTIVERn, Clear-Active (RW), 0x0380-0x03FC. IHI 0069H 12.9.5.
pub const GICD_ICACTIVER: u64 = 0x0380;
/// End of the GICD_ICACTIVERn range (exclusive).
pub const GICD_ICACTIVER_END: u64 = 0x0400;
/// GICD_IPRIORITYRn, Priority (RW, byte-accessible), 0x0400-0x07F8. IHI 0069H 12.9.18.
pub const GICD_IPRIORITYR: u64 = 0x0400;
/// End of the GICD_IPRIORITYRn range (exclusive).
pub const GICD_IPRIORITYR_END: u64 = 0x0800;
/// GICD_ITARGETSRn (0x0800-0x0BF8): RES0 when affinity routing is enabled,
/// as it always is here. IHI 0069H 12.9.36.
pub const GICD_ITARGETSR: u64 = 0x0800;
/// GICD_ICFGRn, Configuration (RW), 0x0C00-0x0CFC. IHI 0069H 12.9.7.
pub const GICD_ICFGR: u64 = 0x0C00;
/// End of the GICD_ICFGRn range (exclusive).
pub const GICD_ICFGR_END: u64 = 0x0D00;
/// GICD_IGRPMODRn, Group Modifier (0x0D00-0x0D7C): RAZ/WI with a single
/// Security state (GICD_CTLR.DS == 1). IHI 0069H 12.9.15.
pub const GICD_IGRPMODR: u64 = 0x0D00;
/// End of the GICD_IGRPMODRn range (exclusive).
pub const GICD_IGRPMODR_END: u64 = 0x0D80;
/// GICD_SGIR (0x0F00): RES0 when affinity routing is enabled. IHI 0069H 12.9.34.
pub const GICD_SGIR: u64 = 0x0F00;
/// GICD_IROUTERn, Interrupt Routing Registers (RW, 64-bit; 32-bit access to
/// each half), at 0x6000 + 8n for n = 32..1019. IHI 0069H 12.9.22.
pub const GICD_IROUTER: u64 = 0x6000;
/// First implemented GICD_IROUTERn (n = 32, the first SPI).
pub const GICD_IROUTER_SPI: u64 = 0x6100;
/// End of the GICD_IROUTERn range (exclusive, n = 1020).
pub const GICD_IROUTER_END: u64 = 0x7FE0;
/// First identification register (GICD_PIDR4). IHI 0069H 12.1.13, table 12-4.
pub const GICD_PIDR4: u64 = 0xFFD0;
/// GICD_PIDR2 (RO): ArchRev in bits \[7:4\] = 3 (GICv3). IHI 0069H 12.9.27.
pub const GICD_PIDR2: u64 = 0xFFE8;
/// End of the identification registers (exclusive).
pub const GICD_ID_END: u64 = 0x1_0000;

/// GICD_CTLR bit 0: EnableGrp0 (single Security state view, DS == 1).
pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// GICD_CTLR bit 1: EnableGrp1 (EnableGrp1NS; Linux writes it with bit 0
/// as "EnableGrp1A | EnableGrp1").
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_CTLR bit 4: ARE (Affinity Routing Enable), RAO/WI.
pub const CTLR_ARE: u32 = 1 << 4;
/// GICD_CTLR bit 6: DS (Disable Security), RAO/WI: one Security state.
pub const CTLR_DS: u32 = 1 << 6;
/// GICD_CTLR bit 31: RWP (Register Write Pending), always 0: writes take
/// effect at once.
pub const CTLR_RWP: u32 = 1 << 31;
/// Writable GICD_CTLR bits.
pub const CTLR_MASK: u32 = CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1;

/// GICD_TYPER IDbits field shift (bits \[23:19\]: interrupt ID bits - 1).
pub const TYPER_IDBITS_SHIFT: u32 = 19;
/// GICD_TYPER IDbits value: 10 bits of interrupt ID (IDs up to 1023).
pub const TYPER_IDBITS: u32 = 9;
/// GICD_TYPER bit 17: LPIS (LPIs supported); 0 here.
pub const TYPER_LPIS: u32 = 1 << 17;
/// GICD_TYPER bit 16: MBIS (message-based SPIs supported); 0 here.
pub const TYPER_MBIS: u32 = 1 << 16;
/// GICD_TYPER bit 24: A3V (Aff3 supported); 1 here.
pub const TYPER_A3V: u32 = 1 << 24;
/// GICD_TYPER bit 25: No1N (1-of-N SPI routing not supported); 0 here.
pub const TYPER_NO1N: u32 = 1 << 25;

/// GICD_IIDR and GICR_IIDR value: ProductID 0x03, implementer 0x43B (ARM).
pub const IIDR_V3_VALUE: u32 = 0x0300_043B;

/// GICD_IROUTERn bit 31: Interrupt_Routing_Mode (1 = any participating PE, 1-of-N).
pub const IROUTER_IRM: u64 = 1 << 31;
/// Implemented GICD_IROUTERn bits: Aff3 \[39:32\], IRM, Aff2, Aff1, Aff0.
pub const IROUTER_MASK: u64 = 0xFF_8000_0000 | 0xFF_FFFF;

/// Values of the twelve identification registers from PIDR4 (offset 0xFFD0)
/// to CIDR3 (0xFFFC), one per word: PIDR4-7, PIDR0-3, CIDR0-3. PIDR2 = 0x3B
/// reports ArchRev 3 (GICv3); CIDR0-3 are the standard PrimeCell preamble.
/// The same values are used by the distributor and every redistributor.
pub const ID_REGS_V3: [u32; 12] =
    [0x04, 0x00, 0x00, 0x00, 0x92, 0xB4, 0x3B, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

// ---- Redistributor, RD_base frame (IHI 0069H 12.11) ----

/// GICR_CTLR (RW): EnableLPIs RAZ/WI (no LPIs), RWP reads 0. IHI 0069H 12.11.2.
pub const GICR_CTLR: u64 = 0x0000;
/// GICR_IIDR (RO). IHI 0069H 12.11.16.
pub const GICR_IIDR: u64 = 0x0004;
/// GICR_TYPER (RO, 64-bit; 32-bit access to each half). IHI 0069H 12.11.35.
pub const GICR_TYPER: u64 = 0x0008;
/// GICR_STATUSR (RW): RAZ/WI here. IHI 0069H 12.11.34.
pub const GICR_STATUSR: u64 = 0x0010;
/// GICR_WAKER (RW): ProcessorSleep / ChildrenAsleep handshake. IHI 0069H 12.11.39.
pub const GICR_WAKER: u64 = 0x0014;
/// GICR_PIDR2 (RO): ArchRev 3. IHI 0069H 12.11.28.
pub const GICR_PIDR2: u64 = 0xFFE8;
/// First identification register of the RD_base frame (GICR_PIDR4).
pub const GICR_PIDR4: u64 = 0xFFD0;
/// End of the RD_base frame's identification registers (exclusive).
pub const GICR_ID_END: u64 = 0x1_0000;

/// GICR_TYPER bit 0: PLPIS (physical LPIs supported); 0 here.
pub const GICR_TYPER_PLPIS: u64 = 1 << 0;
/// GICR_TYPER bit 4: Last (the highest-addressed redistributor of the region).
pub const GICR_TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER Processor_Number field shift (bits \[23:8\]).
pub const GICR_TYPER_PROC_SHIFT: u32 = 8;
/// GICR_TYPER Affinity_Value field shift (bits \[63:32\]).
pub const GICR_TYPER_AFF_SHIFT: u32 = 32;

/// GICR_WAKER bit 1: ProcessorSleep (RW).
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// GICR_WAKER bit 2: ChildrenAsleep (RO, follows ProcessorSleep here).
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

// ---- Redistributor, SGI_base frame (IHI 0069H 12.11, table 12-28) ----

/// GICR_IGROUPR0 (RW). IHI 0069H 12.11.10.
pub const GICR_IGROUPR0: u64 = 0x0080;
/// GICR_ISENABLER0 (RW). IHI 0069H 12.11.25.
pub const GICR_ISENABLER0: u64 = 0x0100;
/// GICR_ICENABLER0 (RW). IHI 0069H 12.11.6.
pub const GICR_ICENABLER0: u64 = 0x0180;
/// GICR_ISPENDR0 (RW; unlike GICv2, also sets SGIs pending). IHI 0069H 12.11.27.
pub const GICR_ISPENDR0: u64 = 0x0200;
/// GICR_ICPENDR0 (RW). IHI 0069H 12.11.9.
pub const GICR_ICPENDR0: u64 = 0x0280;
/// GICR_ISACTIVER0 (RW). IHI 0069H 12.11.23.
pub const GICR_ISACTIVER0: u64 = 0x0300;
/// GICR_ICACTIVER0 (RW). IHI 0069H 12.11.4.
pub const GICR_ICACTIVER0: u64 = 0x0380;
/// GICR_IPRIORITYR0-7 (RW, byte-accessible), 0x0400-0x041C. IHI 0069H 12.11.19.
pub const GICR_IPRIORITYR: u64 = 0x0400;
/// End of the GICR_IPRIORITYRn range (exclusive).
pub const GICR_IPRIORITYR_END: u64 = 0x0420;
/// GICR_ICFGR0 (SGIs, read-only: edge-triggered). IHI 0069H 12.11.7.
pub const GICR_ICFGR0: u64 = 0x0C00;
/// GICR_ICFGR1 (PPIs, RW). IHI 0069H 12.11.8.
pub const GICR_ICFGR1: u64 = 0x0C04;
/// GICR_IGRPMODR0: RAZ/WI with a single Security state. IHI 0069H 12.11.13.
pub const GICR_IGRPMODR0: u64 = 0x0D00;
/// GICR_NSACR: RAZ/WI with a single Security state. IHI 0069H 12.11.20.
pub const GICR_NSACR: u64 = 0x0E00;
