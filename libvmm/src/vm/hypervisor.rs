//! What the VM logic needs from the machine, as one trait: seL4 invocations
//! on the target ([`Sel4`]), a recording fake in host tests.

use crate::microkit::{slots, Channel, Child};
use crate::sel4::generic_timer::{self, PhysicalTimer};
use crate::sel4::{syscall, ArmSmc, Error, MessageInfo, UserContext, VcpuReg};
use sddf_bindings::timer::SET_TIMEOUT as SDDF_TIMER_SET_TIMEOUT;

/// vCPU, interrupt and timer operations. vCPU ids are those of the system
/// description's `<vcpu id=...>`.
pub trait Hypervisor {
    /// Reads the first `count` words of the vCPU's `seL4_UserContext`.
    fn read_regs(&mut self, vcpu: usize, count: usize, regs: &mut UserContext)
        -> Result<(), Error>;
    /// Writes the first `count` words; `resume` restarts the vCPU.
    fn write_regs(
        &mut self,
        vcpu: usize,
        resume: bool,
        count: usize,
        regs: &UserContext,
    ) -> Result<(), Error>;
    /// Stops the vCPU.
    fn suspend(&mut self, vcpu: usize) -> Result<(), Error>;
    /// Reads a VCPU (EL1 system) register.
    fn read_reg(&mut self, vcpu: usize, reg: VcpuReg) -> Result<u64, Error>;
    /// Writes a VCPU (EL1 system) register.
    fn write_reg(&mut self, vcpu: usize, reg: VcpuReg, value: u64) -> Result<(), Error>;
    /// Writes list register `index` with pending `virq`.
    fn inject_irq(
        &mut self,
        vcpu: usize,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), Error>;
    /// [`Hypervisor::inject_irq`] into an LR the guest cannot hold (empty, or
    /// EOIed), which the kernel never refuses: it may go out with the VMM's
    /// next wait. Calls that follow it on the LRs see it done.
    fn inject_irq_deferred(
        &mut self,
        vcpu: usize,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), Error> {
        self.inject_irq(vcpu, virq, priority, group, index)
    }
    /// Unmasks virtual PPI `irq` (27) for the vCPU.
    fn ack_vppi(&mut self, vcpu: usize, irq: u64) -> Result<(), Error>;
    /// Re-enables a physical IRQ delivered on `channel`.
    fn ack_irq(&mut self, channel: u8) -> Result<(), Error>;
    /// Sets message register `i` of the reply being built.
    fn set_mr(&mut self, i: usize, value: u64);
    /// The host's physical counter.
    fn now(&self) -> u64;
    /// Counter ticks per second.
    fn frequency(&self) -> u64;
    /// Wakes the VMM (its timer channel) at `deadline`, or never: programs
    /// the EL1 physical timer (CNTP), which the guest can program too.
    fn set_wakeup(&mut self, deadline: Option<u64>);
    /// Asks the timer service on `channel` for a notification in
    /// `timeout_ns` nanoseconds (sDDF timer protocol: a protected call,
    /// label SET_TIMEOUT, the timeout in MR 0).
    fn request_timeout(&mut self, channel: u8, timeout_ns: u64);
    /// Reads the EL1 physical timer as it is now (CTL with ISTATUS, CVAL).
    fn physical_timer(&mut self) -> PhysicalTimer;
    /// Programs the EL1 physical timer (CVAL, then CTL's ENABLE and IMASK).
    fn set_physical_timer(&mut self, timer: PhysicalTimer);
    /// Asks the firmware to power the machine off; returns if it cannot.
    fn firmware_power_off(&mut self);
}

/// The real thing: Microkit capability slots and seL4 invocations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sel4 {
    /// The PD has `smc="true"`: SYSTEM_OFF may be forwarded to firmware.
    pub smc: bool,
}

impl Sel4 {
    /// How many list registers vCPU `vcpu`'s GIC has, asked of the kernel:
    /// an out-of-range index fails with RangeError and the highest valid one
    /// in MR1. 4 (QEMU's GICv2) if the kernel does not say.
    pub fn list_registers(vcpu: usize) -> usize {
        match child(vcpu).vcpu().inject_irq(0, 0, 0, 63) {
            Err(Error::RangeError) => (syscall::get_mr(1) as usize + 1).clamp(1, 64),
            _ => 4,
        }
    }
}

fn child(vcpu: usize) -> Child {
    Child(vcpu as u8)
}

impl Hypervisor for Sel4 {
    fn read_regs(
        &mut self,
        vcpu: usize,
        count: usize,
        regs: &mut UserContext,
    ) -> Result<(), Error> {
        child(vcpu).vcpu_tcb().read_registers(count, regs)
    }

    fn write_regs(
        &mut self,
        vcpu: usize,
        resume: bool,
        count: usize,
        regs: &UserContext,
    ) -> Result<(), Error> {
        child(vcpu).vcpu_tcb().write_registers(resume, count, regs)
    }

    fn suspend(&mut self, vcpu: usize) -> Result<(), Error> {
        child(vcpu).vcpu_tcb().suspend()
    }

    fn read_reg(&mut self, vcpu: usize, reg: VcpuReg) -> Result<u64, Error> {
        child(vcpu).vcpu().read_reg(reg)
    }

    fn write_reg(&mut self, vcpu: usize, reg: VcpuReg, value: u64) -> Result<(), Error> {
        child(vcpu).vcpu().write_reg(reg, value)
    }

    fn inject_irq(
        &mut self,
        vcpu: usize,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), Error> {
        // A held injection goes first: this one may be to the same LR.
        crate::microkit::perform_held();
        child(vcpu).vcpu().inject_irq(virq, priority, group, index)
    }

    fn inject_irq_deferred(
        &mut self,
        vcpu: usize,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), Error> {
        child(vcpu).inject_irq_deferred(virq, priority, group, index);
        Ok(())
    }

    fn ack_vppi(&mut self, vcpu: usize, irq: u64) -> Result<(), Error> {
        child(vcpu).vcpu().ack_vppi(irq)
    }

    fn ack_irq(&mut self, channel: u8) -> Result<(), Error> {
        Channel::new(channel).ok_or(Error::InvalidArgument)?.irq_ack()
    }

    fn set_mr(&mut self, i: usize, value: u64) {
        syscall::set_mr(i, value)
    }

    fn now(&self) -> u64 {
        generic_timer::now()
    }

    fn frequency(&self) -> u64 {
        generic_timer::frequency()
    }

    fn set_wakeup(&mut self, deadline: Option<u64>) {
        generic_timer::set_deadline(deadline)
    }

    fn request_timeout(&mut self, channel: u8, timeout_ns: u64) {
        let Some(ch) = Channel::new(channel) else { return };
        syscall::set_mr(0, timeout_ns);
        if let Err(e) = ch.ppcall(MessageInfo::new(SDDF_TIMER_SET_TIMEOUT, 1)) {
            log::error!(target: "core", "timer service on channel {channel}: {e}");
        }
    }

    fn physical_timer(&mut self) -> PhysicalTimer {
        generic_timer::physical_timer()
    }

    fn set_physical_timer(&mut self, timer: PhysicalTimer) {
        generic_timer::set_physical_timer(timer)
    }

    fn firmware_power_off(&mut self) {
        if self.smc {
            let args = [super::psci::fid::SYSTEM_OFF as u64, 0, 0, 0, 0, 0, 0, 0];
            match ArmSmc(slots::ARM_SMC_CAP).call(args) {
                Ok(ret) => log::warn!(target: "psci", "firmware SYSTEM_OFF returned {:#x}", ret[0]),
                Err(e) => log::warn!(target: "psci", "firmware SYSTEM_OFF failed: {e}"),
            }
        }
    }
}
