//! The EL1 physical timer (CNTP), shared by the VMM and its guest.
//!
//! seL4 lets the guest program CNTP without a trap (CNTHCTL_EL2.EL1PCEN,
//! set for the VMM's sake) and does not switch it between threads, so the
//! VMM's wake-up timer and the guest's physical timer are one set of
//! registers on this core. Ownership switches:
//!
//! - While a vCPU of the VM runs, CNTP is the guest's. The VMM never writes
//!   it then. Its interrupt (IRQ 30 on the timer channel) is the guest's:
//!   it is injected into vCPU 0 as PPI 30 and acked once the guest EOIs it
//!   or drops its pending state. A vCPU waiting meanwhile is woken at its
//!   deadline by the VMM on the next exit or notification it handles.
//! - When no vCPU runs, the VMM saves the guest's CNTP_CTL/CVAL, counts the
//!   guest's deadline as vCPU 0's (if PPI 30 is enabled), and programs CNTP
//!   for the earliest wake-up. Before it resumes a vCPU it writes back what
//!   the guest had; a timer that is due then raises its interrupt again.
//!
//! vCPUs on other cores (SMP) each have their own CNTP: future work.

use super::irq::Lrs;
use super::{Devices, Hypervisor, Timer, VcpuState, Vm};
use crate::sel4::generic_timer::PhysicalTimer;
use vgic::VcpuMask;

/// The guest's physical timer interrupt (PPI 14, the non-secure EL1
/// physical timer of the device tree's `timer` node).
pub const PTIMER_IRQ: u32 = 30;
/// The vCPU whose PPI 30 the guest's physical timer raises. All vCPUs of a
/// VM on one core share the hardware timer: vCPU 0 gets its interrupt.
pub(super) const PTIMER_VCPU: usize = 0;

/// Who has the hardware timer, and the guest's view of it.
#[derive(Clone, Copy, Debug)]
pub(super) struct GuestPtimer {
    /// CNTP holds the VMM's wake-up (no vCPU runs).
    vmm_owns: bool,
    /// The guest's CNTP_CTL/CVAL, saved while the VMM owns the timer.
    saved: PhysicalTimer,
    /// IRQ 30 went to the guest as PPI 30 and is not acked yet.
    outstanding: bool,
    /// While the guest owns the timer: the earliest deadline of a waiting
    /// vCPU, checked each time the VMM runs. With a timer service: the
    /// deadline of the timeout it was asked for, until it notifies.
    polled: Option<u64>,
}

impl GuestPtimer {
    /// At power-on: the VMM holds the timer, the guest's is disabled.
    pub(super) const RESET: GuestPtimer = GuestPtimer {
        vmm_owns: true,
        saved: PhysicalTimer { ctl: 0, cval: 0 },
        outstanding: false,
        polled: None,
    };
}

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// The VMM takes part in CNTP only when it owns its IRQ
    /// ([`Timer::Physical`]); otherwise it never touches the timer and the
    /// guest's interrupt goes nowhere.
    fn ptimer_shared(&self) -> bool {
        matches!(self.config.timer, Timer::Physical(_))
    }

    fn any_running(&self) -> bool {
        self.vcpus[..self.config.num_vcpus].contains(&VcpuState::Running)
    }

    /// The guest's physical timer as the guest sees it: the hardware while
    /// it owns it, else what was saved.
    fn guest_ptimer(&mut self) -> PhysicalTimer {
        if self.ptimer.vmm_owns {
            self.ptimer.saved
        } else {
            self.hv.physical_timer()
        }
    }

    /// When the guest's own physical timer would wake `vcpu` from WFI:
    /// vCPU 0, timer enabled and unmasked, PPI 30 enabled in the vGIC.
    pub(super) fn ptimer_deadline(&mut self, vcpu: usize) -> Option<u64> {
        if vcpu != PTIMER_VCPU
            || !self.ptimer_shared()
            || !self.gic.is_enabled(PTIMER_VCPU, PTIMER_IRQ)
        {
            return None;
        }
        self.guest_ptimer().deadline()
    }

    /// When `vcpu`, waiting with virtual timer deadline `vtimer`, must be
    /// woken: also by the guest's physical timer while the VMM holds it
    /// (while the guest holds it, its interrupt wakes the vCPU).
    pub(super) fn wake_deadline(&self, vcpu: usize, vtimer: Option<u64>) -> Option<u64> {
        let ptimer = if self.ptimer.vmm_owns
            && vcpu == PTIMER_VCPU
            && self.ptimer_shared()
            && self.gic.is_enabled(PTIMER_VCPU, PTIMER_IRQ)
        {
            self.ptimer.saved.deadline()
        } else {
            None
        };
        match (vtimer, ptimer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Called before a vCPU is resumed: if the VMM holds the timer, the
    /// guest gets back the CNTP it had programmed.
    pub(super) fn give_ptimer(&mut self) {
        if self.ptimer.vmm_owns && self.ptimer_shared() {
            self.hv.set_physical_timer(self.ptimer.saved);
            self.ptimer.vmm_owns = false;
        }
    }

    /// Called when a vCPU stopped running (idle, off): if none runs now, the
    /// VMM saves the guest's CNTP and programs its own wake-up (true), else
    /// the caller must `rearm` if waiting vCPUs changed.
    pub(super) fn take_ptimer_if_idle(&mut self) -> bool {
        if !self.ptimer.vmm_owns && self.ptimer_shared() && !self.any_running() {
            self.ptimer.saved = self.hv.physical_timer();
            self.ptimer.vmm_owns = true;
            self.ptimer.polled = None;
            self.rearm();
            // The guest's interrupt, not yet acked, would hold back the
            // VMM's own: ack it now (its PPI 30 stays pending in the vGIC).
            self.ack_guest_ptimer();
            return true;
        }
        false
    }

    /// Acks IRQ 30 if the guest's interrupt holds it: after the guest's EOI
    /// of PPI 30, its pending state dropped, or the VMM taking the timer.
    pub(super) fn ack_guest_ptimer(&mut self) {
        if core::mem::take(&mut self.ptimer.outstanding) {
            self.ack_timer_irq();
        }
    }

    fn ack_timer_irq(&mut self) {
        if let Timer::Physical(ch) = self.config.timer {
            if let Err(e) = self.hv.ack_irq(ch) {
                log::error!(target: "irq", "timer IRQ ack failed: {e}");
            }
        }
    }

    /// Guest reset: its physical timer is back to disabled (written to the
    /// hardware when vCPU 0 starts).
    pub(super) fn reset_ptimer(&mut self) {
        let owns = self.ptimer.vmm_owns;
        self.ptimer = GuestPtimer { vmm_owns: owns, ..GuestPtimer::RESET };
    }

    /// Records the earliest deadline of waiting vCPUs: programs it while
    /// the VMM holds the timer, else polls it on each VMM entry.
    pub(super) fn program_wakeup(&mut self, next: Option<u64>) {
        if let Timer::Service(ch) = self.config.timer {
            self.request_service_wakeup(ch, next);
            return;
        }
        if !self.ptimer_shared() {
            return;
        }
        if self.ptimer.vmm_owns {
            self.hv.set_wakeup(next);
        } else {
            self.ptimer.polled = next;
        }
    }

    /// While the guest holds the timer: wakes waiting vCPUs that are due.
    /// One branch when none waits with a deadline; no seL4 invocation
    /// unless one is due.
    pub(super) fn poll_wakeups(&mut self) {
        if let Timer::Service(_) = self.config.timer {
            return;
        }
        if let Some(d) = self.ptimer.polled {
            let now = self.hv.now();
            if d <= now {
                self.wake_due(now);
            }
        }
    }

    /// A timer service ([`Timer::Service`]) keeps one timeout per client, a
    /// new one replacing the old: it is asked only when the wake-up moves
    /// earlier, or when none is outstanding. A wake-up that comes early (the
    /// deadline moved later meanwhile) just re-arms.
    fn request_service_wakeup(&mut self, ch: u8, next: Option<u64>) {
        let Some(deadline) = next else { return };
        if self.ptimer.polled.is_some_and(|asked| asked <= deadline) {
            return;
        }
        let now = self.hv.now();
        let ticks = deadline.saturating_sub(now);
        // Ticks to nanoseconds, rounded up so the wake-up is never early.
        let freq = u128::from(self.hv.frequency().max(1));
        let ns = (u128::from(ticks) * 1_000_000_000).div_ceil(freq);
        self.hv.request_timeout(ch, u64::try_from(ns).unwrap_or(u64::MAX));
        self.ptimer.polled = Some(deadline);
    }

    /// IRQ 30 arrived on the timer channel, or the timer service notified.
    pub(super) fn timer_fired(&mut self) {
        if let Timer::Service(_) = self.config.timer {
            // The outstanding timeout is spent: the next rearm asks anew.
            self.ptimer.polled = None;
            let now = self.hv.now();
            self.wake_due(now);
            self.rearm();
            return;
        }
        if self.ptimer.vmm_owns {
            // The VMM's wake-up (or the guest's interrupt from before the
            // VMM took the timer: the guest's deadline is vCPU 0's).
            self.hv.set_wakeup(None);
            self.ack_timer_irq();
            let now = self.hv.now();
            self.wake_due(now);
            self.rearm();
        } else if self.hv.physical_timer().asserted() {
            // The guest's own timer: PPI 30, acked when the guest is done.
            self.ptimer.outstanding = true;
            let woken = self.gic.set_pending(PTIMER_VCPU, PTIMER_IRQ, &mut Lrs(&mut self.hv));
            self.wake(woken);
        } else {
            // A wake-up the VMM programmed before a vCPU resumed, or a guest
            // timer reprogrammed since: nothing for the guest.
            self.ack_timer_irq();
            self.poll_wakeups();
        }
    }

    /// Wakes every waiting vCPU whose deadline is at or before `now`.
    fn wake_due(&mut self, now: u64) {
        let mut due = VcpuMask::default();
        for (i, s) in self.vcpus[..self.config.num_vcpus].iter().enumerate() {
            if let VcpuState::Waiting { deadline, .. } = *s {
                if self.wake_deadline(i, deadline).is_some_and(|d| d <= now) {
                    due.insert(i);
                }
            }
        }
        self.wake(due);
    }
}
