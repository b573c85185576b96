//! Idle vCPUs: WFI blocks a vCPU until an interrupt is pending for it or
//! its virtual timer is due; the VMM's wake-up timer and `wake` resume it.

use super::{Devices, Hypervisor, VcpuState, Vm, RESUME};
use crate::sel4::{Error, MessageInfo, UserContext, VcpuReg};
use vgic::VcpuMask;

impl<'a, H: Hypervisor, D: Devices> Vm<'a, H, D> {
    /// WFI: block the vCPU until an interrupt is pending for it or its
    /// virtual timer is due. WFE resumes at once (no event tracking).
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
            return Ok(RESUME);
        }
        self.idle(vcpu, resume_pc)
    }

    /// Idles `vcpu` (WFI, PSCI CPU_SUSPEND) until an interrupt is pending
    /// for it or its virtual timer is due; it then continues at `resume_pc`.
    pub(super) fn idle(
        &mut self,
        vcpu: usize,
        resume_pc: u64,
    ) -> Result<Option<MessageInfo>, Error> {
        let deadline = self.vtimer_deadline(vcpu)?;
        let due = deadline.is_some_and(|d| d <= self.hv.now());
        let no_timer = deadline.is_some() && self.config.timer_channel.is_none();
        if due || no_timer || self.gic.has_pending(vcpu) {
            let mut regs = UserContext::default();
            regs.set_pc(resume_pc);
            self.hv.write_regs(vcpu, false, 1, &regs)?;
            return Ok(RESUME);
        }
        // Stop it rather than leave its fault unanswered: a pending reply
        // would be cancelled (with a kernel warning) by the VMM's next wait.
        log::trace!(target: "cpu", "vCPU {vcpu}: idle, wake-up deadline {deadline:?}");
        self.hv.suspend(vcpu)?;
        self.vcpus[vcpu] = VcpuState::Waiting { resume_pc, deadline };
        self.rearm();
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

    /// Programs the wake-up timer for the earliest waiting vCPU.
    pub(super) fn rearm(&mut self) {
        let next = self.vcpus[..self.config.num_vcpus]
            .iter()
            .filter_map(|s| match s {
                VcpuState::Waiting { deadline, .. } => *deadline,
                _ => None,
            })
            .min();
        self.hv.set_wakeup(next);
    }

    pub(super) fn timer_fired(&mut self) {
        self.hv.set_wakeup(None);
        if let Some(ch) = self.config.timer_channel {
            if let Err(e) = self.hv.ack_irq(ch) {
                log::error!(target: "irq", "timer IRQ ack failed: {e}");
            }
        }
        let now = self.hv.now();
        let mut due = VcpuMask::default();
        for (i, s) in self.vcpus[..self.config.num_vcpus].iter().enumerate() {
            if let VcpuState::Waiting { deadline: Some(d), .. } = s {
                if *d <= now {
                    due.insert(i);
                }
            }
        }
        self.wake(due);
        self.rearm();
    }

    /// Resumes every vCPU in `mask` that is waiting in WFI.
    pub(super) fn wake(&mut self, mask: VcpuMask) {
        let mut any = false;
        for vcpu in mask.iter().filter(|&v| v < self.config.num_vcpus) {
            if let VcpuState::Waiting { resume_pc, .. } = self.vcpus[vcpu] {
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
            self.rearm();
        }
    }
}
