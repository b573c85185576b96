//! Idle vCPUs: WFI blocks a vCPU until an interrupt is pending for it or
//! its virtual timer is due; the VMM's wake-up timer and `wake` resume it.
//! The wake-up timer is the guest's physical timer too: see ptimer.rs.

use super::{Devices, Hypervisor, Timer, VcpuState, Vm, RESUME};
use crate::sel4::{Error, MessageInfo, UserContext, VcpuReg};
use vgic::VcpuMask;

/// A vCPU that yields in WFE waits at least 1/`WFE_YIELD_PER_SECOND` s
/// (50 µs) before the VMM resumes it on its next entry.
const WFE_YIELD_PER_SECOND: u64 = 20_000;

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// WFI: block the vCPU until an interrupt is pending for it or its
    /// virtual timer is due. WFE resumes at once (no event tracking), unless
    /// another vCPU of the VM runs: then it yields (see `yield_wfe`).
    pub(super) fn wait(
        &mut self,
        vcpu: usize,
        wfe: bool,
        len: u64,
    ) -> Result<Option<MessageInfo>, Error> {
        let mut regs = UserContext::default();
        self.hv.read_regs(vcpu, 1, &mut regs)?;
        let resume_pc = regs.pc().wrapping_add(len);
        if wfe {
            regs.set_pc(resume_pc);
            self.hv.write_regs(vcpu, false, 1, &regs)?;
            if self.others_running(vcpu) {
                return self.yield_wfe(vcpu, resume_pc);
            }
            return Ok(RESUME);
        }
        self.idle(vcpu, resume_pc)
    }

    fn others_running(&self, vcpu: usize) -> bool {
        (0..self.config.num_vcpus).any(|i| i != vcpu && self.vcpus[i] == VcpuState::Running)
    }

    /// WFE while another vCPU runs: the guest waits for that vCPU (Linux's
    /// spinlocks and cross-CPU calls wait in WFE). Resuming at once would
    /// keep the waiter on the core, at the same priority as the vCPU it waits
    /// for, until its budget runs out. So the waiter is suspended and resumed
    /// on the VMM's next entry (any exit or interrupt) after `WFE_YIELD`, or
    /// when an interrupt is made pending for it, like a WFI.
    fn yield_wfe(&mut self, vcpu: usize, resume_pc: u64) -> Result<Option<MessageInfo>, Error> {
        if self.gic.has_pending(vcpu) {
            return Ok(RESUME);
        }
        let slice = (self.hv.frequency() / WFE_YIELD_PER_SECOND).max(1);
        let deadline = Some(self.hv.now().wrapping_add(slice));
        self.hv.suspend(vcpu)?;
        self.vcpus[vcpu] = VcpuState::Waiting { resume_pc, deadline };
        if !self.take_ptimer_if_idle() {
            self.rearm();
        }
        Ok(None)
    }

    /// Idles `vcpu` (WFI, PSCI CPU_SUSPEND) until an interrupt is pending
    /// for it or its virtual timer (or, vCPU 0, the guest's physical timer)
    /// is due; it then continues at `resume_pc`.
    pub(super) fn idle(
        &mut self,
        vcpu: usize,
        resume_pc: u64,
    ) -> Result<Option<MessageInfo>, Error> {
        self.poll_devices();
        let deadline = self.vtimer_deadline(vcpu)?;
        let ptimer = self.ptimer_deadline(vcpu);
        let wake_at = match (deadline, ptimer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let due = wake_at.is_some_and(|d| d <= self.hv.now());
        let no_timer = deadline.is_some() && self.config.timer == Timer::None;
        if due || no_timer || self.gic.has_pending(vcpu) {
            let mut regs = UserContext::default();
            regs.set_pc(resume_pc);
            self.hv.write_regs(vcpu, false, 1, &regs)?;
            return Ok(RESUME);
        }
        // Stop it rather than leave its fault unanswered: a pending reply
        // would be cancelled (with a kernel warning) by the VMM's next wait.
        // It is woken after the WFI, not restarted at it: with interrupts
        // unmasked the guest would take the interrupt before the WFI and
        // return to it, to sleep again with nothing left to wake it.
        log::trace!(target: "cpu", "vCPU {vcpu}: idle, wake-up deadline {wake_at:?}");
        self.hv.suspend(vcpu)?;
        self.vcpus[vcpu] = VcpuState::Waiting { resume_pc, deadline };
        if !self.take_ptimer_if_idle() {
            self.rearm();
        }
        Ok(None)
    }

    /// When the vCPU's virtual timer fires, in physical counter ticks.
    pub(super) fn vtimer_deadline(&mut self, vcpu: usize) -> Result<Option<u64>, Error> {
        let ctl = self.hv.read_reg(vcpu, VcpuReg::CntvCtl)?;
        // ENABLE set and IMASK clear: the timer will raise its interrupt.
        if ctl & 0b11 != 0b01 {
            return Ok(None);
        }
        let cval = self.hv.read_reg(vcpu, VcpuReg::CntvCval)?;
        let offset = match self.cntvoff[vcpu] {
            Some(offset) if !crate::sel4::config::VTIMER_UPDATE_VOFFSET => offset,
            _ => {
                let offset = self.hv.read_reg(vcpu, VcpuReg::Cntvoff)?;
                self.cntvoff[vcpu] = Some(offset);
                offset
            }
        };
        Ok(Some(cval.wrapping_add(offset)))
    }

    /// Programs the wake-up for the earliest waiting vCPU (see ptimer.rs:
    /// the hardware timer while the VMM holds it, else polled).
    pub(super) fn rearm(&mut self) {
        let next = (0..self.config.num_vcpus)
            .filter_map(|i| match self.vcpus[i] {
                VcpuState::Waiting { deadline, .. } => self.wake_deadline(i, deadline),
                _ => None,
            })
            .min();
        self.program_wakeup(next);
    }

    /// Resumes every vCPU in `mask` that is waiting in WFI.
    pub(super) fn wake(&mut self, mask: VcpuMask) {
        let mut any = false;
        let num_vcpus = self.config.num_vcpus;
        for vcpu in mask.iter().filter(|&v| v < num_vcpus) {
            if let VcpuState::Waiting { resume_pc, .. } = self.vcpus[vcpu] {
                // The guest's CNTP back before any of its vCPUs runs.
                self.give_ptimer();
                let mut regs = UserContext::default();
                regs.set_pc(resume_pc);
                match self.hv.write_regs(vcpu, true, 1, &regs) {
                    Ok(()) => self.vcpus[vcpu] = VcpuState::Running,
                    Err(e) => log::error!(target: "cpu", "cannot wake vCPU {vcpu}: {e}"),
                }
                any = true;
            }
        }
        if any {
            // If none could be resumed, the VMM keeps the timer.
            if !self.take_ptimer_if_idle() {
                self.rearm();
            }
        }
    }
}
