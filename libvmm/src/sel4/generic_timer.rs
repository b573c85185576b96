//! The Arm generic timer registers the kernel exports to user level.
//!
//! Microkit's qemu_virt_aarch64 kernel is built with
//! `KernelArmExportPCNTUser` and `KernelArmExportPTMRUser`, so a PD can read
//! the physical counter and program the EL1 physical timer (its interrupt
//! is PPI 30, given to the PD as an `<irq irq="30">`). The VMM uses it to
//! wake a vCPU sleeping in WFI when its virtual timer is due.

use super::config::{EXPORT_PCNT_USER, EXPORT_PTMR_USER};

/// True if this kernel lets user level use the physical timer.
pub const AVAILABLE: bool = EXPORT_PCNT_USER && EXPORT_PTMR_USER;

/// CNTPCT_EL0: the physical count.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn now() -> u64 {
    let v: u64;
    // SAFETY: reading the counter has no side effects; EL0 access is enabled
    // by the kernel when `AVAILABLE` (callers check it).
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// CNTFRQ_EL0: counter ticks per second.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn frequency() -> u64 {
    let v: u64;
    // SAFETY: CNTFRQ_EL0 is always readable at EL0.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Programs the physical timer to fire at `deadline` (counter ticks), or
/// disables it with `None`. Disabling also drops its level interrupt.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn set_deadline(deadline: Option<u64>) {
    // SAFETY: CNTP_CVAL_EL0 / CNTP_CTL_EL0 affect only this core's EL1
    // physical timer, which the kernel exports to user level for this use.
    unsafe {
        match deadline {
            Some(t) => core::arch::asm!(
                "msr cntp_cval_el0, {t}",
                "msr cntp_ctl_el0, {on}",
                "isb",
                t = in(reg) t,
                on = in(reg) 1u64,
                options(nomem, nostack)
            ),
            None => core::arch::asm!("msr cntp_ctl_el0, xzr", "isb", options(nomem, nostack)),
        }
    }
}

/// Off target there is no timer: the count stands still.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn now() -> u64 {
    0
}

/// Off target: a nominal 62.5 MHz (QEMU virt's frequency).
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn frequency() -> u64 {
    62_500_000
}

/// Off target: nothing to program.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn set_deadline(_deadline: Option<u64>) {}
