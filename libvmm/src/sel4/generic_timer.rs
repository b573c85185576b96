//! The Arm generic timer registers the kernel exports to user level.
//!
//! Microkit's qemu_virt_aarch64 kernel is built with
//! `KernelArmExportPCNTUser` and `KernelArmExportPTMRUser`, so a PD can read
//! the physical counter and program the EL1 physical timer (its interrupt
//! is PPI 30, given to the PD as an `<irq irq="30">`). The VMM uses it to
//! wake a vCPU sleeping in WFI when its virtual timer is due.
//!
//! The same kernel setting (CNTHCTL_EL2.EL1PCEN) lets a guest at EL1 use
//! that timer too, without a trap, and seL4 does not switch it between
//! threads: it is one set of registers shared by the VMM and its guest. The
//! VMM therefore takes it only while none of the guest's vCPUs runs, and
//! gives the guest back what it had programmed ([`PhysicalTimer`]).

use super::config::{EXPORT_PCNT_USER, EXPORT_PTMR_USER};

/// True if this kernel lets user level use the physical timer.
pub const AVAILABLE: bool = EXPORT_PCNT_USER && EXPORT_PTMR_USER;

/// The EL1 physical timer's registers: CNTP_CTL_EL0 and CNTP_CVAL_EL0.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PhysicalTimer {
    /// CNTP_CTL_EL0: ENABLE (bit 0), IMASK (bit 1), ISTATUS (bit 2, read-only).
    pub ctl: u64,
    /// CNTP_CVAL_EL0: the compare value, in physical counter ticks.
    pub cval: u64,
}

impl PhysicalTimer {
    /// CNTP_CTL.ENABLE.
    pub const ENABLE: u64 = 1 << 0;
    /// CNTP_CTL.IMASK: the interrupt is masked.
    pub const IMASK: u64 = 1 << 1;
    /// CNTP_CTL.ISTATUS: the timer condition is met.
    pub const ISTATUS: u64 = 1 << 2;

    /// When the timer raises its interrupt: CVAL if enabled and unmasked.
    pub const fn deadline(&self) -> Option<u64> {
        if self.ctl & (Self::ENABLE | Self::IMASK) == Self::ENABLE {
            Some(self.cval)
        } else {
            None
        }
    }

    /// True if the timer asserts its interrupt now (enabled, unmasked,
    /// condition met), as read back from the hardware.
    pub const fn asserted(&self) -> bool {
        self.ctl & (Self::ENABLE | Self::IMASK | Self::ISTATUS) == Self::ENABLE | Self::ISTATUS
    }
}

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

/// Reads CNTP_CTL_EL0 and CNTP_CVAL_EL0 (whoever programmed them).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn physical_timer() -> PhysicalTimer {
    let (ctl, cval): (u64, u64);
    // SAFETY: reading the timer registers has no side effects; EL0 access is
    // enabled by the kernel when `AVAILABLE`.
    unsafe {
        core::arch::asm!(
            "isb",
            "mrs {ctl}, cntp_ctl_el0",
            "mrs {cval}, cntp_cval_el0",
            ctl = out(reg) ctl,
            cval = out(reg) cval,
            options(nomem, nostack)
        )
    };
    PhysicalTimer { ctl, cval }
}

/// Writes CNTP_CVAL_EL0, then CNTP_CTL_EL0 (ENABLE and IMASK; ISTATUS is
/// read-only), e.g. to give the guest back the timer it had programmed.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn set_physical_timer(timer: PhysicalTimer) {
    // SAFETY: as for `set_deadline`: only this core's EL1 physical timer.
    unsafe {
        core::arch::asm!(
            "msr cntp_cval_el0, {cval}",
            "msr cntp_ctl_el0, {ctl}",
            "isb",
            cval = in(reg) timer.cval,
            ctl = in(reg) timer.ctl & (PhysicalTimer::ENABLE | PhysicalTimer::IMASK),
            options(nomem, nostack)
        )
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

/// Off target: no timer, it reads as disabled.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn physical_timer() -> PhysicalTimer {
    PhysicalTimer::default()
}

/// Off target: nothing to program.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn set_physical_timer(_timer: PhysicalTimer) {}
