//! The reset stub: what a vCPU runs before each boot so that its GIC CPU
//! interface starts at its reset values.
//!
//! seL4 keeps the guest's virtual CPU interface state (GICH_APR/ICH_AP1R0,
//! GICH_VMCR/ICH_VMCR) in the VCPU object and offers no invocation to write
//! it (`seL4_VCPUReg` has no GIC register; `vcpu.c` only saves and restores
//! them on a switch). An interrupt acknowledged and never EOId before a
//! PSCI SYSTEM_RESET would otherwise stay active in the next boot, with the
//! running priority raised for good. So the VMM does what a reset does, from
//! the inside: it writes these few instructions over the kernel's entry,
//! starts every vCPU there (EL1h, MMU off, as for Linux), and they write the
//! CPU interface registers to their reset values and call
//! [`RESET_STUB_DONE`] with HVC. When every vCPU has called it, the VMM
//! puts the kernel's first bytes back and starts vCPU 0 at the kernel.
//!
//! - GICv2 (x0 = the guest's GICC base, the hardware GICV): GICC_CTLR = 0,
//!   GICC_PMR = 0, GICC_BPR = 2 and GICC_ABPR = 3 (the GICV minimums), and
//!   GICC_APR0-3 and GICC_NSAPR0-3 = 0 (IHI 0048B §5.3: unimplemented ones
//!   are RAZ/WI).
//! - GICv3 (system registers; with HCR_EL2.IMO/FMO set, EL1 accesses reach
//!   the ICV_* virtual registers, IHI 0069H §12.1): ICC_IGRPEN1_EL1,
//!   ICC_IGRPEN0_EL1, ICC_CTLR_EL1, ICC_PMR_EL1 = 0, ICC_BPR0_EL1 = 2,
//!   ICC_BPR1_EL1 = 3, ICC_AP0R0_EL1 = ICC_AP1R0_EL1 = 0. Only the `0`
//!   active-priority registers: the others exist only with 6 or more
//!   preemption bits (QEMU's and the Cortex-A cores' virtual interfaces have
//!   5), and seL4 itself keeps only ICH_AP1R0_EL2. ICC_SRE_EL1 is left
//!   alone: seL4 traps it (ICC_SRE_EL2.Enable = 0) and it reads SRE = 1.
//!
//! Before that, the stub deactivates the interrupts the guest left active
//! in this vCPU's list registers (Linux's `reboot -f` stops the other CPUs
//! with an SGI whose handler never returns): seL4's InjectIRQ refuses to
//! overwrite an active list register and has no way to empty one, so
//! without it every injection of the next boot would first try that LR.
//! The VMM passes the IDs its vGIC had in the vCPU's LRs in x1-x4
//! ([`NO_IRQ`] for none); the stub sets EOImode = 1 (GICV_CTLR bit 9;
//! ICC_CTLR_EL1 bit 1) and writes each to the deactivate register (GICV_DIR
//! at GICC + 0x1000; ICC_DIR_EL1). seL4 writes SGIs with source CPU ID 0
//! (its LR has no CPUID field), which is the ID the guest acknowledged and
//! the one the stub writes. An ID that is not active in an LR is ignored
//! (at most it counts in GICH_HCR.EOICount, which seL4 leaves unused). The
//! deactivation raises the LR's EOI maintenance interrupt, which the vGIC,
//! reset by then, takes as a free LR. When the stub is done, the VMM
//! empties those LRs ([`ListRegisters::clear`](vgic::ListRegisters::clear)).
//!
//! The stub's own instructions are listed beside their words below.

use super::GicLayout;

/// The SMCCC function id the stub calls when it is done: a fast SMC64
/// call in the Vendor Specific Hypervisor Service range (owner 6, SMCCC
/// 1.4 §6.2), function 1. The VMM answers it only from a vCPU that is
/// running the stub; from anywhere else it is an unknown call
/// (NOT_SUPPORTED), so a guest cannot use it to confuse the VMM.
pub const RESET_STUB_DONE: u32 = 0xc600_0001;

/// How many interrupt IDs the stub deactivates (in x1-x4).
pub const MAX_DEACTIVATE: usize = 4;

/// What x1-x4 hold for "no interrupt to deactivate" (bit 63 set).
pub const NO_IRQ: u64 = u64::MAX;

/// GICv2: x0 = GICC base, x1-x4 = IDs to deactivate or [`NO_IRQ`].
const GICV2: [u32; 30] = [
    0x5280_4005, // mov  w5, #0x200
    0xb900_0005, // str  w5, [x0]           GICC_CTLR.EOImode = 1
    0xb7f8_0041, // tbnz x1, #63, +8
    0xb910_0001, // str  w1, [x0, #0x1000]  GICC_DIR
    0xb7f8_0042, // tbnz x2, #63, +8
    0xb910_0002, // str  w2, [x0, #0x1000]  GICC_DIR
    0xb7f8_0043, // tbnz x3, #63, +8
    0xb910_0003, // str  w3, [x0, #0x1000]  GICC_DIR
    0xb7f8_0044, // tbnz x4, #63, +8
    0xb910_0004, // str  w4, [x0, #0x1000]  GICC_DIR
    0xd503_3f9f, // dsb  sy
    0xb900_001f, // str  wzr, [x0]          GICC_CTLR
    0xb900_041f, // str  wzr, [x0, #0x4]    GICC_PMR
    0x5280_0041, // mov  w1, #2
    0xb900_0801, // str  w1, [x0, #0x8]     GICC_BPR
    0x5280_0061, // mov  w1, #3
    0xb900_1c01, // str  w1, [x0, #0x1c]    GICC_ABPR
    0xb900_d01f, // str  wzr, [x0, #0xd0]   GICC_APR0
    0xb900_d41f, // str  wzr, [x0, #0xd4]   GICC_APR1
    0xb900_d81f, // str  wzr, [x0, #0xd8]   GICC_APR2
    0xb900_dc1f, // str  wzr, [x0, #0xdc]   GICC_APR3
    0xb900_e01f, // str  wzr, [x0, #0xe0]   GICC_NSAPR0
    0xb900_e41f, // str  wzr, [x0, #0xe4]   GICC_NSAPR1
    0xb900_e81f, // str  wzr, [x0, #0xe8]   GICC_NSAPR2
    0xb900_ec1f, // str  wzr, [x0, #0xec]   GICC_NSAPR3
    0xd503_3f9f, // dsb  sy
    0xd280_0020, // movz x0, #0x0001
    0xf2b8_c000, // movk x0, #0xc600, lsl #16
    0xd400_0002, // hvc  #0
    0x1400_0000, // b    .
];

/// GICv3: system registers only; x1-x4 = IDs to deactivate or [`NO_IRQ`].
const GICV3: [u32; 27] = [
    0xd280_0045, // mov  x5, #2
    0xd518_cc85, // msr  ICC_CTLR_EL1, x5   EOImode = 1
    0xd503_3fdf, // isb
    0xb7f8_0041, // tbnz x1, #63, +8
    0xd518_cb21, // msr  ICC_DIR_EL1, x1
    0xb7f8_0042, // tbnz x2, #63, +8
    0xd518_cb22, // msr  ICC_DIR_EL1, x2
    0xb7f8_0043, // tbnz x3, #63, +8
    0xd518_cb23, // msr  ICC_DIR_EL1, x3
    0xb7f8_0044, // tbnz x4, #63, +8
    0xd518_cb24, // msr  ICC_DIR_EL1, x4
    0xd503_3fdf, // isb
    0xd518_ccff, // msr  ICC_IGRPEN1_EL1, xzr
    0xd518_ccdf, // msr  ICC_IGRPEN0_EL1, xzr
    0xd518_cc9f, // msr  ICC_CTLR_EL1, xzr
    0xd518_461f, // msr  ICC_PMR_EL1, xzr
    0xd280_0041, // mov  x1, #2
    0xd518_c861, // msr  ICC_BPR0_EL1, x1
    0xd280_0061, // mov  x1, #3
    0xd518_cc61, // msr  ICC_BPR1_EL1, x1
    0xd518_c89f, // msr  ICC_AP0R0_EL1, xzr
    0xd518_c91f, // msr  ICC_AP1R0_EL1, xzr
    0xd503_3fdf, // isb
    0xd280_0020, // movz x0, #0x0001
    0xf2b8_c000, // movk x0, #0xc600, lsl #16
    0xd400_0002, // hvc  #0
    0x1400_0000, // b    .
];

/// Bytes of the longest stub: what the VMM overwrites at the kernel's entry.
pub(super) const MAX_LEN: usize = GICV2.len() * 4;

/// The stub's instruction words for this GIC.
pub fn code(gic: &GicLayout) -> &'static [u32] {
    match gic {
        GicLayout::V2 { .. } => &GICV2,
        GicLayout::V3 { .. } => &GICV3,
    }
}

/// The stub as little-endian bytes (AArch64 instructions are always
/// little-endian), in `buf`; returns its length.
pub(super) fn write_code(gic: &GicLayout, buf: &mut [u8; MAX_LEN]) -> usize {
    let words = code(gic);
    for (chunk, word) in buf.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    words.len() * 4
}

/// What x0 holds when the stub starts.
pub(super) fn argument(gic: &GicLayout) -> u64 {
    match *gic {
        GicLayout::V2 { gicc, .. } => gicc,
        GicLayout::V3 { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_stubs_end_by_calling_the_done_id_with_hvc_then_spin() {
        for gic in [GicLayout::QEMU_VIRT_V2, GicLayout::QEMU_VIRT_V3] {
            let code = code(&gic);
            let n = code.len();
            // movz x0, #lo; movk x0, #hi, lsl 16 encode RESET_STUB_DONE.
            let lo = (code[n - 4] >> 5) & 0xffff;
            let hi = (code[n - 3] >> 5) & 0xffff;
            assert_eq!(code[n - 4] & 0xffe0_001f, 0xd280_0000);
            assert_eq!(code[n - 3] & 0xffe0_001f, 0xf2a0_0000);
            assert_eq!((hi << 16) | lo, RESET_STUB_DONE);
            assert_eq!(code[n - 2], 0xd400_0002, "hvc #0");
            assert_eq!(code[n - 1], 0x1400_0000, "b .");
            assert!(n * 4 <= MAX_LEN);
        }
    }

    #[test]
    fn both_stubs_set_eoimode_then_deactivate_x1_to_x4_unless_bit_63() {
        // GICv2: str wN, [x0, #0x1000] (GICC_DIR); GICv3: msr ICC_DIR_EL1, xN.
        for (gic, ctlr, dir) in [
            (GicLayout::QEMU_VIRT_V2, [0x5280_4005, 0xb900_0005], 0xb910_0000),
            (GicLayout::QEMU_VIRT_V3, [0xd280_0045, 0xd518_cc85], 0xd518_cb20),
        ] {
            let code = code(&gic);
            assert_eq!(code[..2], ctlr, "EOImode = 1 first");
            let tbnz = code.iter().position(|&w| w == 0xb7f8_0041).unwrap();
            for r in 1..=MAX_DEACTIVATE as u32 {
                let i = tbnz + 2 * (r as usize - 1);
                // tbnz xR, #63, +8: skips only the DIR write after it.
                assert_eq!(code[i], 0xb7f8_0040 | r);
                assert_eq!(code[i + 1], dir | r);
            }
            // CTLR goes back to 0 afterwards.
            let ctlr0 = if matches!(gic, GicLayout::V2 { .. }) { 0xb900_001f } else { 0xd518_cc9f };
            assert!(code[tbnz + 8..].contains(&ctlr0));
        }
        assert_ne!(NO_IRQ >> 63, 0);
    }
}
